"""The SLURM executor: the cells that need a run as one submitit job array, each task running its cells
(one, or ``cells_per_task`` packed together) in-process through the runner; waiting for the array.

Packing: tiny cells spend much of a task on interpreter, torch and CUDA start-up and on scheduling, so a
task can run several cells one after another in one process. Each cell is still its own run (run id,
claim, checkpoint, record); the process state a run may leave behind is reset between cells
(:class:`ProcessBaseline`), a failing cell does not stop the task's other cells, and a preempted task
resumes the cell it was in and skips the ones it had ended.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench import config as config_mod
from bench import paths
from bench.errors import BenchError, RunInterrupted
from bench.results.records import read_status
from bench.sweep.spec import SLURM_KEYS, Cell, Sweep, check_cells_per_task
from bench.sweep.state import cells_to_run


def pack(cells: list[Cell], cells_per_task: int) -> list[list[Cell]]:
    """The cells cut into as few array tasks as ``cells_per_task`` allows, dealt out in turn (task i runs
    cells i, i + M, i + 2M, ... of the M tasks), each task keeping the sweep order. Dealt, not cut into
    consecutive runs: neighbouring cells share a dataset and a method's schedule, so consecutive runs
    would put every slow cell of a sweep into one task that everybody then waits for."""
    if not cells:
        return []
    tasks = math.ceil(len(cells) / cells_per_task)
    return [cells[index::tasks] for index in range(tasks)]


def cells_per_task(sweep: Sweep, option: int | None) -> int:
    """The packing: the command line's ``--cells-per-task`` over the sweep file's, else 1."""
    if option is None:
        return sweep.cells_per_task
    return check_cells_per_task(option, "--cells-per-task")


def cell_numbers(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"#0-2, #5"``: a task's cells as the dry-run table numbers them."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"#{r[0]}" if len(r) == 1 else f"#{r[0]}-{r[-1]}" for r in runs)


def describe_packing(sweep: Sweep, executor: str, option: int | None, retry_failed: bool) -> str | None:
    """``--dry-run``'s line on how the cells that need a run would be packed into SLURM array tasks; None
    for a local sweep that asks for no packing."""
    per_task = cells_per_task(sweep, option)
    if executor != "slurm" and option is None and sweep.cells_per_task == 1:
        return None
    todo, _ = cells_to_run(sweep, retry_failed)
    tasks = pack(todo, per_task)
    line = f"slurm: {len(todo)} cell(s) to run in {len(tasks)} array task(s), up to {per_task} a task"
    if per_task > 1 and tasks:
        position = {cell: i for i, cell in enumerate(sweep.cells)}
        line += ": " + "; ".join(
            f"task {i}: {cell_numbers([position[c] for c in task])}" for i, task in enumerate(tasks)
        )
    return line


@dataclass
class ProcessBaseline:
    """What a run may change in its process and a fresh ``bench run`` would not have inherited: environment
    variables (Lightning's ``PL_GLOBAL_SEED``, ``CUBLAS_WORKSPACE_CONFIG``), torch's global switches
    (deterministic algorithms, cuDNN, matmul precision, default dtype, grad and anomaly mode, threads), the
    signal handlers submitit's requeue depends on, and the levels and handlers of the loggers that exist.
    Captured at the task's start and restored before each packed cell, so cell k runs as it would alone.
    Seeds are not here: the runner seeds every run."""

    environ: dict
    torch_state: dict
    signals: dict
    loggers: dict

    SIGNALS = ("SIGTERM", "SIGCONT", "SIGUSR1", "SIGUSR2", "SIGINT")

    @classmethod
    def capture(cls) -> ProcessBaseline:
        import torch

        torch_state = {
            "threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "matmul_precision": torch.get_float32_matmul_precision(),
            "default_dtype": torch.get_default_dtype(),
            "grad": torch.is_grad_enabled(),
            "anomaly": torch.is_anomaly_enabled(),
        }
        signals = {name: signal.getsignal(getattr(signal, name)) for name in cls.SIGNALS}
        loggers = {
            name: (logger.level, list(logger.handlers), logger.propagate)
            for name, logger in {"": logging.getLogger(), **logging.root.manager.loggerDict}.items()
            if isinstance(logger, logging.Logger)
        }
        return cls(dict(os.environ), torch_state, signals, loggers)

    def restore(self) -> None:
        import torch

        for name in set(os.environ) - set(self.environ):
            del os.environ[name]
        os.environ.update(self.environ)
        state = self.torch_state
        torch.set_num_threads(state["threads"])
        torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
        torch.backends.cudnn.benchmark = state["cudnn_benchmark"]
        torch.backends.cudnn.deterministic = state["cudnn_deterministic"]
        torch.set_float32_matmul_precision(state["matmul_precision"])
        torch.set_default_dtype(state["default_dtype"])
        torch.set_grad_enabled(state["grad"])
        torch.autograd.set_detect_anomaly(state["anomaly"])
        for name, handler in self.signals.items():
            if handler is not None and signal.getsignal(getattr(signal, name)) is not handler:
                signal.signal(getattr(signal, name), handler)
        for name, (level, handlers, propagate) in self.loggers.items():
            logger = logging.getLogger(name or None)
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate


def _free_what_the_run_left() -> None:
    """Between packed cells: end a wandb run (a second ``WandbLogger`` would otherwise log into the first
    cell's), collect the finished run's objects (DataLoader workers, models) and return CUDA's cache."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _process_is_usable() -> bool:
    """After a failed cell: whether this process can still run cells. A CUDA error (a device-side assert,
    an illegal access) poisons the process's CUDA context for good; the task's later cells are then left
    pending for the next ``bench sweep`` instead of failing one after another for a reason not theirs."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return True
    try:
        torch.cuda.synchronize()
        torch.ones(1, device="cuda").add_(1).item()
    except Exception:
        return False
    return True


def _interrupted(error: BaseException) -> bool:
    """Whether a run ended because its process is being stopped (submitit's ``sys.exit`` after a
    preemption, SIGTERM, Ctrl+C) rather than failing: the runner records ``interrupted`` and raises
    :class:`RunInterrupted`."""
    return isinstance(error, KeyboardInterrupt | SystemExit | RunInterrupted)


def _say(text: str) -> None:
    """A line in the task's log (submitit's ``<job>_log.out``), in order with Lightning's output."""
    print(f"[bench sweep] {text}", flush=True)


class CellsTask:
    """One array task: its cells one after another, each through ``bench run``'s code path in this process.

    Checkpointable the way submitit expects: on preemption or time-out (SLURM's USR2) submitit calls
    :meth:`checkpoint`, which resubmits this object with the cells it has ended, requeues the task and
    exits; the runner records the cell it was in as ``interrupted`` and keeps that cell's claim. The
    requeued task skips the cells it had ended and any with an ``ok`` record, and the interrupted cell
    resumes from its ``last.ckpt``. One cell failing does not stop the others; the task reports the
    failures at its end (an error, so submitit shows the task as failed)."""

    def __init__(self) -> None:
        # A cell's place in the task (1-based) -> how it ended here; pickled with the task on a requeue.
        self.ended: dict[int, str] = {}

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)

    def __call__(self, cells: list[Cell]) -> dict[str, str]:
        import torch

        from bench.runner import quiet_lightning, run

        if os.environ.get("SLURM_CPUS_PER_TASK"):  # the task's CPUs, not the node's
            torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
        quiet_lightning()
        baseline = ProcessBaseline.capture()
        for position, cell in enumerate(cells, 1):
            heading = f"cell {position}/{len(cells)}: {cell.label}"
            if position in self.ended:
                _say(f"{heading}: ended {self.ended[position]} before this task was requeued; skipped")
                continue
            try:
                cfg = cell.config()
                rid = config_mod.run_id(cell.method, cell.dataset, cfg)
                heading += f" ({rid})"
                if read_status(paths.runs_dir(cfg.paths.results) / f"{rid}.json") == "ok":
                    outcome = "ok (its record existed; not run again)"
                else:
                    baseline.restore()
                    _say(f"{heading}: starting")
                    overrides = [*cell.args, "trainer.enable_progress_bar=false"]
                    result = run(cell.method, cell.dataset, overrides, sweep_facts=cell.sweep_facts)
                    outcome = result.record["status"]
            except Exception as error:
                if _interrupted(error):
                    raise  # submitit has requeued the task (or it is being stopped): stop here
                traceback.print_exc()
                outcome = f"failed: {(str(error) or repr(error)).splitlines()[0]}"
            finally:
                _free_what_the_run_left()
            self.ended[position] = outcome
            _say(f"{heading}: {outcome}")
            if not outcome.startswith("ok") and not _process_is_usable():
                _say(
                    f"this process's CUDA context is broken after {cell.label}; the task's remaining "
                    "cells stay pending for the next `bench sweep`"
                )
                break
        outcomes = {
            cell.label: self.ended.get(position, "not run: the task's CUDA context broke before it")
            for position, cell in enumerate(cells, 1)
        }
        problems = {label: outcome for label, outcome in outcomes.items() if not outcome.startswith("ok")}
        if problems:
            listed = "; ".join(f"{label}: {outcome.rstrip('.')}" for label, outcome in problems.items())
            raise BenchError(
                f"{len(problems)} of the {len(cells)} cell(s) of this array task did not end ok: {listed}. "
                "The task's other cells ran; each failed cell's record and traceback above say why."
            )
        return outcomes


def slurm_parameters(sweep: Sweep, options: dict) -> dict:
    """submitit parameters from the sweep file's ``slurm`` block, command-line options winning."""
    merged = {**sweep.slurm, **{k: v for k, v in options.items() if v is not None}}
    params = {SLURM_KEYS[k]: v for k, v in merged.items() if k in SLURM_KEYS}
    params.setdefault("timeout_min", 60)
    params.setdefault("cpus_per_task", 1)
    params["name"] = f"bench-{sweep.name}"
    return params


#: How ``describe_request`` names submitit's parameters, in the order it lists them; unset ones say so.
REQUEST_NAMES = {
    "slurm_partition": ("partition", "the cluster's default"),
    "gpus_per_node": ("GPUs", "none"),
    "cpus_per_task": ("CPUs", None),
    "mem_gb": ("memory (GB)", "the partition's default"),
    "timeout_min": ("time limit (min)", None),
    "slurm_account": ("account", "your default"),
    "slurm_qos": ("qos", "the default"),
    "slurm_constraint": ("constraint", "none"),
    "slurm_array_parallelism": ("tasks at once", "SLURM's limit"),
}


def describe_request(sweep: Sweep, options: dict) -> str:
    """The dry run's line on what each array task asks SLURM for (the sweep file's ``slurm`` block, the
    command line winning), every key named, unset ones with what SLURM then does."""
    params = slurm_parameters(sweep, options)
    parts = []
    for key, (name, unset) in REQUEST_NAMES.items():
        value = params.get(key)
        parts.append(f"{name} {value if value is not None else unset}")
    per_task = cells_per_task(sweep, options.get("cells_per_task"))
    return f"slurm request per array task: {', '.join(parts)}, {per_task} cell(s) a task"


def wait_for_array(array_id: str, poll_s: float = 2.0, unreachable_s: float = 300.0) -> None:
    """Block until SLURM lists no task of the job array (finished, failed or cancelled; a requeued task
    stays listed). Polls ``squeue``, which needs no accounting database, unlike ``sacct``; if squeue has
    not answered for ``unreachable_s`` (slurmctld down), stop waiting with a clear error."""
    last_answer = time.monotonic()
    while True:
        try:
            out = subprocess.run(
                ["squeue", "-h", "-j", array_id, "-o", "%i"], capture_output=True, text=True, timeout=60
            )
            answered = out.returncode == 0 or "Invalid job id" in out.stderr
        except (OSError, subprocess.TimeoutExpired):
            answered = False
        if answered:
            if out.returncode != 0 or not out.stdout.strip():
                return
            last_answer = time.monotonic()
        elif time.monotonic() - last_answer > unreachable_s:
            raise BenchError(
                f"squeue has not answered for {unreachable_s:.0f} s (slurmctld down or unreachable?), so "
                f"--wait stops waiting for job array {array_id}. Its tasks may still run and write their "
                "records: check later with `bench status`."
            )
        time.sleep(poll_s)


def submit_slurm(sweep: Sweep, retry_failed: bool, options: dict, log_root: Path, echo=print):
    """Submit the cells that need a run as one SLURM job array, ``cells_per_task`` (``options`` over the
    sweep file) cells a task; returns the submitit jobs."""
    if shutil.which("sbatch") is None:
        raise BenchError(
            "--executor slurm needs SLURM's `sbatch` on PATH, and it was not found. Run the sweep on a "
            "cluster login node, or use --executor local here (scripts/slurm-local.sh up starts a "
            "single-node SLURM for testing)."
        )
    import submitit

    per_task = cells_per_task(sweep, options.get("cells_per_task"))
    todo, skipped = cells_to_run(sweep, retry_failed)
    echo(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(todo)} to submit ({skipped['done']} done, "
        f"{skipped['failed']} failed and not retried, {skipped['running']} running"
        + (f", {skipped['waiting']} waiting for their tuning runs" if skipped["waiting"] else "")
        + ")"
    )
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=paths.slurm_dir(log_root, sweep.name), cluster="slurm")
    executor.update_parameters(**slurm_parameters(sweep, options))
    tasks = pack(todo, per_task)
    jobs = executor.map_array(CellsTask(), tasks)
    packing = f", {len(todo)} cells, up to {per_task} a task" if per_task > 1 else ""
    tasks_text = f"{len(jobs)} task{'s' if len(jobs) != 1 else ''}{packing}"
    echo(f"submitted job array {array_id(jobs)} ({tasks_text}), logs in {executor.folder}")
    return jobs


def array_id(jobs) -> str:
    """The SLURM job array id of submitit's array jobs (``<array>_<task>``)."""
    return jobs[0].job_id.split("_")[0]
