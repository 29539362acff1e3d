"""Records priced again, without training: under another cost table, counting convention or memory model,
from the raw per-layer counts records keep since counting version 3 (:data:`bench.metrics.rules.RAW_FIELDS`).

``bench tables``/``bench compare --cost-table loihi --pooled folded`` and a ``bench run`` whose record
exists already price records here. Every re-priceable record also gets its energy under the two ends of
the pooled-spike range (:data:`RANGE`), so the answer can show it whatever single convention a table uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

from bench.errors import ConfigError
from bench.metrics.energy import load_cost_table, load_memory_model, price
from bench.metrics.rules import COUNTING_VERSION, GRADED_MODES, POOLED_MODES, CountingRules

_log = logging.getLogger("bench")

#: The two ends of the energy range the answer shows: ``folded`` (binary spikes on an event-driven chip
#: that compiles the average pool into the next layer's synapses) and ``effective`` (the pooled values as
#: graded-spike MACs, NeuroBench's Effective_MACs); the ``ac`` rule is not realisable and ``mac`` is the
#: dense worst case.
RANGE = ("folded", "effective")
#: The figures priced at both ends of the range: ``<key>@folded`` and ``<key>@effective`` in the metrics.
RANGE_KEYS = (
    "energy_uj",
    "energy_memory_uj",
    "ann_snn_energy_ratio",
    "ann_snn_energy_ratio_memory",
    "qnn_snn_energy_ratio",
    "qnn_snn_energy_ratio_memory",
)


@dataclass(frozen=True)
class Pricing:
    """What to price records under; ``None``: each record's own (what its run was configured with)."""

    cost_table: str | None = None
    graded_spikes: str | None = None
    pooled_spikes: str | None = None
    memory_model: str | None = None

    def __post_init__(self):
        if self.cost_table is not None:
            load_cost_table(self.cost_table)  # a ConfigError listing the tables
        if self.memory_model is not None:
            load_memory_model(self.memory_model)
        for key, modes in (("graded_spikes", GRADED_MODES), ("pooled_spikes", POOLED_MODES)):
            value = getattr(self, key)
            if value is not None and value not in modes:
                option = key.split("_")[0]
                raise ConfigError(
                    f"--{option} {value!r} is not a counting mode; use one of {', '.join(modes)}."
                )

    @property
    def given(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def describe(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name))


def repriceable(record: dict) -> bool:
    """Whether ``record`` keeps the raw counts that any convention and cost table can price."""
    conventions = (record.get("metrics") or {}).get("conventions") or {}
    return conventions.get("version") == COUNTING_VERSION and bool(synaptic_layers(record))


def synaptic_layers(record: dict) -> list[dict]:
    return [layer for layer in record.get("layers") or [] if isinstance(layer, dict) and "counts" in layer]


def _price(record: dict, pricing: Pricing, pooled_spikes: str | None = None) -> dict:
    metrics = record["metrics"]
    conventions = metrics["conventions"]
    rules = CountingRules(
        conventions["spiking"],
        pricing.graded_spikes or conventions["graded_spikes"],
        pooled_spikes or pricing.pooled_spikes or conventions["pooled_spikes"],
    )
    costs = load_cost_table(pricing.cost_table or metrics["cost_table"])
    memory = load_memory_model(pricing.memory_model or metrics["memory_model"])
    layers = synaptic_layers(record)
    return price(layers, metrics.get("neuron_updates"), metrics["time_steps"], rules, costs, memory)


#: Each record under its own run's cost table, conventions and memory model.
AS_RECORDED = Pricing()


def priced(record: dict, pricing: Pricing = AS_RECORDED) -> dict:
    """``record`` with its costs priced under ``pricing`` (and at both ends of :data:`RANGE`); a record
    without raw counts (made before counting version 3, or not ok) is returned as it is."""
    if record.get("status") != "ok" or not repriceable(record):
        return record
    metrics = {**record["metrics"], **_price(record, pricing)}
    for mode in RANGE:
        at_mode = _price(record, pricing, pooled_spikes=mode)
        metrics.update({f"{key}@{mode}": at_mode.get(key) for key in RANGE_KEYS})
    return {**record, "metrics": metrics}


def priced_records(records: list[dict], pricing: Pricing = AS_RECORDED) -> list[dict]:
    """Every record priced (:func:`priced`); when a pricing is given, says how many records could not be
    re-priced and so keep their own cost table and conventions (in tables of their own)."""
    stale = [r for r in records if r.get("status") == "ok" and not repriceable(r)]
    if pricing.given and stale:
        _log.warning(
            "%d record(s) keep no raw counts (made before counting version %d), so they cannot be priced "
            "under %s; they are shown under their own cost table and conventions, in tables of their own.",
            len(stale),
            COUNTING_VERSION,
            pricing.describe(),
        )
    return [priced(r, pricing) for r in records]
