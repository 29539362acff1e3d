"""Design ranges: each method states the input kinds and time steps its paper designs it for; a run
outside them is allowed and its record says so."""

from __future__ import annotations

import json

import pytest
from helpers import QUICK, bench

from bench import registry
from bench.design import describe, outside_reason
from bench.results.records import record_problem
from bench.runner import run
from methods.base import KINDS

PAPER_METHODS = ("slssnn", "albsnn", "compressed_event", "multi_threshold", "hybrid_stdb")


@pytest.mark.parametrize("key", sorted(registry.keys("method")))
def test_every_method_states_a_valid_design_range(key):
    cls = registry.get_method(key)
    assert cls.design and set(cls.design) <= set(KINDS)
    for low, high in cls.design.values():
        assert isinstance(low, int) and low >= 1 and (high is None or high >= low)
    assert cls.design_basis  # the grounds are stated, not left to the reader


def test_the_paper_methods_are_narrower_than_the_baseline():
    """Each of the five papers designs its method for fewer steps or fewer input kinds than the
    surrogate-gradient baseline's "anything": a method that declared everything would rank everywhere."""
    everything = registry.get_method("lif_sg").design
    assert everything == {"static": (1, None), "event": (1, None)}
    for key in PAPER_METHODS:
        assert registry.get_method(key).design != everything, key


def test_reasons_name_the_range_the_run_and_the_grounds():
    design, basis = {"static": (1, 2)}, "1-2 steps on images"
    assert describe({"static": (1, 1), "event": (1, 10)}) == "images T = 1; events T = 1-10"
    assert describe({"static": (2, None)}) == "images T >= 2"
    assert outside_reason("m", design, basis, "static", 2) is None
    assert outside_reason("m", design, basis, "static", 4) == (
        "m is designed for images T = 1-2, not T = 4 on images (1-2 steps on images)"
    )
    assert outside_reason("m", design, basis, "event", 1) == (
        "m is designed for images T = 1-2, not events (1-2 steps on images)"
    )


def test_a_run_outside_the_design_is_recorded_as_such_and_one_inside_is_not(workdir):
    layers = "method.layers=8C3-AP2-16FC"
    outside = run("multi_threshold", "mnist5k", [*QUICK, layers, "method.time_steps=4"]).record
    assert outside["status"] == "ok" and outside["outside_design"] is True
    assert outside["outside_design_reason"].startswith(
        "multi_threshold is designed for images T = 1-2, not T = 4 on images"
    )
    inside = run("multi_threshold", "mnist5k", [*QUICK, layers, "method.time_steps=2"]).record
    assert inside["outside_design"] is False and inside["outside_design_reason"] is None
    # 3 thresholds: a spike carries 0..3, 2 bits; T = 2 steps of 2 bits = 4 binary steps' worth
    assert inside["metrics"]["spike_levels"] == 3 and inside["metrics"]["spike_bits"] == 2
    assert inside["metrics"]["bit_steps"] == 4 and outside["metrics"]["bit_steps"] == 8


def test_bench_list_shows_each_design_and_a_bad_record_flag_is_named(tmp_path):
    out = bench("list", folder=tmp_path, columns=160)
    assert out.returncode == 0, out.stderr
    assert "designed for" in out.stdout
    line = next(line for line in out.stdout.splitlines() if line.lstrip().startswith("multi_threshold "))
    assert "images T = 1-2" in line
    path = tmp_path / "r.json"
    record = {
        "run_id": "r",
        "method": "ann",
        "dataset": "mnist5k",
        "status": "failed",
        "outside_design": "yes",
    }
    path.write_text(json.dumps(record))
    assert record_problem(record, path) == "its outside_design 'yes' is not true or false"


@pytest.mark.parametrize(
    ("key", "levels"),
    [("lif_sg", 1), ("multi_threshold", 3), ("compressed_event", 3), ("albsnn", 1), ("ann", None)],
)
def test_spike_levels_are_read_from_the_neurons(key, levels):
    layers = "8C3-MP2-16C3" if key == "albsnn" else "8C3-AP2-16FC"  # albsnn: a GAP head, no FC layers
    model = registry.get_method(key)(num_classes=10, input_shape=(1, 28, 28), layers=layers)
    assert model.spike_levels() == levels
