"""The fused multi-step neurons equal their per-step references, values and gradients.

Every option combination runs twice in float64: the fused sequence node (the default in multi-step mode)
and the reference (``fused=False``: one autograd graph per step), each over two consecutive calls, so the
second starts from the non-zero state the first left. Spikes, states and the gradients of both inputs
and of ``w`` / ``w_syn`` must agree to float64 rounding. The same for hybrid_stdb's ``SingleSpikeIF``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from spikingjelly.activation_based import functional

from methods.common.neurons import MultiThresholdLIF, SingleSpikeIF, _fire
from methods.common.surrogates import MULTI_THRESHOLD

FILTERS = {"no filter": {}, "learnt alpha": dict(synaptic_filter=True), "fixed alpha": {}}
FILTERS["fixed alpha"] = dict(synaptic_filter=True, learnable_synaptic=False, synaptic_alpha=0.3)
STRUCTURE = list(
    itertools.product(
        (1, 3),  # levels
        ("hard", "soft"),
        (True, False),  # decay_input
        (True, False),  # learnable_tau
        FILTERS,
        (True, False),  # detach_reset
    )
)


def run_twice(
    neuron: MultiThresholdLIF, inputs: tuple[torch.Tensor, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Spikes, states and gradients of a weighted loss over two consecutive calls."""
    x1, x2 = (x.clone().requires_grad_(True) for x in inputs)
    weights = torch.linspace(-1.0, 2.0, x1.numel(), dtype=x1.dtype).reshape(x1.shape)
    out1 = neuron(x1)
    v1 = neuron.v.detach().clone()
    out2 = neuron(x2)
    loss = (out1 * weights).sum() + (out2 * weights.flip(0)).sum() + 0.3 * neuron.v.sum()
    result = {"out1": out1, "out2": out2, "v1": v1, "v2": neuron.v}
    if neuron.synaptic_filter:
        loss = loss + 0.2 * neuron.i_syn.sum()
        result["i_syn"] = neuron.i_syn
    loss.backward()
    result.update(grad_x1=x1.grad, grad_x2=x2.grad)
    for name, parameter in neuron.named_parameters():
        result[f"grad_{name}"] = parameter.grad
    return {name: value.detach() for name, value in result.items()}


@pytest.mark.parametrize("shape", MULTI_THRESHOLD)
@pytest.mark.parametrize("levels, reset, decay_input, learnable_tau, filt, detach_reset", STRUCTURE)
def test_fused_equals_reference(levels, reset, decay_input, learnable_tau, filt, detach_reset, shape):
    # A power-of-two threshold takes the floor() staircase, any other the K comparisons: cover both.
    v_threshold = 0.5 if decay_input else 0.75
    options = dict(
        levels=levels,
        v_threshold=v_threshold,
        tau=1.7,
        decay_input=decay_input,
        learnable_tau=learnable_tau,
        hard_reset=reset == "hard",
        surrogate=shape,
        detach_reset=detach_reset,
        **FILTERS[filt],
    )
    generator = torch.Generator().manual_seed(levels * 7 + len(shape))
    inputs = tuple(
        torch.randn(5, 3, 4, 4, generator=generator, dtype=torch.float64) * 1.5 + 1.0 for _ in "12"
    )
    fused = run_twice(MultiThresholdLIF(**options).double(), inputs)
    reference = run_twice(MultiThresholdLIF(fused=False, **options).double(), inputs)
    assert fused.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(fused[name], reference[name], rtol=1e-10, atol=1e-12, msg=name)
    spikes = torch.cat([fused["out1"], fused["out2"]])
    assert spikes.min() == 0 and spikes.max() == levels  # silent and saturated neurons occur
    if levels > 1:
        assert (spikes == 2).any()  # graded spikes occur, so a wrong staircase would fail
    assert fused["grad_x1"].abs().sum() > 0  # the surrogate window was hit


def test_the_module_takes_the_fused_path_by_default_and_the_reference_on_request():
    x = torch.rand(3, 2, 5, requires_grad=True)
    assert "Fused" in type(MultiThresholdLIF(levels=3)(x).grad_fn).__name__
    assert "Fused" not in type(MultiThresholdLIF(levels=3, fused=False)(x).grad_fn).__name__


def test_single_step_mode_and_reset_agree_with_the_fused_sequence():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 7, dtype=torch.float64) * 2
    options = dict(levels=3, v_threshold=0.6, synaptic_filter=True, learnable_tau=True, hard_reset=False)
    multi, single = MultiThresholdLIF(**options), MultiThresholdLIF(step_mode="s", **options)
    torch.testing.assert_close(multi(x), torch.stack([single(x_t) for x_t in x]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(multi.v, single.v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(multi.i_syn, single.i_syn, rtol=1e-12, atol=1e-12)
    functional.reset_net(multi)
    assert multi.v == 0.0 and multi.i_syn == 0.0


def test_a_new_batch_shape_restarts_the_synaptic_current():
    neuron = MultiThresholdLIF(synaptic_filter=True)
    neuron(torch.rand(2, 4, 3))
    assert neuron(torch.rand(2, 5, 3)).shape == (2, 5, 3) and neuron.i_syn.shape == (5, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reduced_precision_follows_the_input_dtype(dtype):
    neuron = MultiThresholdLIF(levels=3, learnable_tau=True, synaptic_filter=True, hard_reset=False)
    x = (torch.rand(4, 2, 6) * 4).to(dtype).requires_grad_(True)
    out = neuron(x)
    out.float().sum().backward()
    assert out.dtype == neuron.v.dtype == neuron.i_syn.dtype == x.grad.dtype == dtype
    assert neuron.w.grad.dtype == neuron.w_syn.grad.dtype == torch.float32
    assert torch.isfinite(neuron.w.grad) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("v_threshold", [0.5, 1.0, 0.3, 0.75])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_fire_staircase_equals_threshold_comparisons(v_threshold, dtype):
    # exactly at, and one ulp either side of, every threshold
    levels = 4
    points = torch.tensor([k * v_threshold for k in range(levels + 2)], dtype=dtype)
    eps = torch.finfo(dtype).eps
    h = torch.cat([points, points * (1 + eps), points * (1 - eps), -points, torch.randn(50, dtype=dtype) * 3])
    expected = sum((h >= k * v_threshold).to(dtype) for k in range(1, levels + 1))
    assert torch.equal(_fire(h, v_threshold, levels, torch.empty_like(h)), expected)


@pytest.mark.parametrize("leak", [1.0, 0.9])
@pytest.mark.parametrize("beta", [0.5, None])  # the STDB surrogate, and the constant one
@pytest.mark.parametrize("v_threshold", [1.0, 0.7])
def test_fused_single_spike_if_equals_its_per_step_reference(leak, beta, v_threshold):
    """hybrid_stdb's neuron: fused sequence node against the per-step graph, over two chained calls."""
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.rand(5, 3, 4, 4, generator=generator, dtype=torch.float64) * 0.8 - 0.1 for _ in "12"]
    results = []
    for fused in (True, False):
        neuron = SingleSpikeIF(v_threshold=v_threshold, leak=leak, beta=beta, fused=fused).double()
        x1, x2 = (x.clone().requires_grad_(True) for x in inputs)
        out1 = neuron(x1)
        state1 = (neuron.v.detach().clone(), neuron.fired.clone(), neuron.dt.clone())
        out2 = neuron(x2)
        weights = torch.linspace(-1.0, 2.0, out1.numel(), dtype=torch.float64).reshape(out1.shape)
        ((out1 * weights).sum() + (out2 * weights.flip(0)).sum() + 0.3 * neuron.v.sum()).backward()
        results.append((out1, out2, *state1, neuron.v.detach(), neuron.fired, neuron.dt, x1.grad, x2.grad))
    for fused, reference in zip(*results, strict=True):
        torch.testing.assert_close(fused, reference, rtol=1e-10, atol=1e-12)
    out1, out2, _, fired1, *_ = results[0]
    assert 0 < fired1.float().mean() < 1 and out2.sum() > 0  # some fire in each call, some stay silent
    assert torch.cat([out1, out2]).sum(0).max() == 1  # at most once
