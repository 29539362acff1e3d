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

    def seconds(inputs: list[torch.Tensor]) -> list[float]:
        pl_module(inputs[0])  # warm-up
        times = []
        for x in inputs:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            pl_module(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        return times

    with trainer.precision_plugin.forward_context():
        if throughput_batches > 0:
            batches = [x.to(device) for x, _ in itertools.islice(loader, throughput_batches)]
            results["throughput_sps"] = sum(len(x) for x in batches) / sum(seconds(batches))
            results["throughput_batch_size"] = len(batches[0])
        if latency_samples > 0:
            dataset = loader.dataset
            n = min(latency_samples, len(dataset))
            latencies = sorted(1e3 * t for t in seconds([dataset[i][0][None].to(device) for i in range(n)]))
            results["latency_ms_median"] = statistics.median(latencies)
            results["latency_ms_p95"] = latencies[math.ceil(0.95 * n) - 1]
            results["latency_samples"] = n
    pl_module.train(was_training)
    return results
