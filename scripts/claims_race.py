"""Two processes claim the same run id at the same instant, ``--trials`` times; exit 1 if both ever win.

Half the trials start from a stale claim (its owner gone), so the takeover path races too. Each process
waits, trial by trial, for the same wall-clock instant and then calls :func:`bench.claims.claim` on the
trial's own claim file; the parent checks that every trial has exactly one winner. Both processes live
until both have answered: on a loaded machine one may reach the last trials after the other is done, and
a winner that had ended would leave a stale claim, rightly taken over.

    python scripts/claims_race.py --trials 200
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = """
import json, sys, time
from pathlib import Path
from bench import claims
from bench.errors import BenchError
folder, start, step, trials = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
won = []
for trial in range(trials):
    instant = start + trial * step
    while time.time() < instant:
        pass
    try:
        claims.claim(folder / f"run-{trial}.json")
        won.append(trial)
    except BenchError:
        pass
print(json.dumps(won), flush=True)
sys.stdin.read()  # alive until the parent has both answers: a winner that ended would leave a stale claim
"""


def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(done.stdout)


def race(trials: int, step_s: float = 0.02) -> list[tuple[int, int]]:
    """[(trial, winners)] for every trial that did not have exactly one winner."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "running"
        folder.mkdir()
        stale = {"host": socket.gethostname(), "pid": dead_pid(), "pid_started": None, "slurm_job_id": None}
        for trial in range(0, trials, 2):
            (folder / f"run-{trial}.json").write_text(json.dumps(stale))
        start = time.time() + 2.0  # both interpreters are up by then
        args = [str(folder), repr(start), repr(step_s), str(trials)]
        command = [sys.executable, "-c", WORKER, *args]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
        workers = [subprocess.Popen(command, **pipes) for _ in range(2)]
        answers = [w.stdout.readline() for w in workers]
        for w in workers:
            w.communicate()  # closes its stdin: it may end now
        if any(w.returncode for w in workers):
            raise SystemExit("a worker failed")
        wins = [json.loads(answer) for answer in answers]
    counts = [sum(trial in won for won in wins) for trial in range(trials)]
    return [(trial, n) for trial, n in enumerate(counts) if n != 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    trials = parser.parse_args().trials
    wrong = race(trials)
    print(f"{trials} trials, {len(wrong)} without exactly one winner: {wrong[:10]}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
