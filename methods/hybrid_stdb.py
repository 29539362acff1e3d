"""``hybrid_stdb``: single-spike hybrid input encoding, trained by ANN pre-training + STDB fine-tuning.

Paper: G. Datta, S. Kundu, P. A. Beerel, "Training Energy-Efficient Deep Spiking Neural Networks with
Single-Spike Hybrid Input Encoding", arXiv 2107.12374 (IJCNN 2021, venue unverified). Lineage: N. Rathi et
al., "Enabling Deep Spiking Neural Networks with Hybrid Conversion and Spike Timing Dependent
Backpropagation", ICLR 2020 (code ``nitin-rathi/hybrid-snn-conversion``). See ``papers.md`` §6.

Follows the paper (its abstract, verified): the analog pixels are applied at the first time step and a
temporal spike code in the later steps; every hidden neuron fires at most once per image; training is a
variant of spike-timing-dependent backpropagation (STDB) with a cross-entropy loss built from the output
neurons' spike times and membrane potentials; T = 5 (the CIFAR-100 headline setting).

Follows the lineage [L]: the STDB surrogate ``do/dm = alpha exp(-beta dt)`` (``m = u / V_th - 1``,
``dt`` = steps since the neuron's last spike, alpha 0.3, beta 0.01); integrate-and-fire membrane
(leak 1); hybrid training: an ANN of the same topology trained first, each layer's threshold initialised
to ``scaling_factor`` x the ANN's maximum pre-activation of that layer on one training batch, then STDB
fine-tuning of the converted SNN; VGG-style stacks of 3x3 bias-free convs and 2x2 average pooling.

Reconstructions [R] (``papers.md`` §6, the paper's full text was not available):

* input: pixel i of the min-max scaled image ``x_hat`` (per sample) spikes once, at step
  ``t_i = 2 + floor((T - 1)(1 - x_hat_i))`` (steps counted from 1): brighter fires earlier, ``x_hat = 0``
  never fires. Conv1 thus costs MACs once (the analog step) and ACs afterwards: the first conv is called
  separately on the analog step and on the spike steps so that the metrics callback sees them apart.
* neuron: ``u[t] = leak u[t-1] + I[t]`` while the neuron has not fired, ``o[t] = H(u[t] / V_th - 1)``;
  after its spike it stops integrating and never fires again (infinite refractory period). The spike is
  taken on the updated membrane (the lineage fires on the previous step's membrane, a one-step delay per
  layer that would leave the output blind to most of T = 5 steps in a deep net).
* STDB under the single-spike rule: ``dt`` counts from the neuron's spike, and, before it, from the reset
  state the sample starts in (as if the neuron had fired at step 0; the lineage's "never fired" sentinel
  of -1000 steps would erase the gradient at every step where a single-spike neuron can still fire). The
  refractory mask blocks spikes, not the surrogate: after its spike the neuron still passes
  ``alpha exp(-beta dt)`` to its frozen membrane, so ``dt`` measured from the spike matters.
* loss: output neurons also fire once; with ``t_i`` their spike step (``T + 1`` if silent) and ``U_i``
  their final (frozen) membrane, logits ``z_i = U_i / V_th - time_weight * t_i`` and cross-entropy. The
  spike times are constants for the gradient, which flows through ``U_i``.
* scaling factor 0.15, not the lineage's 0.7: there a rate-coded neuron fires at ``a / V_th`` spikes per
  step over T >= 100 steps; a single-spike neuron with per-step input ``a`` fires within T steps only if
  ``T a > V_th``, so 0.7 at T = 5 silences every activation below 0.14 x max. 0.15 (about 0.7 / T) keeps
  them, and was the best of 0.7, 0.3 and 0.15 on mnist5k's validation split.
* conversion with BN: thresholds come from the ANN's pre-activations (BN with the ANN's statistics); the
  BN statistics are then re-estimated on the SNN's own inputs over a few training batches, since spike
  maps are not distributed like the analog activations the ANN saw.
* networks: ``32C3-AP2-64C3-AP2-256FC`` for 28x28 / 34x34 inputs (the ``ann`` baseline's widths);
  ``64C3-AP2-128C3-AP2-256C3-256C3-AP2-512FC`` for 32x32 and a 32-channel stem block in front of it for
  64x64; BN before every neuron (the project's ``layer_stack``), so the ANN and SNN are one set of modules
  whose neurons switch between ReLU and single-spike IF; learning rates and epoch budgets (ours).

Energy (``papers.md`` §6.5): conv1 costs its dense MACs once, on the analog step, plus ACs for the input
spikes of steps 2..T (each pixel at most one); every later layer costs ACs for the spikes it receives (at
most one per neuron and sample); a layer after an average pooling receives pooled spikes, which the
metrics callback prices as NeuroBench's effective MACs by default (``metrics.pooled_spikes``). On small
networks conv1's analog step dominates the SNN's energy (a MAC costs five ACs and is not skipped for
zeros); in deep VGGs it is a small share of the ANN's MACs and the later layers' ops weigh more.

Adaptation (ours): on event data the frames (re-binned to T steps) pass through as binary spikes, a pixel
spiking in every step in which it had an event; there is no analog step, so every layer costs ACs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from bench.errors import ConfigError, TrainingError
from bench.registry import register_method
from methods.base import BenchMethod
from methods.common.networks import layer_stack, sized_layers

#: Training batches over which the BN statistics are re-estimated for the converted SNN.
RECALIBRATION_BATCHES = 8
SMALL_NET = "32C3-AP2-64C3-AP2-256FC"
VGG32 = "64C3-AP2-128C3-AP2-256C3-256C3-AP2-512FC"


def default_layers(input_shape: Sequence[int]) -> str:
    """Small net for 1-2 channel inputs up to 34 pixels, VGG-style otherwise; event sensors above 64 pixels
    are average-pooled to 64 first."""
    return sized_layers(input_shape, SMALL_NET, VGG32, stem="32C3-AP2")


def hybrid_encode(image: torch.Tensor, time_steps: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[T, B, C, H, W]``: the analog image at step 1, then one spike per pixel at step
    ``2 + floor((T - 1)(1 - x_hat))`` of the per-sample min-max scaled image ``x_hat`` (0 never fires)."""
    low = image.flatten(1).amin(1).view(-1, 1, 1, 1)
    span = image.flatten(1).amax(1).view(-1, 1, 1, 1) - low
    scaled = torch.where(span > 0, (image - low) / span.clamp(min=torch.finfo(image.dtype).tiny), 0.0)
    spike_step = 2 + torch.floor((time_steps - 1) * (1 - scaled))  # steps counted from 1
    spikes = [(spike_step == t).to(image.dtype) for t in range(2, time_steps + 1)]
    return torch.stack([image, *spikes])


class _STDBSpike(torch.autograd.Function):
    """Forward: the given spikes; backward: ``d spike / d m = alpha exp(-beta dt)`` (see module doc)."""

    @staticmethod
    def forward(ctx, m, spikes, dt, alpha, beta):
        ctx.save_for_backward(dt)
        ctx.alpha, ctx.beta = alpha, beta
        return spikes

    @staticmethod
    def backward(ctx, grad_output):
        (dt,) = ctx.saved_tensors
        return grad_output * ctx.alpha * torch.exp(-ctx.beta * dt), None, None, None, None


class SingleSpikeIF(BaseNode):
    """Integrate-and-fire neuron that fires at most once per sample, trained through the STDB surrogate.

    Memories: membrane ``v``, ``fired`` (bool) and ``dt`` (steps since the last spike, counted from the
    reset state before the sample: 1 at its first step). The threshold is a buffer, so it is saved with
    the model and broadcast under DDP. ``ann_mode`` turns the module into the ANN twin's activation:
    ReLU, or the identity for the output layer.
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        leak: float = 1.0,
        alpha: float = 0.3,
        beta: float = 0.01,
        output: bool = False,
        step_mode: str = "m",
    ):
        super().__init__(float(v_threshold), None, None, False, step_mode)
        del self.v_threshold  # a float in BaseNode; a buffer here
        self.register_buffer("v_threshold", torch.tensor(float(v_threshold)))
        self.register_memory("fired", False)
        self.register_memory("dt", 1.0)
        self.leak, self.alpha, self.beta, self.output = float(leak), float(alpha), float(beta), output
        self.ann_mode = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ann_mode:
            return x if self.output else F.relu(x)
        return super().forward(x)

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        if isinstance(states[0], torch.Tensor) and states[0].shape == x.shape:
            return states
        return torch.zeros_like(x), torch.zeros_like(x, dtype=torch.bool), torch.ones_like(x)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        x, (v, fired, dt) = inputs[0], states
        v = torch.where(fired, v, self.leak * v + x)  # no integration after the spike
        m = v / self.v_threshold - 1
        spike = (m > 0) & ~fired
        out = _STDBSpike.apply(m, spike.to(x.dtype), dt, self.alpha, self.beta)
        return (out,), (v, fired | spike, torch.where(spike, 1.0, dt + 1))

    def multi_step_functional_forward(self, inputs, states, **kwargs):
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


@torch.no_grad()
def calibrate_thresholds(net: nn.Module, x: torch.Tensor, scaling_factor: float) -> dict[str, float]:
    """Run ``net`` as an ANN on ``x`` and set each neuron's threshold to ``scaling_factor`` x the largest
    input it receives (its pre-activation); returns the thresholds by module name."""
    neurons = {name: m for name, m in net.named_modules() if isinstance(m, SingleSpikeIF)}
    peaks: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _, inputs, name=name: peaks.__setitem__(name, inputs[0].max()))
        for name, m in neurons.items()
    ]
    modes = [m.ann_mode for m in neurons.values()]
    try:
        for m in neurons.values():
            m.ann_mode = True
        net(x)
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in zip(neurons.values(), modes, strict=True):
            m.ann_mode = mode
    thresholds = {}
    for name, m in neurons.items():
        peak = float(peaks[name])
        if not peak > 0:
            raise TrainingError(
                f"Layer {name} of the pre-trained ANN has no positive pre-activation on the calibration "
                f"batch (max {peak}), so its spiking threshold cannot be initialised from it. Train the ANN "
                "longer (method.ann_epochs) or with another method.ann_lr, or train from scratch "
                "(method.ann_epochs=0)."
            )
        m.v_threshold.fill_(scaling_factor * peak)
        thresholds[name] = float(m.v_threshold)
    return thresholds


def _batch_limit(limit: int | float, loader) -> int:
    """Lightning's ``limit_*_batches`` (a count or a fraction) as a number of batches of ``loader``."""
    return limit if isinstance(limit, int) else math.ceil(limit * len(loader))


@register_method("hybrid_stdb")
class HybridSTDB(BenchMethod):
    """Single-spike hybrid input encoding, ANN pre-training + threshold init, STDB fine-tuning (T = 5)."""

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int = 5,
        layers: str = "auto",
        ann_epochs: int = 4,
        ann_lr: float = 1e-3,
        scaling_factor: float = 0.15,
        v_threshold: float = 1.0,
        leak: float = 1.0,
        stdb_alpha: float = 0.3,
        stdb_beta: float = 0.01,
        time_weight: float = 1.0,
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, **optim)
        checks = {
            "ann_epochs": (ann_epochs, ann_epochs >= 0, ">= 0 (0 trains the SNN from scratch)"),
            "ann_lr": (ann_lr, ann_lr > 0, "> 0"),
            "scaling_factor": (scaling_factor, scaling_factor > 0, "> 0 (the lineage uses 0.7)"),
            "v_threshold": (v_threshold, v_threshold > 0, "> 0"),
            "leak": (leak, 0 < leak <= 1, "in (0, 1] (1 = integrate-and-fire, the lineage's default)"),
            "stdb_alpha": (stdb_alpha, stdb_alpha > 0, "> 0 (the lineage uses 0.3)"),
            "stdb_beta": (stdb_beta, stdb_beta >= 0, ">= 0 (the lineage uses 0.01)"),
            "time_weight": (time_weight, time_weight >= 0, ">= 0"),
        }
        for key, (value, ok, rule) in checks.items():
            if not ok:
                raise ConfigError(
                    f"method.{key}={value!r} is out of range for hybrid_stdb: it must be {rule}."
                )
        self.ann_epochs, self.ann_lr = int(ann_epochs), float(ann_lr)
        self.scaling_factor, self.time_weight = float(scaling_factor), float(time_weight)
        self.layers = default_layers(self.input_shape) if layers == "auto" else layers

        def make_neuron(output: bool = False) -> SingleSpikeIF:
            return SingleSpikeIF(v_threshold, leak, stdb_alpha, stdb_beta, output=output)

        net = layer_stack(self.input_shape, num_classes, self.layers, make_neuron)
        net.append(make_neuron(output=True))
        if kind == "static":  # the first synaptic layer sees the analog step, then spikes
            first = next(i for i, m in enumerate(net) if isinstance(m, nn.Conv2d | nn.Linear))
            net[first] = AnalogStepApart(net[first])
        self.net = net
        self.ann_mode = False
        # Set once the ANN phase and threshold initialisation ran, so a resumed fit does not redo them.
        self.register_buffer("converted", torch.tensor(False))
        self.details: dict = {"layers": self.layers, "ann_epochs": self.ann_epochs}

    # --- encoding, readout ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "event":
            return (super().encode(x) > 0).to(x.dtype)  # frames pass through as binary spikes
        if self.ann_mode:
            return x.unsqueeze(0)  # the ANN sees the analog image once
        return hybrid_encode(x, self.time_steps)

    def readout(self, output_seq: torch.Tensor) -> torch.Tensor:
        """ANN: mean class score over steps. SNN: ``U / V_th - time_weight * t`` from the output neurons'
        spike step ``t`` (``T + 1`` when silent) and final membrane ``U``."""
        if self.ann_mode:
            return output_seq.mean(0)
        steps = output_seq.shape[0]
        spikes = output_seq.detach()
        index = torch.arange(1, steps + 1, dtype=spikes.dtype, device=spikes.device).view(-1, 1, 1)
        spike_time = (spikes * index).sum(0) + (steps + 1) * (1 - spikes.sum(0))
        out = self.net[-1]
        return out.v / out.v_threshold - self.time_weight * spike_time

    # --- hybrid training -----------------------------------------------------------------------------
    def neurons(self) -> dict[str, SingleSpikeIF]:
        """The spiking neurons by their names in the model (``net.2``, as in the metrics' layers)."""
        return {f"net.{name}": m for name, m in self.net.named_modules() if isinstance(m, SingleSpikeIF)}

    def set_ann_mode(self, on: bool) -> None:
        """Switch every neuron between ReLU (the ANN twin) and single-spike IF (the SNN)."""
        self.ann_mode = on
        for m in self.neurons().values():
            m.ann_mode = on

    def _batches(self, loader: Iterable, limit: float) -> Iterable:
        batches = itertools.islice(loader, int(limit)) if limit < len(loader) else loader
        dtype = next(self.parameters()).dtype
        for x, y in batches:
            yield x.to(self.device, dtype), y.to(self.device)

    @torch.no_grad()
    def accuracy_on(self, loader: Iterable, limit: float = math.inf) -> float | None:
        """Accuracy of the network in its current (ANN or SNN) mode, eval mode, on a loader."""
        was_training, correct, total = self.training, 0, 0
        self.eval()
        for x, y in self._batches(loader, limit):
            correct += int((self(x).argmax(1) == y).sum())
            total += len(y)
        self.train(was_training)
        return correct / total if total else None

    def pretrain_ann(self, loader: Iterable, epochs: int, limit: float = math.inf) -> None:
        """Train the ANN twin (ReLU neurons, analog input once) with Adam and a cosine schedule."""
        self.set_ann_mode(True)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.ann_lr)
        steps = epochs * min(limit, len(loader))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
        self.train()
        for _ in range(epochs):
            for x, y in self._batches(loader, limit):
                loss = F.cross_entropy(self(x), y)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"The ANN pre-training loss became {loss.item()}: lower method.ann_lr "
                        f"(now {self.ann_lr})."
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        optimizer.zero_grad(set_to_none=True)

    def convert(self, x: torch.Tensor) -> dict[str, float]:
        """Thresholds from the trained ANN's max pre-activations on batch ``x`` (eval-mode BN), SNN mode."""
        was_training = self.training
        self.eval()
        self.set_ann_mode(True)
        thresholds = calibrate_thresholds(self.net, self.encode(x.to(self.device)), self.scaling_factor)
        thresholds = {f"net.{name}": value for name, value in thresholds.items()}
        self.set_ann_mode(False)
        self.train(was_training)
        return thresholds

    @torch.no_grad()
    def recalibrate_norms(self, loader: Iterable, batches: int) -> None:
        """Re-estimate the BN statistics on the SNN's own inputs (spikes, and the analog image once), a
        plain average over ``batches`` training batches: the ANN's statistics do not describe them."""
        norms = [m for m in self.net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        was_training = self.training
        self.train()
        for x, _ in self._batches(loader, batches):
            self(x)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.train(was_training)

    def on_train_start(self) -> None:
        """The ANN phase of hybrid training, before the first SNN epoch (skipped from scratch or on
        resume). Every process trains on the full training set; under DDP rank 0's network is then
        broadcast, so all processes fine-tune the same SNN."""
        if self.ann_epochs == 0 or bool(self.converted):
            return
        trainer, data = self.trainer, self.trainer.datamodule
        train, val = data.train_dataloader(), data.val_dataloader()  # the full sets, on every rank
        val_limit = _batch_limit(trainer.limit_val_batches, val)
        self.pretrain_ann(train, self.ann_epochs, _batch_limit(trainer.limit_train_batches, train))
        self.details["ann_val_acc"] = self.accuracy_on(val, val_limit)
        x, _ = next(iter(train))
        self.details["thresholds"] = self.convert(x)
        self.recalibrate_norms(
            train, min(RECALIBRATION_BATCHES, _batch_limit(trainer.limit_train_batches, train))
        )
        self.converted.fill_(True)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in self.net.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
            self.details["thresholds"] = {name: float(m.v_threshold) for name, m in self.neurons().items()}
        self.details["converted_snn_val_acc"] = self.accuracy_on(val, val_limit)
        self.print(
            f"hybrid_stdb: ANN pre-training {self.ann_epochs} epochs, val acc {self.details['ann_val_acc']}; "
            f"converted SNN val acc {self.details['converted_snn_val_acc']}; STDB fine-tuning follows."
        )

    def run_details(self) -> dict:
        thresholds = {name: float(m.v_threshold) for name, m in self.neurons().items()}
        return {**self.details, "final_thresholds": thresholds, "time_steps": self.time_steps}
