"""Energy pricing (bench/metrics/energy.py): compute, data movement and the ANN and QNN references, checked on
a worked example counted by hand, without torch."""

import math
import subprocess
import sys
from fractions import Fraction

import pytest
import torch
from helpers import Probe, bench, measure
from omegaconf import OmegaConf
from spikingjelly.activation_based import neuron
from torch import nn

from bench import CONFIG_DIR
from bench.config import load_config, run_id
from bench.errors import ConfigError
from bench.metrics.energy import (
    CostTable,
    cost_tables,
    load_cost_table,
    load_memory_model,
    memory_models,
    price,
)
from bench.metrics.rules import RAW_FIELDS, CountingRules
from bench.results.compare import comparisons
from bench.results.pricing import Pricing
from bench.results.publish import regenerate
from bench.results.records import write_record
from methods.base import SynapticLayer

SNN = CountingRules()
#: Horowitz ISSCC 2014: an 8 KB SRAM 64-bit access costs 10 pJ.
PJ_PER_BIT = Fraction(10, 64)
#: The cost tables' figures, as the floats they are (price() is exact on them).
MAC_FP32, AC_FP32, MAC_INT8 = Fraction(4.6), Fraction(0.9), Fraction(0.23)
MEMORY_KEYS = {
    "memory_model",
    "energy_memory_uj",
    "ann_energy_memory_uj",
    "qnn_energy_memory_uj",
    "ann_snn_energy_ratio_memory",
    "qnn_snn_energy_ratio_memory",
}


def counts(**given) -> dict:
    return {field: 0.0 for field in RAW_FIELDS} | given


def worked_example(first_input: str = "binary") -> tuple[list[dict], int]:
    """One sample through fc1 = Linear(4 -> 3, 32-bit weights) -> LIF(3) -> fc2 = Linear(3 -> 2, 1-bit
    weights) -> LIF(2) over T = 2 steps, each layer called once on [T, 1, features].

    Input spikes, steps 1 and 2: [1, 0, 1, 0], [0, 0, 1, 1] (4 spikes); hidden spikes: [1, 0, 0], [1, 1, 0]
    (3 spikes). A Linear input reaches every output, so its fan-out is the layer's output width. With
    ``first_input="analog"`` fc1 receives the direct-coded image instead (nonzero pixels, both steps).
    Returns the layers and the neuron updates (5 neurons x 2 steps)."""
    if first_input == "binary":
        fc1_input = {"effective": 4 * 3, "binary_events": 4 * 3, "binary_calls": 1}
    else:
        fc1_input = {"effective": 8 * 3, "analog_padded": 8 * 3, "analog_calls": 1}
    fc1 = counts(
        calls=1,
        rows=2,
        outputs=2 * 3,
        dense=2 * 4 * 3,  # 8 inputs x fan-out 3
        padded=2 * 4 * 3,  # 12 taps per row, 2 rows
        ann_macs=4 * 3,  # one pass
        ann_outputs=3,
        **fc1_input,
    )
    fc2 = counts(
        calls=1,
        rows=2,
        outputs=2 * 2,
        dense=2 * 3 * 2,
        padded=2 * 3 * 2,
        effective=3 * 2,  # 3 hidden spikes x fan-out 2
        binary_events=3 * 2,
        binary_calls=1,
        ann_macs=3 * 2,
        ann_outputs=2,
    )
    return [{"counts": fc1, "weight_bits": 32}, {"counts": fc2, "weight_bits": 1}], (3 + 2) * 2


def uj(pj: Fraction) -> float:
    return float(pj / 10**6)


def test_worked_example_every_access_counted_by_hand():
    layers, updates = worked_example()
    fp32, sram = load_cost_table("horowitz45_fp32"), load_memory_model("sram45")
    got = price(layers, updates, 2, SNN, fp32, sram)

    # Compute: 12 + 6 ACs (spike x fan-out), no MAC; the FP32 ANN does 12 + 6 MACs, the QNN too at int8.
    assert (got["acs"], got["macs"], got["ann_macs"]) == (18, 0, 18)
    energy, ann, qnn = 18 * AC_FP32, 18 * MAC_FP32, 18 * MAC_INT8
    assert (got["energy_uj"], got["ann_energy_uj"], got["qnn_energy_uj"]) == (uj(energy), uj(ann), uj(qnn))
    assert got["ann_snn_energy_ratio"] == float(ann / energy)
    assert got["qnn_snn_energy_ratio"] == float(qnn / energy)

    # SNN data movement, 32-bit words.
    weight_reads = 12 * 32 + 6 * 1  # one weight per AC: fc1's are 32-bit, fc2's 1-bit
    membrane = 18 * (32 + 32)  # each AC reads and writes its target's potential
    input_reads = 0  # only a MAC reads its input
    states = 10 * (32 + 32)  # 5 neurons x 2 steps: read and write the state
    snn_bits = weight_reads + membrane + input_reads + states
    assert snn_bits == 2182
    # FP32 ANN: per MAC a 32-bit weight and a 32-bit input read; each of its 3 + 2 outputs written once.
    ann_bits = 18 * (32 + 32) + 5 * 32
    # QNN at T = 2: 2-bit activations, 8-bit weights.
    assert got["qnn_activation_bits"] == 2 and got["qnn_reference_table"] == "horowitz45_int8"
    qnn_bits = 18 * (8 + 2) + 5 * 2
    assert (ann_bits, qnn_bits) == (1312, 190)

    energy_memory = energy + snn_bits * PJ_PER_BIT
    ann_memory, qnn_memory = ann + ann_bits * PJ_PER_BIT, qnn + qnn_bits * PJ_PER_BIT
    assert got["memory_model"] == "sram45"
    assert got["energy_memory_uj"] == uj(energy_memory)
    assert got["ann_energy_memory_uj"] == uj(ann_memory)
    assert got["qnn_energy_memory_uj"] == uj(qnn_memory)
    assert got["ann_snn_energy_ratio_memory"] == float(ann_memory / energy_memory)
    assert got["qnn_snn_energy_ratio_memory"] == float(qnn_memory / energy_memory)
    # In pJ: 16.2 compute + 340.9375 moved; ANN 82.8 + 205; QNN 4.14 + 29.6875.
    assert float(snn_bits * PJ_PER_BIT) == 340.9375 and float(ann_bits * PJ_PER_BIT) == 205.0

    # Without a memory model: compute only, the QNN included.
    compute = price(layers, updates, 2, SNN, fp32)
    assert not MEMORY_KEYS & set(compute) and compute == {
        k: v for k, v in got.items() if k not in MEMORY_KEYS
    }


def test_worked_example_with_analog_input_reads_each_macs_input():
    layers, updates = worked_example("analog")
    got = price(layers, updates, 2, SNN, load_cost_table("horowitz45_fp32"), load_memory_model("sram45"))
    assert (got["acs"], got["macs"]) == (6, 24)  # fc1: 8 analog inputs x 3 taps, every one a MAC
    weight_reads = 24 * 32 + 6 * 1
    membrane = (24 + 6) * (32 + 32)
    input_reads = 24 * 32
    states = 10 * (32 + 32)
    snn_bits = weight_reads + membrane + input_reads + states
    energy = 24 * MAC_FP32 + 6 * AC_FP32
    assert got["energy_memory_uj"] == uj(energy + snn_bits * PJ_PER_BIT)


def test_weights_move_at_most_at_the_tables_word_width():
    layers, updates = worked_example()
    fp16 = load_cost_table("horowitz45_fp16")
    got = price(layers, updates, 2, SNN, fp16, load_memory_model("sram45"))
    snn_bits = 12 * 16 + 6 * 1 + 18 * (16 + 16) + 10 * (16 + 16)  # fc1's 32-bit weights read as 16 bits
    energy = 18 * Fraction(fp16.e_ac_pj)
    assert got["energy_memory_uj"] == uj(energy + snn_bits * PJ_PER_BIT)
    # The ANN reference runs on the same (digital) table: 16-bit words.
    ann = 18 * Fraction(fp16.e_mac_pj) + (18 * (16 + 16) + 5 * 16) * PJ_PER_BIT
    assert got["ann_reference_table"] == "horowitz45_fp16" and got["ann_energy_memory_uj"] == uj(ann)


@pytest.mark.parametrize(
    "mode, compute, bits",
    [("folded", 8 * AC_FP32, 8 * (32 + 64)), ("effective", 4 * MAC_FP32, 4 * (32 + 64 + 32))],
)
def test_data_movement_follows_the_pooled_convention(mode, compute, bits):
    # 4 nonzero pooled inputs (2 x 2 windows) made of 8 pre-pool spikes, each input reaching 2 outputs:
    # folded, one weight read and potential update per pre-pool spike connection (8 ACs); effective, one
    # per nonzero pooled connection, each a MAC that also reads its input (4 MACs).
    layer = counts(pooled_events=4, pooled_folded=8, pooled_amplitude=2, pooled_padded=12, ann_macs=12)
    fp32, sram = load_cost_table("horowitz45_fp32"), load_memory_model("sram45")
    got = price([{"counts": layer, "weight_bits": 32}], 0, 1, CountingRules(pooled_spikes=mode), fp32, sram)
    assert got["energy_memory_uj"] == uj(compute + bits * PJ_PER_BIT)


def test_the_ann_baseline_equals_its_own_reference_with_data_movement():
    # The non-spiking method: one pass of fc1 = Linear(4 -> 3), every tap a MAC, each output written once.
    layer = counts(calls=1, rows=1, outputs=3, dense=12, padded=12, effective=12, ann_macs=12, ann_outputs=3)
    ann, fp32, sram = (
        CountingRules(spiking=False),
        load_cost_table("horowitz45_fp32"),
        load_memory_model("sram45"),
    )
    got = price([{"counts": layer, "weight_bits": 32}], None, 1, ann, fp32, sram)
    bits = 12 * (32 + 32) + 3 * 32  # per MAC a weight and an input read; 3 outputs written once
    assert got["energy_memory_uj"] == got["ann_energy_memory_uj"] == uj(12 * MAC_FP32 + bits * PJ_PER_BIT)
    assert got["ann_snn_energy_ratio"] == got["ann_snn_energy_ratio_memory"] == 1.0
    # No bit-matched QNN: a non-spiking method's activations are not spike counts.
    qnn_keys = ("qnn_energy_uj", "qnn_snn_energy_ratio", "qnn_reference_table", "qnn_activation_bits")
    assert all(got[key] is None for key in (*qnn_keys, "qnn_energy_memory_uj", "qnn_snn_energy_ratio_memory"))


@pytest.mark.parametrize("time_steps, bits", [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4)])
def test_qnn_activation_bits_are_ceil_log2_of_t_plus_1(time_steps, bits):
    assert bits == math.ceil(math.log2(time_steps + 1))
    layers, _ = worked_example()
    fp32, sram = load_cost_table("horowitz45_fp32"), load_memory_model("sram45")
    got = price(layers, 5 * time_steps, time_steps, SNN, fp32, sram)
    assert got["qnn_activation_bits"] == bits
    qnn_bits = 18 * (8 + bits) + 5 * bits
    assert got["qnn_energy_memory_uj"] == uj(18 * MAC_INT8 + qnn_bits * PJ_PER_BIT)


@pytest.mark.parametrize("name", ["loihi", "spinnaker", "spinnaker2"])
def test_neuromorphic_tables_add_no_data_movement_and_say_why(name):
    table = load_cost_table(name)
    assert not table.digital and table.memory_in_ops and table.word_bits is None
    assert (
        "memory accesses the chip makes" in table.memory_in_ops_reason
        and "count it twice" in table.memory_in_ops_reason
    )
    layers, updates = worked_example()
    got = price(layers, updates, 2, SNN, table, load_memory_model("sram45"))
    assert got["energy_memory_uj"] == got["energy_uj"] > 0
    # The references run on digital tables: they still move data.
    fp32 = price(layers, updates, 2, SNN, load_cost_table("horowitz45_fp32"), load_memory_model("sram45"))
    assert got["ann_energy_memory_uj"] == fp32["ann_energy_memory_uj"] > got["ann_energy_uj"]
    assert got["qnn_energy_memory_uj"] == fp32["qnn_energy_memory_uj"] > got["qnn_energy_uj"]


def test_every_cost_table_can_price_data_movement():
    for name in cost_tables():
        table = load_cost_table(name)
        assert table.memory_in_ops or table.word_bits in (8, 16, 32), name
        assert table.memory_in_ops == (not table.digital), name
    with pytest.raises(ConfigError, match="states neither its word width"):
        CostTable(name="bare", description="", e_mac_pj=1.0, e_ac_pj=1.0)
    with pytest.raises(ConfigError, match="but not why"):
        CostTable(name="chip", description="", e_mac_pj=1.0, e_ac_pj=1.0, memory_in_ops=True)


def unsourced(node, where: str = ""):
    """Where ``node`` holds a number that is not a ``value`` beside a nonempty ``source``."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}"
            if isinstance(value, int | float) and not isinstance(value, bool):
                if key != "value" or not str(node.get("source") or "").strip():
                    yield here
            else:
                yield from unsourced(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from unsourced(value, f"{where}[{i}]")


def test_every_number_in_a_memory_model_has_its_source():
    assert memory_models() == ["sram45"]
    for name in memory_models():
        spec = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "energy" / "memory" / f"{name}.yaml"))
        assert list(unsourced(spec)) == [], name
        assert load_memory_model(name).description
    assert list(unsourced({"access_pj": 10.0, "bits": {"value": 64, "source": " "}})) == [
        ".access_pj",
        ".bits.value",
    ]
    sram = load_memory_model("sram45")
    assert (sram.access_pj, sram.access_bits, sram.pj_per_bit) == (10.0, 64, PJ_PER_BIT)


def test_a_figure_without_its_source_is_refused(tmp_path):
    (tmp_path / "energy" / "memory").mkdir(parents=True)
    (tmp_path / "energy" / "memory" / "bare.yaml").write_text(
        "description: x\naccess_pj: 10.0\naccess_bits: 64\n"
    )
    with pytest.raises(ConfigError, match="'access_pj' must be a value with its source"):
        load_memory_model("bare", tmp_path)


def test_an_unknown_memory_model_is_a_config_error_listing_the_models():
    with pytest.raises(ConfigError, match=r"metrics.memory_model='dram'; available: sram45 "):
        load_memory_model("dram")


def test_pricing_imports_no_torch():
    # `bench tables` re-prices records with price(): it must not need torch.
    code = "import sys, bench.metrics.energy; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_memory_model_is_not_part_of_the_run_id():
    # It prices the recorded counts, like a cost table: choosing another trains nothing new, and adding it
    # to the defaults kept every run id.
    ids = {
        run_id("lif_sg", "mnist5k", load_config("lif_sg", "mnist5k", overrides, check=False))
        for overrides in ([], ["metrics.memory_model=another"])
    }
    assert len(ids) == 1


def worked_record(run_id: str = "lif_sg-mnist5k-0123456789ab") -> dict:
    """An ok record of the worked example as a run leaves it: its layers' raw counts, priced as recorded
    under horowitz45_fp32, effective pooled spikes and sram45."""
    layers, updates = worked_example()
    named = [{"name": f"fc{i}", "type": "Linear", **layer} for i, layer in enumerate(layers, 1)]
    priced_as_run = price(
        named, updates, 2, SNN, load_cost_table("horowitz45_fp32"), load_memory_model("sram45")
    )
    metrics = {"test_acc": 0.9, "time_steps": 2, "neuron_updates": updates, **priced_as_run}
    return {
        "run_id": run_id,
        "method": "lif_sg",
        "dataset": "mnist5k",
        "seed": 0,
        "status": "ok",
        "error": None,
        "config": {"seed": 0, "method": {"time_steps": 2}},
        "metrics": metrics,
        "layers": named,
    }


def test_a_record_is_priced_under_another_table_and_rule_without_training(tmp_path):
    write_record(worked_record(), tmp_path)
    (older := worked_record("lif_sg-mnist5k-000000000000"))["metrics"]["conventions"]["version"] = 2
    write_record(older, tmp_path)  # made before records kept raw counts: shown as recorded, never mixed
    as_recorded = comparisons(tmp_path, "mnist5k", sweep="runs")  # `bench run` records: asked for
    assert [c.groups[0].mean("energy_uj") for c in as_recorded] == [uj(18 * AC_FP32)] * 2
    both = comparisons(tmp_path, "mnist5k", sweep="runs", pricing=Pricing(cost_table="loihi"))
    repriced, stale = sorted(both, key=lambda c: c.groups[0].cost_table != "loihi")
    # Loihi: 18 synaptic ops and 10 neuron updates; the ANN reference stays on the FP32 digital table.
    assert repriced.groups[0].mean("energy_uj") == uj(18 * Fraction(27.1) + 10 * Fraction(81))
    assert repriced.groups[0].cost_table == "loihi" and stale.groups[0].cost_table == "horowitz45_fp32"
    assert repriced.groups[0].mean("ann_energy_uj") == uj(18 * MAC_FP32)
    # Both ends of the range ride along; the worked example reads no pooled spikes, so they are equal.
    assert repriced.groups[0].mean("energy_uj@folded") == repriced.groups[0].mean("energy_uj@effective")


def test_bench_tables_and_compare_take_a_cost_table_and_rules_and_refuse_unknown_ones(tmp_path):
    write_record(worked_record(), tmp_path / "results")
    # a `bench run` record: compared only when asked for (--sweep runs)
    compare = "compare --dataset mnist5k --sweep runs --pooled folded --cost-table loihi"
    folded = bench(*compare.split(), folder=tmp_path)
    assert folded.returncode == 0, folded.stderr
    assert "cost table loihi" in folded.stdout and "pooled_spikes=folded" in folded.stdout
    tables = bench("tables", "--pooled", "ac", folder=tmp_path)
    assert tables.returncode == 0, tables.stderr
    assert "pooled_spikes=ac" in (tmp_path / "results" / "tables" / "runs.md").read_text()
    for option, value, choices in (
        ("--pooled", "fraction", "effective, folded, ac, mac"),
        ("--cost-table", "../defaults", "horowitz45_fp16, horowitz45_fp32"),
        ("--memory-model", "dram", "sram45"),
    ):
        out = bench("compare", "--dataset", "mnist5k", option, value, folder=tmp_path)
        assert out.returncode == 1 and choices in " ".join(out.stderr.split()), out.stderr


class WorkedExampleNet(Probe):
    """The worked example as a network: fc2's weights declared 1-bit, like a binarised layer."""

    def synaptic_layers(self):
        return {"net.fc1": SynapticLayer(self.net.fc1), "net.fc2": SynapticLayer(self.net.fc2, weight_bits=1)}


def test_the_callback_counts_the_worked_example_as_the_hand_count():
    """The hand counts above are what the callback records for the network they describe: fc1's weights
    make IF neuron 0 fire at both steps (inputs 0 and 3), neuron 1 at step 2 only (input 3), neuron 2
    never, so the hidden spikes are [1, 0, 0], [1, 1, 0]."""
    fc1, fc2 = nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]))
        fc2.weight.fill_(0.5)
    lif1, lif2 = (neuron.IFNode(v_threshold=1.0, step_mode="m") for _ in range(2))
    net = WorkedExampleNet(fc1=fc1, lif1=lif1, fc2=fc2, lif2=lif2)
    spikes = torch.tensor([[[1.0, 0, 1, 0]], [[0.0, 0, 1, 1]]])  # [T = 2, one sample, 4]

    def run():
        hidden = lif1(fc1(spikes))
        assert hidden.squeeze(1).tolist() == [[1, 0, 0], [1, 1, 0]]
        return lif2(fc2(hidden))

    totals, layers = measure(net, run, samples=1, steps=2, memory_model="sram45")
    expected, updates = worked_example()
    assert [layers[name]["counts"] for name in ("net.fc1", "net.fc2")] == [e["counts"] for e in expected]
    assert totals["neuron_updates"] == updates
    assert totals["energy_memory_uj"] == uj(18 * AC_FP32 + 2182 * PJ_PER_BIT)  # 16.2 + 340.9375 pJ
    assert totals["ann_energy_memory_uj"] == uj(18 * MAC_FP32 + 1312 * PJ_PER_BIT)


def test_the_answer_shows_each_t_as_a_range_from_folded_to_effective_with_both_references(tmp_path):
    """A matched-track record whose one layer reads 2x2 average-pooled spikes, a million times over: 4e6
    nonzero pooled inputs made of 8e6 pre-pool spikes, each reaching one output. Folded: 8e6 ACs = 7.2 µJ;
    effective: 4e6 MACs = 18.4 µJ; the FP32 ANN's 12e6 MACs = 55.2 µJ; the QNN's (T = 2) 2.76 µJ."""
    pooled = counts(
        calls=1,
        rows=2,
        outputs=2e6,
        pooled_calls=1,
        pooled_events=4e6,
        pooled_folded=8e6,
        pooled_amplitude=2e6,
    )
    pooled |= {"dense": 12e6, "padded": 12e6, "effective": 4e6, "pooled_padded": 12e6, "ann_macs": 12e6}
    layers = [{"name": "fc", "type": "Linear", "counts": pooled | {"ann_outputs": 1e6}, "weight_bits": 32}]
    record = worked_record()
    record |= {"layers": layers, "sweep": "m", "track": "matched", "sweep_description": "d"}
    record["metrics"] |= price(
        layers, 0, 2, SNN, load_cost_table("horowitz45_fp32"), load_memory_model("sram45")
    )
    write_record(record, tmp_path)
    regenerate(tmp_path)
    answer = (tmp_path / "README.md").read_text().split("## Matched track")[0]
    assert "| 2 | lif_sg (most accurate) | 7.200 – 18.400 |" in answer
    # ANN/SNN, compute: 55.2 / 7.2 and 55.2 / 18.4; QNN/SNN: 2.76 / 7.2 and 2.76 / 18.4
    assert "| 7.67 – 3.00 |" in answer and "| 0.38 – 0.15 |" in answer
    assert "*Folded*: binary spikes on an event-driven chip" in answer and "memory model sram45" in answer
    assert "ANN reference priced on horowitz45_fp32, QNN reference on horowitz45_int8" in answer
