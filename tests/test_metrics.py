"""The metrics callback's numbers, checked against hand counts and spikingjelly's op_counter."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import estimate_simple_energy
from torch import nn

from bench.config import load_config
from bench.errors import ConfigError
from bench.metrics import EnergyMetrics, MetricsError, load_cost_table
from bench.runner import build
from methods.base import BenchMethod, SynapticLayer


class Probe(nn.Module):
    """Any network, with the base method's layer declarations, so the callback can be used on it alone."""

    synaptic_layers = BenchMethod.synaptic_layers
    spiking_layers = BenchMethod.spiking_layers

    def __init__(self, **modules):
        super().__init__()
        self.net = Layers(modules)


class Layers(nn.ModuleDict):
    """Holds the probe's layers; calling it with a time-first tensor tells the callback T."""

    def forward(self, x_seq):
        return x_seq


def measure(probe: nn.Module, run, samples: int = 1, steps: int = 1, **options) -> tuple[dict, dict]:
    """Attach the callback, ``run()`` the layers, return (totals, per-layer entries by name).

    A bare probe's ``net`` is told the number of time steps ``steps``; a method's forward tells it.
    """
    callback = EnergyMetrics(**options)
    callback.attach(probe)
    with torch.no_grad():
        if isinstance(probe, Probe):
            probe.net(torch.zeros(steps, 1))
        run()
    callback.flush(samples)
    callback.detach()
    totals = callback.summarize(probe)
    return totals, {entry["name"]: entry for entry in callback.layers}


def hand_network() -> Probe:
    return Probe(
        strided=layer.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, step_mode="m"),
        grouped=nn.Conv2d(4, 4, 3, padding=1, groups=2),
        linear=nn.Linear(6, 3),
        spiking=neuron.IFNode(v_threshold=1.0, step_mode="m"),
    )


def hand_inputs():
    # Strided conv input, [T=2, B=1, C=2, 5, 5], binary. Per row/column, an input reaches
    # [1, 2, 1, 2, 1] output positions (k=3, stride 2, padding 1 -> 3 outputs), times 4 out channels.
    spikes = torch.zeros(2, 1, 2, 5, 5)
    for t, c, h, w in [(0, 0, 0, 0), (0, 0, 1, 1), (0, 0, 4, 4), (0, 1, 1, 3), (0, 1, 2, 2), (1, 0, 2, 2)]:
        spikes[t, 0, c, h, w] = 1.0
    # Grouped conv input, [1, 4, 3, 3], graded spikes (amplitudes 2, 3, 1). Per row/column an input
    # reaches [2, 3, 2] outputs (k=3, padding 1), times 4/2 = 2 out channels of its group.
    graded = torch.zeros(1, 4, 3, 3)
    graded[0, 0, 0, 0], graded[0, 2, 1, 1], graded[0, 3, 2, 1] = 2.0, 3.0, 1.0
    # Linear input, [2, 6], analog with 4 nonzeros (one negative).
    analog = torch.tensor([[0.5, 0.0, -1.2, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.3, 0.0, 0.0]])
    # IF neuron input [T=3, 1, 4]: 0.6/step fires once (t=2), 1.2 and 2.5 fire every step, 0 never.
    currents = torch.tensor([0.6, 1.2, 0.0, 2.5]).expand(3, 1, 4)
    return spikes, graded, analog, currents


def run_hand_network(probe: Probe) -> None:
    spikes, graded, analog, currents = hand_inputs()
    probe.net.strided(spikes)
    probe.net.grouped(graded)
    probe.net.linear(analog)
    probe.net.spiking(currents)


def test_hand_built_network_gets_the_hand_counted_ops():
    probe = hand_network()
    totals, layers = measure(probe, lambda: run_hand_network(probe), steps=3)
    strided, grouped, linear, spiking = (
        layers[f"net.{k}"] for k in ("strided", "grouped", "linear", "spiking")
    )

    # strided: t=0 spikes at fan-outs 1*1 + 2*2 + 1*1 + 2*2 + 1*1 = 11, t=1 one at 1*1; x 4 channels.
    assert strided["input"] == "spikes"
    assert strided["effective_ops"] == 4 * (11 + 1) == 48
    assert strided["acs"] == 48 and strided["macs"] == 0
    # dense: 2 steps x 2 channels x (sum of fan-outs (1+2+1+2+1)^2 = 49) x 4 channels
    assert strided["dense_ops"] == 2 * 2 * 49 * 4 == 784
    # grouped: events at fan-outs 2*2, 3*3, 2*3 -> 19 x 2 channels; amplitude-weighted 2*4 + 3*9 + 1*6.
    assert grouped["input"] == "graded spikes"
    assert grouped["effective_ops"] == 2 * 19 == 38
    assert grouped["acs"] == 2 * 41 == 82
    assert grouped["dense_ops"] == 4 * (2 + 3 + 2) ** 2 * 2 == 392
    # linear: analog -> MACs over all inputs (dense); 4 nonzero inputs x 3 outputs are effective.
    assert linear["input"] == "analog"
    assert linear["effective_ops"] == 12 and linear["dense_ops"] == 36
    assert linear["macs"] == 36 and linear["acs"] == 0
    # spiking: 12 neuron updates, 1 + 3 + 0 + 3 = 7 spikes.
    assert spiking["neuron_updates"] == 12 and spiking["spikes"] == 7
    assert spiking["firing_rate"] == pytest.approx(7 / 12)
    assert spiking["activation_sparsity"] == pytest.approx(5 / 12)

    assert totals["acs"] == 48 + 82 and totals["macs"] == 36
    assert totals["energy_uj"] == pytest.approx((130 * 0.9 + 36 * 4.6) / 1e6)
    # equivalent ANN: the dense ops of one of the T = 3 steps, all at 4.6 pJ
    assert totals["time_steps"] == 3
    assert totals["ann_energy_uj"] == pytest.approx((784 + 392 + 36) / 3 * 4.6 / 1e6)


def test_graded_spikes_unit_option_counts_one_ac_per_event():
    probe = hand_network()
    _, layers = measure(probe, lambda: run_hand_network(probe), graded_spikes="unit")
    assert layers["net.grouped"]["acs"] == 38


def test_storage_from_declared_bit_widths():
    class Binarised(Probe):
        def synaptic_layers(self):
            layers = BenchMethod.synaptic_layers(self)
            conv = layers["net.grouped"].module
            layers["net.grouped"] = SynapticLayer(conv, weight_bits=1, scale_params=conv.out_channels)
            return layers

    probe = Binarised(**dict(hand_network().net.items()))
    totals, layers = measure(probe, lambda: run_hand_network(probe))
    # strided 4*2*9 = 72 weights, no bias; grouped 4*2*9 = 72 weights at 1 bit + 4 biases + 4 scales;
    # linear 18 weights + 3 biases.
    assert layers["net.strided"]["storage_bits"] == 72 * 32
    assert layers["net.grouped"]["storage_bits"] == 72 + 32 * 8
    assert layers["net.linear"]["storage_bits"] == 21 * 32
    fp32 = 32 * (72 + 76 + 21)
    assert totals["storage_kib"] == pytest.approx((72 * 32 + 72 + 256 + 21 * 32) / 8 / 1024)
    assert totals["storage_fp32_ratio"] == pytest.approx((72 * 32 + 72 + 256 + 21 * 32) / fp32)


def spikingjelly_net(pool: bool) -> Probe:
    torch.manual_seed(0)
    second = [layer.AvgPool2d(2, step_mode="m")] if pool else []
    return Probe(
        seq=nn.Sequential(
            layer.Conv2d(1, 4, 3, padding=0, bias=False, step_mode="m"),  # analog input: MACs
            neuron.LIFNode(step_mode="m"),
            *second,
            layer.Conv2d(
                4, 8, 3, padding=0 if pool else 1, stride=1 if pool else 2, bias=False, step_mode="m"
            ),
            neuron.LIFNode(step_mode="m"),
            layer.Flatten(step_mode="m"),
            layer.Linear(8 if pool else 8 * 3 * 3, 5, bias=False, step_mode="m"),
        )
    )


def compare_with_op_counter(pool: bool, **options):
    probe = spikingjelly_net(pool)
    x = torch.rand(2, 3, 1, 8, 8) * 4  # [T=2, B=3, 1, 8, 8]
    with torch.no_grad():
        reference = estimate_simple_energy(probe.net.seq, x).counts
    functional.reset_net(probe)
    totals, _ = measure(probe, lambda: probe.net.seq(x), samples=1, **options)
    return totals, reference


def test_macs_and_acs_equal_spikingjelly_op_counter_without_pooling():
    totals, reference = compare_with_op_counter(pool=False)
    assert totals["macs"] == reference["mac"] == 2 * 3 * 4 * 36 * 9
    # op_counter's `ac` also holds the neurons' element-wise adds; its spike-driven part is `synop`.
    assert totals["acs"] == reference["synop"] > 0


def test_average_pooled_spikes_papers_convention_vs_op_counter():
    papers, reference = compare_with_op_counter(pool=True)  # default pooled_spikes="ac"
    as_macs, _ = compare_with_op_counter(pool=True, pooled_spikes="mac")
    conv1_macs = 2 * 3 * 4 * 36 * 9
    # op_counter: the conv after the pooling sees fractions, so all of it is MACs (dense).
    conv2_dense = 2 * 3 * 4 * 9 * 8
    assert reference["mac"] == conv1_macs + conv2_dense
    assert as_macs["macs"] == reference["mac"]
    # papers' convention: the pooled fractions are spikes scaled by 1/4: ACs = sum(value x fan-out).
    assert papers["macs"] == conv1_macs
    assert papers["acs"] > as_macs["acs"]
    assert papers["acs"] - as_macs["acs"] < conv2_dense  # at most every input fired


def test_ann_energy_equals_its_equivalent_ann_energy():
    cfg = load_config("ann", "mnist5k")
    _, model = build(cfg, "ann", "mnist5k")
    model.eval()
    x = torch.randn(4, 1, 28, 28)
    totals, _ = measure(model, lambda: model(x), samples=4)
    assert totals["acs"] == 0 and totals["time_steps"] == 1
    assert totals["energy_uj"] == pytest.approx(totals["ann_energy_uj"], rel=1e-12)
    assert totals["ann_snn_energy_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert totals["firing_rate"] is None  # no spiking layer: not applicable, not zero


def test_lif_sg_first_layer_is_mac_and_the_rest_ac():
    cfg = load_config("lif_sg", "mnist5k", ["method.time_steps=2"])
    _, model = build(cfg, "lif_sg", "mnist5k")
    model.eval()
    x = torch.randn(4, 1, 28, 28) * 3
    totals, layers = measure(model, lambda: model(x), samples=4)
    conv1 = layers["net.0"]
    assert conv1["input"] == "analog" and conv1["acs"] == 0
    assert conv1["macs"] == 2 * conv1["dense_ops"] / 2  # T=2 steps of dense MACs, per sample
    assert all(layers[n]["input"] == "spikes" for n in ("net.4", "net.9", "net.11"))
    assert totals["time_steps"] == 2
    assert totals["ann_energy_uj"] == pytest.approx(totals["dense_ops"] / 2 * 4.6 / 1e6)


def test_an_uncountable_layer_is_an_error_naming_it():
    probe = hand_network()
    spikes, *_ = hand_inputs()
    with pytest.raises(MetricsError, match="'net.grouped' was never called"):
        measure(probe, lambda: probe.net.strided(spikes))
    with pytest.raises(MetricsError, match="'net.bad'.*Conv3d"):

        class Bad(Probe):
            def synaptic_layers(self):
                return {"net.bad": SynapticLayer(nn.Conv3d(1, 1, 1))}

        EnergyMetrics().attach(Bad(x=nn.Linear(1, 1)))


def test_cost_tables_and_unknown_names():
    assert load_cost_table("horowitz45_fp32").e_mac_pj == 4.6
    assert load_cost_table("horowitz45_int8").e_ac_pj == 0.03
    loihi = load_cost_table("loihi")
    assert (loihi.e_ac_pj, loihi.e_neuron_pj) == (27.1, 81.0)
    with pytest.raises(ConfigError, match="horowitz45_fp16"):
        EnergyMetrics(cost_table="horowitz")
