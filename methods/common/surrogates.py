"""Surrogate gradients by the names configs give them: the one table every method looks them up in.

A spike is a step function of the membrane, whose derivative is zero almost everywhere; training replaces
it by a surrogate. Each entry says what a neuron can apply:

* ``bump``: one of the multi-threshold paper's three approximated derivatives (``papers.md`` §1.2, §5; the
  shapes and constants are reconstructions [R]), a unit-area bump ``f(x, a)`` of ``x = h - V_th`` with a
  default width ``a`` for the threshold; the multi-threshold neuron (``neurons.MultiThresholdLIF``) sums
  one per threshold;
* ``spikingjelly``: a spikingjelly surrogate class (its default ``alpha``), for spikingjelly's own neurons
  (``lif_sg``) and, summed the same way, for the multi-threshold neuron where there is no bump. ``sigmoid``
  has both: the multi-threshold neuron uses the bump (``a = V_th / 4``), spikingjelly's neurons
  spikingjelly's ``Sigmoid`` (``alpha = 4``: the same bump at ``a = 1/4``);
* ``stdb_decay``: spike-timing-dependent backpropagation (Rathi et al. 2020, ``papers.md`` §6) for the
  single-spike IF neuron (``neurons.SingleSpikeIF``): ``d spike / d m = alpha exp(-beta dt)`` by the steps
  ``dt`` since the neuron's spike (``True``), or ``alpha`` at every step, the straight-through ablation
  (``False``, the entry ``constant``). The steps before a neuron's spike get 0 from ``stdb`` (the "fired
  yet" gate); ``BeforeSpike`` measures the gradient that gate blocks and can pass those steps a constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import surrogate


def rectangular(x: torch.Tensor, a: float) -> torch.Tensor:
    """h1: ``(1/a) 1[|x| < a/2]``."""
    return (x.abs() < a / 2).to(x.dtype) / a


def triangular(x: torch.Tensor, a: float) -> torch.Tensor:
    """h2: ``(sqrt(a)/2 - (a/4)|x|)_+``, zero outside ``|x| < 2/sqrt(a)``."""
    return (math.sqrt(a) / 2 - (a / 4) * x.abs()).clamp(min=0)


def sigmoid_derivative(x: torch.Tensor, a: float) -> torch.Tensor:
    """h3: ``(1/a) e^{-x/a} / (1 + e^{-x/a})^2 = s (1 - s) / a`` with ``s = sigmoid(x/a)``."""
    s = torch.sigmoid(x / a)
    return s * (1 - s) / a


@dataclass(frozen=True)
class Surrogate:
    """What a surrogate name stands for (module doc); a neuron uses the part it can apply."""

    bump: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    #: The bump's default ``a`` for a threshold ``v``: every bump then has unit area and peak ``1/v``, and
    #: spreads over about one threshold step, so K bumps tile ``[v/2, (K + 1/2) v]``.
    default_a: Callable[[float], float] | None = None
    spikingjelly: type | None = None
    #: STDB: whether the surrogate decays with the steps since the spike; None: not an STDB surrogate.
    stdb_decay: bool | None = None


SURROGATES: dict[str, Surrogate] = {
    "rect": Surrogate(bump=rectangular, default_a=lambda v: v),
    "tri": Surrogate(bump=triangular, default_a=lambda v: 4 / v**2),
    "sigmoid": Surrogate(bump=sigmoid_derivative, default_a=lambda v: v / 4, spikingjelly=surrogate.Sigmoid),
    "atan": Surrogate(spikingjelly=surrogate.ATan),
    "erf": Surrogate(spikingjelly=surrogate.Erf),
    "piecewise_quadratic": Surrogate(spikingjelly=surrogate.PiecewiseQuadratic),
    "stdb": Surrogate(stdb_decay=True),
    "constant": Surrogate(stdb_decay=False),
}
#: The names the multi-threshold neuron accepts (a bump, or a spikingjelly surrogate summed over thresholds).
MULTI_THRESHOLD = tuple(name for name, s in SURROGATES.items() if s.bump or s.spikingjelly)
#: The names the single-spike IF neuron accepts.
SINGLE_SPIKE = tuple(name for name, s in SURROGATES.items() if s.stdb_decay is not None)


class STDBSpike(torch.autograd.Function):
    """Forward: the given spikes; backward: ``d spike / d m = alpha exp(-beta dt)`` where the neuron has
    spiked (``dt >= 0``), 0 before (see ``hybrid_stdb``'s module doc); ``beta=None``: ``alpha`` everywhere."""

    @staticmethod
    def forward(ctx, m, spikes, dt, alpha, beta):
        ctx.save_for_backward(dt)
        ctx.alpha, ctx.beta = alpha, beta
        return spikes

    @staticmethod
    def backward(ctx, grad_output):
        (dt,) = ctx.saved_tensors
        if ctx.beta is None:
            return grad_output * ctx.alpha, None, None, None, None
        surrogate = torch.where(dt >= 0, ctx.alpha * torch.exp(-ctx.beta * dt.clamp(min=0)), 0.0)
        return grad_output * surrogate, None, None, None, None


#: What ``BeforeSpike`` adds up in backward, in this order (a float64 tensor); the last two only where
#: something passes before the spike (else 0: the share they give is 0 anyway).
TALLY = ("grad_before", "grad_all", "steps_before", "steps_all", "passed_before", "passed_after")


class BeforeSpike(torch.autograd.Function):
    """Identity on a single-spike neuron's output ``[T, ...]`` (multi-step from rest; ``x`` its input,
    ``fired`` its state before the sequence) whose backward deals with the steps before the neuron's spike,
    where the STDB surrogate (``alpha``, ``beta``: the neuron's) gives 0 (``beta=None``: the constant
    surrogate, which gives them ``alpha``):

    * ``pass_before > 0`` passes them ``do/dm = pass_before`` (``m = u / V_th - 1``): the membrane there
      has integrated every input so far, ``u[t] = sum_{s <= t} leak^(t - s) x[s]``, so
      ``dL/dx[s] += sum_{t >= s, before t's spike} leak^(t - s) (pass_before / V_th) dL/do[t]``, on top of
      what the neuron's own backward gives;
    * ``tally`` (None, or float64 ``[len(TALLY)]``) adds, for the batch: ``|dL/do|`` summed over those
      steps and over all steps, the number of those steps and of all steps, and ``|dL/do| x do/dm`` (the
      surrogate's value) summed over those steps and over the steps from the spike on.

    Nothing is computed in the forward pass; the backward costs a few passes over the spikes.
    """

    @staticmethod
    def forward(ctx, x, spikes, fired, v_threshold, leak, alpha, beta, pass_before, tally):
        ctx.save_for_backward(spikes, fired, v_threshold)
        ctx.constants = (leak, alpha, beta, pass_before, tally)
        return spikes.view_as(spikes)

    @staticmethod
    def backward(ctx, grad):
        spikes, fired, v_threshold = ctx.saved_tensors
        leak, alpha, beta, pass_before, tally = ctx.constants
        after = spikes.cumsum(0).add_(fired)  # 1 from the neuron's spike on, 0 before it
        surrogate_before = alpha if beta is None else pass_before
        if tally is not None:
            magnitude = grad.abs()
            on_all = magnitude.sum()
            on_before = on_all - torch.dot(magnitude.flatten(), after.flatten())
            steps_before = after.numel() - after.sum()
            passed_after = torch.zeros_like(on_all)  # left 0 where nothing passes before the spike
            if surrogate_before:
                surrogate, decay = torch.zeros_like(after[0]), math.exp(-(beta or 0.0))
                for t in range(len(spikes)):  # alpha exp(-beta dt) from the spike on, dt = 0 at its step
                    surrogate.mul_(decay).add_(spikes[t], alpha=alpha)
                    passed_after += torch.dot(magnitude[t].flatten(), surrogate.flatten())
            totals = [on_before, on_all, steps_before, torch.full_like(on_all, after.numel())]
            tally += torch.stack([*totals, on_before * surrogate_before, passed_after]).double()
        grad_x = None
        if pass_before:
            before = after.neg_().add_(1).mul_(pass_before / v_threshold.to(grad.dtype))
            current = grad * before  # dL/du[t] on the steps before the spike
            grad_x, carried = torch.empty_like(current), torch.zeros_like(current[0])
            for t in range(len(current) - 1, -1, -1):  # u[t] took x[s <= t], each leak^(t - s)
                carried.mul_(leak).add_(current[t])
                grad_x[t] = carried
        return grad_x, grad, None, None, None, None, None, None, None
