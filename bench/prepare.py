"""``bench prepare`` and the dry run's data check: every dataset configuration a run or a sweep needs.

``bench prepare DATASET... | --sweep S [data.key=value ...]`` makes each dataset ready once, on a machine
with internet, before a sweep is submitted: it downloads what its DataModule can download (torchvision's
sets and Tiny ImageNet's official zip), verifies the files (md5s where official, IDX headers), extracts,
generates (nmnist_sim) and builds every frame cache the cells need: one per distinct frame setting
(frames, split_by, size) of an event dataset. A second call finds everything in place and only reports.
``bench sweep S --dry-run`` runs the quick check (:func:`check`: the presence of files only).

A dataset configuration is a dataset key plus its ``data.*`` config; configurations that share a folder
(``<root>/<key>/``) are reported on one line, with every frame cache they need.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from bench import CONFIG_DIR, registry
from bench import config as config_mod
from bench.errors import ConfigError, DataError
from datamodules.readiness import MISSING, NOT_BUILT, READY, Readiness, merge


@dataclass(frozen=True)
class Group:
    """The configurations of one dataset folder: one DataModule per distinct frame cache (one for a static
    dataset, whose files do not depend on its settings)."""

    dataset: str
    datamodules: tuple

    @property
    def data_dir(self):
        return self.datamodules[0].data_dir


def _data_overrides(overrides: Iterable[str]) -> list[str]:
    overrides = list(overrides)
    stray = [item for item in overrides if not item.startswith("data.")]
    if stray:
        raise ConfigError(
            f"bench prepare takes data.* overrides only (e.g. data.root=/scratch/data data.frames=8), got "
            f"{', '.join(stray)}."
        )
    return overrides


def _accepted(overrides: list[str], datasets: Iterable[str], check: bool = True) -> dict[str, list[str]]:
    """Per dataset, the overrides its DataModule takes (``data.frames`` only reaches the event datasets,
    ``data.download`` the downloadable ones); with ``check``, an override that none of them takes is a
    ConfigError."""
    keys = {d: set(config_mod.constructor_keys(registry.get_dataset(d))) for d in dict.fromkeys(datasets)}
    for item in overrides if check else ():
        key = item.split("=", 1)[0].split(".")[1]
        if not any(key in valid for valid in keys.values()):
            valid = sorted(set().union(*keys.values()))
            raise ConfigError(
                f"Unknown key data.{key} for {', '.join(keys)}. Valid data keys: {', '.join(valid)}."
            )
    return {
        d: [o for o in overrides if o.split("=", 1)[0].split(".")[1] in valid] for d, valid in keys.items()
    }


def _datamodule(dataset: str, data: DictConfig):
    cls = registry.get_dataset(dataset)
    config_mod._check_group("data", data, cls)
    return config_mod._construct("data", cls, data)


def datamodules(datasets: Iterable[str] = (), sweep=None, overrides: Iterable[str] = ()) -> list:
    """``bench prepare``'s DataModules: those of the named datasets and of the sweep's cells, with the
    ``data.*`` overrides, each override checked to be taken by one of them at least."""
    datasets = list(dict.fromkeys(datasets))
    overrides = _data_overrides(overrides)
    _accepted(overrides, [*datasets, *(cell.dataset for cell in sweep.cells)] if sweep else datasets)
    out = dataset_datamodules(datasets, overrides, check=False) if datasets else []
    return out + (sweep_datamodules(sweep, overrides, check=False) if sweep else [])


def dataset_datamodules(datasets: Iterable[str], overrides: Iterable[str] = (), check: bool = True) -> list:
    """One DataModule per dataset, configured as ``bench run`` would before a method's own settings:
    ``configs/defaults.yaml``, then ``configs/datasets/<key>.yaml``, then the ``data.*`` overrides it
    takes."""
    datasets = list(dict.fromkeys(datasets))
    for dataset in datasets:
        registry.require_key("dataset", dataset)
    accepted = _accepted(_data_overrides(overrides), datasets, check)
    out = []
    for dataset in datasets:
        layers = [config_mod._read_yaml(CONFIG_DIR / "defaults.yaml")]
        path = CONFIG_DIR / "datasets" / f"{dataset}.yaml"
        if path.exists():
            layers.append(config_mod._read_yaml(path))
        layers.append(config_mod.parse_overrides(accepted[dataset]))
        cfg = OmegaConf.merge(*layers)
        OmegaConf.resolve(cfg)
        out.append(_datamodule(dataset, cfg.data))
    return out


def sweep_datamodules(sweep, overrides: Iterable[str] = (), check: bool = True) -> list:
    """One DataModule per distinct ``(dataset, data.*)`` configuration among the sweep's cells (each
    cell's own merged config: the sweep's overrides and the methods' per-dataset blocks included), with
    ``overrides`` (``data.*`` only, e.g. ``data.root=R``) applied to every cell whose dataset takes them."""
    accepted = _accepted(_data_overrides(overrides), [cell.dataset for cell in sweep.cells], check)
    seen: dict[str, object] = {}
    merged: set[tuple] = set()
    for cell in sweep.cells:
        args = [*cell.args, *accepted[cell.dataset]]
        key = _merge_key(cell, args)
        if key in merged:
            continue
        merged.add(key)
        cfg = config_mod.load_config(cell.method, cell.dataset, args, check=False)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        key = json.dumps([cell.dataset, data], sort_keys=True, default=str)
        if key not in seen:
            try:
                seen[key] = _datamodule(cell.dataset, cfg.data)
            except ConfigError as error:
                raise type(error)(f"Sweep {sweep.name}, cell {cell.label}: {error}") from error
    return list(seen.values())


def _merge_key(cell, args: list[str]) -> tuple:
    """What a cell's data config can depend on, so that the configs of a sweep's hundreds of cells are
    merged a few times, not once each (about 30 ms a merge): a static dataset's files depend only on
    ``data.root`` (and ``data.download``); an event dataset's caches on its ``data.*`` settings, which the
    config files (defaults, dataset, the method's per-dataset block) give per method and the cell's
    ``data.*`` overrides change; an override that interpolates (``data.frames: ${method.time_steps}``)
    may depend on any of the cell's arguments. The config files' data blocks interpolate nothing."""
    data = tuple(a for a in args if a.startswith("data."))
    if not hasattr(registry.get_dataset(cell.dataset), "cache_path"):
        return (cell.dataset, tuple(a for a in data if a.startswith(("data.root=", "data.download="))))
    if any("${" in a for a in data):
        return (cell.method, cell.dataset, tuple(args))
    return (cell.method, cell.dataset, data)


def groups(datamodules: Iterable) -> list[Group]:
    """The DataModules by dataset folder, in first-seen order; within one, one per distinct frame cache."""
    found: dict[tuple, dict] = {}
    for dm in datamodules:
        folder = found.setdefault((dm.registry_key, str(dm.data_dir)), {})
        cache = getattr(dm, "cache_path", None)
        found_key = str(cache) if cache is not None else ""
        folder.setdefault(found_key, dm)
    return [Group(key, tuple(dms.values())) for (key, _), dms in found.items()]


def check(datamodules: Iterable) -> list[Readiness]:
    """Quick: whether each dataset folder's files and caches are on disk (nothing is read or hashed)."""
    return [merge([dm.readiness() for dm in group.datamodules]) for group in groups(datamodules)]


def prepare(datamodules: Iterable, echo: Callable[[str], None] = print) -> list[Readiness]:
    """Make each dataset folder ready (download, verify, convert, build every cache, once); a folder whose
    data is missing or corrupt is reported as missing, with what its DataModule said, and the others go on."""
    out = []
    for group in groups(datamodules):
        caches = [str(dm.cache_path.name) for dm in group.datamodules if hasattr(dm, "cache_path")]
        echo(f"{group.dataset}: checking {group.data_dir}" + (f" ({', '.join(caches)})" if caches else ""))
        results = []
        for dm in group.datamodules:
            try:
                results.append(dm.make_ready())
            except DataError as error:
                results.append(
                    Readiness(dm.registry_key, dm.data_dir, MISSING, str(error), {}, dm.downloadable)
                )
                break
        out.append(merge(results))
    return out


def command(item: Readiness, sweep: str | None = None, overrides: Iterable[str] = ()) -> str:
    """The ``bench prepare`` command that makes ``item`` ready: for its sweep (every configuration the
    cells need) or its dataset, with the overrides given and its data root spelled out."""
    overrides = list(overrides)
    if not any(o.startswith("data.root=") for o in overrides):
        overrides.append(f"data.root={item.data_dir.parent}")
    target = ["--sweep", sweep] if sweep else [item.dataset]
    return " ".join(shlex.quote(word) for word in ["bench", "prepare", *target, *overrides])


def describe(item: Readiness, command: str) -> str:
    """One line: ``<key> ready (...)``, ``<key> not built: ...`` or ``<key> missing: ...``, naming the
    caches and what to run (``command``: the ``bench prepare`` that makes this dataset ready)."""
    caches = "; ".join(f"frame cache {path} ({note})" for path, note in item.caches.items())
    if item.state == READY:
        line = f"{item.dataset} ready" + (f" ({item.detail})" if item.detail else "")
        return line + (f"; {caches}" if caches else "")
    if item.state == NOT_BUILT:
        parts = [item.detail] if item.detail else []
        if caches:
            parts.append(caches)
        return (
            f"{item.dataset} not built: {'; '.join(parts)}. `{command}` builds it once (else the first cell "
            "builds it while the others wait)"
        )
    line = f"{item.dataset} missing: {item.detail}"
    if item.downloadable:
        return line + f" Or run `{command}` on a machine with internet, which downloads it."
    return line + f" Then `{command}` checks it and builds its caches."
