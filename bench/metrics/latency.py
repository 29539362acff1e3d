"""Wall-clock cost of a trained method: test-batch throughput and batch-1 latency on the run's device.

Measured after the test loop with no counting hooks attached, under the run's precision. Algorithmic
latency (T) is recorded apart from it.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time

import pytorch_lightning as pl
import torch
from torch import nn


def forward_seconds(model: nn.Module, inputs: list[torch.Tensor]) -> list[float]:
    """Seconds of each forward pass of ``model`` over ``inputs`` (on its device), after one warm-up pass
    of the first; CUDA is synchronised around each, so a pass's time is its own."""
    device = inputs[0].device
    model(inputs[0])
    times = []
    for x in inputs:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


@torch.inference_mode()
def measure_latency(
    trainer: pl.Trainer, pl_module: nn.Module, throughput_batches: int, latency_samples: int
) -> dict:
    """Throughput at the test batch size over ``throughput_batches`` batches and the median / p95 latency
    of ``latency_samples`` batch-1 forwards; 0 skips either (the table then shows no figure rather than a
    made-up one)."""
    loader = trainer.test_dataloaders
    loader = loader[0] if isinstance(loader, list | tuple) else loader
    device = pl_module.device
    was_training = pl_module.training
    pl_module.eval()
    results = {}

    with trainer.precision_plugin.forward_context():
        if throughput_batches > 0:
            batches = [x.to(device) for x, _ in itertools.islice(loader, throughput_batches)]
            seconds = sum(forward_seconds(pl_module, batches))
            results["throughput_sps"] = sum(len(x) for x in batches) / seconds
            results["throughput_batch_size"] = len(batches[0])
        if latency_samples > 0:
            dataset = loader.dataset
            n = min(latency_samples, len(dataset))
            samples = [dataset[i][0][None].to(device) for i in range(n)]
            latencies = sorted(1e3 * t for t in forward_seconds(pl_module, samples))
            results["latency_ms_median"] = statistics.median(latencies)
            results["latency_ms_p95"] = latencies[math.ceil(0.95 * n) - 1]
            results["latency_samples"] = n
    pl_module.train(was_training)
    return results
