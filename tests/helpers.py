"""What several test modules share (test modules never import each other): the one set of quick run
overrides, the ``bench`` command as a subprocess, a copy of the project to add files to, sweep files, the
SLURM-only marker, the metrics callback on a bare network, a quiet trainer and a tiny classifier, one training
step of a model, and the samples of an event DataModule."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from bench import PROJECT_ROOT
from bench.metrics import EnergyMetrics
from bench.sweep import load_sweep
from methods.base import BenchMethod

#: The eight real datasets (fixtures in the exact real formats; nothing is downloaded in tests).
REAL_DATASETS = (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "tiny_imagenet",
    "nmnist",
    "cifar10_dvs",
    "dvs_gesture",
)


# --- quick runs ------------------------------------------------------------------------------------------
#: The one set of quick-run overrides: one epoch of two training batches of 32, one validation and one test
#: batch, no latency or throughput timing, no progress bar, no logger. Tests add what they are about.
QUICK_SETTINGS = {
    "trainer.max_epochs": 1,
    "trainer.limit_train_batches": 2,
    "trainer.limit_val_batches": 1,
    "trainer.limit_test_batches": 1,
    "metrics.latency_samples": 0,
    "metrics.throughput_batches": 0,
    "data.batch_size": 32,
    "trainer.enable_progress_bar": "false",
    "logger": "none",
}
QUICK = [f"{key}={value}" for key, value in QUICK_SETTINGS.items()]


# --- the command line as a user meets it -----------------------------------------------------------------
def env_for(folder: Path, columns: int | None = None) -> dict:
    """The environment of a ``bench`` subprocess writing results, logs, models and data under ``folder``."""
    return {
        **os.environ,
        **({"COLUMNS": str(columns)} if columns else {}),
        "SNNBENCH_RESULTS": str(folder / "results"),
        "SNNBENCH_LOGS": str(folder / "logs"),
        "SNNBENCH_MODELS": str(folder / "models"),
        "SNNBENCH_DATA": str(folder / "data"),
    }


def bench(*args: str, folder: Path, columns: int | None = None, timeout: float = 600):
    """``python -m bench.cli ARGS`` in a subprocess, its results under ``folder``; the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        capture_output=True,
        text=True,
        env=env_for(folder, columns),
        timeout=timeout,
    )


def records(folder: Path) -> dict[str, dict]:
    """The run records under ``folder``'s results, by run id."""
    return {p.stem: json.loads(p.read_text()) for p in (folder / "results" / "runs").glob("*.json")}


def wait_for_checkpoint(folder: Path, rid: str, process=None, timeout: float = 300) -> Path:
    """Block until run ``rid`` has written its first checkpoint under ``folder``'s logs (the run, if given,
    must still be running meanwhile)."""
    last = folder / "logs" / "checkpoints" / rid / "last.ckpt"
    deadline = time.monotonic() + timeout
    while not last.exists():
        assert time.monotonic() < deadline, f"no checkpoint {last} within {timeout} s"
        assert process is None or process.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.1)
    return last


def project_copy(folder: Path) -> Path:
    """A copy of the project's code, configs and tests under ``folder``, to run ``bench`` and pytest in (as
    the working directory, which Python puts first on the path): a test that adds files to the project
    adds them there, never to the tree that the other tests, running meanwhile, read."""
    root = folder / "project"
    skip = shutil.ignore_patterns("__pycache__")
    for name in ("bench", "methods", "datamodules", "configs", "tests"):
        shutil.copytree(PROJECT_ROOT / name, root / name, ignore=skip)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", root)
    return root


# --- sweep files ----------------------------------------------------------------------------------------
def write_sweep(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def quick_sweep(folder: Path, name: str, methods: str, seeds: str, epochs: int, **extra) -> Path:
    """A sweep file of ``methods`` on mnist5k under the quick settings, ``epochs`` epochs; ``extra``
    settings with ``__`` for the dots (``trainer__limit_train_batches=10``)."""
    settings = {
        **QUICK_SETTINGS,
        "trainer.max_epochs": epochs,
        **{k.replace("__", "."): v for k, v in extra.items()},
    }
    overrides = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    text = f"methods: {methods}\ndatasets: [mnist5k]\nseeds: {seeds}\noverrides:\n{overrides}\n"
    return write_sweep(folder, name, text)


def load_sweep_in(folder: Path, path: Path):
    """The sweep as ``bench`` subprocesses writing under ``folder`` see it (their results directory)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SNNBENCH_RESULTS", str(folder / "results"))
        return load_sweep(str(path))


# --- SLURM ----------------------------------------------------------------------------------------------
@functools.cache
def slurm_up() -> bool:
    """Whether a SLURM node answers idle, mixed or allocated (asked once per test process)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and any(state in out.stdout for state in ("idle", "mix", "alloc"))


def needs_slurm(test):
    """A test that submits to the local SLURM: skipped without one. All of them run one after another on
    one pytest-xdist worker (they share the single local node), first (xdist sends the largest group
    first), while the other worker runs the rest."""
    reason = "no idle SLURM node (scripts/slurm-local.sh up starts one; CI does)"
    return pytest.mark.xdist_group("slurm")(pytest.mark.skipif(not slurm_up(), reason=reason)(test))


# --- the metrics callback on any network -------------------------------------------------------------------
class Layers(nn.ModuleDict):
    """Holds a probe's layers; calling it with a time-first tensor tells the callback T."""

    def forward(self, x_seq):
        return x_seq


class Probe(nn.Module):
    """Any network, with the base method's layer declarations, so the callback can be used on it alone.
    Calling it runs ``run()``, which calls its layers by hand: one forward pass, as a method's is."""

    spiking = True
    synaptic_layers = BenchMethod.synaptic_layers
    spiking_layers = BenchMethod.spiking_layers

    def __init__(self, **modules):
        super().__init__()
        self.net = Layers(modules)

    def forward(self, run):
        return run()


def measure(probe: nn.Module, run, samples: int = 1, steps: int = 1, **options) -> tuple[dict, dict]:
    """Attach the callback, ``run()`` the layers, return (totals, per-layer entries by name).

    A bare probe's ``net`` is told the number of time steps ``steps``; a method's forward tells it.
    """
    callback = EnergyMetrics(latency_samples=0, throughput_batches=0, **options)
    callback.attach(probe)
    with torch.no_grad():
        if isinstance(probe, Probe):
            probe.net(torch.zeros(steps, 1))
            probe(run)
        else:
            run()
    callback.flush(samples)
    callback.detach()
    totals = callback.summarize(probe)
    return totals, {entry["name"]: entry for entry in callback.layers}


# --- methods ------------------------------------------------------------------------------------------
def quiet_trainer(**settings) -> pl.Trainer:
    """A Lightning Trainer on the CPU that writes and prints nothing (no logger, checkpoint, progress bar or
    model summary): a method trained inside a test. ``settings`` add to or replace these."""
    quiet = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False}
    quiet |= {"enable_progress_bar": False, "enable_model_summary": False}
    return pl.Trainer(**(quiet | settings))


class TinyClassifier(pl.LightningModule):
    """A Linear 4 -> 2 that logs to the progress bar what every method logs (methods/base.py): the
    training loss each step and epoch, the accuracy and loss of each validation."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.layer(x), y)
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/acc", 0.5, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def tiny_batch(datamodule, batch_size: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch shaped like the DataModule's (event counts on event data), with labels."""
    generator = torch.Generator().manual_seed(seed)
    if datamodule.kind == "event":
        shape = (batch_size, datamodule.frames, *datamodule.input_shape)
        x = torch.randint(0, 3, shape, generator=generator).float()
    else:
        x = torch.randn(batch_size, *datamodule.input_shape, generator=generator)
    y = torch.randint(0, datamodule.num_classes, (batch_size,), generator=generator)
    return x, y


def assert_trains_one_step(model, x, y, num_classes: int) -> None:
    """Logits of the right shape, a finite loss, finite gradients for every parameter, and a nonzero
    gradient at the first synaptic layer: the loss reaches back through every layer to the input."""
    logits = model(x)
    assert logits.shape == (len(y), num_classes)
    loss = model.compute_loss(logits, y)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = next(iter(model.synaptic_layers().values())).module
    assert first.weight.grad.abs().sum() > 0, "no gradient reaches the first synaptic layer"


# --- event data -----------------------------------------------------------------------------------------
def items(dm, dataset):
    """(file, frames, label) of every sample of a split of an event DataModule."""
    for i in range(len(dataset)):
        x, y = dataset[i]
        yield dm.samples.paths[dataset.indices[i]], x, y


# --- records with test predictions ----------------------------------------------------------------------
def predicted_record(
    run_id: str,
    method: str,
    correct,
    labels,
    seed: int,
    fold: int | None = None,
    ids=None,
    time_steps: int = 1,
    dataset: str = "mnist5k",
    **metrics,
) -> dict:
    """An ok record whose ``test_predictions`` give ``correct`` on items with ``labels`` (a wrong item
    predicts the next class), named by pool ``ids`` when given (k-fold) and at ``fold`` of the config;
    ``metrics`` beside test_acc (its mean of ``correct``), time_steps and a fixed cost table."""
    import base64

    import numpy as np

    from bench.results import predictions

    correct, labels = np.asarray(correct, dtype=bool), np.asarray(labels)
    predicted = np.where(correct, labels, (labels + 1) % 10)
    entry = predictions.encode(torch.tensor(np.stack([predicted, labels])))
    if ids is not None:
        entry["ids"] = base64.b64encode(np.asarray(ids).astype("<u2").tobytes()).decode()
    data = {"batch_size": 128} | ({"fold": fold, "folds": 5} if fold is not None else {})
    conventions = {"version": 2, "spiking": True, "graded_spikes": "amplitude", "pooled_spikes": "effective"}
    return {
        "run_id": run_id,
        "method": method,
        "dataset": dataset,
        "seed": seed,
        "status": "ok",
        "error": None,
        "sweep": "m",
        "track": "matched",
        "config": {"seed": seed, "method": {"time_steps": time_steps}, "data": data},
        "metrics": {
            "test_acc": float(correct.mean()),
            "time_steps": time_steps,
            "cost_table": "horowitz45_fp32",
            "conventions": conventions,
            **metrics,
        },
        "test_predictions": entry,
    }
