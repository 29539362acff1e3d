"""The spiking neurons methods build on (spikingjelly ``BaseNode`` subclasses, multi-step ``[T, B, ...]``).

* ``MultiThresholdLIF``: the multi-threshold LIF of ``multi_threshold``, ``compressed_event`` and
  ``albsnn`` (below);
* ``SingleSpikeIF``: the integrate-and-fire neuron that fires at most once per sample, trained through the
  STDB surrogate, of ``hybrid_stdb`` (its equations and which parts are reconstructions: that module's
  doc), with its ANN-twin mode for ANN-to-SNN conversion (``methods/common/conversion.py``);
* ``RateCodedOutput``: the mixin of methods whose classifier is a voting population of multi-threshold
  neurons (the rate readout, its loss, and the network builder they share).

Both neurons have a per-step reference and a fused multi-step autograd node that the tests hold equal to it
(``tests/test_fused_neuron.py``). Their surrogate gradients are looked up by name in
``methods/common/surrogates.py``.

**Multi-threshold LIF.** One neuron covers the Xidian group's neurons (``papers.md`` §1.6): K thresholds
``k * V_th`` (k = 1..K), so a spike carries an integer amplitude ``m = sum_k H(h - k V_th)`` in 0..K
(K = 1 is the ordinary binary LIF); hard or soft reset; a fixed or learnable membrane time constant (PLIF
parametrisation ``1/tau = sigmoid(w)``, Fang et al. 2021); an optional synaptic-current filter in front
of the membrane (``J[t] = alpha J[t-1] + (1 - alpha) X[t]``, ``alpha = sigmoid(w_s)`` learnable); and a
fixed input gain ``g`` (default 1). Per step:

* input gain: ``X[t] <- g X[t]`` (a constant; ``compressed_event`` sets ``g = 1 - alpha_0`` when its
  filter is ablated, so that variant keeps the filter's first-step gain);
* filter (optional): ``J[t] = alpha J[t-1] + (1 - alpha) X[t]``, and ``J`` replaces ``X`` below;
* charge: ``H[t] = V[t-1] + (X[t] - V[t-1]) / tau`` (``decay_input``, PLIF form) or
  ``H[t] = (1 - 1/tau) V[t-1] + X[t]`` (STBP form: ``k_tau = 1 - 1/tau``, e.g. tau = 1.25 for k_tau 0.2);
* fire: ``O[t] = sum_{k=1..K} H(H[t] - k V_th)``;
* reset: hard ``V[t] = H[t] (1 - min(O[t], 1))`` (to 0 once any threshold is crossed) or soft
  ``V[t] = H[t] - V_th O[t]``; detached from the graph by default, as spikingjelly's ``detach_reset``.

The backward pass replaces ``dO/dH`` by one of the multi-threshold paper's three approximated derivatives,
each a unit-area bump summed over the K thresholds (``papers.md`` §1.2, §5), or by a spikingjelly surrogate
summed the same way (``methods/common/surrogates.py``). The papers' own shapes and constants are not
available; the forms follow their STBP lineage and are reconstructions [R].

Two implementations of the same equations. The per-step reference (``_step``) builds an autograd graph of
a dozen small ops per step; single-step mode, ``store_v_seq=True`` (spikingjelly records ``v_seq`` step by
step) and ``fused=False`` use it. Multi-step mode uses by default ``_FusedMultiThresholdLIF``, one autograd
node for the whole ``[T, ...]`` sequence: its forward runs the recurrence without recording and keeps only
``H[t]``, ``V[t]`` and (filter on) ``J[t]``, and its backward runs the recurrence in reverse by hand, giving
``dL/dX[t]``, ``dL/d(1/tau)`` and ``dL/dalpha`` (autograd takes them on through the sigmoids to ``w`` and
``w_syn``) and the gradients of the incoming states, so calls chained without ``reset_net`` stay
differentiable across calls. Every option combination is fused (K, hard/soft reset, ``decay_input``,
fixed/learnt tau, no/fixed/learnt filter, ``detach_reset``, all six surrogates); the tests hold it equal
to the reference in float64, values and gradients. On a CPU, forward + backward is about 2x faster than
the reference at K = 3 (1.1-1.4x at K = 1; ``benchmarks/neuron_speed.py``): far fewer tensors are written
and no graph is built. Its ops are plain torch ops, so it runs on any device and computes in the dtype the
input arrives in (float16/bfloat16 too, with the ``tau``/``alpha`` gradients accumulated in float32);
autocast is switched off inside it, so nothing is recast.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from bench.errors import ConfigError
from methods.common.networks import layer_stack
from methods.common.surrogates import MULTI_THRESHOLD, SURROGATES, STDBSpike


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
        if shape not in MULTI_THRESHOLD:
            raise ConfigError(f"surrogate {shape!r} is not supported; use one of {list(MULTI_THRESHOLD)}.")
        if int(levels) < 1:
            raise ConfigError(f"the number of thresholds (levels) must be >= 1, got {levels}.")
        if a is not None and a <= 0:
            raise ConfigError(f"the surrogate width/sharpness a must be > 0, got {a}.")
        self.v_threshold, self.levels, self.shape = float(v_threshold), int(levels), shape
        entry = SURROGATES[shape]
        self.derivative = entry.bump  # None: the spikingjelly surrogate, summed over the thresholds
        if self.derivative is not None:
            self.a = float(entry.default_a(self.v_threshold) if a is None else a)
        else:
            self.surrogate = entry.spikingjelly() if a is None else entry.spikingjelly(a)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.derivative is not None:
            return _StaircaseSpike.apply(h, self.v_threshold, self.levels, self.derivative, self.a)
        amplitude = self.surrogate(h - self.v_threshold)
        for k in range(2, self.levels + 1):
            amplitude = amplitude + self.surrogate(h - k * self.v_threshold)
        return amplitude

    def extra_repr(self) -> str:
        a = f", a={self.a:g}" if self.derivative is not None else ""
        return f"v_threshold={self.v_threshold}, levels={self.levels}, shape={self.shape}{a}"


def _is_power_of_two(value: float) -> bool:
    return value > 0 and math.frexp(value)[0] == 0.5


class _SlopeSum:
    """``sum_k f(h - k V_th)`` for one surrogate shape, as an unscaled sum and one constant factor.

    The factor (``1/a`` for rect, ``alpha/2`` for atan, ...) is applied once by the caller (folded into an
    ``addcmul``), and each bump costs a few in-place ops on one scratch buffer: on a CPU an elementwise op
    over a layer is memory-bound, so the op count is the cost.
    """

    def __init__(self, shape: str, a: float, levels: int, v_threshold: float):
        self.shape, self.levels, self.v_threshold = shape, levels, v_threshold
        if shape == "rect":  # (1/a) 1[|x| < a/2]
            self.scale, self.inner = 1 / a, a / 2
        elif shape == "tri":  # (a/4) (2/sqrt(a) - |x|)_+
            self.scale, self.inner = -a / 4, 2 / math.sqrt(a)
        elif shape == "sigmoid":  # (1/a) s (1 - s), s = sigmoid(x / a)
            self.scale, self.inner = 1 / a, 1 / a
        elif shape == "atan":  # (alpha/2) / (1 + (pi/2 alpha x)^2)
            self.scale, self.inner = a / 2, math.pi / 2 * a
        elif shape == "erf":  # (alpha/sqrt(pi)) exp(-(alpha x)^2)
            self.scale, self.inner = a / math.sqrt(math.pi), a
        elif shape == "piecewise_quadratic":  # alpha^2 (1/alpha - |x|)_+
            self.scale, self.inner = -a * a, 1 / a
        else:  # pragma: no cover - MultiThresholdSpike validates the shape
            raise ConfigError(f"surrogate {shape!r} has no fused derivative.")

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        shape, inner = self.shape, self.inner
        scaled = shape in ("sigmoid", "atan", "erf")
        base = h * inner if scaled else h  # the bumps of these shapes depend on inner * (h - k V_th) only
        total = None
        for k in range(1, self.levels + 1):
            offset = k * self.v_threshold * (inner if scaled else 1.0)
            x = torch.sub(base, offset)
            if shape == "rect":
                torch.lt(x.abs_(), inner, out=x)
            elif shape in ("tri", "piecewise_quadratic"):
                x.abs_().sub_(inner).clamp_(max=0)  # -(inner - |x|)_+: the sign sits in the scale
            elif shape == "sigmoid":
                x.sigmoid_()
                x = x.addcmul_(x, x, value=-1) if total is None else total.add_(x).addcmul_(x, x, value=-1)
                total = x
                continue
            elif shape == "atan":
                x.square_().add_(1).reciprocal_()
            else:  # erf
                x.square_().neg_().exp_()
            total = x if total is None else total.add_(x)
        return total


def _fire(h: torch.Tensor, v_threshold: float, levels: int, out: torch.Tensor) -> torch.Tensor:
    """The amplitude ``sum_k 1[h >= k V_th]`` into ``out``.

    With a power-of-two threshold ``h / V_th`` is exact, so ``clamp(floor(h / V_th), 0, K)`` gives the same
    staircase in three ops whatever K (a NaN membrane gives NaN here, 0 in the reference).
    """
    if levels == 1:
        return torch.ge(h, v_threshold, out=out)
    if _is_power_of_two(v_threshold):
        return torch.mul(h, 1 / v_threshold, out=out).floor_().clamp_(0, levels)
    torch.ge(h, v_threshold, out=out)
    for k in range(2, levels + 1):
        out.add_(h >= k * v_threshold)
    return out


def _clamp_passes_at_max() -> bool:
    """Whether this torch's ``clamp(max=1)`` passes the gradient at exactly 1 (versions differ)."""
    probe = torch.ones((), requires_grad=True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(probe.clamp(max=1.0), probe)
    return bool(grad != 0)


#: The reference's hard reset ``H (1 - min(O, 1))`` without ``detach_reset`` differentiates ``min`` at O = 1
#: by torch's rule; the fused backward follows the same rule (torch 2.x here: no gradient at O = 1).
_CLAMP_PASSES_AT_MAX = _clamp_passes_at_max()


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Full contraction, accumulated in at least float32."""
    if a.dtype in (torch.float32, torch.float64):
        return torch.dot(a.reshape(-1), b.reshape(-1))
    return torch.sum(a * b, dtype=torch.float32)


class _FusedMultiThresholdLIF(torch.autograd.Function):
    """The whole ``[T, ...]`` sequence as one autograd node.

    Forward runs the recurrence without recording ops and keeps the pre-spike membrane ``H[t]``, the
    post-reset membrane ``V[t]`` and (with the filter) the current ``J[t]``; backward runs the recurrence in
    reverse by hand. ``inverse_tau`` and ``alpha`` are floats (fixed) or 0-dim tensors (learnt; their
    gradients are full sums, and autograd carries them on through the sigmoid to ``w`` / ``w_syn``).
    Outputs: spikes, the last ``V`` and, with the filter, the last ``J``; gradients also flow to the
    initial states, so a call that continues from a previous one stays differentiable across calls.
    """

    @staticmethod
    def forward(ctx, x, v, j, inverse_tau, alpha, spec):
        levels, v_th, hard, decay_input, _detach, filtered, _slope = spec
        with torch.autocast(x.device.type, enabled=False):
            x = x.contiguous()
            k = inverse_tau.detach().to(x.dtype) if isinstance(inverse_tau, torch.Tensor) else inverse_tau
            a = alpha.detach().to(x.dtype) if isinstance(alpha, torch.Tensor) else alpha
            spikes = torch.empty_like(x)
            h_seq, v_seq = torch.empty_like(x), torch.empty_like(x)
            j_seq = torch.empty_like(x) if filtered else None
            v0, j0 = v, j
            for t in range(x.shape[0]):
                current = x[t]
                if filtered:  # J = a J + (1 - a) X
                    j = current = torch.lerp(current, j, a, out=j_seq[t])
                h = h_seq[t]
                if decay_input:  # H = V + (I - V) / tau
                    torch.lerp(v, current, k, out=h)
                elif isinstance(k, torch.Tensor):  # H = (1 - 1/tau) V + I
                    torch.addcmul(current, v, 1 - k, out=h)
                else:
                    torch.add(current, v, alpha=1 - k, out=h)
                spike = _fire(h, v_th, levels, spikes[t])
                if hard:
                    v = torch.mul(h, h < v_th, out=v_seq[t])  # H * 0 once fired, as the reference
                else:
                    v = torch.add(h, spike, alpha=-v_th, out=v_seq[t])
        if any(ctx.needs_input_grad):  # nothing to keep under no_grad / for inputs without gradients
            ctx.save_for_backward(x, v0, j0 if filtered else None, h_seq, v_seq, j_seq)
            ctx.coefficients, ctx.spec = (k, a), spec
        v_last = v.clone()  # a fresh tensor: the memory must not alias the saved sequence
        return (spikes, v_last, j.clone()) if filtered else (spikes, v_last)

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, grad_j=None):
        x, v0, j0, h_seq, v_seq, j_seq = ctx.saved_tensors
        k, a = ctx.coefficients
        levels, v_th, hard, decay_input, detach, filtered, slope = ctx.spec
        need_k, need_a = ctx.needs_input_grad[3], ctx.needs_input_grad[4]
        with torch.autocast(x.device.type, enabled=False):
            grad_x = torch.empty_like(x)
            grad_k = grad_a = None
            gv = grad_v  # dL/dV[t], carried backwards
            gj = grad_j  # dL/dJ[t], carried backwards (filter only)
            k_tensor = isinstance(k, torch.Tensor)
            for t in range(x.shape[0] - 1, -1, -1):
                h = h_seq[t]
                v_prev = v_seq[t - 1] if t else v0
                go = grad_spikes[t]
                s = slope(h)  # unscaled sum over the K bumps; times slope.scale below
                # dL/dH = dL/dO * dO/dH + dL/dV * (dV/dH + dV/dO * dO/dH); dV/dO only without detach_reset
                if hard:  # V = H (1 - min(O, 1)): dV/dH = 1[H < V_th], dV/dO = -H (times min's slope)
                    gh = torch.where(h < v_th, gv, 0.0)
                    if not detach:
                        through = gv * h
                        if levels > 1:  # min(O, 1) passes the gradient below 1 (and at 1, torch-dependent)
                            through.masked_fill_(h >= (2 if _CLAMP_PASSES_AT_MAX else 1) * v_th, 0.0)
                        go = go - through
                else:  # V = H - V_th O: dV/dH = 1, dV/dO = -V_th
                    gh = gv
                    if not detach:
                        go = torch.add(go, gv, alpha=-v_th)
                gh = torch.addcmul(gh, s, go, value=slope.scale)
                current = j_seq[t] if filtered else x[t]
                if need_k:  # dH/d(1/tau) = I - V[t-1] (decay_input) or -V[t-1]
                    part = _dot(gh, current) - _dot(gh, v_prev) if decay_input else -_dot(gh, v_prev)
                    grad_k = part if grad_k is None else grad_k + part
                gv = gh * (1 - k)  # dH/dV[t-1] = 1 - 1/tau in both forms
                if filtered:  # dJ[t]/dJ[t-1] = a, dJ[t]/dX[t] = 1 - a, dJ[t]/da = J[t-1] - X[t]
                    if not decay_input:
                        gj = gj + gh
                    elif k_tensor:
                        gj = torch.addcmul(gj, gh, k)
                    else:
                        gj = torch.add(gj, gh, alpha=k)
                    torch.mul(gj, 1 - a, out=grad_x[t])
                    if need_a:
                        part = _dot(gj, j_seq[t - 1] if t else j0) - _dot(gj, x[t])
                        grad_a = part if grad_a is None else grad_a + part
                    gj = gj * a
                elif decay_input:
                    torch.mul(gh, k, out=grad_x[t])
                else:
                    grad_x[t].copy_(gh)
        inverse_tau_grad = grad_k.reshape(()) if need_k else None
        alpha_grad = grad_a.reshape(()) if need_a else None
        return grad_x, gv, gj if filtered else None, inverse_tau_grad, alpha_grad, None


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
        input_gain: float = 1.0,
        step_mode: str = "m",
        fused: bool = True,
    ):
        if not tau > 1:
            raise ConfigError(f"the membrane time constant tau must be > 1 (decay 1 - 1/tau), got {tau}.")
        if not 0 < synaptic_alpha < 1:
            raise ConfigError(f"synaptic_alpha must lie in (0, 1), got {synaptic_alpha}.")
        if not input_gain > 0:
            raise ConfigError(f"the neuron's input_gain must be > 0, got {input_gain}.")
        spike = MultiThresholdSpike(v_threshold, levels, surrogate, surrogate_a)
        super().__init__(float(v_threshold), 0.0 if hard_reset else None, spike, detach_reset, step_mode)
        self.levels, self.decay_input, self.synaptic_filter = int(levels), bool(decay_input), synaptic_filter
        self.fused = bool(fused)  # multi-step mode: one fused autograd node (True) or the per-step reference
        self.input_gain = float(input_gain)  # a fixed factor on the input, before the filter and the charge
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
        """The current membrane time constant (learnt or fixed); inf once a learnt ``1/tau`` underflows to 0
        (a diverged ``w``: the runner fails such a run)."""
        inverse_tau = self._inverse_tau()
        inverse_tau = float(inverse_tau.detach() if isinstance(inverse_tau, torch.Tensor) else inverse_tau)
        return 1 / inverse_tau if inverse_tau else math.inf

    def _inverse_tau(self):
        return self.w.sigmoid() if hasattr(self, "w") else self.inverse_tau

    def synaptic_alpha(self):
        """The synaptic filter's coefficient (learnt or fixed); None without a filter."""
        if not self.synaptic_filter:
            return None
        return self.w_syn.sigmoid() if hasattr(self, "w_syn") else self.alpha

    def materialize_states(self, inputs, states, step_mode):
        states = super().materialize_states(inputs, states, step_mode)
        if self.synaptic_filter:
            i_syn = states[1]
            # first call, or a new input shape: start from zero (as BaseNode does for v)
            if not isinstance(i_syn, torch.Tensor) or i_syn.shape != states[0].shape:
                i_syn = torch.zeros_like(states[0])
            states = (states[0], i_syn.to(dtype=states[0].dtype, device=states[0].device))
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

    def _gained(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_gain == 1 else x * self.input_gain

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x = self._gained(inputs[0])
        spike, states = self._step(x, states, self._inverse_tau(), self.synaptic_alpha())
        return (spike,), states

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        inverse_tau, alpha = self._inverse_tau(), self.synaptic_alpha()  # once per sequence, not per step
        x_seq = self._gained(inputs[0])
        if self.fused:
            v, i_syn = (states[0], states[1]) if self.synaptic_filter else (states[0], None)
            outputs = _FusedMultiThresholdLIF.apply(x_seq, v, i_syn, inverse_tau, alpha, self._fused_spec())
            return (outputs[0],), tuple(outputs[1:])
        spikes = []
        for x in x_seq:
            spike, states = self._step(x, states, inverse_tau, alpha)
            spikes.append(spike)
        return (torch.stack(spikes),), states

    def _fused_spec(self) -> tuple:
        """The static options of the fused path, read at call time (the spike module may be edited)."""
        spike = self.surrogate_function
        a = spike.a if spike.derivative is not None else float(spike.surrogate.alpha)
        slope = _SlopeSum(spike.shape, a, spike.levels, spike.v_threshold)
        return (
            spike.levels,
            spike.v_threshold,
            self.v_reset is not None,
            self.decay_input,
            self.detach_reset,
            self.synaptic_filter,
            slope,
        )

    def extra_repr(self) -> str:
        filt = ", synaptic_filter" if self.synaptic_filter else ""
        gain = f", input_gain={self.input_gain:g}" if self.input_gain != 1 else ""
        tau = "learnable" if hasattr(self, "w") else f"{1 / self.inverse_tau:g}"
        return (
            f"{super().extra_repr()}, levels={self.levels}, tau={tau}, decay_input={self.decay_input}"
            f"{filt}{gain}"
        )


class _FusedSingleSpikeIF(torch.autograd.Function):
    """The single-spike IF over the whole ``[T, ...]`` sequence as one autograd node.

    Same equations as ``SingleSpikeIF.single_step_functional_forward`` + ``STDBSpike``, but the forward
    records no ops and keeps only ``dt[t]`` (which also says whether the neuron had fired: ``dt >= 0``),
    and the backward runs the membrane recurrence in reverse by hand: the neuron costs about half as much
    as the per-step graph, and it is most of a hybrid_stdb training step. It relies on the memories'
    invariant ``dt = -1`` exactly while the neuron has not fired, so ``dt[t] = dt[t-1] + fired[t]``.
    """

    @staticmethod
    def forward(ctx, x, v, fired, dt, v_threshold, leak, alpha, beta):
        x = x.contiguous()
        spikes = torch.empty_like(x)
        dt_seq = torch.empty_like(x, dtype=dt.dtype)
        v0, fired0 = v, fired
        for t in range(x.shape[0]):
            integrated = torch.add(x[t], v, alpha=leak) if leak != 1 else x[t] + v
            v = torch.where(fired, v, integrated)  # no integration after the spike
            spike = torch.div(v, v_threshold) > 1  # m = v / V_th - 1 > 0, bit for bit
            spike.logical_and_(fired.logical_not())
            fired = fired | spike
            torch.add(dt, fired, out=dt_seq[t])  # -1 until the spike, then 0, 1, 2, ...
            dt = dt_seq[t]
            spikes[t].copy_(spike)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(v0, fired0, dt_seq, v_threshold)
            ctx.constants = (leak, alpha, beta)
        dt = dt.clone()
        ctx.mark_non_differentiable(fired, dt)
        return spikes, v.clone(), fired, dt

    @staticmethod
    def backward(ctx, grad_spikes, grad_v, _grad_fired, _grad_dt):
        v0, fired0, dt_seq, v_threshold = ctx.saved_tensors
        leak, alpha, beta = ctx.constants
        scale = alpha / v_threshold.to(grad_spikes.dtype)  # do/dm = alpha (...), dm/du = 1 / V_th
        zero = torch.zeros((), dtype=grad_spikes.dtype, device=grad_spikes.device)
        grad_x = torch.empty_like(grad_spikes, memory_format=torch.contiguous_format)
        gv = grad_v  # dL/du[t], carried backwards
        for t in range(dt_seq.shape[0] - 1, -1, -1):
            dt = dt_seq[t]
            if beta is None:
                gv = torch.addcmul(gv, grad_spikes[t], scale)
            else:  # alpha exp(-beta dt) from the spike on, 0 before
                surrogate = torch.where(dt >= 0, torch.exp(dt * -beta), zero).mul_(scale)
                gv = torch.addcmul(gv, grad_spikes[t], surrogate)
            fired_before = dt_seq[t - 1] >= 0 if t else fired0
            torch.where(fired_before, zero, gv, out=grad_x[t])  # a frozen membrane takes no input
            if leak != 1:
                gv = torch.where(fired_before, gv, gv * leak)
        return grad_x, gv, None, None, None, None, None, None


class SingleSpikeIF(BaseNode):
    """Integrate-and-fire neuron that fires at most once per sample, trained through the STDB surrogate.

    Memories: membrane ``v``, ``fired`` (bool) and ``dt`` (steps since the spike, 0 at its step, -1 before
    it). The threshold is a buffer, so it is saved with the model and broadcast under DDP. ``ann_mode``
    turns the module into the ANN twin's activation: ReLU, or the identity for the output layer.
    Multi-step mode runs ``_FusedSingleSpikeIF`` (``fused=False``: the per-step graph, which single-step
    mode always uses; the two agree to rounding, ``tests/test_fused_neuron.py``).
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        leak: float = 1.0,
        alpha: float = 0.3,
        beta: float | None = 0.5,
        output: bool = False,
        step_mode: str = "m",
        fused: bool = True,
    ):
        super().__init__(float(v_threshold), None, None, False, step_mode)
        self.fused = bool(fused)  # multi-step mode: one fused autograd node, or the per-step reference
        del self.v_threshold  # a float in BaseNode; a buffer here
        self.register_buffer("v_threshold", torch.tensor(float(v_threshold)))
        self.register_memory("fired", False)
        self.register_memory("dt", -1.0)
        self.leak, self.alpha, self.beta, self.output = float(leak), float(alpha), beta, output
        self.ann_mode = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ann_mode:
            return x if self.output else F.relu(x)
        return super().forward(x)

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        if isinstance(states[0], torch.Tensor) and states[0].shape == x.shape:
            return states
        return torch.zeros_like(x), torch.zeros_like(x, dtype=torch.bool), torch.full_like(x, -1.0)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x, (v, fired, dt) = inputs[0], states
        v = torch.where(fired, v, self.leak * v + x)  # no integration after the spike
        m = v / self.v_threshold - 1
        spike = (m > 0) & ~fired
        fired = fired | spike
        dt = torch.where(spike, 0.0, torch.where(fired, dt + 1, -1.0))
        out = STDBSpike.apply(m, spike.to(x.dtype), dt, self.alpha, self.beta)
        return (out,), (v, fired, dt)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        if self.fused:
            v, fired, dt = states
            spikes, *states = _FusedSingleSpikeIF.apply(
                inputs[0], v, fired, dt, self.v_threshold, self.leak, self.alpha, self.beta
            )
            return (spikes,), tuple(states)
        spikes = []
        for x in inputs[0].unbind(0):  # unbind: one gradient stack in backward, not T zero-filled copies
            (spike,), states = self.single_step_functional_forward((x,), states)
            spikes.append(spike)
        return (torch.stack(spikes),), states

    def extra_repr(self) -> str:
        return (
            f"v_threshold={float(self.v_threshold):.4g}, leak={self.leak}, alpha={self.alpha}, "
            f"beta={self.beta}, output={self.output}, step_mode={self.step_mode}"
        )


class RateCodedOutput:
    """Mixin for methods whose network is a stack of multi-threshold LIF neurons with a voting population of
    K-level neurons as classifier (``multi_threshold``, ``compressed_event``).

    The logits are the population's firing rate ``count / (T K)`` in [0, 1]; the loss is the MSE to the
    one-hot label (STBP / PLIF) or cross-entropy on the rate.
    """

    LOSSES = ("mse", "ce")

    def set_rate_output(self, levels: int, loss: str, voting: int, voting_input: str = "flatten") -> None:
        """``voting_input``: what the voting population reads after the last conv block, ``flatten`` (the
        flattened maps, the papers' head) or ``gap`` (their global average pool: one feature per channel,
        the matched track's head for parameter parity); checked by ``layer_stack``."""
        if loss not in self.LOSSES:
            raise ConfigError(f"method.loss={loss!r} is not supported; use one of {self.LOSSES}.")
        if int(voting) < 1:
            raise ConfigError(f"method.voting must be >= 1 output neurons per class, got {voting}.")
        self.levels, self.loss, self.voting = int(levels), loss, int(voting)
        self.voting_input = voting_input

    def voting_network(
        self, layers: str, v_threshold: float, tau: float, hard_reset: bool, surrogate: str, **options
    ) -> nn.Sequential:
        """The method's network: ``layers`` (the layer notation) of ``MultiThresholdLIF`` neurons, then the
        voting population, reading the flattened or the average-pooled maps (``voting_input``). The neurons
        take the output's ``levels`` (so ``set_rate_output`` comes first), the options every such method
        exposes, and the method's own ``options`` (e.g. ``decay_input``)."""
        make_neuron = functools.partial(
            MultiThresholdLIF,
            levels=self.levels,
            v_threshold=v_threshold,
            tau=tau,
            hard_reset=hard_reset,
            surrogate=surrogate,
            **options,
        )
        return layer_stack(
            self.input_shape,
            self.num_classes,
            layers,
            make_neuron,
            voting=self.voting,
            voting_input=self.voting_input,
        )

    def readout(self, output_seq: torch.Tensor) -> torch.Tensor:
        """Voting-population spike amplitudes ``[T, B, classes]`` -> firing rate ``count / (T K)``."""
        return output_seq.mean(0) / self.levels

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "mse":
            one_hot = torch.nn.functional.one_hot(target, logits.shape[-1]).to(logits.dtype)
            return torch.nn.functional.mse_loss(logits, one_hot)
        return torch.nn.functional.cross_entropy(logits, target)
