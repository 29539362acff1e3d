"""Forward + backward time of the shared multi-threshold LIF against spikingjelly's ``LIFNode``.

Run by hand: ``.venv/bin/python benchmarks/neuron_speed.py [--device cuda] [--steps 4] [--threads 1]``.

The reference is spikingjelly's own multi-step ``LIFNode`` (tau 2, hard reset, detached reset, ATan
surrogate), timed in the same process on the same input. spikingjelly 2.x has no ``backend=`` argument:
it binds the fastest implementation it finds for the device (on CUDA its native kernel, else Triton, else
the torch reference; on CPU the torch reference), and the output names the one bound. Our neuron runs
with K = 1 (same dynamics), then K = 3, then K = 3 with soft reset + learnable tau + synaptic filter,
each on the fused sequence path (the default) and on the per-step reference (``fused=False``). Runs are
interleaved, and the median of ``--repeats`` timings is reported with the ratio to the reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from methods.common.neurons import MultiThresholdLIF

REFERENCE = "spikingjelly LIFNode (reference)"
CONFIGS = {
    "MT-LIF K=1 rect": dict(levels=1, surrogate="rect"),
    "MT-LIF K=1 atan": dict(levels=1, surrogate="atan"),
    "MT-LIF K=3 rect": dict(levels=3, surrogate="rect"),
    "MT-LIF K=3 soft, learnable tau, filter": dict(
        levels=3, hard_reset=False, learnable_tau=True, synaptic_filter=True
    ),
}


def candidates() -> dict[str, torch.nn.Module]:
    modules: dict[str, torch.nn.Module] = {
        REFERENCE: neuron.LIFNode(
            tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m"
        )
    }
    for name, options in CONFIGS.items():
        modules[f"{name} [fused]"] = MultiThresholdLIF(tau=2.0, **options)
        modules[f"{name} [per-step]"] = MultiThresholdLIF(tau=2.0, fused=False, **options)
    return modules


def spikingjelly_implementation(device: torch.device) -> str:
    """The LIF implementation spikingjelly binds on this device (its own query)."""
    try:
        from spikingjelly.activation_based.functional import neuron_implementation
    except ImportError:  # an older spikingjelly: it picks per module through ``backend=``
        return "unknown (no neuron_implementation query in this spikingjelly)"
    return str(neuron_implementation("lif", device)["implementation"])


def time_once(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> float:
    functional.reset_net(module)
    x = x.detach().requires_grad_(True)
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    module(x).backward(grad)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="time steps T")
    parser.add_argument("--shape", default="32,32,28,28", help="B,C,H,W of one step")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but torch sees no CUDA device here.")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.steps, *(int(s) for s in args.shape.split(",")))
    x = torch.randn(shape, device=device) * 1.5
    grad = torch.randn(shape, device=device)
    modules = {name: m.to(device) for name, m in candidates().items()}
    for module in modules.values():  # warm-up: kernel selection, allocator
        for _ in range(2):
            time_once(module, x, grad)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(args.repeats):
        for name, module in modules.items():
            times[name].append(time_once(module, x, grad))
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference = medians[REFERENCE]
    where = f"{device}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else "")
    print(f"forward+backward, input {list(shape)} on {where}, median of {args.repeats}:")
    print(f"  spikingjelly LIFNode implementation: {spikingjelly_implementation(device)}")
    for name, median in medians.items():
        line = f"  {name:52s} {median * 1e3:8.2f} ms   {median / reference:5.2f}x reference"
        if name.endswith("[fused]"):
            per_step = medians[name.replace("[fused]", "[per-step]")]
            line += f"   {per_step / median:5.2f}x faster than per-step"
        print(line)


if __name__ == "__main__":
    main()
