"""The energy/latency metrics callback: one measuring instrument for every method, with no per-method code.

During ``trainer.test`` forward hooks on the method's declared synaptic layers (Conv1d/Conv2d/Linear,
spikingjelly wrappers included) and activation layers (spiking neurons, ReLU) reduce each call to a handful
of numbers on the device -- no activation tensor is kept and no host sync happens per call -- which are
summed in a torchmetrics state, so totals are correct under DDP. Conventions
(``../shared/reference/metrics-and-peers.md``):

* **Synaptic operations.** *Dense* ops = every connection of every input element (border-aware: a conv
  input next to the zero padding reaches fewer outputs; groups honoured). *Effective* ops = the same for the
  nonzero inputs only (NeuroBench's definition). Bias adds are not counted.
* **AC or MAC**, decided per call from the input values: all in {0, 1} = spikes -> ACs = effective ops;
  non-negative integers = graded spikes (multi-threshold neurons) -> ACs weighted by amplitude
  (``graded_spikes="amplitude"``, default: a spike of amplitude m is m additions) or one per event
  (``"unit"``); anything else is analog -> MACs = dense ops (a conventional accelerator does not skip
  zero analog inputs, and it makes the ``ann`` baseline's energy equal its equivalent-ANN energy).
* **Pooled spikes.** Average pooling of spikes feeds fractions (0, 0.25, ...) to the next synaptic layer.
  Default ``pooled_spikes="ac"`` follows the papers' "firing rate x FLOPs" convention: ACs = sum of input
  value x fan-out (the pooling factor folds into the weights). ``"mac"`` counts them as analog MACs, which
  is what spikingjelly's ``op_counter`` does.
* **Neuron updates** = neurons x time steps; **firing rate** = spike amplitude (and, separately, spike
  events) per neuron per time step; **activation sparsity** = zeros / all outputs of the activation layers
  (NeuroBench).
* **Energy** per sample = MACs x E_MAC + ACs x E_AC + neuron updates x E_neuron under a named cost table
  (``configs/energy/``). **Equivalent ANN energy** = dense ops of one time step x E_MAC: the same network
  run once as an ANN. The ratio ANN/SNN is the "N x less energy" figure papers quote.
* **Weight storage** from each synaptic layer's declared bit width (+ 32-bit biases and scaling factors).
* **Latency**: after the test loop, with the hooks removed, on the run's device and precision: throughput
  at the test batch size and per-sample latency at batch size 1 (median and p95).
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torchmetrics import Metric

from bench import CONFIG_DIR
from bench.errors import BenchError, ConfigError

GRADED_MODES = ("amplitude", "unit")
POOLED_MODES = ("ac", "mac")
POOLING_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
# Per synaptic layer, summed over calls: what each column of the state holds.
SYN_FIELDS = ("calls", "dense", "effective", "acs", "macs", "spike_calls", "graded_calls", "pooled_calls")
# Per activation layer: outputs (= neuron updates), nonzero outputs (spike events), sum of outputs.
ACT_FIELDS = ("outputs", "nonzero", "amplitude")


class MetricsError(BenchError):
    """A metric could not be computed; the message names the layer."""


@dataclass(frozen=True)
class CostTable:
    name: str
    description: str
    e_mac_pj: float
    e_ac_pj: float
    e_neuron_pj: float = 0.0
    source: str = ""


def cost_tables(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (config_dir / "energy").glob("*.yaml"))


def load_cost_table(name: str, config_dir: Path = CONFIG_DIR) -> CostTable:
    path = config_dir / "energy" / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(
            f"Unknown energy cost table metrics.cost_table={name!r}; available: "
            f"{', '.join(cost_tables(config_dir))} (files in {path.parent})."
        )
    return CostTable(name=name, **OmegaConf.to_container(OmegaConf.load(path)))


class OpCounts(Metric):
    """Sums of the per-layer counters over the test set; summed across DDP processes on compute."""

    full_state_update = False

    def __init__(self, n_synaptic: int, n_activation: int):
        super().__init__()
        self.add_state(
            "synaptic", torch.zeros(n_synaptic, len(SYN_FIELDS), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "activation",
            torch.zeros(n_activation, len(ACT_FIELDS), dtype=torch.float64),
            dist_reduce_fx="sum",
        )
        self.add_state("samples", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("time_steps", torch.zeros((), dtype=torch.float64), dist_reduce_fx="max")

    def update(self, synaptic: torch.Tensor, activation: torch.Tensor, samples: int, time_steps: int):
        self.synaptic += synaptic
        self.activation += activation
        self.samples += samples
        self.time_steps = torch.maximum(self.time_steps, torch.tensor(float(time_steps), device=self.device))

    def compute(self):
        return self.synaptic, self.activation, self.samples, self.time_steps


class SynapticCounter:
    """Reduces one call of a conv/linear layer to the :data:`SYN_FIELDS` row, on the input's device."""

    def __init__(self, name: str, module: nn.Module, graded_spikes: str, pooled_spikes: str):
        self.name, self.module = name, module
        self.graded_spikes, self.pooled_spikes = graded_spikes, pooled_spikes
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            if module.transposed or module.padding_mode != "zeros":
                raise MetricsError(
                    f"Cannot count synaptic operations of layer '{name}' ({type(module).__name__}): "
                    "transposed convolutions and padding modes other than 'zeros' are not supported."
                )
            self.spatial_dims = 1 if isinstance(module, nn.Conv1d) else 2
            self.fanout_per_channel = module.out_channels // module.groups
        elif isinstance(module, nn.Linear):
            self.spatial_dims = 0
            self.fanout_per_channel = module.out_features
        else:
            raise MetricsError(
                f"Cannot count synaptic operations of layer '{name}': {type(module).__name__} is not "
                "Conv1d, Conv2d or Linear. Declare only those in synaptic_layers()."
            )
        self._fanout_cache: dict[tuple, torch.Tensor] = {}

    def fanout_map(self, spatial: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Output positions each input position reaches (border-aware), from the conv's own geometry."""
        key = (spatial, device)
        if key not in self._fanout_cache:
            m = self.module
            conv = F.conv1d if self.spatial_dims == 1 else F.conv2d
            # The test loop runs under inference mode; the probe needs autograd for this one product.
            with torch.inference_mode(False), torch.enable_grad():
                probe = torch.ones(1, 1, *spatial, dtype=torch.float64, device=device, requires_grad=True)
                kernel = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64, device=device)
                out = conv(probe, kernel, stride=m.stride, padding=m.padding, dilation=m.dilation)
                (grad,) = torch.autograd.grad(out.sum(), probe)
            self._fanout_cache[key] = grad[0, 0].detach()
        return self._fanout_cache[key]

    def count(self, x: torch.Tensor, pooled_spikes: bool) -> torch.Tensor:
        x = x.detach()
        if self.spatial_dims:
            rows = x.reshape(-1, *x.shape[-self.spatial_dims :])  # [N*C, *spatial]
            fanout = self.fanout_map(tuple(rows.shape[1:]), x.device) * self.fanout_per_channel
        else:
            rows = x.reshape(-1, x.shape[-1])  # [N, features]
            fanout = torch.full(
                rows.shape[1:], float(self.fanout_per_channel), dtype=torch.float64, device=x.device
            )
        amplitude_map = column_sums(rows)
        kind, _ = spike_kind(x, float(amplitude_map.sum()))
        events_map = amplitude_map if kind == "binary" else column_sums(rows.ne(0))
        dense = rows.shape[0] * fanout.sum()
        effective = (events_map * fanout).sum()
        amplitude = (amplitude_map * fanout).sum()
        zero = torch.zeros((), dtype=torch.float64, device=x.device)
        pooled = pooled_spikes and kind == "analog"
        if kind != "analog":
            acs, macs = (amplitude if self.graded_spikes == "amplitude" else effective), zero
        elif pooled and self.pooled_spikes == "ac":
            acs, macs = amplitude, zero
        else:
            acs, macs = zero, dense
        flags = [1.0, float(kind == "binary"), float(kind == "graded"), float(pooled)]
        calls, binary, graded, pooled_flag = (
            torch.tensor(f, dtype=torch.float64, device=x.device) for f in flags
        )
        return torch.stack([calls, dense, effective, acs, macs, binary, graded, pooled_flag])


def column_sums(rows: torch.Tensor) -> torch.Tensor:
    """Sums over dim 0 in float32 (exact for small integers: each column adds up few rows), as float64."""
    return rows.sum(0, dtype=torch.float32).double()


def spike_kind(x: torch.Tensor, total: float | None = None) -> tuple[str, float]:
    """(``"binary"`` | ``"graded"`` | ``"analog"``, ``x.sum()``): all in {0, 1}, non-negative integers, other.

    Uses reductions only (min/max, sum, dot), no mask tensors: on the CPU, allocating a temporary the size
    of the activation costs more than the reductions themselves. Pass ``total`` when it is known.
    """
    lo, hi = (float(v) for v in torch.aminmax(x))
    if total is None:
        # A float32 sum of integers is exact while every partial sum stays below 2**24; past that, sum
        # columns first so each partial sum stays small.
        exact = x.numel() * max(abs(lo), abs(hi)) < 2**24
        total = float(x.sum(dtype=torch.float32) if exact else column_sums(x.reshape(x.shape[0], -1)).sum())
    if lo < 0:
        return "analog", total
    flat = x.reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    if hi <= 1:
        # On [0, 1], sum(x) - sum(x^2) = sum(x (1 - x)) >= 0, and 0 only when every x is 0 or 1. The
        # tolerance absorbs float32 rounding of the two (exact-integer) sums on huge tensors.
        squares = float(torch.dot(flat, flat))
        return ("binary" if total - squares <= 1e-6 * max(total, 1.0) else "analog"), total
    return ("graded" if float(torch.frac(flat).sum()) == 0 else "analog"), total


class EnergyMetrics(pl.Callback):
    """Counts ops, spikes, energy, storage and latency of any method in ``trainer.test`` (see module doc)."""

    def __init__(
        self,
        cost_table: str = "horowitz45_fp32",
        graded_spikes: str = "amplitude",
        pooled_spikes: str = "ac",
        latency_samples: int = 100,
        throughput_batches: int = 10,
    ):
        if graded_spikes not in GRADED_MODES:
            raise ConfigError(f"metrics.graded_spikes={graded_spikes!r}: use one of {GRADED_MODES}.")
        if pooled_spikes not in POOLED_MODES:
            raise ConfigError(f"metrics.pooled_spikes={pooled_spikes!r}: use one of {POOLED_MODES}.")
        self.costs = load_cost_table(cost_table)
        self.graded_spikes, self.pooled_spikes = graded_spikes, pooled_spikes
        self.latency_samples, self.throughput_batches = int(latency_samples), int(throughput_batches)
        self.summary: dict = {}
        self.layers: list[dict] = []
        self._handles: list = []

    # --- counting -----------------------------------------------------------------------------------
    def attach(self, pl_module: nn.Module) -> None:
        """Register the counting hooks on a method (public so benchmarks and tests can use it alone)."""
        self.detach()
        self.declared = pl_module.synaptic_layers()  # module + weight bit width per synaptic layer
        self.synaptic = {
            name: SynapticCounter(name, layer.module, self.graded_spikes, self.pooled_spikes)
            for name, layer in self.declared.items()
        }
        spiking = pl_module.spiking_layers()
        self.spiking_names = set(spiking)
        self.activation = dict(spiking)
        for name, module in pl_module.named_modules():
            if isinstance(module, nn.ReLU) and name not in self.activation:
                self.activation[name] = module
        device = next(pl_module.parameters()).device
        self.counts = OpCounts(len(self.synaptic), len(self.activation)).to(device)
        f64 = {"dtype": torch.float64, "device": device}
        self._syn_batch = torch.zeros(len(self.synaptic), len(SYN_FIELDS), **f64)
        self._act_batch = torch.zeros(len(self.activation), len(ACT_FIELDS), **f64)
        self._pooled: set[tuple[int, int]] = set()
        self._time_steps = 0

        for row, counter in enumerate(self.synaptic.values()):
            self._handles.append(counter.module.register_forward_hook(self._synaptic_hook(row, counter)))
        for row, module in enumerate(self.activation.values()):
            self._handles.append(module.register_forward_hook(self._activation_hook(row)))
        for module in pl_module.modules():
            if isinstance(module, POOLING_TYPES):
                self._handles.append(module.register_forward_hook(self._pool_hook))
        net = getattr(pl_module, "net", pl_module)
        self._handles.append(net.register_forward_pre_hook(self._steps_hook))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _steps_hook(self, module, inputs):
        # The network's input is time-first [T, B, ...]: it runs T steps per sample.
        self._time_steps = max(self._time_steps, int(inputs[0].shape[0]))

    def _pool_hook(self, module, inputs, output):
        # Mark the pooled tensor (by storage address and size) when its input was (graded) spikes: the
        # next synaptic layer sees fractions but should know they came from spikes. Views (flatten,
        # [T*B] <-> [T, B] reshapes) keep the address; the mark is consumed on first use, so a freed and
        # reused address is never mistaken for it.
        if spike_kind(inputs[0].detach())[0] != "analog":
            self._pooled.add((output.data_ptr(), output.numel()))

    def _synaptic_hook(self, row: int, counter: SynapticCounter):
        def hook(module, inputs, output):
            x = inputs[0]
            key = (x.data_ptr(), x.numel())
            pooled = key in self._pooled
            self._pooled.discard(key)
            self._syn_batch[row] += counter.count(x, pooled)

        return hook

    def _activation_hook(self, row: int):
        def hook(module, inputs, output):
            out = output.detach()
            kind, amplitude = spike_kind(out)
            events = (
                amplitude
                if kind == "binary"
                else float(column_sums(out.reshape(-1, out.shape[-1]).ne(0)).sum())
            )
            self._act_batch[row, 0] += out.numel()
            self._act_batch[row, 1] += events
            self._act_batch[row, 2] += amplitude

        return hook

    def flush(self, samples: int) -> None:
        """Move the counts of the batch just run into the (DDP-summed) metric state."""
        self.counts.update(self._syn_batch, self._act_batch, samples, self._time_steps)
        self._syn_batch.zero_()
        self._act_batch.zero_()
        self._pooled.clear()

    def on_test_start(self, trainer, pl_module):
        self.attach(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.flush(len(batch[1]))

    def on_test_epoch_end(self, trainer, pl_module):
        self.detach()
        self.summarize(pl_module)

    def on_test_end(self, trainer, pl_module):
        self.summary.update(self.measure_latency(trainer, pl_module))

    # --- results ------------------------------------------------------------------------------------
    def summarize(self, pl_module: nn.Module) -> dict:
        """Per-sample totals and per-layer figures from the summed counts (collective under DDP)."""
        synaptic, activation, samples, steps = (t.cpu() for t in self.counts.compute())
        samples, steps = float(samples), int(steps)
        if samples == 0:
            raise MetricsError("The test loop ran no samples: no metric can be computed.")
        if steps == 0:
            raise MetricsError(
                f"The network `{type(pl_module).__name__}.net` was never called during the test loop, "
                "so the number of time steps T is unknown."
            )
        layers = []
        for (name, counter), row in zip(self.synaptic.items(), synaptic.tolist(), strict=True):
            fields = dict(zip(SYN_FIELDS, row, strict=True))
            if fields["calls"] == 0:
                raise MetricsError(
                    f"Synaptic layer '{name}' was never called during the test loop, so its operations "
                    "cannot be counted. Declare only layers the forward pass uses in synaptic_layers()."
                )
            declared = self.declared[name]
            weights = counter.module.weight.numel()
            bias = counter.module.bias.numel() if counter.module.bias is not None else 0
            storage_bits = weights * declared.weight_bits + 32 * (bias + declared.scale_params)
            layers.append(
                {
                    "name": name,
                    "type": type(counter.module).__name__,
                    "input": _input_kind(fields),
                    "dense_ops": fields["dense"] / samples,
                    "effective_ops": fields["effective"] / samples,
                    "acs": fields["acs"] / samples,
                    "macs": fields["macs"] / samples,
                    "weight_bits": declared.weight_bits,
                    "storage_bits": storage_bits,
                    "storage_bits_fp32": 32 * (weights + bias),
                }
            )
        for (name, module), row in zip(self.activation.items(), activation.tolist(), strict=True):
            outputs, nonzero, amplitude = row
            if outputs == 0:
                raise MetricsError(f"Activation layer '{name}' produced no output during the test loop.")
            entry = {
                "name": name,
                "type": type(module).__name__,
                "activation_sparsity": 1 - nonzero / outputs,
            }
            if name in self.spiking_names:
                entry.update(
                    neuron_updates=outputs / samples,
                    spikes=amplitude / samples,
                    firing_rate=amplitude / outputs,
                    firing_rate_events=nonzero / outputs,
                )
            layers.append(entry)
        for entry in layers:
            for key, value in entry.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise MetricsError(f"Metric {key} of layer '{entry['name']}' is {value}.")
        self.layers = layers
        self.summary = self._totals(layers, synaptic, activation, samples, steps)
        return self.summary

    def _totals(self, layers, synaptic, activation, samples, steps) -> dict:
        syn = synaptic.sum(0)
        total = dict(zip(SYN_FIELDS, (float(v) / samples for v in syn), strict=True))
        spiking_rows = [i for i, name in enumerate(self.activation) if name in self.spiking_names]
        spk = activation[spiking_rows].sum(0) if spiking_rows else None
        act = activation.sum(0)
        neuron_updates = float(spk[0]) / samples if spk is not None else 0.0
        costs = self.costs
        energy_pj = total["macs"] * costs.e_mac_pj + total["acs"] * costs.e_ac_pj
        energy_pj += neuron_updates * costs.e_neuron_pj
        ann_energy_pj = total["dense"] / steps * costs.e_mac_pj
        storage = sum(layer.get("storage_bits", 0) for layer in layers)
        storage_fp32 = sum(layer.get("storage_bits_fp32", 0) for layer in layers)
        return {
            "time_steps": steps,
            "cost_table": costs.name,
            "acs": total["acs"],
            "macs": total["macs"],
            "dense_ops": total["dense"],
            "effective_ops": total["effective"],
            "neuron_updates": neuron_updates if spk is not None else None,
            "spikes": float(spk[2]) / samples if spk is not None else None,
            "firing_rate": float(spk[2] / spk[0]) if spk is not None else None,
            "firing_rate_events": float(spk[1] / spk[0]) if spk is not None else None,
            "activation_sparsity": float(1 - act[1] / act[0]) if len(activation) else None,
            "energy_uj": energy_pj / 1e6,
            "ann_energy_uj": ann_energy_pj / 1e6,
            "ann_snn_energy_ratio": ann_energy_pj / energy_pj if energy_pj > 0 else None,
            "storage_kib": storage / 8 / 1024,
            "storage_fp32_ratio": storage / storage_fp32,
        }

    @torch.inference_mode()
    def measure_latency(self, trainer: pl.Trainer, pl_module: nn.Module) -> dict:
        """Throughput at the test batch size and batch-1 latency, with no counting hooks attached.

        Runs on the run's device under its precision; ``throughput_batches=0`` / ``latency_samples=0``
        skip the measurement (the table then shows no figure rather than a made-up one).
        """
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
            if self.throughput_batches > 0:
                batches = [x.to(device) for x, _ in itertools.islice(loader, self.throughput_batches)]
                results["throughput_sps"] = sum(len(x) for x in batches) / sum(seconds(batches))
                results["throughput_batch_size"] = len(batches[0])
            if self.latency_samples > 0:
                dataset = loader.dataset
                n = min(self.latency_samples, len(dataset))
                latencies = sorted(
                    1e3 * t for t in seconds([dataset[i][0][None].to(device) for i in range(n)])
                )
                results["latency_ms_median"] = statistics.median(latencies)
                results["latency_ms_p95"] = latencies[math.ceil(0.95 * n) - 1]
                results["latency_samples"] = n
        pl_module.train(was_training)
        return results


def _input_kind(fields: dict) -> str:
    calls = fields["calls"]
    if fields["spike_calls"] == calls:
        return "spikes"
    if fields["spike_calls"] + fields["graded_calls"] == calls:
        return "graded spikes"
    if fields["pooled_calls"] == calls:
        return "pooled spikes"
    if fields["spike_calls"] + fields["graded_calls"] + fields["pooled_calls"] == 0:
        return "analog"
    return "mixed"
