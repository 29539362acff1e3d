"""The ranking over test items and seeds where records keep their predictions (bench.results.stats.rank):
its fallback to seeds, folds as one row's runs, the equal-information contexts (T x bits per spike),
tuning-stage records kept out, and what the README's answer, the tables and ``bench compare`` say of it."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import predicted_record

from bench.results import items
from bench.results.aggregate import by_bit_steps, by_setting, by_time_steps, group_records, sections
from bench.results.compare import comparisons
from bench.results.publish import regenerate
from bench.results.readme import render_answer
from bench.results.records import write_record
from bench.results.stats import BEST, ITEMS, OUTSIDE, REFERENCE, SEEDS, TIED, WORSE, rank, welch_p

ANN = {"version": 2, "spiking": False, "graded_spikes": "amplitude", "pooled_spikes": "effective"}
LABELS = np.random.default_rng(0).integers(0, 10, 1000)
DIFFICULTY = np.random.default_rng(1).random(1000)  # what the items share: some are hard for every method


def outcomes(accuracy: float, seed: int) -> np.ndarray:
    """A run's outcomes on the 1,000 items: the items easier than ``accuracy``, a little seed noise."""
    return DIFFICULTY + 0.02 * np.random.default_rng(seed).standard_normal(1000) < accuracy


def row(method, time_steps, accuracy, bits, energy, params=1000, seeds=3, **extra) -> list[dict]:
    """A row's records, one per seed, with predictions; ``bits`` per spike (None: non-spiking)."""
    out = []
    for seed in range(seeds):
        metrics = {"energy_uj": energy, "params": params, "spike_bits": bits}
        metrics["bit_steps"] = None if bits is None else bits * time_steps
        metrics |= {"conventions": ANN} if bits is None else {}
        correct = outcomes(accuracy, 1000 * time_steps + 10 * sum(map(ord, method)) + seed)
        made = predicted_record(
            f"{method}-{time_steps}-{seed}", method, correct, LABELS, seed, None, None, time_steps, **metrics
        )
        out.append({**made, **extra})
    return out


TUNED = {
    "tuning": {
        "sweep": "m",
        "rule": "highest val_acc",
        "space": {"method.lr": [0.001, 0.01], "method.v_threshold": [0.5, 1.0]},
        "candidates": [{"overrides": {"method.lr": 0.01}, "val_acc": 0.9, "run_id": "x"}],
        "chosen": {"method.v_threshold": 0.5, "method.lr": 0.001},
    }
}
OUT = {"outside_design": True, "outside_design_reason": "wide is designed for T >= 4"}


def matched() -> list[dict]:
    """Binary lif at T = 1, 2 (tuned), 2-bit mt at T = 1, 2 and ce at T = 1, the ANN, a row outside
    design, and a tuning-stage record that no table may show."""
    records = row("lif", 1, 0.955, 1, 4.0, **TUNED) + row("lif", 2, 0.975, 1, 9.0, **TUNED)
    records += row("mt", 1, 0.978, 2, 12.0, 2000) + row("mt", 2, 0.981, 2, 25.0, 2000)
    records += row("ce", 1, 0.977, 2, 7.0, 2000)
    records += row("ann", 1, 0.98, None, 34.0) + row("wide", 1, 0.90, 1, 7.0, **OUT)
    candidate = predicted_record("lif-tune", "lif", outcomes(0.5, 9), LABELS, 0, energy_uj=1.0)
    return records + [{**candidate, "stage": "tuning"}]


def test_without_predictions_everywhere_the_ranking_falls_back_to_seeds():
    records = row("a", 1, 0.98, 1, 5.0) + row("b", 1, 0.95, 1, 3.0)
    with_items = rank(group_records(records))
    assert with_items.basis == ITEMS and with_items.why == ""
    records[4] = {**records[4], "test_predictions": None}  # one record of b made before predictions
    ranking = rank(group_records(records))
    assert ranking.basis == SEEDS and "predictions" in ranking.why
    best, other = ranking.rows
    assert other.p == pytest.approx(welch_p(other.accuracies, best.accuracies)) and other.p_holm is None
    assert other.difference.mean == pytest.approx(np.mean(other.accuracies) - np.mean(best.accuracies))
    # rows tested on other items, or under other seeds, are not paired: seeds too
    relabelled = row("a", 1, 0.98, 1, 5.0) + [
        {
            **r,
            "test_predictions": predicted_record("x", "b", outcomes(0.95, i), (LABELS + 1) % 10, i)[
                "test_predictions"
            ],
        }
        for i, r in enumerate(row("b", 1, 0.95, 1, 3.0))
    ]
    assert rank(group_records(relabelled)).basis == SEEDS
    fewer = row("a", 1, 0.98, 1, 5.0) + row("b", 1, 0.95, 1, 3.0, seeds=2)
    assert "same runs" in rank(group_records(fewer)).why


def test_folds_are_the_runs_of_one_row_and_the_answer_says_how_many_items_stand_behind_it():
    order = np.random.default_rng(5).permutation(1000)
    records = []
    for method, accuracy in (("a", 0.98), ("b", 0.95)):
        correct = outcomes(accuracy, len(method))
        for fold in range(5):
            ids = order[200 * fold : 200 * (fold + 1)]
            made = predicted_record(
                f"{method}{fold}", method, correct[ids], LABELS[ids], 0, fold, ids, energy_uj=1.0
            )
            records.append(made)
    groups = group_records(records)
    assert [(g.method, len(g.records)) for g in groups] == [("a", 5), ("b", 5)]  # data.fold: one row
    ranking = rank(groups)
    assert ranking.basis == ITEMS and [r.name for r in ranking.rows] == ["a", "b"]
    a_runs = items.outcomes(groups[0].records)
    assert ranking.rows[0].accuracy == pytest.approx(a_runs.item_means().mean())
    assert ranking.rows[0].ci == pytest.approx(items.accuracy(a_runs).half_width)
    answer = "\n".join(render_answer(sections(records)))
    # 200 items per run, 1,000 together: binomial half-widths at the best's accuracy
    best = ranking.rows[0].accuracy
    half = [f"±{100 * 1.959964 * (best * (1 - best) / n) ** 0.5:.2f} pt" for n in (200, 1000)]
    assert (
        f"Each run tests 200 items (one item: 0.50 pt); at that accuracy the binomial 95 % half-width of one "
        "run's accuracy is "
        f"{half[0]}; together the runs test 1,000 distinct items ({half[1]})." in answer
    )


def test_equal_information_contexts_put_a_two_bit_method_at_t1_beside_binary_ones_at_t2():
    groups = group_records(matched())
    (setting,) = by_setting(groups)
    budgets = by_bit_steps(setting)
    assert [[(g.method, g.time_steps) for g in context] for context in budgets] == [
        [("lif", 1), ("wide", 1)],
        [("ce", 1), ("mt", 1), ("lif", 2)],
        [("mt", 2)],
    ]  # the ANN states no bits: in none; the tuning-stage record: in no group at all
    assert [len(g.records) for g in groups if g.method == "lif"] == [3, 3]
    two = rank(budgets[1])
    assert two.basis == ITEMS and {r.name for r in two.rows} == {"ce", "lif", "mt"}
    assert [c[0].time_steps for c in by_time_steps(setting)] == [1, 2]
    at_one = rank(by_time_steps(setting)[0])
    assert [(r.name, r.verdict) for r in at_one.rows if r.verdict in (REFERENCE, OUTSIDE)] == [
        ("ann", REFERENCE),
        ("wide", OUTSIDE),
    ]
    # the family is the ranked rows only: references and rows outside design keep their raw p
    assert all(r.p_holm is None and r.p is not None for r in at_one.rows if r.verdict in (REFERENCE, OUTSIDE))
    ranked = [r for r in at_one.rows if r.verdict not in (BEST, REFERENCE, OUTSIDE)]
    assert ranked and all(r.p_holm is not None and r.p_holm >= r.p for r in ranked)
    assert all((r.verdict == TIED) == (r.p_holm >= 0.05) for r in ranked)


def test_the_answer_lists_each_top_group_with_its_interval_difference_holm_p_parameters_and_tuning(tmp_path):
    for record in matched():
        write_record(record, tmp_path)
    regenerate(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    answer = readme[readme.index("## The answer") : readme.index("## Matched track")]
    assert "#### At equal T\n" in answer and "#### At equal T x bits per spike\n" in answer
    assert "over test items and runs, differences paired on the same items, Holm-corrected p" in answer
    at_t = rank(by_time_steps(by_setting(group_records(matched()))[0])[0])
    for r in at_t.top:
        tuned = "method.lr=0.001, method.v_threshold=0.5" if r.name == "lif" else "not tuned"
        bits, params = (1, "1,000") if r.name == "lif" else (2, "2,000")
        cells = f"| {r.name}" if r.verdict != BEST else f"| **{r.name}**"
        low, high = (100 * e for e in r.difference.interval) if r.difference else (None, None)
        delta = "-" if r.difference is None else f"{100 * r.difference.mean:+.2f} ({low:+.2f} to {high:+.2f})"
        p = "-" if r.verdict == BEST else f"Holm p = {r.p_holm:.3f}"
        line = f"| 1 {cells} | {100 * r.accuracy:.2f} ± {100 * r.ci:.2f} | {delta} | {p} | "
        assert line in answer, line
        assert f"{line}{r.verdict}" in answer and f" | {bits} | {params} | {tuned} | " in answer
    for r in at_t.rows:
        if r.verdict == WORSE:
            assert f"| 1 | {r.name} |" not in answer  # only the top group is listed
    assert "Reference, not ranked: `ann` (non-spiking, one pass per sample)" in answer
    assert "paired p" in answer and "Outside design, not ranked: `wide` at T = 1" in answer
    assert "(wide is designed for T >= 4)" in answer
    assert "| 2 | **" in answer.split("#### At equal T x bits per spike")[1]  # a budget of 2 is ranked
    table = (tmp_path / "tables" / "m.md").read_text()
    assert "Intervals and tests over items and seeds, paired on the same items, Holm p." in table
    assert "tied, Holm p = " in table and "reference, p = " in table and "outside design, p " in table
    assert "lif-tune" not in table and "| lif | 1 | 3 |" in table  # the tuning stage is in no table
    # bench compare: the same ranking, and the equal-information contexts after the T ones
    found = comparisons(tmp_path, "mnist5k")
    # every budget differs from one T's spiking rows (budget 4 is mt at T = 2 without lif): all are listed
    assert [c.bit_steps for c in found] == [None, None, 1, 2, 4]
    assert found[0].ranking.best.name == at_t.best.name and "over items and seeds" in found[0].basis
    assert "tied with it (Holm p ≥ 0.05)" in found[0].answer and ", paired p " in found[0].answer
    assert found[3].title.startswith("mnist5k at T x bits per spike = 2 (T = 1, 2): sweep m")


def test_records_without_bits_say_there_is_no_equal_information_ranking():
    records = [
        {**r, "metrics": {k: v for k, v in r["metrics"].items() if k not in ("spike_bits", "bit_steps")}}
        for r in row("a", 1, 0.98, 1, 5.0)
    ]
    answer = "\n".join(render_answer(sections(records)))
    assert "These records do not state bits per spike" in answer
    assert "| 1 | **a** |" in answer and "not tuned" in answer


def test_a_configuration_tuned_per_t_labels_no_row_and_shows_in_the_answer():
    def tuned(records, lr):
        out = []
        for r in records:
            config = {**r["config"], "method": {**r["config"]["method"], "lr": lr}}
            chosen = {"sweep": "m", "rule": "r", "space": {}, "candidates": [], "chosen": {"method.lr": lr}}
            out.append({**r, "config": config, "tuning": chosen})
        return out

    records = tuned(row("lif", 1, 0.95, 1, 4.0), 0.01) + tuned(row("lif", 2, 0.97, 1, 9.0), 0.001)
    assert [(g.time_steps, g.label, g.tuned) for g in group_records(records)] == [
        (1, "", "method.lr=0.01"),
        (2, "", "method.lr=0.001"),
    ]
    answer = "\n".join(render_answer(sections(records)))
    assert "| 1 | **lif** |" in answer and "| method.lr=0.01 |" in answer and "| method.lr=0.001 |" in answer
    # two rows of one T that differ only in a tuned key keep it as their label
    both = tuned(row("lif", 1, 0.95, 1, 4.0), 0.01) + tuned(row("lif", 1, 0.97, 1, 9.0), 0.001)
    both = [{**r, "run_id": f"{r['run_id']}-{i}"} for i, r in enumerate(both)]
    assert sorted(g.label for g in group_records(both)) == ["method.lr=0.001", "method.lr=0.01"]


def matched_sweep(sweep: str, dataset: str, accuracies: dict, layers: str, epochs: int, batch: int) -> list:
    """A matched-track sweep's records on one dataset: a row per method at T = 1, its sweep's settings in
    the config as a run writes them."""
    records = []
    for method, accuracy in accuracies.items():
        for r in row(method, 1, accuracy, 1, 5.0):
            config = {
                **r["config"],
                "method": {**r["config"]["method"], "layers": layers},
                "data": {**r["config"]["data"], "batch_size": batch},
                "trainer": {"max_epochs": epochs},
            }
            facts = {"sweep": sweep, "sweep_file": f"configs/sweeps/{sweep}.yaml", "dataset": dataset}
            records.append({**r, **facts, "run_id": f"{sweep}-{dataset}-{r['run_id']}", "config": config})
    return records


def test_two_matched_sweeps_answer_apart_per_dataset_and_the_track_states_each_backbone(tmp_path):
    """The matched sweep (embedded datasets) and matched_matrix (real ones) both publish in the matched
    track: each dataset is ranked from its own sweep's records, under a heading naming the sweep, and the
    track's text says each dataset's backbone, batch and epochs."""
    small, vgg = "32C3-AP2-64C3-AP2-128C3-AP2", "64C3-AP2-128C3-AP2-256C3-AP2"
    records = matched_sweep("matched", "mnist5k", {"a": 0.98, "b": 0.95}, small, 8, 128)
    records += matched_sweep("matched_matrix", "cifar10", {"a": 0.88, "b": 0.93}, vgg, 100, 128)
    records += matched_sweep("matched_matrix", "dvs_gesture", {"a": 0.90, "b": 0.80}, vgg, 200, 32)
    answer = "\n".join(render_answer(sections(records)))
    chunks = answer.split("\n### ")
    for dataset, sweep, best, worse in (
        ("mnist5k", "matched", "a", "b"),
        ("cifar10", "matched_matrix", "b", "a"),
        ("dvs_gesture", "matched_matrix", "a", "b"),
    ):
        (chunk,) = [c for c in chunks if c.startswith(f"{dataset}, sweep `{sweep}`\n")]
        assert f"Sweep `{sweep}`." in chunk and f"| 1 | **{best}** |" in chunk
        assert f"| 1 | **{worse}** |" not in chunk  # the other sweep's winner is not this dataset's
        (note,) = [line for line in answer.splitlines() if line.startswith(f"- **{dataset}**")]
        accuracy = rank(group_records([r for r in records if r["dataset"] == dataset])).best.accuracy
        assert f"reaches {100 * accuracy:.2f} %" in note
    assert len(chunks) == 4  # the opening, then one heading per (sweep, dataset)
    # a dataset both sweeps ran: one note per sweep, their runs never pooled
    extra = matched_sweep("matched", "cifar10", {"a": 0.70}, small, 8, 128)
    lines = "\n".join(render_answer(sections(records + extra))).splitlines()
    notes = [line for line in lines if line.startswith("- **cifar10")]
    assert [n.split(":")[0] for n in notes] == [
        "- **cifar10, sweep `matched`**",
        "- **cifar10, sweep `matched_matrix`**",
    ]
    for note, own in zip(notes, (extra, [r for r in records if r["dataset"] == "cifar10"]), strict=True):
        assert f"reaches {100 * rank(group_records(own)).best.accuracy:.2f} %" in note
    for record in records:
        write_record(record, tmp_path)
    regenerate(tmp_path)
    readme = (tmp_path / "README.md").read_text()
    track = readme[readme.index("## Matched track") :]
    assert (
        "(configs/sweeps/matched.yaml, configs/sweeps/matched_matrix.yaml; one backbone per input family: "
        f"`{small}` (mnist5k), `{vgg}` (cifar10, dvs_gesture), Adam with cosine decay, batch 128 (mnist5k, "
        "cifar10), 32 (dvs_gesture), epochs 8 (mnist5k), 100 (cifar10), 200 (dvs_gesture); " in track
    )
