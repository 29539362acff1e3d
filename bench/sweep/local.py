"""The local executor: cells in subprocesses, ``max_parallel`` at a time, each through the runner's entry
point (``python -m bench.runner``), its output in its own log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.sweep.spec import Cell, Sweep
from bench.sweep.state import cell_state, cells_to_run


def _cell_command(cell: Cell) -> list[str]:
    """The cell's run through the runner's own entry point, its arguments as JSON."""
    args = {"method": cell.method, "dataset": cell.dataset, "sweep_facts": cell.sweep_facts}
    args["overrides"] = [*cell.args, "trainer.enable_progress_bar=false"]
    return [sys.executable, "-m", "bench.runner", json.dumps(args)]


def _outcome(cell: Cell) -> str:
    state, record = cell_state(cell)
    if record is None:
        return state
    if state == "done":
        metrics, took = record["metrics"], f"({record['wall_time_s']:.0f} s)"
        if cell.stage is not None:  # a tuning run: validated, never tested
            return f"ok, validation accuracy {metrics['val_acc'] * 100:.2f} % {took}"
        return f"ok, test accuracy {metrics['test_acc'] * 100:.2f} % {took}"
    return f"{record['status']}: {record.get('error')}"


def _waiting(skipped: dict) -> str:
    return f", {skipped['waiting']} waiting for their tuning runs" if skipped.get("waiting") else ""


def run_local(sweep: Sweep, max_parallel: int, retry_failed: bool, log_dir: Path, echo=print) -> int:
    """Run the cells that need it, ``max_parallel`` subprocesses at a time, each with its share of the
    CPU threads; stdout/stderr of each go to ``log_dir/<run_id>.log``. Returns the number of cells that
    did not end ``ok``. Ctrl+C / SIGTERM stops the children (they record ``interrupted``) and re-raises."""
    todo, skipped = cells_to_run(sweep, retry_failed)
    echo(
        f"sweep {sweep.name}: {len(sweep.cells)} cells, {len(todo)} to run "
        f"({skipped['done']} done, {skipped['failed']} failed and not retried, {skipped['running']} "
        f"running elsewhere{_waiting(skipped)}), {max_parallel} at a time; logs in {log_dir}/"
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // max_parallel)))
    env["PYTHONUNBUFFERED"] = "1"
    running: dict[subprocess.Popen, tuple[Cell, object]] = {}
    not_ok, done, queue = 0, 0, list(todo)

    def stop_children(signum=None, frame=None):
        for process in running:
            if process.poll() is None:
                # SIGTERM, not SIGINT: a sweep started in the background ignores SIGINT, and so do its
                # children. Lightning stops at the next batch and the run records `interrupted`.
                process.terminate()
        for process in running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop_children)
    try:
        while queue or running:
            while queue and len(running) < max_parallel:
                cell = queue.pop(0)
                log = (log_dir / f"{cell.run_id()}.log").open("a")
                process = subprocess.Popen(_cell_command(cell), stdout=log, stderr=subprocess.STDOUT, env=env)
                running[process] = (cell, log)
                echo(f"  start {cell.label}")
            time.sleep(0.2)
            for process in [p for p in running if p.poll() is not None]:
                cell, log = running.pop(process)
                log.close()
                done += 1
                outcome = _outcome(cell)
                not_ok += not outcome.startswith("ok")
                echo(f"  [{done}/{len(todo)}] {cell.label}: {outcome}")
    except KeyboardInterrupt:
        stop_children()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return not_ok
