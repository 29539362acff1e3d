"""Statistics over test items and runs (bench/results/items.py): paired on the same items and runs, both
sources of variance, Holm's correction, fixed test sets and disjoint folds; each checked against the
formula worked out here with numpy and scipy, and through the ranking of a table (bench.results.stats)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import predicted_record
from scipy import stats

from bench.results import items
from bench.results.aggregate import group_records
from bench.results.stats import BEST, ITEMS, TIED, WORSE, rank


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


def as_records(correct: np.ndarray, labels: np.ndarray, method: str = "a", **options) -> list[dict]:
    """One record per seed (row) whose predictions give ``correct``."""
    return [
        predicted_record(f"{method}{seed}", method, row, labels, seed, **options)
        for seed, row in enumerate(correct)
    ]


def by_hand(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, variance, Welch-Satterthwaite dof and two-sided p of A - B (``[seed, item]``, same items),
    from the formula: var over items of d_i / N (N - 1 dof) plus var over seeds of the per-seed accuracy
    differences / S (S - 1 dof)."""
    d = a.mean(0) - b.mean(0)
    seeds = a.mean(1) - b.mean(1)
    parts = [(d.var(ddof=1) / d.size, d.size - 1), (seeds.var(ddof=1) / seeds.size, seeds.size - 1)]
    variance = sum(v for v, _ in parts)
    dof = variance**2 / sum(v**2 / df for v, df in parts if v > 0)
    return d.mean(), variance, dof, 2 * stats.t.sf(abs(d.mean()) / np.sqrt(variance), dof)


def test_a_paired_difference_of_three_items_with_three_seeds_matches_the_formula():
    labels, a, b = rows_where_a_beats_b_by_three_items()
    a_runs, b_runs = items.outcomes(as_records(a, labels)), items.outcomes(as_records(b, labels, "b"))
    assert a_runs.keys == ((0, None), (1, None), (2, None)) and (a_runs.labels == labels).all()
    assert (a_runs.outcome == a).all() and (b_runs.outcome == b).all()
    estimate = items.difference(a_runs, b_runs)
    mean, variance, dof, p = by_hand(a, b)
    assert mean == pytest.approx(0.003) and estimate.mean == pytest.approx(0.003)
    assert estimate.variance == pytest.approx(variance) and estimate.dof == pytest.approx(dof)
    assert items.p_value(estimate) == pytest.approx(p)
    # A and B's seeds differ by the same 3 items on every seed, so the seeds' part is 0 and only the items
    # count: the paired t-test over the items' differences, as scipy computes it
    assert (a.mean(1) - b.mean(1)).var() == 0
    assert items.p_value(estimate) == pytest.approx(stats.ttest_rel(a.mean(0), b.mean(0)).pvalue)
    # d is 1 on 3 items, else 0: var = (3 x 0.997^2 + 997 x 0.003^2) / 999 = 0.0029940, t = 0.003 /
    # sqrt(0.0029940 / 1000) = 1.7338, p(t_999) = 0.0833: 3 items in 1,000 are not a significant lead
    assert items.p_value(estimate) == pytest.approx(0.0833, abs=1e-4)
    low, high = estimate.interval
    assert low < 0 < high and (estimate.items, estimate.runs) == (1000, 3)
    # the accuracy: item means' variance / N plus the per-seed accuracies' / S (0 here: 52 misses a seed)
    accuracy = items.accuracy(a_runs)
    assert accuracy.mean == pytest.approx(a.mean()) and a.mean(1).var() == 0
    assert accuracy.variance == pytest.approx(a.mean(0).var(ddof=1) / 1000)


def test_seed_spread_widens_the_interval_and_unpaired_items_are_refused():
    labels, a, b = rows_where_a_beats_b_by_three_items()
    spread = a.copy()
    spread[0, 200:230] = False  # seed 0 of A misses 30 more items: a seed-level effect
    narrow = items.difference(items.Runs.from_matrix(a, labels), items.Runs.from_matrix(b, labels))
    wide = items.difference(items.Runs.from_matrix(spread, labels), items.Runs.from_matrix(b, labels))
    assert wide.half_width > 3 * narrow.half_width
    seed_part = (spread.mean(1) - b.mean(1)).var(ddof=1) / 3  # paired by seed
    assert wide.variance == pytest.approx(((spread.mean(0) - b.mean(0)).var(ddof=1)) / 1000 + seed_part)
    assert wide.variance == pytest.approx(by_hand(spread, b)[1])
    one_seed = items.Runs.from_matrix(a[:1], labels)
    assert items.accuracy(one_seed) is None  # one seed: no seed variance, untested
    assert items.difference(one_seed, items.Runs.from_matrix(b[:1], labels)) is None
    with pytest.raises(ValueError, match="same runs"):
        items.difference(one_seed, items.Runs.from_matrix(b, labels))
    with pytest.raises(ValueError, match="share their test items"):
        items.difference(items.Runs.from_matrix(a[:, :999]), items.Runs.from_matrix(b[:, :999], labels[1:]))
    shifted = as_records(a, labels)[:2] + as_records(a, (labels + 1) % 10)[2:]
    with pytest.raises(ValueError, match="different items"):
        items.outcomes(shifted)
    with pytest.raises(ValueError, match="same seed and fold"):
        items.outcomes(as_records(a, labels)[:1] * 2)
    assert items.outcomes([{"test_predictions": None}]) is None


def test_runs_on_different_k_fold_test_sets_are_not_paired_even_where_their_labels_agree():
    """mnist5k's digits are stored class by class: two folds' test sets have the same labels in order."""
    labels, a, b = rows_where_a_beats_b_by_three_items()
    ids = np.arange(1000)
    a_runs = items.outcomes(as_records(a, labels, ids=ids))
    assert items.difference(a_runs, items.outcomes(as_records(b, labels, "b", ids=ids))) is not None
    shifted = as_records(b, labels, "b", ids=ids)[:2] + as_records(b[2:], labels, "b", ids=ids + 1000)
    shifted[2]["seed"] = 2  # seed 2 of B tested other digits with the same labels
    with pytest.raises(ValueError, match="share their test items"):
        items.difference(a_runs, items.outcomes(shifted))
    mixed = as_records(a, labels)[:2] + as_records(a[2:], labels, ids=ids)
    mixed[2]["seed"] = 2
    with pytest.raises(ValueError, match="some runs of one row name their test items"):
        items.outcomes(mixed)


def test_holm_step_down_by_hand():
    # sorted 0.01, 0.03, 0.04 of m = 3: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; max(0.06, 1 x 0.04) = 0.06
    assert items.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert items.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert items.holm([]) == []


def folds(seed: int, accuracy_of_fold: list[float]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """A pool of 1,000 items cut into 5 disjoint folds of 200 (shuffled), and a row's outcomes on it: in
    fold f, each item right with probability ``accuracy_of_fold[f]``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 1000)
    order = np.random.default_rng(99).permutation(1000)
    fold_ids = [order[200 * f : 200 * (f + 1)] for f in range(5)]
    correct = np.zeros(1000, dtype=bool)
    for f, ids in enumerate(fold_ids):
        correct[ids] = rng.random(200) < accuracy_of_fold[f]
    return labels, fold_ids, correct


def fold_records(method: str, labels, fold_ids, correct) -> list[dict]:
    """One record per fold (seed 0), its items named by their pool ids in the order the fold lists them."""
    return [
        predicted_record(f"{method}{f}", method, correct[ids], labels[ids], seed=0, fold=f, ids=ids)
        for f, ids in enumerate(fold_ids)
    ]


def test_disjoint_folds_each_item_tested_once_match_the_formula():
    labels, fold_ids, a = folds(0, [0.97, 0.95, 0.98, 0.96, 0.97])
    _, _, b = folds(1, [0.95, 0.94, 0.97, 0.93, 0.96])
    a_runs = items.outcomes(fold_records("a", labels, fold_ids, a))
    b_runs = items.outcomes(fold_records("b", labels, fold_ids, b))
    assert a_runs.keys == tuple((0, f) for f in range(5)) and (a_runs.items == np.arange(1000)).all()
    assert (a_runs.tested.sum(0) == 1).all()  # every item tested by exactly one run
    assert (a_runs.labels == labels).all()
    # accuracy: the mean over the pool; var(outcomes) / 1000 (999 dof) + var(fold accuracies) / 5 (4 dof)
    per_fold = np.array([a[ids].mean() for ids in fold_ids])
    parts = [(a.var(ddof=1) / 1000, 999), (per_fold.var(ddof=1) / 5, 4)]
    variance = sum(v for v, _ in parts)
    dof = variance**2 / sum(v**2 / df for v, df in parts)
    estimate = items.accuracy(a_runs)
    assert estimate.mean == pytest.approx(a.mean()) and estimate.variance == pytest.approx(variance)
    assert estimate.dof == pytest.approx(dof)
    assert estimate.half_width == pytest.approx(stats.t.ppf(0.975, dof) * np.sqrt(variance))
    # the difference, paired on items and by fold: d_i over the pool, fold differences over the folds
    d = a.astype(float) - b
    by_fold = per_fold - np.array([b[ids].mean() for ids in fold_ids])
    parts = [(d.var(ddof=1) / 1000, 999), (by_fold.var(ddof=1) / 5, 4)]
    variance = sum(v for v, _ in parts)
    dof = variance**2 / sum(v**2 / df for v, df in parts)
    difference = items.difference(a_runs, b_runs)
    assert difference.mean == pytest.approx(d.mean()) and difference.variance == pytest.approx(variance)
    assert items.p_value(difference) == pytest.approx(2 * stats.t.sf(abs(d.mean()) / np.sqrt(variance), dof))
    # another cut of the pool is not the same items per fold: no pairing
    other = [np.roll(np.concatenate(fold_ids), 7)[200 * f : 200 * (f + 1)] for f in range(5)]
    with pytest.raises(ValueError, match="share their test items"):
        items.difference(a_runs, items.outcomes(fold_records("c", labels, other, b)))
    # one item with two labels in two runs, or runs that name items beside runs that do not, are refused
    twice = fold_records("a", labels, fold_ids, a)
    twice[1] = predicted_record("a1", "a", a[fold_ids[0]], (labels[fold_ids[0]] + 1) % 10, 0, 1, fold_ids[0])
    with pytest.raises(ValueError, match="labels differ"):
        items.outcomes(twice)
    mixed = fold_records("a", labels, fold_ids, a)[:1] + [
        predicted_record("x", "a", a[:200], labels[:200], 1)
    ]
    with pytest.raises(ValueError, match="name their test items"):
        items.outcomes(mixed)


def test_acceptance_a_beats_b_by_three_tenths_on_the_same_items_through_the_ranking():
    """Issue 31's acceptance test: A beats B by 0.3 pt on the same 1,000 items with 3 seeds (C is 2 pt
    behind); the table's ranking tests B and C against A paired on the items and Holm-corrects the two p
    values: both checked against scipy and the step-down rule applied here by hand."""
    labels, a, b = rows_where_a_beats_b_by_three_items()
    b[1, 300:302] = False  # B's seeds spread a little more than A's, so the seeds' part is not 0
    c = a.copy()
    c[:, 400:420] = False  # C: 20 more items wrong on every seed, 2 pt behind A
    records = as_records(a, labels, "A") + as_records(b, labels, "B") + as_records(c, labels, "C")
    ranking = rank(group_records(records))
    assert ranking.basis == ITEMS
    assert [(r.name, r.place) for r in ranking.rows] == [("A", 1), ("B", 2), ("C", 3)]
    best, rb, rc = ranking.rows
    # the accuracies: mean over items, items' part + seeds' part
    for row, correct in ((best, a), (rb, b), (rc, c)):
        variance = correct.mean(0).var(ddof=1) / 1000 + correct.mean(1).var(ddof=1) / 3
        assert row.accuracy == pytest.approx(correct.mean()) and row.ci > 1.9 * np.sqrt(variance)
    # the raw p of each comparison, from scipy's t distribution with the Welch-Satterthwaite dof
    _, _, dof_b, p_b = by_hand(b, a)
    _, _, _, p_c = by_hand(c, a)
    assert rb.difference.mean == pytest.approx(-0.003 - 2 / 3000) and rc.difference.mean == pytest.approx(
        -0.02
    )
    assert rb.p == pytest.approx(p_b) and rc.p == pytest.approx(p_c) and dof_b < 999
    # C's seeds differ from A's by the same 20 items: its p is scipy's paired t-test over the items
    assert rc.p == pytest.approx(stats.ttest_rel(c.mean(0), a.mean(0)).pvalue)
    # Holm over the family {B, C}: the smaller p times 2, the larger times 1 but not below the first
    low, high = sorted([p_b, p_c])
    first, second = min(1.0, 2 * low), max(min(1.0, 2 * low), min(1.0, high))
    holm = {p_b: None, p_c: None}
    holm[low], holm[high] = first, second
    assert rb.p_holm == pytest.approx(holm[p_b]) and rc.p_holm == pytest.approx(holm[p_c])
    assert p_c < 1e-4 and rc.p_holm == pytest.approx(2 * p_c)  # C: by far the smaller p, doubled
    assert rb.p_holm == pytest.approx(max(2 * p_c, p_b)) and rb.p_holm >= 0.05  # B: 0.3 pt is not enough
    assert [r.verdict for r in ranking.rows] == [BEST, TIED, WORSE]
    assert [r.name for r in ranking.top] == ["A", "B"] and rb.p_used == rb.p_holm
