"""What ``bench sweep`` and ``bench status`` do, as plain data for the CLI to print: the dry-run's plan,
running a sweep on the chosen executor (and waiting for it), and the state of every cell."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from bench import paths
from bench.sweep.local import run_local
from bench.sweep.slurm import (
    array_id,
    cell_numbers,
    describe_packing,
    describe_request,
    submit_slurm,
    wait_for_array,
)
from bench.sweep.spec import SLURM_KEYS, Cell, Sweep, load_sweep
from bench.sweep.state import STATES, busy_seconds, cell_state

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class PlannedCell:
    number: int  # the cell's place in the sweep, as the dry run numbers it
    cell: Cell
    state: str
    own: tuple[str, ...]  # its overrides beyond those every cell, or every cell of its variant, shares


@dataclass(frozen=True)
class Plan:
    """``bench sweep --dry-run``: the cells in order and their state. Overrides shared by every cell
    (``common``), then by every cell of a variant beyond those (``by_variant``), are listed once, so each
    cell keeps only its own; ``others`` groups the cells by their own overrides (cell numbers, overrides),
    for when they do not fit a column. ``packing``: how SLURM array tasks would take the cells, if asked."""

    cells: list[PlannedCell]
    common: list[str]
    by_variant: dict[str, list[str]]
    others: list[tuple[str, tuple[str, ...]]]
    packing: str | None
    request: str | None = None  # the SLURM request of each array task (``--executor slurm``)


def _shared(cells: list[Cell]) -> list[str]:
    """The overrides every one of ``cells`` has, in the first one's order."""
    return [o for o in cells[0].overrides if all(o in c.overrides for c in cells)] if cells else []


def plan(
    sweep: Sweep,
    executor: str = "local",
    cells_per_task: int | None = None,
    retry_failed: bool = False,
    slurm: dict | None = None,
    max_parallel: int | None = None,
) -> Plan:
    """The dry run of ``execute`` with the same arguments: what it would run, how it would pack it and, on
    SLURM, what each array task would ask for."""
    packing = describe_packing(sweep, executor, cells_per_task, retry_failed)  # checks cells_per_task
    request = None
    if executor == "slurm":
        options = {**(slurm or {}), "array_parallelism": max_parallel, "cells_per_task": cells_per_task}
        request = describe_request(sweep, options)
    common = _shared(sweep.cells)
    by_variant = {
        variant: [o for o in _shared([c for c in sweep.cells if c.variant == variant]) if o not in common]
        for variant in dict.fromkeys(c.variant for c in sweep.cells if c.variant)
    }
    cells = []
    for number, cell in enumerate(sweep.cells):
        listed = {*common, *by_variant.get(cell.variant, [])}
        own = tuple(o for o in cell.overrides if o not in listed)
        cells.append(PlannedCell(number, cell, cell_state(cell)[0], own))
    others = [
        (cell_numbers([c.number for c in cells if c.own == own]), own)
        for own in dict.fromkeys(c.own for c in cells if c.own)
    ]
    return Plan(cells, common, by_variant, others, packing, request)


@dataclass(frozen=True)
class Outcome:
    """How ``execute`` left a sweep: ``not_ok`` counts the cells that did not end ``ok`` (None when it did
    not wait for them: a SLURM array submitted without ``wait``); ``jobs``: the submitted SLURM jobs."""

    not_ok: int | None
    jobs: list = field(default_factory=list)


def execute(
    sweep: Sweep,
    executor: str = "local",
    *,
    max_parallel: int | None = None,
    retry_failed: bool = False,
    slurm: dict | None = None,
    cells_per_task: int | None = None,
    wait: bool = False,
    echo=print,
) -> Outcome:
    """Run the cells that need it: locally, ``max_parallel`` (1) at a time, until they end; or on SLURM as
    one job array (``max_parallel`` its array parallelism, ``slurm`` the submitit options that override the
    sweep file's block, ``cells_per_task`` its packing), waiting for it with ``wait``. Locally, ``not_ok``
    counts the cells run that did not end ok; on SLURM, every cell of the sweep that is not done (a failed
    cell not retried included), as ``bench status`` would show it."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    stray = set(slurm or {}) - set(SLURM_KEYS)
    if stray:
        raise ValueError(
            f"unknown SLURM option(s) {', '.join(sorted(stray))}; known: {', '.join(SLURM_KEYS)}"
        )
    if executor == "local":
        log_dir = paths.sweep_log_dir(paths.logs_root(), sweep.name)
        not_ok = run_local(sweep, max_parallel or 1, retry_failed, log_dir, echo=echo)
        while (sweep_next := next_stage(sweep)) is not None:  # the tuning runs ended: the ranked cells
            sweep = sweep_next
            not_ok += run_local(sweep, max_parallel or 1, retry_failed, log_dir, echo=echo)
        return Outcome(not_ok + _say_waiting(sweep, echo))
    options = {**(slurm or {}), "array_parallelism": max_parallel, "cells_per_task": cells_per_task}
    jobs = submit_slurm(sweep, retry_failed, options, paths.logs_root(), echo=echo)
    if not wait:
        if sweep.waiting:
            echo(
                f"{len(sweep.waiting)} tuned cell(s) wait for their tuning runs: run this `bench sweep` "
                "again once those have ended (`bench status` shows them), or pass --wait."
            )
        return Outcome(None, jobs)
    while True:
        if jobs:
            wait_for_array(array_id(jobs))
        sweep_next = next_stage(sweep)
        if sweep_next is None:
            break
        sweep = sweep_next
        jobs += submit_slurm(sweep, retry_failed, options, paths.logs_root(), echo=echo)
    _say_waiting(sweep, echo)
    return Outcome(sum(cell_state(cell)[0] != "done" for cell in sweep.cells), jobs)


def next_stage(sweep: Sweep) -> Sweep | None:
    """The sweep read again when some of its tuned cells were waiting and their tuning runs have ended
    since (their configuration is chosen now); None when no more cells can start."""
    if not sweep.waiting or sweep.path is None:
        return None
    fresh = load_sweep(str(sweep.path))
    return fresh if len(fresh.waiting) < len(sweep.waiting) else None


def _say_waiting(sweep: Sweep, echo) -> int:
    """Say which tuned cells still wait, and why (e.g. every tuning run of their group failed); returns how
    many."""
    for cell in sweep.waiting:
        echo(f"  {cell.label} waits: {cell.waiting}")
    return len(sweep.waiting)


class CellStatus(NamedTuple):
    cell: Cell
    state: str  # one of STATES
    record: dict | None  # its run record, if it has one


@dataclass(frozen=True)
class Status:
    """``bench status``: every cell's state and record, in the sweep's order."""

    cells: list[CellStatus]

    @property
    def counts(self) -> dict[str, int]:
        """How many cells are in each state, every state listed."""
        counts = dict.fromkeys(STATES, 0)
        for cell in self.cells:
            counts[cell.state] += 1
        return counts

    @property
    def records(self) -> list[dict]:
        return [cell.record for cell in self.cells if cell.record is not None]

    @property
    def busy_s(self) -> float:
        """The wall-clock time the recorded runs took, side-by-side cells counted once (busy_seconds)."""
        return busy_seconds(self.records)

    @property
    def run_s(self) -> float:
        """The recorded runs' own wall times, added up."""
        return sum(record["wall_time_s"] or 0 for record in self.records)


def status(sweep: Sweep) -> Status:
    """Every cell's state (done / failed / running / pending) and record."""
    return Status([CellStatus(cell, *cell_state(cell)) for cell in sweep.cells])
