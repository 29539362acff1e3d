"""The SLURM executor: the cells that need a run as one submitit job array, each task running the runner
in-process; waiting for the array."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.errors import BenchError
from bench.results import paths
from bench.sweep.spec import SLURM_KEYS, Sweep
from bench.sweep.state import cells_to_run


def _checkpointable():
    import submitit

    class CellTask(submitit.helpers.Checkpointable):
        """One array task: ``bench run``'s code path in-process. On preemption or time-out submitit calls
        ``checkpoint`` (inherited: resubmit the same call), requeues the task and exits; the runner records
        ``interrupted``, and the requeued task resumes from the run's last Lightning checkpoint."""

        def __call__(self, method: str, dataset: str, args: list[str]) -> str:
            import torch

            from bench.runner import quiet_lightning, run

            if os.environ.get("SLURM_CPUS_PER_TASK"):  # the task's CPUs, not the node's
                torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
            quiet_lightning()
            return run(method, dataset, [*args, "trainer.enable_progress_bar=false"]).record["status"]

    return CellTask


def slurm_parameters(sweep: Sweep, options: dict) -> dict:
    """submitit parameters from the sweep file's ``slurm`` block, command-line options winning."""
    merged = {**sweep.slurm, **{k: v for k, v in options.items() if v is not None}}
    params = {SLURM_KEYS[k]: v for k, v in merged.items()}
    params.setdefault("timeout_min", 60)
    params.setdefault("cpus_per_task", 1)
    params["name"] = f"bench-{sweep.name}"
    return params


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
    """Submit the cells that need a run as one SLURM job array; returns the submitit jobs."""
    if shutil.which("sbatch") is None:
        raise BenchError(
            "--executor slurm needs SLURM's `sbatch` on PATH, and it was not found. Run the sweep on a "
            "cluster login node, or use --executor local here (scripts/slurm-local.sh up starts a "
            "single-node SLURM for testing)."
        )
    import submitit

    todo, skipped = cells_to_run(sweep, retry_failed)
    echo(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(todo)} to submit ({skipped['done']} done, "
        f"{skipped['failed']} failed and not retried, {skipped['running']} running)"
    )
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=paths.slurm_dir(log_root, sweep.name), cluster="slurm")
    params = slurm_parameters(sweep, options)
    executor.update_parameters(**params)
    task = _checkpointable()()
    jobs = executor.map_array(
        task, [c.method for c in todo], [c.dataset for c in todo], [c.args for c in todo]
    )
    echo(f"submitted job array {array_id(jobs)} ({len(jobs)} tasks), logs in {executor.folder}")
    return jobs


def array_id(jobs) -> str:
    """The SLURM job array id of submitit's array jobs (``<array>_<task>``)."""
    return jobs[0].job_id.split("_")[0]
