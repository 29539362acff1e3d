"""Faults injected on purpose (issue 16): each ends with a clear message, a truthful state and no lost,
duplicated or mis-stated record."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import QUICK, write_sweep

from bench import claims, cli
from bench import runner as runner_module
from bench.cli import main as bench_main
from bench.config import load_config, run_id
from bench.errors import BenchError, ConfigError, Diverged, RunInterrupted, StorageError, TrainingError
from bench.guards import DivergenceGuard
from bench.loggers import ResumableCSVLogger
from bench.paths import checkpoint_dir
from bench.results import records as records_module
from bench.results.publish import regenerate
from bench.results.records import read_record
from bench.runner import _checkpoint_problem, run
from bench.sweep import cell_state, load_sweep, wait_for_array
from methods.ann import ANN
from methods.common.neurons import MultiThresholdLIF


def runs(workdir: Path) -> list[Path]:
    return sorted((workdir / "results" / "runs").glob("*.json"))


def claim_file(workdir: Path, overrides=QUICK, method="ann") -> Path:
    rid = run_id(method, "mnist5k", load_config(method, "mnist5k", overrides))
    return workdir / "results" / "running" / f"{rid}.json"


# --- 3, 4, 13: config mistakes are caught before anything is recorded --------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.precision=bogus", "Lightning's Trainer takes precision as one of 64, 32, 16, "),
        ("trainer.accelerator=warp", "trainer.accelerator='warp' is not one of"),
        ("trainer.limit_train_batches=abc", "takes limit_train_batches as an integer, a number or null"),
        ("trainer.max_epochs=0", "trains nothing"),
        ("data.batch_size=-1", "data.batch_size=-1 must be >= 1"),
        ("data.val_fraction=2", "val_fraction must lie strictly between 0 and 1"),
        ("method.lr=.inf", "method.lr=inf is not a finite number"),
        ("metrics.latency_samples=-5", "metrics.latency_samples=-5 must be an integer >= 0"),
        ("metrics.cost_table=horowitz46", "horowitz46"),
        # issue 27: every one of these was "looks like a bug" (or a file outside results/)
        ("seed=-1", r"seed must be a whole number from 0 to 2\*\*32 - 1"),
        ("sweep=../../../../tmp/evil", "sweep='../../../../tmp/evil' is not a sweep's name"),
        ('variant="a\\nb"', r"variant must be a variant's name \(one line of text\)"),
        ("method.lr=[1,", r"Could not parse the override 'method.lr=\[1,': its value is not plain YAML"),
        ("method.lr=!!python/object/apply:os.system [ls]", r"tags such as !!python/\.\.\. are refused"),
    ],
)
def test_config_mistakes_raise_before_any_record_or_claim(override, message, workdir):
    with pytest.raises(ConfigError, match=message):
        run("ann", "mnist5k", [*QUICK, override])
    assert runs(workdir) == [] and not (workdir / "results" / "running").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=zero", "Lightning's Trainer takes max_epochs as an integer or null"),
        ("logger=wandb", "logger=wandb cannot log in here: WANDB_API_KEY is not set"),
    ],
)
def test_bench_run_with_a_wrongly_typed_value_or_wandb_without_login_leaves_no_record(
    override, message, workdir, monkeypatch, capsys
):
    """Issue 33: both were "looks like a bug" and a ``failed`` record (and a run folder under logs/)."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))
    monkeypatch.setattr(cli.err_console, "width", 1000)  # one line a paragraph
    assert bench_main(["run", "--method", "ann", "--dataset", "mnist5k", *QUICK, override]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "bug" not in err and "Traceback" not in err
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


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
class FakeModule(torch.nn.Module):
    current_epoch, global_step = 0, 7
    hparams = type("H", (), {"lr": 1e9})()

    def __init__(self, weights=(3.0, 4.0)):  # norm 5
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weights))


def feed(guard: DivergenceGuard, losses, final: bool = True) -> None:
    feed_module(guard, FakeModule(), losses, final)


def feed_module(guard: DivergenceGuard, module: FakeModule, losses, final: bool = False) -> None:
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


def cell_claimed_by_slurm_job(tmp_path: Path, workdir: Path, job: str):
    """A one-cell sweep's cell and its claim, held by SLURM job ``job`` on another node."""
    sweep = write_sweep(tmp_path, "s", "methods: [ann]\ndatasets: [mnist5k]\n")
    (cell,) = load_sweep(str(sweep)).cells
    path = workdir / "results" / "running" / f"{cell.run_id()}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": "node7", "pid": 1, "slurm_job_id": job}))
    return cell, path


def test_a_requeued_slurm_job_waiting_in_the_queue_still_owns_its_cell(tmp_path, workdir, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, "echo PENDING")
    cell, path = cell_claimed_by_slurm_job(tmp_path, workdir, "41_3")
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
        run("ann", "mnist5k", QUICK, rerun=True)
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


# --- issue 27 -------------------------------------------------------------------------------------------
def checkpoint_of(workdir: Path, overrides, method="ann") -> Path:
    cfg = load_config(method, "mnist5k", overrides)
    folder = checkpoint_dir(cfg.paths.logs, run_id(method, "mnist5k", cfg))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "last.ckpt"


class RunsCode:
    """What a tampered checkpoint carries: unpickling it would run a command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# 1, 16: checkpoints from someone else
@pytest.mark.parametrize(
    "contents, note",
    [
        ("code", "holds objects other than tensors and plain data, which are never unpickled"),
        ({"epoch": 0}, "is not a Lightning checkpoint (it has no global_step, state_dict, loops, optim"),
    ],
)
def test_a_checkpoint_that_would_run_code_or_is_not_lightnings_is_moved_aside(contents, note, workdir):
    marker = workdir / "code-ran"
    if contents == "code":
        contents = {"epoch": 0, "global_step": 1, "state_dict": {}, "loops": {}, "optimizer_states": []}
        contents["callbacks"] = RunsCode(marker)
    torch.save(contents, checkpoint_of(workdir, QUICK))
    record = run("ann", "mnist5k", QUICK).record
    assert not marker.exists()  # the pickle was never run
    assert record["status"] == "ok" and "resumed_from_epoch" not in record
    assert note in record["resume_note"] and "moved to" in record["resume_note"]


def test_a_checkpoint_with_non_finite_weights_is_never_resumed():
    weights = {"net.0.weight": torch.tensor([1.0, float("nan")]), "net.0.bias": torch.zeros(2)}
    checkpoint = {"epoch": 0, "global_step": 5, "state_dict": weights, "loops": {}, "optimizer_states": []}
    assert _checkpoint_problem(checkpoint) == (
        "holds non-finite weights (net.0.weight): the run that wrote it diverged"
    )
    weights["net.0.weight"] = torch.ones(2)
    assert _checkpoint_problem(checkpoint) is None


# 3: a diverged run stays failed on rerun (its checkpoint held the diverged weights and was resumed)
def test_a_diverged_run_deletes_its_checkpoint_and_fails_again_on_rerun(workdir):
    overrides = [*QUICK, "method.lr=1e9"]
    for _ in range(2):
        with pytest.raises(Diverged):
            run("ann", "mnist5k", overrides)
        assert not checkpoint_of(workdir, overrides).exists()
        (path,) = runs(workdir)
        assert json.loads(path.read_text())["status"] == "failed"


def test_a_non_finite_test_loss_fails_the_run_instead_of_an_unwritable_record(workdir, monkeypatch):
    monkeypatch.setattr(runner_module, "_logged", lambda trainer: {"test/acc": 0.1, "test/loss": math.nan})
    with pytest.raises(Diverged, match=r"The run's metrics\.test_loss is nan \(the trained network is not"):
        run("ann", "mnist5k", QUICK)
    (path,) = runs(workdir)
    assert json.loads(path.read_text())["status"] == "failed"


def test_a_learnt_constant_thrown_to_infinity_fails_the_run_instead_of_dividing_by_zero(workdir, monkeypatch):
    neuron = MultiThresholdLIF(learnable_tau=True)
    with torch.no_grad():
        neuron.w.fill_(-1e4)  # 1/tau = sigmoid(w) underflows to 0: was ZeroDivisionError, "looks like a bug"
    assert neuron.tau() == math.inf
    monkeypatch.setattr(ANN, "run_details", lambda self: {"neurons": {"net.2": {"tau": neuron.tau()}}})
    with pytest.raises(Diverged, match=r"The run's method_details\.neurons\.net\.2\.tau is inf"):
        run("ann", "mnist5k", QUICK)
    (path,) = runs(workdir)
    assert json.loads(path.read_text())["status"] == "failed"


# 4: weights that blow up while the loss stays bounded (multi-threshold neurons under an MSE loss)
def test_guard_stops_weights_that_grow_a_thousandfold_whatever_the_loss():
    guard, module = DivergenceGuard(window=2), FakeModule()
    guard.on_train_start(None, module)
    assert guard.start_weights == 5.0
    feed_module(guard, module, [0.1, 0.1])
    with torch.no_grad():
        module.weight.mul_(1001.0)
    with pytest.raises(Diverged, match=r"The weights grew to 1e\+03x their initial norm \(5e\+03 from 5;"):
        feed_module(guard, module, [0.1, 0.1])
    guard, module = DivergenceGuard(window=2), FakeModule()
    guard.on_train_start(None, module)
    with torch.no_grad():
        module.weight.mul_(999.0)  # under the limit: training goes on
    feed_module(guard, module, [0.1, 0.1, 0.1, 0.1])


@pytest.mark.parametrize("method", ["multi_threshold", "compressed_event"])
def test_an_absurd_learning_rate_fails_bounded_output_methods_too(method, workdir):
    # was: multi_threshold `ok` at chance, compressed_event "ZeroDivisionError ... looks like a bug"
    with pytest.raises(Diverged, match="The weights grew to .* their initial norm"):
        run(method, "mnist5k", [*QUICK, "method.lr=1e9", "method.layers=8C3-MP2-16FC"])
    (path,) = runs(workdir)
    assert json.loads(path.read_text())["status"] == "failed"


# 5: the claims race, two processes at the same instant (half the trials taking over a stale claim)
def test_two_launches_claiming_one_run_id_at_the_same_instant_never_both_win():
    script = Path(__file__).parents[1] / "scripts" / "claims_race.py"
    out = subprocess.run([sys.executable, str(script), "--trials", "100"], capture_output=True, text=True)
    assert out.returncode == 0 and "100 trials, 0 without exactly one winner" in out.stdout, out.stdout


def test_an_unreadable_claim_is_live_while_young_and_stale_after():
    # where a file system has no hard links a claim is written after it is created: not taken meanwhile
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"claims-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / "run.json"
    path.write_text("")
    with pytest.raises(BenchError, match="already running \\(a claim being written"):
        claims.claim(path)
    os.utime(path, (0, 0))
    assert claims.claim(path)["pid"] == os.getpid()
    shutil.rmtree(folder)


# 6: --max-parallel below 1 started nothing, forever
@pytest.mark.parametrize("option", ["--max-parallel", "--timeout-min", "--cpus-per-task"])
def test_counts_below_one_are_refused_by_the_command_line(option, capsys):
    with pytest.raises(SystemExit) as info:
        bench_main(["sweep", "demo", option, "-1"])
    assert info.value.code == 2 and "'-1' is not a whole number >= 1" in capsys.readouterr().err


# 7: squeue answering nothing with exit status 0 (a killed packed task) crashed status, sweep and dry-run
def test_a_job_squeue_no_longer_lists_leaves_a_stale_claim(tmp_path, workdir, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, "exit 0")
    cell, path = cell_claimed_by_slurm_job(tmp_path, workdir, "41_0")
    assert claims.liveness(json.loads(path.read_text())) is None
    assert cell_state(cell) == ("pending", None) and not path.exists()


# 9: records of the wrong shape, NaN accuracy, or names that are paths
def test_a_bad_record_is_left_out_of_the_tables_with_a_warning_naming_it(workdir, caplog):
    good = run("ann", "mnist5k", QUICK).record
    assert (good["sweep"], good["track"], good["sweep_file"]) == (None, None, None)  # `bench run`: no sweep
    folder = workdir / "results" / "runs"
    bad = {
        "wrong-shape": {"status": "ok"},
        "a-list": [1, 2],
        "nan-acc": {**good, "run_id": "nan-acc", "metrics": {**good["metrics"], "test_acc": math.nan}},
        "evil": {**good, "run_id": "evil", "sweep": "../../../../outside"},
        "text-energy": {**good, "run_id": "text-energy", "metrics": {**good["metrics"], "energy_uj": "x"}},
        "evil-table": {**good, "run_id": "evil-table", "metrics": {**good["metrics"], "cost_table": "../x"}},
        "bad-counts": {
            **good,
            "run_id": "bad-counts",
            "layers": [{**good["layers"][0], "counts": {"dense": "1"}}],
        },
    }
    for name, record in bad.items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="bench"):
        written = regenerate(workdir / "results")
    assert all(path.resolve().is_relative_to((workdir / "results").resolve()) for path in written)
    assert not (workdir.parent / "outside.md").exists() and (workdir / "results/tables/runs.md").exists()
    for name, why in (
        ("wrong-shape", "its run_id None is not a name"),
        ("a-list", "it is a JSON list, not an object"),
        ("nan-acc", "it holds NaN, which a run record never does"),
        ("evil", "its sweep '../../../../outside' is not a name"),
        ("text-energy", "its metric energy_uj is 'x', not a number or null"),
        ("evil-table", "its metric cost_table '../x' is not a name"),
        ("bad-counts", f"its layer '{good['layers'][0]['name']}' has count calls = None, not a number >= 0"),
    ):
        assert f"{folder / name}.json is not a run record snnbench can use: {why}" in caplog.text
    with pytest.raises(BenchError, match="evil.json is not a run record"):  # bench status: refused, named
        read_record(folder / "evil.json")


# 10: OS errors are named with their path and what to do, never "looks like a bug"
def test_a_full_disk_at_the_ok_record_keeps_the_checkpoint_and_the_rerun_completes(workdir, monkeypatch):
    overrides = [*QUICK, "trainer.enable_checkpointing=true"]
    full = OSError(errno.ENOSPC, "No space left on device")
    replace = records_module.os.replace
    monkeypatch.setattr(records_module.os, "replace", lambda *a: (_ for _ in ()).throw(full))
    with pytest.raises(StorageError, match="Could not write the run record .* The file system is full"):
        run("ann", "mnist5k", overrides)
    assert runs(workdir) == [] and checkpoint_of(workdir, overrides).exists()
    monkeypatch.setattr(records_module.os, "replace", replace)
    record = run("ann", "mnist5k", overrides).record
    assert record["status"] == "ok" and record["resumed_from_epoch"] == 1


def test_os_errors_at_the_command_line_say_what_and_where_not_bug(workdir, monkeypatch, capsys):
    monkeypatch.setattr(cli.err_console, "width", 1000)  # one line a message, whatever the path's length
    assert bench_main(["tables", "--results", str(workdir / "missing")]) == 1
    assert f"There is no results folder {workdir / 'missing'}," in capsys.readouterr().err
    denied = PermissionError(errno.EACCES, "Permission denied", str(workdir / "results" / "running"))
    monkeypatch.setattr(claims, "claim", lambda path: (_ for _ in ()).throw(denied))
    assert bench_main(["run", "--method", "ann", "--dataset", "mnist5k", *QUICK]) == 1
    err = capsys.readouterr().err
    assert f"({workdir / 'results' / 'running'}): Permission denied. You may not write or read there" in err
    assert "bug" not in err


# 11: SIGTERM (a local sweep being stopped) once a run holds its claim
def test_sigterm_to_a_claimed_run_records_interrupted_and_releases_the_claim(workdir, monkeypatch):
    def terminated(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this

    monkeypatch.setattr(runner_module, "_resume_point", terminated)
    with pytest.raises(RunInterrupted):
        run("ann", "mnist5k", QUICK)
    (path,) = runs(workdir)
    assert json.loads(path.read_text())["status"] == "interrupted"
    assert not claim_file(workdir).exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # as it was


# 12: cells listed twice, and exclusions that exclude nothing
@pytest.mark.parametrize(
    "text, message",
    [
        ("methods: [ann, ann]\ndatasets: [mnist5k]\n", "`methods` lists ann more than once"),
        ("methods: [ann]\ndatasets: [mnist5k]\nseeds: [0, 0]\n", "`seeds` lists 0 more than once"),
        (
            "methods: [ann]\ndatasets: [mnist5k]\nvariants: {a: {}, b: {}}\n",
            r"the cells ann on mnist5k \[a\] seed 0 and ann on mnist5k \[b\] seed 0 are the same run",
        ),
        (
            "methods: [ann]\ndatasets: [mnist5k]\nexclude: [{methd: ann}]\n",
            "has the field 'methd', which is neither one of method, dataset, seed, variant nor a config key",
        ),
        (
            "methods: [ann, lif_sg]\ndatasets: [mnist5k]\nexclude: [{method: annn}]\n",
            "names method annn, which the sweep does not have; its methods: ann, lif_sg",
        ),
        (
            "methods: [ann]\ndatasets: [mnist5k]\ngrid: {method.lr: [0.1]}\nexclude: [{method.lr: 0.2}]\n",
            "matches no cell of the sweep",
        ),
    ],
)
def test_duplicate_cells_and_exclusions_that_exclude_nothing_are_refused(text, message, tmp_path, workdir):
    with pytest.raises(ConfigError, match=message):
        load_sweep(str(write_sweep(tmp_path, "dup", text)))
