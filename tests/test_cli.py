"""The `bench` command as a user meets it: a subprocess, its exit status and what it prints."""

from __future__ import annotations

import io
import json

from helpers import QUICK, bench, write_sweep
from rich.cells import cell_len
from rich.console import Console

from bench import cli
from bench.sweep import load_sweep


def test_misspelt_method_names_the_close_match_without_traceback(tmp_path):
    out = bench("run", "--method", "lif_sgg", "--dataset", "mnist5k", folder=tmp_path)
    assert out.returncode == 1
    assert "Did you mean 'lif_sg'" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "results").exists()  # nothing ran, nothing recorded


def test_misspelt_config_key_names_the_valid_keys_without_traceback(tmp_path):
    out = bench("run", "--method", "lif_sg", "--dataset", "mnist5k", "method.time_step=4", folder=tmp_path)
    assert out.returncode == 1
    message = " ".join(out.stderr.split())  # rich wraps long lines
    assert "Unknown key method.time_step" in message and "time_steps" in message
    assert "Traceback" not in out.stderr + out.stdout


def test_bad_metrics_value_lists_the_choices_and_records_nothing(tmp_path):
    out = bench(
        "run", "--method", "lif_sg", "--dataset", "mnist5k", "metrics.cost_table=horowitz46", folder=tmp_path
    )
    assert out.returncode == 1
    message = " ".join(out.stderr.split())
    assert "metrics.cost_table='horowitz46'" in message
    assert "horowitz45_fp16, horowitz45_fp32, horowitz45_int8, loihi, spinnaker, spinnaker2" in message
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "results").exists()  # no record, not even a failed one

    sweep = tmp_path / "bad.yaml"
    sweep.write_text("methods: [lif_sg]\ndatasets: [mnist5k]\noverrides: {metrics.pooled_spikes: fraction}\n")
    out = bench("sweep", str(sweep), "--dry-run", folder=tmp_path)
    assert out.returncode == 1 and "use one of effective, folded, ac, mac" in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr + out.stdout


def test_list_shows_methods_datasets_sweeps_and_cost_tables(tmp_path):
    out = bench("list", folder=tmp_path)
    assert out.returncode == 0, out.stderr
    for text in (
        "ann",
        "lif_sg",
        "mnist5k",
        "1x28x28",
        "Sweeps",
        "Energy cost tables",
        "Memory models",
        "sram45",
    ):
        assert text in out.stdout


def test_dry_run_at_80_columns_shows_every_name_and_override_whole(tmp_path):
    sweep = tmp_path / "wide.yaml"
    sweep.write_text(
        "methods: [compressed_event, multi_threshold]\ndatasets: [mnist5k, nmnist_sim]\nseeds: [0]\n"
        "per_dataset: {nmnist_sim: {data.frames: 8}}\n"
        "per_method: {compressed_event: {method.layers: 32C3-AP2-64C3-AP2-128C3-AP2}}\n"
        "grid: {method.time_steps: [1, 2]}\n"
    )
    out = bench("sweep", str(sweep), "--dry-run", folder=tmp_path, columns=80)
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) <= 80
    for text in ("compressed_event", "multi_threshold", "nmnist_sim", "method.time_steps=2"):
        assert text in out.stdout
    # Too long for a column beside the others: listed under the table, whole, with the cells they apply to.
    assert "#0-1: method.layers=32C3-AP2-64C3-AP2-128C3-AP2" in out.stdout
    assert "#4-5: data.frames=8  method.layers=32C3-AP2-64C3-AP2-128C3-AP2" in out.stdout
    assert "#6-7: data.frames=8" in out.stdout


def test_one_run_is_priced_under_another_table_and_rule_without_training_again(tmp_path):
    """Issue 29's acceptance: one `bench run`, then other cost tables and rules from its record alone."""
    run = ["run", "--method", "lif_sg", "--dataset", "mnist5k", *QUICK]
    first = bench(*run, folder=tmp_path)
    assert first.returncode == 0, first.stderr
    (path,) = (tmp_path / "results" / "runs").glob("*.json")
    record, written = json.loads(path.read_text()), path.stat().st_mtime_ns
    assert record["metrics"]["cost_table"] == "horowitz45_fp32" and record["layers"][0]["counts"]["calls"] > 0

    again = bench(*run, "metrics.cost_table=loihi", "metrics.pooled_spikes=folded", folder=tmp_path)
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert "already recorded ok" in said and "nothing was trained" in said and "loihi" in said
    assert path.stat().st_mtime_ns == written and list(path.parent.iterdir()) == [path]  # record untouched

    energies = {}
    for options in ([], ["--cost-table", "loihi"], ["--pooled", "folded"]):
        out = bench("compare", "--dataset", "mnist5k", "--sweep", "runs", *options, folder=tmp_path)
        assert out.returncode == 0, out.stderr
        energies[tuple(options)] = out.stdout
    assert "cost table loihi" in energies[("--cost-table", "loihi")]
    assert "pooled_spikes=folded" in energies[("--pooled", "folded")]
    assert len(set(energies.values())) == 3  # three different pricings of one record


# --- terminal output that fits 80 columns (issue 33) ------------------------------------------------------
def printed(monkeypatch, width: int, *argv: str) -> str:
    """What ``bench ARGV`` prints on stdout, in this process, on a terminal ``width`` columns wide."""
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=width))
    assert cli.main(list(argv)) == 0
    return out.getvalue()


def fits(text: str, width: int) -> None:
    """Every line within ``width`` columns, none cut with an ellipsis, none ending in spaces."""
    for line in text.splitlines():
        assert cell_len(line) <= width and "…" not in line and line == line.rstrip(), repr(line)


def table_rows(text: str, columns: list[str], end: str) -> list[tuple[str, ...]]:
    """The rows of the table under the header naming ``columns`` (up to the line starting with ``end``),
    each cell's text joined over the lines it wraps onto (a row's next lines start with a space)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split() == " ".join(columns).split())
    starts = [lines[at].index(column) for column in columns]
    rows: list[list[str]] = []
    for line in lines[at + 2 : next(i for i, line in enumerate(lines) if line.startswith(end))]:
        if line.startswith(" "):
            rows[-1].append(line)
        else:
            rows.append([line])
    spans = list(zip(starts, [*starts[1:], None], strict=True))

    def cell(row: list[str], a: int, b: int | None) -> str:
        return " ".join(part for line in row if (part := line[a:b].strip()))

    return [tuple(cell(row, a, b) for a, b in spans) for row in rows]


STATUS_SWEEP = """methods: [lif_sg, compressed_event]
datasets: [nmnist_sim]
seeds: [0, 1]
overrides: {method.layers: 8C3-AP2}
variants: {base: {}, long_name: {trainer.max_epochs: 2}}
grid: {method.time_steps: [1, 2]}
tuning: {space: {lif_sg: {method.lr: [0.001, 0.003]}, compressed_event: {method.lr: [0.001, 0.003]}}}
"""


def test_status_shows_each_cells_method_dataset_t_variant_and_seed_whole_at_80_columns(workdir, monkeypatch):
    path = str(write_sweep(workdir, "wide", STATUS_SWEEP))
    cells = load_sweep(path, check=False).cells
    runs = workdir / "results" / "runs"
    runs.mkdir(parents=True)
    done, failed = cells[0], cells[1]  # two tuning runs: validated, never tested
    for cell, status, extra in (
        (done, "ok", {"metrics": {"val_acc": 0.91234}}),
        (failed, "failed", {"error": "RuntimeError: CUDA out of memory on /home/someone/data\nTraceback"}),
    ):
        record = {"run_id": cell.run_id(), "method": cell.method, "dataset": cell.dataset, "status": status}
        record |= {"wall_time_s": 60.0, "started_at": "2026-12-03T10:00:00+00:00"}
        (runs / f"{cell.run_id()}.json").write_text(json.dumps({**record, "stage": "tuning", **extra}))

    cells = load_sweep(path, check=False).cells  # lif_sg's first group has its choice now, the rest wait
    narrow = printed(monkeypatch, 80, "status", path)
    fits(narrow, 80)
    columns = ["method", "dataset", "T", "variant", "seed", "state", "acc. %", "run id"]
    rows = table_rows(narrow, columns, end="acc. %:")
    for cell in cells:
        parts = [part.strip() for part in cell.variant.split(",")]
        steps = next(p.split("=")[1] for p in parts if p.startswith("method.time_steps="))
        variant = ", ".join(p for p in parts if not p.startswith("method.time_steps="))
        rid = "" if cell.waiting else cell.run_id().removeprefix(f"{cell.method}-{cell.dataset}-")
        shown = (cell.method, cell.dataset, steps, variant, str(cell.seed))
        assert any(row[:5] == shown and row[-1] == rid for row in rows), (shown, narrow)
    flat = " ".join(narrow.split())  # the notes under the table wrap
    assert "run id: <method>-<dataset>-<the id shown>." in flat
    assert f"failed {failed.run_id()}: RuntimeError: CUDA out of memory on /home/someone/data" in flat
    assert "waiting (14): 2 of its 2 tuning runs have not ended." in flat
    assert next(row for row in rows if row[-1] == done.run_id().split("-")[-1])[5:7] == ("done", "91.23")

    wide = printed(monkeypatch, 200, "status", path)
    fits(wide, 200)
    assert "run id:" not in wide and all(c.run_id() in wide for c in cells if not c.waiting)


def test_list_shows_whole_descriptions_and_split_sizes_on_one_line_at_80_columns(monkeypatch):
    from bench import registry

    text = printed(monkeypatch, 80, "list")
    fits(text, 80)
    lines = text.splitlines()
    catalogue = registry.catalogue()
    for key, info in catalogue["dataset"].items():
        row = next(line for line in lines if line.startswith(f"{key} "))
        assert [size.strip() for size in info.facts.sizes.split("/")] == row.split()[-3:]
    # slssnn's description is two lines of its docstring: both, in its column
    header = next(line for line in lines if line.startswith("key ") and "description" in line)
    column = header.index("description")
    start = next(i for i, line in enumerate(lines) if line.startswith("slssnn "))
    end = next(i for i, line in enumerate(lines) if i > start and not line.startswith(" "))
    shown = " ".join(line[column:].strip() for line in lines[start:end])
    assert shown == catalogue["method"]["slssnn"].description
    assert shown.endswith("re-emits them as a train.")


def test_a_dry_run_says_what_it_does_at_once_and_ends_with_a_summary(workdir, monkeypatch, capsys):
    path = str(write_sweep(workdir, "small", "methods: [ann, lif_sg]\ndatasets: [mnist5k]\nseeds: [0, 1]\n"))
    text = printed(monkeypatch, 80, "sweep", path, "--dry-run")
    assert "checking every cell's config before anything runs" in capsys.readouterr().err
    summary = " ".join(text.split()).split("other overrides")[-1]
    assert (
        "4 cells: 0 done, 0 failed, 0 running, 4 pending, 0 waiting. "
        "Without --dry-run, `bench sweep` would run 4 of them locally. This dry run checked every cell's "
        "config and ran nothing ("
    ) in summary
