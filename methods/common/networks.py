"""Network topologies shared by methods, built from spikingjelly multi-step layers (``[T, B, ...]``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spikingjelly.activation_based import layer
from torch import nn


def conv_net(
    input_shape: Sequence[int],
    num_classes: int,
    make_neuron: Callable[[], nn.Module],
    channels: Sequence[int] = (32, 64),
    hidden: int = 256,
    max_grid: int = 8,
    dropout: float = 0.0,
) -> nn.Sequential:
    """``{C3-BN-neuron-MP2} x len(channels) -> FC(hidden) -> neuron -> FC(classes)``, time-first.

    The same topology serves the ReLU ANN (the energy reference) and its spiking twins, which differ only
    in ``make_neuron``. Large inputs (event sensors at 128x128) are max-pooled down to at most
    ``max_grid`` x ``max_grid`` before the classifier so the FC layer stays small; max pooling keeps
    spikes binary. The last layer emits per-step class scores; the method's readout turns them to logits.
    """
    in_channels, height, width = (int(s) for s in input_shape)
    blocks: list[nn.Module] = []
    for out_channels in channels:
        blocks += [
            layer.Conv2d(in_channels, out_channels, 3, padding=1, bias=False, step_mode="m"),
            layer.BatchNorm2d(out_channels, step_mode="m"),
            make_neuron(),
            layer.MaxPool2d(2, step_mode="m"),
        ]
        in_channels, height, width = out_channels, height // 2, width // 2
    if height > max_grid or width > max_grid:
        height, width = min(height, max_grid), min(width, max_grid)
        blocks.append(layer.SeqToANNContainer(nn.AdaptiveMaxPool2d((height, width))))
    blocks += [layer.Flatten(step_mode="m")]
    if dropout > 0:
        blocks.append(layer.Dropout(dropout, step_mode="m"))
    blocks += [
        layer.Linear(in_channels * height * width, hidden, step_mode="m"),
        make_neuron(),
        layer.Linear(hidden, num_classes, step_mode="m"),
    ]
    return nn.Sequential(*blocks)
