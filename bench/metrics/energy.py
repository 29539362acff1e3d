"""Energy from op counts: named cost tables (``configs/energy/``) and the equivalent-ANN reference.

Energy per sample = MACs x E_MAC + ACs x E_AC + neuron updates x E_neuron under the run's cost table, an
estimate, not a measurement. The *ANN reference* is the same network run once as an ANN: the dense MACs of
one pass of every synaptic layer, padding taps included, priced on a digital accelerator: the run's table
when it is one (``digital: true``, the Horowitz 45 nm tables), else ``horowitz45_fp32``. Pricing it with a
neuromorphic table would charge the ANN synaptic-op costs and make the "N x less energy" column meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from omegaconf import OmegaConf

from bench import CONFIG_DIR
from bench.errors import ConfigError
from bench.metrics.rules import CountingRules

#: Prices the ANN reference when the run's cost table is not a digital accelerator's.
DEFAULT_REFERENCE_TABLE = "horowitz45_fp32"


@dataclass(frozen=True)
class CostTable:
    name: str
    description: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: float = 0.0
    digital: bool = False  # a conventional (MAC) accelerator: may price the ANN reference
    source: str = ""


def cost_tables(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / "energy").glob("*.yaml"))


def load_cost_table(name: str, config_dir: Path = CONFIG_DIR) -> CostTable:
    path = config_dir / "energy" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(
            f"Unknown energy cost table metrics.cost_table={name!r}; available: "
            f"{', '.join(cost_tables(config_dir))} (files in {path.parent})."
        )
    return CostTable(name=name, **OmegaConf.to_container(OmegaConf.load(path)))


def reference_table(costs: CostTable) -> CostTable:
    """The table that prices the ANN reference under ``costs``."""
    return costs if costs.digital else load_cost_table(DEFAULT_REFERENCE_TABLE)


def price(layers: list[dict], neuron_updates: float | None, rules: CountingRules, costs: CostTable) -> dict:
    """Ops and energy per sample of a record's synaptic layers (their raw ``counts``, per sample) under
    ``rules`` and ``costs``: the record's summary figures, recomputed the same way whenever a table asks
    for another convention or cost table. The ANN/SNN ratio is exact rational arithmetic on the counts and
    costs, so equal workloads give exactly 1 (the ``ann`` baseline) and T frames exactly 1/T."""
    acs = macs = ann_macs = Fraction(0)
    for layer in layers:
        layer_acs, layer_macs = rules.ops(layer["counts"])
        acs, macs = acs + Fraction(layer_acs), macs + Fraction(layer_macs)
        ann_macs += Fraction(layer["counts"]["ann_macs"])
    reference = reference_table(costs)
    energy = macs * Fraction(costs.e_mac_pj) + acs * Fraction(costs.e_ac_pj)
    energy += Fraction(neuron_updates or 0.0) * Fraction(costs.e_neuron_pj)
    ann_energy = ann_macs * Fraction(reference.e_mac_pj)
    return {
        "cost_table": costs.name,
        "conventions": rules.conventions(),
        "acs": float(acs),
        "macs": float(macs),
        "ann_macs": float(ann_macs),
        "energy_uj": float(energy / 10**6),
        "ann_energy_uj": float(ann_energy / 10**6),
        "ann_reference_table": reference.name,
        "ann_snn_energy_ratio": float(ann_energy / energy) if energy > 0 else None,
    }
