"""Counts of a 2-process DDP test (CPU, gloo) equal those of a 1-process test on the same data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import QUICK

from bench.runner import run

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


#: Test the untrained (seeded) lif_sg, narrowed to 8 and 16 channels (the counts, not the width, are what
#: is compared), on all 1,000 mnist5k test digits; timing on, so that it too runs under DDP.
TEST_ONLY = [
    *QUICK,
    "trainer.limit_train_batches=0",
    "trainer.limit_val_batches=0",
    "trainer.limit_test_batches=1.0",
    "trainer.accelerator=cpu",
    "method.channels=[8,16]",
    "method.hidden=32",
    "method.time_steps=2",
    "metrics.latency_samples=5",
    "metrics.throughput_batches=1",
]


def test_two_process_ddp_counts_equal_one_process(workdir):
    single = run("lif_sg", "mnist5k", TEST_ONLY).record
    # DDP through `bench run` as a user starts it: Lightning launches the second process from its command.
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--method", "lif_sg", "--dataset", "mnist5k", *TEST_ONLY]
        + ["trainer.devices=2", "trainer.strategy=ddp"],
        env={**os.environ, "SNNBENCH_RESULTS": str(workdir / "ddp")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (ddp,) = [json.loads(p.read_text()) for p in (workdir / "ddp" / "runs").glob("*.json")]
    assert ddp["config"]["trainer"]["devices"] == 2
    assert single["metrics"]["acs"] > 0 and single["metrics"]["macs"] > 0
    for key in COUNTS:
        assert ddp["metrics"][key] == pytest.approx(single["metrics"][key], rel=1e-12), key
    # every item's prediction, gathered from both ranks back into the test set's order
    assert ddp["test_predictions"]["items"] == single["test_predictions"]["items"] == 1000
    assert ddp["test_predictions"] == single["test_predictions"]
    # the model is kept once, by rank 0: the seeded, untrained weights of the one-process run
    models = workdir / "models"
    kept, alone = (torch.load(models / r["model"]["file"], weights_only=True) for r in (ddp, single))
    assert kept.keys() == alone.keys() and all(torch.equal(kept[key], alone[key]) for key in kept)
    assert sorted(p.name for p in models.iterdir()) == sorted(r["model"]["file"] for r in (ddp, single))
