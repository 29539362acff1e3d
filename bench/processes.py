"""Whether a process of this machine still runs: the one liveness rule for run claims (:mod:`bench.claims`)
and for the temporary folders of interrupted builds (:mod:`datamodules.frame_cache`).

Standard library only, so both can import it without torch or an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (Linux: clock ticks since boot, /proc/<pid>/stat field 22), so a reused
    PID is not taken for the process that had it; None where /proc is not available."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` of this machine runs and, given its :func:`process_start` ``started``, is
    still the process that started then (a reused PID is not).

    Another user's process is alive: signalling it is refused (PermissionError), but it exists. Where
    nothing can be checked (no POSIX signals, or ``pid <= 0``, which names no single process) it counts as
    alive, and callers rely on their other rules (a SLURM job's state, a folder's age).
    """
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:
        pass  # it exists, but is another user's
    except OSError:  # ProcessLookupError: no such process
        return False
    return started is None or process_start(pid) in (None, started)
