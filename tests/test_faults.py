"""Faults injected on purpose (issue 16): each ends with a clear message, a truthful state and no lost,
duplicated or mis-stated record."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from test_sweep import TINY, write_sweep

from bench import claims
from bench.config import load_config, run_id
from bench.errors import BenchError, ConfigError, TrainingError
from bench.guards import DivergenceGuard
from bench.loggers import ResumableCSVLogger
from bench.results.paths import checkpoint_dir
from bench.runner import run
from bench.sweep import cell_state, load_sweep, wait_for_array

QUICK = [f"{k}={v}" for k, v in TINY.items()] + [
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def runs(workdir: Path) -> list[Path]:
    return sorted((workdir / "results" / "runs").glob("*.json"))


def claim_file(workdir: Path, overrides=QUICK, method="ann") -> Path:
    rid = run_id(method, "mnist5k", load_config(method, "mnist5k", overrides))
    return workdir / "results" / "running" / f"{rid}.json"


# --- 3, 4, 13: config mistakes are caught before anything is recorded --------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.precision=bogus", "not a Lightning precision"),
        ("trainer.accelerator=warp", "trainer.accelerator='warp' is not one of"),
        ("trainer.limit_train_batches=abc", "Lightning rejects the trainer"),
        ("trainer.max_epochs=0", "trains nothing"),
        ("data.batch_size=-1", "data.batch_size=-1 must be >= 1"),
        ("data.val_fraction=2", "val_fraction must lie strictly between 0 and 1"),
        ("method.lr=.inf", "method.lr=inf is not a finite number"),
        ("metrics.latency_samples=-5", "metrics.latency_samples=-5 must be an integer >= 0"),
        ("metrics.cost_table=horowitz46", "horowitz46"),
    ],
)
def test_config_mistakes_raise_before_any_record_or_claim(override, message, workdir):
    with pytest.raises(ConfigError, match=message):
        run("ann", "mnist5k", [*QUICK, override])
    assert runs(workdir) == [] and not (workdir / "results" / "running").exists()


def test_a_device_this_machine_lacks_is_a_config_error_before_the_record(workdir):
    # tpu is a Lightning accelerator name, so a sweep checked on a login node accepts it; the run on a
    # machine without torch_xla stops when it builds its Trainer, before anything is recorded.
    with pytest.raises(ConfigError, match="cannot build a Trainer"):
        run("ann", "mnist5k", [*QUICK, "trainer.accelerator=tpu"])
    assert runs(workdir) == []


def test_sweep_check_catches_value_mistakes_and_frames_time_steps_mismatch(tmp_path, workdir):
    bad_value = write_sweep(
        tmp_path, "v", "methods: [ann]\ndatasets: [mnist5k]\noverrides: {data.batch_size: 0}\n"
    )
    with pytest.raises(ConfigError, match="data.batch_size=0"):
        load_sweep(str(bad_value))
    frames = load_config("lif_sg", "nmnist_sim").data.get("frames", 6)
    text = f"methods: [lif_sg]\ndatasets: [nmnist_sim]\noverrides: {{method.time_steps: {frames + 1}}}\n"
    with pytest.raises(ConfigError, match=f"does not divide data.frames={frames}"):
        load_sweep(str(write_sweep(tmp_path, "t", text)))


def test_a_sweep_file_with_a_yaml_syntax_error_is_a_config_error(tmp_path):
    path = write_sweep(tmp_path, "broken", "methods: [ann\ndatasets: [mnist5k]\n")
    with pytest.raises(ConfigError, match="Could not read config file .*broken.yaml"):
        load_sweep(str(path))


# --- 5: divergence -------------------------------------------------------------------------------------
class FakeModule:
    current_epoch, global_step = 0, 7
    hparams = type("H", (), {"lr": 1e9})()


def feed(guard: DivergenceGuard, losses, final: bool = True) -> None:
    module = FakeModule()
    for loss in losses:
        guard.on_train_batch_end(None, module, {"loss": torch.tensor(loss)}, None, 0)
    if final:
        guard.on_train_end(None, module)


def test_guard_stops_a_loss_that_stays_far_above_its_start_for_three_windows():
    guard = DivergenceGuard(window=4, patience=3, factor=100.0)
    feed(guard, [2.0] + [250.0] * 8, final=False)  # two high windows: not yet
    with pytest.raises(TrainingError, match=r"stayed at 250 \(125x its starting value 2"):
        feed(guard, [250.0] * 4, final=False)


def test_guard_lets_a_noisy_but_bounded_loss_train_on_and_resets_after_a_normal_window():
    guard = DivergenceGuard(window=4, patience=3, factor=100.0)
    feed(guard, [2.0] + [250.0] * 8 + [1.0] * 4 + [250.0] * 8 + [190.0, 1.0, 1.0, 1.0])
    assert guard.high_windows == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_guard_stops_a_non_finite_loss_within_one_window(bad):
    guard = DivergenceGuard(window=4)
    with pytest.raises(TrainingError, match=f"became {bad}.*lower method.lr"):
        feed(guard, [2.0, 1.9, bad, 1.0, 1.0], final=False)


def test_guard_checks_the_last_partial_window_when_training_ends():
    guard = DivergenceGuard(window=10)
    with pytest.raises(TrainingError, match="diverged"):
        feed(guard, [2.3, 3e11, 4e11])


@pytest.mark.parametrize("lr", ["1e9", "1e38"])
def test_a_diverging_run_fails_with_the_nan_advice_not_ok_at_chance(lr, workdir):
    with pytest.raises(TrainingError, match="Training diverged: lower method.lr") as info:
        run("lif_sg", "mnist5k", [*QUICK, f"method.lr={lr}", "trainer.limit_train_batches=6"])
    (path,) = runs(workdir)
    record = json.loads(path.read_text())
    assert record["status"] == "failed" and "diverged" in record["error"]
    assert f"recorded in {path}" in info.value.__notes__[0]


# --- 1, 14: one run id runs once; stale claims ------------------------------------------------------------
def test_a_second_launch_of_a_running_run_id_stops_and_touches_nothing(workdir):
    path = claim_file(workdir)
    mine = claims.claim(path)  # this test process plays the run in progress
    with pytest.raises(BenchError, match=f"already running \\(pid {os.getpid()}"):
        run("ann", "mnist5k", QUICK)
    assert runs(workdir) == [] and json.loads(path.read_text()) == mine
    claims.release(path, mine)
    assert not path.exists()


def test_a_stale_claim_is_taken_over_and_a_reused_pid_is_not_mistaken_for_its_owner(workdir):
    path = claim_file(workdir)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = {**claims.owner(), "pid": int(gone.stdout)}
    reused = {**claims.owner(), "pid_started": "1"}  # our pid, but another process's start time
    for stale in (dead, reused):
        assert claims.liveness(stale) is None
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(reused))
    record = run("ann", "mnist5k", QUICK).record
    assert record["status"] == "ok" and not path.exists()  # taken over, then released


def test_status_removes_a_stale_claim_and_reports_the_cell_by_its_record(tmp_path, workdir):
    sweep = write_sweep(tmp_path, "s", "methods: [ann]\ndatasets: [mnist5k]\n")
    (cell,) = load_sweep(str(sweep)).cells
    path = workdir / "results" / "running" / f"{cell.run_id()}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**claims.owner(), "pid_started": "1"}))
    assert cell_state(cell) == ("pending", None) and not path.exists()


def fake_squeue(tmp_path: Path, monkeypatch, script: str) -> None:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    squeue = folder / "squeue"
    squeue.write_text(f"#!/bin/sh\n{script}\n")
    squeue.chmod(squeue.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_a_requeued_slurm_job_waiting_in_the_queue_still_owns_its_cell(tmp_path, workdir, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, "echo PENDING")
    sweep = write_sweep(tmp_path, "s", "methods: [ann]\ndatasets: [mnist5k]\n")
    (cell,) = load_sweep(str(sweep)).cells
    path = workdir / "results" / "running" / f"{cell.run_id()}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "node7", "pid": 1, "slurm_job_id": "41_3"}))
    assert cell_state(cell) == ("running", None)  # so a second sweep does not submit it again
    with pytest.raises(BenchError, match="already running \\(SLURM PENDING"):
        claims.claim(path)
    monkeypatch.setattr(claims, "slurm_job", lambda: "41_3")  # the requeued task itself
    assert claims.claim(path)["slurm_job_id"] == "41_3"


def test_an_interrupted_slurm_task_keeps_its_claim_for_the_requeue(workdir, monkeypatch):
    monkeypatch.setattr(claims, "slurm_job", lambda: "41_3")
    monkeypatch.setattr(pl.Trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(TrainingError, match="Interrupted"):
        run("ann", "mnist5k", QUICK)
    assert json.loads(claim_file(workdir).read_text())["slurm_job_id"] == "41_3"


def test_waiting_for_an_array_stops_when_squeue_stops_answering(tmp_path, monkeypatch):
    fake_squeue(
        tmp_path, monkeypatch, "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1"
    )
    with pytest.raises(BenchError, match="squeue has not answered"):
        wait_for_array("41", poll_s=0.01, unreachable_s=0.05)


# --- 9, 10: truthful notes; a corrupt checkpoint ----------------------------------------------------------
def test_a_failed_rerun_says_the_existing_ok_record_is_kept(workdir, monkeypatch):
    first = run("ann", "mnist5k", QUICK)
    monkeypatch.setattr(pl.Trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError) as info:
        run("ann", "mnist5k", QUICK)
    assert info.value.__notes__ == [
        f"The ok record of this run in {first.path} is kept; this attempt is not recorded."
    ]
    assert json.loads(first.path.read_text()) == first.record


def test_a_corrupt_last_checkpoint_is_moved_aside_and_the_run_starts_from_scratch(workdir):
    overrides = [*QUICK, "trainer.enable_checkpointing=true"]
    cfg = load_config("ann", "mnist5k", overrides)
    folder = checkpoint_dir(cfg.paths.logs, run_id("ann", "mnist5k", cfg))
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 not a zip archive")
    record = run("ann", "mnist5k", overrides).record
    assert record["status"] == "ok" and "resumed_from_epoch" not in record
    assert "could not be read" in record["resume_note"] and "started from scratch" in record["resume_note"]
    assert "last.ckpt.corrupt-" in record["resume_note"]


# --- 12: a resumed run continues its CSV log ------------------------------------------------------------
@pytest.mark.parametrize("resuming, kept", [(True, True), (False, False)])
def test_a_resumed_run_continues_its_csv_log(resuming, kept, tmp_path):
    logger = ResumableCSVLogger(save_dir=tmp_path, name="m/d", version="rid")
    Path(logger.log_dir).mkdir(parents=True)
    (Path(logger.log_dir) / "metrics.csv").write_text("epoch,step,train/loss\n0,9,2.1\n")
    logger.resuming = resuming
    logger.log_metrics({"train/loss": 1.5, "epoch": 1}, step=19)
    logger.log_metrics({"val/acc": 0.9, "epoch": 1}, step=19)
    logger.save()
    lines = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,step,train/loss,val/acc"
    assert ("0,9,2.1," in lines) is kept and "1,19,1.5," in lines and "1,19,,0.9" in lines
