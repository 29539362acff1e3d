"""Forward + backward time of the shared multi-threshold LIF against spikingjelly's ``LIFNode``.

Run by hand: ``.venv/bin/python benchmarks/neuron_speed.py [--device cuda] [--steps 4]``.

The reference is spikingjelly's own multi-step ``LIFNode`` (tau 2, hard reset, detached reset, ATan
surrogate: the fused path spikingjelly picks for the device), timed in the same process on the same
input. Our neuron runs with K = 1 (same dynamics), then K = 3, then with learnable tau + synaptic filter.
Runs are interleaved, and the median of ``--repeats`` timings is reported with the ratio to the reference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from methods.common.neurons import MultiThresholdLIF


def candidates() -> dict[str, torch.nn.Module]:
    return {
        "spikingjelly LIFNode (reference)": neuron.LIFNode(
            tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m"
        ),
        "MT-LIF K=1 rect": MultiThresholdLIF(levels=1, tau=2.0, surrogate="rect"),
        "MT-LIF K=1 atan": MultiThresholdLIF(levels=1, tau=2.0, surrogate="atan"),
        "MT-LIF K=3 rect": MultiThresholdLIF(levels=3, tau=2.0, surrogate="rect"),
        "MT-LIF K=3 soft, learnable tau, filter": MultiThresholdLIF(
            levels=3, tau=2.0, hard_reset=False, learnable_tau=True, synaptic_filter=True
        ),
    }


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
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (args.steps, *(int(s) for s in args.shape.split(",")))
    x = torch.randn(shape, device=args.device) * 1.5
    grad = torch.randn(shape, device=args.device)
    modules = {name: m.to(args.device) for name, m in candidates().items()}
    for module in modules.values():  # warm-up: kernel selection, allocator
        for _ in range(2):
            time_once(module, x, grad)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(args.repeats):
        for name, module in modules.items():
            times[name].append(time_once(module, x, grad))
    reference = statistics.median(next(iter(times.values())))
    print(f"forward+backward, input {list(shape)} on {args.device}, median of {args.repeats}:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:40s} {median * 1e3:8.2f} ms   {median / reference:5.2f}x reference")


if __name__ == "__main__":
    main()
