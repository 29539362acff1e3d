"""One run id runs once: ``<results>/running/<run_id>.json`` is an exclusive claim on a run.

A run creates its claim with ``O_CREAT | O_EXCL`` before it trains and removes it when it ends. A second
launch of the same run id (a second ``bench run``, a cell submitted twice) finds a live claim and stops
with a clear message, so two copies never train into the same checkpoint and CSV log. The claim names its
owner (host, pid and the pid's start time, SLURM job), so liveness survives PID reuse; a claim whose owner
is gone is stale and is taken over (or removed by ``bench status``).

SLURM: a preempted task that submitit requeues keeps its claim (the runner does not remove it), so while
the requeued job waits in the queue (``PENDING``) the cell is still that job's and a second sweep does not
submit it again; the requeued task recognises the claim as its own (same job id) and continues.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench.errors import BenchError

#: squeue states in which a job still owns its cell (a requeued job waits as PENDING).
LIVE_SLURM_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
    }
)


def slurm_job() -> str | None:
    """This process's SLURM job as ``squeue -j`` names it (``<array>_<task>`` for an array task)."""
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else os.environ.get("SLURM_JOB_ID")


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (Linux: clock ticks since boot, /proc/<pid>/stat field 22), so a reused
    PID is not taken for the claim's owner; None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_started": process_start(pid),
        "slurm_job_id": slurm_job(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def read_claim(path: Path) -> dict | None:
    """The claim's owner, ``{}`` if the file is unreadable (half-written), None if there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {}


def slurm_state(job: str) -> str | None:
    """The job's squeue state, ``""`` when squeue no longer lists it, None when squeue cannot answer."""
    if shutil.which("squeue") is None:
        return None
    try:
        command = ["squeue", "-h", "-j", job, "-o", "%T"]
        out = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue exits 1 for a job id it no longer knows; anything else means slurmctld did not answer.
        return "" if "Invalid job id" in out.stderr else None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def liveness(claim: dict) -> str | None:
    """How the claim's owner is alive (e.g. ``"SLURM RUNNING"``, ``"pid 123 on host"``), None if it is
    gone. A claim from another machine without a SLURM job cannot be checked and is trusted."""
    job = claim.get("slurm_job_id")
    if job:
        state = slurm_state(job)
        if state is None:
            return "SLURM job (squeue did not answer)"
        return f"SLURM {state}" if state.split()[0] in LIVE_SLURM_STATES else None
    if claim.get("host") != socket.gethostname():
        return f"on {claim.get('host')} (another machine)" if claim else None
    try:
        pid = int(claim["pid"])
        os.kill(pid, 0)
    except (KeyError, ValueError, OSError):
        return None
    started = claim.get("pid_started")
    if started is not None and process_start(pid) not in (None, started):
        return None  # the PID was reused by another process
    return f"pid {pid} on {claim['host']}"


def claim(path: Path) -> dict:
    """Take the exclusive claim on a run or raise :class:`BenchError` naming the live owner. A stale claim
    (owner gone) or our own requeued job's is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = owner()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_claim(path)
            if held is None:
                continue  # removed meanwhile: try again
            requeued_self = me["slurm_job_id"] is not None and held.get("slurm_job_id") == me["slurm_job_id"]
            alive = None if requeued_self else liveness(held)
            if alive:
                raise BenchError(
                    f"Run {path.stem} is already running ({alive}, started {held.get('started_at')}); "
                    "one run id runs once, so this launch stops without touching its checkpoint, log or "
                    f"record. Wait for it (`bench status` shows it), or stop it; if that process is gone "
                    f"for good, delete {path}."
                ) from None
            path.unlink(missing_ok=True)  # stale, or ours from before a requeue
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return me
    raise BenchError(f"Could not claim run {path.stem}: {path} keeps reappearing; is another launch racing?")


def release(path: Path, mine: dict) -> None:
    """Remove the claim if it is still ``mine`` (a taken-over claim belongs to someone else now)."""
    held = read_claim(path)
    if held is not None and held.get("pid") == mine["pid"] and held.get("host") == mine["host"]:
        path.unlink(missing_ok=True)


def remove_if_stale(path: Path) -> str | None:
    """``bench status``: the live owner's description, or None after removing a stale claim."""
    held = read_claim(path)
    if held is None:
        return None
    alive = liveness(held) if held else None
    if alive is None and held:
        path.unlink(missing_ok=True)
    return alive
