"""Benchmark (run by hand): the metrics callback's cost in the test loop, against its peers' counters.

Trains ``lif_sg`` (on the matched backbone by default) briefly on ``mnist5k`` (so firing rates are
realistic), then times, in one process, on the same model and the same test batches, under
``torch.no_grad`` (op_counter counts nothing under ``inference_mode``), interleaved over the repeats:

* the bare loop: forward passes over the 1,000 test digits;
* the same loop counted by :class:`bench.metrics.EnergyMetrics` (hooks + per-batch flush + summary);
* by spikingjelly's op_counter MAC and SynOp counters (``DispatchCounterMode``);
* by spikingjelly's ``estimate_simple_energy`` (op_counter's energy report, per batch);
* by NeuroBench's ``SynapticOperations`` + ``ActivationSparsity`` (its hooks on the same network);
* Lightning's ``trainer.test`` without and with the callback (latency measurement off): the test loop a
  run executes.

Each counter's totals are checked to be nonzero before anything is timed. Prints, per loop, its ratio to the
reference timed beside it in the same repeat (the bare loop, or ``trainer.test`` without the callback): the
median and the range over repeats; a median below 1 is reported as noise, never as a negative overhead.
The time spent inside the callback (hooks, flush, summary) is also measured directly, as a share of the
test loop, in wall-clock time and in CPU time of the process (which other processes' load does not
inflate); and all that the callback adds in CPU time (its loop minus the bare loop: the hooks and the torch
function mode's dispatch of every op of the forward pass).

Usage: ``.venv/bin/python benchmarks/metrics_overhead.py [--epochs 1] [--repeats 7] [--threads 1]
[--layers L]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pytorch_lightning as pl
import torch
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import TorchModel
from spikingjelly.activation_based.neuron import BaseNode
from spikingjelly.activation_based.op_counter import (
    DispatchCounterMode,
    MACCounter,
    SynOpCounter,
    estimate_simple_energy,
)

from bench.config import load_config
from bench.metrics import EnergyMetrics
from bench.runner import build, quiet_lightning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (the peers' cost is CPU-side)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--layers",
        default="32C3-AP2-64C3-AP2-128C3-AP2",
        help="lif_sg's method.layers; the default, the matched backbone, average-pools its spikes, so every "
        "synapse past the first reads pooled spikes (the callback's costliest path); 'null': lif_sg's own",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_lightning()
    pl.seed_everything(0, verbose=False)

    cfg = load_config("lif_sg", "mnist5k", [f"method.layers={args.layers}"])
    datamodule, model = build(cfg, "lif_sg", "mnist5k")
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    quiet["enable_model_summary"] = False
    pl.Trainer(max_epochs=args.epochs, accelerator="cpu", **quiet).fit(model, datamodule=datamodule)
    device = torch.device(args.device)
    model = model.to(device).eval()
    batches = [(x.to(device), y.to(device)) for x, y in datamodule.test_dataloader()]
    counts: dict[str, dict] = {}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def bare():
        for x, _ in batches:
            model(x)

    inside_callback: list[float] = []  # wall-clock seconds per repeat
    inside_callback_cpu: list[float] = []  # CPU seconds of this process per repeat

    def callback():
        metrics = EnergyMetrics(latency_samples=0, throughput_batches=0)
        metrics.attach(model)
        spent = timed_hooks(model, sync)
        for x, y in batches:
            model(x)
            start, start_cpu = time.perf_counter(), time.process_time()
            metrics.flush(len(y))
            spent[0] += time.perf_counter() - start
            spent[1] += time.process_time() - start_cpu
        metrics.detach()
        start, start_cpu = time.perf_counter(), time.process_time()
        summary = metrics.summarize(model)
        inside_callback.append(spent[0] + time.perf_counter() - start)
        inside_callback_cpu.append(spent[1] + time.process_time() - start_cpu)
        # ACs + MACs: on the matched backbone under the default (effective) rule every op is a MAC
        ops = summary["acs"] + summary["macs"]
        counts["EnergyMetrics"] = {"acs + macs": ops, "effective_ops": summary["effective_ops"]}

    def op_counter():
        mac, synop = MACCounter(), SynOpCounter()
        with DispatchCounterMode([mac, synop]):
            bare()
        counts["op_counter MAC + SynOp"] = {"macs": mac.get_total(), "synops": synop.get_total()}

    def op_counter_energy():
        energy = 0.0
        for x, _ in batches:
            energy += estimate_simple_energy(model, x).energy_total_pj
        counts["op_counter estimate_simple_energy"] = {"energy_pj": energy}

    def neurobench():
        bench_model = TorchModel(model.net)
        bench_model.add_activation_module(BaseNode)
        bench_model.register_hooks()
        synops, sparsity, weighted = SynapticOperations(), ActivationSparsity(), 0.0
        for x, y in batches:
            out = model(x)
            synops(bench_model, out, (x, y))
            weighted += sparsity(bench_model, out, (x, y)) * len(y)
            bench_model.reset_hooks()
        bench_model.cleanup_hooks()
        counts["NeuroBench SynOps + ActivationSparsity"] = {**synops.compute(), "sparsity": weighted}

    loops = {
        "bare forward loop": bare,
        "EnergyMetrics": callback,
        "op_counter MAC + SynOp": op_counter,
        "op_counter estimate_simple_energy": op_counter_energy,
        "NeuroBench SynOps + ActivationSparsity": neurobench,
    }
    with torch.no_grad():
        for loop in loops.values():  # warm-up, and every counter must have counted something
            loop()
    for name, values in counts.items():
        if not any(v > 0 for v in values.values()):  # e.g. no synops where no input is binary
            raise SystemExit(f"{name} counted nothing: {values}; its timing would be void.")
        print(f"  {name} counted {', '.join(f'{k} {v:,.6g}' for k, v in values.items())}")
    inside_callback.clear()  # the warm-up's
    inside_callback_cpu.clear()

    times: dict[str, list[float]] = {name: [] for name in loops}
    times.update({"trainer.test": [], "trainer.test + EnergyMetrics": []})
    cpu: dict[str, list[float]] = {name: [] for name in times}  # CPU seconds of this process
    for repeat in range(args.repeats):
        order = list(loops) if repeat % 2 == 0 else list(loops)[::-1]
        with torch.no_grad():
            for name in order:
                sync()
                start, start_cpu = time.perf_counter(), time.process_time()
                loops[name]()
                sync()
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        tests = ["trainer.test", "trainer.test + EnergyMetrics"]
        for name in tests if repeat % 2 == 0 else tests[::-1]:
            extra = [EnergyMetrics(latency_samples=0, throughput_batches=0)] if "Energy" in name else []
            trainer = pl.Trainer(accelerator=device.type, devices=1, callbacks=extra, **quiet)
            start, start_cpu = time.perf_counter(), time.process_time()
            trainer.test(model, datamodule=datamodule, verbose=False)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    print(
        f"\nlif_sg (T={model.time_steps}, layers {args.layers}) on mnist5k: "
        f"{sum(len(y) for _, y in batches)} test digits, "
        f"device {device}, {args.threads} thread(s), {args.repeats} interleaved repeats; each ratio is taken "
        "within one repeat (against the reference timed beside it), then its median and range over repeats"
    )
    # Other processes share the caches and memory bandwidth that the callback's reads depend on.
    load = os.getloadavg()[0]
    print(f"  machine: {os.cpu_count()} CPU(s), 1-minute load average {load:.2f} (this run included)")
    print(f"  {'':42s} {'median s':>9s} {'ratio: median':>14s} {'range':>15s}")
    for name, values in times.items():
        reference = "trainer.test" if name.startswith("trainer.test +") else "bare forward loop"
        cells = ""
        if name != reference and name != "trainer.test":
            low, mid, high = spread(ratios(values, times[reference]))
            cells = f"{mid:14.3f} {f'{low:.3f} - {high:.3f}':>15s}"
        print(f"  {name:42s} {statistics.median(values):9.3f} {cells}")
    ours = times["EnergyMetrics"]
    for peer in list(loops)[2:]:
        low, mid, high = spread(ratios(times[peer], ours))
        print(f"  {peer} / EnergyMetrics: {mid:.2f}x (range {low:.2f} - {high:.2f})")
    low, mid, high = spread(ratios(times["trainer.test + EnergyMetrics"], times["trainer.test"]))
    if mid <= 1:
        print(
            f"  EnergyMetrics in trainer.test: no measurable overhead (median ratio {mid:.3f}, range "
            f"{low:.3f} - {high:.3f}); a ratio below 1 is timing noise, not a speed-up"
        )
    else:
        print(
            f"  EnergyMetrics adds {100 * (mid - 1):+.1f} % to trainer.test (median over repeats; range "
            f"{100 * (low - 1):+.1f} to {100 * (high - 1):+.1f} %)"
        )
    low, mid, high = spread(ratios(inside_callback, times["trainer.test"]))
    print(
        f"  time inside the callback's hooks, flush and summary: {100 * mid:.1f} % of the test loop "
        f"(trainer.test without it; range {100 * low:.1f} - {100 * high:.1f} %; target <= 5 %): a direct "
        "measure, immune to the noise of timing whole loops"
    )
    low, mid, high = spread(ratios(inside_callback_cpu, cpu["trainer.test"]))
    print(
        f"  the same in CPU time of this process: {100 * mid:.1f} % (range {100 * low:.1f} - "
        f"{100 * high:.1f} %), immune to the load of other processes too"
    )
    extra = [c - b for c, b in zip(cpu["EnergyMetrics"], cpu["bare forward loop"], strict=True)]
    low, mid, high = spread(ratios(extra, cpu["trainer.test"]))
    print(
        f"  all that the callback adds, in CPU time (its loop minus the bare loop, the torch function mode's "
        f"dispatch included): {100 * mid:.1f} % of the test loop (range {100 * low:.1f} - {100 * high:.1f} %)"
    )


def ratios(values: list[float], references: list[float]) -> list[float]:
    """Per repeat, a timing over the reference timed in the same repeat."""
    return [v / r for v, r in zip(values, references, strict=False)]


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def timed_hooks(model: torch.nn.Module, sync) -> list[float]:
    """Wrap every forward (pre-)hook registered on ``model`` so that the time spent in them is summed:
    [wall-clock seconds, CPU seconds of this process]."""
    spent = [0.0, 0.0]  # wall-clock, CPU

    def wrap(hook):
        def timed(*args):
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            result = hook(*args)
            sync()
            spent[0] += time.perf_counter() - start
            spent[1] += time.process_time() - start_cpu
            return result

        return timed

    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key, hook in list(hooks.items()):
                hooks[key] = wrap(hook)
    return spent


if __name__ == "__main__":
    main()
