"""The shared multi-threshold LIF neuron on hand-computed sequences and derivatives."""

from __future__ import annotations

import math

import pytest
import torch
from spikingjelly.activation_based import functional

from bench.errors import ConfigError
from methods.common.neurons import MultiThresholdLIF, MultiThresholdSpike


def run(neuron: MultiThresholdLIF, inputs: list[float]) -> tuple[list[float], list[float]]:
    """(spike amplitudes, membrane after each step's reset) for a one-neuron input sequence."""
    neuron.store_v_seq = True
    spikes = neuron(torch.tensor(inputs).reshape(-1, 1))
    return spikes.flatten().tolist(), neuron.v_seq.flatten().tolist()


# PLIF charge H = V + (X - V) / 2, V_th = 1, input 1.5, 1.5, 0.5, 3.0:
# hard: H = 0.75 | 1.125 (fire, V=0) | 0.25 | 1.625 (fire, V=0)
# soft: H = 0.75 | 1.125 (fire, V=0.125) | 0.3125 | 1.65625 (fire, V=0.65625)
# STBP charge H = V/2 + X (tau 2, no input decay), K = 3, input 2.5, 0.7, 0.4, 5.0:
# hard: H = 2.5 (amplitude 2, V=0) | 0.7 | 0.75 | 5.375 (amplitude 3 = K, V=0)
# soft: H = 2.5 (2, V=0.5) | 0.95 | 0.875 | 5.4375 (3, V=2.4375)
CASES = {
    "K=1 hard": (dict(levels=1, hard_reset=True), [1.5, 1.5, 0.5, 3.0], [0, 1, 0, 1], [0.75, 0, 0.25, 0]),
    "K=1 soft": (
        dict(levels=1, hard_reset=False),
        [1.5, 1.5, 0.5, 3.0],
        [0, 1, 0, 1],
        [0.75, 0.125, 0.3125, 0.65625],
    ),
    "K=3 hard": (
        dict(levels=3, hard_reset=True, decay_input=False),
        [2.5, 0.7, 0.4, 5.0],
        [2, 0, 0, 3],
        [0, 0.7, 0.75, 0],
    ),
    "K=3 soft": (
        dict(levels=3, hard_reset=False, decay_input=False),
        [2.5, 0.7, 0.4, 5.0],
        [2, 0, 0, 3],
        [0.5, 0.95, 0.875, 2.4375],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_membrane_and_amplitude_sequences(case):
    options, inputs, spikes, membrane = CASES[case]
    got_spikes, got_membrane = run(MultiThresholdLIF(v_threshold=1.0, tau=2.0, **options), inputs)
    assert got_spikes == spikes
    assert got_membrane == pytest.approx(membrane, abs=1e-6)


def test_multi_step_and_single_step_agree_and_reset_restores_rest():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 7) * 2
    multi = MultiThresholdLIF(levels=3, v_threshold=0.5, synaptic_filter=True, learnable_tau=True)
    single = MultiThresholdLIF(levels=3, v_threshold=0.5, synaptic_filter=True, learnable_tau=True)
    single.step_mode = "s"
    torch.testing.assert_close(multi(x), torch.stack([single(x_t) for x_t in x]), rtol=0, atol=0)
    functional.reset_net(multi)
    assert multi.v == 0.0 and multi.i_syn == 0.0


def test_synaptic_filter_sequence():
    # J = 0.5 J + 0.5 X, then H = V/2 + J (STBP form, tau 2), K = 1, hard reset, input 4, 0, 0:
    # J = 2, 1, 0.5; H = 2 (fire, V=0), 1 (fire, V=0), 0.5 (V=0.5).
    neuron = MultiThresholdLIF(decay_input=False, synaptic_filter=True, learnable_synaptic=False)
    spikes, membrane = run(neuron, [4.0, 0.0, 0.0])
    assert spikes == [1, 1, 0] and membrane == pytest.approx([0, 0, 0.5])


def rect(x: float, a: float) -> float:
    return (1 / a) * (abs(x) < a / 2)


def tri(x: float, a: float) -> float:
    return max(0.0, math.sqrt(a) / 2 - (a / 4) * abs(x))


def sig(x: float, a: float) -> float:
    return (1 / a) * math.exp(-x / a) / (1 + math.exp(-x / a)) ** 2


# Default a for V_th = 0.5: rect a = V_th, tri a = 4 / V_th^2, sigmoid a = V_th / 4.
FORMULAS = {"rect": (rect, 0.5), "tri": (tri, 16.0), "sigmoid": (sig, 0.125)}
MEMBRANE = [-0.3, 0.0, 0.3, 0.5, 0.6, 0.75, 1.0, 1.2, 1.5, 1.74, 2.3]


@pytest.mark.parametrize("shape", FORMULAS)
def test_derivative_equals_its_formula_summed_over_thresholds(shape):
    formula, a = FORMULAS[shape]
    h = torch.tensor(MEMBRANE, dtype=torch.float64, requires_grad=True)
    amplitude = MultiThresholdSpike(v_threshold=0.5, levels=3, shape=shape)(h)
    amplitude.sum().backward()
    expected = [sum(formula(u - k * 0.5, a) for k in (1, 2, 3)) for u in MEMBRANE]
    assert h.grad.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # forward: the staircase 0..K
    assert amplitude.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_hand_values_of_the_three_derivatives():
    # tri at 0.75 sits between thresholds 0.5 and 1.0: two bumps of 2 - 4 * 0.25 = 1 each.
    for shape, h, grad in (("rect", 0.6, 2.0), ("rect", 0.76, 2.0), ("tri", 0.75, 2.0), ("rect", 1.76, 0.0)):
        x = torch.tensor([h], requires_grad=True)
        MultiThresholdSpike(0.5, 3, shape)(x).sum().backward()
        assert x.grad.item() == pytest.approx(grad), (shape, h)


def test_spikingjelly_surrogate_is_summed_over_thresholds():
    # ATan(alpha=2): d/dx = (alpha/2) / (1 + (pi/2 alpha x)^2), at x = h - k V_th for k = 1, 2.
    h = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    amplitude = MultiThresholdSpike(v_threshold=0.5, levels=2, shape="atan")(h)
    amplitude.backward()
    expected = sum(1 / (1 + (math.pi * (0.7 - k * 0.5)) ** 2) for k in (1, 2))
    assert amplitude.item() == 1 and h.grad.item() == pytest.approx(expected)


def test_learnable_tau_and_synaptic_filter_receive_gradients():
    neuron = MultiThresholdLIF(levels=3, v_threshold=0.5, learnable_tau=True, synaptic_filter=True)
    assert neuron.tau() == pytest.approx(2.0) and neuron.synaptic_alpha().item() == pytest.approx(0.5)
    x = torch.rand(4, 8, 16) * 3
    neuron(x).sum().backward()
    for parameter in (neuron.w, neuron.w_syn):
        assert parameter.grad is not None and torch.isfinite(parameter.grad) and parameter.grad != 0


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="tau must be > 1"):
        MultiThresholdLIF(tau=1.0)
    with pytest.raises(ConfigError, match="surrogate 'box'"):
        MultiThresholdLIF(surrogate="box")
    with pytest.raises(ConfigError, match="levels"):
        MultiThresholdLIF(levels=0)
