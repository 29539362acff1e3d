"""Sweeps: expansion of sweep files, resume and retry rules, a killed local sweep, an interrupted run, and
the real local SLURM (job array, requeue) when one is up (`scripts/slurm-local.sh up`; CI starts it)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import (
    QUICK,
    QUICK_SETTINGS,
    bench,
    env_for,
    load_sweep_in,
    needs_slurm,
    quick_sweep,
    records,
    wait_for_checkpoint,
    write_sweep,
)
from omegaconf import OmegaConf

from bench import CONFIG_DIR
from bench.cli import main as bench_main
from bench.config import load_config, run_id
from bench.errors import BenchError, ConfigError, RegistryError
from bench.runner import build
from bench.sweep import (
    Outcome,
    busy_seconds,
    cell_state,
    cells_to_run,
    execute,
    load_sweep,
    pack,
    plan,
    status,
    wait_for_array,
)
from bench.sweep.slurm import CellsTask, ProcessBaseline, cells_per_task


# --- expansion ---------------------------------------------------------------------------------------
def test_cells_expand_in_a_fixed_order_with_overrides_grid_variants_and_exclusions(tmp_path):
    path = write_sweep(
        tmp_path,
        "grid",
        """
methods: [lif_sg, multi_threshold]
datasets: [mnist5k, nmnist_sim]
seeds: [0, 1]
overrides: {trainer.max_epochs: 3}
per_dataset: {nmnist_sim: {data.frames: 4}}
per_method: {multi_threshold: {trainer: {max_epochs: 5}}}
variants: {rect: {}, tri: {method.surrogate: tri}}
grid: {method.time_steps: [1, 2]}
exclude:
  - {method: lif_sg, variant: tri}           # lif_sg has no surrogate option
  - {dataset: nmnist_sim, method.time_steps: 1}
  - {seed: 1, method: multi_threshold}
""",
    )
    sweep = load_sweep(str(path), check=False)
    got = [(c.dataset, c.method, c.variant, c.seed, c.overrides) for c in sweep.cells]
    lif = ("trainer.max_epochs=3",)
    mt = ("trainer.max_epochs=3", "trainer.max_epochs=5")
    ev = ("trainer.max_epochs=3", "data.frames=4")
    t1, t2, tri = "method.time_steps=1", "method.time_steps=2", "method.surrogate=tri"
    assert got == [
        ("mnist5k", "lif_sg", f"rect,{t1}", 0, (*lif, t1)),
        ("mnist5k", "lif_sg", f"rect,{t1}", 1, (*lif, t1)),
        ("mnist5k", "lif_sg", f"rect,{t2}", 0, (*lif, t2)),
        ("mnist5k", "lif_sg", f"rect,{t2}", 1, (*lif, t2)),
        ("mnist5k", "multi_threshold", f"rect,{t1}", 0, (*mt, t1)),
        ("mnist5k", "multi_threshold", f"rect,{t2}", 0, (*mt, t2)),
        ("mnist5k", "multi_threshold", f"tri,{t1}", 0, (*mt, tri, t1)),
        ("mnist5k", "multi_threshold", f"tri,{t2}", 0, (*mt, tri, t2)),
        ("nmnist_sim", "lif_sg", f"rect,{t2}", 0, (*ev, t2)),
        ("nmnist_sim", "lif_sg", f"rect,{t2}", 1, (*ev, t2)),
        ("nmnist_sim", "multi_threshold", f"rect,{t2}", 0, (*ev, "trainer.max_epochs=5", t2)),
        ("nmnist_sim", "multi_threshold", f"tri,{t2}", 0, (*ev, "trainer.max_epochs=5", tri, t2)),
    ]
    assert sweep.cells[0].args[-2:] == ["seed=0", "sweep=grid"]
    cfg = load_sweep(str(path)).cells[-1].config()  # every cell's config merges and validates
    assert (cfg.trainer.max_epochs, cfg.data.frames, cfg.method.surrogate, cfg.sweep) == (5, 4, "tri", "grid")


def test_a_cell_carries_its_sweep_files_facts_for_its_record_outside_its_run_id(tmp_path):
    text = """
description: why
track: ablation
methods: [ann]
datasets: [mnist5k]
variants: {a: {}, b: {method.lr: 0.1}}
reference: a
exclude: [{variant: b}]
"""
    path = write_sweep(tmp_path, "facts", text)
    (cell,) = load_sweep(str(path), check=False).cells
    assert cell.sweep_facts == {
        "track": "ablation",
        "sweep_description": "why",
        "sweep_reference": "a",
        "sweep_file": str(path.resolve()),  # outside the checkout: its full path
        "stage": None,  # not a tuning run
        "tuning": None,  # no tuning stage chose its configuration
    }
    matched = load_sweep("matched", check=False).cells[0]
    assert matched.sweep_facts["sweep_file"] == "configs/sweeps/matched.yaml"  # in the checkout: relative
    assert dataclasses.replace(cell, facts=None).run_id() == cell.run_id()  # no run id depends on them


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("methods: [ann]\ndatasets: [mnist5k]\nseed: [0]\n", ConfigError, "unknown key(s) seed"),
        ("methods: []\ndatasets: [mnist5k]\n", ConfigError, "non-empty list `methods`"),
        ("methods: [ann]\ndatasets: [mnist5k]\nper_method: {lif_sg: {}}\n", ConfigError, "names lif_sg"),
        ("methods: [lif_sgg]\ndatasets: [mnist5k]\n", RegistryError, "Did you mean 'lif_sg'"),
        ("methods: [ann]\ndatasets: [mnist5k]\noverrides: {method.lrr: 1}\n", ConfigError, "method.lrr"),
        (
            "methods: [ann]\ndatasets: [mnist5k]\noverrides: {metrics.cost_table: horowitz46}\n",
            ConfigError,
            "available: horowitz45_fp16",
        ),
        (
            "methods: [ann]\ndatasets: [mnist5k]\nslurm: {gpus: 1}\n",
            ConfigError,
            "unknown `slurm` key(s) gpus",
        ),
        *[
            (
                f"methods: [ann]\ndatasets: [mnist5k]\nslurm: {{cells_per_task: {bad}}}\n",
                ConfigError,
                f"`cells_per_task` must be a whole number of at least 1 (how many cells one SLURM array "
                f"task runs, one after another in one process; 1 gives every cell its own task), got {got}",
            )
            for bad, got in (("0", "0"), ("-2", "-2"), ("2.5", "2.5"), ("two", "'two'"), ("true", "True"))
        ],
    ],
)
def test_bad_sweep_files_are_config_errors_before_anything_runs(tmp_path, text, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sweep(str(write_sweep(tmp_path, "bad", text)))


TUNED = """methods: [ann, lif_sg, compressed_event]
datasets: [mnist5k]
seeds: [0, 1]
overrides: {method.layers: 8C3-AP2}
tuning:
  seeds: [0]
  space:
    ann: {method.lr: [1.0e-3, 3.0e-3]}
    lif_sg: {method.lr: [1.0e-3, 3.0e-3]}
    compressed_event: {method.lr: [1.0e-3, 3.0e-3]}
"""


@pytest.mark.parametrize(
    "space, message",
    [
        ("{ann: {method.lr: [0.1, 0.2]}}", "no space for lif_sg"),
        (
            "{ann: {method.lr: [0.1, 0.2]}, lif_sg: {method.lr: [0.1]}}",
            "the spaces have ann 2, lif_sg 1 configurations",
        ),
        ("{ann: {method.lr: []}, lif_sg: {method.lr: [0.1]}}", "needs a non-empty list of values"),
        ("{ann: {method.lr: [0.1]}, lif_sg: {method.lr: [0.1]}, slssnn: {}}", "names slssnn, which"),
    ],
)
def test_a_tuning_stage_gives_every_method_the_same_number_of_configurations(tmp_path, space, message):
    text = f"methods: [ann, lif_sg]\ndatasets: [mnist5k]\ntuning: {{space: {space}}}\n"
    with pytest.raises(ConfigError, match=message):
        load_sweep(str(write_sweep(tmp_path, "bad", text)), check=False)


def test_tuned_cells_wait_for_their_tuning_runs_then_run_the_best_validated_configuration(workdir):
    path = write_sweep(workdir, "tuned", TUNED)
    sweep = load_sweep(str(path), check=False)
    tuning = [c for c in sweep.cells if c.stage == "tuning"]
    # one tuning run per configuration (seed 0) for ann and lif_sg; compressed_event on images is outside
    # its design (event streams): never ranked, so never tuned, and it runs its defaults at once
    assert [(c.method, c.seed, c.overrides[-1], c.sweep) for c in tuning] == [
        ("ann", 0, "method.lr=0.001", "tuned-tuning"),
        ("ann", 0, "method.lr=0.003", "tuned-tuning"),
        ("lif_sg", 0, "method.lr=0.001", "tuned-tuning"),
        ("lif_sg", 0, "method.lr=0.003", "tuned-tuning"),
    ]
    ranked = [c for c in sweep.cells if c.stage is None]
    assert [(c.method, c.seed, bool(c.waiting)) for c in ranked] == [
        ("ann", 0, True),
        ("ann", 1, True),
        ("lif_sg", 0, True),
        ("lif_sg", 1, True),
        ("compressed_event", 0, False),
        ("compressed_event", 1, False),
    ]
    assert ranked[0].waiting == "2 of its 2 tuning runs have not ended"
    assert status(sweep).counts == {"done": 0, "failed": 0, "running": 0, "pending": 6, "waiting": 4}
    runs = workdir / "results" / "runs"
    runs.mkdir(parents=True)

    def record(cell, ended: str, val_acc: float | None = None) -> None:
        fields = {"run_id": cell.run_id(), "method": cell.method, "dataset": "mnist5k", "status": ended}
        fields |= {"stage": "tuning", "metrics": {"val_acc": val_acc}}
        (runs / f"{cell.run_id()}.json").write_text(json.dumps(fields))

    record(tuning[0], "ok", 0.90)
    record(tuning[1], "ok", 0.95)  # ann: the higher validation accuracy wins
    record(tuning[2], "ok", 0.80)
    now = load_sweep(str(path), check=False).cells
    assert now[4].waiting is None  # ann's group has ended
    assert now[6].waiting == "1 of its 2 tuning runs have not ended"
    record(tuning[3], "failed")  # lif_sg: a configuration with a failed run loses
    ann, _, lif_sg, *_ = [c for c in load_sweep(str(path), check=False).cells if c.stage is None]
    assert ann.overrides[-1] == "method.lr=0.003" and lif_sg.overrides[-1] == "method.lr=0.001"
    block = ann.sweep_facts["tuning"]
    assert block["chosen"] == {"method.lr": 0.003} and block["space"] == {"method.lr": [0.001, 0.003]}
    assert [(c["overrides"], c["val_acc"]) for c in block["candidates"]] == [
        ({"method.lr": 0.001}, 0.90),
        ({"method.lr": 0.003}, 0.95),
    ]
    assert block["candidates"][1]["run_ids"] == [tuning[1].run_id()] and block["sweep"] == "tuned-tuning"
    assert lif_sg.sweep_facts["tuning"]["candidates"][1]["val_acc"] is None
    assert ann.run_id() != tuning[1].run_id()  # the same config, another sweep: another run
    record(tuning[0], "ok", 0.95)  # a tie: the first listed
    assert [c for c in load_sweep(str(path), check=False).cells if c.stage is None][0].overrides[-1] == (
        "method.lr=0.001"
    )
    record(tuning[2], "failed")  # every configuration failed: nothing to choose, the cells say why
    waiting = [c for c in load_sweep(str(path), check=False).cells if c.waiting]
    assert [c.waiting for c in waiting] == ["every one of its tuning runs failed (bench status)"] * 2


def test_tuning_overrides_shorten_the_tuning_runs_only(tmp_path):
    text = TUNED.replace("overrides: {method.layers: 8C3-AP2}", "overrides: {trainer.max_epochs: 8}")
    text = text.replace("  seeds: [0]\n", "  seeds: [0]\n  overrides: {trainer.max_epochs: 4}\n")
    sweep = load_sweep(str(write_sweep(tmp_path, "short", text)), check=False)
    epochs = {(c.stage, c.method): c.config(check=False).trainer.max_epochs for c in sweep.cells}
    assert epochs == {
        ("tuning", "ann"): 4,
        ("tuning", "lif_sg"): 4,
        (None, "ann"): 8,
        (None, "lif_sg"): 8,
        (None, "compressed_event"): 8,
    }


def test_a_tuned_sweep_validates_then_tests_the_chosen_configuration(workdir):
    """End to end, locally: the tuning runs are validated and never tested; then the ranked cell runs."""
    settings = "\n".join(f"  {k}: {v}" for k, v in QUICK_SETTINGS.items())
    text = (
        f"methods: [ann]\ndatasets: [mnist5k]\nseeds: [0]\noverrides:\n{settings}\n  method.layers: 8C3-AP2\n"
        "tuning: {space: {ann: {method.lr: [1.0e-3, 3.0e-3]}}}\n"
    )
    sweep = load_sweep(str(write_sweep(workdir, "tuned", text)))
    said = []
    assert execute(sweep, "local", echo=said.append) == Outcome(0)
    found = records(workdir)
    tuned = [r for r in found.values() if r.get("stage") == "tuning"]
    (ranked,) = [r for r in found.values() if r.get("stage") is None]
    assert len(tuned) == 2 and all(
        "test_acc" not in r["metrics"] and "test_predictions" not in r for r in tuned
    )
    assert all(r["sweep"] == "tuned-tuning" and 0 <= r["metrics"]["val_acc"] <= 1 for r in tuned)
    assert all(r["val_history"] == [round(r["metrics"]["val_acc"], 4)] for r in found.values())
    scores = [r["metrics"]["val_acc"] for r in sorted(tuned, key=lambda r: r["config"]["method"]["lr"])]
    best = 0.001 if scores[0] >= scores[1] else 0.003
    assert ranked["config"]["method"]["lr"] == best and ranked["tuning"]["chosen"] == {"method.lr": best}
    assert ranked["sweep"] == "tuned" and "test_acc" in ranked["metrics"] and ranked["test_predictions"]
    # only the tested run keeps its model: a tuning run is never tested
    assert all(r["model"] is None for r in tuned)
    assert [p.name for p in (workdir / "models").iterdir()] == [ranked["model"]["file"]]
    assert any("waiting for their tuning runs" in line for line in said)


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "sweeps").glob("*.yaml")))
def test_every_sweep_file_builds_every_cell(name, workdir):
    """Each distinct cell's config validates and its model builds (time steps fit the frames, etc.)."""
    sweep = load_sweep(name)
    assert sweep.description and sweep.cells
    assert len({c.run_id() for c in sweep.cells}) == len(sweep.cells)  # no two cells are the same run

    # a tuning run is its ranked cell's config plus one candidate: each candidate is built once per method
    # and dataset (at the first T), its base with every T by the ranked cells
    def identity(c):
        if not c.stage:
            return (c.method, c.dataset, c.overrides)
        return (c.method, c.dataset, c.overrides[-len(sweep.tuning.candidates[c.method][0]) :])

    distinct = {identity(c): c for c in sweep.cells}
    for cell in distinct.values():
        build(cell.config(), cell.method, cell.dataset)


def test_demo_and_embedded_cover_every_method_on_both_embedded_datasets():
    from bench.registry import methods

    for name in ("demo", "embedded"):
        cells = load_sweep(name, check=False).cells
        assert {(c.method, c.dataset) for c in cells} == {
            (m, d) for m in methods() for d in ("mnist5k", "nmnist_sim")
        }
    assert {c.seed for c in load_sweep("embedded", check=False).cells} == {0, 1, 2}


def test_ok_cells_are_skipped_failed_ones_only_on_retry_interrupted_ones_rerun(workdir):
    sweep = load_sweep(str(quick_sweep(workdir, "rules", "[ann]", "[0, 1, 2, 3]", 1)))
    runs = workdir / "results" / "runs"
    runs.mkdir(parents=True)
    states = {0: "ok", 1: "failed", 2: "interrupted"}  # seed 3: no record
    for cell in sweep.cells:
        if cell.seed in states:
            record = {"run_id": cell.run_id(), "method": "ann", "dataset": "mnist5k", "error": "x"}
            record |= {"status": states[cell.seed], "metrics": {"test_acc": 0.9, "time_steps": 1}}
            (runs / f"{record['run_id']}.json").write_text(json.dumps(record))
    todo, skipped = cells_to_run(sweep, retry_failed=False)
    assert [c.seed for c in todo] == [2, 3]
    assert skipped == {"done": 1, "failed": 1, "running": 0, "waiting": 0}
    assert [c.seed for c in cells_to_run(sweep, retry_failed=True)[0]] == [1, 2, 3]


# --- local executor ----------------------------------------------------------------------------------
def test_a_sweeps_busy_time_counts_side_by_side_cells_once_and_no_gaps():
    def ran(start: str, wall: float) -> dict:
        return {"started_at": f"2026-12-03T{start}+00:00", "wall_time_s": wall}

    records = [
        ran("10:00:00", 100.0),  # 10:00:00-10:01:40
        ran("10:00:30", 30.0),  # inside the first: adds nothing
        ran("10:01:00", 120.0),  # overlaps it: runs on to 10:03:00, +80 s
        ran("12:00:00", 60.0),  # a later session, after a 2 h gap that does not count: +60 s
        {"started_at": "2026-12-03T13:00:00+00:00", "wall_time_s": None},  # a run that never ended
    ]
    assert busy_seconds(records) == 100.0 + 80.0 + 60.0
    assert busy_seconds([]) == 0.0


def test_a_killed_local_sweep_completes_on_rerun_with_one_record_per_cell(tmp_path, monkeypatch, capsys):
    path = quick_sweep(tmp_path, "killed", "[ann, lif_sg]", "[0, 1]", 3)
    command = [sys.executable, "-m", "bench.cli", "sweep", str(path), "--max-parallel", "2"]
    sweep = subprocess.Popen(
        command,
        env=env_for(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not records(tmp_path) and time.monotonic() < deadline:  # the first cell has finished
            time.sleep(0.2)
        time.sleep(random.Random(8).uniform(0.0, 4.0))  # somewhere in the remaining cells
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and its running cells, without warning
        sweep.wait()
    before = records(tmp_path)
    assert 1 <= sum(r["status"] == "ok" for r in before.values()) < 4

    out = bench("sweep", str(path), "--max-parallel", "2", folder=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    after = records(tmp_path)
    expected = {cell.run_id() for cell in load_sweep_in(tmp_path, path).cells}
    assert set(after) == expected and all(r["status"] == "ok" for r in after.values())
    assert {r["track"] for r in after.values()} == {"paper"}  # the file's (default) track, in every record
    assert all(
        after[rid]["wall_time_s"] == r["wall_time_s"] for rid, r in before.items() if r["status"] == "ok"
    )
    assert not list((tmp_path / "results" / "runs").glob(".*"))  # no temporary files left
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))  # `bench status`, in-process
    assert bench_main(["status", str(path)]) == 0
    assert "4 done, 0 failed, 0 running, 0 pending" in capsys.readouterr().out


def test_an_interrupted_run_records_interrupted_then_resumes_from_its_checkpoint(tmp_path):
    # lif_sg, 10 epochs of 10 batches: Ctrl+C lands after the first epoch's checkpoint, well before the end
    overrides = [*QUICK, "trainer.limit_train_batches=10", "trainer.max_epochs=10"]
    args = ["run", "--method", "lif_sg", "--dataset", "mnist5k", *overrides]
    command = [sys.executable, "-m", "bench.cli", *args]
    process = subprocess.Popen(
        command,
        env=env_for(tmp_path),
        stdout=(tmp_path / "run.log").open("w"),
        stderr=subprocess.STDOUT,
        # Ctrl+C in a terminal: SIGINT as a user's shell delivers it, even when the tests themselves run
        # as a background job (which starts with SIGINT ignored, and its children inherit that)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    rid = run_id("lif_sg", "mnist5k", load_config("lif_sg", "mnist5k", overrides))
    try:
        wait_for_checkpoint(tmp_path, rid, process)
        process.send_signal(signal.SIGINT)  # Ctrl+C
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode != 0, (tmp_path / "run.log").read_text()
    (interrupted,) = records(tmp_path).values()
    assert (
        interrupted["status"] == "interrupted" and "resumes from its last checkpoint" in interrupted["error"]
    )

    out = bench(*args, folder=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (record,) = records(tmp_path).values()
    assert record["status"] == "ok" and record["run_id"] == rid
    assert 1 <= record["resumed_from_epoch"] < 10 and record["metrics"]["epochs"] == 10
    assert not (tmp_path / "logs" / "checkpoints" / rid).exists()  # removed once the run is recorded


# --- packed SLURM cells (the task's code, run here in-process) ------------------------------------------
PACKED_SWEEP = """
methods: [ann, lif_sg]
datasets: [mnist5k]
seeds: [0, 1]
exclude: [{method: ann, seed: 1}]
slurm: {cells_per_task: 2}
"""


def test_cells_are_packed_in_order_into_as_few_balanced_tasks_as_allowed(workdir):
    cells = list(range(14))
    assert pack(cells, 1) == [[c] for c in cells]
    assert pack(cells, 7) == [cells[0::2], cells[1::2]]  # dealt out: not one task of the slow cells
    assert [len(t) for t in pack(cells, 4)] == [4, 4, 3, 3]  # as few tasks as allowed, sizes balanced
    assert pack(cells[:3], 2) == [[0, 2], [1]] and pack([], 3) == []
    sweep = load_sweep(str(write_sweep(workdir, "packed", PACKED_SWEEP)), check=False)
    assert sweep.cells_per_task == 2 and "cells_per_task" not in sweep.slurm  # not a submitit parameter
    assert cells_per_task(sweep, None) == 2 and cells_per_task(sweep, 5) == 5  # the flag wins
    with pytest.raises(ConfigError, match="--cells-per-task: `cells_per_task` must be a whole number"):
        cells_per_task(sweep, 0)


def test_dry_run_shows_how_the_cells_are_packed_into_array_tasks(workdir, capsys):
    path = str(write_sweep(workdir, "packed", PACKED_SWEEP))

    def dry_run(*flags) -> tuple[int, str]:
        code = bench_main(["sweep", path, "--dry-run", *flags])
        out = capsys.readouterr()
        return code, " ".join((out.out + out.err).split())  # rich wraps lines at the console width

    code, out = dry_run("--executor", "slurm")
    assert (
        code == 0 and "3 cell(s) to run in 2 array task(s), up to 2 a task: task 0: #0, #2; task 1: #1" in out
    )
    # what each task asks SLURM for: the sweep file's block, the command line winning, every key named
    assert (
        "slurm request per array task: partition the cluster's default, GPUs none, CPUs 1, memory (GB) the "
        "partition's default, time limit (min) 60, account your default, qos the default, constraint none, "
        "tasks at once SLURM's limit, 2 cell(s) a task" in out
    )
    code, out = dry_run(
        "--executor", "slurm", "--cells-per-task", "3", "--partition", "gpu", "--max-parallel", "4"
    )
    assert code == 0 and "3 cell(s) to run in 1 array task(s), up to 3 a task: task 0: #0-2" in out
    assert "partition gpu," in out and "tasks at once 4, 3 cell(s) a task" in out
    assert "slurm request" not in dry_run()[1]  # a local sweep asks SLURM for nothing
    code, out = dry_run("--executor", "slurm", "--cells-per-task", "0")
    assert code == 1 and "--cells-per-task: `cells_per_task` must be a whole number of at least 1" in out


def test_the_plan_lists_shared_overrides_once_and_each_cells_own(workdir):
    text = """
methods: [ann, lif_sg]
datasets: [mnist5k]
overrides: {trainer.max_epochs: 2}
per_method: {lif_sg: {method.time_steps: 2}}
variants: {a: {data.batch_size: 16}, b: {}}
slurm: {cells_per_task: 2}
"""
    sweep = load_sweep(str(write_sweep(workdir, "planned", text)), check=False)
    dry = plan(sweep, "slurm", retry_failed=False)
    assert [(p.number, p.cell.method, p.cell.variant, p.state, p.own) for p in dry.cells] == [
        (0, "ann", "a", "pending", ()),
        (1, "ann", "b", "pending", ()),
        (2, "lif_sg", "a", "pending", ("method.time_steps=2",)),
        (3, "lif_sg", "b", "pending", ("method.time_steps=2",)),
    ]
    assert dry.common == ["trainer.max_epochs=2"]
    assert dry.by_variant == {"a": ["data.batch_size=16"], "b": []}
    assert dry.others == [("#2-3", ("method.time_steps=2",))]
    assert (
        dry.packing
        == "slurm: 4 cell(s) to run in 2 array task(s), up to 2 a task: task 0: #0, #2; task 1: #1, #3"
    )
    assert plan(sweep, "local", cells_per_task=None).packing is not None  # the file asks for packing


def test_status_and_execute_read_the_cells_records(workdir):
    sweep = load_sweep(str(quick_sweep(workdir, "recorded", "[ann]", "[0, 1, 2]", 1)), check=False)
    runs = workdir / "results" / "runs"
    runs.mkdir(parents=True)

    def record(cell, ended: str, start: str) -> None:
        fields = {"run_id": cell.run_id(), "method": "ann", "dataset": "mnist5k", "status": ended}
        fields |= {"error": "x", "wall_time_s": 60.0, "started_at": f"2026-12-03T{start}+00:00"}
        fields["metrics"] = {"test_acc": 0.9, "time_steps": 1}
        (runs / f"{cell.run_id()}.json").write_text(json.dumps(fields))

    record(sweep.cells[0], "ok", "10:00:00")
    record(sweep.cells[1], "failed", "10:00:30")  # overlaps the first by 30 s
    now = status(sweep)
    assert [(c.cell.seed, c.state) for c in now.cells] == [(0, "done"), (1, "failed"), (2, "pending")]
    assert now.counts == {"done": 1, "failed": 1, "running": 0, "pending": 1, "waiting": 0}
    assert (len(now.records), now.busy_s, now.run_s) == (2, 90.0, 120.0)
    # Nothing left to run once the pending cell has its record: the local executor starts nothing.
    record(sweep.cells[2], "ok", "11:00:00")
    said = []
    assert execute(sweep, "local", echo=said.append) == Outcome(0)
    assert said == [
        f"sweep recorded: 3 cells, 0 to run (2 done, 1 failed and not retried, 0 running elsewhere), "
        f"1 at a time; logs in {workdir / 'logs' / 'sweeps' / 'recorded'}/"
    ]
    with pytest.raises(ValueError, match="executor 'ssh' is not one of local, slurm"):
        execute(sweep, "ssh")
    with pytest.raises(ValueError, match="unknown SLURM option.s. gpus"):
        execute(sweep, "slurm", slurm={"gpus": 1})


def test_the_process_state_a_run_leaves_is_reset_before_the_next_packed_cell(monkeypatch):
    import logging

    import torch

    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    baseline = ProcessBaseline.capture()
    threads, handlers = torch.get_num_threads(), list(logging.getLogger("pytorch_lightning").handlers)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        os.environ["PL_GLOBAL_SEED"] = "7"  # what a run leaves behind
        torch.use_deterministic_algorithms(not deterministic, warn_only=True)
        torch.set_num_threads(threads + 1)
        logging.getLogger("pytorch_lightning").addHandler(logging.NullHandler())
        previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    finally:
        baseline.restore()
    assert "PL_GLOBAL_SEED" not in os.environ
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.get_num_threads() == threads
    assert logging.getLogger("pytorch_lightning").handlers == handlers
    assert signal.getsignal(signal.SIGUSR2) is previous


def test_a_failing_cell_does_not_stop_the_other_cells_of_its_packed_task(workdir):
    settings = "\n".join(f"  {k}: {v}" for k, v in QUICK_SETTINGS.items())
    text = f"""
methods: [ann, lif_sg]
datasets: [mnist5k]
overrides:
{settings}
variants: {{diverges: {{method.lr: 1e9, trainer.limit_train_batches: 6}}, plain: {{}}}}
exclude: [{{method: ann, variant: diverges}}]
"""
    cells = load_sweep(str(write_sweep(workdir, "one_fails", text))).cells
    assert [(c.method, c.variant) for c in cells] == [
        ("ann", "plain"),
        ("lif_sg", "diverges"),
        ("lif_sg", "plain"),
    ]
    task = CellsTask()
    with pytest.raises(
        BenchError, match=r"1 of the 3 cell\(s\) .*: lif_sg on mnist5k \[diverges\].*diverged"
    ):
        task(cells)
    found = records(workdir)
    assert [found[c.run_id()]["status"] for c in cells] == ["ok", "failed", "ok"]
    assert [found[c.run_id()]["track"] for c in cells] == ["paper"] * 3  # the file's (default) track
    # The same task again (as submitit requeues it, its state pickled): nothing runs twice.
    with pytest.raises(BenchError, match="1 of the 3"):
        task(cells)
    assert records(workdir) == found
    # A fresh task skips the cells with an ok record.
    assert CellsTask()([cells[0], cells[2]]) == {
        c.label: "ok (its record existed; not run again)" for c in cells[::2]
    }


# --- SLURM -------------------------------------------------------------------------------------------
#: Record fields that may differ between two runs of the same cell: when and where it ran, how long.
RUN_CIRCUMSTANCES = {
    "started_at",
    "wall_time_s",
    "git",
    "versions",
    "device",
    "resumed_from_epoch",
    "sweep_file",
}


def record_content(record: dict) -> dict:
    """A record without its circumstances, timing metrics and paths: what the run computed."""
    content = {k: v for k, v in record.items() if k not in RUN_CIRCUMSTANCES}
    content["metrics"] = {
        k: v for k, v in record["metrics"].items() if not k.startswith(("latency", "throughput"))
    }
    config = json.loads(json.dumps(record["config"]))
    del config["paths"], config["data"]["root"]
    return {**content, "config": config}


def submitted_array(out: subprocess.CompletedProcess) -> str:
    """The job array id `bench sweep --executor slurm` printed."""
    assert out.returncode == 0 and "submitted job array " in out.stdout, out.stdout + out.stderr
    return out.stdout.split("submitted job array ")[1].split()[0]


@needs_slurm
def test_a_sweep_runs_on_slurm_as_one_job_array_and_packed_leaves_the_same_records(tmp_path):
    unpacked, packed = tmp_path / "unpacked", tmp_path / "packed"
    paths = {}
    for folder in (unpacked, packed):
        folder.mkdir()
        paths[folder] = quick_sweep(folder, "packing", "[ann, lif_sg]", "[0, 1]", 1)
        paths[folder].write_text(paths[folder].read_text() + "exclude: [{method: ann, seed: 1}]\n")
    slurm = ("--executor", "slurm", "--timeout-min", "15")
    out = bench("sweep", str(paths[packed]), *slurm, "--cells-per-task", "2", folder=packed)
    arrays = [submitted_array(out)]
    try:
        assert "(2 tasks, 3 cells, up to 2 a task)" in out.stdout
        # Meanwhile the same cells unpacked, one task each, and `--wait` until they have all ended.
        out = bench("sweep", str(paths[unpacked]), *slurm, "--wait", folder=unpacked)
        arrays.append(submitted_array(out))
        assert "(3 tasks)" in out.stdout
        alone = records(unpacked)
        assert set(alone) == {cell.run_id() for cell in load_sweep_in(unpacked, paths[unpacked]).cells}
        assert all(r["status"] == "ok" and r["sweep"] == "packing" for r in alone.values())
        # One array: the tasks' submitit files share the array's job id.
        submitted = (unpacked / "logs" / "slurm" / "packing").glob("*_submitted.pkl")
        assert {p.name.split("_")[0] for p in submitted} == {arrays[1]}
        wait_for_array(arrays[0])
    finally:
        subprocess.run(["scancel", *arrays])
    together = records(packed)
    assert {rid: record_content(r) for rid, r in together.items()} == {
        rid: record_content(r) for rid, r in alone.items()
    }
    task_logs = sorted((packed / "logs" / "slurm" / "packing").glob("*_log.out"))
    assert len(task_logs) == 2 and "cell 2/2: lif_sg on mnist5k seed 1" in task_logs[0].read_text()


@needs_slurm
def test_a_preempted_slurm_task_resumes_its_cell_from_its_checkpoint_and_skips_the_one_it_had_done(
    tmp_path, monkeypatch
):
    # One task: ann (1 epoch), lif_sg (10 epochs of 10 batches, signalled after its first), multi_threshold.
    path = quick_sweep(
        tmp_path,
        "packed_preempt",
        "[ann, lif_sg, multi_threshold]",
        "[0]",
        10,
        trainer__limit_train_batches=10,
    )
    quick = "{ann: {trainer.max_epochs: 1}, multi_threshold: {trainer.max_epochs: 1}}"
    path.write_text(path.read_text() + f"per_method: {quick}\nslurm: {{cells_per_task: 3}}\n")
    cells = load_sweep_in(tmp_path, path).cells
    first, second, third = (cell.run_id() for cell in cells)
    out = bench("sweep", str(path), "--executor", "slurm", "--timeout-min", "15", folder=tmp_path)
    array = submitted_array(out)
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))  # `bench status`, in-process
    try:
        assert "(1 task, 3 cells, up to 3 a task)" in out.stdout
        wait_for_checkpoint(tmp_path, second)
        done_before = records(tmp_path)[first]
        assert [cell_state(cell)[0] for cell in cells] == ["done", "running", "pending"]
        marker = json.loads((tmp_path / "results" / "running" / f"{second}.json").read_text())
        # What SLURM sends before a preemption or time-out (submitit's signal): checkpoint, requeue, exit.
        subprocess.run(["scancel", "--signal=USR2", marker["slurm_job_id"]], check=True)
        # Requeued or running again, the task still owns the cell it was in; the next one still waits.
        assert [cell_state(cell)[0] for cell in cells] == ["done", "running", "pending"]
        wait_for_array(array)
    finally:
        subprocess.run(["scancel", array])
    found = records(tmp_path)
    assert found[first] == done_before  # not run again
    resumed = found[second]
    assert resumed["status"] == "ok", resumed.get("error")
    assert 1 <= resumed["resumed_from_epoch"] < 10 and resumed["metrics"]["epochs"] == 10
    assert found[third]["status"] == "ok" and "resumed_from_epoch" not in found[third]
    task_logs = "".join(
        p.read_text() for p in (tmp_path / "logs" / "slurm" / "packed_preempt").glob("*_log.*")
    )
    assert "Requeued job" in task_logs and "DUE TO JOB REQUEUE" in task_logs  # submitit's, then SLURM's
    assert "before this task was requeued; skipped" in task_logs


# --- loggers -----------------------------------------------------------------------------------------
def test_wandb_logger_works_offline_and_keeps_the_run_id(workdir, monkeypatch):
    from bench.runner import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run("ann", "mnist5k", [*QUICK, "logger=wandb"])
    assert result.record["status"] == "ok"
    (offline,) = (workdir / "logs" / "wandb").glob(f"offline-run-*-{result.record['run_id']}")
    assert list(offline.glob("*.wandb"))  # the run's data, for `wandb sync` later


def test_a_sweep_whose_exclusions_drop_every_cell_says_so(tmp_path):
    path = write_sweep(tmp_path, "nothing", "methods: [ann]\ndatasets: [mnist5k]\nexclude: [{method: ann}]\n")
    with pytest.raises(ConfigError, match="drop every cell, so it has nothing to run"):
        load_sweep(str(path), check=False)


# --- run ids, built once (issue 33: `bench status matched` took 12-14 s, every config merged per call) -----
@pytest.mark.parametrize("name", sorted(p.stem for p in (CONFIG_DIR / "sweeps").glob("*.yaml")))
def test_a_cells_run_id_and_config_are_the_ones_load_config_gives(name, workdir):
    """Cells build their configs from file merges and parsed overrides kept for reuse: what they build is
    what ``load_config`` builds, so no run id changes (a spread of each sweep file's cells, tuning runs and
    tuned cells included)."""
    cells = load_sweep(name, check=False).cells
    for cell in cells[:: max(1, len(cells) // 6)] + cells[-1:]:
        reference = load_config(cell.method, cell.dataset, cell.args, check=False)
        assert cell.run_id() == run_id(cell.method, cell.dataset, reference), cell.label
        assert OmegaConf.to_container(cell.config(check=False)) == OmegaConf.to_container(reference)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.fold=${seed}", "data.folds=5", "seed=3"],  # an interpolation resolved in the cell's config
        ["trainer={max_epochs: 2, limit_train_batches: 3}", "trainer.max_epochs=4"],  # a mapping, then a key
        ["method.layers=[8, 16]", "method.time_steps=null", 'variant="a, b"'],
        ["method.lr=???"],  # a missing value keeps the old one in OmegaConf's merge: its own path
        ["method=5"],  # a value over a mapping: its own path, and its error
        ["method.lr=${nowhere}"],  # an interpolation to nothing: load_config's error
    ],
)
def test_a_cells_cheap_config_merges_as_omegaconf_does(overrides, workdir):
    from bench.sweep.spec import unchecked_config

    try:
        expected = OmegaConf.to_container(load_config("lif_sg", "mnist5k", overrides, check=False))
    except ConfigError as error:
        with pytest.raises(ConfigError, match=re.escape(str(error))):
            unchecked_config("lif_sg", "mnist5k", overrides)
        return
    assert OmegaConf.to_container(unchecked_config("lif_sg", "mnist5k", overrides)) == expected


def test_status_reads_each_config_file_once_and_builds_each_cells_config_once(workdir, monkeypatch):
    from bench import config as config_mod

    text = TUNED.replace("[mnist5k]", "[mnist5k, nmnist_sim]") + "grid: {method.time_steps: [1, 2]}\n"
    path = write_sweep(workdir, "counted", text)
    calls = {"load": 0, "run_id": 0}
    load, rid = OmegaConf.load, config_mod.run_id

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(OmegaConf, "load", counted("load", load))
    monkeypatch.setattr(config_mod, "run_id", counted("run_id", rid))
    sweep = load_sweep(str(path), check=False)
    now = status(sweep)
    ids = [cell.run_id() for cell in sweep.cells]
    # 24 ranked cells (3 methods x 2 datasets x 2 T x 2 seeds), 16 tuning runs (2 for each of the 8 groups
    # inside their method's design)
    assert len(now.cells) == len(ids) == 40
    # the sweep file, then defaults, dataset and method files once per (method, dataset): not per cell
    assert calls["load"] <= 1 + 3 * 6
    assert calls["run_id"] <= len({(c.method, c.dataset, tuple(c.args)) for c in sweep.cells})
