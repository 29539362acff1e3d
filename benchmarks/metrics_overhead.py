"""Benchmark (run by hand): the metrics callback's cost in the test loop, against spikingjelly's op_counter.

Trains ``lif_sg`` briefly on ``mnist5k`` (so firing rates are realistic), then times, in the same process
and interleaved over several repeats:

* the bare test loop (forward passes over the 1,000 test digits);
* the same loop with :class:`bench.metrics.EnergyMetrics` counting (hooks + per-batch flush + summary);
* the same loop counted by spikingjelly's ``op_counter.estimate_simple_energy`` per batch;
* Lightning's ``trainer.test`` without and with the callback (latency measurement switched off).

Usage: ``.venv/bin/python benchmarks/metrics_overhead.py [--epochs 1] [--repeats 5] [--device cpu]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.op_counter import estimate_simple_energy

from bench.config import load_config
from bench.metrics import EnergyMetrics
from bench.runner import build, quiet_lightning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    quiet_lightning()
    pl.seed_everything(0, verbose=False)

    cfg = load_config("lif_sg", "mnist5k")
    datamodule, model = build(cfg, "lif_sg", "mnist5k")
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    quiet["enable_model_summary"] = False
    pl.Trainer(max_epochs=args.epochs, accelerator="cpu", **quiet).fit(model, datamodule=datamodule)
    device = torch.device(args.device)
    model = model.to(device).eval()
    batches = [(x.to(device), y) for x, y in datamodule.test_dataloader()]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bare():
        for x, _ in batches:
            model(x)

    inside_callback: list[float] = []

    def with_callback():
        callback = EnergyMetrics(latency_samples=0, throughput_batches=0)
        callback.attach(model)
        spent = timed_hooks(model, sync)
        for x, y in batches:
            model(x)
            start = time.perf_counter()
            callback.flush(len(y))
            spent[0] += time.perf_counter() - start
        callback.detach()
        start = time.perf_counter()
        callback.summarize(model)
        inside_callback.append(spent[0] + time.perf_counter() - start)

    def with_op_counter():
        for x, _ in batches:
            functional.reset_net(model.net)
            estimate_simple_energy(model.net, model.encode(x))

    loops = {"bare test loop": bare, "with EnergyMetrics": with_callback, "with op_counter": with_op_counter}
    times: dict[str, list[float]] = {name: [] for name in loops}
    with torch.inference_mode():
        bare()  # warm-up
        for _ in range(args.repeats):
            for name, loop in loops.items():
                sync()
                start = time.perf_counter()
                loop()
                sync()
                times[name].append(time.perf_counter() - start)

    trainer_times: dict[str, list[float]] = {"trainer.test": [], "trainer.test + callback": []}
    for repeat in range(args.repeats + 1):  # the first round warms up both and is not counted
        order = list(trainer_times) if repeat % 2 else list(trainer_times)[::-1]
        for name in order:
            callbacks = [EnergyMetrics(latency_samples=0, throughput_batches=0)] if "callback" in name else []
            trainer = pl.Trainer(accelerator=device.type, devices=1, callbacks=callbacks, **quiet)
            start = time.perf_counter()
            trainer.test(model, datamodule=datamodule, verbose=False)
            if repeat:
                trainer_times[name].append(time.perf_counter() - start)

    # Noise on a shared machine only ever adds time, so the fastest repeat is the cleanest estimate;
    # the median is printed beside it.
    best = {name: min(values) for name, values in {**times, **trainer_times}.items()}
    print(
        f"lif_sg (T={model.time_steps}) on mnist5k, {sum(len(y) for _, y in batches)} test digits, "
        f"device {device}, {args.repeats} interleaved repeats after warm-up (min / median)"
    )
    for name, values in {**times, **trainer_times}.items():
        print(f"  {name:26s} {best[name]:8.3f} s / {statistics.median(values):8.3f} s")
    ours, bare_loop, op_counter = best["with EnergyMetrics"], best["bare test loop"], best["with op_counter"]
    test_overhead = best["trainer.test + callback"] / best["trainer.test"] - 1
    print(f"  callback overhead on the bare loop:   {100 * (ours / bare_loop - 1):+.1f} %")
    print(f"  callback overhead on trainer.test:    {100 * test_overhead:+.1f} %")
    print(f"  op_counter overhead on the bare loop: {100 * (op_counter / bare_loop - 1):+.1f} %")
    print(f"  op_counter time / callback time:      {op_counter / ours:.2f} x")
    inside = min(inside_callback)
    print(
        f"  time spent inside the callback's hooks, flush and summary: {inside:.3f} s "
        f"= {100 * inside / bare_loop:.1f} % of the bare loop (a direct measure, immune to loop noise)"
    )


def timed_hooks(model: torch.nn.Module, sync) -> list[float]:
    """Wrap every forward (pre-)hook registered on ``model`` so the time spent in them is summed."""
    spent = [0.0]

    def wrap(hook):
        def timed(*args):
            sync()
            start = time.perf_counter()
            result = hook(*args)
            sync()
            spent[0] += time.perf_counter() - start
            return result

        return timed

    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key, hook in list(hooks.items()):
                hooks[key] = wrap(hook)
    return spent


if __name__ == "__main__":
    main()
