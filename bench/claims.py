"""One run id runs once: ``<results>/running/<run_id>.json`` is an exclusive claim on a run.

A run claims its run id before it trains and removes the claim when it ends. A second launch of the same
run id (a second ``bench run``, a cell submitted twice) finds a live claim and stops with a clear message,
so two copies never train into the same checkpoint and CSV log. The claim names its owner (host, pid and
the pid's start time, SLURM job), so liveness survives PID reuse; a claim whose owner is gone is stale and
is taken over (or removed by ``bench status``).

Atomic: the claim is written whole to a temporary file and hard-linked to its name, which fails if the name
exists (``link`` is atomic on local and network file systems alike), so nobody ever reads a half-written
claim. A stale claim is removed only under an exclusive lock on ``running/.lock`` and only after it was read
again under that lock, so two launches taking over the same stale claim cannot both win.

SLURM: a preempted task that submitit requeues keeps its claim (the runner does not remove it), so while
the requeued job waits in the queue (``PENDING``) the cell is still that job's and a second sweep does not
submit it again; the requeued task recognises the claim as its own (same job id) and continues.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.errors import BenchError
from bench.processes import pid_alive, process_start

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


def owner() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_started": process_start(pid),
        "slurm_job_id": slurm_job(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


#: How long an unreadable claim counts as one being written (only where the file system has no hard
#: links and a claim is created empty, then written).
WRITING_GRACE_S = 60.0


def read_claim(path: Path) -> dict | None:
    """The claim's owner, ``{}`` if the file is unreadable (not a claim of ours), None if there is none."""
    try:
        held = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return held if isinstance(held, dict) else {}


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
        # "": squeue no longer lists the job (it may answer so with exit status 0): it is gone
        return f"SLURM {state}" if state and state.split()[0] in LIVE_SLURM_STATES else None
    if claim.get("host") != socket.gethostname():
        return f"on {claim.get('host')} (another machine)" if claim else None
    try:
        pid = int(claim["pid"])
    except (KeyError, ValueError, TypeError):
        return None
    if not pid_alive(pid, claim.get("pid_started")):
        return None  # gone, or the PID was reused by another process
    return f"pid {pid} on {claim['host']}"


@contextlib.contextmanager
def _takeover_lock(folder: Path):
    """An exclusive lock on ``folder/.lock``: whoever removes a claim that is not theirs holds it. Opened
    read-only (a lock needs no more), so other users of a shared results folder can take it too."""
    fd = os.open(folder / ".lock", os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _create(path: Path, me: dict) -> bool:
    """Create the claim ``path`` holding ``me``, whole, if no claim exists; False if one does."""
    spare = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        with open(spare, "w") as handle:
            json.dump(me, handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(spare, path)
            return True
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
        # A file system without hard links: create exclusively, then write (read_claim's grace covers it).
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        return True
    finally:
        spare.unlink(missing_ok=True)


def _holder(path: Path, held: dict, me: dict) -> str | None:
    """How the owner of the claim ``held`` at ``path`` is alive, None if the claim may be taken: its owner
    is gone, or it is our own from before a SLURM requeue."""
    if not held:  # unreadable: a claim being written (no hard links here) while young, else debris
        try:
            young = time.time() - path.stat().st_mtime < WRITING_GRACE_S
        except FileNotFoundError:
            return None
        return "a claim being written" if young else None
    if me["slurm_job_id"] is not None and held.get("slurm_job_id") == me["slurm_job_id"]:
        return None
    return liveness(held)


def claim(path: Path) -> dict:
    """Take the exclusive claim on a run or raise :class:`BenchError` naming the live owner. A stale claim
    (owner gone) or our own requeued job's is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    me = owner()
    for _ in range(5):
        if _create(path, me):
            return me
        with _takeover_lock(path.parent):
            held = read_claim(path)
            if held is None:
                continue  # released meanwhile: try again
            alive = _holder(path, held, me)
            if alive:
                raise BenchError(
                    f"Run {path.stem} is already running ({alive}, started {held.get('started_at')}); "
                    "one run id runs once, so this launch stops without touching its checkpoint, log or "
                    f"record. Wait for it (`bench status` shows it), or stop it; if that process is gone "
                    f"for good, delete {path}."
                ) from None
            path.unlink(missing_ok=True)  # stale, or ours from before a requeue; nobody else removes it now
            if _create(path, me):
                return me
    raise BenchError(f"Could not claim run {path.stem}: {path} keeps reappearing; is another launch racing?")


def release(path: Path, mine: dict) -> None:
    """Remove the claim if it is still ``mine`` (a taken-over claim belongs to someone else now)."""
    held = read_claim(path)
    if held is not None and held.get("pid") == mine["pid"] and held.get("host") == mine["host"]:
        path.unlink(missing_ok=True)


def remove_if_stale(path: Path) -> str | None:
    """``bench status``: the live owner's description, or None after removing a stale claim."""
    if read_claim(path) is None:
        return None
    with _takeover_lock(path.parent):
        held = read_claim(path)
        if held is None:
            return None
        alive = _holder(path, held, {"slurm_job_id": None})
        if alive is None:
            path.unlink(missing_ok=True)
        return alive
