"""Network topologies shared by methods, built from spikingjelly multi-step layers (``[T, B, ...]``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from spikingjelly.activation_based import layer
from torch import nn

from bench.errors import ConfigError


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


def _token(token: str) -> tuple[str, int, int]:
    """``"128C3"`` -> (C, 128, 3); ``"AP2"`` -> (AP, 0, 2); ``"512FC"`` -> (FC, 512, 0)."""
    match = re.fullmatch(r"(\d+)C(\d+)|(AP|MP)(\d+)|(\d+)FC", token)
    if match is None:
        raise ConfigError(
            f"layer {token!r} is not understood: use '<channels>C<kernel>' (conv-BN-neuron, e.g. 128C3), "
            "'AP<k>' / 'MP<k>' (average / max pooling) or '<units>FC' (linear-neuron)."
        )
    conv_out, kernel, pool, size, units = match.groups()
    if conv_out:
        return "C", int(conv_out), int(kernel)
    if pool:
        return pool, 0, int(size)
    return "FC", int(units), 0


def sized_layers(input_shape: Sequence[int], small: str, large: str, stem: str) -> str:
    """A method's default network for an input size: ``small`` for 1-2 channel inputs up to 34 pixels;
    otherwise ``large`` (built for 32-pixel maps), after one ``AP2`` of the input per halving above 64
    pixels and ``stem`` (a block that halves the maps) above 34."""
    channels, height, width = input_shape
    side = max(height, width)
    if side <= 34 and channels <= 2:
        return small
    front = []
    while side > 64:
        front.append("AP2")
        side //= 2
    if side > 34:
        front.append(stem)
    return "-".join([*front, large])


def layer_stack(
    input_shape: Sequence[int],
    num_classes: int,
    layers: str | Sequence[str],
    make_neuron: Callable[[], nn.Module],
    voting: int = 0,
) -> nn.Sequential:
    """A network from a layer string such as ``32C3-AP2-32C3-AP2-128FC`` (the papers' notation), time-first.

    Every conv is ``Conv(no bias) -> BN -> neuron`` and every hidden FC ``Linear(no bias) -> BN -> neuron``:
    BN before every neuron keeps deep stacks firing from the first step on (surrogates with compact support
    pass no gradient through a silent layer). The classifier is
    ``Linear(classes)`` emitting per-step scores when ``voting == 0``; with ``voting = n`` it is a spiking
    output population of n neurons per class, averaged per class (spikingjelly's ``VotingLayer``), so the
    readout is a firing rate (the STBP / PLIF output layer).
    """
    if isinstance(layers, str):
        layers = [token for token in layers.split("-") if token]
    in_channels, height, width = (int(s) for s in input_shape)
    blocks: list[nn.Module] = []
    flat = None
    for token in layers:
        kind, size, kernel = _token(token)
        if kind == "C":
            if flat is not None:
                raise ConfigError(f"conv layer {token!r} after a fully connected layer in {list(layers)}.")
            blocks += [
                layer.Conv2d(in_channels, size, kernel, padding=kernel // 2, bias=False, step_mode="m"),
                layer.BatchNorm2d(size, step_mode="m"),
                make_neuron(),
            ]
            in_channels = size
        elif kind in ("AP", "MP"):
            if flat is not None or height < kernel or width < kernel:
                raise ConfigError(f"pooling {token!r} does not fit the {height}x{width} maps at that point.")
            pool = layer.AvgPool2d if kind == "AP" else layer.MaxPool2d
            blocks.append(pool(kernel, step_mode="m"))
            height, width = height // kernel, width // kernel
        else:
            if flat is None:
                blocks.append(layer.Flatten(step_mode="m"))
                flat = in_channels * height * width
            blocks += [
                layer.Linear(flat, size, bias=False, step_mode="m"),
                layer.BatchNorm1d(size, step_mode="m"),
                make_neuron(),
            ]
            flat = size
    if flat is None:
        blocks.append(layer.Flatten(step_mode="m"))
        flat = in_channels * height * width
    if voting > 0:
        blocks += [
            layer.Linear(flat, num_classes * voting, step_mode="m"),
            make_neuron(),
            layer.VotingLayer(voting, step_mode="m"),
        ]
    else:
        blocks.append(layer.Linear(flat, num_classes, step_mode="m"))
    return nn.Sequential(*blocks)
