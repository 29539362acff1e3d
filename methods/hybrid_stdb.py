"""``hybrid_stdb``: single-spike hybrid input encoding, trained by ANN pre-training + STDB fine-tuning.

Paper: G. Datta, S. Kundu, P. A. Beerel, "Training Energy-Efficient Deep Spiking Neural Networks with
Single-Spike Hybrid Input Encoding", arXiv 2107.12374 (IJCNN 2021, venue unverified). Lineage: N. Rathi et
al., "Enabling Deep Spiking Neural Networks with Hybrid Conversion and Spike Timing Dependent
Backpropagation", ICLR 2020 (code ``nitin-rathi/hybrid-snn-conversion``). See ``papers.md`` §6.

Follows the paper (its abstract, verified): the analog pixels are applied at the first time step and a
temporal spike code in the later steps; every hidden neuron fires at most once per image; training is a
variant of spike-timing-dependent backpropagation (STDB) with a cross-entropy loss built from the output
neurons' spike times and membrane potentials; T = 5 (the CIFAR-100 headline setting).

Follows the lineage [L]: the STDB surrogate ``do/dm = alpha exp(-beta dt)`` (``m = u / V_th - 1``, ``dt``
= steps since the neuron's last spike, a neuron that has not spiked gets almost none); integrate-and-fire
membrane (leak 1); hybrid training: an ANN of the same topology trained first, converted to the SNN
(thresholds from activations on training data), then STDB fine-tuning; VGG-style stacks of 3x3 convs and
2x2 average pooling.

Reconstructions [R] (``papers.md`` §6; the paper's full text was not available):

* input: pixel i of the min-max scaled image ``x_hat`` (per sample) spikes once, at step
  ``t_i = 2 + floor((T - 1)(1 - x_hat_i))`` (steps counted from 1): brighter fires earlier, ``x_hat = 0``
  never fires. Conv1 thus costs MACs once (the analog step) and ACs afterwards: it is called separately
  on the analog step and on the spike steps so that the metrics callback sees them apart.
  ``analog_step=false`` (ablation) is pure temporal coding, ``t_i = 1 + floor(T (1 - x_hat_i))``.
* neuron: ``u[t] = leak u[t-1] + I[t]`` while the neuron has not fired, ``o[t] = H(u[t] / V_th - 1)``;
  after its spike it stops integrating and never fires again. The spike is taken on the updated membrane
  (the lineage fires on the previous step's membrane, a one-step delay per layer that would leave the
  output blind to most of T = 5 steps in a deep net).
* STDB under the single-spike rule: ``dt`` = steps since the neuron's spike, 0 at the step it fires, and
  the surrogate is 0 before a neuron's spike, the "fired yet" gate (the lineage's "never fired" sentinel,
  -1000 steps, leaves ``alpha exp(-0.01 (t + 999))``, about 1.4e-5: a gate in effect; at ``beta`` = 0.5
  the same sentinel leaves 0). After its spike the neuron still passes ``alpha exp(-beta dt)`` to its
  frozen membrane (the spike is masked, not the surrogate). ``beta`` = 0.5 instead of the lineage's
  0.01: over T = 5 the lineage's ``exp(-0.01 dt)`` spans 0.96-1 and carries no timing; 0.5 gives
  ``exp(0.5 * 4)`` = 7.4x between dt = 0 and dt = T - 1. ``surrogate=constant`` (ablation) passes
  ``alpha`` at every step, spiked or not: a plain straight-through estimator.

  The gate blocks most of the gradient. Every STDB epoch the run adds up, over its training batches,
  the gradient magnitude reaching the hidden neurons' spikes and the part on steps before the neuron's
  spike, which the surrogate zeroes (``surrogates.BeforeSpike``); the record's ``blocked_share`` is that
  part's share in the last epoch. mnist5k, T = 5, seed 0: 0.87-0.89 per STDB epoch (conv1's neurons
  0.93, conv2's 0.90, the FC layer's 0.73-0.80), on 0.92 of the neuron-steps; the matched backbone at
  T = 2: 0.79-0.85. ``pre_spike_alpha`` > 0 (ablation, ours) passes that constant there instead,
  through the membrane, which has integrated every input up to that step; 0.03 in the ablation, a
  tenth of ``alpha`` and below the surrogate's value at every step after a spike at T = 5
  (``0.3 exp(-2)`` = 0.041), so that, as under the lineage's sentinel, a neuron that has not fired
  gets less than one that has. At 0.03 (mnist5k, T = 5, seed 0, from the same converted SNN as the
  gate's run, 0.8525) those steps still receive 0.89 of the incoming gradient and now give 0.54 of what
  the surrogate passes to the membranes; the STDB epochs reach 0.9625, 0.965, 0.9675, 0.9825, 0.9775,
  0.9775 (test 0.976) against the gate's 0.9575, 0.9625, 0.965, 0.9725, 0.97, 0.975 (test 0.971): a
  difference within one seed's noise (about a point on 400 validation digits). The ablation
  (``ablation_hybrid_stdb``, 3 seeds, test items and seeds, Holm p) settles it: **on mnist5k at T = 5
  the timing dependence and the gate decide nothing measurable.** The constant surrogate reaches
  97.43 ± 0.86 %, the opened gate 97.20 ± 1.13 %, the full method 94.80 ± 9.50 % (tied, p = 0.753);
  the full method's spread is one seed (1) whose last two STDB epochs fell from 0.9625 to 0.92 and
  0.895 validation (test 0.901), the others 0.971 and 0.972. What does decide: the analog first step
  (without it 95.20 ± 1.11 %, p < 0.001 against the best) and, at the margin, the ANN initialisation
  (from scratch 96.20 ± 1.18 %, p = 0.050). The tally costs about a tenth of an STDB training step on a
  CPU; the variant's extra backward about a third.
* loss: output neurons also fire once; with ``t_i`` their spike step (``T + 1`` if silent) and ``U_i``
  their final (frozen) membrane, logits ``z_i = U_i / V_th - time_weight * t_i`` and cross-entropy. The
  spike times are constants for the gradient, which flows through ``U_i``.
* the ANN twin: the same modules with ReLU in place of the neurons, seeing the hybrid input summed over
  the T steps (the analog image plus the spike map): exactly the total input current the SNN's first
  layer integrates. It trains for the first ``ann_epochs`` epochs of the run, inside Lightning's loop.
* conversion, at the start of epoch ``ann_epochs`` (or at the end of training if there is none left),
  on ``calibration_batches`` training batches:

  1. fold BN into the layer before it: its scale into the conv/linear weights, its shift into a bias
     current spread over the T steps (shift / T per step, so that the SNN integrates the ANN's bias once;
     a layer's own bias likewise). The BN module is kept as the carrier of that bias, frozen (eval mode,
     unit scale, no gradient).
  2. layer by layer, from the input: the layer's SNN-mode input (layers below already spiking, this one
     not firing) integrated over T, ``z``; the 1-bit Lloyd-Max quantiser of ``ReLU(z)``: threshold
     ``theta`` and level ``c`` (``theta = c / 2``, ``c`` = the mean of ``z`` above ``theta``); the
     neuron's threshold is ``scale x theta``, and ``c``, the value a spike stands for, is folded into the
     weights of the next synaptic layer. The output layer's threshold is set the same way, so the class
     with the largest input tends to spike first.
  3. ``scale`` compensates for a neuron crossing its threshold on a partial sum of its inputs (the 1-bit
     quantiser sees only the total): each of ``threshold_scales`` is tried and the one with the best
     calibration accuracy kept.

  STDB then fine-tunes at ``lr`` 1e-4 (the lineage's Adam rate).
* training length (ours): the ANN twin gets ``ann_fraction`` = 0.4 of the run's ``max_epochs``
  (rounded half up, at least one; ``ann_epochs`` fixes the count instead), STDB the rest: 4 + 6 of 10
  epochs, 2 + 4 of the matched track's 6. Measured (seed 0; validation accuracy, 400 digits):

  - mnist5k, T = 5, 4 + 6: the ANN 0.98, converted 0.8475; the STDB epochs 0.9575, 0.9575, 0.97, 0.965,
    0.965, 0.96 (test 0.970), the training loss falling 0.27 -> 0.14. STDB brings +11 points in its
    first epoch, then stays within a point. A second run of the same config (the ANN phase is not
    bit-reproducible on a CPU: 0.9825, converted 0.8525) ends at 0.975 (test 0.971). 3 + 7 alike (the
    ANN 0.98 after 3; converted 0.8375, STDB 0.95 then 0.95-0.955; test 0.974). ``lr`` 3e-4: the first
    epoch as good (0.96), but the training loss then climbs, 0.31 -> 0.62 (test 0.959).
  - the matched backbone at T = 2, 6 epochs: 3 + 3: the ANN 0.97, converted 0.6325, STDB 0.89, 0.935,
    0.935 (test 0.919); 2 + 4: the ANN 0.9475, converted 0.7675, STDB 0.9125, 0.915, 0.9225, 0.925
    (test 0.927). Where conversion loses more, STDB gains more (+16 to +30 points) and for two epochs.

  So STDB decides much of the accuracy in every split tried, and it gets the larger share: at least
  two epochs from a budget of 4 on, while the ANN keeps the 2-3 epochs it needs to level off.

* networks: ``32C3-AP2-64C3-AP2-256FC`` for 28x28 / 34x34 inputs (the ``ann`` baseline's widths);
  ``64C3-AP2-128C3-AP2-256C3-256C3-AP2-512FC`` for 32x32 and a 32-channel stem block in front of it for
  64x64; BN before every neuron (the project's ``layer_stack``), so the ANN and SNN are one set of modules
  whose neurons switch between ReLU and single-spike IF; learning rates and epoch budgets (ours).

The record's ``method_details`` has the ANN's and the converted SNN's validation accuracy (the latter at
the run's T, before any STDB step), the calibration accuracy at each scale, the chosen scale, each
layer's threshold and level; ``epochs``, each epoch's phase and validation accuracy and, for STDB
epochs, the gate's shares (``gate_shares``); and ``facts``, the scalar columns of the ablation table
(``HybridSTDB.facts``; accuracies and shares in 0-1).

Energy (``papers.md`` §6.5): conv1 costs its dense MACs once, on the analog step, plus ACs for the input
spikes of steps 2..T (each pixel at most one); every later layer costs ACs for the spikes it receives (at
most one per neuron and sample); a layer after an average pooling receives pooled spikes, which the
metrics callback prices as NeuroBench's effective MACs by default (``metrics.pooled_spikes``). On small
networks conv1's analog step dominates the SNN's energy (a MAC costs five ACs and is not skipped for
zeros); in deep VGGs it is a small share of the ANN's MACs and the later layers' ops weigh more.

Adaptation (ours): on event data the frames, re-binned to T steps, enter as event counts, as every other
method gets them (``BenchMethod.encode``): conv1 integrates them as currents, as it integrates the analog
step of an image, and the metrics callback prices them as graded spikes; the hidden neurons still fire
once. There is no analog step. ``event_input=binary`` binarises them instead (a pixel spikes in every
step in which it had an event), what records before issue 30 did; the record's ``event_input`` says which.
nmnist_sim, T = 2 steps of 8 frames, the matched backbone, 2 + 2 epochs, seed 0: counts give the ANN
0.9225, the converted SNN 0.6775, test 0.871 and 23.1 uJ per sample; binary 0.8975, 0.7475, 0.860, 23.7 uJ.

Kept models (``bench test``): the converted network is in the state dict: the neurons' thresholds
(``v_threshold``, a buffer of ``SingleSpikeIF``), the folded BN (its weight, bias and running statistics,
the frozen bias carrier) and ``converted`` (a buffer, which keeps the folded BN frozen). ``ann_mode`` is
False in a fresh model and set False at every test start; ``details`` and the resolved ``ann_epochs``
only describe training (``method_details``, which a re-test's record copies).

This module keeps what defines the method: the encoding, the networks, the readout and loss, the two-phase
schedule and the LightningModule. The machinery it uses lives in ``methods/common/``: the single-spike IF
neuron and its fused form in ``neurons.py`` (``SingleSpikeIF``; ``STDBNeuron`` here adds the steps before
the spike), the STDB surrogate and ``BeforeSpike`` in ``surrogates.py``, the conversion (BN folding,
Lloyd-Max thresholds, the threshold-scale search) in ``conversion.py``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from bench.errors import ConfigError
from bench.progress import Phase, say
from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.conversion import NORMS, SYNAPSES, fold_and_calibrate
from methods.common.networks import layer_stack, sized_layers
from methods.common.neurons import SingleSpikeIF
from methods.common.surrogates import SINGLE_SPIKE, SURROGATES, TALLY, BeforeSpike

SMALL_NET = "32C3-AP2-64C3-AP2-256FC"
VGG32 = "64C3-AP2-128C3-AP2-256C3-256C3-AP2-512FC"
EVENT_INPUTS = ("counts", "binary")  # event frames as counts, like every method, or binarised


def default_layers(input_shape: Sequence[int]) -> str:
    """Small net for 1-2 channel inputs up to 34 pixels, VGG-style otherwise; event sensors above 64 pixels
    are average-pooled to 64 first."""
    return sized_layers(input_shape, SMALL_NET, VGG32, stem="32C3-AP2")


def hybrid_encode(image: torch.Tensor, time_steps: int, analog_step: bool = True) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[T, B, C, H, W]``: the analog image at step 1, then one spike per pixel at step
    ``2 + floor((T - 1)(1 - x_hat))`` of the per-sample min-max scaled image ``x_hat`` (0 never fires).
    Without the analog step: T spike steps, pixel i at step ``1 + floor(T (1 - x_hat))``."""
    low = image.flatten(1).amin(1).view(-1, 1, 1, 1)
    span = image.flatten(1).amax(1).view(-1, 1, 1, 1) - low
    scaled = torch.where(span > 0, (image - low) / span.clamp(min=torch.finfo(image.dtype).tiny), 0.0)
    first = 2 if analog_step else 1
    spike_step = first + torch.floor((time_steps + 1 - first) * (1 - scaled))  # steps counted from 1
    spikes = [(spike_step == t).to(image.dtype) for t in range(first, time_steps + 1)]
    return torch.stack([image, *spikes] if analog_step else spikes)


class AnalogStepApart(nn.Module):
    """Runs a synaptic layer on the first time step and on the rest in two calls: the metrics callback
    classifies each call's input as a whole, so the analog step counts as MACs and the spikes as ACs."""

    def __init__(self, synapse: nn.Module):
        super().__init__()
        self.synapse = synapse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return self.synapse(x)
        return torch.cat([self.synapse(x[:1]), self.synapse(x[1:])])


class STDBNeuron(SingleSpikeIF):
    """``SingleSpikeIF`` whose steps before its spike go through ``BeforeSpike`` in multi-step mode (the
    method's): the surrogate there is ``pre_spike_alpha`` (0: the STDB "fired yet" gate), and while
    ``tally`` is a tensor, each backward adds to it the gradient on those steps (``surrogates.TALLY``).
    The output neuron is left alone: its spikes reach the loss only as detached spike times."""

    def __init__(self, *args, pre_spike_alpha: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pre_spike_alpha = float(pre_spike_alpha)
        self.tally: torch.Tensor | None = None

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        outputs, new_states = super().multi_step_functional_forward(inputs, states, **kwargs)
        if self.output or not torch.is_grad_enabled() or (self.tally is None and not self.pre_spike_alpha):
            return outputs, new_states
        fired = states[1]  # before the sequence
        neuron = (self.v_threshold, self.leak, self.alpha, self.beta, self.pre_spike_alpha, self.tally)
        return (BeforeSpike.apply(inputs[0], outputs[0], fired, *neuron),), new_states

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pre_spike_alpha={self.pre_spike_alpha}"


def gate_shares(tally: torch.Tensor, gated: bool) -> dict[str, float | None]:
    """An epoch's ``BeforeSpike`` tally -> shares (0-1): ``pre_spike_share`` of the gradient magnitude
    reaching the spikes that lands on steps before the neuron's spike, ``pre_spike_steps`` of the
    neuron-steps that are such steps, ``blocked_share`` of the gradient magnitude the surrogate zeroes
    (``pre_spike_share`` behind the STDB gate, ``gated``; 0 otherwise), ``pre_spike_passed_share`` of
    what the surrogate passes to the membranes (``|dL/do| x do/dm``) that comes from those steps."""
    t = dict(zip(TALLY, tally.tolist(), strict=True))

    def share(part: float, whole: float) -> float | None:
        return round(part / whole, 4) if whole > 0 else None

    pre_spike, passed = share(t["grad_before"], t["grad_all"]), t["passed_before"]
    return {
        "pre_spike_share": pre_spike,
        "pre_spike_steps": share(t["steps_before"], t["steps_all"]),
        "blocked_share": pre_spike if gated else 0.0,
        "pre_spike_passed_share": share(passed, passed + t["passed_after"]) if passed else 0.0,
    }


@register_method("hybrid_stdb")
class HybridSTDB(BenchMethod):
    """Single-spike hybrid input encoding: ANN twin, conversion, STDB (T = 5; event data as counts)."""

    static_time_steps = 5  # time_steps=None: every fine frame on event data, 5 steps on images
    design = {"static": (2, 10)}
    design_basis = (
        "hybrid coding of images, T = 5 in the paper (2-10 tried); at T = 1 neither the temporal code nor "
        "STDB's spike timing can act"
    )

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int | None = None,
        frames: int | None = None,
        layers: str = "auto",
        ann_epochs: int | None = None,
        ann_fraction: float = 0.4,
        ann_lr: float = 1e-3,
        calibration_batches: int = 8,
        threshold_scales: Sequence[float] = (1.0, 1.2, 1.4, 1.6, 1.8),
        v_threshold: float = 1.0,
        leak: float = 1.0,
        surrogate: str = "stdb",
        stdb_alpha: float = 0.3,
        stdb_beta: float = 0.5,
        analog_step: bool = True,
        time_weight: float = 1.0,
        pre_spike_alpha: float = 0.0,
        event_input: str = "counts",
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, frames=frames, **optim)
        checks = {
            "ann_epochs": (
                ann_epochs,
                ann_epochs is None or ann_epochs >= 0,
                ">= 0 (0 trains the SNN from scratch), or null (ann_fraction of the epochs)",
            ),
            "ann_fraction": (ann_fraction, 0 <= ann_fraction <= 1, "in [0, 1]"),
            "ann_lr": (ann_lr, ann_lr > 0, "> 0"),
            "calibration_batches": (calibration_batches, calibration_batches >= 1, ">= 1"),
            "threshold_scales": (
                threshold_scales,
                len(threshold_scales) > 0 and all(s > 0 for s in threshold_scales),
                "a non-empty list of factors > 0",
            ),
            "v_threshold": (v_threshold, v_threshold > 0, "> 0"),
            "leak": (leak, 0 < leak <= 1, "in (0, 1] (1 = integrate-and-fire, the lineage's default)"),
            "surrogate": (surrogate, surrogate in SINGLE_SPIKE, f"one of {', '.join(SINGLE_SPIKE)}"),
            "stdb_alpha": (stdb_alpha, stdb_alpha > 0, "> 0 (the lineage uses 0.3)"),
            "stdb_beta": (stdb_beta, stdb_beta >= 0, ">= 0 (0.5 here; the lineage uses 0.01 at T >= 100)"),
            "time_weight": (time_weight, time_weight >= 0, ">= 0"),
            "pre_spike_alpha": (
                pre_spike_alpha,
                pre_spike_alpha == 0 or (pre_spike_alpha > 0 and SURROGATES[surrogate].stdb_decay is True),
                ">= 0, and 0 unless method.surrogate=stdb (constant passes stdb_alpha there already)",
            ),
            "event_input": (event_input, event_input in EVENT_INPUTS, f"one of {', '.join(EVENT_INPUTS)}"),
        }
        for key, (value, ok, rule) in checks.items():
            if not ok:
                raise ConfigError(
                    f"method.{key}={value!r} is out of range for hybrid_stdb: it must be {rule}."
                )
        self.ann_epochs_given = None if ann_epochs is None else int(ann_epochs)
        self.ann_fraction, self.ann_lr = float(ann_fraction), float(ann_lr)
        self.ann_epochs = self.ann_epochs_given  # resolved against the epoch budget in setup()
        self.event_input = event_input
        self.calibration_batches = int(calibration_batches)
        self.threshold_scales = [float(s) for s in threshold_scales]
        self.analog_step = bool(analog_step)
        self.time_weight = float(time_weight)
        self.layers = default_layers(self.input_shape) if layers == "auto" else layers
        beta = float(stdb_beta) if SURROGATES[surrogate].stdb_decay else None

        self.gated = beta is not None and not pre_spike_alpha  # the STDB surrogate's "fired yet" gate

        def make_neuron(output: bool = False) -> STDBNeuron:
            return STDBNeuron(v_threshold, leak, stdb_alpha, beta, output, pre_spike_alpha=pre_spike_alpha)

        net = layer_stack(self.input_shape, num_classes, self.layers, make_neuron)
        net.append(make_neuron(output=True))
        if kind == "static" and self.analog_step:  # the first synaptic layer sees the analog step apart
            first = next(i for i, m in enumerate(net) if isinstance(m, SYNAPSES))
            net[first] = AnalogStepApart(net[first])
        self.net = net
        self.ann_mode = False
        # Set once the ANN twin is converted: a resumed run neither trains the ANN again nor converts twice.
        self.register_buffer("converted", torch.tensor(False))
        self.details: dict = {"layers": self.layers, "epochs": []}
        if kind == "event":
            self.details["event_input"] = event_input

    # --- encoding, readout ---------------------------------------------------------------------------
    def spike_input(self, x: torch.Tensor) -> torch.Tensor:
        """The SNN's input sequence ``[T, B, ...]``."""
        if self.kind == "event":  # event counts per step, as every method gets them, or binarised
            frames = super().encode(x)
            return frames if self.event_input == "counts" else (frames > 0).to(x.dtype)
        return hybrid_encode(x, self.time_steps, self.analog_step)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The SNN's input; the ANN twin's is its sum over the steps, what the first layer integrates."""
        spikes = self.spike_input(x)
        return spikes.sum(0, keepdim=True) if self.ann_mode else spikes

    def readout(self, output_seq: torch.Tensor) -> torch.Tensor:
        """ANN: the class scores. SNN: ``U / V_th - time_weight * t`` from the output neurons' spike step
        ``t`` (``T + 1`` when silent) and final membrane ``U``."""
        if self.ann_mode:
            return output_seq.mean(0)
        steps = output_seq.shape[0]
        spikes = output_seq.detach()
        index = torch.arange(1, steps + 1, dtype=spikes.dtype, device=spikes.device).view(-1, 1, 1)
        spike_time = (spikes * index).sum(0) + (steps + 1) * (1 - spikes.sum(0))
        out = self.net[-1]
        return out.v / out.v_threshold - self.time_weight * spike_time

    # --- hybrid training inside Lightning's loop -------------------------------------------------------
    def neurons(self) -> dict[str, STDBNeuron]:
        """The spiking neurons by their names in the model (``net.2``, as in the metrics' layers)."""
        return {f"net.{name}": m for name, m in self.net.named_modules() if isinstance(m, SingleSpikeIF)}

    def set_ann_mode(self, on: bool) -> None:
        """Switch every neuron between ReLU (the ANN twin) and single-spike IF (the SNN)."""
        self.ann_mode = on
        for m in self.neurons().values():
            m.ann_mode = on

    def resolve_ann_epochs(self, max_epochs: int | None) -> int:
        """``ann_epochs`` if given, else ``ann_fraction`` of the run's ``max_epochs`` rounded half up, at
        least 1 when the fraction is not 0."""
        if self.ann_epochs_given is not None:
            return self.ann_epochs_given
        if max_epochs is None or max_epochs < 0:
            raise ConfigError(
                "hybrid_stdb splits trainer.max_epochs by method.ann_fraction: set trainer.max_epochs, or "
                "method.ann_epochs."
            )
        if self.ann_fraction == 0:
            return 0
        return min(max_epochs, max(1, math.floor(self.ann_fraction * max_epochs + 0.5)))

    def setup(self, stage: str) -> None:
        if stage == "fit":
            max_epochs = self.trainer.max_epochs
            self.ann_epochs = self.resolve_ann_epochs(max_epochs)
            self.details.update(ann_epochs=self.ann_epochs, stdb_epochs=max(0, max_epochs - self.ann_epochs))

    def pilot_phases(self, max_epochs: int) -> list[tuple[int, dict]]:
        """The ANN epochs (ReLU, one pass), then the STDB epochs at T (a build with no ANN epochs)."""
        ann = self.resolve_ann_epochs(max_epochs)
        phases = [(ann, {})] if ann else []
        return [*phases, (max_epochs - ann, {"ann_epochs": 0})] if max_epochs > ann else phases

    def extra_work(self, max_epochs: int, val_batches: int) -> tuple[float, float]:
        """The conversion (when an ANN phase runs), in SNN forward batches: the converted SNN's validation,
        and unless the pilot's ANN phase converted (its time is then in that phase's ``outside_s``), the
        calibration batches through the network once per threshold scale (their quantiser fits not
        counted: an underestimate)."""
        if not self.resolve_ann_epochs(max_epochs):
            return 0.0, 0.0
        calibration = 0 if bool(self.converted) else len(self.threshold_scales) * self.calibration_batches
        return 0.0, float(calibration + val_batches)

    def in_ann_phase(self) -> bool:
        return self.ann_epochs > 0 and not bool(self.converted)

    def train(self, mode: bool = True):
        """Folded BN modules stay frozen biases (eval mode, no gradient) whatever Lightning switches."""
        super().train(mode)
        if bool(self.converted):
            for m in self.net.modules():
                if isinstance(m, NORMS):
                    m.eval().requires_grad_(False)
        return self

    def on_train_epoch_start(self) -> None:
        if self.in_ann_phase() and self.current_epoch >= self.ann_epochs:
            self.convert()
        self.set_ann_mode(self.in_ann_phase())
        for neuron in self.neurons().values():  # an STDB epoch: tally the gradient on pre-spike steps
            stdb = not (self.ann_mode or neuron.output)
            neuron.tally = torch.zeros(len(TALLY), dtype=torch.float64, device=self.device) if stdb else None

    def on_train_epoch_end(self) -> None:
        """The epoch's validation accuracy (validation has run by now) and, in STDB, the gate's shares."""
        metrics = self.trainer.callback_metrics
        entry = {
            "epoch": self.current_epoch,
            "phase": "ann" if self.ann_mode else "stdb",
            "val_acc": round(float(metrics["val/acc"]), 4) if "val/acc" in metrics else None,
        }
        tallies = {name: m.tally for name, m in self.neurons().items() if m.tally is not None}
        if tallies:
            strategy = self.trainer.strategy
            tallies = {name: strategy.reduce(t, reduce_op="sum") for name, t in tallies.items()}
            entry.update(gate_shares(sum(tallies.values()), self.gated))
            entry["pre_spike_share_by_layer"] = {
                name: gate_shares(t, self.gated)["pre_spike_share"] for name, t in tallies.items()
            }
        for neuron in self.neurons().values():
            neuron.tally = None
        self.details["epochs"].append(entry)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hybrid_stdb_details"] = self.details  # a resumed run's record keeps the whole history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.details = checkpoint.get("hybrid_stdb_details", self.details)

    def on_train_end(self) -> None:
        if self.in_ann_phase():  # the run ended with the ANN phase: test the converted SNN
            self.convert()
        self.set_ann_mode(False)

    def on_test_start(self) -> None:
        self.set_ann_mode(False)

    def _loader_batches(self, loader, limit) -> list:
        batches = itertools.islice(loader, limit)
        dtype = next(self.parameters()).dtype
        return [(x.to(self.device, dtype), y.to(self.device)) for x, y in batches]

    @torch.no_grad()
    def accuracy(self, batches, outputs=None) -> float | None:
        """On ``batches``, from the network's ``outputs`` on them when they are known already."""
        outputs = outputs or [self(x) for x, _ in batches]
        correct = sum(int((out.argmax(1) == y).sum()) for out, (_, y) in zip(outputs, batches, strict=True))
        total = sum(len(y) for _, y in batches)
        return correct / total if total else None

    def convert(self) -> None:
        """The ANN twin -> the SNN (module doc, *conversion*), on the global-rank-0 process, whose network is
        then broadcast so every process fine-tunes the same SNN; STDB starts with a fresh optimiser state."""
        trainer = self.trainer
        self.details["ann_val_acc"] = (
            float(trainer.callback_metrics["val/acc"]) if "val/acc" in trainer.callback_metrics else None
        )
        was_training = self.training
        if trainer.is_global_zero:
            self._convert_here()
        self.converted.fill_(True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in self.net.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
            self.details = trainer.strategy.broadcast(self.details, src=0)
        for optimizer in trainer.optimizers:
            optimizer.state.clear()
        self.train(was_training)

    def _say(self, line: str) -> None:
        """A line around the progress bar on a terminal (Lightning's ``print``), else printed and flushed
        at once (a log file shows it now)."""
        bar = self.trainer.progress_bar_callback
        if bar is not None and bar.is_enabled:
            self.print(line)
        else:
            say(line)

    def _convert_here(self) -> None:
        trainer, data = self.trainer, self.trainer.datamodule
        limit = trainer.limit_train_batches
        train = data.train_dataloader()
        count = limit if isinstance(limit, int) else math.ceil(limit * len(train))
        calibration = max(1, min(self.calibration_batches, count))
        phase = Phase("hybrid_stdb", printer=self._say)
        phase.start(
            f"converting the ANN to an SNN at T = {self.time_steps}: BN folded, thresholds calibrated at "
            f"{len(self.threshold_scales)} scale(s) on {calibration} training batch(es), the best kept"
        )
        batches = self._loader_batches(train, calibration)
        self.eval()
        self.set_ann_mode(False)
        inputs = [self.encode(x) for x, _ in batches]
        best, scores, layers = fold_and_calibrate(
            self.net,
            inputs,
            self.time_steps,
            self.threshold_scales,
            lambda outputs: self.accuracy(batches, outputs),
            self.readout,
            progress=phase,
        )
        val_limit = trainer.limit_val_batches
        val = data.val_dataloader()
        val_count = val_limit if isinstance(val_limit, int) else math.ceil(val_limit * len(val))
        self.details.update(
            threshold_scale=best,
            calibration_acc={str(s): round(accuracy, 4) for s, accuracy in scores.items()},
            conversion={f"net.{k}": v for k, v in layers.items()},
            converted_snn_val_acc=self.accuracy(self._loader_batches(val, val_count)) if val_count else None,
        )
        phase.end(
            "converted",
            f": ANN val acc {self.details['ann_val_acc']}; converted SNN val acc "
            f"{self.details['converted_snn_val_acc']} (threshold scale {best}); STDB fine-tuning follows.",
        )

    def configure_optimizers(self):
        """One optimiser for both phases; the learning rate follows ``ann_lr`` with a cosine decay over the
        ANN epochs, then ``lr`` with a cosine decay over the STDB epochs (``scheduler=none``: constant)."""
        hp = self.hparams
        optimizer = self.build_optimizer(lr=1.0)  # the schedule gives the absolute rate
        total = max(1, int(self.trainer.estimated_stepping_batches))
        max_epochs = max(1, self.trainer.max_epochs or 1)
        ann_steps = min(total, round(total * self.ann_epochs / max_epochs)) if self.ann_epochs else 0
        cosine = hp.scheduler == "cosine"

        def rate(step: int) -> float:
            phase, start, length = (
                (self.ann_lr, 0, ann_steps) if step < ann_steps else (hp.lr, ann_steps, total - ann_steps)
            )
            progress = (step - start) / max(1, length)
            return phase * (0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) if cosine else 1.0)

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def facts(self) -> dict:
        """Scalar facts for the ablation table's columns; accuracies and shares in 0-1."""
        details = self.details
        stdb = [entry for entry in details["epochs"] if entry["phase"] == "stdb"]
        last = stdb[-1] if stdb else {}
        converted = details.get("converted_snn_val_acc")
        final = last.get("val_acc")
        scale = details.get("threshold_scale")
        return {
            "ann_epochs": self.ann_epochs,
            "stdb_epochs": len(stdb),
            "ann_accuracy": details.get("ann_val_acc"),
            "converted_accuracy": converted,
            "converted_calibration_accuracy": details["calibration_acc"][str(scale)] if scale else None,
            "stdb_gain": round(final - converted, 4) if final is not None and converted is not None else None,
            "blocked_share": last.get("blocked_share"),
            "pre_spike_share": last.get("pre_spike_share"),
            "pre_spike_passed_share": last.get("pre_spike_passed_share"),
        }

    def run_details(self) -> dict:
        thresholds = {name: float(m.v_threshold) for name, m in self.neurons().items()}
        return {
            **self.details,
            "final_thresholds": thresholds,
            "time_steps": self.time_steps,
            "facts": self.facts(),
        }
