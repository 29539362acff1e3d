"""The metrics callback's numbers on hand-counted networks; its rules; its config checks.

The peers (NeuroBench, spikingjelly's op_counter) are the oracles in ``test_metrics_oracles.py``.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from helpers import QUICK, Probe, measure
from spikingjelly.activation_based import layer, neuron
from torch import nn

from bench.config import load_config
from bench.errors import ConfigError
from bench.metrics import COUNTING_VERSION, EnergyMetrics, MetricsError, load_cost_table
from bench.metrics.counting import RecentTensors
from bench.runner import build, run
from methods.base import BenchMethod, SynapticLayer


class NonSpikingProbe(Probe):
    spiking = False


def hand_network(probe_class: type[Probe] = Probe) -> Probe:
    return probe_class(
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


# Padded dense MACs of one image/vector: strided 3x3 outputs x (4 out x 2 in x 9 taps) = 648; grouped
# 3x3 outputs x (4 out x 4/2 in x 9) = 648; linear 6 x 3 = 18.
STRIDED_TAPS, GROUPED_TAPS, LINEAR_TAPS = 9 * 4 * 2 * 9, 9 * 4 * 2 * 9, 18


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
    # dense (border-aware): 2 steps x 2 channels x (sum of fan-outs (1+2+1+2+1)^2 = 49) x 4 channels;
    # padded dense: 2 images x 648 taps, of which 784 reach a real input.
    assert strided["dense_ops"] == 2 * 2 * 49 * 4 == 784
    assert strided["padded_dense_ops"] == 2 * STRIDED_TAPS == 1296
    # grouped: events at fan-outs 2*2, 3*3, 2*3 -> 19 x 2 channels; amplitude-weighted 2*4 + 3*9 + 1*6.
    assert grouped["input"] == "graded spikes"
    assert grouped["effective_ops"] == 2 * 19 == 38
    assert grouped["acs"] == 2 * 41 == 82
    assert grouped["dense_ops"] == 4 * (2 + 3 + 2) ** 2 * 2 == 392
    # linear: analog -> MACs over every input, zeros included; 4 nonzero inputs x 3 outputs effective.
    assert linear["input"] == "analog"
    assert linear["effective_ops"] == 12 and linear["dense_ops"] == linear["padded_dense_ops"] == 36
    assert linear["macs"] == 36 and linear["acs"] == 0
    # spiking: 12 neuron updates, 1 + 3 + 0 + 3 = 7 spikes.
    assert spiking["neuron_updates"] == 12 and spiking["spikes"] == 7
    assert spiking["firing_rate"] == pytest.approx(7 / 12)
    assert spiking["activation_sparsity"] == pytest.approx(5 / 12)

    assert totals["acs"] == 48 + 82 and totals["macs"] == 36
    assert totals["energy_uj"] == pytest.approx((130 * 0.9 + 36 * 4.6) / 1e6)
    # the ANN reference: one pass of every layer, padding taps included, at 4.6 pJ
    assert totals["ann_macs"] == STRIDED_TAPS + GROUPED_TAPS + LINEAR_TAPS == 1314
    assert totals["ann_energy_uj"] == pytest.approx(1314 * 4.6 / 1e6)
    assert totals["ann_reference_table"] == "horowitz45_fp32" and totals["time_steps"] == 3
    assert totals["conventions"] == {
        "version": COUNTING_VERSION,
        "spiking": True,
        "graded_spikes": "amplitude",
        "pooled_spikes": "effective",
    }


def test_a_non_spiking_method_pays_dense_macs_on_every_input_zeros_and_padding_included():
    probe = hand_network(NonSpikingProbe)
    totals, layers = measure(probe, lambda: run_hand_network(probe))
    # the same spikes, graded spikes and analog values: all MACs over every tap, none ACs
    assert layers["net.strided"]["macs"] == 2 * STRIDED_TAPS
    assert layers["net.grouped"]["macs"] == GROUPED_TAPS
    assert layers["net.linear"]["macs"] == 2 * LINEAR_TAPS
    assert {layers[n]["input"] for n in ("net.strided", "net.grouped", "net.linear")} == {
        "dense (non-spiking method)"
    }
    assert totals["acs"] == 0 and totals["conventions"]["spiking"] is False
    # effective and dense ops stay NeuroBench's whatever the method
    assert layers["net.strided"]["effective_ops"] == 48 and layers["net.strided"]["dense_ops"] == 784

    silent = NonSpikingProbe(conv=nn.Conv2d(1, 2, 3, padding=1))
    _, layers = measure(silent, lambda: silent.net.conv(torch.zeros(1, 1, 4, 4)))
    assert layers["net.conv"]["macs"] == 16 * 2 * 9  # an all-zero input costs every multiply
    assert layers["net.conv"]["effective_ops"] == 0


def pooled_probe() -> tuple[Probe, torch.Tensor]:
    """Spikes -> AvgPool2d(2) -> the same pooled map into two linear layers."""
    probe = Probe(pool=nn.AvgPool2d(2), first=nn.Linear(4, 3, bias=False), second=nn.Linear(4, 5, bias=False))
    spikes = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 1]]).view(1, 1, 4, 4)
    return probe, spikes  # pooled: [[0.25, 0], [0.75, 1.0]]


def run_pooled(probe, spikes):
    pooled = probe.net.pool(spikes).flatten(1)  # a view: same storage as the pool's output
    probe.net.first(pooled)
    probe.net.second(pooled)


@pytest.mark.parametrize(
    "mode, first, second",
    [
        # effective (default): 3 nonzero pooled inputs x fan-out, priced as MACs
        ("effective", {"macs": 3 * 3, "acs": 0}, {"macs": 3 * 5, "acs": 0}),
        # ac: the papers' value x fan-out, (0.25 + 0.75 + 1) x fan-out, as ACs
        ("ac", {"macs": 0, "acs": 2 * 3}, {"macs": 0, "acs": 2 * 5}),
        # folded: the 1 + 3 + 4 pre-pool spikes x fan-out, as ACs
        ("folded", {"macs": 0, "acs": 8 * 3}, {"macs": 0, "acs": 8 * 5}),
        # mac: op_counter's dense MACs over every input
        ("mac", {"macs": 4 * 3, "acs": 0}, {"macs": 4 * 5, "acs": 0}),
    ],
)
def test_pooled_spike_rules_count_one_tensor_the_same_way_in_every_consumer(mode, first, second):
    probe, spikes = pooled_probe()
    _, layers = measure(probe, lambda: run_pooled(probe, spikes), pooled_spikes=mode)
    for name, expected in (("net.first", first), ("net.second", second)):
        assert layers[name]["input"] == "pooled spikes"
        assert {k: layers[name][k] for k in ("macs", "acs")} == expected


def folded_probe() -> tuple[Probe, torch.Tensor]:
    """Binary spikes [1, 1, 6, 6] -> non-overlapping 2x2 AvgPool2d -> Conv2d(1, 2, 2), no padding."""
    spikes = torch.zeros(1, 1, 6, 6)
    # spikes per 2x2 block: [[1, 0, 2], [0, 4, 0], [3, 0, 1]]
    for h, w in [(0, 0), (0, 4), (1, 5), (2, 2), (2, 3), (3, 2), (3, 3), (4, 0), (4, 1), (5, 0), (5, 5)]:
        spikes[0, 0, h, w] = 1.0
    probe = Probe(pool=nn.AvgPool2d(2), conv=nn.Conv2d(1, 2, 2, bias=False))
    return probe, spikes  # pooled: [[0.25, 0, 0.5], [0, 1, 0], [0.75, 0, 0.25]]


def test_folded_pooled_spikes_by_hand():
    """The raw counts of a pooled layer, each by hand. On the 3x3 pooled map a 2x2 kernel (no padding)
    reaches [[1, 2, 1], [2, 4, 2], [1, 2, 1]] outputs from each position, x 2 output channels."""
    probe, spikes = folded_probe()
    _, layers = measure(probe, lambda: probe.net.conv(probe.net.pool(spikes)))
    conv = layers["net.conv"]
    counts = conv["counts"]
    assert conv["input"] == "pooled spikes"
    # the nonzero pooled inputs, at fan-outs 1 (0.25), 1 (0.5), 4 (1.0), 1 (0.75), 1 (0.25)
    assert counts["pooled_events"] == counts["effective"] == 2 * (1 + 1 + 4 + 1 + 1) == 16
    assert counts["pooled_amplitude"] == 2 * (0.25 + 0.5 + 4 * 1.0 + 0.75 + 0.25) == 11.5
    # every pre-pool spike reaches its pooled position's connections: 1 + 2 + 4 x 4 + 3 + 1 spike-fan-outs
    assert counts["pooled_folded"] == 2 * (1 + 2 + 4 * 4 + 3 + 1) == 46
    assert counts["pooled_folded"] == 4 * counts["pooled_amplitude"]  # a 2x2 pool: exactly A = 4 times
    assert counts["pooled_amplitude"] <= counts["pooled_events"] <= counts["pooled_folded"]
    # every input x its fan-out (16 x 2); every tap of the 2x2 outputs: 4 x 2 channels x 4 taps
    assert counts["dense"] == 32 and counts["padded"] == counts["pooled_padded"] == 32
    assert counts["pooled_calls"] == counts["calls"] == counts["rows"] == 1 and counts["outputs"] == 8
    assert counts["binary_events"] == counts["analog_padded"] == counts["analog_calls"] == 0
    assert counts["ann_macs"] == 32 and counts["ann_outputs"] == 8
    for mode, expected in {"effective": (0, 16), "folded": (46, 0), "ac": (11.5, 0), "mac": (0, 32)}.items():
        _, layers = measure(probe, lambda: probe.net.conv(probe.net.pool(spikes)), pooled_spikes=mode)
        assert (layers["net.conv"]["acs"], layers["net.conv"]["macs"]) == expected, mode


def test_a_global_mean_and_stacked_pools_average_their_whole_window():
    """``x.mean((2, 3))`` over a 4x4 spike map is a global average pool (A = 16), and so is a 2x2 pool of a
    2x2 pool: each value x 16 is a spike count, which ``folded`` charges."""
    spikes = torch.zeros(1, 2, 4, 4)
    spikes[0, 0, :3, 0] = 1.0  # 3 spikes in channel 0, 8 in channel 1
    spikes[0, 1, :2] = 1.0
    probe = Probe(pool=nn.AvgPool2d(2), linear=nn.Linear(2, 3, bias=False))
    for pooled in (
        lambda: spikes.mean((2, 3)),
        lambda: torch.mean(spikes, dim=(-1, -2)),
        lambda: probe.net.pool(probe.net.pool(spikes)).flatten(1),
        lambda: nn.functional.adaptive_avg_pool2d(spikes, 1).flatten(1),
    ):
        _, layers = measure(probe, lambda p=pooled: probe.net.linear(p()), pooled_spikes="folded")
        linear = layers["net.linear"]
        assert linear["input"] == "pooled spikes"
        assert linear["counts"]["pooled_amplitude"] == (3 / 16 + 8 / 16) * 3
        assert linear["acs"] == linear["counts"]["pooled_folded"] == (3 + 8) * 3


def test_pooled_analog_values_are_not_pooled_spikes():
    probe, spikes = pooled_probe()
    _, layers = measure(probe, lambda: run_pooled(probe, spikes * 0.3))
    assert layers["net.first"]["input"] == "analog" and layers["net.first"]["macs"] == 12


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


def built_model(method: str, dataset: str, *overrides: str):
    cfg = load_config(method, dataset, list(overrides))
    torch.manual_seed(0)
    _, model = build(cfg, method, dataset)
    return model.eval(), cfg


def test_ann_energy_is_exactly_its_reference_on_static_and_on_event_data():
    model, _ = built_model("ann", "mnist5k")
    totals, _ = measure(model, lambda: model(torch.randn(4, 1, 28, 28)), samples=4)
    assert totals["acs"] == 0 and totals["time_steps"] == 1
    assert totals["macs"] == totals["padded_dense_ops"] == totals["ann_macs"]
    assert totals["ann_snn_energy_ratio"] == 1.0
    assert totals["firing_rate"] is None  # no spiking layer: not applicable, not zero

    # Event data: one pass over the 6 frames stacked as 12 input channels, not one pass per frame.
    model, _ = built_model("ann", "nmnist_sim")
    frames = torch.randint(0, 3, (4, 6, 2, 34, 34)).float()  # event counts: integers, as graded spikes
    totals, layers = measure(model, lambda: model(frames), samples=4)
    assert totals["time_steps"] == 1 and totals["acs"] == 0
    assert totals["macs"] == totals["ann_macs"]
    assert totals["ann_snn_energy_ratio"] == 1.0
    assert layers["net.0"]["macs"] == 34 * 34 * 16 * 12 * 9  # 16 channels out, 12 in, 3x3 taps, padded
    stacked = frames.flatten(1, 2)
    torch.testing.assert_close(model(frames), model.readout(model.net(stacked.unsqueeze(0))))


def test_lif_sg_first_layer_is_padded_macs_and_the_rest_acs():
    model, _ = built_model("lif_sg", "mnist5k", "method.time_steps=2")
    x = torch.randn(4, 1, 28, 28) * 3
    totals, layers = measure(model, lambda: model(x), samples=4)
    conv1 = layers["net.0"]
    # 28x28 outputs x 32 channels x 9 taps, at each of T = 2 steps
    assert conv1["input"] == "analog" and conv1["acs"] == 0
    assert conv1["macs"] == conv1["padded_dense_ops"] == 2 * 28 * 28 * 32 * 9
    assert conv1["ann_macs"] == 28 * 28 * 32 * 9
    assert all(layers[n]["input"] == "spikes" for n in ("net.4", "net.9", "net.11"))
    assert totals["time_steps"] == 2
    assert totals["ann_macs"] == totals["padded_dense_ops"] / 2


@pytest.mark.parametrize(
    "table, reference, e_mac",
    [("loihi", "horowitz45_fp32", 4.6), ("horowitz45_int8", "horowitz45_int8", 0.23)],
)
def test_the_ann_reference_is_priced_on_a_digital_table(table, reference, e_mac):
    model, cfg = built_model("lif_sg", "mnist5k", "method.time_steps=2", f"metrics.cost_table={table}")
    assert cfg.metrics.cost_table == table
    totals, _ = measure(model, lambda: model(torch.randn(2, 1, 28, 28)), samples=2, cost_table=table)
    assert totals["cost_table"] == table and totals["ann_reference_table"] == reference
    assert totals["ann_energy_uj"] == pytest.approx(totals["ann_macs"] * e_mac / 1e6)


def test_an_uncountable_layer_is_an_error_naming_it():
    probe = hand_network()
    spikes, *_ = hand_inputs()
    with pytest.raises(MetricsError, match="'net.grouped' was never called"):
        measure(probe, lambda: probe.net.strided(spikes))
    with pytest.raises(MetricsError, match="'net.bad'.*Bilinear"):

        class Bad(Probe):
            def synaptic_layers(self):
                return {"net.bad": SynapticLayer(nn.Bilinear(1, 1, 1))}

        EnergyMetrics().attach(Bad(x=nn.Linear(1, 1)))


def test_hooks_are_removed_when_the_test_loop_raises():
    probe = hand_network()
    callback = EnergyMetrics()
    callback.attach(probe)
    assert probe.net.strided._forward_hooks
    callback.on_exception(None, probe, RuntimeError("the test loop failed"))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in probe.modules())


def test_a_forward_pass_that_raises_leaves_no_pool_window_mode_behind():
    probe = hand_network()
    callback = EnergyMetrics()
    callback.attach(probe)

    def fail():
        assert torch._C._len_torch_function_stack() == 1  # the mode is on during the forward pass
        raise RuntimeError("the forward pass failed")

    with pytest.raises(RuntimeError, match="the forward pass failed"):
        probe(fail)
    assert torch._C._len_torch_function_stack() == 0
    callback.detach()


def test_what_the_callback_remembers_of_a_spike_tensor_does_not_keep_it_alive():
    # The activation hook's reading of a neuron's spikes is reused by the pool after it (a view of them);
    # once the network drops the spikes, they are freed in the forward pass as without the callback.
    remembered = RecentTensors(hold=False)
    spikes = torch.ones(4, 8)
    remembered.put(spikes, "moments")
    assert remembered.get(spikes.flatten()) == "moments"
    alive = weakref.ref(spikes)
    del spikes
    gc.collect()
    assert alive() is None and remembered.get(torch.ones(32)) is None


def test_cost_tables_and_unknown_names():
    assert load_cost_table("horowitz45_fp32").e_mac_pj == 4.6
    assert load_cost_table("horowitz45_int8").e_ac_pj == 0.03
    loihi = load_cost_table("loihi")
    assert (loihi.e_ac_pj, loihi.e_neuron_pj, loihi.digital) == (27.1, 81.0, False)
    with pytest.raises(ConfigError, match="horowitz45_fp16"):
        EnergyMetrics(cost_table="horowitz")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "metrics.cost_table=horowitz46",
            "available: horowitz45_fp16, horowitz45_fp32, horowitz45_int8, loihi",
        ),
        ("metrics.graded_spikes=weighted", "use one of amplitude, unit"),
        ("metrics.pooled_spikes=fractional", "use one of effective, folded, ac, mac"),
        ("metrics.latency_samples=-5", "metrics.latency_samples=-5 must be an integer >= 0"),
        ("metrics.throughput_batches=1.5", "wrong type"),
    ],
)
def test_bad_metrics_values_are_config_errors_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("lif_sg", "mnist5k", [override])


def small_lif_sg():
    return build(load_config("lif_sg", "mnist5k", ["method.layers=8FC"]), "lif_sg", "mnist5k")[1]


@pytest.mark.parametrize(
    "layer, message",
    [
        (nn.LSTM(2, 3), r"'net\.extra' \(LSTM\): it holds a weight of shape \(12, 2\)"),
        (nn.Bilinear(2, 2, 3), r"'net\.extra' \(Bilinear\): it holds a weight of shape \(3, 2, 2\)"),
    ],
)
def test_a_weighted_layer_the_counters_leave_out_is_refused(layer, message):
    """Every weight matrix or kernel is counted or refused: a layer the counters cannot count (a
    ConvTranspose2d or Conv3d was one, before they were counted) would be left out of every op count, its
    energy silently missing."""
    model = small_lif_sg()
    EnergyMetrics.check_countable(model)  # the method as built: every weight is counted
    model.net.extra = layer
    with pytest.raises(MetricsError, match=message):
        EnergyMetrics.check_countable(model)
    model.synaptic_layers = lambda: {"net.extra": SynapticLayer(layer)}  # declared, but not countable
    with pytest.raises(MetricsError, match="'net.extra'"):
        EnergyMetrics.check_countable(model)


def test_a_network_whose_ops_cannot_all_be_counted_never_trains_and_leaves_no_record(workdir, monkeypatch):
    from methods.lif_sg import LIFSurrogateGradient

    monkeypatch.setattr(LIFSurrogateGradient, "synaptic_layers", lambda self: {})
    with pytest.raises(MetricsError, match=r"layer 'net\.\d+' \(Linear\)"):
        run("lif_sg", "mnist5k", ["method.layers=8FC", *QUICK])
    assert not (workdir / "results" / "runs").exists() or not any((workdir / "results" / "runs").iterdir())
