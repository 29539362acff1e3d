"""``slssnn``: the STCB against an integrate-and-fire neuron, its equivalent gradient, networks, energy."""

from __future__ import annotations

import pytest
import torch
from helpers import measure
from spikingjelly.activation_based import layer, neuron
from torch import nn

from bench.errors import ConfigError
from methods.slssnn import SLSSNN, STCB, SpikeTrainIF, default_layers

# Three input neurons over T = 4 steps: the first fires at every step, the second at steps 1 and 3, the
# third never: counts [4, 2, 0].
INPUT_TRAINS = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]]).unsqueeze(1)  # [T, B=1, 3]
# Five output neurons; A = W @ counts = [1, -1, 2.5, 0.5, 0.75].
WEIGHTS = torch.tensor([[0.25, 0, 1], [-0.5, 0.5, 0], [0.5, 0.25, 0], [0.125, 0, 0], [0.0625, 0.25, 0]])


def hand_block(v_threshold: float = 0.5) -> STCB:
    linear = layer.Linear(3, 5, bias=False, step_mode="m")
    with torch.no_grad():
        linear.weight.copy_(WEIGHTS)
    return STCB(linear, nn.Identity(), v_threshold)  # no BN, so A is the hand value


def test_block_emits_clipped_floor_counts_spread_like_a_soft_reset_IF_neuron():
    block = hand_block()
    trains = block(INPUT_TRAINS)
    # n = clip(floor(A / 0.5), 0, 4) = [2, 0, 4, 1, 1]; fed A / 4 per step, the IF neuron fires when its
    # membrane reaches 0.5: A = 1 -> 0.25 per step -> spikes at steps 2 and 4; A = 0.5 -> step 4 only;
    # A = 0.75 -> 0.1875 per step -> 0.5625 at step 3.
    expected = torch.tensor([[0.0, 0, 1, 0, 0], [1, 0, 1, 0, 0], [0, 0, 1, 0, 1], [1, 0, 1, 1, 0]])
    assert torch.equal(trains[:, 0], expected)
    assert trains.sum(0)[0].tolist() == [2, 0, 4, 1, 1]


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_block_output_equals_spikingjelly_IF_with_soft_reset_fed_the_same_input(steps):
    torch.manual_seed(steps)
    conv = layer.Conv2d(2, 6, 3, padding=1, bias=False, step_mode="m")
    block = STCB(conv, nn.BatchNorm2d(6), v_threshold=0.5)
    spikes = (torch.rand(steps, 4, 2, 5, 5) < 0.4).float()
    trains = block(spikes)
    total = block.spatial(spikes).detach()
    reference = neuron.IFNode(v_threshold=0.5, v_reset=None, step_mode="m")
    expected = reference((total / steps).expand(steps, *total.shape))
    assert torch.equal(trains, expected)
    counts = trains.sum(0)
    assert counts.max() <= steps and counts.min() >= 0 and counts.max() > 0


def test_equivalent_gradient_is_one_over_threshold_inside_the_window_times_the_mean_train_gradient():
    # V_th = 0.5, T = 4: the window is 0 <= A < 2.
    total = torch.tensor([-0.25, 0.0, 0.75, 1.5, 2.0, 3.0], requires_grad=True)
    trains = SpikeTrainIF(0.5)((total / 4).expand(4, 6))
    grad_trains = torch.tensor([1.0, 2.0, 3.0, 6.0]).unsqueeze(1).expand(4, 6)  # mean over t: 3
    (trains * grad_trains).sum().backward()
    assert total.grad.tolist() == [0.0, 6.0, 6.0, 6.0, 0.0, 0.0]  # (1 / 0.5) * 3 inside the window


def test_the_input_trains_gradient_is_the_transposed_synapse_of_dL_dA_at_every_step():
    block = hand_block()
    spikes = INPUT_TRAINS.clone().requires_grad_()
    trains = block(spikes)  # A = [1, -1, 2.5, 0.5, 0.75]: inside the window [0, 2) for outputs 0, 3, 4
    trains.sum().backward()  # dL/dS_out[t] = 1 at every step -> dL/dn = 1, dL/dA = 2 * window
    grad_total = torch.tensor([2.0, 0, 0, 2, 2])
    expected = grad_total @ WEIGHTS  # [0.5 + 0.25 + 0.125, 0.5, 2] = [0.875, 0.5, 2]
    assert expected.tolist() == [0.875, 0.5, 2.0]
    for step in spikes.grad:  # no BPTT: the same gradient at every time step
        assert torch.equal(step[0], expected)


@pytest.mark.parametrize(
    "shape, expected",
    [
        ((1, 28, 28), "32C3-AP2-64C3-AP2-256FC"),
        ((2, 34, 34), "32C3-AP2-64C3-AP2-256FC"),
        ((3, 32, 32), "64C3-AP2-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3"),
        ((2, 48, 48), "32C3-AP2-64C3-AP2-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3"),
        ((3, 64, 64), "32C3-AP2-64C3-AP2-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3"),
        ((2, 128, 128), "AP2-32C3-AP2-64C3-AP2-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3"),
    ],
)
def test_networks_per_input_size(shape, expected):
    assert default_layers(shape) == expected


def small_model(**options) -> SLSSNN:
    return SLSSNN(num_classes=3, input_shape=(1, 6, 6), layers="4C3-AP2-8FC", **options)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_every_block_emits_binary_trains_of_at_most_T_spikes(steps):
    model = small_model(time_steps=steps)
    trains = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: trains.append(o)) for m in model.spiking_layers().values()
    ]
    logits = model(torch.rand(5, 1, 6, 6) * 4)
    for hook in hooks:
        hook.remove()
    assert logits.shape == (5, 3) and len(trains) == 2
    for out in trains:
        assert out.shape[0] == steps and set(out.unique().tolist()) <= {0.0, 1.0}
        assert out.sum(0).max() <= steps


def test_metrics_see_T_neuron_updates_per_neuron_and_binary_inputs_after_the_first_layer():
    model = small_model(time_steps=4).eval()
    x = torch.rand(2, 1, 6, 6)
    totals, layers = measure(model, lambda: model(x), samples=2)
    conv, fc, classifier = layers["net.0.synapse"], layers["net.3.synapse"], layers["net.4"]
    # The image is the same at each of the 4 steps, so it is convolved once: 6x6 outputs x 9 taps
    # (padding 1) x 4 output channels, all MACs; 16 x 16 of the taps reach a real input (dense ops).
    assert conv["input"] == "analog" and conv["macs"] == conv["padded_dense_ops"] == 36 * 9 * 4
    assert conv["dense_ops"] == 16 * 16 * 4 and conv["ann_macs"] == 36 * 9 * 4
    # pooled spike counts: NeuroBench's effective MACs (the nonzero pooled inputs x their fan-out)
    assert fc["input"] == "pooled spikes" and fc["macs"] == fc["effective_ops"] and fc["acs"] == 0
    assert classifier["input"] == "spikes"
    assert layers["net.0.neuron"]["neuron_updates"] == 4 * 4 * 6 * 6  # T x channels x H x W
    assert layers["net.3.neuron"]["neuron_updates"] == 4 * 8
    assert totals["time_steps"] == 4
    assert totals["energy_uj"] == pytest.approx((totals["macs"] * 4.6 + totals["acs"] * 0.9) / 1e6)


def test_a_static_image_is_convolved_once_with_the_same_result_as_T_times():
    torch.manual_seed(0)
    model = small_model(time_steps=4).eval()
    block = model.net[0]
    image = torch.rand(2, 1, 6, 6)
    calls = []
    block.synapse.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    once = block.spatial(model.encode(image))  # the expanded image: stride 0 over time
    every_step = block.spatial(model.encode(image).contiguous())  # the same values, T separate steps
    assert calls == [1, 4]
    torch.testing.assert_close(once, every_step)


def test_readout_spikes_gives_count_over_T():
    model = small_model(time_steps=4, readout="spikes")
    logits = model(torch.rand(3, 1, 6, 6))
    assert torch.equal(logits * 4, (logits * 4).round()) and logits.max() <= 1
    assert isinstance(model.net[-1], STCB)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="readout='rate'"):
        small_model(readout="rate")
    with pytest.raises(ConfigError, match="v_threshold must be > 0"):
        small_model(v_threshold=0.0)
    with pytest.raises(ConfigError, match="'MP2' does not fit"):
        SLSSNN(num_classes=3, input_shape=(1, 6, 6), layers="4C3-MP2")
