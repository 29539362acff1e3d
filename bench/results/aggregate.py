"""Records grouped: per sweep into sections (with the sweep-file facts the records carry), and per
experiment (dataset, method, T, cost table, counting conventions and the resolved config minus the seed,
paths and names) into labelled groups. Nothing here reads a sweep file or formats a number
(:mod:`~bench.results.formatting`).

Groups are only ever ranked, tabled or plotted together inside one *setting* (dataset, frame setting, cost
table, counting conventions) of one sweep, and ranked at one T, or at one T x bits per spike (the
information a neuron can send per sample, :func:`by_bit_steps`): the comparison contexts of
:mod:`bench.results.stats`. The records of a tuning stage (``record["stage"] == "tuning"``: candidates
scored on validation, no test accuracy) are in none of them.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from bench.metrics.rules import PRICING_KEYS, conventions_label
from bench.results.records import SWEEP_FACTS, TRACKS, record_at_chance
from bench.results.stats import Row, rank

#: Table name of the records that belong to no sweep (``bench run``).
SINGLE_RUNS = "runs"


#: The order of the tracks in the README; ``None``: records that carry no track (``bench run``, records
#: made before records carried it).
TRACK_ORDER = (*TRACKS, None)


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

    @property
    def name(self) -> str:
        """The method, with its variant label when it has one."""
        return f"{self.method} [{self.label}]" if self.label else self.method

    @property
    def outside_design(self) -> bool:
        """Whether the runs lie outside their method's design range (their records say so)."""
        return any(r.get("outside_design") for r in self.records)

    @property
    def outside_design_reason(self) -> str | None:
        return next((r.get("outside_design_reason") for r in self.records if r.get("outside_design")), None)

    def _same(self, key: str):
        """The metric ``key`` when every record states the same value, else None."""
        values = {r["metrics"].get(key) for r in self.records}
        return values.pop() if len(values) == 1 else None

    @property
    def spike_bits(self) -> int | None:
        """Bits per spike, ``ceil(log2(K + 1))`` for K levels (None: non-spiking, or not recorded)."""
        return self._same("spike_bits")

    @property
    def bit_steps(self) -> int | None:
        """T x bits per spike: the budget the equal-information ranking compares at (None: not stated)."""
        return self._same("bit_steps")

    @property
    def params(self) -> int | None:
        """The parameter count when every run states the same one (else the mean, rounded)."""
        values = self.values("params")
        return None if not values else int(round(statistics.fmean(values)))

    @property
    def tuned(self) -> str | None:
        """The configuration a tuning stage chose for this row, ``key=value, ...`` (runs that chose
        differently: each distinct choice, ``/``-separated); None when no record was tuned."""
        chosen = [
            ", ".join(f"{k}={v}" for k, v in sorted((r["tuning"].get("chosen") or {}).items()))
            for r in self.records
            if isinstance(r.get("tuning"), dict)
        ]
        if not chosen:
            return None
        return " / ".join(dict.fromkeys(chosen)) or "none chosen"

    @property
    def spiking(self) -> bool:
        """Whether the method computes with spikes (records before the counting conventions: assumed)."""
        return (self.records[0]["metrics"].get("conventions") or {}).get("spiking", True)

    @property
    def at_chance(self) -> int:
        """How many of its runs ended at chance (their records' ``at_chance``)."""
        return sum(record_at_chance(r) for r in self.records)

    @property
    def frames(self) -> str:
        return frame_setting(self.records[0])  # the same in every record: it is part of the experiment

    @property
    def setting(self) -> tuple[str, str, str, str]:
        """What a table, a plot and (with T) a ranking never mix: dataset, frames, cost table, conventions."""
        return (self.dataset, self.frames, self.cost_table, self.conventions)


#: The data settings that make event samples: runs cut into different frames see different inputs.
FRAME_KEYS = ("frames", "split_by", "size")


def frame_setting(record: dict) -> str:
    """A record's frame setting (``data.frames=8, data.split_by=time, data.size=34``), ``""`` for data
    without frames."""
    data = (record.get("config") or {}).get("data") or {}
    if data.get("frames") is None:
        return ""
    return ", ".join(f"data.{key}={data[key]}" for key in FRAME_KEYS if data.get(key) is not None)


@dataclass
class Section:
    """One sweep's (or the single runs') records, as published: a table file, plots, a README section;
    its track, description, reference variant and file as its records say (:func:`sweep_facts`)."""

    name: str
    track: str | None  # None: no record says (`bench run`, older records)
    description: str
    reference: str | None
    file: str | None
    groups: list[Group]
    failed: list[dict]
    n_records: int

    @property
    def order(self) -> tuple:
        return (TRACK_ORDER.index(self.track), self.name == SINGLE_RUNS, self.name)

    @property
    def published(self) -> bool:
        """Whether it is a sweep's: published in README.md, ranked and plotted. One-off ``bench run``
        records (scratch work, smoke tests) are listed unranked in their own table, never published."""
        return self.name != SINGLE_RUNS


def sweep_facts(records: list[dict]) -> dict:
    """What one sweep's records say of its file (:data:`~bench.results.records.SWEEP_FACTS`): those of the
    most recently started record that has a track (by ``started_at``, the ISO time the runner writes in
    UTC; equal times: the larger run id), so that when the file was edited between runs its latest state
    wins, the same whatever the order of the records. ``{}`` when none has a track (``bench run`` records,
    records made before records carried these facts)."""
    carrying = [r for r in records if r.get("track") is not None]
    if not carrying:
        return {}
    latest = max(carrying, key=lambda r: (r.get("started_at") or "", r["run_id"]))
    return {key: latest.get(key) for key in SWEEP_FACTS}


def is_tuning(record: dict) -> bool:
    """Whether a record is of a sweep's tuning stage (a candidate configuration scored on validation):
    never tabled, ranked or plotted."""
    return record.get("stage") == "tuning"


def sections(records: list[dict]) -> list[Section]:
    """The records per sweep (or single runs), grouped, with the sweep-file facts they carry, in README
    order: what ``bench tables`` publishes and ``bench compare`` ranks."""
    by_sweep: dict[str, list[dict]] = {}
    for record in records:
        if not is_tuning(record):
            by_sweep.setdefault(record.get("sweep") or SINGLE_RUNS, []).append(record)
    result = []
    for name, sweep_records in by_sweep.items():
        facts = sweep_facts(sweep_records)
        failed = [r for r in sweep_records if r.get("status") != "ok"]
        result.append(
            Section(
                name,
                facts.get("track"),
                facts.get("sweep_description") or "",
                facts.get("sweep_reference"),
                facts.get("sweep_file"),
                group_records(sweep_records),
                failed,
                len(sweep_records),
            )
        )
    return sorted(result, key=lambda s: s.order)


def by_setting(groups: list[Group]) -> list[list[Group]]:
    """The groups split per :attr:`Group.setting`, in order; inside each, by T then method."""
    settings: dict[tuple, list[Group]] = {}
    for g in groups:
        settings.setdefault(g.setting, []).append(g)
    return [sorted(settings[k], key=lambda g: (g.time_steps, g.method, g.label)) for k in sorted(settings)]


def by_time_steps(groups: list[Group]) -> list[list[Group]]:
    """One setting's groups split per T: the comparison contexts, in order of T."""
    steps = sorted({g.time_steps for g in groups})
    return [[g for g in groups if g.time_steps == t] for t in steps]


def by_bit_steps(groups: list[Group]) -> list[list[Group]]:
    """One setting's spiking groups split per T x bits per spike, in order of that budget: the
    equal-information contexts (a 2-bit method at T = 1 beside binary ones at T = 2). Groups whose records
    state no bits (non-spiking ones, such as the ANN reference, and records made before they did) are in
    none."""
    budgets = sorted({g.bit_steps for g in groups if g.spiking and g.bit_steps is not None})
    return [
        sorted(
            (g for g in groups if g.spiking and g.bit_steps == b),
            key=lambda g: (g.time_steps, g.method, g.label),
        )
        for b in budgets
    ]


def several_t(groups: list[Group]) -> bool:
    """Whether some method (and variant) ran at several T: then accuracy and energy against T are plotted."""
    return any(
        len({g.time_steps for g in groups if (g.method, g.label) == (h.method, h.label)}) > 1 for h in groups
    )


def ranked(groups: list[Group]) -> dict[int, Row]:
    """Each group's row (by ``id``) in the ranking of its comparison context: its setting at its T."""
    rows = {}
    for setting in by_setting(groups):
        for context in by_time_steps(setting):
            rows |= {id(row.group): row for row in rank(context).rows}
    return rows


def in_rank_order(groups: list[Group], rows: dict[int, Row]) -> list[Group]:
    """One setting's groups by T, then most accurate first (the order of every table)."""
    last = len(groups) + 1  # a group without accuracy (none is recorded without one) goes last

    def key(g: Group) -> tuple:
        return (g.time_steps, rows[id(g)].place if id(g) in rows else last, g.method, g.label)

    return sorted(groups, key=key)


def setting_names(groups: list[Group]) -> dict[tuple, tuple[str, str]]:
    """Each setting's heading and file stem: its dataset, qualified (heading) and numbered (stem) when the
    dataset has several settings here, by what tells them apart (frames, cost table, conventions)."""
    names = {}
    for dataset in sorted({g.dataset for g in groups}):
        keys = sorted({g.setting for g in groups if g.dataset == dataset})
        for i, key in enumerate(keys, 1):
            if len(keys) == 1:
                names[key] = (dataset, dataset)
                continue
            differing = [key[j] or "no frames" for j in (1, 2, 3) if len({k[j] for k in keys}) > 1]
            names[key] = (f"{dataset} ({'; '.join(differing)})", f"{dataset}-{i}")
    return names


#: Config keys that never tell two experiments apart: the seed and fold, file locations, names and display.
NOT_THE_EXPERIMENT = (
    "seed",
    "data.fold",  # k-fold cross-validation: a row's runs are its (seed, fold) pairs
    "paths",
    "sweep",
    "variant",
    "logger",
    "data.root",
    "trainer.enable_progress_bar",
    *PRICING_KEYS,  # the records are priced by the tables, under one cost table and convention
)


def experiment_settings(record: dict) -> dict[str, object]:
    """A record's resolved config as flat ``group.key: value`` pairs, minus :data:`NOT_THE_EXPERIMENT`; and
    ``retest: True`` for a ``bench test`` record, so that a re-test is a row of its own (labelled
    ``re-test``), never counted as one more run of the model it re-tested."""
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
    if record.get("tested_from"):  # `bench test`: a kept model re-tested, never another run beside it
        flat["retest"] = True
    return flat


def group_records(records: list[dict]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for record in records:
        if record.get("status") != "ok" or is_tuning(record):
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
    """Name the rows of a method that ran as several experiments in one setting (one table): by their sweep
    variant, else by the settings in which they differ (``method.lr=0.1``)."""
    families: dict[tuple, list[Group]] = {}
    for g in groups:
        families.setdefault((g.setting, g.method), []).append(g)
    for family in families.values():
        if len({g.experiment for g in family}) < 2:
            continue
        settings = [experiment_settings(g.records[0]) for g in family]
        differing = sorted({k for s in settings for k in s if any(o.get(k) != s.get(k) for o in settings)})
        differing = [k for k in differing if k != "method.time_steps"]  # T has its own column
        # what a tuning stage chose per T has its own place in the answer: no label, unless the rows of
        # one T would then read alike
        tuned = {k for g in family for r in g.records for k in (r.get("tuning") or {}).get("chosen") or {}}
        untuned = [k for k in differing if k not in tuned]
        pairs = list(zip(family, settings, strict=True))
        apart = len({(g.time_steps, tuple(s.get(k) for k in untuned)) for g, s in pairs}) == len(family)
        shown = untuned if apart else differing
        for g, s in pairs:
            variant = next((r.get("variant") for r in g.records if r.get("variant")), "")
            # a grid over method.time_steps names no variant
            variant = ",".join(p for p in variant.split(",") if p and not p.startswith("method.time_steps="))
            # a re-test (`bench test`) is labelled so; the runs beside it are not labelled "retest=None"
            parts = [f"{k}={s.get(k)}" for k in shown if k != "retest"]
            parts += ["re-test"] if "retest" in s else []
            g.label = variant or ", ".join(parts)


def reference_group(group: Group, groups: list[Group], reference: str) -> Group | None:
    """The row ``group`` is compared with: its method's ``reference`` variant in its setting, at its T when
    the reference ran at several; ``None`` when there is none."""
    candidates = [
        g for g in groups if (g.setting, g.method, g.label) == (group.setting, group.method, reference)
    ]
    same_t = [g for g in candidates if g.time_steps == group.time_steps]
    return (same_t or candidates or [None])[0]
