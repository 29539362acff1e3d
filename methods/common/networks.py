"""Network topologies shared by methods, built from spikingjelly multi-step layers (``[T, B, ...]``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Layer:
    """One parsed layer of the notation, with the shapes around it: ``kind`` is ``C`` (conv, ``size``
    output channels, ``kernel``), ``AP`` / ``MP`` (pooling by ``kernel``) or ``FC`` (``size`` units);
    ``inputs`` is what it reads (channels, or features: the flattened maps for the first FC) and
    ``height`` x ``width`` the maps after it (0 x 0 from the first FC on)."""

    token: str
    kind: str
    size: int
    kernel: int
    inputs: int
    height: int
    width: int
    flattens: bool = False  # the first FC: the maps before it are flattened


NOTATION = (
    "'<channels>C<kernel>' (conv block, e.g. 128C3), 'AP<k>' / 'MP<k>' (average / max pooling) and "
    "'<units>FC' (linear block), joined by '-'"
)


def _token(token: str) -> tuple[str, int, int]:
    match = re.fullmatch(r"(\d+)C(\d+)|(AP|MP)(\d+)|(\d+)FC", token)
    if match is None:
        raise ConfigError(f"layer {token!r} is not understood: use {NOTATION}.")
    conv_out, kernel, pool, size, units = match.groups()
    if conv_out:
        return "C", int(conv_out), int(kernel)
    if pool:
        return pool, 0, int(size)
    return "FC", int(units), 0


def parse_layers(
    layers: str | Sequence[str], input_shape: Sequence[int], allowed: str = "C AP MP FC", why: str = ""
) -> list[Layer]:
    """The one parser of the papers' layer notation (``32C3-AP2-32C3-AP2-128FC``) for every method: each
    layer with the shapes around it. Convs and pooling come before any FC, pooling must fit the maps,
    and a method may allow fewer kinds (``why`` says why, in the error)."""
    tokens = [t for t in layers.split("-") if t] if isinstance(layers, str) else list(layers)
    channels, height, width = (int(s) for s in input_shape)
    parsed: list[Layer] = []
    features = 0  # > 0 from the first FC on
    for token in tokens:
        kind, size, kernel = _token(token)
        problem = None
        if kind not in allowed.split():
            problem = f"this method takes only {allowed.replace(' ', ', ')} layers{why}"
        elif kind != "FC" and features:
            problem = "convs and pooling must come before the first FC layer"
        elif kind in ("AP", "MP") and min(height, width) < kernel:
            problem = f"pooling by {kernel} does not fit the {height}x{width} maps at that point"
        if problem:
            raise ConfigError(f"layer {token!r} does not fit {'-'.join(tokens)!r}: {problem} ({NOTATION}).")
        if kind == "C":
            parsed.append(Layer(token, kind, size, kernel, channels, height, width))
            channels = size
        elif kind in ("AP", "MP"):
            height, width = height // kernel, width // kernel
            parsed.append(Layer(token, kind, channels, kernel, channels, height, width))
        else:
            first = not features
            inputs = channels * height * width if first else features
            parsed.append(Layer(token, kind, size, 0, inputs, 0, 0, flattens=first))
            features = size
    return parsed


def output_features(layers: list[Layer], input_shape: Sequence[int]) -> int:
    """What the classifier after ``layers`` reads: the last FC's units, else the flattened maps."""
    if layers and layers[-1].kind == "FC":
        return layers[-1].size
    _, height, width = (int(s) for s in input_shape)
    if layers:
        height, width = layers[-1].height, layers[-1].width
    return output_channels(layers, input_shape) * height * width


def output_channels(layers: list[Layer], input_shape: Sequence[int]) -> int:
    """The channels of the maps after ``layers`` (convs and pooling): the last conv's, else the input's."""
    convs = [layer for layer in layers if layer.kind == "C"]
    return convs[-1].size if convs else int(input_shape[0])


#: What a voting population reads (``layer_stack``'s ``voting_input``, ``method.voting_input``).
VOTING_INPUTS = ("flatten", "gap")


def check_voting_input(voting_input: str, voting: int, layers: list[Layer], notation) -> bool:
    """Whether the voting population reads the maps' global average (``gap``) rather than the flattened
    maps (``flatten``); a ConfigError for any other value, and for ``gap`` with no voting population or
    with an FC layer last (its features are already flat: no maps to pool)."""
    if voting_input not in VOTING_INPUTS:
        raise ConfigError(
            f"method.voting_input={voting_input!r} is not one of {', '.join(VOTING_INPUTS)}: flatten (the "
            "flattened maps, the papers' head) or gap (their global average pool, one feature per channel)."
        )
    if voting_input == "flatten":
        return False
    if voting < 1:
        raise ConfigError("voting_input='gap' pools the input of a voting population: set voting >= 1.")
    if any(spec.kind == "FC" for spec in layers):
        notation = notation if isinstance(notation, str) else "-".join(notation)
        raise ConfigError(
            f"method.voting_input='gap' pools the last conv's maps, but the layers {notation!r} end with an "
            "FC layer (flat features, no maps): use convs and pooling only, or voting_input=flatten."
        )
    return True


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
    voting_input: str = "flatten",
) -> nn.Sequential:
    """A network from a layer string such as ``32C3-AP2-32C3-AP2-128FC`` (the papers' notation), time-first.

    Every conv is ``Conv(no bias) -> BN -> neuron`` and every hidden FC ``Linear(no bias) -> BN -> neuron``:
    BN before every neuron keeps deep stacks firing from the first step on (surrogates with compact support
    pass no gradient through a silent layer). The classifier is
    ``Linear(classes)`` emitting per-step scores when ``voting == 0``; with ``voting = n`` it is a spiking
    output population of n neurons per class, averaged per class (spikingjelly's ``VotingLayer``), so the
    readout is a firing rate (the STBP / PLIF output layer); BN before those neurons too, or at one or two
    time steps the output population can be silent at initialisation and pass no gradient.

    ``voting_input`` is what the voting population reads after the last conv or pooling layer: the
    flattened ``C x H x W`` maps (``flatten``, the papers' head) or their global average over ``H x W`` at
    every step (``gap``, ``C`` features: ``C x classes x n`` weights instead of ``C H W x classes x n``).
    ``gap`` needs maps there: a stack whose last layer is an FC has nothing left to pool. The metrics
    callback sees that pool as it sees every average pool of spikes: the voting Linear reads pooled spikes
    whose window is the product of the pools' (2 x 2 x 3 x 3 after the matched backbone's last AP2 on 28x28).
    """
    parsed = parse_layers(layers, input_shape)
    gap = check_voting_input(voting_input, voting, parsed, layers)
    blocks: list[nn.Module] = []
    for spec in parsed:
        if spec.kind == "C":
            blocks += [
                layer.Conv2d(
                    spec.inputs, spec.size, spec.kernel, padding=spec.kernel // 2, bias=False, step_mode="m"
                ),
                layer.BatchNorm2d(spec.size, step_mode="m"),
                make_neuron(),
            ]
        elif spec.kind in ("AP", "MP"):
            blocks.append(
                (layer.AvgPool2d if spec.kind == "AP" else layer.MaxPool2d)(spec.kernel, step_mode="m")
            )
        else:
            blocks += [layer.Flatten(step_mode="m")] if spec.flattens else []
            blocks += [
                layer.Linear(spec.inputs, spec.size, bias=False, step_mode="m"),
                layer.BatchNorm1d(spec.size, step_mode="m"),
                make_neuron(),
            ]
    if not any(spec.kind == "FC" for spec in parsed):
        if gap:  # [T, B, C, H, W] -> [T, B, C, 1, 1]: the mean of each map, per step
            blocks.append(layer.AdaptiveAvgPool2d((1, 1), step_mode="m"))
        blocks.append(layer.Flatten(step_mode="m"))
    flat = output_channels(parsed, input_shape) if gap else output_features(parsed, input_shape)
    if voting > 0:
        blocks += [
            layer.Linear(flat, num_classes * voting, bias=False, step_mode="m"),
            layer.BatchNorm1d(num_classes * voting, step_mode="m"),
            make_neuron(),
            layer.VotingLayer(voting, step_mode="m"),
        ]
    else:
        blocks.append(layer.Linear(flat, num_classes, step_mode="m"))
    return nn.Sequential(*blocks)
