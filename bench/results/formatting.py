"""How numbers and markers read wherever results are shown: the tables (markdown and CSV),
``results/README.md`` and ``bench compare``. One module, so that a number reads the same in all of them:
mean ± the half-width of its 95 % confidence interval, accuracy in percent (a ranked row's on the basis its
ranking used), **bold** for the best, ◆ for the Pareto front, the p a verdict rests on (*Holm p* where it
is Holm-adjusted), differences in points with their interval, ``-`` for no value."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.results.stats import BEST, ITEMS, OUTSIDE, REFERENCE, TIED, UNTESTED, Row, mean_ci

#: The cell of a value that is not there (no record has it, no test was made).
MISSING = "-"
#: A row on the accuracy-energy Pareto front of its T.
PARETO = "◆"


@dataclass(frozen=True)
class Column:
    key: str  # key in record["metrics"]
    header: str
    scale: float = 1.0
    digits: int = 2
    cost: bool = False  # plotted against accuracy when present


ACCURACY = Column("test_acc", "accuracy (%)", scale=100.0)
ENERGY = Column("energy_uj", "energy/sample (µJ)", digits=3, cost=True)
COLUMNS = (
    ACCURACY,
    ENERGY,
    Column("ann_snn_energy_ratio", "ANN/SNN energy", digits=2),
    Column("acs", "ACs", digits=0, cost=True),
    Column("macs", "MACs", digits=0, cost=True),
    Column("firing_rate", "firing rate", digits=4),
    Column("storage_kib", "storage (KiB)", digits=1, cost=True),
    Column("throughput_sps", "throughput (samples/s)", digits=0),
    Column("params", "parameters", digits=0, cost=True),
)


def present_columns(groups: list) -> list[Column]:
    """The columns some group has a value of."""
    return [c for c in COLUMNS if any(g.values(c.key) for g in groups)]


def format_cell(column: Column, values: list[float], spread: bool = True) -> str:
    """Mean ± the half-width of its 95 % confidence interval (``spread``; none for n = 1), or the mean."""
    if not values:
        return MISSING
    mean, ci = mean_ci([v * column.scale for v in values])
    text = f"{mean:,.{column.digits}f}"
    return text if ci is None or not spread else f"{text} ± {ci:,.{column.digits}f}"


def row_accuracy(row: Row) -> str:
    """A ranked row's accuracy as its table cell reads it: ``98.57 ± 0.29`` (%; the mean alone for a single
    run), the interval over items and seeds or over seeds as its ranking's basis is."""
    if row.basis != ITEMS:
        return format_cell(ACCURACY, row.accuracies)
    text = f"{ACCURACY.scale * row.accuracy:,.{ACCURACY.digits}f}"
    return text if row.ci is None else f"{text} ± {ACCURACY.scale * row.ci:,.{ACCURACY.digits}f}"


def row_difference(row: Row, unit: str = "") -> str:
    """A row's difference to the best in points with its 95 % interval: ``-0.30 (-0.62 to +0.02)``, with
    ``unit`` after the difference (``-0.30 pt (...)``); ``-`` for the best itself or without a test."""
    d = row.difference
    if d is None:
        return MISSING
    low, high = (100 * end for end in d.interval)
    return f"{100 * d.mean:+.2f}{unit} ({low:+.2f} to {high:+.2f})"


def row_energy(row: Row) -> str:
    """A ranked row's mean energy per sample (µJ), ``-`` without one."""
    return format_cell(ENERGY, row.group.values(ENERGY.key), spread=False)


def accuracy_cell(group, row: Row | None) -> str:
    """A table's accuracy cell (its ranking's basis): **bold** for the best of its T."""
    if row is None:
        return format_cell(ACCURACY, group.values(ACCURACY.key))
    return f"**{row_accuracy(row)}**" if row.verdict == BEST else row_accuracy(row)


def format_p(p: float | None) -> str:
    """``0.205``, ``< 0.001``, or ``-`` without a test."""
    return MISSING if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p: float | None, holm: bool = False) -> str:
    """``p = 0.205`` or ``p < 0.001`` in a sentence, ``Holm p = 0.410`` when Holm-adjusted (``-`` without a
    test)."""
    if p is None:
        return MISSING
    name = "Holm p" if holm else "p"
    return f"{name} {format_p(p)}" if p < 0.001 else f"{name} = {format_p(p)}"


def row_p(row: Row) -> str:
    """The p a row's verdict rests on, in a sentence (:func:`p_clause`)."""
    return p_clause(row.p_used, row.holm)


RANK_HEADERS = ["vs best at T", "Pareto"]


def rank_cells(row: Row | None) -> list[str]:
    """The verdict against the best of the row's T (the p it rests on: Holm-adjusted on the items basis)
    and the Pareto marker."""
    if row is None:
        return [MISSING, MISSING]
    p = row_p(row)
    verdict = {
        BEST: "best",
        TIED: f"tied, {p}",
        UNTESTED: "untested (n < 2)",
        REFERENCE: f"reference, {p}" if row.p is not None else "reference",
        OUTSIDE: f"outside design, {p}" if row.p is not None else "outside design",
    }.get(row.verdict, p)
    return [verdict, PARETO if row.pareto else ""]


@dataclass(frozen=True)
class Relative:
    """A column comparing a row with its method's reference variant (the sweep's ``reference``)."""

    key: str
    header: str
    difference: bool  # points of difference (accuracy) or a ratio (costs)


RELATIVE = (
    Relative("test_acc", "Δ accuracy vs {ref} (pt)", True),
    Relative("energy_uj", "energy vs {ref}", False),
    Relative("storage_kib", "storage vs {ref}", False),
)


def relative_cells(group, base) -> list[str]:
    """``group``'s means against those of ``base``, its method's reference row
    (:func:`bench.results.aggregate.reference_group`; ``-`` for the reference itself or without one)."""
    cells = []
    for column in RELATIVE:
        ours, theirs = group.mean(column.key), base.mean(column.key) if base else None
        if (
            base is None
            or ours is None
            or theirs is None
            or base is group
            or (not column.difference and not theirs)
        ):
            cells.append(MISSING)
        elif column.difference:
            cells.append(f"{100 * (ours - theirs):+.2f}")
        else:
            cells.append(f"{ours / theirs:.3f}")
    return cells


def csv_number(value: float | None) -> object:
    """A CSV number: statistics from scipy to 10 significant digits, so that they do not depend on the
    last bits of a library's arithmetic."""
    return "" if value is None else float(f"{value:.10g}")


def facts_of(record: dict) -> dict:
    """A record's mechanism facts: what its method reports of how its mechanisms acted (e.g. the layers
    albsnn binarised, the learnt time constants), ``run_details()["facts"]``; ``{}`` without them."""
    details = record.get("method_details")
    return (details.get("facts") or {}) if isinstance(details, dict) else {}


def fact_keys(groups: list) -> list[str]:
    """The mechanism facts some row's records carry, in the order they first appear."""
    keys: dict[str, None] = {}
    for group in groups:
        for record in group.records:
            keys.update(dict.fromkeys(facts_of(record)))
    return list(keys)


def fact_cell(group, key: str) -> str:
    """A mechanism fact over a row's runs: numbers as mean ± 95 % CI (4 significant digits), texts and
    true/false as each seed's value in seed order (``net.8 / net.12 / net.8``): a choice that differs
    between seeds shows. A null fact (not applicable to that run, e.g. no choice made) is left out."""
    records = sorted(group.records, key=lambda r: (r.get("seed") is None, r.get("seed") or 0))
    values = [facts[key] for r in records if (facts := facts_of(r)).get(key) is not None]
    if not values:
        return MISSING
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        mean, ci = mean_ci([float(v) for v in values])
        return f"{mean:.4g}" if ci is None else f"{mean:.4g} ± {ci:.2g}"
    return " / ".join(str(v) for v in values)


#: An absolute path in an error text (``/home/me/x``, ``~/x``, ``C:\\Users\\me``), never part of a URL.
_PATH = re.compile(r"(?<![\w:/.~-])(?:~?/|[A-Za-z]:\\)[^\s'\"]+")
#: The longest published error summary, in characters.
ERROR_CHARS = 200


def error_summary(error: str | None) -> str:
    """A failed run's error as the tables publish it: its first line's first sentence, absolute paths
    replaced by ``<path>``; the record keeps the whole text, but a published page should carry neither
    someone's home folder nor a login prompt's instructions."""
    if not error or not error.strip():
        return "no error recorded"
    line = error.strip().splitlines()[0]
    first = re.split(r"(?<=[.!?])\s+", line, maxsplit=1)[0]

    def hidden(match: re.Match) -> str:
        path = match.group(0)
        kept = len(path.rstrip(".,;:)]"))  # the sentence's punctuation stays
        return "<path>" + path[kept:]

    text = _PATH.sub(hidden, first)
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1].rstrip() + "…"
