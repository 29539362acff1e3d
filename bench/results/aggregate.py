"""Records grouped per experiment (dataset, method, T, cost table, counting conventions and the resolved
config minus the seed, paths and names), labelled, and compared with a sweep's reference variant; every
metric is mean +- sample standard deviation over the group's seeds."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from bench.metrics import conventions_label

#: Table name of the records that belong to no sweep (``bench run``).
SINGLE_RUNS = "runs"


def section_title(name: str) -> str:
    """The heading of a sweep's (or the single runs') table, README section and plots."""
    return "Individual runs (`bench run`)" if name == SINGLE_RUNS else f"Sweep `{name}`"


@dataclass(frozen=True)
class Column:
    key: str  # key in record["metrics"]
    header: str
    scale: float = 1.0
    digits: int = 2
    cost: bool = False  # plotted against accuracy when present


ACCURACY = Column("test_acc", "accuracy (%)", scale=100.0)
COLUMNS = (
    ACCURACY,
    Column("energy_uj", "energy/sample (µJ)", digits=3, cost=True),
    Column("ann_snn_energy_ratio", "ANN/SNN energy", digits=2),
    Column("acs", "ACs", digits=0, cost=True),
    Column("macs", "MACs", digits=0, cost=True),
    Column("firing_rate", "firing rate", digits=4),
    Column("storage_kib", "storage (KiB)", digits=1, cost=True),
    Column("throughput_sps", "throughput (samples/s)", digits=0),
    Column("params", "parameters", digits=0, cost=True),
)


@dataclass
class Group:
    dataset: str
    method: str
    time_steps: int
    cost_table: str  # energies under different cost tables are never averaged together
    conventions: str  # nor counts made under different counting rules (bench.metrics.rules)
    experiment: str  # nor different experiments: the resolved config minus what does not define one
    records: list[dict]
    label: str = ""  # the variant's name, or the settings that tell it from the other rows of its method

    def values(self, key: str) -> list[float]:
        return [r["metrics"][key] for r in self.records if r["metrics"].get(key) is not None]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.fmean(values) if values else None


#: Config keys that never tell two experiments apart: the seed, file locations, names and display.
NOT_THE_EXPERIMENT = (
    "seed",
    "paths",
    "sweep",
    "variant",
    "logger",
    "data.root",
    "trainer.enable_progress_bar",
)


def experiment_settings(record: dict) -> dict[str, object]:
    """A record's resolved config as flat ``group.key: value`` pairs, minus :data:`NOT_THE_EXPERIMENT`."""
    flat: dict[str, object] = {}

    def walk(node, prefix):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted in NOT_THE_EXPERIMENT:
                continue
            if isinstance(value, dict):
                walk(value, f"{dotted}.")
            else:
                flat[dotted] = value

    walk(record.get("config") or {}, "")
    return flat


def group_records(records: list[dict]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        metrics = record["metrics"]
        key = (record["dataset"], record["method"], int(metrics["time_steps"]), metrics.get("cost_table", ""))
        key += (conventions_label(metrics.get("conventions")),)
        key += (json.dumps(experiment_settings(record), sort_keys=True, default=str),)
        groups.setdefault(key, Group(*key, records=[])).records.append(record)
    result = [groups[k] for k in sorted(groups)]
    label_experiments(result)
    return sorted(
        result, key=lambda g: (g.dataset, g.method, g.time_steps, g.label, g.cost_table, g.conventions)
    )


def label_experiments(groups: list[Group]) -> None:
    """Name the rows of a method that ran as several experiments: by their sweep variant, else by the
    settings in which they differ (``method.lr=0.1``)."""
    families: dict[tuple, list[Group]] = {}
    for g in groups:
        families.setdefault((g.dataset, g.method), []).append(g)
    for family in families.values():
        if len({g.experiment for g in family}) < 2:
            continue
        settings = [experiment_settings(g.records[0]) for g in family]
        differing = sorted({k for s in settings for k in s if any(o.get(k) != s.get(k) for o in settings)})
        for g, s in zip(family, settings, strict=True):
            variant = next((r.get("variant") for r in g.records if r.get("variant")), None)
            g.label = variant or ", ".join(f"{k}={s.get(k)}" for k in differing if k != "method.time_steps")


@dataclass(frozen=True)
class Relative:
    """A column comparing a row with its method's reference variant (sweep file ``reference``)."""

    key: str
    header: str
    difference: bool  # points of difference (accuracy) or a ratio (costs)


RELATIVE = (
    Relative("test_acc", "Δ accuracy vs {ref} (pt)", True),
    Relative("energy_uj", "energy vs {ref}", False),
    Relative("storage_kib", "storage vs {ref}", False),
)


def relative_cells(group: Group, groups: list[Group], reference: str) -> list[str]:
    """``group``'s mean against the mean of its method's ``reference`` row (same dataset, cost table and
    conventions; the same T when the reference ran at several)."""
    candidates = [
        g
        for g in groups
        if (g.dataset, g.method, g.cost_table, g.conventions, g.label)
        == (group.dataset, group.method, group.cost_table, group.conventions, reference)
    ]
    same_t = [g for g in candidates if g.time_steps == group.time_steps]
    base = (same_t or candidates or [None])[0]
    cells = []
    for column in RELATIVE:
        ours, theirs = group.mean(column.key), base.mean(column.key) if base else None
        if (
            base is None
            or ours is None
            or theirs is None
            or base is group
            or (not column.difference and not theirs)
        ):
            cells.append("-")
        elif column.difference:
            cells.append(f"{100 * (ours - theirs):+.2f}")
        else:
            cells.append(f"{ours / theirs:.3f}")
    return cells


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value: it is undefined)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def format_cell(column: Column, values: list[float], spread: bool = True) -> str:
    if not values:
        return "-"
    mean, std = mean_std([v * column.scale for v in values])
    text = f"{mean:,.{column.digits}f}"
    return text if std is None or not spread else f"{text} ± {std:,.{column.digits}f}"


def present_columns(groups: list[Group]) -> list[Column]:
    return [c for c in COLUMNS if any(g.values(c.key) for g in groups)]
