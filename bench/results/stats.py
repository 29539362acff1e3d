"""The ranking of one comparison context (one sweep, dataset, cost table, counting conventions and frame
setting, at one T or at one T x bits per spike): each group's accuracy with its 95 % interval, the most
accurate group, the top group (the groups not significantly worse than it), the cheapest of the top group
within 1 point and the accuracy-energy Pareto front. The distributions are scipy's; the item-level
estimates are :mod:`bench.results.items`'.

The rules, stated once (the tables, the README and ``bench compare`` quote :data:`RULES`):

* basis: *items and seeds* when every record of the context kept its test predictions and every group was
  tested on the same items under the same runs (seed, fold); otherwise *seeds* (records made before they
  kept predictions), and every text says which;
* interval: items and seeds: the accuracy is the mean over the pool's items of each item's mean outcome,
  its variance the item means' sample variance / N plus the per-run accuracies' / R, its half-width
  Welch-Satterthwaite t(0.975) times the standard error; seeds: Student t with n - 1 degrees of freedom,
  ``t(0.975, n - 1) * s / sqrt(n)``; none with a single run;
* best: the highest mean test accuracy (equal means: the cheaper, then the name);
* test against the best: items and seeds: a t-test of the difference paired on the same items and runs
  (items.difference), its p-values over the ranked groups of the context Holm-corrected as one family;
  seeds: Welch's two-sided t-test (unequal variances), uncorrected; two groups with no spread at all
  differ when their means differ (the t statistic is 0/0) and not otherwise;
* top group: the best and every ranked group whose test gives p >= 0.05 (Holm-adjusted on the items
  basis): *tied*, not significantly worse; with fewer than two runs on either side there is no test and
  the group is *untested*, never silently tied; a difference's 95 % interval is that comparison's own
  (not corrected), so it can exclude 0 where the Holm-adjusted p is still >= 0.05;
* cheapest within 1 pt: the lowest mean energy per sample among the top group's members whose mean
  accuracy is at most 1 point below the best's (the best included);
* Pareto front: the ranked groups no other dominates, i.e. none has at least their accuracy at no more
  energy, one of the two strictly;
* references: a non-spiking group (``ann``) in a context with spiking ones is the reference the question
  is asked against, not a contender: it is listed after the ranked groups with its difference and raw
  (uncorrected) p against the best, and is never the best, tied, the cheapest or on the Pareto front;
* outside design: a group whose runs lie outside their method's design range (its records'
  ``outside_design``; ``bench list`` shows the ranges) is reported after the references with its
  difference and raw p against the best, and is never ranked.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the results package imports neither numpy nor scipy
    from bench.results.items import Estimate, Runs

CONFIDENCE = 0.95
ALPHA = 0.05  # tied with the best when the p used (Holm-adjusted on the items basis) is >= ALPHA
WITHIN_PT = 1.0  # "cheapest within 1 pt of the best", in accuracy points
_EPS = 1e-9  # 0.99 - 0.98 is 0.010000000000000009: points are compared with this slack

BEST, TIED, WORSE, UNTESTED = "best", "tied", "worse", "untested"
REFERENCE = "reference"  # a non-spiking group beside spiking ones: tested against the best, never ranked
OUTSIDE = "outside design"  # a run outside its method's design range (bench list): reported, never ranked
ITEMS, SEEDS = "items and seeds", "seeds"  # what a ranking's intervals and tests cover


@functools.cache
def _t_quantile(confidence: float, dof: int) -> float:
    """Student t's two-sided ``confidence`` quantile: the tables ask for the same few thousands of times."""
    from scipy import stats  # here: importing the results package stays quick

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float | None]:
    """Mean and the half-width of its confidence interval (Student t); ``None`` for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t = _t_quantile(confidence, len(values) - 1)
    return mean, float(t * statistics.stdev(values) / math.sqrt(len(values)))


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value: it is undefined)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of equal means; ``None`` (no test) with fewer than two values on
    either side. scipy's test from the exact means and sample deviations (``ttest_ind(equal_var=False)``
    on the raw values is the same test, but reports catastrophic cancellation for identical values)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    (mean_a, sd_a), (mean_b, sd_b) = ((statistics.fmean(x), statistics.stdev(x)) for x in (a, b))
    if sd_a == 0 and sd_b == 0:
        return 1.0 if mean_a == mean_b else 0.0
    return float(
        stats.ttest_ind_from_stats(mean_a, sd_a, len(a), mean_b, sd_b, len(b), equal_var=False).pvalue
    )


def welch_difference(a: list[float], b: list[float]) -> Estimate | None:
    """Mean of ``a`` minus mean of ``b`` with Welch's standard error and Welch-Satterthwaite degrees of
    freedom (the interval of the seeds basis); ``None`` with fewer than two values on either side."""
    from bench.results.items import combined

    if len(a) < 2 or len(b) < 2:
        return None
    parts = [(statistics.variance(x) / len(x), len(x) - 1) for x in (a, b)]
    return combined(statistics.fmean(a) - statistics.fmean(b), parts, runs=min(len(a), len(b)))


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For each ``(accuracy, energy)`` point, whether no other point dominates it (at least as accurate at
    no more energy, one of the two strictly)."""
    return [
        not any(
            a >= acc and e <= energy and (a > acc or e < energy) for j, (a, e) in enumerate(points) if j != i
        )
        for i, (acc, energy) in enumerate(points)
    ]


@dataclass
class Row:
    """One group of a context with its statistics; accuracies are fractions (0.9853), energy in µJ."""

    group: object  # a bench.results.aggregate.Group
    name: str
    accuracies: list[float]  # per run (seed, fold), as recorded
    accuracy: float  # the ranked mean: over the pool's items (items basis) or over the runs (seeds)
    ci: float | None  # the half-width of its 95 % interval (None: a single run)
    energy: float | None
    verdict: str = WORSE
    p: float | None = None  # raw p against the best (None: the best itself, or untested)
    p_holm: float | None = None  # Holm-adjusted over the ranked rows (items basis only)
    difference: Estimate | None = None  # this row minus the best (fractions), with its interval
    basis: str = SEEDS
    pareto: bool = False
    place: int = 0  # 1: the best

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def p_used(self) -> float | None:
        """The p its verdict rests on: Holm-adjusted where there is one (ranked rows, items basis)."""
        return self.p_holm if self.p_holm is not None else self.p

    @property
    def holm(self) -> bool:
        return self.p_holm is not None


@dataclass
class Ranking:
    """A context's groups, most accurate first, each with its verdict against the best; ``basis``: what
    the intervals and tests cover, ``why`` the reason when it is seeds only."""

    rows: list[Row] = field(default_factory=list)
    basis: str = SEEDS
    why: str = ""

    @property
    def best(self) -> Row | None:
        return next((r for r in self.rows if r.verdict == BEST), None)

    def having(self, verdict: str) -> list[Row]:
        return [r for r in self.rows if r.verdict == verdict]

    @property
    def top(self) -> list[Row]:
        """The top group: the best and the rows not significantly worse than it, most accurate first."""
        return [r for r in self.rows if r.verdict in (BEST, TIED)]

    @property
    def cheapest(self) -> Row | None:
        """The cheapest member of the top group within :data:`WITHIN_PT` points of the best (``None``
        without energies)."""
        if self.best is None:
            return None
        near = [
            r
            for r in self.top
            if r.energy is not None and 100 * (self.best.accuracy - r.accuracy) <= WITHIN_PT + _EPS
        ]
        return min(near, key=lambda r: (r.energy, -r.accuracy, r.name), default=None)


def _item_runs(rows: list[Row]) -> tuple[dict[int, Runs] | None, str]:
    """Each row's runs of item outcomes (by ``id``), when every record kept its predictions and every row
    was tested on the same items under the same runs; else None and why not."""
    from bench.results import items

    if not rows:
        return None, "no rows"
    runs = {}
    try:
        for row in rows:
            found = items.outcomes(row.group.records)
            if found is None:
                return None, "not every record kept its test predictions"
            runs[id(row)] = found
        for row in rows[1:]:
            items.check_paired(runs[id(row)], runs[id(rows[0])])
    except ValueError as error:
        return None, str(error)
    return runs, ""


def rank(groups: list) -> Ranking:
    """Rank the groups of ONE comparison context (the caller keeps contexts apart) by mean accuracy and
    test each against the best; non-spiking groups beside spiking ones are references and runs outside
    their method's design are reported apart (module docstring)."""
    from bench.results import items

    rows = []
    for g in groups:
        accuracies = g.values("test_acc")
        if not accuracies:
            continue
        accuracy, ci = mean_ci(accuracies)
        rows.append(Row(g, g.name, accuracies, accuracy, ci, g.mean("energy_uj")))
    runs, why = _item_runs(rows)
    basis = ITEMS if runs is not None else SEEDS
    for row in rows:
        row.basis = basis
        if runs is not None:
            estimate = items.accuracy(runs[id(row)])
            row.accuracy = float(runs[id(row)].item_means().mean())
            row.ci = estimate.half_width if estimate is not None else None
    rows.sort(key=lambda r: (-r.accuracy, math.inf if r.energy is None else r.energy, r.name))
    outside = [r for r in rows if r.group.outside_design]
    rows = [r for r in rows if not r.group.outside_design]
    spiking = [r for r in rows if r.group.spiking]
    ranked, references = (spiking, [r for r in rows if not r.group.spiking]) if spiking else (rows, [])
    best = ranked[0] if ranked else None
    for row in ranked[1:] + references + outside:
        if best is None:
            break
        if runs is not None:
            row.difference = items.difference(runs[id(row)], runs[id(best)])
            row.p = None if row.difference is None else items.p_value(row.difference)
        else:
            row.difference = welch_difference(row.accuracies, best.accuracies)
            row.p = welch_p(row.accuracies, best.accuracies)
    if runs is not None:  # one family: the ranked rows' comparisons with the best
        for row, adjusted in zip(ranked[1:], items.holm([r.p for r in ranked[1:]]), strict=True):
            row.p_holm = adjusted
    for i, row in enumerate(ranked):
        row.place = i + 1
        if i == 0:
            row.verdict = BEST
            continue
        row.verdict = UNTESTED if row.p_used is None else TIED if row.p_used >= ALPHA else WORSE
    apart = [(row, REFERENCE) for row in references] + [(row, OUTSIDE) for row in outside]
    for i, (row, verdict) in enumerate(apart, start=len(ranked) + 1):  # listed after the ranked groups
        row.place, row.verdict = i, verdict
    costed = [r for r in ranked if r.energy is not None]
    for row, on_front in zip(costed, pareto_front([(r.accuracy, r.energy) for r in costed]), strict=True):
        row.pareto = on_front
    return Ranking(ranked + references + outside, basis, why)


RULES = (
    "Accuracy is mean ± the half-width of its 95 % interval; the rows of one T are ranked on one basis, "
    "which each table names. *Items and seeds* (every run kept its test predictions and all rows were "
    "tested on the same items under the same seeds and folds): the mean over the test items of each item's "
    "mean outcome, its variance the items' part (variance of the item means / N) plus the runs' part "
    "(variance of the per-run accuracies / R), Welch-Satterthwaite t; each row against the most accurate: "
    "a t-test of the difference paired on the same items and runs, the p-values of one T's ranked rows "
    "Holm-corrected as one family (*Holm p*). *Seeds* (records without test predictions): Student t over "
    "seeds (n - 1 degrees of freedom; no ± when n = 1) and Welch's two-sided t-test against the most "
    "accurate, uncorrected (*p*). At each T, **bold** is the most accurate row (highest mean); *tied*: not "
    "significantly worse, p ≥ 0.05 (Holm-adjusted on the items basis), so in the top group with it; "
    "*untested*: fewer than 2 runs on either side, so no test (never counted as tied); ◆: on the "
    "accuracy-energy Pareto front at that T (no other row is at least as accurate at no more energy); "
    "*reference*: a non-spiking method (`ann`) beside spiking ones, with its raw p against the best, not "
    "ranked; *outside design*: runs outside their method's design range (`bench list`), with their raw p "
    "against the best, not ranked."
)
