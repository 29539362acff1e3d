from __future__ import annotations

import errno
import itertools
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import QUICK

from bench.config import load_config
from bench.errors import BenchError, StorageError
from bench.results import predictions, records
from bench.runner import build, predictions_entry, run


def record(status="ok", **extra):
    return {"run_id": "m-d-abc", "status": status, "metrics": {"test_acc": 0.9}, **extra}


def test_write_is_atomic_when_the_process_dies_mid_write(tmp_path, monkeypatch):
    path = records.write_record(record(note="first"), tmp_path)

    def dump_half_then_crash(obj, handle, **kwargs):
        handle.write('{"run_id": "m-d-abc", "sta')
        raise KeyboardInterrupt

    monkeypatch.setattr(records.json, "dump", dump_half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        records.write_record(record(note="second"), tmp_path)
    assert json.loads(path.read_text())["note"] == "first"  # the old record is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["m-d-abc.json"]  # no temp file left


def test_first_write_crash_leaves_no_file_and_a_full_disk_is_named_not_a_bug(tmp_path, monkeypatch):
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(records.os, "replace", lambda *a: (_ for _ in ()).throw(full))
    with pytest.raises(StorageError) as info:
        records.write_record(record(), tmp_path)
    target = tmp_path / "runs" / "m-d-abc.json"
    assert str(info.value).startswith(f"Could not write the run record {target}: ")
    assert "No space left on device. The file system is full: free some space" in str(info.value)
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_record_follows_the_umask_like_every_other_file(tmp_path):
    previous = os.umask(0o027)
    try:
        path = records.write_record(record(), tmp_path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0600 from mkstemp before


def test_failed_rerun_never_replaces_an_ok_record(tmp_path):
    path = records.write_record(record(), tmp_path)
    assert records.write_record(record("failed", error="boom"), tmp_path) == path
    assert json.loads(path.read_text())["status"] == "ok"
    records.write_record(record(note="newer"), tmp_path)
    assert json.loads(path.read_text())["note"] == "newer"


def test_nan_metrics_are_refused_not_written(tmp_path):
    with pytest.raises(ValueError):
        records.write_record({**record(), "metrics": {"test_acc": float("nan")}}, tmp_path)
    assert list((tmp_path / "runs").iterdir()) == []


def test_the_sweep_file_facts_a_record_carries_are_checked_and_older_records_need_none(tmp_path):
    path = tmp_path / "m-d-abc.json"
    older = {**record(), "method": "m", "dataset": "d", "metrics": {"test_acc": 0.9, "time_steps": 1}}
    assert records.record_problem(older, path) is None  # made before records carried them
    single = {**older, **dict.fromkeys(records.SWEEP_FACTS)}  # `bench run`: none
    assert records.record_problem(single, path) is None
    cell = {
        **older,
        "sweep": "s",
        "track": "ablation",
        "sweep_description": "what\nfor",
        "sweep_reference": "full",
    }
    cell["sweep_file"] = "configs/sweeps/s.yaml"
    assert records.record_problem(cell, path) is None
    for change, why in (
        ({"track": "matchd"}, "its track 'matchd' is not one of matched, paper, ablation"),
        ({"sweep_reference": "a\nb"}, "its sweep_reference 'a\\nb' is not a line of text"),
        ({"sweep_description": 3}, "its sweep_description 3 is not a text"),
        ({"sweep_file": ["s.yaml"]}, "its sweep_file ['s.yaml'] is not a text"),
        ({"sweep": None}, "it carries a sweep file's facts (track, ...) but names no sweep"),
        ({"stage": "final"}, "its stage 'final' is not tuning or null"),
        (
            {"tuning": {"chosen": {}}},
            "its tuning is not an object of sweep, rule, space, candidates and chosen",
        ),
        (
            {"val_history": [0.5, 1.5]},
            "its val_history is not a list of validation accuracies (fractions or null)",
        ),
    ):
        assert records.record_problem({**cell, **change}, path) == why


def test_a_record_keeps_every_test_items_prediction_in_test_set_order(workdir):
    """Paired comparisons need each item's outcome: the record's predictions reproduce its test accuracy,
    and their labels are the test set's, in order."""
    overrides = [*QUICK, "trainer.limit_test_batches=2", "method.layers=8C3-AP2-16FC"]
    record = run("lif_sg", "mnist5k", overrides).record
    entry = record["test_predictions"]
    assert records.record_problem(record, Path(f"{record['run_id']}.json")) is None
    assert record["val_history"] == [round(record["metrics"]["val_acc"], 4)]  # one epoch: its validation
    assert entry["items"] == 64 and entry["dtype"] == "uint8"  # two test batches of 32
    correct = predictions.correct(entry)
    assert correct.mean() == pytest.approx(record["metrics"]["test_acc"], abs=1e-7)
    # within 2 points of chance (10 classes: 10 %) or not, the record says which (issue 33)
    assert record["at_chance"] is (record["metrics"]["test_acc"] <= 0.12)
    datamodule, _ = build(load_config("lif_sg", "mnist5k", overrides), "lif_sg", "mnist5k")
    datamodule.setup("test")
    labels = [int(y) for _, y in itertools.islice(datamodule.test_dataloader().dataset, 64)]
    assert predictions.decode(entry)[1].tolist() == labels
    broken = {**record, "test_predictions": {**entry, "items": 65}}
    assert records.record_problem(broken, Path(f"{record['run_id']}.json")) == (
        "its test_predictions' predicted holds 64 bytes, not 65 uint8 values"
    )


def test_predictions_keep_the_tested_items_ids_where_given():
    """k-fold test sets: an entry may name the items it tested (uint16 ids beside the classes)."""
    outcomes = torch.tensor([[3, 1, 0, 9], [3, 2, 0, 9]])
    plain = predictions.encode(outcomes)
    assert "ids" not in plain and predictions.ids(plain) is None
    entry = predictions.encode(outcomes, np.array([7, 4999, 0, 65535]))
    assert {key: entry[key] for key in plain} == plain  # the classes are stored as before
    assert predictions.problem(entry) is None and predictions.problem(plain) is None
    assert predictions.ids(entry).tolist() == [7, 4999, 0, 65535]
    assert [row.tolist() for row in predictions.decode(entry)] == outcomes.tolist()
    assert predictions.correct(entry).tolist() == [True, False, True, True]
    wide = predictions.encode(outcomes + 300, np.arange(4))  # uint16 classes: ids are uint16 all the same
    assert wide["dtype"] == "uint16" and predictions.problem(wide) is None
    assert predictions.ids(wide).tolist() == [0, 1, 2, 3]
    for bad in (np.arange(3), np.arange(5), np.array([0, 1, 2, 65536]), np.array([0, 1, 2, -1]), np.ones(4)):
        with pytest.raises(ValueError, match="ids must"):
            predictions.encode(outcomes, bad)
    short = {**entry, "ids": predictions.encode(outcomes[:, :3], np.arange(3))["ids"]}
    assert predictions.problem(short) == "its test_predictions' ids holds 6 bytes, not 4 uint16 values"
    assert predictions.problem({**entry, "ids": "not base64!"}) == "its test_predictions' ids is not base64"
    assert predictions.problem({**entry, "extra": 1}).startswith("its test_predictions is not an object")


def test_the_runner_records_the_ids_of_the_items_tested_and_refuses_more_outcomes_than_ids():
    """A limited test tests a prefix of the test set (in order, under DDP too): its ids are the first N."""
    outcomes = torch.tensor([[1, 2], [1, 3]])
    assert predictions_entry(None, np.arange(5)) is None
    assert "ids" not in predictions_entry(outcomes, None)
    assert predictions.ids(predictions_entry(outcomes, np.array([40, 41, 42]))).tolist() == [40, 41]
    with pytest.raises(BenchError, match="3 predictions but the test set holds 2 items"):
        predictions_entry(torch.zeros(2, 3, dtype=torch.long), np.array([5, 6]))


def test_mechanism_facts_may_be_numbers_texts_true_false_or_null_and_nothing_nested():
    """albsnn reports whether a control chose the ALE's set (true/false) and no ALE order when nothing was
    chosen (null): such records must stay readable; a nested value is not a fact."""
    facts = {"storage_ratio": 0.716, "binarised": "net.8", "same_as_ale": False, "ale_order": None}
    good = {**record("failed"), "method_details": {"facts": facts}}
    assert (
        records.record_problem({**good, "method": "albsnn", "dataset": "mnist5k"}, Path("m-d-abc.json"))
        is None
    )
    nested = {**good, "method": "albsnn", "dataset": "mnist5k", "method_details": {"facts": {"x": [1]}}}
    assert records.record_problem(nested, Path("m-d-abc.json")) == (
        "its method_details.facts is not an object of numbers, true/false, null and lines of text"
    )


def test_a_run_at_chance_is_one_within_two_points_of_one_over_its_classes_or_below():
    assert records.at_chance(0.12, 10) and records.at_chance(0.03, 10) and records.at_chance(0.5, 2)
    assert not records.at_chance(0.1201, 10) and not records.at_chance(0.031, 100)
    assert records.at_chance(0.0299, 100)  # 1 % + 2 points
    path = Path("m-d-abc.json")
    good = {**record(), "method": "m", "dataset": "d", "metrics": {"test_acc": 0.11, "time_steps": 1}}
    assert records.record_problem({**good, "at_chance": True}, path) is None
    assert (
        records.record_problem({**good, "at_chance": "yes"}, path)
        == "its at_chance 'yes' is not true or false"
    )
    note = records.chance_note({**good, "at_chance": True, "dataset_facts": {"num_classes": 10}})
    assert note.startswith("Test accuracy 11.00 % is within 2 points of chance (10.00 %, 1 of 10 classes)")
    assert "paths.results=" in note and records.chance_note({**good, "at_chance": False}) is None
    older = {**good, "dataset_facts": {"num_classes": 10}}  # made before records said so: from its facts
    assert records.record_at_chance(older) and not records.record_at_chance({**older, "at_chance": False})
    assert not records.record_at_chance(good)  # its classes are not recorded: not said
