"""The multi-threshold LIF neuron shared by ``multi_threshold``, ``compressed_event`` and later methods.

One spikingjelly ``BaseNode`` covers the Xidian group's neurons (``papers.md`` §1.6): K thresholds
``k * V_th`` (k = 1..K), so a spike carries an integer amplitude ``m = sum_k H(h - k V_th)`` in 0..K
(K = 1 is the ordinary binary LIF); hard or soft reset; a fixed or learnable membrane time constant (PLIF
parametrisation ``1/tau = sigmoid(w)``, Fang et al. 2021); and an optional synaptic-current filter in front
of the membrane (``J[t] = alpha J[t-1] + (1 - alpha) X[t]``, ``alpha = sigmoid(w_s)`` learnable). Per step:

* filter (optional): ``J[t] = alpha J[t-1] + (1 - alpha) X[t]``, and ``J`` replaces ``X`` below;
* charge: ``H[t] = V[t-1] + (X[t] - V[t-1]) / tau`` (``decay_input``, PLIF form) or
  ``H[t] = (1 - 1/tau) V[t-1] + X[t]`` (STBP form: ``k_tau = 1 - 1/tau``, e.g. tau = 1.25 for k_tau 0.2);
* fire: ``O[t] = sum_{k=1..K} H(H[t] - k V_th)``;
* reset: hard ``V[t] = H[t] (1 - min(O[t], 1))`` (to 0 once any threshold is crossed) or soft
  ``V[t] = H[t] - V_th O[t]``; detached from the graph by default, as spikingjelly's ``detach_reset``.

The backward pass replaces ``dO/dH`` by one of the multi-threshold paper's three approximated derivatives,
each a unit-area bump summed over the K thresholds (``papers.md`` §1.2, §5), or by a spikingjelly surrogate
summed the same way. The papers' own shapes and constants are not available; the forms below follow
their STBP lineage and are reconstructions [R].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from spikingjelly.activation_based import surrogate
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from bench.errors import ConfigError


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


#: The paper's three shapes and the default ``a`` for a threshold ``v``: every bump then has unit area and
#: peak ``1/v``, and spreads over about one threshold step, so K bumps tile ``[v/2, (K + 1/2) v]``.
DERIVATIVES: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], Callable[[float], float]]] = {
    "rect": (rectangular, lambda v: v),
    "tri": (triangular, lambda v: 4 / v**2),
    "sigmoid": (sigmoid_derivative, lambda v: v / 4),
}
#: spikingjelly surrogates (their default ``alpha``), applied at every threshold and summed.
SPIKINGJELLY_SURROGATES = {
    "atan": surrogate.ATan,
    "erf": surrogate.Erf,
    "piecewise_quadratic": surrogate.PiecewiseQuadratic,
}
SURROGATES = (*DERIVATIVES, *SPIKINGJELLY_SURROGATES)


class _StaircaseSpike(torch.autograd.Function):
    """Forward: the amplitude ``sum_k H(h - k v)``; backward: ``sum_k derivative(h - k v, a)``."""

    @staticmethod
    def forward(ctx, h, v_threshold, levels, derivative, a):
        ctx.save_for_backward(h)
        ctx.params = (v_threshold, levels, derivative, a)
        amplitude = (h >= v_threshold).to(h.dtype)
        for k in range(2, levels + 1):
            amplitude += h >= k * v_threshold
        return amplitude

    @staticmethod
    def backward(ctx, grad_output):
        (h,) = ctx.saved_tensors
        v_threshold, levels, derivative, a = ctx.params
        slope = derivative(h - v_threshold, a)
        for k in range(2, levels + 1):
            slope += derivative(h - k * v_threshold, a)
        return grad_output * slope, None, None, None, None


class MultiThresholdSpike(nn.Module):
    """Membrane ``h`` -> spike amplitude in 0..K, with the chosen approximated derivative."""

    def __init__(
        self, v_threshold: float = 1.0, levels: int = 1, shape: str = "rect", a: float | None = None
    ):
        super().__init__()
        if shape not in SURROGATES:
            raise ConfigError(f"surrogate {shape!r} is not supported; use one of {list(SURROGATES)}.")
        if int(levels) < 1:
            raise ConfigError(f"the number of thresholds (levels) must be >= 1, got {levels}.")
        if a is not None and a <= 0:
            raise ConfigError(f"the surrogate width/sharpness a must be > 0, got {a}.")
        self.v_threshold, self.levels, self.shape = float(v_threshold), int(levels), shape
        if shape in DERIVATIVES:
            self.derivative, default_a = DERIVATIVES[shape]
            self.a = float(default_a(self.v_threshold) if a is None else a)
        else:
            self.surrogate = (
                SPIKINGJELLY_SURROGATES[shape]() if a is None else SPIKINGJELLY_SURROGATES[shape](a)
            )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.shape in DERIVATIVES:
            return _StaircaseSpike.apply(h, self.v_threshold, self.levels, self.derivative, self.a)
        amplitude = self.surrogate(h - self.v_threshold)
        for k in range(2, self.levels + 1):
            amplitude = amplitude + self.surrogate(h - k * self.v_threshold)
        return amplitude

    def extra_repr(self) -> str:
        a = f", a={self.a:g}" if self.shape in DERIVATIVES else ""
        return f"v_threshold={self.v_threshold}, levels={self.levels}, shape={self.shape}{a}"


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class MultiThresholdLIF(BaseNode):
    """Multi-threshold LIF (K levels), hard/soft reset, optional learnable tau and synaptic filter."""

    def __init__(
        self,
        levels: int = 1,
        v_threshold: float = 1.0,
        tau: float = 2.0,
        decay_input: bool = True,
        learnable_tau: bool = False,
        hard_reset: bool = True,
        surrogate: str = "rect",
        surrogate_a: float | None = None,
        detach_reset: bool = True,
        synaptic_filter: bool = False,
        synaptic_alpha: float = 0.5,
        learnable_synaptic: bool = True,
        step_mode: str = "m",
    ):
        if not tau > 1:
            raise ConfigError(f"the membrane time constant tau must be > 1 (decay 1 - 1/tau), got {tau}.")
        if not 0 < synaptic_alpha < 1:
            raise ConfigError(f"synaptic_alpha must lie in (0, 1), got {synaptic_alpha}.")
        spike = MultiThresholdSpike(v_threshold, levels, surrogate, surrogate_a)
        super().__init__(float(v_threshold), 0.0 if hard_reset else None, spike, detach_reset, step_mode)
        self.levels, self.decay_input, self.synaptic_filter = int(levels), bool(decay_input), synaptic_filter
        if learnable_tau:  # 1/tau = sigmoid(w), initialised at tau (spikingjelly's ParametricLIFNode)
            self.w = nn.Parameter(torch.tensor(-math.log(tau - 1.0)))
        else:
            self.inverse_tau = 1.0 / float(tau)
        if synaptic_filter:
            self.register_memory("i_syn", 0.0)
            if learnable_synaptic:
                self.w_syn = nn.Parameter(torch.tensor(_logit(synaptic_alpha)))
            else:
                self.alpha = float(synaptic_alpha)

    def tau(self) -> float:
        """The current membrane time constant (learnt or fixed)."""
        inverse_tau = self._inverse_tau()
        return 1 / float(inverse_tau.detach() if isinstance(inverse_tau, torch.Tensor) else inverse_tau)

    def _inverse_tau(self):
        return self.w.sigmoid() if hasattr(self, "w") else self.inverse_tau

    def synaptic_alpha(self):
        """The synaptic filter's coefficient (learnt or fixed); None without a filter."""
        if not self.synaptic_filter:
            return None
        return self.w_syn.sigmoid() if hasattr(self, "w_syn") else self.alpha

    def materialize_states(self, inputs, states, step_mode):
        states = super().materialize_states(inputs, states, step_mode)
        if self.synaptic_filter and not isinstance(states[1], torch.Tensor):
            states = (states[0], torch.zeros_like(states[0]))
        return states

    def _step(self, x, states, inverse_tau, alpha):
        v = states[0]
        if self.synaptic_filter:
            current = alpha * states[1] + (1 - alpha) * x
            x = current
        h = v + (x - v) * inverse_tau if self.decay_input else v - v * inverse_tau + x
        spike = self.surrogate_function(h)
        fired = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            v = h - self.v_threshold * fired
        else:
            v = h * (1 - (fired if self.levels == 1 else fired.clamp(max=1)))
        return spike, ((v, current) if self.synaptic_filter else (v,))

    def single_step_functional_forward(self, inputs, states, **kwargs):
        spike, states = self._step(inputs[0], states, self._inverse_tau(), self.synaptic_alpha())
        return (spike,), states

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        inverse_tau, alpha = self._inverse_tau(), self.synaptic_alpha()  # once per sequence, not per step
        spikes = []
        for x in inputs[0]:
            spike, states = self._step(x, states, inverse_tau, alpha)
            spikes.append(spike)
        return (torch.stack(spikes),), states

    def extra_repr(self) -> str:
        filt = ", synaptic_filter" if self.synaptic_filter else ""
        tau = "learnable" if hasattr(self, "w") else f"{1 / self.inverse_tau:g}"
        return (
            f"{super().extra_repr()}, levels={self.levels}, tau={tau}, decay_input={self.decay_input}{filt}"
        )


class RateCodedOutput:
    """Mixin for methods whose classifier is a voting population of K-level neurons.

    The logits are the population's firing rate ``count / (T K)`` in [0, 1]; the loss is the MSE to the
    one-hot label (STBP / PLIF) or cross-entropy on the rate.
    """

    LOSSES = ("mse", "ce")

    def set_rate_output(self, levels: int, loss: str, voting: int) -> None:
        if loss not in self.LOSSES:
            raise ConfigError(f"method.loss={loss!r} is not supported; use one of {self.LOSSES}.")
        if int(voting) < 1:
            raise ConfigError(f"method.voting must be >= 1 output neurons per class, got {voting}.")
        self.levels, self.loss = int(levels), loss

    def readout(self, output_seq: torch.Tensor) -> torch.Tensor:
        """Voting-population spike amplitudes ``[T, B, classes]`` -> firing rate ``count / (T K)``."""
        return output_seq.mean(0) / self.levels

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "mse":
            one_hot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
            return torch.nn.functional.mse_loss(logits, one_hot)
        return torch.nn.functional.cross_entropy(logits, target)
