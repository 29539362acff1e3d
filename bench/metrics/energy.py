"""Energy from op counts: named cost tables (``configs/energy/``), memory models (``configs/energy/memory/``)
and two references, the FP32 ANN and the bit-matched QNN. Estimates, not measurements.

**Compute.** Energy per sample = MACs x E_MAC + ACs x E_AC + neuron updates x E_neuron under the run's cost
table. The *ANN reference* is the same network run once as an ANN: the dense MACs of one pass of every
synaptic layer, padding taps included, priced on a digital accelerator: the run's table when it is one
(``digital: true``, the Horowitz 45 nm tables), else ``horowitz45_fp32``; a neuromorphic table would charge
the ANN synaptic-op costs and make the "N x less energy" column meaningless. The *QNN reference* (Yan, Bai,
Tang, Wong, arXiv 2409.08290) is the same network quantised to what a rate-coded SNN of T steps carries:
activations of b = ceil(log2(T+1)) bits (a count of 0..T spikes) and 8-bit weights, its dense MACs priced at
``horowitz45_int8``'s MAC (Horowitz's narrowest: an upper bound while b <= 8, i.e. T < 256). It exists
for spiking methods only: a non-spiking method's activations are not spike counts, so it has no bit-matched
QNN (its QNN figures are None).

**Data movement** (``memory``, beside compute), after Lemaire et al. (ICONIP 2022, "An analytical estimation
of spiking neural networks energy efficiency") and Yan et al.: the bits moved between an on-chip SRAM and the
datapath, each read or written at the memory model's energy per bit. With w the cost table's word width and
b_w = min(the layer's declared weight bits, w):

* SNN, per synaptic op (every AC and MAC the counting rules price, so it follows the convention: ``folded``
  reads a weight per pre-pool spike connection): read the weight (b_w bits) and read-modify-write the target's
  membrane potential (w read + w written); per MAC also read its input (w); per neuron update (neuron x time
  step) read and write the neuron's state (w + w).
* A non-spiking method (so ``ann`` equals its own reference) and the ANN reference, with operands in SRAM, no
  reuse from registers and partial sums kept in a register: per MAC read the weight (b_w; the reference: the
  w of the table that prices it) and the input (w); per output element write it once (w).
* The QNN reference: per MAC read an 8-bit weight and a b-bit input; per output element write b bits.
* A table whose per-op energies are a chip's, not an arithmetic unit's (``memory_in_ops``: the neuromorphic
  tables, each stating why), already includes that chip's memory access: the run's data movement is 0 there.

Spike transport (address events, a network-on-chip) and off-chip traffic are not counted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from omegaconf import OmegaConf

from bench import CONFIG_DIR
from bench.errors import ConfigError
from bench.metrics.rules import CountingRules

#: Prices the ANN reference when the run's cost table is not a digital accelerator's.
DEFAULT_REFERENCE_TABLE = "horowitz45_fp32"
#: Prices the QNN reference: integer MACs, and its word width is the QNN's weight width (8 bits).
QNN_REFERENCE_TABLE = "horowitz45_int8"


@dataclass(frozen=True)
class CostTable:
    name: str
    description: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: float = 0.0
    digital: bool = False  # a conventional (MAC) accelerator: may price the ANN reference
    source: str = ""
    word_bits: int | None = None  # the width an input, potential or output moves at (a weight: at most it)
    memory_in_ops: bool = False  # the per-op energies already include memory access (measured on a chip)
    memory_in_ops_reason: str = ""

    def __post_init__(self):
        # Data movement is priced for every record: a table must say how wide its words are, or why it
        # needs none.
        if self.memory_in_ops and not self.memory_in_ops_reason:
            raise ConfigError(
                f"Energy cost table {self.name!r} says its energies include memory access (memory_in_ops) "
                "but not why: add memory_in_ops_reason."
            )
        if not self.memory_in_ops and not self.word_bits:
            raise ConfigError(
                f"Energy cost table {self.name!r} states neither its word width (word_bits) nor that its "
                "energies include memory access (memory_in_ops, with memory_in_ops_reason): its data "
                "movement cannot be priced."
            )


@dataclass(frozen=True)
class MemoryModel:
    """Energy of moving bits between an on-chip memory and the datapath: an access of ``access_bits`` bits
    costs ``access_pj``, read or written, and a narrower one its share (a packed 1-bit weight, an 8-bit
    operand)."""

    name: str
    description: str
    access_pj: float
    access_bits: int

    @property
    def pj_per_bit(self) -> Fraction:
        return Fraction(self.access_pj) / self.access_bits


def cost_tables(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / "energy").glob("*.yaml"))


@functools.cache
def load_cost_table(name: str, config_dir: Path = CONFIG_DIR) -> CostTable:
    """A cost table by name (one of :func:`cost_tables`: a name read from a record never becomes another
    path); cached, since tables price every record several times."""
    path = config_dir / "energy" / f"{name}.yaml"
    if name not in cost_tables(config_dir):
        raise ConfigError(
            f"Unknown energy cost table metrics.cost_table={name!r}; available: "
            f"{', '.join(cost_tables(config_dir))} (files in {config_dir / 'energy'})."
        )
    return CostTable(name=name, **OmegaConf.to_container(OmegaConf.load(path)))


def memory_models(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / "energy" / "memory").glob("*.yaml"))


@functools.cache
def load_memory_model(name: str, config_dir: Path = CONFIG_DIR) -> MemoryModel:
    """A memory model from its file (one of :func:`memory_models`): a description and figures, each a
    ``value`` with its ``source``."""
    path = config_dir / "energy" / "memory" / f"{name}.yaml"
    if name not in memory_models(config_dir):
        raise ConfigError(
            f"Unknown memory model metrics.memory_model={name!r}; available: "
            f"{', '.join(memory_models(config_dir))} (files in {config_dir / 'energy' / 'memory'})."
        )
    spec = OmegaConf.to_container(OmegaConf.load(path))
    figures = {key: entry for key, entry in spec.items() if key != "description"}
    for key, entry in figures.items():
        if not isinstance(entry, dict) or "value" not in entry or not entry.get("source"):
            raise ConfigError(f"{path}: figure {key!r} must be a value with its source ({{value, source}}).")
    return MemoryModel(
        name=name, description=spec["description"], **{key: entry["value"] for key, entry in figures.items()}
    )


def reference_table(costs: CostTable) -> CostTable:
    """The table that prices the ANN reference under ``costs``."""
    return costs if costs.digital else load_cost_table(DEFAULT_REFERENCE_TABLE)


def qnn_activation_bits(time_steps: int) -> int:
    """ceil(log2(T+1)): the bits that hold a spike count 0..T (exactly T's bit length, no float log)."""
    if time_steps < 1:
        raise ValueError(f"time_steps must be >= 1, got {time_steps}")
    return int(time_steps).bit_length()


def _run_bits(
    layers: list[dict],
    ops: list[tuple[Fraction, Fraction]],
    updates: Fraction,
    rules: CountingRules,
    word: int,
) -> Fraction:
    """Bits the run moves per sample (module doc): its layers' ``ops`` (ACs, MACs), ``updates`` neuron
    updates, ``word``-bit words."""
    bits = updates * 2 * word
    for layer, (acs, macs) in zip(layers, ops, strict=True):
        weight = Fraction(min(layer["weight_bits"], word))
        if rules.spiking:
            bits += (acs + macs) * (weight + 2 * word) + macs * word
        else:
            bits += macs * (weight + word) + Fraction(layer["counts"]["outputs"]) * word
    return bits


def _ratio(reference: Fraction | None, energy: Fraction) -> float | None:
    return float(reference / energy) if reference is not None and energy > 0 else None


def price(
    layers: list[dict],
    neuron_updates: float | None,
    time_steps: int,
    rules: CountingRules,
    costs: CostTable,
    memory: MemoryModel | None = None,
) -> dict:
    """Ops and energy per sample of a record's synaptic layers (their raw ``counts``, per sample, and
    declared ``weight_bits``) under ``rules`` and ``costs``, and with ``memory`` the data movement beside
    compute (module doc): the record's summary figures, recomputed the same way whenever a table asks for
    another convention, cost table or memory model. ``time_steps`` (T) sets the QNN's activation bits; the
    QNN figures are None for a non-spiking method. Ratios are exact rational arithmetic on the counts and
    costs, so equal workloads give exactly 1 (the ``ann`` baseline) and T frames exactly 1/T."""
    reference, qnn_table = reference_table(costs), load_cost_table(QNN_REFERENCE_TABLE)
    ops = [tuple(Fraction(n) for n in rules.ops(layer["counts"])) for layer in layers]
    acs = sum((layer_acs for layer_acs, _ in ops), Fraction(0))
    macs = sum((layer_macs for _, layer_macs in ops), Fraction(0))
    ann_macs = sum((Fraction(layer["counts"]["ann_macs"]) for layer in layers), Fraction(0))
    ann_outputs = sum((Fraction(layer["counts"]["ann_outputs"]) for layer in layers), Fraction(0))
    updates = Fraction(neuron_updates or 0.0)
    energy = (
        macs * Fraction(costs.e_mac_pj)
        + acs * Fraction(costs.e_ac_pj)
        + updates * Fraction(costs.e_neuron_pj)
    )
    ann_energy = ann_macs * Fraction(reference.e_mac_pj)
    bits = qnn_activation_bits(time_steps) if rules.spiking else None
    qnn_energy = ann_macs * Fraction(qnn_table.e_mac_pj) if bits else None
    result = {
        "cost_table": costs.name,
        "conventions": rules.conventions(),
        "acs": float(acs),
        "macs": float(macs),
        "ann_macs": float(ann_macs),
        "energy_uj": float(energy / 10**6),
        "ann_energy_uj": float(ann_energy / 10**6),
        "ann_reference_table": reference.name,
        "ann_snn_energy_ratio": _ratio(ann_energy, energy),
        "qnn_energy_uj": float(qnn_energy / 10**6) if bits else None,
        "qnn_reference_table": qnn_table.name if bits else None,
        "qnn_activation_bits": bits,
        "qnn_snn_energy_ratio": _ratio(qnn_energy, energy),
    }
    if memory is None:
        return result

    # A chip's per-op energies already include its memory access (memory_in_ops: the yaml says why).
    run_bits = Fraction(0) if costs.memory_in_ops else _run_bits(layers, ops, updates, rules, costs.word_bits)
    word = reference.word_bits
    ann_bits = ann_macs * 2 * word + ann_outputs * word
    energy_memory = energy + run_bits * memory.pj_per_bit
    ann_energy_memory = ann_energy + ann_bits * memory.pj_per_bit
    qnn_energy_memory = None
    if bits:
        qnn_bits = ann_macs * (qnn_table.word_bits + bits) + ann_outputs * bits
        qnn_energy_memory = qnn_energy + qnn_bits * memory.pj_per_bit
    return result | {
        "memory_model": memory.name,
        "energy_memory_uj": float(energy_memory / 10**6),
        "ann_energy_memory_uj": float(ann_energy_memory / 10**6),
        "ann_snn_energy_ratio_memory": _ratio(ann_energy_memory, energy_memory),
        "qnn_energy_memory_uj": float(qnn_energy_memory / 10**6) if bits else None,
        "qnn_snn_energy_ratio_memory": _ratio(qnn_energy_memory, energy_memory),
    }
