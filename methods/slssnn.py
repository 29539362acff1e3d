"""``slssnn``: spike-train level SNN with spatio-temporal conversion blocks (STCBs), no BPTT.

Paper: C. Xu, Y. Liu, Y. Yang, "SLSSNN: High energy efficiency spike-train level spiking neural networks
with spatio-temporal conversion" (first titled "STCSNN: ..."), arXiv 2307.07136. See ``papers.md`` §2.

Follows the paper (its abstract, verified): spatio-temporal conversion blocks replace the convolutional
and ReLU layers so that the network keeps the low-power (spike-driven, AC-only) character of an SNN; the
network is trained at spike-train level with a learning rule built from the equivalent gradient of the
STCB, since spike trains are not differentiable; few time steps (T = 1, 2, 4 here).

Reconstructions [R] (``papers.md`` §2; the paper's equations, architectures and constants were not
available):

* STCB, spatial step: ``I[t] = Conv(S[t])`` for the input trains ``S[t]``, t = 1..T (ACs on spikes);
  temporal-to-spatial step: ``A = BN(sum_t I[t])``, one spatial quantity per neuron; spatial-to-temporal
  step: an integrate-and-fire neuron with soft reset (``v <- v - V_th s``), fed ``A / T`` at each of the T
  steps, re-emits a train with ``n = clip(floor(A / V_th), 0, T)`` evenly spread spikes. The block is a
  (T+1)-level quantised ReLU of a conv.
* equivalent gradient, on the count, so there is no backpropagation through time:
  ``dn/dA = 1/V_th`` for ``0 <= A < T V_th``, else 0 (the clipped floor's straight-through estimator);
  the gradient reaching the count is the mean over t of the gradients reaching ``S[t]`` (every layer
  downstream depends on a train only through its count, so those are all equal), and ``dL/dS^{l-1}[t]``
  is the transposed conv of ``dL/dA`` at every t.
  At T = 1 the window is ``[0, V_th)``: a neuron that fires (``A >= V_th``) gets no gradient at all, and
  the block is a 2-level quantised ReLU of a conv; slssnn at T = 1 is in effect a binary-activation ANN
  trained by a straight-through estimator that stops at the threshold, with nothing spike-train level
  left in it. Its design range (``bench list``) still includes T = 1, the papers.md setting.
* networks: ``32C3-AP2-64C3-AP2-256FC`` for 1-2 channel inputs up to 34 pixels (the ``ann`` baseline's
  widths); VGG-11's convolution stack for larger and colour inputs, with a ``32C3-AP2`` stem above 34
  pixels and input average pooling above 64 pixels (``papers.md`` suggests ResNet-34 / VGG-16 for
  64x64, too slow for a CPU suite); average pooling throughout, since it commutes with the sum over t and
  keeps the whole network a function of spike counts. The classifier is a linear layer on the last spike
  trains; ``readout="potential"`` (default) takes its output summed over t / T (the output neurons'
  membrane, no firing) as logits; ``readout="spikes"`` makes it an STCB too and uses its spike count / T
  (``papers.md``'s suggestion), under which a silent correct class gets no gradient.
* ``V_th`` = 0.5: with BN's unit variance, T = 4 covers ``A`` in [0, 2) in steps of 0.5.

Energy: conv1 sees the analog image, the same at every step: it is convolved once and the result counted T
times (``BN(sum_t conv(x)) = BN(T conv(x))``, so ``T_analog = 1``); later layers binary trains
(ACs) or average-pooled ones (NeuroBench's effective MACs by default, ``metrics.pooled_spikes``); the IF
neurons are spikingjelly nodes, so the metrics callback counts their T updates and spikes. Event data
(config): T = 2 steps, each the event counts of half the fine frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from spikingjelly.activation_based import layer
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from bench.errors import ConfigError
from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.networks import output_features, parse_layers, sized_layers

SMALL_NET = "32C3-AP2-64C3-AP2-256FC"
VGG11 = "64C3-AP2-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3"
READOUTS = ("potential", "spikes")


def default_layers(input_shape: Sequence[int]) -> str:
    """Small net for 1-2 channel inputs up to 34 pixels, else VGG-11 (+ stem / input pooling)."""
    return sized_layers(input_shape, SMALL_NET, VGG11, stem="32C3-AP2")


class _SpikeTrainIF(torch.autograd.Function):
    """Forward: IF with soft reset over the T steps; backward: the STCB's equivalent gradient."""

    @staticmethod
    def forward(ctx, current, v, v_threshold):
        total = v + current.sum(0)
        ctx.save_for_backward(total)
        ctx.v_threshold = v_threshold
        spikes = []
        for x in current:
            v = v + x
            spike = (v >= v_threshold).to(x.dtype)
            v = v - v_threshold * spike
            spikes.append(spike)
        ctx.mark_non_differentiable(v)
        return torch.stack(spikes), v

    @staticmethod
    def backward(ctx, grad_spikes, grad_v):
        (total,) = ctx.saved_tensors
        steps, v_threshold = grad_spikes.shape[0], ctx.v_threshold
        window = ((total >= 0) & (total < steps * v_threshold)).to(total.dtype)
        grad_count = grad_spikes.mean(0)  # the train enters later layers only through its count
        grad_total = grad_count * window / v_threshold
        return grad_total.expand_as(grad_spikes), None, None


class SpikeTrainIF(BaseNode):
    """IF neuron (soft reset) trained by the equivalent gradient ``dn/dA = 1/V_th`` on ``[0, T V_th)``,
    where ``A`` is the total input of the T steps and ``n`` the spike count: no BPTT."""

    def __init__(self, v_threshold: float = 0.5):
        if not v_threshold > 0:
            raise ConfigError(f"method.v_threshold must be > 0, got {v_threshold}.")
        super().__init__(float(v_threshold), None, None, False, "m")

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        spikes, v = _SpikeTrainIF.apply(inputs[0], states[0], self.v_threshold)
        return (spikes,), (v, *states[1:])

    def single_step_functional_forward(self, inputs, states, **kwargs):
        spikes, v = _SpikeTrainIF.apply(inputs[0].unsqueeze(0), states[0], self.v_threshold)
        return (spikes[0],), (v, *states[1:])


class STCB(nn.Module):
    """Spatio-temporal conversion block: trains ``[T, B, ...]`` -> ``A = BN(sum_t synapse(S[t]))`` -> an IF
    neuron fed ``A / T`` per step -> trains ``[T, B, ...]`` with ``clip(floor(A / V_th), 0, T)`` spikes."""

    def __init__(self, synapse: nn.Module, norm: nn.Module, v_threshold: float):
        super().__init__()
        self.synapse, self.norm, self.neuron = synapse, norm, SpikeTrainIF(v_threshold)

    def spatial(self, spikes: torch.Tensor) -> torch.Tensor:
        """The temporal-to-spatial conversion: ``A = BN(sum_t synapse(S[t]))``. An input that is the same
        tensor at every step (the static image expanded over T: stride 0 in time) is convolved once,
        ``BN(T synapse(x))``: the same sum, one T-th of the MACs."""
        steps = spikes.shape[0]
        if steps > 1 and spikes.stride(0) == 0:
            return self.norm(steps * self.synapse(spikes[:1]).squeeze(0))
        return self.norm(self.synapse(spikes).sum(0))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        steps = spikes.shape[0]
        total = self.spatial(spikes)
        return self.neuron((total / steps).expand(steps, *total.shape))


def stcb_network(
    input_shape: Sequence[int], num_classes: int, layers: str, v_threshold: float, readout: str
) -> nn.Sequential:
    """STCBs from a layer string (``64C3`` conv block, ``AP2`` average pooling, ``256FC`` linear block),
    then a linear classifier on the last trains (an STCB itself for ``readout="spikes"``)."""
    blocks: list[nn.Module] = []
    why = ": max pooling is not a function of spike counts, and STCBs integrate whole trains"
    parsed = parse_layers(layers, input_shape, allowed="C AP FC", why=why)
    for spec in parsed:
        if spec.kind == "C":
            conv = layer.Conv2d(
                spec.inputs, spec.size, spec.kernel, padding=spec.kernel // 2, bias=False, step_mode="m"
            )
            blocks.append(STCB(conv, nn.BatchNorm2d(spec.size), v_threshold))
        elif spec.kind == "AP":
            blocks.append(layer.AvgPool2d(spec.kernel, step_mode="m"))
        else:
            blocks += [layer.Flatten(step_mode="m")] if spec.flattens else []
            linear = layer.Linear(spec.inputs, spec.size, bias=False, step_mode="m")
            blocks.append(STCB(linear, nn.BatchNorm1d(spec.size), v_threshold))
    if not any(spec.kind == "FC" for spec in parsed):
        blocks.append(layer.Flatten(step_mode="m"))
    flat = output_features(parsed, input_shape)
    if readout == "spikes":
        linear = layer.Linear(flat, num_classes, bias=False, step_mode="m")
        blocks.append(STCB(linear, nn.BatchNorm1d(num_classes), v_threshold))
    else:
        blocks.append(layer.Linear(flat, num_classes, step_mode="m"))
    return nn.Sequential(*blocks)


@register_method("slssnn")
class SLSSNN(BenchMethod):
    """Spike-train level SNN of STCBs, trained by the STCB's equivalent gradient (no BPTT): each
    block convolves its input's spike counts once and re-emits them as a train.

    The base class's readout (mean over t of the classifier output) gives the logits for both readouts."""

    design = {"static": (1, 4), "event": (1, 10)}
    design_basis = "papers.md section 2: T = 1, 2, 4; DVS-CIFAR10 with 10 frames"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int = 4,
        frames: int | None = None,
        layers: str = "auto",
        v_threshold: float = 0.5,
        readout: str = "potential",
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, frames=frames, **optim)
        if readout not in READOUTS:
            raise ConfigError(f"method.readout={readout!r} is not supported; use one of {READOUTS}.")
        spec = default_layers(input_shape) if layers == "auto" else layers
        self.net = stcb_network(input_shape, num_classes, spec, float(v_threshold), readout)
