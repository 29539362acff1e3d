from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Optional

import pytest
import torch
from omegaconf import OmegaConf

from bench.config import _check_group, constructor_keys, fits, in_words, load_config, parse_overrides, run_id
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
        (
            "method.lr=fast",
            "method.lr='fast' has the wrong type: the method (LIFSurrogateGradient) takes lr as a number",
        ),
        ("method.hard_reset=1", "takes hard_reset as true/false"),
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


# --- issue 33: a value is checked against the annotation of the parameter that receives it -------------
@pytest.mark.parametrize(
    "override, fragment",
    [
        (
            "trainer.max_epochs=zero",
            "trainer.max_epochs='zero' has the wrong type: Lightning's Trainer takes max_epochs as an "
            "integer or null.",
        ),
        ("trainer.devices=1.5", "takes devices as a list (each item an integer), text or an integer."),
        ("trainer.deterministic=1", "takes deterministic as true/false, 'warn' or null."),
        ("trainer.precision=[32]", "takes precision as one of 64, 32, 16, 'transformer-engine', "),
        ("trainer.max_time=[1]", "takes max_time as text, a mapping (each value an integer) or null."),
        ("trainer.max_time={hours: one}", "takes max_time as text, a mapping (each value an integer)"),
        ("trainer.enable_checkpointing=sometimes", "takes enable_checkpointing as true/false or null."),
        ("trainer.limit_train_batches=abc", "takes limit_train_batches as an integer, a number or null."),
        ("method.layers=[8]", "the method (LIFSurrogateGradient) takes layers as text or null."),
        ("method.channels=32", "takes channels as a list (each item an integer)."),
        ("method.channels=[a, b]", "takes channels as a list (each item an integer)."),
        ("method.time_steps=four", "takes time_steps as an integer or null."),
        ("data.batch_size=many", "the DataModule (MNIST5k) takes batch_size as an integer."),
        ("data.folds=5.5", "takes folds as an integer or null."),
        ("data.root=[a]", "takes root as text or null."),
        ("metrics.latency_samples=lots", "the metrics callback (EnergyMetrics) takes latency_samples as an"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_type_its_parameter_takes_and_where_it_was_set(
    override, fragment
):
    with pytest.raises(ConfigError) as info:
        load_config("lif_sg", "mnist5k", [override])
    message = str(info.value)
    assert fragment in message
    assert "It is set by an override (the command line or a sweep's cell)." in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "override",
    [
        "trainer.devices=[0]",
        "trainer.devices=auto",
        "trainer.devices=2",
        "trainer.precision=16",
        "trainer.precision='16'",
        "trainer.precision=bf16-mixed",
        "trainer.max_time=00:00:10:00",
        "trainer.max_time={minutes: 5}",
        "trainer.max_epochs=null",
        "trainer.limit_train_batches=0.5",
        "trainer.limit_train_batches=3",
        "trainer.gradient_clip_val=1",
        "trainer.deterministic=true",
        "trainer.val_check_interval=0.5",
        "trainer.profiler=simple",
        "method.lr=1",  # an integer for a float
        "method.channels=[16, 32]",
        "method.layers=32C3-AP2",
        "data.root=null",
        "data.folds=5",
    ],
)
def test_values_users_pass_keep_being_accepted(override):
    load_config("lif_sg", "mnist5k", [override])


def test_a_wrong_type_in_a_config_file_names_that_file(layered_configs):
    (layered_configs / "methods" / "ann.yaml").write_text(
        "method: {hidden: 16}\ndatasets:\n  mnist5k: {method: {dropout: none}}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"takes dropout as a number\. It is set in configs/methods/ann.yaml "
        r"\(its datasets.mnist5k block\)\.",
    ):
        load_config("ann", "mnist5k", config_dir=layered_configs)
    (layered_configs / "methods" / "ann.yaml").write_text("method: {hidden: wide}\n")
    with pytest.raises(
        ConfigError, match=r"takes hidden as an integer\. It is set in configs/methods/ann.yaml\."
    ):
        load_config("ann", "mnist5k", config_dir=layered_configs)


class Widget:
    """A class no config value can be."""


@pytest.mark.parametrize(
    "hint, good, bad",
    [
        (int, [3, -1], [True, 2.5, "3", None]),
        (float, [1, 2.5], [True, "x", None]),
        (bool, [True, False], [1, 0, "true"]),
        (str, ["a", "3"], [3, None, ["a"]]),
        (int | None, [None, 3], ["zero", 1.5]),
        (Optional[int], [None, 3], ["zero"]),  # noqa: UP045 (the spelling Lightning uses)
        (Literal["a", "b"], ["a", "b"], ["c", 1, None]),
        (Literal[1, 2], [1, 2], [True, 1.0, "1"]),
        (int | str | None, [1, "auto", None], [1.5, [1], {"a": 1}]),
        (list[int], [[], [1, 2]], [[1.5], 3, "12", {"a": 1}]),
        (typing.List[int], [[1]], [["a"]]),  # noqa: UP006
        (tuple[int, ...], [[1, 2, 3]], [[1, "a"]]),
        (tuple[int, int], [[1, 2]], [[1], [1, 2, 3], [1, "a"]]),
        (Sequence[float], [[1, 2.5]], ["ab", [True]]),
        (list, [[1, "a"]], ["a"]),
        (dict[str, int], [{"a": 1}], [{"a": "x"}, [1]]),
        (Annotated[int, "a note"], [3], ["x"]),
        (str | Widget, ["a"], [3]),  # the class is left out of the check; str is checked
        (list[Widget], [[1, "a"]], ["a"]),  # the items are not checked, the list is
    ],
)
def test_fits_follows_the_annotation(hint, good, bad):
    assert [fits(value, hint) for value in good] == [True] * len(good)
    assert [fits(value, hint) for value in bad] == [False] * len(bad)


@pytest.mark.parametrize("hint", [Widget, Widget | None, Any, Callable[[int], int], torch.device])
def test_an_annotation_no_config_value_can_satisfy_is_not_checked(hint):
    assert {fits(value, hint) for value in (3, "x", [1], {"a": 1})} == {None}


@pytest.mark.parametrize(
    "hint, words",
    [
        (float, "a number"),
        (int | None, "an integer or null"),
        (Literal["a", "b"], "one of 'a', 'b'"),
        (bool | Literal["warn"] | None, "true/false, 'warn' or null"),
        (list[int], "a list (each item an integer)"),
        (tuple[int, str], "a list of 2 items (an integer, text)"),
        (str | Widget, "text"),
        (Widget, None),
    ],
)
def test_in_words_says_the_type_as_a_user_reads_it(hint, words):
    assert in_words(hint) == words


class Plugin:
    def __init__(self, rate=0.5, name: Undefined = "x", size: int = 3, extra=None):  # noqa: F821
        """``Undefined`` is a name only a type checker would import: ``name`` cannot be checked."""


def test_an_unresolvable_annotation_leaves_its_parameter_unchecked_and_the_others_checked():
    keys = constructor_keys(Plugin)
    assert keys["size"].annotation is int and keys["name"].annotation is Any
    _check_group("method", OmegaConf.create({"name": 3, "extra": [1], "rate": 1, "size": 4}), Plugin)
    with pytest.raises(
        ConfigError, match=r"method.size='big' has the wrong type: .* takes size as an integer"
    ):
        _check_group("method", OmegaConf.create({"size": "big"}), Plugin)
    # no annotation: the default's type, or null (as before issue 33)
    with pytest.raises(ConfigError, match=r"takes rate as a number or null\."):
        _check_group("method", OmegaConf.create({"rate": "fast"}), Plugin)


# --- issue 33: a logger that cannot log here is a config error, found before any record -----------------
@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """No wandb credentials anywhere: no key, no mode, an empty netrc file."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org\n  login me\n  password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_logger_wandb_without_credentials_says_what_to_set(no_wandb_login):
    with pytest.raises(ConfigError) as info:
        load_config("lif_sg", "mnist5k", ["logger=wandb"])
    message = str(info.value)
    for fragment in (
        f"WANDB_API_KEY is not set, WANDB_MODE is not set and {no_wandb_login} has no entry for api.wandb.ai",
        "Set WANDB_API_KEY",
        "`wandb login`",
        "WANDB_MODE=offline",
        "logger=csv",
    ):
        assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "env, netrc_host",
    [
        ({"WANDB_API_KEY": "k" * 40}, None),
        ({"WANDB_MODE": "offline"}, None),
        ({"WANDB_MODE": "disabled"}, None),
        ({}, "api.wandb.ai"),  # `wandb login`
        ({"WANDB_BASE_URL": "https://wandb.example.net"}, "wandb.example.net"),
    ],
)
def test_logger_wandb_is_ready_with_a_key_an_offline_mode_or_a_login(
    env, netrc_host, no_wandb_login, monkeypatch
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if netrc_host:
        no_wandb_login.write_text(f"machine {netrc_host}\n  login user\n  password {'k' * 40}\n")
    assert load_config("lif_sg", "mnist5k", ["logger=wandb"]).logger == "wandb"


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"WANDB_MODE": "online"}, "WANDB_MODE=online needs an account"),
        (
            {"WANDB_MODE": "ofline"},
            "WANDB_MODE='ofline' is not a wandb mode; use one of online, run, shared, offline",
        ),
        ({"WANDB_BASE_URL": "https://wandb.example.net"}, "has no entry for wandb.example.net"),
    ],
)
def test_logger_wandb_with_an_online_mode_a_bad_mode_or_another_host_and_no_login_is_refused(
    env, fragment, no_wandb_login, monkeypatch
):
    no_wandb_login.write_text(f"machine api.wandb.ai\n  login user\n  password {'k' * 40}\n")
    if "WANDB_BASE_URL" not in env:
        no_wandb_login.write_text("")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment):
        load_config("lif_sg", "mnist5k", ["logger=wandb"])
