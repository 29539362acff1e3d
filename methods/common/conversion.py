"""ANN-to-SNN conversion of a network whose neurons are single-spike IF neurons (``neurons.SingleSpikeIF``).

The ANN twin is the same modules with the neurons in ANN mode (ReLU); converting it sets each neuron's
threshold so that a spike stands for what the ReLU passed. Three steps (the method that uses them, and
which parts are reconstructions: ``methods/hybrid_stdb.py``):

1. ``fold_norms``: fold BN into the synaptic layer before it, its shift a bias current spread over the T
   steps, so the SNN integrates the ANN's bias once;
2. ``calibrate``: layer by layer from the input, the 1-bit Lloyd-Max quantiser (``lloyd_max``) of the
   layer's integrated SNN-mode input gives the threshold and the level a spike stands for; the level is
   folded into the next synaptic layer;
3. ``fold_and_calibrate``: step 1, then step 2 at each of a list of threshold scales (a neuron crosses
   its threshold on a partial sum of its inputs, which the quantiser of the total does not see), keeping
   the scale whose converted network scores best.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from bench.errors import TrainingError
from methods.common.neurons import SingleSpikeIF

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
SYNAPSES = (nn.Conv2d, nn.Linear)
#: Activations the Lloyd-Max quantiser looks at, at most (an evenly strided subset beyond that).
QUANTISER_SAMPLES = 2_000_000


def synapses(module: nn.Module) -> list[nn.Module]:
    """The conv/linear layers in ``module`` in order, found inside wrappers too (``hybrid_stdb``'s
    ``AnalogStepApart``)."""
    return [m for m in module.modules() if isinstance(m, SYNAPSES)]


@torch.no_grad()
def fold_norms(net: nn.Sequential, time_steps: int) -> None:
    """Fold every BN into the synaptic layer before it (step 1): its
    scale into the weights, its shift into a bias current of shift / T per step, kept in the BN module,
    which becomes ``x + bias``; a synaptic layer's own bias is spread over the T steps too."""
    layers = [m for m in net.modules() if isinstance(m, SYNAPSES + NORMS)]
    for synapse, norm in zip(layers, layers[1:], strict=False):
        if isinstance(synapse, SYNAPSES) and isinstance(norm, NORMS):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            synapse.weight.mul_(scale.view(-1, *[1] * (synapse.weight.dim() - 1)))
            shift = norm.bias - scale * norm.running_mean
            if synapse.bias is not None:
                shift += scale * synapse.bias
                synapse.bias.zero_()
            norm.weight.fill_(1.0)
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)  # (x - 0) / sqrt(1 - eps + eps) = x
            norm.bias.copy_(shift / time_steps)
    for synapse in synapses(net):
        if synapse.bias is not None:
            synapse.bias.div_(time_steps)


def lloyd_max(z: torch.Tensor, iterations: int = 30) -> tuple[float, float]:
    """The 1-bit Lloyd-Max quantiser of ``ReLU(z)``: (threshold, level), the level the mean of the values
    above the threshold and the threshold half the level (the quantiser that minimises the squared error
    ``ReLU(z) ~ level x 1[z > threshold]``)."""
    values = z[z > 0].double()
    if values.numel() == 0:
        raise TrainingError(
            "A layer of the trained ANN never has a positive input on the calibration batches, so its "
            "spiking threshold cannot be set: train the ANN longer (method.ann_epochs) or with another "
            "method.ann_lr, or train the SNN from scratch (method.ann_epochs=0)."
        )
    threshold = float(values.mean()) / 2
    for _ in range(iterations):
        level = float(values[values > threshold].mean())
        threshold = level / 2
    return threshold, level


def quantiser_sample(sequences: list[torch.Tensor]) -> torch.Tensor:
    """What the Lloyd-Max quantiser sees: ``sequences`` (``[T, B, ...]`` each) summed over the time steps,
    every value of every sample, evenly strided down to at most ``QUANTISER_SAMPLES`` values."""
    total = torch.cat([sequence.sum(0).flatten() for sequence in sequences])
    step = max(1, math.ceil(total.numel() / QUANTISER_SAMPLES))
    return total[::step]


@torch.no_grad()
def calibrate(
    net: nn.Sequential,
    inputs: list[torch.Tensor],
    scale: float,
    readout=lambda spikes: spikes,
    on_layer: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, dict], list[torch.Tensor]]:
    """Step 2: each neuron's threshold from the Lloyd-Max quantiser of its integrated
    SNN-mode input, layer by layer, the quantiser's level folded into the next synaptic layer. ``net`` must
    be folded and end with the output neuron; ``inputs`` are its input sequences (``[T, B, ...]``, one per
    calibration batch). Returns each neuron's threshold (and level) by its index in ``net``, and the
    converted network's output on each batch: ``readout`` of the output spikes, called while the output
    neuron still holds that batch's state.

    The batches go up the network one layer at a time, each layer run once per batch: a neuron's input
    depends only on the layers below it, which are calibrated by then (a pass from the input for every
    neuron would run the large early layers once per neuron). ``on_layer(done, total)`` is told of each
    neuron layer calibrated (progress lines)."""
    total = sum(isinstance(m, SingleSpikeIF) for m in net)
    activations = list(inputs)  # replaced in place as they go up: one batch's worth held twice at most
    done = 0  # activations are the input of net[done]
    chosen = {}
    for index, m in enumerate(net):
        if not isinstance(m, SingleSpikeIF):
            continue
        for layer in net[done:index]:
            for i, a in enumerate(activations):
                activations[i] = layer(a)
        threshold, level = lloyd_max(quantiser_sample(activations))
        m.v_threshold.fill_(scale * threshold)
        chosen[str(index)] = {"threshold": scale * threshold}
        if not m.output:  # a spike of this layer stands for `level`
            synapses(net[index + 1 :])[0].weight.mul_(level)
            chosen[str(index)]["level"] = level
        for i, a in enumerate(activations):
            m.reset()  # every batch starts from resting neurons
            activations[i] = readout(m(a)) if m.output else m(a)
        done = index + 1
        if on_layer is not None:
            on_layer(len(chosen), total)
    return chosen, activations


def fold_and_calibrate(
    net: nn.Sequential,
    inputs: list[torch.Tensor],
    time_steps: int,
    scales: Sequence[float],
    score: Callable[[list[torch.Tensor]], float],
    readout=lambda spikes: spikes,
    progress=None,
) -> tuple[float, dict[float, float], dict[str, dict]]:
    """Steps 1-3: fold ``net``'s BN, then calibrate it at every threshold scale and keep the one whose
    outputs on ``inputs`` (``calibrate``'s, through ``readout``) ``score`` best, the first of equals.
    Returns the chosen scale, every scale's score, and the chosen thresholds and levels. ``progress``
    (a :class:`bench.progress.Phase`, optional) gets a line per scale and, at most every so often, one
    per layer calibrated."""
    fold_norms(net, time_steps)
    folded = {k: v.clone() for k, v in net.state_dict().items()}
    trials = {}  # scale -> (score, converted state, per-layer thresholds and levels)
    for number, scale in enumerate(scales, 1):
        where = f"threshold scale {scale} ({number}/{len(scales)})"
        on_layer = None
        if progress is not None:

            def on_layer(done: int, total: int, where=where) -> None:
                progress.tick(f"{where}: {done}/{total} layers calibrated")

        net.load_state_dict(folded)
        layers, outputs = calibrate(net, inputs, scale, readout, on_layer)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        trials[scale] = (score(outputs), state, layers)
        if progress is not None:
            accuracy = trials[scale][0]
            progress.note(
                f"{where}: calibration accuracy {accuracy if accuracy is None else round(accuracy, 4)}"
            )
    best = max(trials, key=lambda s: trials[s][0])
    _, state, layers = trials[best]
    net.load_state_dict(state)
    return best, {scale: trial[0] for scale, trial in trials.items()}, layers
