"""Training progress as plain lines, for output that is not a terminal (a SLURM task's ``.out`` file, a
sweep cell's log), where a progress bar shows nothing until an epoch ends::

    training LIFSG: 8 epochs x 256 steps (2048 steps), batch size 128
    epoch 3/8  step 120/256  loss 0.412  412 samples/s  ETA epoch 0:01:12, run 0:09:40
    validation  epoch 3/8  acc 0.9575  loss 0.1234  (4.1 s)
    training ended: 8 epochs, 2048 steps in 0:12:01
    test  acc 0.9710  loss 0.0912  (2.3 s)

A training line comes every ``every_n_steps`` optimizer steps or every ``every_s`` seconds, whichever
comes first (the config's ``progress`` group); its loss is the mean training loss since the line before
(read from the device once per line, never per step), its samples/s the rate since then (all DDP
processes together, validation time left out), its ETAs the rest of the epoch at that rate and the rest of
the run at the run's own pace so far (validation included). Only the global-rank-0 process prints; a
resumed run starts its count at the step it resumed from. :func:`progress_display` picks between these
lines and the Rich progress bar of a terminal.
"""

from __future__ import annotations

import math
import sys
import time

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning import callbacks
from pytorch_lightning.callbacks import Callback, RichProgressBar
from pytorch_lightning.utilities.model_summary import get_formatted_model_size, get_human_readable_count
from rich import box, get_console
from rich.progress import BarColumn, ProgressColumn
from rich.table import Column, Table
from rich.text import Text

from bench.config import PROGRESS_DEFAULTS
from bench.progress import clock, say, took


def _batch_size(batch) -> int:
    """The number of samples in a batch: the first dimension of its first tensor."""
    while isinstance(batch, list | tuple) and batch:
        batch = batch[0]
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) and batch.dim() else 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class TrainingLines(Callback):
    """One plain line every ``every_n_steps`` optimizer steps or ``every_s`` seconds while training, one
    at each validation's end and at the test's end (module doc)."""

    def __init__(self, every_n_steps: int = 50, every_s: float = 30.0):
        self.every_n_steps, self.every_s = int(every_n_steps), float(every_s)
        self._fit_start = self._fit_step = 0
        self._phase_start = 0.0
        self._fresh = False
        self._reset_window(0)

    # --- the window: what happened since the last line ---------------------------------------------------
    def _reset_window(self, step: int) -> None:
        self._window_start = self._last_line = time.monotonic()
        self._window_step = step
        self._window_batches = self._window_samples = 0
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    @staticmethod
    def _epochs(trainer: pl.Trainer) -> str:
        epoch = trainer.current_epoch + 1
        return f"epoch {epoch}/{trainer.max_epochs}" if (trainer.max_epochs or -1) > 0 else f"epoch {epoch}"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start, self._fit_step = time.monotonic(), trainer.global_step
        self._reset_window(trainer.global_step)
        steps = self._epoch_steps(trainer)
        total = trainer.estimated_stepping_batches
        shape = _count(trainer.max_epochs, "epoch") if (trainer.max_epochs or -1) > 0 else "no epoch limit"
        if steps is not None:
            shape += f" x {steps} steps"
        if math.isfinite(total):
            shape += f" ({int(total)} steps)"
        batch_size = getattr(trainer.datamodule, "batch_size", None) if trainer.datamodule else None
        resumed = (
            f", resuming at epoch {trainer.current_epoch + 1}, step {trainer.global_step}"
            if trainer.global_step
            else ""
        )
        size = f", batch size {batch_size}" if batch_size else ""
        say(f"training {type(pl_module).__name__}: {shape}{size}{resumed}")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset_window(trainer.global_step)
        self._fresh = True

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        """The epoch's clock starts at its first batch: what the method does at the epoch's start (e.g.
        hybrid_stdb's conversion, which says so itself) is no training time."""
        if self._fresh:
            self._window_start = self._last_line = time.monotonic()
            self._fresh = False

    def _epoch_steps(self, trainer: pl.Trainer) -> int | None:
        batches = trainer.num_training_batches
        if not isinstance(batches, int) and not (isinstance(batches, float) and math.isfinite(batches)):
            return None
        return math.ceil(int(batches) / max(1, trainer.accumulate_grad_batches))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # summed on the device: no host synchronisation per step
            loss = loss.detach().float().reshape(())
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
        self._window_batches += 1
        self._window_samples += _batch_size(batch)
        now = time.monotonic()
        if (
            trainer.global_step - self._window_step >= self.every_n_steps
            or now - self._last_line >= self.every_s
        ):
            say(self._training_line(trainer, batch_idx, now))
            self._reset_window(trainer.global_step)

    def _training_line(self, trainer: pl.Trainer, batch_idx: int, now: float) -> str:
        accumulate = max(1, trainer.accumulate_grad_batches)
        steps = self._epoch_steps(trainer)
        step = math.ceil((batch_idx + 1) / accumulate)
        parts = [self._epochs(trainer), f"step {step}/{steps}" if steps else f"step {step}"]
        if self._loss_count:
            parts.append(f"loss {float(self._loss_sum) / self._loss_count:.4f}")
        seconds = max(now - self._window_start, 1e-9)
        parts.append(f"{self._window_samples * trainer.world_size / seconds:.0f} samples/s")
        etas = []
        if steps:
            batches_left = int(trainer.num_training_batches) - (batch_idx + 1)
            etas.append(f"epoch {clock(batches_left * seconds / max(1, self._window_batches))}")
        total, done = trainer.estimated_stepping_batches, trainer.global_step - self._fit_step
        if math.isfinite(total) and done > 0:
            etas.append(f"run {clock((total - trainer.global_step) * (now - self._fit_start) / done)}")
        if etas:
            parts.append("ETA " + ", ".join(etas))
        return "  ".join(parts)

    # --- validation, end of training, test ---------------------------------------------------------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._phase_start = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        seconds = time.monotonic() - self._phase_start
        self._window_start += seconds  # a validation inside an epoch is no training time
        self._last_line = time.monotonic()
        say(f"validation  {self._epochs(trainer)}  {self._scores(trainer, 'val')}({took(seconds)})")

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        epochs, steps = _count(trainer.current_epoch, "epoch"), _count(trainer.global_step, "step")
        say(f"training ended: {epochs}, {steps} in {took(time.monotonic() - self._fit_start)}")

    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        self._phase_start = time.monotonic()

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.is_global_zero:
            say(f"test  {self._scores(trainer, 'test')}({took(time.monotonic() - self._phase_start)})")

    @staticmethod
    def _scores(trainer: pl.Trainer, stage: str) -> str:
        metrics = trainer.callback_metrics
        found = [(name, metrics.get(f"{stage}/{name}")) for name in ("acc", "loss")]
        return "".join(f"{name} {float(value):.4f}  " for name, value in found if value is not None)


class _Whole(ProgressColumn):
    """One of Lightning's progress columns, its text kept whole (only the bar narrows on a narrow
    terminal)."""

    def __init__(self, column: ProgressColumn):
        self.column = column
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task):
        return self.column.render(task)


class _Metrics(ProgressColumn):
    """The training bar's metrics, one ``name: value`` a line, never wrapped."""

    def __init__(self, bar: ProgressBar):
        self.bar = bar
        super().__init__(table_column=Column(no_wrap=True))

    def render(self, task) -> Text:
        trainer = self.bar.trainer
        if trainer.state.fn != "fit" or trainer.sanity_checking or task.id != self.bar.train_progress_bar_id:
            return Text()  # as Lightning's own column: the training bar only
        number = self.bar.theme.metrics_format
        lines = [
            f"{name}: {value if isinstance(value, str) else format(value, number)}"
            for name, value in self.bar.shown.items()
        ]
        return Text("\n".join(lines), style=self.bar.theme.metrics)


class ProgressBar(RichProgressBar):
    """Lightning's Rich bar with each metric's name and value kept together. Lightning's own metric column
    joins every ``name: value`` into one text that wraps at any space, so on an 80-column terminal values
    print before their names (``1.085 val/loss:``); here they are one a line in a column that never wraps
    (:class:`_Metrics`; the bar narrows instead), without the logger's version number (``v_num``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown: dict = {}

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        self.shown = {name: value for name, value in metrics.items() if name != "v_num"}
        return {}  # for Lightning's own metric column, left empty: _Metrics shows them

    def configure_columns(self, trainer: pl.Trainer) -> list:
        columns = super().configure_columns(trainer)
        return [*(c if isinstance(c, BarColumn) else _Whole(c) for c in columns), _Metrics(self)]


class ModelSummary(callbacks.ModelSummary):
    """Lightning's model summary (layers, parameters, size) without its FLOPs column and total: Lightning
    counts FLOPs only through an example input, which no method sets, so every run of this energy
    benchmark began with ``Total FLOPs: 0``. What a run computes (synaptic operations, energy) is counted
    in its test and shown in its summary table."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs,
    ) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for name, _ in columns:
            table.add_column(name, justify="right" if name == "Params" else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        counts = (trainable_parameters, total_parameters - trainable_parameters)
        trainable, frozen = (get_human_readable_count(n).strip() for n in counts)
        size = get_formatted_model_size(model_size)
        console.print(f"parameters: {trainable} trainable, {frozen} frozen ({size} MB)", highlight=False)


def progress_display(cfg: DictConfig) -> tuple[list[Callback], bool]:
    """How a run shows its progress: ``(callbacks, enable_progress_bar)`` for its Trainer. Plain lines
    (:class:`TrainingLines`) when ``progress.lines`` is ``true``, or ``auto`` and stdout is not a terminal;
    otherwise the Rich bar on a terminal if ``trainer.enable_progress_bar`` (the default), else nothing."""
    group = cfg.get("progress")
    settings = {**PROGRESS_DEFAULTS, **(OmegaConf.to_container(group) if group is not None else {})}
    lines = settings["lines"]
    if lines is True or (lines == "auto" and not sys.stdout.isatty()):
        return [TrainingLines(settings["every_n_steps"], settings["every_s"])], False
    if cfg.trainer.get("enable_progress_bar", True):
        return [ProgressBar()], True
    return [], False
