"""Statistics over test items and runs: what a row's accuracy, and the difference between two rows, are
worth when both the test set (a sample of items) and training (a sample of seeds, and with k-fold
cross-validation of folds) are random.

A row's records are *runs*, each keyed by its seed and its fold (``record["seed"]``,
``config.data.fold``; None without folds), and each tested a set of items: those its ``test_predictions``
name by id (indices into the dataset's pool, :func:`bench.results.predictions.ids`), or else the test set
in order (positions 0..N-1). The rows' *pool* is every item some run tested. Two layouts occur, and one
model covers both and anything between: the same items in every run (a fixed test set, S seeds), and
disjoint folds (k runs, each item tested by one run; repeated k-fold tests each item once per repetition).
The rules, stated once:

* **accuracy.** Each item's mean outcome over the runs that tested it, averaged over the pool's N items.
* **variance from both sources.** The items' part, the sample variance of the item means divided by N
  (N - 1 degrees of freedom), plus the runs' part, the sample variance of the R per-run accuracies divided
  by R (R - 1 degrees of freedom). Each part also holds a share of the other's noise (the item means carry
  seed noise, fold accuracies carry item noise), so the sum errs on the side of more uncertainty.
* **paired on the same items.** The difference between rows A and B, which must have the same run keys
  and test the same items under each key (the records' ids and labels show it; else a ValueError), is
  ``mean_i d_i`` with ``d_i`` the difference of the rows' mean outcomes on item i: what the items share
  (an easy or a hard digit) cancels. Its variance is the variance of ``d_i`` over N, plus the variance over
  run keys of ``acc_A,r - acc_B,r`` over R: paired by run key, so a fold's difficulty cancels too.
* **degrees of freedom and test.** Welch-Satterthwaite over the parts; a two-sided t-test of a zero
  difference, and the 95 % interval from the same t. With fewer than two runs the runs' variance cannot
  be estimated: no estimate and no test (*untested*), as in :mod:`bench.results.stats`.
* **many comparisons.** The p-values of one table's comparisons are corrected by Holm's step-down method.

Why no bootstrap: with 3 seeds a bootstrap over seeds has 10 distinct resamples, and its variance of the
mean is the plug-in one, (S - 1) / S = 2/3 of the unbiased seed variance: it shrinks the part that
matters most. The analytic two-part variance uses the unbiased estimates, needs no random numbers and so
reproduces byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95

#: A run's key: (seed, fold); either may be None (no seed recorded, no folds).
RunKey = tuple[int | None, int | None]


def run_key(record: dict) -> RunKey:
    """The run a record is: its seed and its fold (``config.data.fold``; None without folds)."""
    data = (record.get("config") or {}).get("data") or {}
    return record.get("seed"), data.get("fold")


def _sort_key(key: RunKey) -> tuple:
    return tuple((part is None, part or 0) for part in key)


@dataclass(frozen=True)
class Runs:
    """A row's outcomes: ``outcome[r, j]`` is 1 when run ``keys[r]`` classified pool item ``items[j]``
    correctly, 0 when it did not, NaN when it did not test it; ``labels[j]`` is the item's class."""

    keys: tuple[RunKey, ...]
    items: np.ndarray  # the pool's item ids, ascending (positions when the records name none)
    outcome: np.ndarray  # float [runs, items]
    labels: np.ndarray

    @classmethod
    def from_matrix(cls, correct: np.ndarray, labels: np.ndarray | None = None) -> Runs:
        """Runs (seeds 0..S-1, no folds) that all tested the same items: ``correct[s, i]``."""
        correct = np.asarray(correct, dtype=bool)
        labels = np.zeros(correct.shape[1], dtype=np.int64) if labels is None else np.asarray(labels)
        keys = tuple((s, None) for s in range(correct.shape[0]))
        return cls(keys, np.arange(correct.shape[1]), correct.astype(float), labels)

    @property
    def tested(self) -> np.ndarray:
        """Which run tested which item (bool ``[runs, items]``)."""
        return ~np.isnan(self.outcome)

    def item_means(self) -> np.ndarray:
        """Each pool item's mean outcome over the runs that tested it."""
        return np.nanmean(self.outcome, axis=0)

    def run_accuracies(self) -> np.ndarray:
        """Each run's accuracy over the items it tested."""
        return np.nanmean(self.outcome, axis=1)


def outcomes(records: list[dict]) -> Runs | None:
    """The runs of a row's records; None when a record has no predictions (made before records kept
    them). Raises ValueError when the records cannot be one row's runs: two with the same run key, an item
    tested twice by one run, one item with two labels, or some runs naming their items and others not."""
    from bench.results import predictions

    entries = [record.get("test_predictions") for record in records]
    if not entries or any(entry is None for entry in entries):
        return None
    keys = [run_key(record) for record in records]
    if len(set(keys)) < len(keys):
        raise ValueError("two runs of one row have the same seed and fold")
    named = [predictions.ids(entry) for entry in entries]
    if len({ids is None for ids in named}) > 1:
        raise ValueError("some runs of one row name their test items (ids) and some do not")
    decoded = [predictions.decode(entry) for entry in entries]
    if named[0] is None:  # the test set in order: the same items in every run, or the labels differ
        labels = decoded[0][1]
        if any(len(other) != len(labels) or (other != labels).any() for _, other in decoded):
            raise ValueError("the runs of one row were tested on different items (their labels differ)")
        named = [np.arange(len(labels))] * len(decoded)
    pool = np.unique(np.concatenate(named))
    outcome = np.full((len(records), len(pool)), np.nan)
    labels = np.full(len(pool), -1, dtype=np.int64)
    for r, (ids, (predicted, truth)) in enumerate(zip(named, decoded, strict=True)):
        if len(ids) == 0 or len(np.unique(ids)) < len(ids):
            raise ValueError(f"run {keys[r]} of one row tested no item, or names one twice")
        where = np.searchsorted(pool, ids)
        known = labels[where] >= 0
        if (labels[where][known] != truth[known]).any():
            raise ValueError("the runs of one row were tested on different items (their labels differ)")
        labels[where] = truth
        outcome[r, where] = predicted == truth
    order = sorted(range(len(keys)), key=lambda r: _sort_key(keys[r]))
    return Runs(tuple(keys[r] for r in order), pool, outcome[order], labels)


@dataclass(frozen=True)
class Estimate:
    """A mean (an accuracy or a difference, as a fraction) with its variance, Welch-Satterthwaite degrees
    of freedom and the half-width of its t interval; ``items`` and ``runs``: the N and R it rests on."""

    mean: float
    variance: float
    dof: float
    half_width: float
    items: int = 0
    runs: int = 0

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - self.half_width, self.mean + self.half_width


def combined(mean: float, parts: list[tuple[float, float]], items: int = 0, runs: int = 0) -> Estimate:
    """``mean`` with the variance ``sum(v)`` of independent ``parts`` (v, degrees of freedom) and its
    Welch-Satterthwaite degrees of freedom."""
    from scipy import stats  # here: importing the results package stays quick

    variance = float(sum(v for v, _ in parts))
    if variance == 0:
        return Estimate(mean, 0.0, float("inf"), 0.0, items, runs)
    dof = variance**2 / sum(v**2 / df for v, df in parts if v > 0)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * variance**0.5
    return Estimate(mean, variance, float(dof), half, items, runs)


def _part(values: np.ndarray) -> tuple[float, float]:
    """The variance of the mean of ``values`` (sample variance / n) and its n - 1 degrees of freedom."""
    return float(values.var(ddof=1)) / len(values), len(values) - 1


def accuracy(runs: Runs) -> Estimate | None:
    """A row's accuracy (module docstring); None with fewer than two runs or two items."""
    n_runs, n_items = runs.outcome.shape
    if n_runs < 2 or n_items < 2:
        return None
    item_means = runs.item_means()
    parts = [_part(item_means), _part(runs.run_accuracies())]
    return combined(float(item_means.mean()), parts, n_items, n_runs)


def check_paired(a: Runs, b: Runs) -> None:
    """Raise ValueError unless A and B have the same runs (seed, fold) and tested the same items, with the
    same labels, under each: what pairing them needs."""
    if a.keys != b.keys:
        raise ValueError(f"paired rows must have the same runs (seed, fold): {a.keys} and {b.keys}")
    if (
        a.outcome.shape != b.outcome.shape
        or (a.items != b.items).any()
        or (a.tested != b.tested).any()
        or (a.labels != b.labels).any()
    ):
        raise ValueError(
            f"paired rows must share their test items run by run: {a.outcome.shape[1]} and "
            f"{b.outcome.shape[1]} items, or as many tested on other items or labels"
        )


def difference(a: Runs, b: Runs) -> Estimate | None:
    """Accuracy of A minus that of B, paired on the same items and by run key (module docstring); None
    with fewer than two runs or two items. Raises ValueError when the rows' runs or items differ."""
    check_paired(a, b)
    n_runs, n_items = a.outcome.shape
    if n_runs < 2 or n_items < 2:
        return None
    d = a.item_means() - b.item_means()
    parts = [_part(d), _part(a.run_accuracies() - b.run_accuracies())]
    return combined(float(d.mean()), parts, n_items, n_runs)


def p_value(estimate: Estimate) -> float:
    """Two-sided p of a zero difference (the t-test of the module docstring)."""
    from scipy import stats

    if estimate.variance == 0:
        return 1.0 if estimate.mean == 0 else 0.0
    t = abs(estimate.mean) / estimate.variance**0.5
    return float(2 * stats.t.sf(t, estimate.dof))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of one family of p-values (``None``, no test, stays ``None`` and does
    not count): the k-th smallest of m becomes ``max over j <= k of min(1, (m - j + 1) p_(j))``."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(tested)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
