"""Statistics over test items and seeds (bench/results/items.py): paired on the same items, both sources of
variance, Holm's correction; each checked against the formula worked out here with numpy and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from bench.results import items, predictions


def rows_where_a_beats_b_by_three_items() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of 1,000 items and two rows of 3 seeds: B gets items 0-49 wrong plus 5 seed-specific ones
    (accuracy 94.5 %); A is B with items 0-2 right on every seed (94.8 %: +0.3 pt on the same items)."""
    labels = np.arange(1000) % 10
    b = np.ones((3, 1000), dtype=bool)
    b[:, :50] = False
    for seed in range(3):
        b[seed, 100 + 7 * seed : 105 + 7 * seed] = False
    a = b.copy()
    a[:, :3] = True
    return labels, a, b


def as_records(correct: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Records whose predictions give ``correct``: wrong items predict the next class."""
    out = []
    for row in correct:
        predicted = np.where(row, labels, (labels + 1) % 10)
        entry = predictions.encode(torch.tensor(np.stack([predicted, labels])))
        out.append({"test_predictions": entry})
    return out


def test_a_paired_difference_of_three_items_with_three_seeds_matches_the_formula():
    labels, a, b = rows_where_a_beats_b_by_three_items()
    (a_read, a_labels), (b_read, _) = (
        items.outcomes(as_records(a, labels)),
        items.outcomes(as_records(b, labels)),
    )
    assert (a_read == a).all() and (b_read == b).all() and (a_labels == labels).all()
    estimate = items.difference(a_read, b_read)
    # by hand: the items' part, var over items of d_i / N, and each row's seed part, var of per-seed acc / S
    d = a.mean(0) - b.mean(0)
    assert d.mean() == pytest.approx(0.003) and estimate.mean == pytest.approx(0.003)
    parts = [(d.var(ddof=1) / 1000, 999)]
    parts += [(row.mean(1).var(ddof=1) / 3, 2) for row in (a, b)]
    variance = sum(v for v, _ in parts)
    dof = variance**2 / sum(v**2 / df for v, df in parts)
    assert estimate.variance == pytest.approx(variance) and estimate.dof == pytest.approx(dof)
    p = 2 * stats.t.sf(0.003 / np.sqrt(variance), dof)
    assert items.p_value(estimate) == pytest.approx(p)
    # A and B's seeds are equally spread (0 here: every seed misses 55 or 52 items), so only the items
    # count: the paired t-test over the items' differences, as scipy computes it
    assert parts[1][0] == parts[2][0] == 0
    assert items.p_value(estimate) == pytest.approx(stats.ttest_rel(a.mean(0), b.mean(0)).pvalue)
    # d is 1 on 3 items, else 0: var = (3 x 0.997^2 + 997 x 0.003^2) / 999 = 0.0029940, t = 0.003 /
    # sqrt(0.0029940 / 1000) = 1.7338, p(t_999) = 0.0833: 3 items in 1,000 are not a significant lead
    assert items.p_value(estimate) == pytest.approx(0.0833, abs=1e-4)
    low, high = estimate.interval
    assert low < 0 < high


def test_seed_spread_widens_the_interval_and_unpaired_items_are_refused():
    labels, a, b = rows_where_a_beats_b_by_three_items()
    spread = a.copy()
    spread[0, 200:230] = False  # seed 0 of A misses 30 more items: a seed-level effect
    narrow, wide = items.difference(a, b), items.difference(spread, b)
    assert wide.half_width > 3 * narrow.half_width
    seed_part = spread.mean(1).var(ddof=1) / 3
    assert wide.variance == pytest.approx(((spread.mean(0) - b.mean(0)).var(ddof=1)) / 1000 + seed_part)
    assert items.difference(a[:1], b) is None and items.accuracy(a[:1]) is None  # one seed: untested
    with pytest.raises(ValueError, match="share their test items"):
        items.difference(a[:, :999], b)
    shifted = as_records(a, labels)[:2] + as_records(a, (labels + 1) % 10)[:1]
    with pytest.raises(ValueError, match="different items"):
        items.outcomes(shifted)
    assert items.outcomes([{"test_predictions": None}]) is None


def test_runs_on_different_k_fold_test_sets_are_not_paired_even_where_their_labels_agree():
    """mnist5k's digits are stored class by class: two folds' test sets have the same labels in order."""
    labels, a, _ = rows_where_a_beats_b_by_three_items()
    fold = [
        {"test_predictions": {**r["test_predictions"], **named(np.arange(1000))}}
        for r in as_records(a, labels)
    ]
    assert items.outcomes(fold)[0].shape == (3, 1000)  # the same ids: one row
    other = {"test_predictions": {**fold[0]["test_predictions"], **named(np.arange(1000) + 1000)}}
    for mixed in (fold[:2] + [other], as_records(a, labels)[:2] + fold[:1]):
        with pytest.raises(ValueError, match="their ids differ"):
            items.outcomes(mixed)


def named(ids: np.ndarray) -> dict:
    """The ``ids`` of a test_predictions entry naming ``ids`` (classes irrelevant)."""
    return {"ids": predictions.encode(torch.zeros(2, len(ids), dtype=torch.long), ids)["ids"]}


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; max(0.06, 1 x 0.04) = 0.06
    assert items.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert items.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert items.holm([]) == []
