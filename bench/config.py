"""Configuration: OmegaConf files merged in a fixed order, then checked against the classes that receive them.

Merge order (later wins): ``configs/defaults.yaml`` -> ``configs/datasets/<dataset>.yaml`` ->
``configs/methods/<method>.yaml`` -> that file's ``datasets.<dataset>`` block -> command-line
``key=value`` overrides. Every key is checked before anything trains: ``method.*`` against the method's
constructor, ``data.*`` against the DataModule's, ``trainer.*`` against Lightning's ``Trainer``,
``metrics.*`` against the metrics callback's (keys and values).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import warnings
from pathlib import Path
from typing import get_args

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import CONFIG_DIR, paths, registry
from bench.errors import ConfigError
from bench.metrics.rules import PRICING_KEYS
from bench.results.records import first_non_finite
from datamodules.facts import METHOD_FACTS

# configs/defaults.yaml reads the default locations (and their environment variables) from one owner.
OmegaConf.register_resolver("snnbench_path", paths.default, replace=True)

#: Trainer arguments the runner owns.
RUNNER_OWNED_TRAINER_KEYS = ("callbacks", "logger", "default_root_dir", "plugins")
LOGGERS = ("csv", "wandb", "none")
#: The ``paths.*`` keys (bench/paths.py): where records, logs and kept models go.
PATHS = ("results", "logs", "models")
TOP_LEVEL_KEYS = (
    "seed",
    "logger",
    "sweep",
    "variant",
    "paths",
    "method",
    "data",
    "trainer",
    "metrics",
    "progress",
)
#: The ``progress`` group (what a run prints while it trains, bench.training_lines): its keys and the
#: values a config without the group gets.
PROGRESS_DEFAULTS = {"lines": "auto", "every_n_steps": 50, "every_s": 30}
#: Keys that locate files, name things, change only what is printed or only price the counts, not the
#: experiment: left out of the run id (a sweep variant's name labels its overrides, which are part of the
#: id).
NON_IDENTITY_KEYS = (
    "paths",
    "data.root",
    "trainer.enable_progress_bar",
    "progress",
    "variant",
    *PRICING_KEYS,
)
#: Options added after runs were recorded, each with the value that builds what those runs built: at that
#: value the key is left out of the run id, so declaring the option keeps every earlier run id (the config
#: saved with a run still shows it); any other value is part of the id.
EARLIER_DEFAULTS = {"method.voting_input": "flatten"}


def _read_yaml(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"Could not read config file {path}: {error}") from error
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"Config file {path} must hold a mapping of keys, not {type(cfg).__name__}.")
    return cfg


def parse_overrides(overrides: list[str]) -> DictConfig:
    """``["method.lr=0.01", "trainer.max_epochs=3"]`` -> a nested config (values parsed as YAML, safely: a
    ``!!python/...`` tag is refused, never run)."""
    bad = [item for item in overrides if "=" not in item or item.startswith("=")]
    if bad:
        raise ConfigError(
            f"Could not parse override(s) {', '.join(bad)}: write them as key=value, e.g. "
            "method.time_steps=4 trainer.max_epochs=10."
        )
    try:  # all at once (a sweep check parses thousands); on an error, again one at a time to name it
        return OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError, ValueError):
        pass
    parsed = OmegaConf.create({})
    for item in overrides:
        try:
            parsed = OmegaConf.merge(parsed, OmegaConf.from_dotlist([item]))
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as error:
            reason = " ".join(str(error).split())
            raise ConfigError(
                f"Could not parse the override {item!r}: its value is not plain YAML ({reason}). Write "
                "a number, a word, a list or a mapping (tags such as !!python/... are refused), and quote "
                "the whole override for the shell, e.g. 'method.layers=[16, 32]'."
            ) from error
    return parsed


def constructor_keys(cls: type) -> dict[str, inspect.Parameter]:
    """Named constructor parameters of ``cls``, following ``**kwargs`` up the class hierarchy."""
    keys: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        for name, param in params.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                keys.setdefault(name, param)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return keys


def _check_type(where: str, value, default) -> None:
    """Reject a value whose type cannot stand for the constructor default's (e.g. lr='fast')."""
    if default is inspect.Parameter.empty or default is None or value is None:
        return
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif expected in (tuple, list):
        ok = isinstance(value, list | tuple | ListConfig)
    elif expected is str:
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        raise ConfigError(
            f"{where}={value!r} has the wrong type: expected {expected.__name__} "
            f"(the default is {default!r})."
        )


def _check_group(group: str, values: DictConfig, target: type, exclude=(), check_types: bool = True) -> None:
    valid = {k: p for k, p in constructor_keys(target).items() if k not in exclude}
    for key, value in values.items():
        if key in exclude:
            raise ConfigError(
                f"{group}.{key} cannot be set in a config: "
                + (
                    "the runner takes it from the dataset."
                    if group == "method"
                    else "the runner sets it (use the top-level `logger` key for loggers)."
                )
            )
        if key not in valid:
            raise ConfigError(
                f"Unknown key {group}.{key} for {target.__name__}. Valid {group} keys: "
                f"{', '.join(sorted(valid))}."
            )
        if check_types:
            _check_type(f"{group}.{key}", value, valid[key].default)
    for name, param in valid.items():
        if param.default is inspect.Parameter.empty and name not in values:
            raise ConfigError(f"{group}.{name} is required by {target.__name__} but not set.")


def _check_finite(cfg: DictConfig) -> None:
    """No inf or nan anywhere: no run can use one, and a run record (strict JSON) cannot hold one."""
    found = first_non_finite(OmegaConf.to_container(cfg, resolve=True))
    if found is not None:
        raise ConfigError(f"{found[0]}={found[1]} is not a finite number; give a finite value.")


def _construct(group: str, cls: type, values: DictConfig):
    """Build ``cls`` from a config group, a bad value becoming a ConfigError that names the group."""
    try:
        return cls(**OmegaConf.to_container(values, resolve=True))
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"Bad {group}.* value for {cls.__name__}: {error}") from error


#: Trainer keys that depend on the machine (a sweep is checked on a login node, run on GPU nodes): their
#: values are checked by name here and for real when the run builds its Trainer, before any record exists.
DEVICE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision")


def _check_trainer(values: DictConfig) -> None:
    """Lightning checks trainer values when a Trainer is built (16 ms, no files written): build one on the
    CPU with the machine-dependent keys left out, and check those by name. The epoch budget is checked
    here, as Lightning accepts 0."""
    import pytorch_lightning as pl  # here, not at the top: reading a config imports no Lightning
    from lightning_fabric.connector import _PRECISION_INPUT_STR
    from pytorch_lightning.accelerators import AcceleratorRegistry

    kwargs = OmegaConf.to_container(values, resolve=True)
    max_epochs, max_steps = kwargs.get("max_epochs"), kwargs.get("max_steps", -1)
    if isinstance(max_epochs, int) and max_epochs != -1 and max_epochs < 1:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs} trains nothing: give at least 1 (or -1 with trainer.max_steps)."
        )
    if max_steps == 0:
        raise ConfigError("trainer.max_steps=0 trains nothing: give at least 1, or -1 for no step limit.")
    accelerators = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    if kwargs.get("accelerator", "auto") not in accelerators:
        raise ConfigError(
            f"trainer.accelerator={kwargs['accelerator']!r} is not one of {', '.join(sorted(accelerators))}."
        )
    precisions = [*get_args(_PRECISION_INPUT_STR), "64", "32", "16", "bf16", 64, 32, 16]
    if kwargs.get("precision", "32-true") not in precisions:
        raise ConfigError(
            f"trainer.precision={kwargs['precision']!r} is not a Lightning precision; use one of "
            f"{', '.join(get_args(_PRECISION_INPUT_STR))}."
        )
    portable = {key: value for key, value in kwargs.items() if key not in DEVICE_KEYS}
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    chatter = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # e.g. "srun is available but not used": about a run, not a check
            warnings.simplefilter("ignore")
            pl.Trainer(
                **{**portable, **quiet, "enable_model_summary": False, "accelerator": "cpu", "devices": 1}
            )
    except Exception as error:  # Lightning raises ValueError, TypeError, MisconfigurationException, ...
        raise ConfigError(f"Lightning rejects the trainer.* settings {portable}: {error}") from error
    finally:
        chatter.setLevel(level)


def _check_progress(group) -> None:
    """The ``progress`` group (optional: a config without it prints as :data:`PROGRESS_DEFAULTS` say)."""
    if group is None:
        return
    if not isinstance(group, DictConfig):
        raise ConfigError(f"progress must be a mapping of {', '.join(PROGRESS_DEFAULTS)}, got {group!r}.")
    unknown = set(group) - set(PROGRESS_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(f'progress.{k}' for k in sorted(unknown))}. Valid progress keys: "
            f"{', '.join(PROGRESS_DEFAULTS)}."
        )
    lines, steps, seconds = (group.get(key, PROGRESS_DEFAULTS[key]) for key in PROGRESS_DEFAULTS)
    if lines not in ("auto", True, False):
        raise ConfigError(
            f"progress.lines={lines!r} is not one of auto (plain lines when stdout is not a terminal), "
            "true (always), false (never)."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"progress.every_n_steps={steps!r} must be a whole number of at least 1.")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ConfigError(f"progress.every_s={seconds!r} must be a number of seconds above 0.")


def validate(cfg: DictConfig, method_cls: type, dataset_cls: type) -> None:
    """Check every key against the class that receives it; raise :class:`ConfigError` naming valid keys."""
    import pytorch_lightning as pl

    from bench.metrics import EnergyMetrics

    unknown = set(cfg) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"Unknown top-level config key(s) {', '.join(sorted(unknown))}. Valid top-level keys: "
            f"{', '.join(TOP_LEVEL_KEYS)}."
        )
    if cfg.logger not in LOGGERS:
        raise ConfigError(f"logger={cfg.logger!r} is not supported; use one of {', '.join(LOGGERS)}.")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed must be a whole number from 0 to 2**32 - 1 (4294967295), got {cfg.seed!r}.")
    # The sweep's name becomes file names (tables/<sweep>.md, plots/<sweep>/), the variant a label.
    if cfg.get("sweep") is not None and not paths.is_name(cfg.sweep):
        raise ConfigError(
            f"sweep={cfg.sweep!r} is not a sweep's name ({paths.NAME_RULE}; no path separators), or null."
        )
    if cfg.get("variant") is not None and not paths.is_label(cfg.variant):
        raise ConfigError(
            f"variant must be a variant's name (one line of text) or null, got {cfg.variant!r}."
        )
    _check_progress(cfg.get("progress"))
    _check_finite(cfg)
    _check_group("method", cfg.method, method_cls, exclude=METHOD_FACTS)
    _check_group("data", cfg.data, dataset_cls)
    _check_group("metrics", cfg.metrics, EnergyMetrics)
    # Trainer arguments take unions (devices: int | str | list): Lightning checks their values itself.
    _check_group("trainer", cfg.trainer, pl.Trainer, exclude=RUNNER_OWNED_TRAINER_KEYS, check_types=False)
    # Values: the constructors that receive them check them (cheap: nothing touches the disk or trains).
    facts = _construct("data", dataset_cls, cfg.data).facts
    # The method contract's rule on T, checked here once per run (not by the method's constructor).
    time_steps = cfg.method.get("time_steps", constructor_keys(method_cls)["time_steps"].default)
    method_cls.check_time_steps(time_steps, facts.frames if facts.kind == "event" else None)
    _construct("metrics", EnergyMetrics, cfg.metrics)
    _check_trainer(cfg.trainer)
    if set(cfg.paths) != set(PATHS):
        raise ConfigError(
            f"paths must hold exactly {', '.join(f'`{key}`' for key in PATHS)}, got {sorted(cfg.paths)}."
        )


def file_layers(method: str, dataset: str, config_dir: Path = CONFIG_DIR) -> list[DictConfig]:
    """The config files of a run, read in merge order (the module docstring's), without overrides."""
    layers = [_read_yaml(config_dir / "defaults.yaml")]
    for path in (config_dir / "datasets" / f"{dataset}.yaml", config_dir / "methods" / f"{method}.yaml"):
        if path.exists():
            layer = _read_yaml(path)
            per_dataset = layer.pop("datasets", None) or {}
            layers.append(layer)
            if dataset in per_dataset:
                layers.append(per_dataset[dataset])
    return layers


def load_config(
    method: str,
    dataset: str,
    overrides: list[str] | tuple[str, ...] = (),
    config_dir: Path = CONFIG_DIR,
    check: bool = True,
) -> DictConfig:
    """The resolved, validated config of one run (see the module docstring for the merge order). With
    ``check=False`` only the keys are checked to exist and nothing is imported or validated: enough for a
    run id (``bench status``), after the sweep's cells were checked once."""
    if check:
        method_cls, dataset_cls = registry.get_method(method), registry.get_dataset(dataset)
    else:
        registry.require_key("method", method)
        registry.require_key("dataset", dataset)
    layers = [*file_layers(method, dataset, config_dir), parse_overrides(list(overrides))]
    try:
        cfg = OmegaConf.merge(*layers)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"Could not merge the config for {method} on {dataset}: {error}") from error
    if check:
        validate(cfg, method_cls, dataset_cls)
    return cfg


def identity(cfg: DictConfig) -> dict:
    """The resolved config minus :data:`NON_IDENTITY_KEYS` (and minus the options at their
    :data:`EARLIER_DEFAULTS`): what a run id hashes."""
    kept = OmegaConf.to_container(cfg, resolve=True)
    for dotted in (*NON_IDENTITY_KEYS, *EARLIER_DEFAULTS):
        *parents, leaf = dotted.split(".")
        node = kept
        for parent in parents:
            node = node.get(parent, {})
        if dotted not in EARLIER_DEFAULTS or node.get(leaf) == EARLIER_DEFAULTS[dotted]:
            node.pop(leaf, None)
    return kept


def run_id(method: str, dataset: str, cfg: DictConfig) -> str:
    """A short hash of what defines the run: method, dataset and the resolved config minus paths (and
    minus the options at their :data:`EARLIER_DEFAULTS`)."""
    blob = json.dumps({"method": method, "dataset": dataset, "config": identity(cfg)}, sort_keys=True)
    return f"{method}-{dataset}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def retest_id(trained: str, cfg: DictConfig) -> str:
    """The run id of ``bench test``'s re-test of run ``trained`` under ``cfg`` (the training run's config
    with the test's overrides): ``<trained>-test-<hash of that config minus NON_IDENTITY_KEYS>``. The same
    re-test (same overrides, wherever the files are) gets the same id, so a second one replaces it."""
    blob = json.dumps({"tested_from": trained, "config": identity(cfg)}, sort_keys=True)
    return f"{trained}-test-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"
