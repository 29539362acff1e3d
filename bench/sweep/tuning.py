"""A sweep's tuning stage: every method gets the same number of configurations of its own key
hyper-parameters, tried on the validation split, and the cells the tables rank run the chosen one.

A sweep file's ``tuning`` block::

    tuning:
      seeds: [0]                       # the tuning runs' seeds (default [0])
      overrides: {data.fold: 0}        # what the tuning runs set instead of the cell's own (optional;
                                       # e.g. trainer.max_epochs: a shorter schedule, the same for all)
      space:                           # per method: config key -> values; their product is its budget,
        lif_sg: {method.lr: [1.0e-3, 3.0e-3], method.v_threshold: [0.5, 1.0]}   # the same for every method
        ann: {method.lr: [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]}

For each group of cells that differ only in seed (and in the keys ``tuning.overrides`` sets, e.g. the
fold), one tuning run per configuration and tuning seed trains with the cell's schedule (or the one
``tuning.overrides`` sets), is validated and is never tested (its record says ``stage: tuning`` and holds
no test metric: the test set never touches the choice). The rule (:data:`RULE`) picks a configuration
once all of the group's tuning runs ended; the group's cells then run with it appended to their
overrides, and their records say what was tried, with which validation accuracy, and what was chosen
(``tuning``). Cells outside their method's design range (``bench list``) are never ranked, so they get no
tuning: they run the method's defaults.

Tuning runs belong to the sweep ``<name>-tuning`` (their run ids differ from the ranked cells' even where
the configs agree); ``bench tables`` leaves them out.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench import registry
from bench.design import outside_reason
from bench.errors import ConfigError
from bench.results.records import TUNING_STAGE as STAGE

TUNING_KEYS = ("seeds", "overrides", "space")
RULE = (
    "the configuration with the highest validation accuracy at the end of its tuning run, averaged over the "
    "tuning seeds; a configuration with a failed run loses; ties go to the first listed"
)


@dataclass(frozen=True)
class Tuning:
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]  # ``key=value``: what tuning runs set instead of the cell's own
    space: dict  # method -> {key: [values]} as the file gives it (for the records)
    candidates: dict  # method -> [(key=value, ...), ...] in product order (the first listed wins ties)


def read_tuning(block, methods: list[str], where: str, dotlist, yaml_value) -> Tuning | None:
    """The ``tuning`` block of a sweep file (None without one), checked: every method of the sweep has a
    space, and every space has the same number of configurations."""
    if block is None:
        return None
    if not isinstance(block, DictConfig):
        raise ConfigError(f"{where}: `tuning` must be a mapping with {', '.join(TUNING_KEYS)}.")
    stray = set(block) - set(TUNING_KEYS)
    if stray:
        raise ConfigError(
            f"{where}: unknown `tuning` key(s) {', '.join(sorted(stray))}. Valid: {', '.join(TUNING_KEYS)}."
        )
    seeds = list(block.get("seeds") or [0])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) < len(seeds):
        raise ConfigError(f"{where}: `tuning.seeds` must be a list of distinct integers, got {seeds}.")
    space = block.get("space")
    if not isinstance(space, DictConfig) or not space:
        raise ConfigError(f"{where}: `tuning.space` must map each method to its config keys' values.")
    missing = [m for m in methods if m not in space]
    stray = [m for m in space if m not in methods]
    if missing or stray:
        raise ConfigError(
            f"{where}: `tuning.space` must give every method of the sweep, baselines included, the same "
            f"budget: {'no space for ' + ', '.join(missing) if missing else ''}"
            f"{'; ' if missing and stray else ''}"
            f"{'it names ' + ', '.join(stray) + ', which the sweep does not run' if stray else ''}."
        )
    candidates = {}
    for method in methods:
        keys = space[method]
        if not isinstance(keys, DictConfig) or not keys:
            raise ConfigError(f"{where}: `tuning.space.{method}` must map config keys to lists of values.")
        if not all(isinstance(v, ListConfig) and len(v) > 0 for v in keys.values()):
            raise ConfigError(
                f"{where}: every key of `tuning.space.{method}` needs a non-empty list of values."
            )
        candidates[method] = [
            tuple(f"{key}={yaml_value(value)}" for key, value in zip(keys.keys(), values, strict=True))
            for values in itertools.product(*keys.values())
        ]
    sizes = {method: len(c) for method, c in candidates.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(
            f"{where}: every method gets the same tuning budget, but the spaces have "
            + ", ".join(f"{m} {n}" for m, n in sizes.items())
            + " configurations. Give each the same number."
        )
    overrides = tuple(dotlist(block.get("overrides"), "tuning.overrides"))
    as_lists = {m: OmegaConf.to_container(space[m]) for m in methods}
    return Tuning(tuple(int(s) for s in seeds), overrides, as_lists, candidates)


def _set(overrides: tuple[str, ...], changes: tuple[str, ...]) -> tuple[str, ...]:
    """``overrides`` with each of ``changes`` (``key=value``) replacing the same key, else appended."""
    keys = {change.split("=", 1)[0] for change in changes}
    return (*[o for o in overrides if o.split("=", 1)[0] not in keys], *changes)


def in_design(cell) -> bool:
    """Whether the cell runs inside its method's design range (torch-free: the plugin sources say it). A
    cell that leaves T to the method (``method.time_steps: null``) is outside only for an input kind the
    method is not designed for: the T it resolves is in its range."""
    catalogue = registry.catalogue()
    method, data = catalogue["method"][cell.method], catalogue["dataset"][cell.dataset]
    if not method.design:  # a method class that states no range is never outside it
        return True
    if data.facts.kind not in method.design:
        return False
    steps = OmegaConf.select(cell.config(check=False), "method.time_steps")
    return steps is None or outside_reason(cell.method, method.design, "", data.facts.kind, steps) is None


def expand(name: str, cells: list, tuning: Tuning) -> list:
    """The tuning cells, then ``cells`` each resolved: with the chosen configuration (and its ``tuning``
    record block) once its group's tuning runs ended, else ``waiting``. Cells outside their design are
    returned as they are."""
    from bench.sweep.state import cell_state  # state imports spec, which imports this module

    groups: dict[tuple, list[list]] = {}  # (method, dataset, tuning overrides) -> per candidate, its runs
    group_of = {}
    for cell in cells:
        if not in_design(cell):
            continue
        base = _set(cell.overrides, tuning.overrides)
        key = (cell.method, cell.dataset, base)
        group_of[cell] = key
        if key in groups:
            continue
        budget = len(tuning.candidates[cell.method])
        groups[key] = [
            [
                replace(
                    cell,
                    sweep=f"{name}-{STAGE}",
                    variant=_label(cell.variant, f"tuning {k + 1}/{budget}"),
                    seed=seed,
                    overrides=(*base, *chosen),
                    stage=STAGE,
                )
                for seed in tuning.seeds
            ]
            for k, chosen in enumerate(tuning.candidates[cell.method])
        ]
    # Each group settled once (its cells differ only in seed): (why it waits, chosen overrides, block)
    settled: dict[tuple, tuple] = {}
    resolved = []
    for cell in cells:
        key = group_of.get(cell)
        if key is None:
            resolved.append(cell)
            continue
        if key not in settled:
            settled[key] = _settle(name, cell.method, groups[key], tuning, cell_state)
        waiting, chosen, block = settled[key]
        if waiting:
            resolved.append(replace(cell, waiting=waiting))
        else:
            resolved.append(replace(cell, overrides=_set(cell.overrides, chosen), tuning=block))
    tuning_runs = [run for candidates in groups.values() for runs in candidates for run in runs]
    return tuning_runs + resolved


def _settle(name: str, method: str, candidates: list[list], tuning: Tuning, cell_state) -> tuple:
    """One group's outcome from its tuning runs (``candidates``: per configuration, its runs):
    ``(why it waits, None, None)``, or ``(None, the chosen overrides, its record's tuning block as JSON)``."""
    tried = []
    for runs, chosen in zip(candidates, tuning.candidates[method], strict=True):
        states = [cell_state(run) for run in runs]
        tried.append((chosen, states, runs))
    waiting = sum(state in ("pending", "running") for _, states, _ in tried for state, _ in states)
    if waiting:
        total = len(tried) * len(tuning.seeds)
        return f"{waiting} of its {total} tuning runs have not ended", None, None
    scored = []
    for chosen, states, runs in tried:
        values = [
            (record or {}).get("metrics", {}).get("val_acc") if state == "done" else None
            for state, record in states
        ]
        score = None if any(v is None for v in values) else sum(values) / len(values)
        scored.append((chosen, score, [run.run_id() for run in runs]))
    best = max(
        (i for i, (_, score, _) in enumerate(scored) if score is not None),
        key=lambda i: (scored[i][1], -i),
        default=None,
    )
    if best is None:
        return "every one of its tuning runs failed (bench status)", None, None
    block = {
        "sweep": f"{name}-{STAGE}",
        "rule": RULE,
        "space": tuning.space[method],
        "candidates": [
            {"overrides": _as_dict(chosen), "val_acc": score, "run_ids": ids} for chosen, score, ids in scored
        ],
        "chosen": _as_dict(scored[best][0]),
    }
    return None, scored[best][0], json.dumps(block)


def _label(*parts: str) -> str:
    return ", ".join(part for part in parts if part)


def _as_dict(pairs: tuple[str, ...]) -> dict:
    """``("method.lr=0.001",)`` -> ``{"method.lr": 0.001}`` (values as YAML reads them)."""
    return {key: yaml.safe_load(value) for key, value in (p.split("=", 1) for p in pairs)}
