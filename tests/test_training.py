"""End-to-end runs on the real embedded mnist5k digits (short schedules)."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from helpers import QUICK

from bench.errors import DataError
from bench.runner import run
from datamodules.mnist5k import MNIST5k


def test_mnist5k_split_is_fixed_stratified_and_disjoint():
    dm = MNIST5k(val_fraction=0.1)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3600, 400, 1000)
    for subset, per_class in ((dm.train_set, 360), (dm.val_set, 40), (dm.test_set, 100)):
        assert subset.base.labels[subset.indices].bincount().tolist() == [per_class] * 10
    assert not set(dm.train_set.indices) & set(dm.val_set.indices)  # both index the 4,000 training digits
    again = MNIST5k(val_fraction=0.1)
    again.setup()
    assert (again.test_set.base.images == dm.test_set.base.images).all()
    image, label = dm.test_set[0]
    assert image.shape == (1, 28, 28) and image.dtype.is_floating_point


def test_three_epoch_ann_reaches_the_accuracy_floor_and_writes_a_record(workdir):
    # three whole epochs at the default batch size, then all 1,000 test digits
    whole = [f"trainer.limit_{stage}_batches=1.0" for stage in ("train", "val", "test")]
    result = run("ann", "mnist5k", [*QUICK, *whole, "data.batch_size=128", "trainer.max_epochs=3"])
    metrics = result.record["metrics"]
    assert metrics["test_acc"] >= 0.95  # three epochs over 3,600 real digits
    on_disk = json.loads(result.path.read_text())
    assert on_disk["status"] == "ok" and on_disk["run_id"] == result.path.stem
    assert on_disk["config"]["trainer"]["max_epochs"] == 3
    for field in ("git", "versions", "device", "wall_time_s", "seed", "method", "dataset"):
        assert on_disk[field] is not None
    assert on_disk["versions"]["pytorch-lightning"] == metadata.version("pytorch-lightning")


def test_same_seed_same_accuracy_on_cpu(workdir):
    short = [*QUICK, "method.time_steps=2"]
    first = run("lif_sg", "mnist5k", short, seed=3).record["metrics"]
    second = run("lif_sg", "mnist5k", short, seed=3).record["metrics"]
    other = run("lif_sg", "mnist5k", short, seed=4).record["metrics"]
    assert first["test_acc"] == second["test_acc"]
    assert first["test_loss"] == second["test_loss"]
    assert other["test_loss"] != first["test_loss"]


def test_a_failing_run_leaves_a_failed_record_and_raises(workdir, monkeypatch):
    def broken_setup(self, stage=None):
        raise DataError("mnist5k digits unreadable (test)")

    monkeypatch.setattr(MNIST5k, "setup", broken_setup)
    with pytest.raises(DataError) as info:
        run("ann", "mnist5k", QUICK)
    note = info.value.__notes__[0]
    path = workdir / "results" / "runs" / note.split(" in ")[1].rstrip(".")
    saved = json.loads(path.read_text())
    assert saved["status"] == "failed" and saved["error"] == "mnist5k digits unreadable (test)"
