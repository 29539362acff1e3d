"""``bench sweep S --dry-run --estimate`` (bench/sweep/estimate.py): one pilot per distinct run shape."""

from __future__ import annotations

import os
import time

import pytest
import torch
from helpers import TinyClassifier, bench, load_sweep_in, quick_sweep, quiet_trainer, write_sweep

from bench.cli import build_parser, estimate_layout
from bench.sweep import estimate as est


def test_estimate_pilots_each_shape_once_and_projects_by_its_formula(tmp_path, monkeypatch):
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))
    # two seeds of one method: one shape, two cells
    sweep = load_sweep_in(tmp_path, quick_sweep(tmp_path, "est", "[ann]", "[0, 1]", 2))
    assert len(sweep.cells) == 2
    shapes = est.estimate(sweep, sweep.cells, threads=1)
    assert len(shapes) == 1
    (shape,) = shapes
    assert [todo for _, todo in shape.cells] == [True, True]
    parts = shape.pilot
    (phase,) = parts["phases"]
    assert phase["step_s"] > 0 and phase["eval_s"] > 0 and phase["sample_s"] > 0 and phase["outside_s"] > 0
    assert parts["peak_bytes"] > 0 and parts["startup_s"] > 0 and parts["real_data"]
    assert parts["threads"] == 1  # a cell's share of the CPUs, not the whole machine
    # the quick settings: 2 train, 1 val, 1 test batch; no latency or throughput passes; 2 epochs
    assert (parts["train_batches"], parts["val_batches"], parts["test_batches"]) == (2, 1, 1)
    expected = (
        parts["startup_s"]
        + phase["outside_s"]  # Lightning's set-up and the warm-up steps' excess
        + 2 * (2 * phase["step_s"] + 1 * phase["eval_s"])
        + 1 * phase["eval_s"]  # the sanity check's validation batch
        + (1 + 0 + 1) * phase["eval_s"]  # the test batch, the throughput warm-up
        + (0 + 1) * phase["sample_s"]  # the latency warm-up
    )
    assert shape.ranked_s == pytest.approx(expected)
    assert shape.tuning_s == pytest.approx(expected - 2 * phase["eval_s"] - phase["sample_s"])
    device_s, wall_s, count = est.totals(shapes, parallel=2)
    assert count == 2 and device_s == pytest.approx(2 * expected) and wall_s == pytest.approx(expected)


def test_schedule_fills_the_first_free_worker():
    assert est.schedule([3, 1, 1, 1], 2) == 3
    assert est.schedule([1, 1, 1], 1) == 3


def test_the_dry_run_estimate_prints_every_column_whole_in_a_log(tmp_path):
    # one shape (ann, quick settings); the output is a pipe, as in a SLURM or CI log, 40 columns wide
    path = quick_sweep(tmp_path, "est", "[ann]", "[0]", 1)
    args = ("sweep", str(path), "--dry-run", "--estimate", "--max-parallel", "2")
    out = bench(*args, folder=tmp_path, columns=40)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("method"))
    assert header.split() == [
        "method",
        "dataset",
        "T",
        "cells",
        "to",
        "run",
        "s/step",
        "peak",
        "MiB",
        "s/cell",
        "data",
    ]
    row = next(line for line in out.stdout.splitlines() if line.startswith("ann"))
    assert row.split()[1:4] == ["mnist5k", "1", "1/1"] and row.split()[-1] == "real"
    threads = max(1, (os.cpu_count() or 1) // 2)  # the CPUs shared by the 2 cells at a time
    assert f"each cell on {threads} CPU thread(s)" in " ".join(out.stdout.split())


def test_a_slurm_estimate_runs_at_the_requests_array_parallelism_packing_and_cpus(tmp_path):
    # no pilot: how the cells will run, from the sweep file's slurm block and the command line over it
    text = "methods: [ann]\ndatasets: [mnist5k]\nseeds: [0, 1, 2]\n"
    text += "slurm: {array_parallelism: 2, cpus_per_task: 1, cells_per_task: 3}\n"
    path = write_sweep(tmp_path, "arr", text)
    sweep = load_sweep_in(tmp_path, path)
    estimate = ["sweep", str(path), "--dry-run", "--estimate"]
    args = build_parser().parse_args([*estimate, "--executor", "slurm"])
    assert estimate_layout(sweep, args, 3) == (2, 3, 1, 1)
    args = build_parser().parse_args([*estimate, "--executor", "slurm", "--max-parallel", "5"])
    assert estimate_layout(sweep, args, 3) == (5, 3, 1, 1)
    cpus = os.cpu_count() or 1
    args = build_parser().parse_args([*estimate, "--max-parallel", "2"])  # local
    assert estimate_layout(sweep, args, 3) == (2, 1, max(1, cpus // 2), 2)


class _SlowDigits(torch.utils.data.Dataset):
    """Four 4-feature samples, each taking ``delay`` seconds to load (as event frames built per sample do)."""

    delay = 0.05

    def __len__(self):
        return 4

    def __getitem__(self, index):
        time.sleep(self.delay)
        return torch.ones(4), torch.tensor(index % 2)


def test_a_pilot_times_fetching_each_batch_as_a_run_waits_for_it():
    loader = torch.utils.data.DataLoader(_SlowDigits(), batch_size=1)
    timer, model = est._BatchTimer(), TinyClassifier()
    trainer = quiet_trainer(max_epochs=1, callbacks=[timer])
    trainer.fit(model, train_dataloaders=loader)
    # every step after the first includes its batch's 0.05 s fetch (the first is timed from its start)
    assert len(timer.seconds) == 4 and min(timer.seconds[1:]) >= _SlowDigits.delay
    eval_s, sample_s = est._time_eval(model, trainer, loader, torch.device("cpu"))
    assert eval_s >= _SlowDigits.delay > sample_s  # a batch's fetch counts; a sample's forward is timed alone
