"""``bench compare``: the ranking of the published tables and the README's answer, read from the run
records, for one dataset (and optionally one T and one sweep): for users who run their own sweeps. Groups
are ranked only inside one comparison context (sweep, dataset, frames, cost table, conventions, and T or
T x bits per spike), exactly as in the tables and the answer, by :func:`bench.results.stats.rank`; the
records are grouped per sweep before anything is filtered, so labels and numbers are the tables'. One-off
runs (``bench run``) are compared only when asked for (``sweep="runs"``), never beside the sweeps."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.results.aggregate import (
    SINGLE_RUNS,
    Group,
    Section,
    by_bit_steps,
    by_setting,
    by_time_steps,
    sections,
)
from bench.results.formatting import MISSING, p_clause, row_accuracy, row_energy
from bench.results.pricing import AS_RECORDED, Pricing, priced_records
from bench.results.records import load_records
from bench.results.stats import ITEMS, OUTSIDE, REFERENCE, TIED, UNTESTED, WORSE, Ranking, Row, rank


class NothingToCompare(BenchError):
    """No ok record matches the dataset, T or sweep asked for."""


@dataclass
class Comparison:
    """One comparison context's groups, ranked: at one T, or (``bit_steps``) at one T x bits per spike."""

    section: Section
    groups: list[Group]
    ranking: Ranking
    bit_steps: int | None = None

    @property
    def title(self) -> str:
        g = self.groups[0]
        track = f"{self.section.track} track" if self.section.track else "no track recorded"
        where = "`bench run`" if self.section.name == SINGLE_RUNS else f"sweep {self.section.name}"
        if self.bit_steps is not None:
            steps = ", ".join(str(t) for t in sorted({g.time_steps for g in self.groups}))
            return f"{g.dataset} at T x bits per spike = {self.bit_steps} (T = {steps}): {where} ({track})"
        return f"{g.dataset} at T = {g.time_steps}: {where} ({track})"

    @property
    def setting(self) -> str:
        g = self.groups[0]
        frames = g.frames or "none (static data)"
        return f"cost table {g.cost_table or '-'}; conventions {g.conventions}; frames {frames}"

    @property
    def basis(self) -> str:
        """What the intervals and tests cover, and why seeds only where they do."""
        why = "" if self.ranking.basis == ITEMS else f" ({self.ranking.why})"
        return f"intervals and tests over {self.ranking.basis}{why}"

    @property
    def test(self) -> str:
        """The test a verdict rests on: ``Holm p`` (items and seeds) or ``Welch p`` (seeds)."""
        return "Holm p" if self.ranking.basis == ITEMS else "Welch p"

    @property
    def answer(self) -> str:
        """One line: the best, those tied with it (and untested), the cheapest within 1 pt."""
        best, cheapest = self.ranking.best, self.ranking.cheapest
        outside = "".join(
            f" Outside its method's design, not ranked: {describe(r)} ({r.group.outside_design_reason})."
            for r in self.ranking.having(OUTSIDE)
        )
        if best is None:
            return "No run inside its method's design: nothing is ranked." + outside
        tied, untested = self.ranking.having(TIED), self.ranking.having(UNTESTED)
        text = f"Most accurate: {describe(best)}"
        if tied or self.ranking.having(WORSE) or not untested:  # "none": some row was tested, or none is
            text += f"; tied with it ({self.test} ≥ 0.05): {', '.join(r.name for r in tied) or 'none'}"
        text += f"; untested against it (n < 2): {', '.join(r.name for r in untested)}" if untested else ""
        text += (
            f"; cheapest of them within 1 pt: {describe(cheapest) if cheapest else 'no energies recorded'}."
        )
        raw = "paired" if self.ranking.basis == ITEMS else "Welch"
        references = self.ranking.having(REFERENCE)
        return (
            text
            + "".join(
                f" Reference, not ranked: {describe(r)}, "
                + (f"{raw} {p_clause(r.p)}." if r.p is not None else "untested (n < 2).")
                for r in references
            )
            + outside
        )


def describe(row: Row) -> str:
    """``name (98.57 ± 0.29 %, 1.234 µJ)``: the row's accuracy and energy as its table cells read, and
    whether its runs ended at chance."""
    energy = row_energy(row)
    n, chance = len(row.group.records), row.group.at_chance
    said = "" if not chance else ", at chance" if chance == n else f", {chance} of {n} runs at chance"
    return f"{row.name} ({row_accuracy(row)} %{'' if energy == MISSING else f', {energy} µJ'}{said})"


def _missing(what: str, value, known: list, results: Path) -> NothingToCompare:
    """The error for a ``value`` no record has: those that have records, and the close matches."""
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close and isinstance(value, str) else ""
    return NothingToCompare(
        f"No ok run record in {results / 'runs'} for {what}.{hint} Those with records: "
        f"{', '.join(str(k) for k in known) or 'none'}. `bench compare` ranks the records that runs and "
        "sweeps leave (the ones `bench tables` publishes): run those first, or pass --results DIR."
    )


def comparisons(
    results: str | Path,
    dataset: str,
    time_steps: int | None = None,
    sweep: str | None = None,
    pricing: Pricing = AS_RECORDED,
) -> list[Comparison]:
    """The ranked comparison contexts of ``dataset`` (at ``time_steps``, in ``sweep``), in README order,
    priced under ``pricing`` (default: each record's own): per setting, each T, then (without
    ``time_steps``) each T x bits per spike that the records state and that is not one T's spiking rows
    alone (that T's comparison ranks them already)."""
    results = Path(results)
    everything = [s for s in sections(priced_records(load_records(results), pricing)) if s.groups]
    # one-off runs (scratch work) are compared only when asked for by name
    published = [s for s in everything if s.published or sweep == SINGLE_RUNS]
    on_dataset = [s for s in published if any(g.dataset == dataset for g in s.groups)]
    if not on_dataset:
        error = _missing(
            f"dataset {dataset}", dataset, sorted({g.dataset for s in published for g in s.groups}), results
        )
        if any(g.dataset == dataset for s in everything for g in s.groups):
            error = NothingToCompare(
                f"{results / 'runs'} holds, for dataset {dataset}, only records of `bench run`, compared "
                f"only when asked for: --sweep {SINGLE_RUNS}. One-off runs are scratch work, never ranked "
                "beside the sweeps."
            )
        raise error
    if sweep is not None:
        known = [s.name for s in on_dataset]
        on_dataset = [s for s in on_dataset if s.name == sweep]
        if not on_dataset:
            raise _missing(f"dataset {dataset} in sweep {sweep}", sweep, known, results)
    found = []
    for section in on_dataset:
        groups = [g for g in section.groups if g.dataset == dataset]
        for setting in by_setting(groups):
            for context in by_time_steps(setting):
                ranking = rank(context)
                if ranking.rows and time_steps in (None, context[0].time_steps):
                    found.append(Comparison(section, context, ranking))
            for context in by_bit_steps(setting) if time_steps is None else []:  # equal information
                t = context[0].time_steps
                same_t = [g for g in setting if g.spiking and g.time_steps == t]
                if all(g.time_steps == t for g in context) and len(same_t) == len(context):
                    continue  # the spiking rows of one T: that T's comparison already ranks them
                ranking = rank(context)
                if ranking.rows:
                    found.append(Comparison(section, context, ranking, context[0].bit_steps))
    if not found:
        steps = sorted({g.time_steps for s in on_dataset for g in s.groups if g.dataset == dataset})
        raise _missing(f"dataset {dataset} at T = {time_steps}", time_steps, steps, results)
    return found
