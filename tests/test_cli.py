"""The `bench` command as a user meets it: a subprocess, its exit status and what it prints."""

from __future__ import annotations

import json

from helpers import QUICK, bench


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
