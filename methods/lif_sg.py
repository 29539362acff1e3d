"""``lif_sg``: the plain spiking baseline: LIF neurons trained by surrogate-gradient BPTT.

The topology of the ``ann`` baseline with spikingjelly ``LIFNode`` (multi-step) in place of ReLU, its
surrogate (``surrogate_function``) one of spikingjelly's from ``methods/common/surrogates.py``; direct
input encoding (the analog image is fed to the first conv at every time step, so layer 1 costs MACs and
all later layers ACs); readout = mean over T of the last linear layer's output; cross-entropy loss.
``layers`` (the layer notation) builds the network with ``layer_stack`` as every other method does (the
matched track's backbone); left unset, ``channels`` and ``hidden`` give ann's paper-track topology.
"""

from __future__ import annotations

from collections.abc import Sequence

from spikingjelly.activation_based import neuron

from bench.errors import ConfigError
from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.networks import conv_net, layer_stack
from methods.common.surrogates import SURROGATES

#: The spikingjelly surrogates this baseline offers (``method.surrogate_function``).
SURROGATE_FUNCTIONS = ("atan", "sigmoid", "erf")


@register_method("lif_sg")
class LIFSurrogateGradient(BenchMethod):
    """LIF SNN (spikingjelly), surrogate-gradient BPTT, direct encoding; ann's topology."""

    static_time_steps = 4  # time_steps=None: every fine frame on event data, 4 steps on images
    design = {"static": (1, None), "event": (1, None)}
    design_basis = "the surrogate-gradient BPTT baseline, at any T"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int | None = None,
        frames: int | None = None,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        dropout: float = 0.0,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        hard_reset: bool = True,
        surrogate_function: str = "atan",
        detach_reset: bool = True,
        layers: str | None = None,
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, frames=frames, **optim)
        if surrogate_function not in SURROGATE_FUNCTIONS:
            raise ConfigError(
                f"method.surrogate_function={surrogate_function!r} is not supported; "
                f"use one of {sorted(SURROGATE_FUNCTIONS)}."
            )

        def make_neuron():
            return neuron.LIFNode(
                tau=float(tau),
                v_threshold=float(v_threshold),
                v_reset=0.0 if hard_reset else None,
                surrogate_function=SURROGATES[surrogate_function].spikingjelly(),
                detach_reset=detach_reset,
                step_mode="m",
            )

        if layers:  # the layer notation every method reads (the matched track's backbone)
            self.net = layer_stack(input_shape, num_classes, layers, make_neuron)
        else:
            self.net = conv_net(
                input_shape, num_classes, make_neuron, tuple(channels), hidden, dropout=dropout
            )
