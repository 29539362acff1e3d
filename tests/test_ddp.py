"""Counts of a 2-process DDP test (CPU, gloo) equal those of a 1-process test on the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

COUNTS = (
    "test_acc",
    "acs",
    "macs",
    "dense_ops",
    "effective_ops",
    "padded_dense_ops",
    "ann_macs",
    "neuron_updates",
    "spikes",
    "firing_rate",
    "activation_sparsity",
    "energy_uj",
    "ann_energy_uj",
    "time_steps",
)


def run_test_only(tmp_path, *extra):
    """Test the untrained (seeded) lif_sg on all 1,000 mnist5k test digits; return the record."""
    results = tmp_path / "results"
    env = {**os.environ, "SNNBENCH_RESULTS": str(results), "SNNBENCH_LOGS": str(tmp_path / "logs")}
    args = [
        "trainer.limit_train_batches=0",
        "trainer.limit_val_batches=0",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "method.time_steps=2",
        "metrics.latency_samples=5",
        "metrics.throughput_batches=1",
        *extra,
    ]
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--method", "lif_sg", "--dataset", "mnist5k", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (results / "runs").glob("*.json")]
    return record


def test_two_process_ddp_counts_equal_one_process(tmp_path):
    single = run_test_only(tmp_path / "one")
    ddp = run_test_only(tmp_path / "two", "trainer.devices=2", "trainer.strategy=ddp")
    assert ddp["config"]["trainer"]["devices"] == 2
    assert single["metrics"]["acs"] > 0 and single["metrics"]["macs"] > 0
    for key in COUNTS:
        assert ddp["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-12), key
