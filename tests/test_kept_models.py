"""Kept models (issue 32, point 4): every ok run keeps its final weights under ``paths.models``, and ``bench
test --run RUN_ID`` re-tests them without training, reproducing the run's test exactly."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest
import torch
from helpers import QUICK

from bench import kept, paths, registry
from bench.cli import main
from bench.config import load_config, run_id
from bench.errors import BenchError, ConfigError
from bench.results import records
from bench.results.aggregate import group_records
from bench.runner import retest, run

#: Per method, what keeps its quick run cheap (a tiny network) and reaches the state it decides while
#: training: albsnn chooses and freezes its binarised layer at epoch 1 and runs BWO on it (buffers),
#: hybrid_stdb converts its ANN at epoch 1 (thresholds, folded BN) and fine-tunes by STDB. A method added
#: later runs with its defaults.
TINY = {
    "ann": ["method.layers=8C3-AP2"],
    "lif_sg": ["method.layers=8C3-AP2"],
    "slssnn": ["method.layers=8C3-AP2"],
    "multi_threshold": ["method.layers=8C3-AP2"],
    "compressed_event": ["method.layers=8C3-MP2"],
    "albsnn": [
        "method.layers=8C3-MP2-8C3",
        "method.estimator=weight",
        "trainer.max_epochs=2",
        "method.bwo_epochs=1",
    ],
    "hybrid_stdb": [
        "method.layers=8C3-AP2",
        "trainer.max_epochs=2",
        "method.ann_epochs=1",
        "method.calibration_batches=1",
    ],
}
CASES = [(method, "mnist5k") for method in registry.keys("method")] + [("compressed_event", "nmnist_sim")]


def trained(method: str, dataset: str, *extra: str) -> dict:
    overrides = [*QUICK, "trainer.limit_test_batches=2", *TINY.get(method, []), *extra]
    return run(method, dataset, overrides).record


@pytest.mark.parametrize(("method", "dataset"), CASES)
def test_bench_test_on_a_kept_model_reproduces_the_runs_test_exactly(method, dataset, workdir):
    record = trained(method, dataset)
    kept = workdir / "models" / f"{record['run_id']}.pt"
    data = kept.read_bytes()
    assert record["model"] == {
        "file": kept.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    state = torch.load(kept, weights_only=True)
    assert all(isinstance(value, torch.Tensor) and value.device.type == "cpu" for value in state.values())

    assert main(["test", "--run", record["run_id"]]) == 0
    (path,) = (workdir / "results" / "runs").glob(f"{record['run_id']}-test-*.json")
    again = records.read_record(path)  # a valid record
    assert paths.is_name(again["run_id"]) and again["tested_from"] == record["run_id"]
    assert again["status"] == "ok" and again["sweep"] is None and again["model"] is None
    assert again["metrics"]["test_acc"] == record["metrics"]["test_acc"]
    assert again["metrics"]["test_loss"] == record["metrics"]["test_loss"]
    assert again["test_predictions"] == record["test_predictions"]
    assert again["layers"] == record["layers"]  # the metrics callback's per-layer counts
    for key in ("val_acc", "epochs", "params", "time_steps"):  # what training decided, as trained
        assert again["metrics"][key] == record["metrics"][key], key
    assert again["method_details"] == record["method_details"]
    if method == "albsnn":  # the state decided in training was reached, and re-tested
        assert record["method_details"]["binarised"] and record["method_details"]["frozen_at_epoch"] == 1
    if method == "hybrid_stdb":
        assert [e["phase"] for e in record["method_details"]["epochs"]] == ["ann", "stdb"]


def test_test_overrides_change_how_it_is_tested_and_name_a_new_record(workdir):
    record = trained("lif_sg", "mnist5k")
    rid = record["run_id"]
    first = retest(rid, ["data.batch_size=16", "trainer.limit_test_batches=4"]).record  # the same 64 items
    assert first["metrics"]["test_acc"] == record["metrics"]["test_acc"]
    assert first["test_predictions"] == record["test_predictions"]
    assert first["config"]["data"]["batch_size"] == 16 and first["config"]["paths"]["models"] == str(
        workdir / "models"
    )
    plain = retest(rid).record
    assert plain["run_id"] != first["run_id"] and plain["run_id"].startswith(f"{rid}-test-")
    assert retest(rid).record["run_id"] == plain["run_id"]  # the same re-test replaces its record
    # a re-test is a row of its own in the tables, never one more run of its training run
    groups = group_records([record, plain])
    assert sorted(len(g.records) for g in groups) == [1, 1]
    assert sorted(g.label for g in groups) == ["", "re-test"]

    for refused in ("method.lr=0.1", "seed=3", "data.frames=8", "paths.models=/tmp"):
        with pytest.raises(ConfigError, match="only trainer.*, metrics.*, data.batch_size"):
            retest(rid, [refused])
    with pytest.raises(BenchError, match="is a re-test of"):
        retest(plain["run_id"])
    with pytest.raises(ConfigError, match="is not a run id"):
        retest("../etc/passwd")
    with pytest.raises(BenchError, match="There is no run record"):
        retest("lif_sg-mnist5k-000000000000")


def test_a_missing_or_changed_kept_model_is_a_clear_error_saying_to_retrain(workdir, capsys):
    record = trained("ann", "mnist5k")
    rid = record["run_id"]
    kept = workdir / "models" / f"{rid}.pt"
    data = kept.read_bytes()
    kept.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert main(["test", "--run", rid]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "is not the file its record names" in err and "Train it again" in err and "--rerun" in err
    kept.unlink()
    with pytest.raises(BenchError, match="is missing .* Train it again to keep a new model"):
        retest(rid)
    assert not list((workdir / "results" / "runs").glob("*-test-*"))  # a failed re-test leaves no record


def test_a_full_disk_while_keeping_the_model_still_records_the_run_ok(workdir, monkeypatch, caplog):
    class FullDisk:
        """``os`` as bench.kept sees it, its disk full once the model's bytes are written."""

        def __getattr__(self, name):
            return getattr(os, name)

        def fsync(self, fd):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kept, "os", FullDisk())  # bench.kept's only: the record is still written
    record = trained("ann", "mnist5k")
    assert record["status"] == "ok" and record["model"] is None
    assert records.read_record(workdir / "results" / "runs" / f"{record['run_id']}.json")["model"] is None
    assert "could not keep its model" in caplog.text and "No space left on device" in caplog.text
    assert not list((workdir / "models").iterdir())  # no temporary file left behind
    with pytest.raises(BenchError, match="kept no model"):
        retest(record["run_id"])


def test_paths_models_follows_its_environment_variable_and_stays_out_of_the_run_id(workdir, monkeypatch):
    cfg = load_config("ann", "mnist5k")
    assert cfg.paths.models == str(workdir / "models")
    monkeypatch.setenv("SNNBENCH_MODELS", "/elsewhere")
    moved = load_config("ann", "mnist5k")
    assert moved.paths.models == "/elsewhere" and run_id("ann", "mnist5k", moved) == run_id(
        "ann", "mnist5k", cfg
    )
    monkeypatch.delenv("SNNBENCH_MODELS")
    assert load_config("ann", "mnist5k").paths.models == "models"


def test_a_records_model_entry_is_checked_and_never_a_path():
    base = {"run_id": "ann-mnist5k-0123456789ab", "method": "ann", "dataset": "mnist5k", "status": "failed"}
    path = Path(f"{base['run_id']}.json")
    good = {"file": f"{base['run_id']}.pt", "bytes": 10, "sha256": "0" * 64}
    ok = {**base, "status": "ok", "metrics": {"test_acc": 0.5, "time_steps": 1}}
    assert records.record_problem({**ok, "model": good}, path) is None
    assert records.record_problem({**base, "model": None}, path) is None
    for model, why in (
        (
            {**good, "file": "../../x.pt"},
            "its model file '../../x.pt' is not ann-mnist5k-0123456789ab.pt (its run id's)",
        ),
        ({**good, "bytes": "10"}, "its model's bytes '10' is not a whole number >= 1"),
        ({**good, "sha256": "xyz"}, "its model's sha256 'xyz' is not 64 lower-case hex digits"),
        ({"file": good["file"]}, "its model is not an object of file, bytes and sha256, or null"),
    ):
        assert records.record_problem({**ok, "model": model}, path) == why
    assert records.record_problem({**base, "model": good}, path) == (
        "it keeps a model but is not an ok run that was trained and tested"
    )
    assert records.record_problem({**ok, "tested_from": "../x"}, path).startswith("its tested_from")
