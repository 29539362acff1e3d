"""``ann``: a ReLU CNN, the accuracy and energy reference every SNN is compared with.

It is the exact topology of ``lif_sg`` (``methods.common.networks.conv_net``) with ReLU in place of the
spiking neurons, run once per sample (T = 1). On event data the ``frames`` fine frames of a sample are
stacked as input channels (``[frames x C, H, W]``), so one pass sees all of them: the reference an SNN's
"ANN/SNN energy" column names, with a ratio of exactly 1.0 to its own reference. ``layers`` (the layer
notation, e.g. the matched track's backbone) builds the network with ``layer_stack`` as every other method
does; left unset, ``channels`` and ``hidden`` give the paper-track topology above.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bench.errors import ConfigError
from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.networks import conv_net, layer_stack


@register_method("ann")
class ANN(BenchMethod):
    """ReLU CNN baseline (same topology as lif_sg); the energy reference for every SNN."""

    spiking = False  # every synaptic op is a MAC, zeros and padding taps included
    design = {"static": (1, 1), "event": (1, 1)}
    design_basis = "the non-spiking reference: one pass per sample"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int = 1,
        frames: int | None = None,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        dropout: float = 0.0,
        layers: str | None = None,
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, frames=frames, **optim)
        if kind == "event":
            channels_in, height, width = self.input_shape
            input_shape = (int(frames) * channels_in, height, width)
        if layers:  # the layer notation every method reads (the matched track's backbone)
            self.net = layer_stack(input_shape, num_classes, layers, nn.ReLU)
        else:
            self.net = conv_net(input_shape, num_classes, nn.ReLU, tuple(channels), hidden, dropout=dropout)

    @staticmethod
    def check_time_steps(time_steps: int | None, frames: int | None) -> None:
        """One rule on every dataset: the reference runs once per sample (an image once; an event sample's
        frames at once, stacked as input channels), so "ANN/SNN" always names the same one-pass network."""
        if time_steps != 1:
            raise ConfigError(
                f"method.time_steps={time_steps}: the ann baseline runs once per sample (T = 1) on every "
                "dataset, an event sample's frames stacked as input channels; it is the one-pass reference "
                "the SNNs' energy ratios name. Leave method.time_steps at 1."
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Static: the image, one step. Event ``[B, frames, C, H, W]``: the frames stacked as channels."""
        if self.kind == "event":
            return x.flatten(1, 2).unsqueeze(0)
        return super().encode(x)
