"""Benchmark (run by hand): the training harness's per-step cost, against a bare PyTorch loop.

For each method, in one process, on the same batches and the same device:

* **harness**: ``trainer.fit`` of the Trainer that ``bench.runner.build_trainer`` builds, with the
  callbacks a run adds (``bench.runner.run_callbacks``: the metrics callback and the divergence guard, plus
  the progress display, checkpoint and CSV logger that ``build_trainer`` adds itself), from the method's
  config;
* **bare**: what the method's ``training_step`` computes minus the harness: forward, the method's own
  ``compute_loss``, backward, the optimiser step and the lr-schedule step of the method's own
  ``configure_optimizers``, ``zero_grad`` (under the same autocast / grad scaler as the Trainer's precision).

Both paths build a fresh model at the config's seed and run the same list of batches, pre-loaded from the
DataModule's training loader (full batches only; ``--synthetic``: random tensors of the dataset's shape,
no files needed), each batch moved to the device inside the step, as Lightning does. The timed window
is whole loop iterations ``1..N``: from the start of iteration 1 to the start of iteration ``N + 1``
(``N + 2`` batches are run; batch 0 is warm-up), synchronising the device at both marks. In the Trainer
a callback takes the marks at ``on_train_batch_start``, which Lightning calls after fetching a batch and
moving it to the device, so the window holds each of N iterations once: fetch, transfer, hooks, step,
logging (every ``trainer.log_every_n_steps``). Epoch-end work (validation, checkpoint, epoch metrics) is
outside it: this is the steady-state step cost. Paths are interleaved (bare, harness, bare, ...) after a
warm-up of each; the median of ``--repeats`` is reported, with the ratio harness / bare (goal >= 0.97).

The progress display renders to stdout as in a run: the Rich bar on a terminal, plain lines through a pipe
(``bench.training_lines``: a line every ``progress.every_n_steps`` steps, the loss read to the host once a
line); ``--overrides trainer.enable_progress_bar=false progress.lines=false`` measures without either.
``--profile`` runs each path once more under cProfile (inside the window only) and prints where the harness
spends time beyond the bare loop, and the places that read tensor values to the host per step (each a
device synchronisation on a GPU).

Usage: ``.venv/bin/python benchmarks/harness_overhead.py [--methods lif_sg multi_threshold]
[--dataset mnist5k] [--steps 40] [--repeats 5] [--threads 1] [--device cpu|cuda] [--profile]``
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import itertools
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from bench.config import load_config
from bench.runner import build, build_trainer, quiet_lightning, run_callbacks

GOAL = 0.97
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu"}
# Lightning's remarks on a fit with no val loader and fewer steps than the logging interval: expected here.
for _remark in ("You defined a `validation_step`", "The number of training batches"):
    warnings.filterwarnings("ignore", message=f".*{_remark}")
_fits = itertools.count()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config(
    method: str, dataset: str, steps: int, device: str, logs: str, overrides: tuple[str, ...] = ()
) -> DictConfig:
    """The method's config for ``dataset``, set to run ``steps + 2`` steps of one epoch on ``device``, with
    its logs and checkpoints under ``logs``; ``overrides`` come last (``trainer.precision=bf16-mixed``)."""
    return load_config(
        method,
        dataset,
        [
            f"trainer.accelerator={ACCELERATORS[torch.device(device).type]}",
            "trainer.max_epochs=1",
            f"trainer.max_steps={steps + 2}",
            "trainer.enable_model_summary=false",
            f"paths.logs={logs}",
            f"paths.results={logs}/results",
            *overrides,
        ],
    )


def load_batches(cfg: DictConfig, method: str, dataset: str, count: int, synthetic: bool = False) -> list:
    """``count`` full training batches on the host: from the DataModule's train loader (cycling its epochs),
    or random tensors of the dataset's sample shape (``synthetic``; no files read)."""
    datamodule, _ = build(cfg, method, dataset)
    size = datamodule.batch_size
    if synthetic:
        generator = torch.Generator().manual_seed(0)
        shape = (size, *((datamodule.frames,) if datamodule.kind == "event" else ()), *datamodule.input_shape)
        batches = []
        for _ in range(count):
            if datamodule.kind == "event":
                x = torch.poisson(torch.full(shape, 0.2), generator=generator)
            else:
                x = torch.randn(shape, generator=generator)
            batches.append((x, torch.randint(datamodule.num_classes, (size,), generator=generator)))
        return batches
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = []
    for _ in range(count):  # epochs: stop as soon as enough full batches were drawn
        full = [(x, y) for x, y in datamodule.train_dataloader() if len(y) == size]
        if not full:
            raise SystemExit(f"{dataset}'s training set holds no full batch of {size}.")
        batches.extend(full[: count - len(batches)])
        if len(batches) == count:
            return batches
    return batches


def fresh_model(cfg: DictConfig, method: str, dataset: str) -> pl.LightningModule:
    """The method at the config's seed (the same initial weights for both paths)."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    return build(cfg, method, dataset)[1]


class _Schedule:
    """Stands in for the Trainer while the bare loop asks the method's ``configure_optimizers`` for its
    optimiser and schedule (they read only the planned step count and epochs)."""

    def __init__(self, steps: int, max_epochs: int):
        self.estimated_stepping_batches, self.max_epochs = steps, max_epochs


def optimizers(model: pl.LightningModule, steps: int):
    """(optimizer, per-step scheduler or None) from the method's own ``configure_optimizers``."""
    model.trainer = _Schedule(steps, 1)
    try:
        chosen = model.configure_optimizers()
    finally:
        model.trainer = None
    if isinstance(chosen, dict):
        schedule = chosen.get("lr_scheduler")
        schedule = schedule["scheduler"] if isinstance(schedule, dict) else schedule
        return chosen["optimizer"], schedule
    return chosen, None


@dataclass
class Window:
    """Marks at the start of iteration ``first`` and of iteration ``end``; the seconds between them."""

    first: int
    end: int
    device: torch.device
    profiler: cProfile.Profile | None = None
    marks: dict[int, float] = field(default_factory=dict)

    def mark(self, index: int) -> None:
        if index not in (self.first, self.end):
            return
        sync(self.device)
        self.marks[index] = time.perf_counter()
        if self.profiler is not None:
            (self.profiler.enable if index == self.first else self.profiler.disable)()

    @property
    def seconds(self) -> float:
        if set(self.marks) != {self.first, self.end}:
            raise RuntimeError(f"The timed window was not run through: marks {sorted(self.marks)}.")
        return self.marks[self.end] - self.marks[self.first]


class WindowTimer(Callback):
    """Marks the timed window in the Trainer at ``on_train_batch_start`` (after fetch and transfer)."""

    def __init__(self, window: Window):
        self.window = window

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.window.mark(batch_idx)


def precision_context(precision: str, device: torch.device):
    """The autocast Lightning's precision plugin wraps the training step in (none for 32-bit)."""
    if precision in ("16-mixed", "bf16-mixed"):
        dtype = torch.float16 if precision == "16-mixed" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def bare_run(cfg, method, dataset, batches, device, profiler=None) -> float:
    """Seconds of iterations ``1..len(batches) - 2`` of the bare loop on a fresh model."""
    device = torch.device(device)
    model = fresh_model(cfg, method, dataset).to(device).train()
    optimizer, schedule = optimizers(model, len(batches))
    precision = str(cfg.trainer.precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
    window = Window(1, len(batches) - 1, device, profiler)
    for index, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        window.mark(index)
        if index == window.end:
            break
        with precision_context(precision, device):
            loss = model.compute_loss(model(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad()
        if schedule is not None:
            schedule.step()
    return window.seconds


def harness_run(cfg, method, dataset, batches, device, profiler=None) -> float:
    """Seconds of iterations ``1..len(batches) - 2`` of ``trainer.fit`` through the runner's Trainer."""
    model = fresh_model(cfg, method, dataset)
    window = Window(1, len(batches) - 1, torch.device(device), profiler)
    trainer = build_trainer(
        cfg,
        method,
        dataset,
        f"harness_overhead_{next(_fits)}",
        callbacks=[*run_callbacks(cfg), WindowTimer(window)],
    )
    trainer.fit(model, train_dataloaders=Loader(batches))
    return window.seconds


class Loader:
    """The pre-loaded batches as one loader (Lightning reads a bare list as a list of loaders)."""

    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class Comparison:
    method: str
    samples: int  # per timed window
    bare: list[float]
    harness: list[float]

    @property
    def bare_sps(self) -> float:
        return self.samples / statistics.median(self.bare)

    @property
    def harness_sps(self) -> float:
        return self.samples / statistics.median(self.harness)

    @property
    def ratio(self) -> float:
        return self.harness_sps / self.bare_sps

    @property
    def paired_ratio(self) -> float:
        """The median of each repeat's own ratio: steadier than the ratio of medians when the load drifts."""
        return statistics.median(b / h for b, h in zip(self.bare, self.harness, strict=True))


def compare(
    method: str,
    dataset: str = "mnist5k",
    steps: int = 40,
    repeats: int = 5,
    device: str = "cpu",
    synthetic: bool = False,
    overrides: tuple[str, ...] = (),
    profile: bool = False,
) -> Comparison:
    """Interleaved timings of both paths (after one warm-up run of each); ``profile`` prints a profile."""
    with tempfile.TemporaryDirectory(prefix="harness_overhead_") as logs:
        cfg = config(method, dataset, steps, device, logs, overrides)
        batches = load_batches(cfg, method, dataset, steps + 2, synthetic)
        args = (cfg, method, dataset, batches, device)
        harness_run(*args)  # warm-up; the Trainer also sets the process's deterministic flags for both
        bare_run(*args)
        times: dict[str, list[float]] = {"bare": [], "harness": []}
        for _ in range(repeats):
            times["bare"].append(bare_run(*args))
            times["harness"].append(harness_run(*args))
        if profile:
            print_profile(method, args, steps)
    samples = sum(len(y) for _, y in batches[1:-1])
    return Comparison(method, samples, times["bare"], times["harness"])


# --- profile ----------------------------------------------------------------------------------------------
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__")


#: Frames left out of a host read's caller chain: torch itself and Lightning's collection helpers.
PLUMBING = (str(Path(torch.__file__).parent), "apply_func.py")


@contextlib.contextmanager
def host_reads(counter: collections.Counter, via: dict, active: list[bool]):
    """Count each read of a tensor's value into Python (``.item()``, ``float(t)``, ``bool(t)``,
    ``.tolist()``, ``.cpu()``, ``.numpy()``; a device synchronisation each when the tensor is on a GPU) by
    the reading line and the tensor's device, with the three innermost callers outside torch and Lightning's
    collection helpers in ``via``. Counts only while ``active[0]`` (inside the timed window)."""
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def wrap(name, original):
        def read(self, *args, **kwargs):
            if active[0]:
                frames, frame = [], sys._getframe(1)
                while frame is not None and len(frames) < 30:
                    code = frame.f_code
                    frames.append((code.co_filename, frame.f_lineno, code.co_name))
                    frame = frame.f_back
                key = (name, self.device.type, _line(frames[0]))
                counter[key] += 1
                callers = [f for f in frames if not any(p in f[0] for p in PLUMBING)][:3]
                via[key] = " <- ".join(_line(f) for f in callers)
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def _line(frame: tuple[str, int, str]) -> str:
    filename, line, name = frame
    return f"{_short(filename)}:{line} ({name})"


def _short(filename: str) -> str:
    for marker in ("site-packages/", f"{Path.cwd()}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _profiled(run, args) -> tuple[pstats.Stats, collections.Counter, dict, float]:
    profiler, reads, via, active = cProfile.Profile(), collections.Counter(), {}, [False]
    enable, disable = profiler.enable, profiler.disable

    def on():
        active[0] = True
        enable()

    def off():
        disable()
        active[0] = False

    profiler.enable, profiler.disable = on, off
    with host_reads(reads, via, active):
        seconds = run(*args, profiler=profiler)
    return pstats.Stats(profiler), reads, via, seconds


def print_profile(method: str, args, steps: int, top: int = 20) -> None:
    """Self time per function, harness minus bare, per step; harness-only functions by cumulative time;
    host reads per step by calling line."""
    bare, bare_reads, _, bare_s = _profiled(bare_run, args)
    harness, harness_reads, via, harness_s = _profiled(harness_run, args)
    print(
        f"\n--- profile of {method}: {steps} steps; window {1e3 * bare_s / steps:.2f} ms/step bare, "
        f"{1e3 * harness_s / steps:.2f} ms/step harness (cProfile adds its own cost) ---"
    )
    b, h = bare.stats, harness.stats  # (file, line, name) -> (calls, primitive calls, self, cumulative, ...)
    h = {k: v for k, v in h.items() if k[0] != __file__}  # the host-read counter's own cost
    extra = sorted(
        ((h[k][2] - b.get(k, (0, 0, 0.0))[2], k) for k in h if h[k][0] > b.get(k, (0,))[0]),
        key=lambda item: item[0],
        reverse=True,
    )
    print("self time beyond the bare loop of the functions the harness calls more often, ms per step:")
    for seconds, key in extra[:top]:
        calls = h[key][0] - b.get(key, (0,))[0]
        print(f"  {1e3 * seconds / steps:8.3f}  {calls / steps:7.1f} calls  {_where(key)}")
    only = sorted(((h[k][3], k) for k in h if k not in b), key=lambda item: item[0], reverse=True)
    limit = 0.1 * harness_s  # leave out the wrappers that hold the forward/backward themselves
    print(
        f"harness-only functions by cumulative time, ms per step (those under 10 % of the window, top {top}):"
    )
    for seconds, key in [item for item in only if item[0] < limit][:top]:
        print(f"  {1e3 * seconds / steps:8.3f}  {h[key][0] / steps:7.1f} calls  {_where(key)}")
    print("host reads of tensor values per step, harness | bare (on a GPU tensor, a synchronisation each):")
    for key in sorted(set(harness_reads) | set(bare_reads), key=lambda k: -harness_reads[k]):
        name, device, where = key
        called = f"\n{'':19s}via {via[key]}" if via.get(key) else ""
        print(
            f"  {harness_reads[key] / steps:6.2f} | {bare_reads[key] / steps:6.2f}  .{name} of a {device} "
            f"tensor at {where}{called}"
        )


def _where(key) -> str:
    filename, line, name = key
    return name if filename == "~" else f"{_short(filename)}:{line} ({name})"


# --- command line ---------------------------------------------------------------------------------------
def report(result: Comparison) -> str:
    return (
        f"  {result.method:16s} bare {result.bare_sps:9.1f} samples/s   harness {result.harness_sps:9.1f} "
        f"samples/s   harness/bare {result.ratio:.3f} ({'meets' if result.ratio >= GOAL else 'below'} the "
        f"{GOAL} goal; median of paired ratios {result.paired_ratio:.3f}; window bare "
        f"{_spread(result.bare)}, harness {_spread(result.harness)})"
    )


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f} s"


def main(argv: list[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["lif_sg", "multi_threshold"])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--synthetic", action="store_true", help="random batches of the dataset's shape")
    parser.add_argument("--steps", type=int, default=40, help="timed steps N per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overrides", nargs="*", default=[], help="config overrides, key=value")
    parser.add_argument("--profile", action="store_true", help="print where the harness spends its time")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    quiet_lightning()
    results = []
    for method in args.methods:
        results.append(
            compare(
                method,
                args.dataset,
                args.steps,
                args.repeats,
                args.device,
                args.synthetic,
                tuple(args.overrides),
                args.profile,
            )
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\ntrain throughput on {args.dataset}{' (synthetic batches)' if args.synthetic else ''}, "
        f"device {args.device}, {args.threads} thread(s), {args.steps} steps x median of {args.repeats} "
        f"interleaved repeats, 1-min load {load:.2f}:"
    )
    for result in results:
        print(report(result))
    return results


if __name__ == "__main__":
    main()
