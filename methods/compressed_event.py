"""``compressed_event``: spatio-temporal compression + synaptic convolutional block, few time steps.

Paper: C. Xu, Y. Liu, Y. Yang, "Ultra-low Latency Spiking Neural Networks with Spatio-Temporal Compression
and Synaptic Convolutional Block", arXiv 2203.10006. Its abstract (verified) says: event streams are
usually integrated into many fine frames, which makes training and inference slow; the paper aggregates
the events into a few time steps of synaptic current (spatio-temporal compression), adds a synaptic
convolutional block that balances the dramatic change between adjacent (compressed) steps, and uses
multi-threshold LIF neurons with learnable membrane time constants; evaluated on N-MNIST, CIFAR10-DVS and
DVS128 Gesture. No code and no full text were available; everything below the abstract is a
reconstruction from ``papers.md`` §4 [R]:

* compression [R]: T0 fine frames ``F`` (the DataModule's ``data.frames``) -> T steps of synaptic current,
  compression ratio ``CR = T0 / T``:
  ``I[t] = lambda^CR I[t-1] + sum_{j=1..CR} lambda^(CR-j) F[(t-1) CR + j]``, ``lambda = exp(-1/tau_s)``
  (``synaptic_tau`` in fine frames): the synaptic current run over the fine frames, sampled every CR
  frames. ``compression=false`` is the ablation: plain frames, each step the event count of its window
  (the base class's re-binning, what a T-frame integration gives).
* synaptic convolutional block [R]: ``Conv3x3 -> BN -> synaptic filter -> MT-LIF (+ max pool)``, the
  filter ``J[t] = alpha J[t-1] + (1 - alpha) Y[t]`` with ``alpha = sigmoid(w_s)`` learnt per layer (inside
  the shared neuron, ``methods/common/neurons.py``); ``synaptic_filter=false`` ablates it;
* neuron [R/L]: multi-threshold LIF (``levels`` K, amplitude 0..K) with the PLIF charge
  ``H = V + (J - V) / tau`` and learnable ``1/tau = sigmoid(w)`` (Fang et al. 2021), soft reset by default,
  rectangular derivative per threshold; ``levels=1`` / ``learnable_tau=false`` ablate K and tau;
* network and readout [R]: ``{C C3-BN-SF-MTLIF-MP2} x 4`` (x 5 above 64 pixels) -> FC voting layer
  (``voting`` neurons per class), MSE between the one-hot label and the voting layer's firing rate
  (the PLIF recipe).

Adaptation (ours): on static images there are no events to compress; the input is a constant current,
the image at every one of the T steps (direct encoding). Energy: the compressed current is real-valued,
so conv1 costs MACs at every step (``T_analog = T``); later layers see graded spikes (amplitude ACs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from bench.errors import ConfigError
from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.neurons import MultiThresholdLIF, RateCodedOutput


def compress(frames: torch.Tensor, time_steps: int, synaptic_tau: float) -> torch.Tensor:
    """Fine frames ``[B, T0, ...]`` -> synaptic current ``[T, B, ...]`` (the formula in the docstring)."""
    batch, fine = frames.shape[:2]
    ratio = fine // time_steps
    decay = math.exp(-1.0 / synaptic_tau)
    weights = decay ** torch.arange(ratio - 1, -1, -1, dtype=frames.dtype, device=frames.device)
    windows = frames.reshape(batch, time_steps, ratio, *frames.shape[2:])
    window_sums = torch.tensordot(windows.movedim(2, -1), weights, dims=1)  # [B, T, ...]
    current, steps = torch.zeros_like(window_sums[:, 0]), []
    for t in range(time_steps):
        current = decay**ratio * current + window_sums[:, t]
        steps.append(current)
    return torch.stack(steps)


def default_layers(input_shape: Sequence[int], channels: int) -> list[str]:
    """``{C C3-MP2} x 4``, or x 5 for inputs larger than 64 pixels (papers.md §4)."""
    blocks = 5 if max(input_shape[1:]) > 64 else 4
    return [f"{channels}C3", "MP2"] * blocks


@register_method("compressed_event")
class CompressedEventSNN(RateCodedOutput, BenchMethod):
    """Compressed synaptic-current input, synaptic conv blocks of multi-threshold PLIF neurons."""

    design = {"event": (1, 5)}
    design_basis = "event streams compressed into a few (1-5) steps; N-MNIST, CIFAR10-DVS, DVS128 Gesture"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int = 2,
        frames: int | None = None,
        compression: bool = True,
        synaptic_tau: float = 4.0,
        channels: int = 128,
        layers: str = "auto",
        voting: int = 10,
        levels: int = 3,
        v_threshold: float = 0.25,
        tau: float = 2.0,
        learnable_tau: bool = True,
        synaptic_filter: bool = True,
        synaptic_alpha: float = 0.5,
        hard_reset: bool = False,
        surrogate: str = "rect",
        loss: str = "mse",
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, frames=frames, **optim)
        if not synaptic_tau > 0:
            raise ConfigError(f"method.synaptic_tau must be > 0 fine frames, got {synaptic_tau}.")
        self.set_rate_output(levels, loss, voting)
        self.compression, self.synaptic_tau = bool(compression), float(synaptic_tau)
        spec = default_layers(input_shape, int(channels)) if layers == "auto" else layers
        self.net = self.voting_network(
            spec,
            v_threshold,
            tau,
            hard_reset,
            surrogate,
            decay_input=True,
            learnable_tau=learnable_tau,
            synaptic_filter=synaptic_filter,
            synaptic_alpha=synaptic_alpha,
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Event frames -> T compressed steps of synaptic current; static images -> constant current."""
        if self.kind == "event" and self.compression:
            return compress(x, self.time_steps, self.synaptic_tau)
        return super().encode(x)

    def run_details(self) -> dict:
        """The learnt membrane time constants and synaptic filter coefficients, per layer."""
        details = {}
        for name, module in self.net.named_modules():
            if isinstance(module, MultiThresholdLIF):
                entry = {"tau": module.tau()}
                if module.synaptic_filter:
                    entry["synaptic_alpha"] = torch.as_tensor(module.synaptic_alpha()).item()
                details[name] = entry
        return {"neurons": details}
