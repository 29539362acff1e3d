"""Statistics over seeds (bench.results.stats), the sweep file's ``track``, comparison contexts that never
mix, and ``bench compare``."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from bench.errors import BenchError, ConfigError
from bench.results.aggregate import group_records
from bench.results.compare import comparisons
from bench.results.publish import regenerate
from bench.results.records import write_record
from bench.results.stats import (
    BEST,
    OUTSIDE,
    REFERENCE,
    TIED,
    UNTESTED,
    WORSE,
    mean_ci,
    pareto_front,
    rank,
    welch_p,
)
from bench.sweep.spec import load_sweep

V2 = {"version": 2, "spiking": True, "graded_spikes": "amplitude", "pooled_spikes": "effective"}
AC = {**V2, "pooled_spikes": "ac"}


def record(
    run_id, method, seed, acc, energy, sweep="m", time_steps=2, table="horowitz45_fp32", conv=V2, frames=8
):
    """A record of nmnist_sim cut into ``frames`` frames (None: static data, no frames)."""
    data = {"batch_size": 128} | ({"frames": frames, "split_by": "time", "size": 34} if frames else {})
    metrics = {"test_acc": acc, "energy_uj": energy, "time_steps": time_steps, "cost_table": table}
    return {
        "run_id": run_id,
        "method": method,
        "dataset": "nmnist_sim",
        "seed": seed,
        "status": "ok",
        "error": None,
        "sweep": sweep,
        "config": {"seed": seed, "method": {"time_steps": time_steps}, "data": data},
        "metrics": {**metrics, "conventions": conv},
    }


def t4_cdf(t: float) -> float:
    """Student t CDF with 4 degrees of freedom, closed form (independent of scipy)."""
    x = 1 + t * t / 4
    return 0.5 + 3 / 8 * t / math.sqrt(x) * (1 - t * t / (12 * x))


def test_the_interval_is_student_t_and_absent_for_one_seed():
    mean, half = mean_ci([0.90, 0.92, 0.94])
    # s = 0.02, t(0.975, 2) = 4.302653 (tables): 4.302653 * 0.02 / sqrt(3) = 0.0496828
    assert mean == pytest.approx(0.92) and half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert half == pytest.approx(0.0496828, abs=1e-7)
    assert mean_ci([0.9]) == (0.9, None)


def test_welch_p_matches_the_closed_form_and_is_not_invented_without_two_seeds():
    # equal variances (s = 0.02) and n = 3 on each side: Welch's df = 4 exactly, t = diff / (0.02 sqrt(2/3))
    a = [0.90, 0.92, 0.94]
    close, far = [0.86, 0.88, 0.90], [0.80, 0.82, 0.84]
    t_close, t_far = 0.04 / (0.02 * math.sqrt(2 / 3)), 0.10 / (0.02 * math.sqrt(2 / 3))  # sqrt(6), sqrt(37.5)
    assert welch_p(a, close) == pytest.approx(2 * (1 - t4_cdf(t_close)), rel=1e-9)
    assert welch_p(a, close) == pytest.approx(0.070484, abs=1e-6)  # >= 0.05: tied
    assert welch_p(a, far) == pytest.approx(2 * (1 - t4_cdf(t_far)), rel=1e-9)
    assert welch_p(a, far) == pytest.approx(0.003602, abs=1e-6)  # < 0.05: not tied
    assert welch_p(a, [0.9]) is None and welch_p([0.9], a) is None  # n < 2: no test
    assert welch_p([0.9, 0.9], [0.9, 0.9]) == 1.0 and welch_p([0.9, 0.9], [0.8, 0.8]) == 0.0  # no spread


def test_the_pareto_front_keeps_every_non_dominated_point():
    points = [(0.98, 20.0), (0.97, 4.0), (0.96, 5.0), (0.95, 2.0), (0.97, 4.0), (0.95, 2.5)]
    # (0.96, 5) is beaten by (0.97, 4); (0.95, 2.5) by (0.95, 2); the two equal points dominate neither
    assert pareto_front(points) == [True, True, False, True, True, False]


def test_the_ranking_names_the_best_the_tied_the_untested_and_the_cheapest_within_one_point():
    records = [
        record("a0", "a", 0, 0.98, 20.0),
        record("a1", "a", 1, 0.98, 20.0),
        record("a2", "a", 2, 0.98, 20.0),
        # mean 0.97: exactly 1 point below (0.98 - 0.97 is 0.010000000000000009 in floats): within 1 pt
        record("b0", "b", 0, 0.96, 4.0),
        record("b1", "b", 1, 0.97, 4.0),
        record("b2", "b", 2, 0.98, 4.0),
        record("c0", "c", 0, 0.90, 1.0),
        record("c1", "c", 1, 0.90, 1.0),
        record("d0", "d", 0, 0.99, 9.0),  # a higher mean, but one seed: the best with no test against it
    ]
    ranking = rank(group_records(records[:-1]))
    assert [(r.name, r.verdict, r.place) for r in ranking.rows] == [
        ("a", BEST, 1),
        ("b", TIED, 2),
        ("c", WORSE, 3),
    ]
    # b: 0.96, 0.97, 0.98 against a's 0.98 x3 (no spread): t = 0.01 / (0.01 / sqrt(3)), df = 2;
    # Student t with 2 df: p = 1 - t / sqrt(t^2 + 2) = 1 - sqrt(3) / sqrt(5)
    assert ranking.rows[1].p == pytest.approx(1 - math.sqrt(3 / 5), rel=1e-9)
    assert ranking.rows[2].p == 0.0  # no spread on either side, different means
    assert ranking.cheapest.name == "b" and [r.pareto for r in ranking.rows] == [True, True, True]
    assert ranking.having(TIED)[0].name == "b"

    ranking = rank(group_records(records))
    assert [(r.name, r.verdict) for r in ranking.rows] == [
        ("d", BEST),
        ("a", UNTESTED),
        ("b", UNTESTED),
        ("c", UNTESTED),
    ]
    assert all(r.p is None for r in ranking.rows) and ranking.having(TIED) == []
    assert ranking.cheapest.name == "d"  # within 1 pt of 0.99: d itself (9 µJ) and a (0.98, 20 µJ)


def test_a_non_spiking_method_beside_spiking_ones_is_a_reference_not_a_contender(tmp_path):
    ann = {**V2, "spiking": False}
    records = [record(f"n{s}", "ann", s, 0.99, 30.0 + s, conv=ann, time_steps=1) for s in range(3)]
    records += [record(f"s{s}", "snn", s, acc, 5.0, time_steps=1) for s, acc in enumerate([0.97, 0.98, 0.99])]
    records += [record(f"w{s}", "weak", s, 0.90, 1.0, time_steps=1) for s in range(3)]
    ranking = rank(group_records(records))
    # ann is the most accurate (0.99 x3) but is listed last, never the best, tied, cheapest or on the front
    assert [(r.name, r.verdict, r.place, r.pareto) for r in ranking.rows] == [
        ("snn", BEST, 1, True),
        ("weak", WORSE, 2, True),
        ("ann", REFERENCE, 3, False),
    ]
    assert ranking.rows[2].p == pytest.approx(1 - math.sqrt(3 / 5), rel=1e-9)  # Welch p against snn
    assert ranking.cheapest.name == "snn" and ranking.having(TIED) == []
    # alone (a sweep of ann only) it is ranked as usual
    assert [(r.name, r.verdict) for r in rank(group_records(records[:3])).rows] == [("ann", BEST)]
    for r in records:
        write_record(r, tmp_path)
    regenerate(tmp_path)
    table = (tmp_path / "tables" / "m.md").read_text()
    assert "| ann | 1 | 3 | 99.00 ± 0.00 | reference, p = 0.225 |" in table
    assert "| snn | 1 | 3 | **98.00 ± 2.48** | best | ◆ |" in table
    (line,) = [c.answer for c in comparisons(tmp_path, "nmnist_sim")]
    assert line.startswith("Most accurate: snn (98.00 ± 2.48 %, 5.000 µJ)")
    assert line.endswith("Reference, not ranked: ann (99.00 ± 0.00 %, 31.000 µJ), Welch p = 0.225.")


def test_a_run_outside_its_methods_design_is_reported_and_never_ranked(tmp_path):
    reason = "wide is designed for images T = 1-2, not T = 4 on images (1-2 steps)"
    outside = {"outside_design": True, "outside_design_reason": reason}
    records = [record(f"s{s}", "snn", s, acc, 5.0, time_steps=4) for s, acc in enumerate([0.97, 0.98, 0.99])]
    records += [{**record(f"w{s}", "wide", s, 0.995, 1.0, time_steps=4), **outside} for s in range(3)]
    ranking = rank(group_records(records))
    # wide is more accurate and cheaper, but outside its design: reported after, never best or on the front
    assert [(r.name, r.verdict, r.place, r.pareto) for r in ranking.rows] == [
        ("snn", BEST, 1, True),
        ("wide", OUTSIDE, 2, False),
    ]
    assert ranking.cheapest.name == "snn" and ranking.best.name == "snn"
    for r in records:
        write_record(r, tmp_path)
    regenerate(tmp_path)
    # Welch against snn: t = 0.015 / (0.01 / sqrt(3)) = 2.598 on 2 dof, p = 1 - t / sqrt(2 + t^2) = 0.122
    table = (tmp_path / "tables" / "m.md").read_text()
    assert "| wide | 4 | 3 | 99.50 ± 0.00 | outside design, p = 0.122 |" in table
    (line,) = [c.answer for c in comparisons(tmp_path, "nmnist_sim")]
    assert line.startswith("Most accurate: snn (98.00 ± 2.48 %, 5.000 µJ)")
    assert line.endswith(
        f"Outside its method's design, not ranked: wide (99.50 ± 0.00 %, 1.000 µJ) ({reason})."
    )
    # nothing inside the design: nothing is named best
    alone = rank(group_records(records[3:]))
    assert alone.best is None and alone.cheapest is None and alone.rows[0].verdict == OUTSIDE


def test_a_sweep_file_names_its_track(tmp_path):
    assert {name: load_sweep(name, check=False).track for name in ("embedded", "demo", "paper_matrix")} == {
        "embedded": "paper",
        "demo": "paper",
        "paper_matrix": "paper",
    }
    for name in ("ablation_albsnn", "ablation_compressed_event", "ablation_hybrid_stdb"):
        assert load_sweep(name, check=False).track == "ablation"
    assert load_sweep("matched", check=False).track == "matched"  # the README's answer
    plain = tmp_path / "plain.yaml"
    plain.write_text("methods: [ann]\ndatasets: [mnist5k]\n")
    assert load_sweep(str(plain), check=False).track == "paper"  # the default
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [ann]\ndatasets: [mnist5k]\ntrack: matchd\n")
    with pytest.raises(
        ConfigError, match="`track: matchd` is not a track; use one of matched, paper, ablation"
    ):
        load_sweep(str(bad), check=False)


@pytest.fixture
def mixed(tmp_path):
    """Records of one dataset, method pair and T that would mix: a matched sweep under two cost tables,
    two sets of conventions and two frame settings, and a paper-track sweep; in each setting a different
    method is the most accurate."""
    tracks = {"m": "matched", "p": "paper"}  # as the sweeps' records carry them
    settings = {  # name: (sweep, record options, a's accuracies, b's accuracies)
        "base": ("m", {}, (0.95, 0.96), (0.90, 0.91)),
        "int8": ("m", {"table": "horowitz45_int8"}, (0.80, 0.81), (0.85, 0.86)),
        "ac": ("m", {"conv": AC}, (0.70, 0.71), (0.72, 0.73)),
        "frames16": ("m", {"frames": 16}, (0.60, 0.61), (0.50, 0.51)),
        "paper": ("p", {}, (0.40, 0.41), (0.45, 0.46)),
    }
    for name, (sweep, options, a, b) in settings.items():
        for method, accuracies, energy in (("a", a, 5.0), ("b", b, 3.0)):
            for seed, acc in enumerate(accuracies):
                made = record(f"{name}-{method}{seed}", method, seed, acc, energy, sweep, **options)
                write_record({**made, "track": tracks[sweep]}, tmp_path)
    return tmp_path


FRAMES8 = "data.frames=8, data.split_by=time, data.size=34"
FRAMES16 = "data.frames=16, data.split_by=time, data.size=34"
V2_LABEL = "v2 (graded_spikes=amplitude, pooled_spikes=effective)"
AC_LABEL = "v2 (graded_spikes=amplitude, pooled_spikes=ac)"
#: setting -> (frames, cost table, conventions, best, its accuracy cell)
EXPECTED = {
    "base": (FRAMES8, "horowitz45_fp32", V2_LABEL, "a", "95.50 ± 6.35"),
    "int8": (FRAMES8, "horowitz45_int8", V2_LABEL, "b", "85.50 ± 6.35"),
    "ac": (FRAMES8, "horowitz45_fp32", AC_LABEL, "b", "72.50 ± 6.35"),
    "frames16": (FRAMES16, "horowitz45_fp32", V2_LABEL, "a", "60.50 ± 6.35"),
}


def blocks(text: str, marker: str) -> list[str]:
    """The parts of a markdown text that start with ``marker`` (a heading prefix)."""
    return [marker + part for part in text.split("\n" + marker)[1:]]


def test_records_that_would_mix_are_separated_in_the_tables_the_answer_and_compare(mixed):
    regenerate(mixed)
    # the matched sweep's table file: one table per setting, each saying its own, each ranking only its rows
    tables = blocks((mixed / "tables" / "m.md").read_text(), "## ")
    assert len(tables) == 4
    for frames, table, conventions, best, accuracy in EXPECTED.values():
        (text,) = [
            t
            for t in tables
            if f"cost table {table} " in t and f"conventions {conventions} " in t and frames in t
        ]
        assert f"Event frames: {frames}." in text
        rows = [line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
        assert len(rows) == 2 and all("| 2 | 2 |" in row for row in rows)  # T = 2, n = 2: never averaged
        assert rows[0].startswith(f"| {best} | 2 | 2 | **{accuracy}** | best |")
    # every accuracy-vs-energy plot holds one setting
    assert sorted(p.name for p in (mixed / "plots" / "m").glob("*_accuracy_vs_energy.png")) == [
        f"nmnist_sim-{i}_accuracy_vs_energy.png" for i in (1, 2, 3, 4)
    ]

    readme = (mixed / "README.md").read_text()
    answer = readme[readme.index("## The answer") : readme.index("## Matched track")]
    answers = blocks(answer, "### ")
    assert len(answers) == 4 and "sweep `p`" not in answer.lower()  # the paper track is not in the answer
    for frames, table, conventions, best, accuracy in EXPECTED.values():
        (text,) = [
            t
            for t in answers
            if f"cost table {table} " in t and f"conventions {conventions} " in t and frames in t
        ]
        row = next(line for line in text.splitlines() if line.startswith("| 2 |"))  # the top group's best
        assert row.startswith(f"| 2 | **{best}** | {accuracy} |")
    # the paper track has its own section, after the matched one
    assert readme.index("## Matched track") < readme.index("## Paper track") < readme.index("### Sweep `p`")

    found = comparisons(mixed, "nmnist_sim")
    assert [c.section.name for c in found] == ["m"] * 4 + ["p"]
    for c in found:
        assert len({g.setting for g in c.groups}) == 1 and [len(g.records) for g in c.groups] == [2, 2]
    settings = {c.setting: c for c in found[:4]}
    for frames, table, conventions, best, accuracy in EXPECTED.values():
        c = settings[f"cost table {table}; conventions {conventions}; frames {frames}"]
        assert c.ranking.best.name == best and c.answer.startswith(f"Most accurate: {best} ({accuracy} %")
    assert (
        found[4].title == "nmnist_sim at T = 2: sweep p (paper track)" and found[4].ranking.best.name == "b"
    )
    assert [c.section.name for c in comparisons(mixed, "nmnist_sim", time_steps=2, sweep="p")] == ["p"]


def test_compare_says_what_exists_when_nothing_matches(mixed):
    with pytest.raises(BenchError, match="for dataset nmnist. Did you mean nmnist_sim"):
        comparisons(mixed, "nmnist")
    with pytest.raises(BenchError, match="at T = 4. Those with records: 2."):
        comparisons(mixed, "nmnist_sim", time_steps=4)
    with pytest.raises(BenchError, match="in sweep q. Those with records: m, p."):
        comparisons(mixed, "nmnist_sim", sweep="q")


def test_bench_compare_prints_the_ranking_and_neither_it_nor_bench_tables_imports_torch(tmp_path):
    for seed, (a, b) in enumerate(((0.95, 0.90), (0.96, 0.91))):
        write_record(record(f"a{seed}", "a", seed, a, 5.0, sweep="mine"), tmp_path)
        write_record(record(f"b{seed}", "b", seed, b, 3.0, sweep="mine"), tmp_path)
    code = (  # `bench tables` and `bench compare` read records: no torch
        "import sys; from bench.cli import main; "
        f"rc = main(['tables', '--results', {str(tmp_path)!r}]); "
        f"rc += main(['compare', '--dataset', 'nmnist_sim', '--results', {str(tmp_path)!r}]); "
        "print('RC', rc, 'HEAVY', [m for m in ('torch', 'pytorch_lightning') if m in sys.modules])"
    )
    env = {**os.environ, "COLUMNS": "100"}  # rich wraps to the terminal width
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "RC 0 HEAVY []" in out.stdout, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert "nmnist_sim at T = 2: sweep mine (no track recorded)" in text
    assert f"cost table horowitz45_fp32; conventions {V2_LABEL}; frames {FRAMES8}" in text
    # b: 0.90, 0.91 against a: 0.95, 0.96 (equal spread, n = 2): t = sqrt(50), df = 2,
    # p = 1 - t / sqrt(t^2 + 2)
    p = 1 - math.sqrt(50) / math.sqrt(52)
    assert f"1 a 2 95.50 ± 6.35 - best 5.000 ◆ 2 b 2 90.50 ± 6.35 {p:.3f} no 3.000 ◆" in text
    assert "Most accurate: a (95.50 ± 6.35 %, 5.000 µJ); tied with it (Welch p ≥ 0.05): none;" in text
    assert "cheapest of them within 1 pt: a (95.50 ± 6.35 %, 5.000 µJ)." in text
    # issue 33: rich padded every table line to the table's width (80 columns: 40 lines ending in spaces)
    assert all(line == line.rstrip() for line in out.stdout.splitlines()), out.stdout

    out = subprocess.run(
        [sys.executable, "-m", "bench.cli", "compare", "--dataset", "cifar10", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout
    assert "No ok run record in" in out.stderr and "Those with records: nmnist_sim" in " ".join(
        out.stderr.split()
    )


def test_with_one_run_a_side_compare_says_untested_never_tied_with_none_or_welch_dash(tmp_path):
    """Issue 33: with n = 1 the answer read "tied with it (Welch p ≥ 0.05): none" and the reference
    "Welch -"; there is no test, and the answer says so."""
    write_record(record("a0", "a", 0, 0.95, 5.0, time_steps=1), tmp_path)
    write_record(record("b0", "b", 0, 0.90, 3.0, time_steps=1), tmp_path)
    ann = record("n0", "ann", 0, 0.97, 30.0, time_steps=1, conv={**V2, "spiking": False})
    write_record(ann, tmp_path)
    (line,) = [c.answer for c in comparisons(tmp_path, "nmnist_sim")]
    assert line == (
        "Most accurate: a (95.00 %, 5.000 µJ); untested against it (n < 2): b; cheapest of them within "
        "1 pt: a (95.00 %, 5.000 µJ). Reference, not ranked: ann (97.00 %, 30.000 µJ), untested (n < 2)."
    )
    write_record(record("c0", "c", 0, 0.80, 3.0, time_steps=1), tmp_path)
    write_record(record("c1", "c", 1, 0.81, 3.0, time_steps=1), tmp_path)
    write_record(record("a1", "a", 1, 0.96, 5.0, time_steps=1), tmp_path)
    (line,) = [c.answer for c in comparisons(tmp_path, "nmnist_sim")]
    # a and c have two runs each: c is tested (and worse); b still has one
    assert line.startswith(
        "Most accurate: a (95.50 ± 6.35 %, 5.000 µJ); tied with it (Welch p ≥ 0.05): none; untested against "
        "it (n < 2): b; cheapest"
    )


def test_compare_ranks_bench_run_records_only_when_asked_for(tmp_path):
    write_record(record("r0", "a", 0, 0.95, 5.0, sweep=None), tmp_path)
    with pytest.raises(
        BenchError, match="only records of `bench run`, compared only when asked for: --sweep runs"
    ):
        comparisons(tmp_path, "nmnist_sim")
    (found,) = comparisons(tmp_path, "nmnist_sim", sweep="runs")
    assert found.title == "nmnist_sim at T = 2: `bench run` (no track recorded)"
