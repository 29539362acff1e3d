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

    def with_callback():
        callback = EnergyMetrics(latency_samples=0, throughput_batches=0)
        callback.attach(model)
        for x, y in batches:
            model(x)
            callback.flush(len(y))
        callback.detach()
        callback.summarize(model)

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
    for _ in range(args.repeats):
        for name, callbacks in (
            ("trainer.test", []),
            ("trainer.test + callback", [EnergyMetrics(latency_samples=0, throughput_batches=0)]),
        ):
            trainer = pl.Trainer(accelerator=device.type, devices=1, callbacks=callbacks, **quiet)
            start = time.perf_counter()
            trainer.test(model, datamodule=datamodule, verbose=False)
            trainer_times[name].append(time.perf_counter() - start)

    base = statistics.median(times["bare test loop"])
    ours = statistics.median(times["with EnergyMetrics"])
    print(
        f"lif_sg (T={model.time_steps}) on mnist5k, {sum(len(y) for _, y in batches)} test digits, "
        f"device {device}, median of {args.repeats} interleaved repeats"
    )
    for name, values in {**times, **trainer_times}.items():
        print(f"  {name:26s} {statistics.median(values):8.3f} s")
    tt = {k: statistics.median(v) for k, v in trainer_times.items()}
    op_counter = statistics.median(times["with op_counter"])
    test_overhead = tt["trainer.test + callback"] / tt["trainer.test"] - 1
    print(f"  callback overhead on the bare loop:   {100 * (ours / base - 1):+.1f} %")
    print(f"  callback overhead on trainer.test:    {100 * test_overhead:+.1f} %")
    print(f"  op_counter overhead on the bare loop: {100 * (op_counter / base - 1):+.1f} %")
    print(f"  op_counter time / callback time:      {op_counter / ours:.2f} x")


if __name__ == "__main__":
    main()
