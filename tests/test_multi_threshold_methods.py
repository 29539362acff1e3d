"""``multi_threshold`` and ``compressed_event``: compression, event re-binning, networks, graded spikes."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from helpers import measure

from bench.config import load_config
from bench.errors import ConfigError
from bench.runner import build
from methods.common.neurons import MultiThresholdLIF
from methods.compressed_event import CompressedEventSNN, compress
from methods.multi_threshold import MultiThresholdSNN, default_layers

FOUR_FRAMES = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1, 1, 1)  # [B, T0, C, H, W]


def test_compression_of_a_hand_made_frame_sequence():
    # CR = 2, lambda = exp(-1/tau_s) = 0.5:
    # I1 = 0.5 * F1 + F2 = 2.5; I2 = 0.5^2 * I1 + 0.5 * F3 + F4 = 0.625 + 1.5 + 4 = 6.125.
    current = compress(FOUR_FRAMES, time_steps=2, synaptic_tau=1 / math.log(2))
    assert current.shape == (2, 1, 1, 1, 1)
    assert current.flatten().tolist() == pytest.approx([2.5, 6.125])
    # T = T0 (CR = 1): I[t] = lambda I[t-1] + F[t] = 1, 2.5, 4.25, 6.125
    current = compress(FOUR_FRAMES, time_steps=4, synaptic_tau=1 / math.log(2))
    assert current.flatten().tolist() == pytest.approx([1, 2.5, 4.25, 6.125])


def event_model(cls, **options):
    return cls(num_classes=2, input_shape=(1, 1, 1), kind="event", frames=4, layers="4FC", **options)


def test_compression_off_and_other_methods_get_plain_event_counts_per_window():
    for model in (event_model(CompressedEventSNN, compression=False), event_model(MultiThresholdSNN)):
        assert model.encode(FOUR_FRAMES).flatten().tolist() == [3.0, 7.0]  # F1 + F2, F3 + F4
    compressed = event_model(CompressedEventSNN, synaptic_tau=1 / math.log(2))
    assert compressed.encode(FOUR_FRAMES).flatten().tolist() == pytest.approx([2.5, 6.125])


def test_static_images_are_a_constant_current():
    model = CompressedEventSNN(num_classes=2, input_shape=(1, 2, 2), time_steps=3, layers="4FC")
    image = torch.rand(5, 1, 2, 2)
    encoded = model.encode(image)
    assert encoded.shape == (3, 5, 1, 2, 2) and all(torch.equal(step, image) for step in encoded)


def test_time_steps_must_divide_the_frames():
    with pytest.raises(ConfigError, match=r"time_steps=3 does not divide data.frames=16.*\[1, 2, 4, 8, 16\]"):
        load_config("compressed_event", "nmnist_sim", ["data.frames=16", "method.time_steps=3"])
    with pytest.raises(ConfigError, match="time_steps=5 does not divide data.frames=6"):
        load_config("compressed_event", "nmnist_sim", ["method.time_steps=5"])  # when the config is checked


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((1, 28, 28), "32C3-AP2-32C3-AP2-128FC"),
        ((2, 34, 34), "32C3-AP2-32C3-AP2-128FC"),
        ((3, 32, 32), "128C3-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC"),
        ((3, 64, 64), "128C3-AP2-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC"),
        ((2, 128, 128), "128C3-AP2-AP2-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC"),
    ],
)
def test_multi_threshold_networks_per_input_size(shape, expected):
    assert "-".join(default_layers(shape)) == expected


def test_bad_layer_strings_and_options_are_config_errors():
    with pytest.raises(ConfigError, match="'32X3' is not understood"):
        MultiThresholdSNN(num_classes=10, input_shape=(1, 28, 28), layers="32X3-AP2")
    with pytest.raises(ConfigError, match="method.loss='nll'"):
        MultiThresholdSNN(num_classes=10, input_shape=(1, 28, 28), loss="nll")
    with pytest.raises(ConfigError, match="synaptic_tau"):
        CompressedEventSNN(num_classes=10, input_shape=(1, 28, 28), synaptic_tau=0.0)


def test_metrics_callback_counts_multi_threshold_graded_spikes_by_amplitude():
    torch.manual_seed(0)
    cfg = load_config("multi_threshold", "mnist5k")
    _, model = build(cfg, "multi_threshold", "mnist5k")
    model.train()  # batch statistics: every layer's BN output is ~N(0, 1), so amplitudes 2 and 3 occur
    x = torch.rand(4, 1, 28, 28) * 3
    hidden = model.net[11]  # the 128FC layer's neurons, which feed the voting Linear net.12
    captured = []
    handle = hidden.register_forward_hook(lambda module, inputs, output: captured.append(output.clone()))
    totals, layers = measure(model, lambda: model(x), samples=4)
    handle.remove()
    spikes = captured[0]
    assert spikes.max() > 1 and torch.equal(spikes, spikes.round())  # graded: integer amplitudes > 1 occur
    voting = layers["net.12"]
    assert voting["input"] == "graded spikes" and voting["macs"] == 0
    fan_out = model.net[12].out_features
    assert voting["acs"] == spikes.sum().item() * fan_out / 4  # amplitude x fan-out, per sample
    assert layers["net.0"]["input"] == "analog" and totals["time_steps"] == 2


def voting_head_inputs(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the last average pool's maps ``[T, B, C, H, W]``, what the voting Linear reads ``[T, B, F]``) of
    one forward pass."""
    seen = {}
    pool = [m for m in model.net if isinstance(m, torch.nn.AvgPool2d)][-1]
    linear = next(m for m in model.net if isinstance(m, torch.nn.Linear))
    hooks = [
        pool.register_forward_hook(lambda module, inputs, output: seen.update(maps=output)),
        linear.register_forward_pre_hook(lambda module, inputs: seen.update(features=inputs[0])),
    ]
    assert model(x).shape == (x.shape[0], model.num_classes)
    for hook in hooks:
        hook.remove()
    return seen["maps"], seen["features"]


@pytest.mark.parametrize("cls", [MultiThresholdSNN, CompressedEventSNN])
def test_the_voting_population_reads_the_flattened_maps_or_their_global_average(cls):
    """``method.voting_input``: ``flatten`` (the papers' head, the default) feeds the voting Linear the
    C x H x W maps, ``gap`` their average over H x W at every step, C features: 8 x 3 x 3 = 72 or 8 here."""
    torch.manual_seed(0)
    options = dict(num_classes=2, input_shape=(1, 12, 12), layers="4C3-AP2-8C3-AP2", voting=3)
    x = torch.rand(4, 1, 12, 12) * 3
    flatten, gap = cls(**options), cls(**options, voting_input="gap")
    assert flatten.voting_input == "flatten"  # the default: the papers' head
    for model, features in ((flatten, 8 * 3 * 3), (gap, 8)):
        model.train()  # batch statistics: the hidden layers spike
        linears = [m for m in model.net.modules() if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(features, 2 * 3)]
        maps, read = voting_head_inputs(model, x)
        expected = maps.mean((-2, -1)) if model is gap else maps.flatten(2)
        assert maps.shape[:3] == (2, 4, 8)
        torch.testing.assert_close(read, expected)
    params = [sum(p.numel() for p in model.parameters()) for model in (flatten, gap)]
    assert params[0] - params[1] == (72 - 8) * 2 * 3  # only the voting Linear's inputs differ
    # The metrics callback sees the global average of average-pooled spikes as pooled spikes, as it sees
    # an AvgPool's output: their window is the AP2's 2 x 2 times the pool over the 3 x 3 maps.
    linear = next(name for name, m in gap.net.named_modules() if isinstance(m, torch.nn.Linear))
    _, layers = measure(gap, functools.partial(gap, x), samples=4)
    counts = layers[f"net.{linear}"]["counts"]
    assert layers[f"net.{linear}"]["input"] == "pooled spikes" and counts["pooled_amplitude"] > 0
    assert counts["pooled_folded"] == pytest.approx(counts["pooled_amplitude"] * 4 * 9)


def test_bad_voting_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="method.voting_input='mean' is not one of flatten, gap"):
        CompressedEventSNN(num_classes=2, input_shape=(1, 8, 8), layers="4C3-AP2", voting_input="mean")
    # multi_threshold's own small net ends with 128FC: flat features, nothing to pool.
    with pytest.raises(ConfigError, match=r"'32C3-AP2-32C3-AP2-128FC' end with an FC layer"):
        MultiThresholdSNN(num_classes=10, input_shape=(1, 28, 28), voting_input="gap")


def test_compressed_event_records_learnt_time_constants():
    model = CompressedEventSNN(num_classes=10, input_shape=(2, 34, 34), kind="event", frames=16, channels=4)
    details = model.run_details()["neurons"]
    assert len(details) == 5  # four blocks + the voting layer
    assert all(
        d["tau"] == pytest.approx(2.0) and d["synaptic_alpha"] == pytest.approx(0.5) for d in details.values()
    )


def test_multi_threshold_neuron_at_the_config_defaults_by_hand():
    cfg = load_config("multi_threshold", "mnist5k")
    assert (cfg.method.tau, cfg.method.v_threshold, cfg.method.levels) == (1.25, 0.5, 3)
    _, model = build(cfg, "multi_threshold", "mnist5k")
    neuron = model.net[2]
    # STBP charge h = (1 - 1/1.25) v + x = 0.2 v + x; amplitude = #{k = 1..3: h >= 0.5 k}; hard reset.
    # Neuron 1: h = 0.3, 0.36, 0.072 + 1.2 = 1.272 (2 spikes, reset), 0.1.
    # Neuron 2: h = 1.6 (3, reset), 0.2, 0.04 + 0.7 = 0.74 (1, reset), 3.0 (3: at most K).
    x = torch.tensor([[0.3, 1.6], [0.3, 0.2], [1.2, 0.7], [0.1, 3.0]])
    spikes = neuron(x)
    assert spikes.T.tolist() == [[0, 0, 2, 0], [3, 0, 1, 3]]
    assert neuron.v.tolist() == pytest.approx([0.1, 0.0])


def test_rate_readout_and_mse_loss_by_hand():
    model = MultiThresholdSNN(num_classes=3, input_shape=(1, 2, 2), layers="4FC", levels=3)
    output = torch.tensor([[3.0, 0.0, 1.0], [2.0, 1.0, 0.0]]).view(2, 1, 3)  # voting amplitudes, T = 2
    rate = model.readout(output)  # count / (T K)
    torch.testing.assert_close(rate, torch.tensor([[5 / 6, 1 / 6, 1 / 6]]))
    # MSE to the one-hot label 0: ((1/6)^2 * 3) / 3
    loss = model.compute_loss(rate, torch.tensor([0]))
    assert loss.item() == pytest.approx(1 / 36)


def test_a_synaptic_conv_block_over_two_steps_by_hand():
    model = CompressedEventSNN(num_classes=2, input_shape=(1, 2, 2), time_steps=2, layers="1C3-MP2")
    conv, norm, neuron, pool = model.net[:4]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # the centre tap: the conv passes its input through
    model.eval()  # BN at its initial statistics: x / sqrt(1 + eps)
    # Filter J = 0.5 J + 0.5 x (alpha 0.5), PLIF charge h = v + (J - v) / 2 (tau 2), K = 3 thresholds of
    # 0.25, soft reset v = h - 0.25 amplitude. Pixels [a, b; c, d]:
    # step 1, x = 0.4, 1.2, 0, 2.2: J = x / 2, h = x / 4 = 0.1 (0), 0.3 (1), 0 (0), 0.55 (2);
    #   v = 0.1, 0.05, 0, 0.05.
    # step 2, x = 0.4, 0, 0.6, 2.2: J = 0.3, 0.3, 0.3, 1.65; h = 0.2 (0), 0.175 (0), 0.15 (0), 0.85 (3).
    currents = torch.tensor([[0.4, 1.2, 0.0, 2.2], [0.4, 0.0, 0.6, 2.2]]).view(2, 1, 1, 2, 2)
    with torch.no_grad():
        spikes = neuron(norm(conv(currents)))
        pooled = pool(spikes)
    assert spikes.flatten(1).tolist() == [[0, 1, 0, 2], [0, 0, 0, 3]]
    assert neuron.v.flatten().tolist() == pytest.approx([0.2, 0.175, 0.15, 0.1], rel=1e-4)
    assert pooled.flatten().tolist() == [2, 3]  # max pooling of each step's amplitudes


def test_each_method_configures_every_neuron_of_its_voting_network():
    """The shared builder (``RateCodedOutput.voting_network``) hands each method's options to the hidden
    neurons and to the voting population alike: STBP charge for multi_threshold, PLIF + filter for
    compressed_event."""
    small = dict(num_classes=2, input_shape=(1, 2, 2), layers="4FC", levels=2, v_threshold=0.3)
    multi = MultiThresholdSNN(**small, tau=1.5, hard_reset=False, surrogate="tri", surrogate_a=0.7)
    compressed = CompressedEventSNN(**small, tau=3.0, hard_reset=True, synaptic_alpha=0.25)
    expected = [  # decay_input, tau, learnt tau, v_reset, surrogate, width, synaptic alpha
        (multi, (False, 1.5, False, None, "tri", 0.7, None)),
        (compressed, (True, 3.0, True, 0.0, "rect", 0.3, 0.25)),  # rect's default width: V_th
    ]
    for model, (decay_input, tau, learnt, v_reset, shape, a, alpha) in expected:
        neurons = [m for m in model.net if isinstance(m, MultiThresholdLIF)]
        assert len(neurons) == 2  # the 4FC layer's and the voting population's
        for neuron in neurons:
            spike = neuron.surrogate_function
            assert (neuron.levels, neuron.v_threshold, neuron.decay_input) == (2, 0.3, decay_input)
            assert neuron.tau() == pytest.approx(tau) and hasattr(neuron, "w") == learnt
            assert neuron.v_reset == v_reset and (spike.shape, spike.a) == (shape, pytest.approx(a))
            assert neuron.synaptic_filter == (alpha is not None)
            if alpha is not None:
                assert float(neuron.synaptic_alpha()) == pytest.approx(alpha)
