"""The metrics callback against its peers as oracles: NeuroBench 2.3 and spikingjelly's op_counter.

A zoo of hand-built networks (padded, strided, grouped and dilated Conv2d; Conv1d; Conv3d; Linear, also
over tokens; LIF -> AvgPool -> conv, also with the pool written as ``F.avg_pool2d``; a channel chunk, a
``cat`` and copies of a pooled map; max pooling; graded spikes into a linear layer; ternary spikes into a
conv, also average-pooled first; a direct-encoded analog first layer with BN; a layer that never fires)
and every registered method's network on a real batch of mnist5k and nmnist_sim, per layer and in total:

* ``dense_ops`` == NeuroBench Dense; ``effective_ops`` == Effective_MACs + Effective_ACs;
  ``activation_sparsity`` == NeuroBench ActivationSparsity;
* spikes (binary or signed): ACs == NeuroBench's Effective_ACs, no MACs; default pooled rule: a pooled
  layer's MACs == NeuroBench's Effective_MACs for it;
* ``pooled_spikes=mac``: MACs == op_counter's convolution/matmul MACs (padding taps included), ACs on binary
  spikes == op_counter's synops; on graded and signed spikes (which op_counter prices as MACs) our padded
  dense ops == its MACs;
* every oracle counted something where the network has such ops, so an oracle that silently counts
  nothing fails the test (op_counter under ``torch.inference_mode`` does, for one).

NeuroBench 2.3 does not count transposed convolutions (they are not among its supported layers, so it
never hooks them): a ConvTranspose2d is checked against op_counter and against NeuroBench's definition
applied by brute force.

Everything runs in float64 so that NeuroBench's sums of its binarised layer copies are exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import Probe
from neurobench.metrics.utils.layers import single_layer_MACs
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import TorchModel
from omegaconf import OmegaConf
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.neuron import BaseNode
from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter
from torch import nn

from bench import registry
from bench.config import load_config
from bench.metrics import EnergyMetrics
from bench.sweep.spec import load_sweep
from datamodules import nmnist_sim
from datamodules.mnist5k import MNIST5k, load_mnist5k
from methods.common.neurons import MultiThresholdLIF

aten = torch.ops.aten
SYNAPTIC_OPS = (aten.convolution.default, aten.mm.default, aten.addmm.default, aten.bmm.default)


@dataclass
class Peers:
    """What the oracles counted, per sample, by our layer names."""

    dense: dict[str, float]
    effective_macs: dict[str, float]
    effective_acs: dict[str, float]
    totals: dict  # NeuroBench SynapticOperations
    sparsity: dict[str, float]  # NeuroBench ActivationSparsity per activation layer
    total_sparsity: float
    op_macs: dict[str, float]  # op_counter, convolution / matmul MACs (BatchNorm left out)
    op_synops: dict[str, float]


def count_with_peers(model: nn.Module, run: Callable[[], object], samples: int) -> tuple[dict, dict, Peers]:
    """Our counts (the configured defaults, and ``pooled_spikes=mac``) and the peers', for one deterministic
    input."""
    ours = {}
    defaults = load_config("lif_sg", "mnist5k").metrics  # what a run uses unless told otherwise
    for mode in ("default", "mac"):
        options = {**defaults, "latency_samples": 0, "throughput_batches": 0}
        callback = EnergyMetrics(**{**options, **({"pooled_spikes": mode} if mode == "mac" else {})})
        callback.attach(model)
        bench_model = None
        if mode == "default":  # NeuroBench's hooks watch the same forward pass
            bench_model = TorchModel(model.net)
            bench_model.add_activation_module(BaseNode)
            bench_model.register_hooks()
        with torch.no_grad():
            out = run()
        callback.flush(samples)
        callback.detach()
        ours[mode] = (callback.summarize(model), {e["name"]: e for e in callback.layers})
        if bench_model is not None:
            peers_nb = neurobench_counts(model, bench_model, out, samples)
            bench_model.cleanup_hooks()
        model.train(False)
    op_macs, op_synops = op_counter_counts(model, run, samples)
    return ours["default"], ours["mac"], Peers(**peers_nb, op_macs=op_macs, op_synops=op_synops)


def neurobench_counts(model: nn.Module, bench_model: TorchModel, out, samples: int) -> dict:
    names = {id(m): name for name, m in model.named_modules()}
    dense, macs, acs = {}, {}, {}
    for hook in bench_model.connection_hooks:
        name = names[id(hook.layer)]
        dense[name] = macs[name] = acs[name] = 0.0
        for inputs in hook.inputs:
            effective, spiking = single_layer_MACs(inputs[0], hook.layer)
            total, _ = single_layer_MACs(inputs[0], hook.layer, total=True)
            dense[name] += total / samples
            (acs if spiking else macs)[name] += effective / samples
    sparsity = {}
    for hook in bench_model.activation_hooks:
        outputs = hook.activation_outputs
        zeros = sum(int(o.numel() - torch.count_nonzero(o)) for o in outputs)
        sparsity[names[id(hook.layer)]] = zeros / sum(o.numel() for o in outputs)
    data = (torch.zeros(samples), None)  # the metrics read only the batch size
    totals = SynapticOperations()(bench_model, out, data)
    total_sparsity = ActivationSparsity()(bench_model, out, data)
    return {
        "dense": dense,
        "effective_macs": macs,
        "effective_acs": acs,
        "totals": totals,
        "sparsity": sparsity,
        "total_sparsity": total_sparsity,
    }


def op_counter_counts(model: nn.Module, run, samples: int) -> tuple[dict, dict]:
    """op_counter's MACs and synops per layer. Its scopes are module paths under the root it first saw."""
    mac, synop = MACCounter(), SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([mac, synop]):
        run()
    model.train(False)

    def by_layer(counter):
        counts = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.Linear):
                scope = next((s for s in counter.records if s.endswith("." + name)), None)
                records = counter.records.get(scope, {})
                counts[name] = sum(v for op, v in records.items() if op in SYNAPTIC_OPS) / samples
        return counts

    return by_layer(mac), by_layer(synop)


def assert_agrees_with_peers(model, run, samples: int) -> tuple[dict, Peers]:
    (totals, layers), (mac_totals, mac_layers), peers = count_with_peers(model, run, samples)
    synaptic = {n: e for n, e in layers.items() if "dense_ops" in e}
    assert set(synaptic) == set(peers.dense), "the callback and NeuroBench see different synaptic layers"
    for name, entry in synaptic.items():
        assert entry["dense_ops"] == peers.dense[name], name
        assert entry["effective_ops"] == peers.effective_macs[name] + peers.effective_acs[name], name
        if entry["input"] in ("spikes", "signed spikes"):
            assert entry["acs"] == peers.effective_acs[name] and entry["macs"] == 0, name
        if entry["input"] == "pooled spikes":
            assert entry["macs"] == peers.effective_macs[name] and entry["acs"] == 0, name
        mac_entry = mac_layers[name]
        if entry["input"] in ("spikes", "pooled spikes", "analog", "mixed"):
            assert mac_entry["macs"] == peers.op_macs[name], name
            assert mac_entry["acs"] == peers.op_synops[name], name
        elif entry["input"] in ("graded spikes", "signed spikes"):  # op_counter: spikes are {0, 1} only
            assert entry["padded_dense_ops"] == peers.op_macs[name] and peers.op_synops[name] == 0, name
        # every oracle counted what the network holds
        assert peers.dense[name] > 0
        if entry["effective_ops"] > 0:
            assert peers.effective_macs[name] + peers.effective_acs[name] > 0
        if mac_entry["macs"] > 0:
            assert peers.op_macs[name] > 0
        if mac_entry["acs"] > 0 and entry["input"] not in ("graded spikes", "signed spikes"):
            assert peers.op_synops[name] > 0
    assert totals["dense_ops"] == peers.totals["Dense"]
    assert totals["effective_ops"] == peers.totals["Effective_MACs"] + peers.totals["Effective_ACs"]
    activations = {n: e for n, e in layers.items() if "activation_sparsity" in e}
    assert set(activations) == set(peers.sparsity)
    for name, entry in activations.items():
        assert entry["activation_sparsity"] == pytest.approx(peers.sparsity[name], abs=1e-12), name
    if activations:
        assert totals["activation_sparsity"] == pytest.approx(peers.total_sparsity, abs=1e-12)
    if not any(e["input"] in ("graded spikes", "signed spikes") for e in synaptic.values()):
        assert mac_totals["macs"] == sum(peers.op_macs.values())
        assert mac_totals["acs"] == sum(peers.op_synops.values())
    return layers, peers


# --- the zoo -------------------------------------------------------------------------------------------
class Zoo(Probe):
    """A zoo network ``s``, run from resting neurons on a time-first input."""

    def forward(self, x):
        functional.reset_net(self)
        self.net(x)  # tells the callback T
        return self.net.s(x)


def lif(**kwargs) -> nn.Module:
    return neuron.LIFNode(step_mode="m", **kwargs)


def conv(*args, **kwargs) -> nn.Module:
    return layer.Conv2d(*args, bias=False, step_mode="m", **kwargs)


def spikes(*shape) -> torch.Tensor:
    return (torch.rand(*shape) < 0.3).double()


def ternary(*shape) -> torch.Tensor:
    return torch.randint(-1, 2, shape).double()


def pool2d(spikes: torch.Tensor) -> torch.Tensor:
    """A 2x2 average pool of a [T, B, C, H, W] map written in the forward, with no pooling module."""
    return F.avg_pool2d(spikes.flatten(0, 1), 2).unflatten(0, spikes.shape[:2])


def lif_avgpool_conv() -> nn.Module:
    return nn.Sequential(
        conv(1, 4, 3, padding=1),
        lif(),
        layer.AvgPool2d(2, step_mode="m"),
        conv(4, 8, 3, padding=1),
        lif(),
        layer.Flatten(step_mode="m"),
        layer.Linear(8 * 4 * 4, 5, step_mode="m"),
    )


class FunctionalPool(nn.Module):
    """``lif_avgpool_conv`` with its pool written as ``F.avg_pool2d`` (same layers, made in the same order,
    so the same weights from the same seed)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(conv(1, 4, 3, padding=1), lif())
        self.head = nn.Sequential(
            conv(4, 8, 3, padding=1),
            lif(),
            layer.Flatten(step_mode="m"),
            layer.Linear(8 * 4 * 4, 5, step_mode="m"),
        )

    def forward(self, x):
        return self.head(pool2d(self.body(x)))


class ChunkOfPooled(nn.Module):
    """Spikes -> AvgPool2d(2) -> the second half of its channels (``chunk``) -> conv."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(conv(1, 4, 3, padding=1), lif(), layer.AvgPool2d(2, step_mode="m"))
        self.head = conv(2, 3, 3, padding=1)

    def forward(self, x):
        _, second = self.body(x).chunk(2, dim=2)
        return self.head(second)


class CatOfPooled(nn.Module):
    """Two spike maps (two thresholds), each 2x2-pooled, concatenated along channels (``torch.cat``) ->
    conv."""

    def __init__(self):
        super().__init__()
        self.encode = conv(1, 3, 3, padding=1)
        self.low, self.high = lif(v_threshold=0.5), lif(v_threshold=1.0)
        self.pool = layer.AvgPool2d(2, step_mode="m")
        self.head = conv(6, 4, 3, padding=1)

    def forward(self, x):
        current = self.encode(x)
        return self.head(torch.cat([self.pool(self.low(current)), pool2d(self.high(current))], dim=2))


class CopiesOfPooled(nn.Module):
    """One pooled spike map into three alike convs: directly, as a ``clone``, and as a contiguous copy of
    its transpose transposed back (the same values in another memory layout)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(conv(1, 4, 3, padding=1), lif(), layer.AvgPool2d(2, step_mode="m"))
        self.direct, self.cloned, self.relaid = (conv(4, 3, 3, padding=1) for _ in range(3))

    def forward(self, x):
        pooled = self.body(x)
        relaid = pooled.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not relaid.is_contiguous() and torch.equal(relaid, pooled)
        return self.direct(pooled) + self.cloned(pooled.clone()) + self.relaid(relaid)


class PooledTernary(nn.Module):
    """Signed spikes 2x2-average-pooled (``F.avg_pool2d``) -> conv: a -1 and a 1 in one window cancel, so
    the conv's input is analog (its nonzero entries are not the events, nor its sums the spikes)."""

    def __init__(self):
        super().__init__()
        self.head = conv(2, 4, 3, padding=1)

    def forward(self, x):
        return self.head(pool2d(x))


ZOO: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "padded conv": lambda: (conv(2, 4, 3, padding=1), spikes(2, 3, 2, 6, 6)),
    "strided conv": lambda: (conv(2, 4, 3, stride=2, padding=1), spikes(2, 3, 2, 7, 7)),
    "grouped conv": lambda: (conv(4, 6, 3, padding=1, groups=2), spikes(2, 3, 4, 5, 5)),
    "dilated conv": lambda: (conv(2, 4, 3, padding=2, dilation=2), spikes(2, 3, 2, 7, 7)),
    "conv1d": lambda: (layer.Conv1d(2, 4, 5, stride=2, padding=2, step_mode="m"), spikes(2, 3, 2, 16)),
    "linear": lambda: (layer.Linear(20, 7, step_mode="m"), spikes(2, 3, 20)),
    "padded strided conv3d": lambda: (
        layer.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1, bias=False, step_mode="m"),
        spikes(2, 3, 2, 4, 7, 7),
    ),
    "linear over tokens": lambda: (layer.Linear(6, 4, step_mode="m"), spikes(2, 3, 5, 6)),
    "ternary spikes into conv": lambda: (conv(2, 4, 3, padding=1), ternary(2, 3, 2, 6, 6)),
    "pooled ternary spikes into conv": lambda: (PooledTernary(), ternary(2, 3, 2, 8, 8)),
    "lif-avgpool-conv": lambda: (lif_avgpool_conv(), torch.rand(2, 3, 1, 8, 8).double() * 4),
    "lif-functional-avgpool-conv": lambda: (FunctionalPool(), torch.rand(2, 3, 1, 8, 8).double() * 4),
    "chunk of a pooled map": lambda: (ChunkOfPooled(), torch.rand(2, 3, 1, 8, 8).double() * 4),
    "cat of pooled maps": lambda: (CatOfPooled(), torch.rand(2, 3, 1, 8, 8).double() * 4),
    "copies of a pooled map": lambda: (CopiesOfPooled(), torch.rand(2, 3, 1, 8, 8).double() * 4),
    "max pool": lambda: (
        nn.Sequential(
            conv(1, 4, 3), lif(), layer.MaxPool2d(2, step_mode="m"), conv(4, 6, 3, padding=1), lif()
        ),
        torch.rand(2, 3, 1, 8, 8).double() * 4,
    ),
    "graded spikes into linear": lambda: (
        nn.Sequential(
            layer.Linear(12, 16, step_mode="m"),
            MultiThresholdLIF(levels=3, v_threshold=0.1),
            layer.Linear(16, 5, step_mode="m"),
        ),
        torch.rand(3, 4, 12).double() * 2,
    ),
    "direct-encoded analog layer with BN": lambda: (
        nn.Sequential(
            conv(1, 4, 3, padding=1),
            layer.BatchNorm2d(4, step_mode="m"),
            lif(),
            conv(4, 4, 3, padding=1),
            lif(),
        ),
        torch.randn(1, 3, 1, 6, 6).double().expand(4, 3, 1, 6, 6),
    ),
    "a layer that never fires": lambda: (
        nn.Sequential(conv(1, 4, 3, padding=1), lif(v_threshold=1e9), conv(4, 4, 3, padding=1), lif()),
        torch.rand(2, 3, 1, 6, 6).double(),
    ),
}


def zoo(name: str) -> tuple[Zoo, torch.Tensor]:
    torch.manual_seed(0)
    network, x = ZOO[name]()
    return Zoo(s=network).double().eval(), x


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_network_counts_equal_neurobench_and_op_counter(name):
    model, x = zoo(name)
    layers, peers = assert_agrees_with_peers(model, lambda: model(x), samples=x.shape[1])
    kinds = {e["input"] for e in layers.values() if "input" in e}
    expected = {
        "lif-avgpool-conv": {"analog", "pooled spikes", "spikes"},
        "lif-functional-avgpool-conv": {"analog", "pooled spikes", "spikes"},
        "chunk of a pooled map": {"analog", "pooled spikes"},
        "cat of pooled maps": {"analog", "pooled spikes"},
        "copies of a pooled map": {"analog", "pooled spikes"},
        "ternary spikes into conv": {"signed spikes"},
        "pooled ternary spikes into conv": {"analog"},
        "linear over tokens": {"spikes"},
        "graded spikes into linear": {"analog", "graded spikes"},
        "a layer that never fires": {"analog", "spikes"},
    }
    assert kinds == expected.get(name, kinds)
    if name == "a layer that never fires":
        assert layers["net.s.2"]["effective_ops"] == 0 and peers.dense["net.s.2"] > 0
        assert layers["net.s.1"]["activation_sparsity"] == peers.sparsity["net.s.1"] == 1.0


def ours(model: nn.Module, x: torch.Tensor, **options) -> tuple[dict, dict]:
    """The callback alone on one forward pass: (totals, per-layer entries by name)."""
    callback = EnergyMetrics(latency_samples=0, throughput_batches=0, **options)
    callback.attach(model)
    with torch.no_grad():
        model(x)
    callback.flush(x.shape[1])
    callback.detach()
    totals = callback.summarize(model)
    return totals, {entry["name"]: entry for entry in callback.layers}


def synaptic_entries(layers: dict) -> list[dict]:
    """The synaptic layers' entries in network order, without their names."""
    return [{k: v for k, v in e.items() if k != "name"} for e in layers.values() if "counts" in e]


def test_copies_of_a_pooled_map_count_as_the_map_itself():
    """A clone and a contiguous copy in another layout hold the pooled map's values: their consumers
    count exactly what the direct consumer counts (the oracles agree, in the zoo test)."""
    model, x = zoo("copies of a pooled map")
    for options in ({}, {"pooled_spikes": "folded"}):
        _, layers = ours(model, x, **options)
        direct, cloned, relaid = (layers[f"net.s.{n}"] for n in ("direct", "cloned", "relaid"))
        assert direct["input"] == "pooled spikes" and direct["counts"]["pooled_folded"] > 0
        for copy_entry in (cloned, relaid):
            assert {**copy_entry, "name": ""} == {**direct, "name": ""}


def test_a_functional_pool_counts_as_the_pooling_module():
    """``F.avg_pool2d`` in the forward instead of an ``nn.AvgPool2d`` module: the same counts, layer by
    layer, and the same totals and ANN/SNN energy ratio, under every pooled rule."""
    module_net, x = zoo("lif-avgpool-conv")
    functional_net, same_x = zoo("lif-functional-avgpool-conv")
    assert torch.equal(x, same_x)
    for mode in ("effective", "folded", "ac", "mac"):
        module_totals, module_layers = ours(module_net, x, pooled_spikes=mode)
        functional_totals, functional_layers = ours(functional_net, x, pooled_spikes=mode)
        assert synaptic_entries(functional_layers) == synaptic_entries(module_layers)
        assert functional_totals == module_totals
        assert module_totals["ann_snn_energy_ratio"] > 0
        pooled = synaptic_entries(module_layers)[1]
        assert pooled["input"] == "pooled spikes" and pooled["counts"]["pooled_events"] > 0


class NonSpikingZoo(Zoo):
    spiking = False


def test_a_linear_over_tokens_is_referenced_by_all_its_tokens_and_an_ann_ratio_is_exactly_1():
    """Rows of a Linear are vectors, tokens included: over [T, B, L, F] it passes L vectors per sample at
    each step, and its ANN reference is one pass over one sample: the L vectors, once."""
    model, x = zoo("linear over tokens")  # T = 2, B = 3, L = 5 tokens of 6 features, 4 outputs
    _, layers = ours(model, x)
    linear = layers["net.s"]
    assert linear["counts"]["rows"] == 2 * 5 and linear["counts"]["outputs"] == 2 * 5 * 4
    assert linear["padded_dense_ops"] == 2 * 5 * 6 * 4
    assert linear["ann_macs"] == linear["counts"]["ann_macs"] == 5 * 6 * 4
    assert linear["counts"]["ann_outputs"] == 5 * 4

    torch.manual_seed(0)
    ann = NonSpikingZoo(s=layer.Linear(6, 4, step_mode="m")).double().eval()
    tokens = torch.randn(1, 3, 5, 6).double()  # T = 1, as the ann baseline runs
    totals, layers = ours(ann, tokens)
    assert totals["acs"] == 0 and totals["macs"] == totals["ann_macs"] == 5 * 6 * 4
    assert totals["ann_snn_energy_ratio"] == 1.0


class Transposed(nn.Module):
    """Analog -> ConvTranspose2d (output_padding) -> LIF -> grouped ConvTranspose2d on spikes -> LIF ->
    AvgPool2d -> dilated ConvTranspose2d with unequal strides and paddings on pooled spikes."""

    def __init__(self):
        super().__init__()

        def transposed(*args, **kwargs):
            return layer.ConvTranspose2d(*args, bias=False, step_mode="m", **kwargs)

        self.up = transposed(1, 4, 3, stride=2, padding=1, output_padding=1)  # 4x4 -> 8x8
        self.lif1 = lif(v_threshold=0.5)
        self.grouped = transposed(4, 4, 3, stride=2, padding=1, groups=2)  # 8x8 -> 15x15
        self.lif2 = lif(v_threshold=0.3)
        self.pool = layer.AvgPool2d(2, step_mode="m")  # -> 7x7
        self.dilated = transposed(4, 2, (2, 3), stride=(1, 2), padding=(0, 1), dilation=(2, 1))
        for synapse in (self.up, self.grouped):  # mostly excitatory, so that both LIF layers fire
            nn.init.uniform_(synapse.weight, -0.2, 0.5)

    def forward(self, x):
        return self.dilated(self.pool(self.lif2(self.grouped(self.lif1(self.up(x))))))


def neurobench_definition(model: nn.Module, run, samples: int) -> dict[str, tuple[float, float]]:
    """(dense, effective) ops per sample of each transposed convolution by NeuroBench's own method, which
    it does not apply to them: the layer with all-ones weights and no bias, on all-ones or on binarised
    (nonzero -> 1) inputs, its outputs summed."""
    counts = {}

    def hook(name):
        def record(module, inputs, output):
            def ones_layer(x):
                m, ones = module, torch.ones_like(module.weight)
                geometry = (m.stride, m.padding, m.output_padding, m.groups, m.dilation)
                return F.conv_transpose2d(x, ones, None, *geometry)

            x = inputs[0].flatten(0, 1)  # [T, B, ...] -> images
            dense, effective = counts.get(name, (0.0, 0.0))
            dense += float(ones_layer(torch.ones_like(x)).sum()) / samples
            effective += float(ones_layer((x != 0).to(x.dtype)).sum()) / samples
            counts[name] = (dense, effective)

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if isinstance(m, nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        run()
    for handle in handles:
        handle.remove()
    return counts


def test_transposed_convolutions_count_as_op_counter_and_neurobench_definitions():
    """NeuroBench 2.3 does not support ConvTranspose: its SUPPORTED_LAYERS are Linear, Conv1d/2d/3d and
    the recurrent layers, so its hooks never see one. Dense and effective ops are checked against its
    definition applied by brute force; MACs (padded, with ``pooled_spikes=mac``) and synops on binary
    spikes against op_counter."""
    torch.manual_seed(0)
    model, x = Zoo(s=Transposed()).double().eval(), torch.rand(2, 3, 1, 4, 4).double() * 4
    samples = x.shape[1]
    (_, layers), (_, mac_layers), peers = count_with_peers(model, lambda: model(x), samples)
    brute = neurobench_definition(model, lambda: model(x), samples)
    names = ("net.s.up", "net.s.grouped", "net.s.dilated")
    assert set(brute) == set(names) and not set(names) & set(peers.dense)  # NeuroBench saw none of them
    kinds = {name: layers[name]["input"] for name in names}
    assert kinds == {"net.s.up": "analog", "net.s.grouped": "spikes", "net.s.dilated": "pooled spikes"}
    for name in names:
        entry, mac_entry = layers[name], mac_layers[name]
        assert (entry["dense_ops"], entry["effective_ops"]) == brute[name], name
        assert entry["effective_ops"] > 0
        if entry["input"] == "spikes":
            assert entry["acs"] == entry["effective_ops"] == peers.op_synops[name] > 0
            assert entry["macs"] == peers.op_macs[name] == 0
        else:  # analog and pooled spikes: op_counter's MACs are every kernel tap of every input
            assert mac_entry["macs"] == entry["padded_dense_ops"] == peers.op_macs[name] > 0
        if entry["input"] == "pooled spikes":
            assert entry["macs"] == entry["effective_ops"] and entry["acs"] == 0
    # every input reaches at most its kernel's taps; the padding crops some at the borders
    up = layers["net.s.up"]
    assert up["dense_ops"] < up["padded_dense_ops"] == 2 * 16 * 9 * 4


def test_the_oracles_counted_every_kind_of_op_across_the_zoo():
    totals = {"neurobench MACs": 0.0, "neurobench ACs": 0.0, "op_counter MACs": 0.0, "op_counter synops": 0.0}
    for name in ZOO:
        model, x = zoo(name)
        *_, peers = count_with_peers(model, lambda m=model, x=x: m(x), x.shape[1])
        totals["neurobench MACs"] += peers.totals["Effective_MACs"]
        totals["neurobench ACs"] += peers.totals["Effective_ACs"]
        totals["op_counter MACs"] += sum(peers.op_macs.values())
        totals["op_counter synops"] += sum(peers.op_synops.values())
    assert all(v > 0 for v in totals.values()), totals


def test_op_counter_counts_nothing_under_inference_mode():
    """Why the oracles run under no_grad: under inference mode op_counter sees aten.conv2d and counts 0."""
    net = layer.Conv2d(1, 2, 3, step_mode="m")
    mac = MACCounter()
    with torch.inference_mode(), DispatchCounterMode([mac]):
        net(torch.rand(1, 1, 1, 5, 5))
    assert mac.get_total() == 0
    with torch.no_grad(), DispatchCounterMode([mac]):
        net(torch.rand(1, 1, 1, 5, 5))
    assert mac.get_total() == 2 * 9 * 9


# --- every registered method on real batches ------------------------------------------------------------
@pytest.fixture(scope="module")
def real_batches(tmp_path_factory):
    """A batch of 4 real mnist5k digits and of 4 nmnist_sim samples (simulated from 30 mnist5k digits)
    through the real DataModules."""
    static = MNIST5k(batch_size=4)
    static.setup()
    images, labels = load_mnist5k()
    keep = np.concatenate([np.flatnonzero(labels == c)[:3] for c in range(10)])
    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nmnist_sim, "load_mnist5k", lambda: (images[keep], labels[keep]))
        events = nmnist_sim.NMNISTSim(root=str(root), batch_size=4)
        events.prepare_data()
        events.setup()
    assert json.loads((root / "nmnist_sim" / "generator.json").read_text())["samples"] == 30
    return {
        "mnist5k": (static, next(iter(static.test_dataloader()))[0]),
        "nmnist_sim": (events, next(iter(events.test_dataloader()))[0]),
    }


@pytest.mark.parametrize("dataset", ["mnist5k", "nmnist_sim"])
@pytest.mark.parametrize("method", sorted(registry.methods()))
def test_every_method_counts_equal_neurobench_and_op_counter(method, dataset, real_batches):
    datamodule, x = real_batches[dataset]
    cfg = load_config(method, dataset)
    torch.manual_seed(0)
    model = registry.get_method(method)(
        **datamodule.facts.for_method(), **OmegaConf.to_container(cfg.method, resolve=True)
    )
    model = model.double().eval()
    x = x.double()
    layers, _ = assert_agrees_with_peers(model, lambda: model(x), samples=len(x))
    if method == "ann":
        assert all(e["acs"] == 0 for e in layers.values() if "acs" in e)


@pytest.mark.parametrize("dataset", ["mnist5k", "nmnist_sim"])
@pytest.mark.parametrize("method", ["multi_threshold", "compressed_event"])
def test_the_matched_tracks_pooled_voting_head_counts_equal_neurobench_and_op_counter(
    method, dataset, real_batches
):
    """On the matched sweep the voting population reads the last conv's maps averaged over H x W (issue 31,
    ``method.voting_input: gap``): the Linear after that pool reads pooled spikes, counted as the peers do."""
    datamodule, x = real_batches[dataset]
    cell = next(
        c for c in load_sweep("matched", check=False).cells if (c.method, c.dataset) == (method, dataset)
    )
    cfg = load_config(method, dataset, [*cell.args, "method.time_steps=2"], check=False)
    assert cfg.method.voting_input == "gap"
    torch.manual_seed(0)
    model = registry.get_method(method)(
        **datamodule.facts.for_method(), **OmegaConf.to_container(cfg.method, resolve=True)
    )
    # 4x brighter: at initialisation compressed_event's third block is silent on these 4 samples, and the
    # voting Linear would read zeros (binary spikes, counted alike, but no pooled values to check)
    model, x = model.double().eval(), 4 * x.double()
    layers, _ = assert_agrees_with_peers(model, lambda: model(x), samples=len(x))
    voting = next(e for e in reversed(layers.values()) if "dense_ops" in e)
    assert voting["input"] == "pooled spikes" and voting["dense_ops"] == 2 * 128 * 100
