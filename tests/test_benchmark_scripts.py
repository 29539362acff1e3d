"""The hand-run benchmark scripts still run: ``benchmarks/gpu_check.py`` skips cleanly without CUDA and its
checks pass CPU against CPU on counts that are not all zero; ``benchmarks/harness_overhead.py`` times both
paths and reports their quotient. Tiny settings, no timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402
import harness_overhead  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would run")
def test_gpu_check_without_cuda_says_so_and_exits_0():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == gpu_check.NO_CUDA


def test_gpu_check_cpu_mode_passes_on_nonzero_counts(workdir, capsys):
    code, checks = gpu_check.main(
        [
            *("--device", "cpu", "--methods", "lif_sg", "multi_threshold", "--precisions", "32-true"),
            *("--steps", "2", "--batch-size", "4"),
            *("--throughput-methods", "lif_sg", "--throughput-steps", "1", "--throughput-repeats", "1"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert [c.name.split()[0] for c in checks] == ["counts", "counts", "fit", "fit"], out
    assert all(c.ok for c in checks), out
    lif, multi = (check.data["totals"] for check in checks[:2])
    assert lif["acs"] > 0 and lif["macs"] > 0 and lif["spikes"] > 0, lif
    # multi_threshold's later layers see average-pooled graded spikes: effective MACs, no ACs
    assert multi["macs"] > lif["macs"] / 100 and multi["spikes"] > 0, multi
    for check in checks[:2]:
        assert check.data["cpu"] == check.data["device"] and len(check.data["cpu"]) > 10
    assert "[INFO] throughput at 3x32x32" in out


def test_count_comparison_fails_on_a_different_count():
    counts = {"total.acs": 1000.0, "conv.spikes": 10.0, "total.cost_table": "horowitz45_fp32"}
    assert gpu_check.compare_counts(counts, dict(counts), 0.0)[0]
    assert not gpu_check.compare_counts(counts, {**counts, "conv.spikes": 11.0}, 1e-3)[0]
    assert gpu_check.compare_counts(counts, {**counts, "total.acs": 1000.5}, 1e-3)[0]
    assert not gpu_check.compare_counts(counts, {"total.acs": 1000.0}, 1e-3)[0]


def test_harness_overhead_times_both_paths(workdir):
    result = harness_overhead.compare(
        "lif_sg", "mnist5k", steps=2, repeats=1, device="cpu", overrides=("data.batch_size=8",)
    )
    assert result.samples == 2 * 8  # the timed window: 2 iterations of 8 samples, on both paths
    (bare,), (harness,) = result.bare, result.harness  # one window of each path per repeat, both timed
    assert bare > 0 and harness > 0
    assert result.bare_sps == pytest.approx(16 / bare) and result.harness_sps == pytest.approx(16 / harness)
    assert result.ratio == pytest.approx(bare / harness)  # harness/bare throughput: the quotient of the times
    line = harness_overhead.report(result)
    assert f"harness/bare {bare / harness:.3f}" in line
    assert f"window bare {bare:.3f}-{bare:.3f} s, harness {harness:.3f}-{harness:.3f} s" in line
