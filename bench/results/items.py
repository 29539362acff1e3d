"""Statistics over test items and seeds: what a row's accuracy, and the difference between two rows, are
worth when both the test set (a sample of items) and training (a sample of seeds) are random.

A row's runs are a matrix of outcomes, ``correct[s, i]`` for seed s and test item i (from the records'
``test_predictions``, :mod:`bench.results.predictions`). The rules, stated once:

* **variance from both sources.** The accuracy's variance is the items' part, the sample variance over
  items of each item's mean outcome over seeds divided by N, plus the seeds' part, the sample variance of
  the per-seed accuracies (all on the same items) divided by S. The items' part also holds a share of the
  seed noise, so the sum errs on the side of more uncertainty.
* **paired on the same items.** The difference between rows A and B (tested on the same items, which the
  records' labels must show) is ``mean_i d_i`` with ``d_i`` the difference of the two rows' mean outcomes
  on item i: what the items share cancels. Its variance is the variance of ``d_i`` over N, plus each row's
  seed part.
* **degrees of freedom and test.** Welch-Satterthwaite over the parts (N - 1 for the items, S - 1 for
  each row's seeds); a two-sided t-test of a zero difference, and the 95 % interval from the same t.
  With fewer than two seeds a row's seed variance cannot be estimated: no test (*untested*), as in
  :mod:`bench.results.stats`.
* **many comparisons.** The p-values of one table's comparisons are corrected by Holm's step-down method.

Nothing here resamples, so the tables reproduce byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


def outcomes(records: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(correct[s, i], labels[i])`` of a row's records, one per seed; None when a record has no
    predictions (made before records kept them). Raises ValueError when the records were tested on
    different items (their labels differ, or their ids: k-fold test sets, whose labels may coincide)."""
    from bench.results import predictions

    entries = [record.get("test_predictions") for record in records]
    if not entries or any(entry is None for entry in entries):
        return None
    decoded = [predictions.decode(entry) for entry in entries]
    labels = decoded[0][1]
    if any(len(other) != len(labels) or (other != labels).any() for _, other in decoded):
        raise ValueError("the runs of one row were tested on different items (their labels differ)")
    ids = [predictions.ids(entry) for entry in entries]
    if any((other is None) != (ids[0] is None) or not np.array_equal(other, ids[0]) for other in ids):
        raise ValueError("the runs of one row were tested on different items (their ids differ)")
    return np.stack([predicted == truth for predicted, truth in decoded]), labels


@dataclass(frozen=True)
class Estimate:
    """A mean (an accuracy or a difference, as a fraction) with its variance parts and the t interval."""

    mean: float
    variance: float
    dof: float
    half_width: float

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - self.half_width, self.mean + self.half_width


def _combined(mean: float, parts: list[tuple[float, float]]) -> Estimate:
    """``mean`` with the variance ``sum(v)`` of independent ``parts`` (v, degrees of freedom) and its
    Welch-Satterthwaite degrees of freedom."""
    from scipy import stats  # here: importing the results package stays quick

    variance = sum(v for v, _ in parts)
    if variance == 0:
        return Estimate(mean, 0.0, float("inf"), 0.0)
    dof = variance**2 / sum(v**2 / df for v, df in parts if v > 0)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * variance**0.5
    return Estimate(mean, variance, dof, half)


def _seed_part(correct: np.ndarray) -> tuple[float, float]:
    per_seed = correct.mean(1)
    return per_seed.var(ddof=1) / len(per_seed), len(per_seed) - 1


def accuracy(correct: np.ndarray) -> Estimate | None:
    """A row's accuracy from ``correct[s, i]``; None with fewer than two seeds (no seed variance)."""
    seeds, items = correct.shape
    if seeds < 2 or items < 2:
        return None
    item_means = correct.mean(0)
    return _combined(
        float(item_means.mean()), [(item_means.var(ddof=1) / items, items - 1), _seed_part(correct)]
    )


def difference(a: np.ndarray, b: np.ndarray) -> Estimate | None:
    """Accuracy of A minus that of B, paired on the same items (``a[s, i]`` and ``b[s, i]`` share i); None
    with fewer than two seeds on either side."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired rows must share their test items: {a.shape[1]} and {b.shape[1]} items")
    items = a.shape[1]
    if min(a.shape[0], b.shape[0]) < 2 or items < 2:
        return None
    d = a.mean(0) - b.mean(0)
    return _combined(float(d.mean()), [(d.var(ddof=1) / items, items - 1), _seed_part(a), _seed_part(b)])


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
