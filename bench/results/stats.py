"""Statistics over seeds, inside one comparison context (one sweep, dataset, T, cost table, counting
conventions and frame setting): the mean with its 95 % confidence interval, the most accurate group, the
groups statistically tied with it, the cheapest group within 1 point of it and the accuracy-energy Pareto
front. The distributions are scipy's; nothing here is hand-written statistics.

The rules, stated once (the tables and ``bench compare`` quote them):

* interval: Student t with n - 1 degrees of freedom, half-width ``t(0.975, n - 1) * s / sqrt(n)``; none
  for n = 1;
* best: the highest mean test accuracy (equal means: the cheaper, then the name);
* tied: Welch's two-sided t-test (unequal variances) against the best gives p >= 0.05; with fewer than two
  seeds on either side there is no test and the group is *untested*, never silently tied; two groups with
  no spread at all are tied when their means are equal (the t statistic is 0/0) and not otherwise;
* cheapest within 1 pt: the lowest mean energy per sample among the groups whose mean accuracy is at most
  1 point below the best's (the best included);
* Pareto front: the groups no other group dominates, i.e. none has at least their accuracy at no more
  energy, one of the two strictly;
* references: a non-spiking group (``ann``) in a context with spiking ones is the reference the question
  is asked against, not a contender: it is listed after the ranked groups with Welch's p against the
  best, and is never the best, tied, the cheapest within 1 pt or on the Pareto front.
* outside design: a group whose runs lie outside their method's design range (its records'
  ``outside_design``; ``bench list`` shows the ranges) is reported after the references with Welch's p
  against the best, and is never ranked: not the best, tied, the cheapest or on the Pareto front.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

CONFIDENCE = 0.95
ALPHA = 0.05  # tied with the best when Welch's p >= ALPHA
WITHIN_PT = 1.0  # "cheapest within 1 pt of the best", in accuracy points
_EPS = 1e-9  # 0.99 - 0.98 is 0.010000000000000009: points are compared with this slack

BEST, TIED, WORSE, UNTESTED = "best", "tied", "worse", "untested"
REFERENCE = "reference"  # a non-spiking group beside spiking ones: tested against the best, never ranked
OUTSIDE = "outside design"  # a run outside its method's design range (bench list): reported, never ranked


def mean_ci(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float | None]:
    """Mean and the half-width of its confidence interval (Student t); ``None`` for one value."""
    from scipy import stats  # here: importing the results package stays quick

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    t = stats.t.ppf(0.5 + confidence / 2, len(values) - 1)
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
    accuracies: list[float]
    accuracy: float
    ci: float | None
    energy: float | None
    verdict: str = WORSE
    p: float | None = None  # Welch's p against the best (None: the best itself, or untested)
    pareto: bool = False
    place: int = 0  # 1: the best

    @property
    def n(self) -> int:
        return len(self.accuracies)


@dataclass
class Ranking:
    """A context's groups, most accurate first, each with its verdict against the best."""

    rows: list[Row] = field(default_factory=list)

    @property
    def best(self) -> Row | None:
        return next((r for r in self.rows if r.verdict == BEST), None)

    def having(self, verdict: str) -> list[Row]:
        return [r for r in self.rows if r.verdict == verdict]

    @property
    def cheapest(self) -> Row | None:
        """The cheapest row within :data:`WITHIN_PT` points of the best (``None`` without energies)."""
        if self.best is None:
            return None
        near = [
            r
            for r in self.rows
            if r.verdict not in (REFERENCE, OUTSIDE)
            and r.energy is not None
            and 100 * (self.best.accuracy - r.accuracy) <= WITHIN_PT + _EPS
        ]
        return min(near, key=lambda r: (r.energy, -r.accuracy, r.name), default=None)


def rank(groups: list) -> Ranking:
    """Rank the groups of ONE comparison context (the caller keeps contexts apart) by mean accuracy and
    test each against the best; non-spiking groups beside spiking ones are references (module docstring)."""
    rows = []
    for g in groups:
        accuracies = g.values("test_acc")
        if not accuracies:
            continue
        accuracy, ci = mean_ci(accuracies)
        rows.append(Row(g, g.name, accuracies, accuracy, ci, g.mean("energy_uj")))
    rows.sort(key=lambda r: (-r.accuracy, math.inf if r.energy is None else r.energy, r.name))
    outside = [r for r in rows if r.group.outside_design]
    rows = [r for r in rows if not r.group.outside_design]
    spiking = [r for r in rows if r.group.spiking]
    ranked, references = (spiking, [r for r in rows if not r.group.spiking]) if spiking else (rows, [])
    for i, row in enumerate(ranked):
        row.place = i + 1
        if i == 0:
            row.verdict = BEST
            continue
        row.p = welch_p(row.accuracies, ranked[0].accuracies)
        row.verdict = UNTESTED if row.p is None else TIED if row.p >= ALPHA else WORSE
    apart = [(row, REFERENCE) for row in references] + [(row, OUTSIDE) for row in outside]
    for i, (row, verdict) in enumerate(apart, start=len(ranked) + 1):  # listed after the ranked groups
        row.place, row.verdict = i, verdict
        row.p = welch_p(row.accuracies, ranked[0].accuracies) if ranked else None
    costed = [r for r in ranked if r.energy is not None]
    for row, on_front in zip(costed, pareto_front([(r.accuracy, r.energy) for r in costed]), strict=True):
        row.pareto = on_front
    return Ranking(ranked + references + outside)


RULES = (
    "Accuracy is mean ± the half-width of its 95 % confidence interval over seeds (Student t, n - 1 "
    "degrees of freedom; no ± when n = 1). At each T, **bold** is the most accurate row (highest mean); "
    "*tied*: Welch's two-sided t-test against it gives p ≥ 0.05; *untested*: fewer than 2 seeds on either "
    "side, so no test (never counted as tied); ◆: on the accuracy-energy Pareto front at that T (no other "
    "row is at least as accurate at no more energy); *reference*: a non-spiking method (`ann`) beside "
    "spiking ones, with Welch's p against the best, not ranked; *outside design*: runs outside their "
    "method's design range (`bench list`), with Welch's p against the best, not ranked."
)
