"""The base LightningModule every method plugs into.

A method is built from the dataset facts the runner passes in (``num_classes``, ``input_shape``, ``kind``,
and for event data ``frames``, the fine frames per sample) plus ``time_steps`` and its own hyper-parameters.
Inside, SNN tensors are time-first ``[T, B, ...]`` (spikingjelly's multi-step convention). The base class
owns what every method needs done the same way: input encoding, readout, loss, optimiser + cosine
schedule, accuracy, the per-batch neuron reset, the NaN-loss guard, and the declarations the metrics
callback reads: whether the method is spiking at all, its spiking layers and its synaptic layers. It
also states the contract's rule on ``time_steps`` (``check_time_steps``), which the config check runs.

Kept models: a run keeps only its model's ``state_dict``, and ``bench test --run`` re-tests it by building
a fresh model from the run's config and loading that state dict. So whatever a method decides while
training and uses at test time must live in parameters or buffers (``register_buffer``), never only in a
Python attribute; what only describes training (a history for the record) may stay outside, in
``run_details``, which the re-test's record copies from the training record
(``tests/test_kept_models.py`` checks every registered method).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from bench.design import outside_reason
from bench.errors import ConfigError
from bench.guards import diverged

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULERS = ("cosine", "none")
KINDS = ("static", "event")
SYNAPTIC_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)


@dataclass(frozen=True)
class SynapticLayer:
    """A layer whose weights multiply its input (conv/linear) and how its weights are stored."""

    module: nn.Module
    weight_bits: int = 32
    scale_params: int = 0  # 32-bit scaling factors stored beside binarised/quantised weights


class BenchMethod(pl.LightningModule):
    """Base class of all methods (not registered itself)."""

    #: Whether the network computes with spikes. The metrics callback counts a non-spiking method's every
    #: synaptic op as a MAC (a conventional accelerator's dense count), a spiking one's by its inputs.
    spiking: bool = True
    #: ``time_steps=None`` means every fine frame is a step on event data, this many steps on images.
    static_time_steps: int = 1
    #: The input kinds and time steps the method's paper designs it for (:mod:`bench.design`): per kind,
    #: (lowest T, highest T or None). A run outside is allowed; its record says ``outside_design``.
    design: dict = {"static": (1, None), "event": (1, None)}
    #: The paper's grounds for ``design``, in a few words.
    design_basis: str = ""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        kind: str = "static",
        time_steps: int | None = 1,
        frames: int | None = None,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str = "cosine",
    ):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}.")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"method.optimizer={optimizer!r} is not supported; use one of {sorted(OPTIMIZERS)}."
            )
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"method.scheduler={scheduler!r} is not supported; use {SCHEDULERS}.")
        self.save_hyperparameters()
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.kind = kind
        if time_steps is None:  # resolved from the facts the runner passes in, not re-derived in a config
            time_steps = frames if kind == "event" and frames else self.static_time_steps
        self.time_steps = int(time_steps)
        self.frames = None if frames is None else int(frames)  # fine frames per event sample
        self.train_acc = MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)
        self._test_outcomes: list[torch.Tensor] = []  # per test batch: predicted classes and labels

    @staticmethod
    def check_time_steps(time_steps: int | None, frames: int | None) -> None:
        """T must be >= 1 and, on event data (``frames`` fine frames per sample, None on images), divide
        ``frames``: each time step integrates an equal group of fine frames. ``None`` is "every fine frame a
        step" (the method's ``static_time_steps`` on images): it always fits. Checked once per run, with
        the config (``bench.config.validate``), before anything is recorded; not per batch."""
        if time_steps is None:
            return
        if int(time_steps) < 1:
            raise ConfigError(f"method.time_steps must be >= 1, got {time_steps}.")
        if frames is not None and int(frames) % int(time_steps):
            divisors = [t for t in range(1, int(frames) + 1) if int(frames) % t == 0]
            raise ConfigError(
                f"method.time_steps={time_steps} does not divide data.frames={frames}: each time step "
                f"integrates an equal group of fine event frames. Use a time_steps in {divisors}, or change "
                "data.frames."
            )

    # --- what a method overrides -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Batch -> time-first input ``[T, B, C, H, W]``.

        Static images use direct encoding (the analog image at every one of the T steps). Event batches
        ``[B, frames, C, H, W]`` are re-binned into ``time_steps`` steps, each the sum of ``frames / T``
        consecutive fine frames (the event counts of a T-frame integration); T = frames passes them through.
        """
        if self.kind == "event":
            batch, frames = x.shape[:2]
            if frames != self.time_steps:
                x = x.reshape(batch, self.time_steps, frames // self.time_steps, *x.shape[2:]).sum(2)
            return x.transpose(0, 1).contiguous()
        return x.unsqueeze(0).expand(self.time_steps, *x.shape)

    def readout(self, output_seq: torch.Tensor) -> torch.Tensor:
        """Network output ``[T, B, classes]`` -> logits ``[B, classes]``: the mean over time."""
        return output_seq.mean(0)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)

    def spiking_layers(self) -> dict[str, nn.Module]:
        """Modules whose outputs are spikes; default: every spikingjelly neuron."""
        return {name: m for name, m in self.named_modules() if isinstance(m, BaseNode)}

    def synaptic_layers(self) -> dict[str, SynapticLayer]:
        """Conv/linear layers with their weight bit widths; override to declare binarised layers."""
        return {name: SynapticLayer(m) for name, m in self.named_modules() if isinstance(m, SYNAPTIC_TYPES)}

    def spike_levels(self) -> int | None:
        """K, the most thresholds of any spiking layer: a spike carries an amplitude 0..K, so
        ``ceil(log2(K + 1))`` bits per neuron and step (1 for binary spikes, 2 for K = 3); None for a
        non-spiking method. Read from the neurons (their ``levels``, 1 when they have none)."""
        if not self.spiking:
            return None
        return max((int(getattr(m, "levels", 1)) for m in self.spiking_layers().values()), default=1)

    def outside_design(self) -> str | None:
        """Why this run (its input kind and resolved T) lies outside the method's design, or None."""
        key = getattr(type(self), "registry_key", type(self).__name__)
        return outside_reason(key, self.design, self.design_basis, self.kind, self.time_steps)

    def run_details(self) -> dict:
        """Method-specific facts of the finished run for its record (JSON-serialisable), e.g. which layers
        a method chose to binarise per epoch; stored as ``method_details``."""
        return {}

    # --- cost estimate (``bench sweep --dry-run --estimate``, bench/sweep/estimate.py) ----------------
    def pilot_phases(self, max_epochs: int) -> list[tuple[int, dict]]:
        """The run's training phases of different cost per step: (epochs, ``method.*`` overrides that make
        a fresh build train as that phase does). The pilot times a few steps of each."""
        return [(max_epochs, {})]

    def extra_work(self, max_epochs: int, val_batches: int) -> tuple[float, float]:
        """Work a run does outside its training, validation and test batches, as (optimiser steps,
        no-grad forward batches) of its last phase: none by default."""
        return 0.0, 0.0

    # --- shared machinery --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Every forward starts from resting neurons: no state leaks between batches, whatever calls us.
        # Only `self.net` (which holds every stateful module): reset_net calls `reset()` on anything
        # that has one, and torchmetrics' accuracy objects do.
        functional.reset_net(self.net)
        return self.readout(self.net(self.encode(x)))

    def _step(self, batch, stage: str) -> torch.Tensor:
        """Loss and accuracy, with nothing that waits for the device on every step: the accuracy is only
        accumulated (``update``: its value is computed at the epoch's end; the labels come from a checked
        DataModule, so its argument checks are off), and the per-step loss goes to the progress bar only
        when there is one (showing it reads the value back every step)."""
        x, y = batch
        logits = self(x)
        loss = self.compute_loss(logits, y)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy.update(logits, y)
        if stage == "test":
            self._test_outcomes.append(torch.stack((logits.detach().argmax(1), y)))
        on_step = stage == "train"
        bar = not on_step or getattr(self._trainer, "progress_bar_callback", None) is not None
        self.log(f"{stage}/loss", loss, prog_bar=bar, on_step=on_step, on_epoch=True)
        self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        # A non-finite or exploding loss is caught by the runner's DivergenceGuard (bench/guards.py).
        return self._step(batch, "train")

    def optimizer_step(self, *args, **kwargs):
        """An absurd learning rate overflows inside the optimiser before any loss is non-finite: report it
        as the divergence it is."""
        try:
            return super().optimizer_step(*args, **kwargs)
        except RuntimeError as error:
            if "overflow" not in str(error):
                raise
            raise diverged(self, f"The optimiser step overflowed ({error})") from error

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._test_outcomes: list[torch.Tensor] = []

    def on_test_epoch_end(self) -> None:
        """Every test item's predicted class and label, ``[2, N]`` in the test set's order, as
        ``self.test_outcomes`` for the record (paired comparisons on the same items). Under DDP each of the
        W ranks tested every W-th item (Lightning's DistributedSampler, unshuffled, padded by wrapping to
        the start): the ranks' shares are gathered, interleaved back and the padding dropped."""
        local = torch.cat(self._test_outcomes, 1) if self._test_outcomes else torch.zeros(2, 0).long()
        self._test_outcomes = []
        world = self.trainer.world_size
        if world > 1:
            loaders = self.trainer.test_dataloaders
            loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
            gathered = self.all_gather(local.to(self.device))  # [W, 2, n]: rank r's i-th is item i W + r
            local = gathered.permute(1, 2, 0).reshape(2, -1)[:, : len(loader.dataset)]
        self.test_outcomes = local.cpu()

    def parameter_groups(self) -> list[dict] | None:
        """Optimiser parameter groups with their own settings (e.g. a learning rate of their own), or None
        for one group of every parameter; a group's keys override ``method.lr`` and the others."""
        return None

    def build_optimizer(self, lr: float | None = None) -> torch.optim.Optimizer:
        """The configured optimiser (``method.optimizer``, weight decay, SGD's momentum) over
        :meth:`parameter_groups`, at ``lr`` (default ``method.lr``)."""
        hp = self.hparams
        kwargs = {"lr": hp.lr if lr is None else lr, "weight_decay": hp.weight_decay}
        if hp.optimizer == "sgd":
            kwargs["momentum"] = hp.momentum
        return OPTIMIZERS[hp.optimizer](self.parameter_groups() or self.parameters(), **kwargs)

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = self.build_optimizer()
        if hp.scheduler == "none":
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
