"""``ann``: a ReLU CNN, the accuracy and energy reference every SNN is compared with.

It is the exact topology of ``lif_sg`` (``methods.common.networks.conv_net``) with ReLU in place of the
spiking neurons. On static data it runs one step (T = 1); on event data it sees every frame and averages
the class scores over frames, like the SNNs' readout.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.networks import conv_net


@register_method("ann")
class ANN(BenchMethod):
    """ReLU CNN baseline (same topology as lif_sg); the energy reference for every SNN."""

    spiking = False  # every synaptic op is a MAC, zeros and padding taps included

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int = 1,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        dropout: float = 0.0,
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, **optim)
        self.net = conv_net(
            input_shape, num_classes, lambda: nn.ReLU(), tuple(channels), hidden, dropout=dropout
        )
