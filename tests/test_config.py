from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.config import load_config, parse_overrides, run_id
from bench.errors import ConfigError
from bench.runner import build
from methods.base import BenchMethod


@pytest.fixture
def layered_configs(tmp_path):
    """A config tree in which every layer sets its own key and overrides the layer below it."""
    root = tmp_path / "configs"
    (root / "datasets").mkdir(parents=True)
    (root / "methods").mkdir()
    (root / "defaults.yaml").write_text(
        "seed: 0\nlogger: none\npaths: {results: r, logs: l, models: m}\nmethod: {}\nmetrics: {}\n"
        "data: {root: /data, batch_size: 1}\n"
        "trainer: {max_epochs: 1, log_every_n_steps: 1, min_epochs: 1, max_steps: 1, max_time: null}\n"
    )
    (root / "datasets" / "mnist5k.yaml").write_text(
        "data: {batch_size: 2}\ntrainer: {max_epochs: 2, log_every_n_steps: 2}\n"
    )
    (root / "methods" / "ann.yaml").write_text(
        "method: {lr: 0.5, hidden: 16}\ntrainer: {max_epochs: 3, min_epochs: 3}\n"
        "datasets:\n  mnist5k: {trainer: {max_epochs: 4, max_steps: 4}}\n"
        "  cifar10: {trainer: {max_epochs: 99}}\n"
    )
    return root


def test_merge_order_defaults_dataset_method_block_overrides(layered_configs):
    cfg = load_config("ann", "mnist5k", ["trainer.max_epochs=5"], config_dir=layered_configs)
    assert cfg.trainer.max_epochs == 5  # command line wins over everything
    assert cfg.trainer.max_steps == 4  # the method file's mnist5k block wins over the method file
    assert cfg.trainer.min_epochs == 3  # the method file wins over the dataset file
    assert cfg.trainer.log_every_n_steps == 2  # the dataset file wins over the defaults
    assert cfg.data.batch_size == 2 and cfg.data.root == "/data"
    assert cfg.method == {"lr": 0.5, "hidden": 16}
    assert "datasets" not in cfg


def test_real_configs_resolve_and_validate(workdir):
    cfg = load_config("lif_sg", "mnist5k", ["method.time_steps=2"])
    assert cfg.method.time_steps == 2
    assert cfg.paths.results == str(workdir / "results")
    assert cfg.data.root == str(workdir / "data")


def test_misspelt_method_key_names_the_valid_keys():
    with pytest.raises(ConfigError) as info:
        load_config("lif_sg", "mnist5k", ["method.time_step=4"])
    message = str(info.value)
    assert "method.time_step" in message
    for valid in ("time_steps", "tau", "lr", "surrogate_function"):
        assert valid in message


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.batchsize=3", "Valid data keys: augment, batch_size"),
        ("trainer.max_epoch=3", "Unknown key trainer.max_epoch"),
        ("trainer.logger=true", "the runner sets it"),
        ("method.num_classes=3", "takes it from the dataset"),
        ("method.frames=8", "takes it from the dataset"),
        ("method.lr=fast", "method.lr='fast' has the wrong type: expected float"),
        ("method.hard_reset=1", "expected bool"),
        ("optimiser.lr=1", "Unknown top-level config key(s) optimiser"),
        ("logger=tensorboardx", "logger='tensorboardx' is not supported"),
        ("seed=abc", "seed must be a whole number"),
    ],
)
def test_bad_keys_and_values_are_rejected(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("lif_sg", "mnist5k", [override])
    assert fragment in str(info.value)


def test_malformed_override():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["method.lr"])


def test_run_id_ignores_paths_but_not_what_defines_the_run():
    cfg = load_config("ann", "mnist5k")
    moved = OmegaConf.merge(cfg, {"paths": {"results": "/elsewhere"}, "data": {"root": "/x"}})
    reseeded = OmegaConf.merge(cfg, {"seed": 1})
    assert run_id("ann", "mnist5k", moved) == run_id("ann", "mnist5k", cfg)
    assert run_id("ann", "mnist5k", reseeded) != run_id("ann", "mnist5k", cfg)
    assert run_id("ann", "mnist5k", cfg).startswith("ann-mnist5k-")


def test_an_option_declared_after_runs_were_recorded_keeps_their_run_ids_at_its_earlier_default():
    """``method.voting_input: flatten`` (declared for issue 31) builds what every earlier run built: at that
    value the run id is the one the config without the key had; ``gap`` is another run."""
    cfg = load_config("multi_threshold", "mnist5k")
    assert cfg.method.voting_input == "flatten"
    earlier = OmegaConf.create(OmegaConf.to_container(cfg))
    del earlier.method["voting_input"]
    assert run_id("multi_threshold", "mnist5k", earlier) == run_id("multi_threshold", "mnist5k", cfg)
    gap = load_config("multi_threshold", "mnist5k", ["method.voting_input=gap"])
    assert run_id("multi_threshold", "mnist5k", gap) != run_id("multi_threshold", "mnist5k", cfg)


def test_cost_table_counting_conventions_and_memory_model_are_in_no_run_id():
    """They only price a run's raw counts: another one never means training again."""
    cfg = load_config("lif_sg", "mnist5k")
    priced = load_config(
        "lif_sg",
        "mnist5k",
        ["metrics.cost_table=loihi", "metrics.pooled_spikes=folded", "metrics.graded_spikes=unit"],
    )
    assert run_id("lif_sg", "mnist5k", priced) == run_id("lif_sg", "mnist5k", cfg)
    measured = load_config("lif_sg", "mnist5k", ["metrics.latency_samples=3"])  # what is measured: its own
    assert run_id("lif_sg", "mnist5k", measured) != run_id("lif_sg", "mnist5k", cfg)


def test_time_steps_are_checked_once_per_run_by_the_config_check_not_per_batch(monkeypatch):
    calls = []
    check = BenchMethod.check_time_steps
    monkeypatch.setattr(BenchMethod, "check_time_steps", lambda *args: calls.append(args) or check(*args))
    cfg = load_config("lif_sg", "nmnist_sim", ["data.frames=6", "method.time_steps=2"])
    model = build(cfg, "lif_sg", "nmnist_sim")[1]
    assert model.encode(torch.ones(3, 6, 2, 34, 34)).shape == (2, 3, 2, 34, 34)
    assert calls == [(2, 6)]  # validate's, none from the constructor or encode
    with pytest.raises(ConfigError, match="method.time_steps must be >= 1, got 0"):  # on images too
        load_config("lif_sg", "mnist5k", ["method.time_steps=0"])
