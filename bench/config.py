"""Configuration: OmegaConf files merged in a fixed order, then checked against the classes that receive them.

Merge order (later wins): ``configs/defaults.yaml`` -> ``configs/datasets/<dataset>.yaml`` ->
``configs/methods/<method>.yaml`` -> that file's ``datasets.<dataset>`` block -> command-line
``key=value`` overrides. Every key is checked before anything trains: ``method.*`` against the method's
constructor, ``data.*`` against the DataModule's, ``trainer.*`` against Lightning's ``Trainer``,
``metrics.*`` against the metrics callback's: the key's name, its value's type against the annotation of the
parameter that receives it, then the value itself (the constructors check it). The logger is checked to be
able to log here (:func:`bench.loggers.check_ready`).
"""

from __future__ import annotations

import collections.abc as abc
import hashlib
import inspect
import json
import logging
import types
import typing
import warnings
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

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


@cache
def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    keys: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        hints = _hints(klass.__init__)
        params = inspect.signature(klass.__init__).parameters
        for name, param in params.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                # Any (not checked) for an annotation that cannot be resolved
                hint = hints.get(name, param.annotation if param.annotation is param.empty else typing.Any)
                keys.setdefault(name, param.replace(annotation=hint))
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return keys


def constructor_keys(cls: type) -> dict[str, inspect.Parameter]:
    """Named constructor parameters of ``cls``, following ``**kwargs`` up the class hierarchy, each with its
    annotation as a type (``inspect.Parameter.empty`` where it has none, ``Any`` where it cannot be
    resolved)."""
    return dict(_parameters(cls))


def _hints(function) -> dict[str, object]:
    """``function``'s annotations as types (a module with ``from __future__ import annotations`` leaves
    strings). One naming what its module imports for type checkers only cannot be resolved: it is left
    out (its parameter is not checked); the others are kept."""
    try:
        return typing.get_type_hints(function)
    except Exception:  # NameError, TypeError, ...: one annotation at a time
        pass
    hints = {}
    for name, annotation in getattr(function, "__annotations__", {}).items():

        def probe():
            pass

        probe.__annotations__ = {name: annotation}
        try:
            hints.update(typing.get_type_hints(probe, globalns=getattr(function, "__globals__", None)))
        except Exception:
            continue
    return hints


#: How a message names each type of value a config can hold.
_WORDS = {bool: "true/false", int: "an integer", float: "a number", str: "text", type(None): "null"}
#: The containers a config value (a YAML list or mapping) can stand for; other classes no config value can be.
_LISTS = (
    list,
    tuple,
    set,
    frozenset,
    abc.Sequence,
    abc.MutableSequence,
    abc.Collection,
    abc.Iterable,
    abc.Set,
)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def _items(hint) -> tuple[str, tuple]:
    """The container kind of ``hint`` ("list" or "mapping", "" for none) and its item types."""
    container, args = get_origin(hint) or hint, get_args(hint)
    if container in _MAPPINGS:
        return "mapping", args
    if container in _LISTS:
        return "list", args
    return "", ()


def fits(value, hint) -> bool | None:
    """Whether a config value (plain YAML data: null, true/false, a number, text, a list, a mapping) can
    stand for the annotation ``hint``: an int for a float, a list for a tuple or a sequence; ``None`` when
    no config value can (a class of its own, a callable, ``Any``), so that annotation is not checked. In a
    union, such a class is left out and the other members are checked (``str | Accelerator``)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is type(None) or hint is None:
        return value is None
    if origin is Annotated:
        return fits(value, args[0])
    if origin is Literal:  # by type too: True is not the choice 1
        return any(type(value) is type(choice) and value == choice for choice in args)
    if origin in (Union, types.UnionType):
        verdicts = [fits(value, arg) for arg in args]
        checked = [
            v for arg, v in zip(args, verdicts, strict=True) if v is not None and arg is not type(None)
        ]
        return True if True in verdicts else (False if checked else None)
    if hint in (bool, int, float, str):
        exact = {int: int, float: int | float}.get(hint, hint)
        return isinstance(value, exact) and (hint is bool or not isinstance(value, bool))
    kind, args = _items(hint)
    if kind == "mapping":
        value_hint = args[1] if len(args) == 2 else None
        return isinstance(value, dict) and all(fits(item, value_hint) is not False for item in value.values())
    if kind == "list":
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            args = (args[0],) * len(value)
        elif not args:
            return True
        if len(args) != len(value):  # tuple[int, int]: that many items
            return False
        return all(fits(item, arg) is not False for item, arg in zip(value, args, strict=True))
    return None


def in_words(hint) -> str | None:
    """The annotation ``hint`` as a user reads it ("an integer or null", "one of 'a', 'b'"); ``None`` for
    one no config value can satisfy (see :func:`fits`)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return in_words(args[0])
    if origin is Literal:
        shown = [
            _WORDS[type(None)] if a is None else str(a).lower() if isinstance(a, bool) else repr(a)
            for a in args
        ]
        return shown[0] if len(shown) == 1 else f"one of {', '.join(shown)}"
    if origin in (Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        literals = [choice for arg in members if get_origin(arg) is Literal for choice in get_args(arg)]
        words = [in_words(arg) for arg in members if get_origin(arg) is not Literal]
        if literals:  # Lightning's precision: three Literals, one list of choices
            first = next(i for i, arg in enumerate(members) if get_origin(arg) is Literal)
            words.insert(first, in_words(Literal[tuple(literals)]))
        words = [word for word in words if word] + (["null"] if type(None) in args and words else [])
        return (
            None if not words else words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
        )
    if isinstance(hint, type) and hint in _WORDS:
        return _WORDS[hint]
    kind, args = _items(hint)
    if kind == "mapping":
        each = in_words(args[1]) if len(args) == 2 else None
        return f"a mapping (each value {each})" if each else "a mapping"
    if kind == "list":
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            each = in_words(args[0])
            return f"a list (each item {each})" if each else "a list"
        if args:
            return f"a list of {len(args)} items ({', '.join(in_words(arg) or 'anything' for arg in args)})"
        return "a list"
    return None


def _receiver(group: str, target: type) -> str:
    kind = {"method": "the method", "data": "the DataModule", "metrics": "the metrics callback"}
    return "Lightning's Trainer" if group == "trainer" else f"{kind.get(group, group)} ({target.__name__})"


def _check_type(group: str, key: str, value, param: inspect.Parameter, target: type, origin=None) -> None:
    """Reject a value that cannot stand for the annotation of the parameter that receives it (e.g.
    trainer.max_epochs='zero'). A parameter without one is checked against its default's type, or null."""
    hint, default = param.annotation, param.default
    if hint is inspect.Parameter.empty:
        if type(default) not in (bool, int, float, str, list, tuple):
            return
        hint = type(default) | None
    value = (
        OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value
    )
    if fits(value, hint) is not False:
        return
    where = origin(f"{group}.{key}") if origin else None
    raise ConfigError(
        f"{group}.{key}={_as_written(value)} has the wrong type: {_receiver(group, target)} takes {key} as "
        f"{in_words(hint)}." + (f" It is set {where}." if where else "")
    )


def _as_written(value) -> str:
    """A value as a config or command line writes it: null, true, 'text', 2.5."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value)


def _check_group(group: str, values: DictConfig, target: type, exclude=(), origin=None) -> None:
    """Every key of ``values`` one ``target``'s constructor takes, with a value of its parameter's type;
    ``origin(key)`` says where a key was set (e.g. "in configs/methods/ann.yaml"), for the message."""
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
        _check_type(group, key, value, valid[key], target, origin)
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
#: values are checked by type (precision: against its annotation's choices) and accelerator by name here,
#: and for real when the run builds its Trainer, before any record exists.
DEVICE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision")


def _check_trainer(values: DictConfig) -> None:
    """Lightning checks trainer values when a Trainer is built (16 ms, no files written): build one on the
    CPU with the machine-dependent keys left out (their types are checked already), and check the
    accelerator by name. The epoch budget is checked here, as Lightning accepts 0."""
    import pytorch_lightning as pl  # here, not at the top: reading a config imports no Lightning
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


def validate(cfg: DictConfig, method_cls: type, dataset_cls: type, origin=None) -> None:
    """Check every key against the class that receives it (its name and its value's type), and that the
    logger can log here; raise :class:`ConfigError` naming valid keys. ``origin(key)``: where ``key`` was
    set, for the message (:func:`load_config` knows)."""
    import pytorch_lightning as pl

    from bench.loggers import check_ready
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
    _check_group("method", cfg.method, method_cls, exclude=METHOD_FACTS, origin=origin)
    _check_group("data", cfg.data, dataset_cls, origin=origin)
    _check_group("metrics", cfg.metrics, EnergyMetrics, origin=origin)
    _check_group("trainer", cfg.trainer, pl.Trainer, exclude=RUNNER_OWNED_TRAINER_KEYS, origin=origin)
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
    check_ready(cfg.logger)


def file_sources(method: str, dataset: str, config_dir: Path = CONFIG_DIR) -> dict[str, DictConfig]:
    """The config files of a run in merge order (the module docstring's), without overrides, each by
    where it comes from as a message names it (``in configs/methods/x.yaml (its datasets.y block)``)."""
    defaults = config_dir / "defaults.yaml"
    sources = {f"in {_shown(defaults, config_dir)}": _read_yaml(defaults)}
    for path in (config_dir / "datasets" / f"{dataset}.yaml", config_dir / "methods" / f"{method}.yaml"):
        if path.exists():
            layer, shown = _read_yaml(path), _shown(path, config_dir)
            per_dataset = layer.pop("datasets", None) or {}
            sources[f"in {shown}"] = layer
            if dataset in per_dataset:
                sources[f"in {shown} (its datasets.{dataset} block)"] = per_dataset[dataset]
    return sources


def file_layers(method: str, dataset: str, config_dir: Path = CONFIG_DIR) -> list[DictConfig]:
    """The config files of a run, read in merge order, without overrides."""
    return list(file_sources(method, dataset, config_dir).values())


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
    # each layer by where it comes from, for a message about one of its values
    sources = file_sources(method, dataset, config_dir)
    sources["by an override (the command line or a sweep's cell)"] = parse_overrides(list(overrides))
    try:
        cfg = OmegaConf.merge(*sources.values())
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as error:
        raise ConfigError(f"Could not merge the config for {method} on {dataset}: {error}") from error
    if check:

        def origin(key: str) -> str | None:
            return next((where for where, layer in reversed(sources.items()) if _sets(layer, key)), None)

        validate(cfg, method_cls, dataset_cls, origin)
    return cfg


def _shown(path: Path, config_dir: Path) -> str:
    """``path`` as a message names it: configs/methods/lif_sg.yaml."""
    try:
        return str(path.relative_to(config_dir.parent))
    except ValueError:
        return str(path)


def _sets(layer: DictConfig, dotted: str) -> bool:
    """Whether the config ``layer`` sets the key ``dotted`` (e.g. trainer.max_epochs)."""
    *parents, leaf = dotted.split(".")
    node = layer
    for parent in parents:
        if not isinstance(node, DictConfig) or parent not in node:
            return False
        node = node[parent]
    return isinstance(node, DictConfig) and leaf in node


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
