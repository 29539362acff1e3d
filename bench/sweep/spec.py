"""A sweep file, read and expanded into cells (the format is in :mod:`bench.sweep`'s docstring)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench import CONFIG_DIR, PROJECT_ROOT, paths, registry
from bench import config as config_mod
from bench.errors import BenchError, ConfigError
from bench.progress import Counter
from bench.results.records import TRACKS
from bench.sweep.tuning import expand, read_tuning

SWEEP_KEYS = (
    "description",
    "methods",
    "datasets",
    "seeds",
    "overrides",
    "per_dataset",
    "per_method",
    "grid",
    "variants",
    "reference",
    "exclude",
    "slurm",
    "track",
    "tuning",
)
#: A sweep file's ``track:`` when it has none (the tracks: :data:`bench.results.records.TRACKS`; a property
#: of the sweep file, never part of a run's config, so it changes no run id).
DEFAULT_TRACK = "paper"
#: Sweep-file ``slurm`` keys -> submitit's AutoExecutor parameters.
SLURM_KEYS = {
    "partition": "slurm_partition",
    "cpus_per_task": "cpus_per_task",
    "gpus_per_node": "gpus_per_node",
    "mem_gb": "mem_gb",
    "timeout_min": "timeout_min",
    "array_parallelism": "slurm_array_parallelism",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "constraint": "slurm_constraint",
    "signal_delay_s": "slurm_signal_delay_s",
    "max_num_timeout": "slurm_max_num_timeout",
}
#: The sweep-file ``slurm`` key that is ours, not submitit's: how many cells one array task runs.
PACKING_KEY = "cells_per_task"


@dataclass(frozen=True)
class SweepFacts:
    """What a cell's record says of its sweep file (the record keys
    :data:`bench.results.records.SWEEP_FACTS`), so that the tables never read the file."""

    track: str
    sweep_description: str
    sweep_reference: str | None
    sweep_file: str  # relative to the checkout when the file is in it


@dataclass(frozen=True)
class Cell:
    sweep: str
    method: str
    dataset: str
    variant: str
    seed: int
    overrides: tuple[str, ...]
    # None: its record says nothing of a file (a cell made by hand, or pickled by an older checkout for a
    # SLURM task that is requeued now)
    facts: SweepFacts | None = None
    stage: str | None = None  # "tuning": a run of the tuning stage (bench.sweep.tuning), never tested
    tuning: str | None = None  # a tuned cell: its record's ``tuning`` block, as JSON (hashable)
    waiting: str | None = None  # a tuned cell whose choice is not made yet: why

    @property
    def args(self) -> list[str]:
        """The ``bench run`` overrides of this cell, its seed and its sweep's name included."""
        variant = [f"variant={json.dumps(self.variant)}"] if self.variant else []
        return [*self.overrides, *variant, f"seed={self.seed}", f"sweep={self.sweep}"]

    @property
    def sweep_facts(self) -> dict | None:
        """What the run writes into its record beside the config (``bench.runner.run``'s ``sweep_facts``):
        an argument, not an override, so that no run id depends on it."""
        if not self.facts:
            return None
        return {**asdict(self.facts), "stage": self.stage, "tuning": json.loads(self.tuning or "null")}

    @property
    def label(self) -> str:
        variant = f" [{self.variant}]" if self.variant else ""
        return f"{self.method} on {self.dataset}{variant} seed {self.seed}"

    # (method, dataset, args) -> (unchecked config, run id), shared by the cells of one sweep and the cells
    # made from them (dataclasses.replace): each is built once (bench status, tuning, a dry run ask often)
    built: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def config(self, check: bool = True) -> DictConfig:
        """The cell's resolved config; ``check=False`` skips validation (a run id needs none) and returns
        one read-only config, built once (:func:`unchecked_config`)."""
        if not check:
            return self._built()[0]
        return config_mod.load_config(self.method, self.dataset, self.args, check=check)

    def run_id(self) -> str:
        return self._built()[1]

    def _built(self, checked: DictConfig | None = None) -> tuple[DictConfig, str]:
        """(config, run id), built once; ``checked``: the cell's config, checked already (no need to build
        it again)."""
        key = (self.method, self.dataset, tuple(self.args))
        if key not in self.built:
            cfg = checked if checked is not None else unchecked_config(self.method, self.dataset, self.args)
            OmegaConf.set_readonly(cfg, True)  # shared by every caller: nobody may change it
            self.built[key] = cfg, config_mod.run_id(self.method, self.dataset, cfg)
        return self.built[key]

    def __getstate__(self) -> dict:
        """Pickled (a SLURM task's cells) without what was built here: its configs hold this machine's
        resolved paths."""
        return {key: value for key, value in self.__dict__.items() if key != "built"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"built": {}, **state})


def unchecked_config(method: str, dataset: str, args: tuple[str, ...] | list[str]) -> DictConfig:
    """``load_config(method, dataset, args, check=False)``, cheaply: a sweep's hundreds of cells share a
    few config files and override items, and OmegaConf takes milliseconds per merge. The files of each
    (method, dataset) are merged by OmegaConf once (again if one changes), each distinct override item
    parsed by it once; a cell's items are laid over a copy of its files as plain dicts, and only the
    resolution is OmegaConf's per cell. Where a plain merge could differ from OmegaConf's (a mapping laid
    over a value, a ``???``) or anything fails, the cell takes ``load_config``'s own path."""
    registry.require_key("method", method)
    registry.require_key("dataset", dataset)
    try:
        merged = copy.deepcopy(_merged_files(method, dataset, _stamps(method, dataset)))
        for item in args:
            if not _lay_over(merged, _parsed_item(item)):
                return config_mod.load_config(method, dataset, args, check=False)
        cfg = OmegaConf.create(merged)
        OmegaConf.resolve(cfg)
        return cfg
    except (BenchError, OmegaConfBaseException, ValueError):  # load_config says what is wrong
        return config_mod.load_config(method, dataset, args, check=False)


def _stamps(method: str, dataset: str) -> tuple:
    """When each config file a (method, dataset) reads last changed (a changed file is read again)."""
    files = ("defaults.yaml", f"datasets/{dataset}.yaml", f"methods/{method}.yaml")
    return tuple((CONFIG_DIR / f).stat().st_mtime_ns if (CONFIG_DIR / f).exists() else None for f in files)


@cache
def _merged_files(method: str, dataset: str, stamps: tuple) -> dict:
    """The config files of a (method, dataset), merged by OmegaConf, unresolved, as plain dicts."""
    return OmegaConf.to_container(OmegaConf.merge(*config_mod.file_layers(method, dataset)), resolve=False)


@cache
def _parsed_item(item: str) -> dict:
    """One ``key=value`` override as OmegaConf parses it, as plain dicts (unresolved)."""
    return OmegaConf.to_container(config_mod.parse_overrides([item]), resolve=False)


def _lay_over(target: dict, source: dict) -> bool:
    """Merge ``source`` into ``target`` in place as OmegaConf merges them: mappings key by key, anything
    else replaced. False (``target`` then half merged) where OmegaConf does more: a mapping laid over a
    value (an interpolation is followed), or ``???`` (a missing value keeps the old one)."""
    for key, value in source.items():
        if isinstance(value, dict):
            if key not in target:
                target[key] = {}
            elif not isinstance(target[key], dict):
                return False
            if not _lay_over(target[key], value):
                return False
        elif value == "???":
            return False
        else:
            target[key] = value
    return True


@dataclass
class Sweep:
    name: str
    facts: SweepFacts  # its file's track, description, reference and path, as every cell's record says
    cells: list[Cell]
    slurm: dict  # submitit's parameters only (SLURM_KEYS); packing is ``cells_per_task``
    cells_per_task: int = 1
    path: Path | None = None  # the file it was read from (a tuned sweep is read again once tuning ends)
    tuning: object = None  # its ``tuning`` block (bench.sweep.tuning.Tuning), if it has one

    @property
    def waiting(self) -> list[Cell]:
        """Tuned cells whose configuration is not chosen yet."""
        return [cell for cell in self.cells if cell.waiting]

    @property
    def track(self) -> str:
        return self.facts.track

    @property
    def description(self) -> str:
        return self.facts.sweep_description


def check_track(value, where: str) -> str:
    """A sweep file's ``track`` (:data:`DEFAULT_TRACK` when absent), or a :class:`ConfigError` naming the
    valid ones."""
    if value is None:
        return DEFAULT_TRACK
    if value not in TRACKS:
        raise ConfigError(
            f"{where}: `track: {value}` is not a track; use one of {', '.join(TRACKS)} (matched: one "
            "backbone and matched settings; paper: each method's own; ablation: a method's components)."
        )
    return value


def check_cells_per_task(value, where: str) -> int:
    """``cells_per_task`` as an int >= 1, or a :class:`ConfigError` saying what it means."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{where}: `cells_per_task` must be a whole number of at least 1 (how many cells one SLURM "
            f"array task runs, one after another in one process; 1 gives every cell its own task), got "
            f"{value!r}."
        )
    return value


def resolve_sweep_path(name_or_path: str) -> Path:
    """A sweep file path, or a sweep name under ``configs/sweeps/``."""
    path = Path(name_or_path)
    if path.exists():
        return path
    named = CONFIG_DIR / "sweeps" / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if named.exists():
        return named
    known = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "sweeps").glob("*.yaml")))
    raise ConfigError(f"Sweep file {name_or_path} does not exist. Known sweeps (configs/sweeps/): {known}.")


def _dotlist(mapping, where: str) -> list[str]:
    """``{method.lr: 0.1, trainer: {max_epochs: 3}}`` -> ``["method.lr=0.1", "trainer.max_epochs=3"]``.
    Interpolations stay as written, resolved in each cell's config: ``data.fold: ${seed}`` follows the
    cell's seed."""
    if mapping is None:
        return []
    if not isinstance(mapping, DictConfig | dict):
        raise ConfigError(f"{where} must be a mapping of config keys to values, got {mapping!r}.")
    if isinstance(mapping, DictConfig):
        mapping = OmegaConf.to_container(mapping, resolve=False)
    flat: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat += [f"{key}.{item}" for item in _dotlist(value, where)]
        else:
            flat.append(f"{key}={_yaml_value(value)}")
    return flat


def _yaml_value(value) -> str:
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _names(cfg: DictConfig, key: str, path: Path) -> list:
    """``methods`` / ``datasets``: a list of registry keys, or ``all`` (every registered one, so a method
    added later joins the sweeps that say so without an edit)."""
    value = cfg.get(key)
    if value == "all":
        return registry.keys("method" if key == "methods" else "dataset")
    if not isinstance(value, ListConfig) or len(value) == 0:
        raise ConfigError(f"Sweep file {path} needs a non-empty list `{key}` or `all`, got {value!r}.")
    return _once(list(value), key, path)


def _once(values: list, key: str, path: Path) -> list:
    """``values`` if none is listed twice (a cell listed twice would train one run twice)."""
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise ConfigError(
            f"Sweep file {path}: `{key}` lists {', '.join(twice)} more than once; list each once."
        )
    return values


#: The fields of an ``exclude`` rule besides config keys (``group.key``).
EXCLUDE_FIELDS = ("method", "dataset", "seed", "variant")


def _check_exclusions(rules: list[dict], cells: list[Cell], path: Path) -> None:
    """Every ``exclude`` rule names fields a cell has, with values the sweep runs, and drops some cell: a
    misspelt field or value would otherwise exclude nothing, silently."""
    known = {
        "method": {c.method for c in cells},
        "dataset": {c.dataset for c in cells},
        "seed": {str(c.seed) for c in cells},
        "variant": {part for c in cells for part in c.variant.split(",") if part},
    }
    config_keys = {item.split("=", 1)[0] for c in cells for item in c.overrides}
    for rule in rules:
        for field, value in rule.items():
            if field in known and str(value) not in known[field]:
                raise ConfigError(
                    f"Sweep file {path}: the exclude rule {rule} names {field} {value}, which the sweep does "
                    f"not have; its {field}s: {', '.join(sorted(known[field])) or 'none'}."
                )
            if field not in known and field not in config_keys:
                raise ConfigError(
                    f"Sweep file {path}: the exclude rule {rule} has the field {field!r}, which is neither "
                    f"one of {', '.join(EXCLUDE_FIELDS)} nor a config key the sweep's cells set "
                    f"({', '.join(sorted(config_keys)) or 'none'})."
                )
        if not any(_excluded(c, [rule]) for c in cells):
            raise ConfigError(f"Sweep file {path}: the exclude rule {rule} matches no cell of the sweep.")


def _variants(cfg: DictConfig, path: Path) -> list[tuple[str, list[str]]]:
    """Named override sets: the product of ``variants`` and ``grid`` (one unnamed variant without them)."""
    named = [("", [])]
    if cfg.get("variants") is not None:
        if not isinstance(cfg.variants, DictConfig) or len(cfg.variants) == 0:
            raise ConfigError(f"Sweep file {path}: `variants` must map names to override mappings.")
        named = [
            (str(k), _dotlist(v or OmegaConf.create({}), f"variants.{k}")) for k, v in cfg.variants.items()
        ]
    grid = cfg.get("grid")
    if grid is None:
        return named
    if not isinstance(grid, DictConfig) or not all(isinstance(v, ListConfig) and v for v in grid.values()):
        raise ConfigError(f"Sweep file {path}: `grid` must map config keys to non-empty lists of values.")
    combos = []
    for values in itertools.product(*grid.values()):
        pairs = [f"{key}={_yaml_value(value)}" for key, value in zip(grid.keys(), values, strict=True)]
        combos.append((",".join(pairs), pairs))
    return [
        (",".join(n for n in (name, combo) if n), [*overrides, *pairs])
        for name, overrides in named
        for combo, pairs in combos
    ]


def _excluded(cell: Cell, rules: list[dict]) -> bool:
    """Whether every field of some rule matches the cell: method, dataset, seed, a named variant, or a
    config key's value as the cell sets it."""
    fields = {"method": cell.method, "dataset": cell.dataset, "seed": cell.seed}
    given = dict(item.split("=", 1) for item in cell.overrides)

    def matches(key, value) -> bool:
        if key == "variant":
            return str(value) in cell.variant.split(",")
        if key in fields:
            return str(fields[key]) == str(value)
        return given.get(key) == _yaml_value(value)

    return any(all(matches(k, v) for k, v in rule.items()) for rule in rules)


def _check_cells(cells: list[Cell], path: Path) -> None:
    """Merge and validate every cell's config; two cells that are one run are an error. Says how far it
    got on stderr (``checking cells 40/252``) once it has taken over 2 s (:class:`bench.progress.Counter`)."""
    runs: dict[str, Cell] = {}
    counter = Counter("checking cells", len(cells))
    try:
        for number, cell in enumerate(cells):
            counter.update(number)
            try:
                config = cell.config()
            except BenchError as error:
                raise type(error)(f"Sweep {path.stem}, cell {cell.label}: {error}") from error
            rid = cell._built(config)[1]  # kept for the cell's state (a dry run's next step)
            if cell.waiting:  # its run id waits for the choice
                continue
            if rid in runs:  # e.g. two variants with the same overrides: one run trained twice
                raise ConfigError(
                    f"Sweep file {path}: the cells {runs[rid].label} and {cell.label} are the same run "
                    f"({rid}): their configs are identical. Drop one, or make their overrides differ."
                )
            runs[rid] = cell
    except BaseException:
        counter.done(complete=False)
        raise
    counter.done()


def load_sweep(name_or_path: str, check: bool = True) -> Sweep:
    """Read and expand a sweep file; with ``check``, every cell's config is merged and validated (unknown
    methods, datasets or keys are reported before anything runs)."""
    path = resolve_sweep_path(name_or_path)
    if not paths.is_name(path.stem):  # the sweep's name becomes file names (tables, plots, logs)
        raise ConfigError(
            f"Sweep file {path}: its name {path.stem!r} is not a sweep's name ({paths.NAME_RULE}): rename "
            "the file."
        )
    cfg = config_mod._read_yaml(path)
    unknown = set(cfg) - set(SWEEP_KEYS)
    if unknown:
        raise ConfigError(
            f"Sweep file {path} has unknown key(s) {', '.join(sorted(unknown))}. Valid keys: "
            f"{', '.join(SWEEP_KEYS)}."
        )
    methods, datasets = _names(cfg, "methods", path), _names(cfg, "datasets", path)
    seeds = list(cfg.get("seeds") or [0])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"Sweep file {path}: `seeds` must be a list of integers, got {seeds}.")
    _once(seeds, "seeds", path)
    common = _dotlist(cfg.get("overrides"), "overrides")
    per_dataset = cfg.get("per_dataset") or OmegaConf.create({})
    per_method = cfg.get("per_method") or OmegaConf.create({})
    for group, keys, known in (("per_dataset", per_dataset, datasets), ("per_method", per_method, methods)):
        stray = set(keys) - set(known)
        if stray:
            raise ConfigError(
                f"Sweep file {path}: `{group}` names {', '.join(sorted(stray))}, which the sweep does not "
                f"run; it runs {', '.join(known)}."
            )
    rules = [OmegaConf.to_container(r) for r in (cfg.get("exclude") or [])]
    if not all(isinstance(r, dict) and r for r in rules):
        raise ConfigError(f"Sweep file {path}: `exclude` must be a list of non-empty mappings.")
    slurm = OmegaConf.to_container(cfg.get("slurm") or OmegaConf.create({}))
    stray = set(slurm) - {*SLURM_KEYS, PACKING_KEY}
    if stray:
        raise ConfigError(
            f"Sweep file {path}: unknown `slurm` key(s) {', '.join(sorted(stray))}. Valid: "
            f"{', '.join([*SLURM_KEYS, PACKING_KEY])}."
        )
    cells_per_task = check_cells_per_task(slurm.pop(PACKING_KEY, 1), f"Sweep file {path}, `slurm` block")
    track = check_track(cfg.get("track"), f"Sweep file {path}")
    variants = _variants(cfg, path)
    reference = cfg.get("reference")
    if reference is not None and reference not in {name for name, _ in variants}:
        raise ConfigError(
            f"Sweep file {path}: `reference: {reference}` names no variant; variants: "
            f"{', '.join(name for name, _ in variants)}."
        )
    description = str(cfg.get("description", ""))
    where = path.resolve()
    where = where.relative_to(PROJECT_ROOT) if where.is_relative_to(PROJECT_ROOT) else where
    facts = SweepFacts(track, description, reference, str(where))
    every, built = [], {}
    for dataset, method in itertools.product(datasets, methods):
        base = [
            *common,
            *_dotlist(per_dataset.get(dataset), f"per_dataset.{dataset}"),
            *_dotlist(per_method.get(method), f"per_method.{method}"),
        ]
        for (variant, own), seed in itertools.product(variants, seeds):
            overrides = (*base, *own)
            every.append(Cell(path.stem, method, dataset, variant, int(seed), overrides, facts, built=built))
    _check_exclusions(rules, every, path)
    cells = [cell for cell in every if not _excluded(cell, rules)]
    if not cells:
        raise ConfigError(
            f"Sweep file {path}: its `exclude` rules drop every cell, so it has nothing to run."
        )
    tuning = read_tuning(cfg.get("tuning"), methods, f"Sweep file {path}", _dotlist, _yaml_value)
    if tuning is not None:
        cells = expand(path.stem, cells, tuning)
    if check:
        _check_cells(cells, path)
    return Sweep(path.stem, facts, cells, slurm, cells_per_task, path, tuning)
