"""``bench sweep S --dry-run --estimate``: a short pilot of each distinct run shape of a sweep, and what
the sweep would cost from it.

Cells are grouped by their resolved config without ``seed``, ``data.fold``, ``paths``, ``sweep`` and
``variant`` (what changes no run's cost); one pilot per group, each in a fresh subprocess
(``python -m bench.sweep.estimate <json>``), so that its peak memory (CUDA ``max_memory_allocated`` on a
GPU, the process's peak RSS on a CPU) is its own. The pilot builds the run as :mod:`bench.runner` does
(``build``, the cell's ``trainer.accelerator / devices / precision``), on the real data when it is on
disk, else on random batches of the same shape (from the DataModule's facts: ``[B, C, H, W]`` images,
``[B, frames, C, H, W]`` event frames; batch counts from its ``sizes``). It times
:data:`TIMED_STEPS` optimiser steps after :data:`WARMUP_STEPS` warm-up steps (Lightning's loop, a
callback timing each batch from the previous one's end, so fetching it counts), then the fetch and no-grad
forward of a batch and the forward of one sample; what its
``trainer.fit`` spent outside the timed batches (``outside_s``: Lightning's set-up, the warm-up steps'
excess, and whatever the method does at the end of the pilot's short epoch, e.g. hybrid_stdb's conversion
after its last ANN epoch) is counted once. A method with phases of different cost
(``BenchMethod.pilot_phases``: hybrid_stdb's ANN epochs, then its SNN) is timed in each; work outside the
batches that the pilot did not run (``BenchMethod.extra_work``: albsnn's ALE probes at epoch ends) is
counted in optimiser steps and forward batches.

The projection of a cell (:func:`project`), seconds::

    start-up + sum over phases p of  outside_p + epochs_p x (train_batches x step_p + val_batches x eval_p)
             + sanity_val x eval_1 + extra_steps x step_last + extra_evals x eval_last
             + [not tuning] (test_batches + throughput_batches + 1) x eval_last
                            + (latency_samples + 1) x sample_last

``start-up``: the pilot process's seconds from launch to a built run (interpreter, imports, config,
DataModule setup, method); ``throughput_batches`` and ``latency_samples`` are the metrics callback's
(``metrics.*``: it times that many test batches and batch-1 passes, each after one warm-up).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytorch_lightning as pl

from bench.errors import BenchError

#: Steps run before timing (allocations, autotuning, first-call overheads) and steps timed.
WARMUP_STEPS, TIMED_STEPS = 2, 5
#: Forward passes timed for evaluation: batches, and batch-1 samples.
EVAL_BATCHES, EVAL_SAMPLES = 3, 5
#: Config keys that change no run's cost: cells differing only there share one pilot.
IGNORED = ("seed", "sweep", "variant", "paths")


@dataclass
class Shape:
    """One distinct run shape: its cells and, once piloted, its measured parts and projection."""

    method: str
    dataset: str
    time_steps: int | None
    cells: list = field(default_factory=list)  # (Cell, to_run)
    pilot: dict | None = None
    tuning_s: float | None = None  # projected seconds of one of its tuning cells (no test)
    ranked_s: float | None = None  # projected seconds of one of its tested cells

    def seconds(self, cell) -> float:
        return self.tuning_s if cell.stage == "tuning" else self.ranked_s


def shape_key(cfg) -> str:
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in IGNORED:
        plain.pop(key, None)
    plain.get("data", {}).pop("fold", None)
    plain.pop("logger", None)
    plain.pop("progress", None)
    return json.dumps(plain, sort_keys=True, default=str)


def group(sweep) -> list[Shape]:
    """The sweep's distinct shapes, in the order their first cell comes; each with its cells."""
    shapes: dict[str, Shape] = {}
    for cell in sweep.cells:
        cfg = cell.config(check=False)
        key = f"{cell.method}|{cell.dataset}|{shape_key(cfg)}"
        if key not in shapes:
            steps = cfg.method.get("time_steps") if "method" in cfg else None
            shapes[key] = Shape(cell.method, cell.dataset, steps)
        shapes[key].cells.append(cell)
    return list(shapes.values())


def project(parts: dict, test: bool = True) -> float:
    """A cell's projected seconds from a pilot's measured ``parts`` (the module docstring's formula)."""
    phases = parts["phases"]
    last = phases[-1]
    total = parts["startup_s"]
    for phase in phases:
        total += phase["outside_s"]
        total += phase["epochs"] * (
            parts["train_batches"] * phase["step_s"] + parts["val_batches"] * phase["eval_s"]
        )
    total += parts["sanity_val_batches"] * phases[0]["eval_s"]
    total += parts["extra_steps"] * last["step_s"] + parts["extra_evals"] * last["eval_s"]
    if test:
        total += (parts["test_batches"] + parts["throughput_batches"] + 1) * last["eval_s"]
        total += (parts["latency_samples"] + 1) * last["sample_s"]
    return total


def run_pilot(cell, threads: int, timeout: float = 900) -> dict:
    """Pilot ``cell``'s shape in a fresh subprocess with the CPU threads a cell gets; its measured parts."""
    spec = {"method": cell.method, "dataset": cell.dataset, "overrides": cell.args, "launched": time.time()}
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-m", "bench.sweep.estimate", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise BenchError(f"The pilot of {cell.method} on {cell.dataset} failed: {' '.join(tail)}")
    return json.loads(lines[-1])


def estimate(sweep, to_run, threads: int, parallel: int = 1, echo=None) -> list[Shape]:
    """Pilot every shape of ``sweep`` and project its cells; ``to_run``: the cells that still need a run.

    ``threads``: the CPU threads each cell runs with (local: its share of the CPUs; SLURM: its
    ``cpus_per_task``), so that a pilot neither borrows cores a cell would not have nor fights over them;
    ``parallel``: pilots run side by side as the cells will (a local sweep's ``--max-parallel``), so that
    they share the machine's cores, caches and memory bandwidth as the cells do."""
    pending = {id(c) for c in to_run}
    shapes = group(sweep)

    def pilot(numbered: tuple[int, Shape]) -> None:
        number, shape = numbered
        if echo is not None:
            echo(f"pilot {number}/{len(shapes)}: {shape.method} on {shape.dataset} (T = {shape.time_steps})")
        first = next((c for c in shape.cells if not c.stage), shape.cells[0])
        shape.pilot = run_pilot(first, threads)
        shape.ranked_s = project(shape.pilot, test=True)
        shape.tuning_s = project(shape.pilot, test=False)
        shape.cells = [(c, id(c) in pending) for c in shape.cells]

    with ThreadPoolExecutor(max(1, parallel)) as pool:  # each pilot is a subprocess: threads only wait
        list(pool.map(pilot, enumerate(shapes, 1)))
    return shapes


def schedule(seconds: list[float], parallel: int) -> float:
    """Wall time of jobs taken in order, each by the first free of ``parallel`` workers."""
    workers = [0.0] * max(1, parallel)
    for s in seconds:
        workers[workers.index(min(workers))] += s
    return max(workers)


def totals(shapes: list[Shape], parallel: int, cells_per_task: int = 1) -> tuple[float, float, int]:
    """(device seconds, wall seconds at ``parallel``, cells) of the cells still to run; with
    ``cells_per_task`` > 1 (SLURM packing) a task runs its cells one after another."""
    order = [(cell, shape) for shape in shapes for cell, todo in shape.cells if todo]
    seconds = [shape.seconds(cell) for cell, shape in order]
    tasks = [sum(seconds[i : i + cells_per_task]) for i in range(0, len(seconds), cells_per_task)]
    return sum(seconds), schedule(tasks, parallel), len(seconds)


# --- the pilot process --------------------------------------------------------------------------------
def _batch_counts(cfg, datamodule, real: bool) -> tuple[int, int, int]:
    """Train, val and test batches per epoch, after ``trainer.limit_*_batches``."""
    import math

    if real:
        sizes = [len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)]
    else:
        sizes = [int(n.replace(",", "")) for n in str(datamodule.sizes).split("/")]
    batch = int(cfg.data.batch_size)
    counts = []
    for size, stage in zip(sizes, ("train", "val", "test"), strict=True):
        n = math.ceil(size / batch)
        limit = cfg.trainer.get(f"limit_{stage}_batches")
        if isinstance(limit, int) and not isinstance(limit, bool):
            n = min(n, limit)
        elif isinstance(limit, float):
            n = math.ceil(limit * n) if limit < 1 or n == 0 else n
        counts.append(n)
    return tuple(counts)


def _synthetic_loader(datamodule, count: int, batch: int):
    """Random batches shaped as the DataModule's loaders yield them."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    facts = datamodule.facts
    shape = tuple(facts.input_shape)
    if facts.kind == "event":
        x = (torch.rand(count * batch, int(facts.frames), *shape) < 0.05).float()
    else:
        x = torch.rand(count * batch, *shape)
    y = torch.randint(0, facts.num_classes, (count * batch,))
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)


def _pilot_main(spec: dict) -> dict:
    import resource
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from bench import config as config_mod
    from bench.errors import DataError
    from bench.runner import _to_kwargs, build, quiet_lightning

    quiet_lightning()
    method, dataset = spec["method"], spec["dataset"]
    cfg = config_mod.load_config(method, dataset, spec["overrides"], check=False)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg, method, dataset)
    try:
        datamodule.setup("fit")
        real = True
    except DataError:
        real = False
    counts = _batch_counts(cfg, datamodule, real)
    startup = time.time() - spec["launched"]
    max_epochs = int(cfg.trainer.max_epochs)
    trainer_keys = ("accelerator", "devices", "precision")
    trainer_kwargs = {k: v for k, v in _to_kwargs(cfg.trainer).items() if k in trainer_keys}
    batch = int(cfg.data.batch_size)
    phases = []
    for epochs, method_overrides in model.pilot_phases(max_epochs):
        if method_overrides:
            extra = [f"method.{k}={v}" for k, v in method_overrides.items()]
            pcfg = config_mod.load_config(method, dataset, [*spec["overrides"], *extra], check=False)
            _, phase_model = build(pcfg, method, dataset)
        else:
            phase_model = model
        if real:
            loaders = {"datamodule": datamodule}
        else:
            loaders = {"train_dataloaders": _synthetic_loader(datamodule, WARMUP_STEPS + TIMED_STEPS, batch)}
        timer = _BatchTimer()
        fit_started = time.perf_counter()
        trainer = pl.Trainer(
            **trainer_kwargs,
            max_epochs=max_epochs,
            max_steps=WARMUP_STEPS + TIMED_STEPS,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        trainer.fit(phase_model, **loaders)
        outside_s = max(0.0, time.perf_counter() - fit_started - sum(timer.seconds))
        steps = timer.seconds[WARMUP_STEPS:] or timer.seconds
        device = timer.device or torch.device("cpu")
        source = (
            datamodule.val_dataloader() if real else _synthetic_loader(datamodule, EVAL_BATCHES + 1, batch)
        )
        eval_s, sample_s = _time_eval(phase_model.to(device), trainer, source, device)
        phases.append(
            {
                "epochs": epochs,
                "step_s": sum(steps) / len(steps),
                "outside_s": outside_s,
                "eval_s": eval_s,
                "sample_s": sample_s,
            }
        )
    extra_steps, extra_evals = model.extra_work(max_epochs, counts[1])
    on_cuda = device.type == "cuda"
    if on_cuda:
        peak = torch.cuda.max_memory_allocated(device)
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    metrics = cfg.metrics
    return {
        "real_data": real,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "startup_s": startup,
        "phases": phases,
        "train_batches": counts[0],
        "val_batches": counts[1],
        "test_batches": counts[2],
        "sanity_val_batches": min(2, counts[1]) if cfg.trainer.get("num_sanity_val_steps", 2) else 0,
        "extra_steps": extra_steps,
        "extra_evals": extra_evals,
        "throughput_batches": int(metrics.throughput_batches),
        "latency_samples": int(metrics.latency_samples),
        "time_steps": int(model.time_steps),
        "peak_bytes": int(peak),
        "device_bytes": int(total),
    }


def _time_eval(model, trainer, loader, device) -> tuple[float, float]:
    """Seconds per evaluated batch (fetched from ``loader`` and a no-grad forward), and per no-grad
    forward of one sample (each forward timed after one warm-up)."""
    import itertools

    import torch

    from bench.metrics.latency import forward_seconds

    model.eval()
    fetch_started = time.perf_counter()
    batches = [x.to(device) for x, _ in itertools.islice(loader, EVAL_BATCHES + 1)]
    fetch_s = (time.perf_counter() - fetch_started) / len(batches)
    samples = [batches[0][i : i + 1] for i in range(min(EVAL_SAMPLES + 1, len(batches[0])))]

    with torch.no_grad(), trainer.precision_plugin.forward_context():  # each after a warm-up pass
        batch_s, sample_s = forward_seconds(model, batches), forward_seconds(model, samples)
    return fetch_s + statistics.fmean(batch_s), statistics.fmean(sample_s)


class _BatchTimer(pl.Callback):
    """Seconds of each training batch, from the previous batch's end (the first: from its own start):
    fetching it from the loader, forward, backward and optimiser step. Fetching counts because a run
    waits for it too (event frames built per sample, a loader without workers)."""

    def __init__(self):
        self.seconds: list[float] = []
        self.device = None
        self._start = None

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            import torch

            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.device = pl_module.device
        if self._start is None:
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync(pl_module)
        now = time.perf_counter()
        self.seconds.append(now - self._start)
        self._start = now


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    print(json.dumps(_pilot_main(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
