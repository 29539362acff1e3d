"""A cell's state, from its record and its claim: done / failed / running / pending."""

from __future__ import annotations

from datetime import datetime

from bench import claims
from bench.paths import claim_path, runs_dir
from bench.results.records import read_record
from bench.sweep.spec import Cell, Sweep

#: A cell's record states, as ``bench status`` shows them; ``waiting``: a tuned cell whose configuration
#: is chosen once its tuning runs end (bench.sweep.tuning).
STATES = ("done", "failed", "running", "pending", "waiting")


def cell_state(cell: Cell) -> tuple[str, dict | None]:
    """(state, record or None): done / failed / running / pending. A live claim (bench.claims) is
    ``running``, a requeued SLURM job waiting in the queue included; a stale one is removed. An
    ``interrupted`` record is pending: the next run resumes it."""
    if cell.waiting:
        return "waiting", None
    # The sweep's cells were checked when it was loaded; a cell builds its config and run id once.
    results, rid = cell.config(check=False).paths.results, cell.run_id()
    if claims.remove_if_stale(claim_path(results, rid)):
        return "running", None
    path = runs_dir(results) / f"{rid}.json"
    if not path.exists():
        return "pending", None
    record = read_record(path)
    status = record.get("status")
    return {"ok": "done", "failed": "failed"}.get(status, "pending"), record


def cells_to_run(sweep: Sweep, retry_failed: bool) -> tuple[list[Cell], dict[str, int]]:
    """The cells that need a run, and a count of the others by state."""
    todo, skipped = [], {"done": 0, "failed": 0, "running": 0, "waiting": 0}
    for cell in sweep.cells:
        state, _ = cell_state(cell)
        if state == "pending" or (state == "failed" and retry_failed):
            todo.append(cell)
        else:
            skipped[state] += 1
    return todo, skipped


def busy_seconds(records: list[dict]) -> float:
    """The wall-clock time a sweep's recorded runs took: the union of their [start, start + wall time]
    intervals, so cells run side by side count once and the gaps between sessions not at all (what the
    published sweeps' <= 4 h budget is measured in). A resumed run counts from its resumption."""
    spans = sorted(
        (start, start + r["wall_time_s"])
        for r in records
        if r.get("started_at") and r.get("wall_time_s") is not None
        for start in [datetime.fromisoformat(r["started_at"]).timestamp()]
    )
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total
