"""The metrics callback: one measuring instrument for every method, with no per-method code.

During ``trainer.test`` forward hooks on the method's declared synaptic layers (Conv1d/2d/3d,
ConvTranspose1d/2d/3d, Linear, spikingjelly wrappers included) and activation layers (spiking neurons,
ReLU) reduce each call to a row of raw counts (:mod:`bench.metrics.counting`), summed in a torchmetrics
state so totals are correct under DDP; a torch function mode active during each forward pass
(:class:`~bench.metrics.counting.PoolWindows`) tells pooled spikes from analog values. The callback owns
its hooks: it removes them when the test loop ends or raises. From the sums it reports, per sample and
per layer: the raw counts (:data:`bench.metrics.rules.RAW_FIELDS`), ACs and MACs under the run's rules,
dense / padded dense / effective ops, neuron updates, spikes, firing rates, activation sparsity
(NeuroBench), energy and the ANN reference (:func:`bench.metrics.energy.price`), weight storage from the
declared bit widths (+ 32-bit biases and scaling factors); then latency and throughput
(:mod:`bench.metrics.latency`).
"""

from __future__ import annotations

import math

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from bench.errors import ConfigError
from bench.metrics.counting import (
    ACT_FIELDS,
    COUNT_FIELDS,
    MetricsError,
    OpCounts,
    PoolWindows,
    SynapticCounter,
    activation_row,
    input_kind,
    require_countable,
)
from bench.metrics.energy import load_cost_table, load_memory_model, price
from bench.metrics.latency import measure_latency
from bench.metrics.rules import RAW_FIELDS, CountingRules, check_modes


class EnergyMetrics(pl.Callback):
    """Counts ops, spikes, energy, storage and latency of any method in ``trainer.test`` (module doc).

    The constructor checks every option, so a bad ``metrics.*`` value is a config error before a run
    starts (``bench.config`` builds one to validate).
    """

    def __init__(
        self,
        cost_table: str = "horowitz45_fp32",
        memory_model: str = "sram45",
        graded_spikes: str = "amplitude",
        pooled_spikes: str = "effective",
        latency_samples: int = 100,
        throughput_batches: int = 10,
    ):
        check_modes(graded_spikes, pooled_spikes)
        for key, value in (("latency_samples", latency_samples), ("throughput_batches", throughput_batches)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"metrics.{key}={value!r} must be an integer >= 0 (0 skips the measurement)."
                )
        self.costs = load_cost_table(cost_table)
        self.memory = load_memory_model(memory_model)
        self.graded_spikes, self.pooled_spikes = graded_spikes, pooled_spikes
        self.latency_samples, self.throughput_batches = latency_samples, throughput_batches
        self.summary: dict = {}
        self.layers: list[dict] = []
        self._handles: list = []

    # --- counting -----------------------------------------------------------------------------------
    @staticmethod
    def check_countable(pl_module: nn.Module) -> None:
        """Every weight matrix or kernel (a parameter of 2 or more dimensions multiplies its input) must
        belong to a declared synaptic layer of a type the counters support; otherwise its ops would be left
        out of every count and energy, silently. Raises :class:`MetricsError` naming the layer. The runner
        checks this when it builds the method (a refused network leaves no record); :meth:`attach` too."""
        declared = pl_module.synaptic_layers()
        for name, layer in declared.items():
            require_countable(name, layer.module)
        counted = {id(layer.module) for layer in declared.values()}
        for name, module in pl_module.named_modules():
            weights = [p for p in module.parameters(recurse=False) if p.ndim >= 2]
            if weights and id(module) not in counted:
                raise MetricsError(
                    f"Cannot count synaptic operations of layer '{name}' ({type(module).__name__}): it holds "
                    f"a weight of shape {tuple(weights[0].shape)} but is not one of the method's "
                    "synaptic_layers(), so its ops would be missing from every count and energy. snnbench "
                    "counts Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear layers: use those, or declare "
                    "and count it."
                )

    def attach(self, pl_module: nn.Module) -> None:
        """Register the counting hooks on a method (public so benchmarks and tests can use it alone).

        ``pl_module.spiking`` (a method's declaration; True if absent) picks the counting rules."""
        self.detach()
        self.check_countable(pl_module)
        self.rules = CountingRules(
            bool(getattr(pl_module, "spiking", True)), self.graded_spikes, self.pooled_spikes
        )
        self.declared = pl_module.synaptic_layers()  # module + weight bit width per synaptic layer
        self.synaptic = {name: SynapticCounter(name, layer.module) for name, layer in self.declared.items()}
        spiking = pl_module.spiking_layers()
        self.spiking_names = set(spiking)
        self.activation = dict(spiking)
        for name, module in pl_module.named_modules():
            if isinstance(module, nn.ReLU) and name not in self.activation:
                self.activation[name] = module
        device = next(pl_module.parameters()).device
        self.counts = OpCounts(len(self.synaptic), len(self.activation)).to(device)
        # A batch's counts: in numpy on the CPU (each hook adds floats to a row), on the device otherwise.
        shapes = (len(self.synaptic), len(COUNT_FIELDS)), (len(self.activation), len(ACT_FIELDS))
        if device.type == "cpu":
            self._syn_batch, self._act_batch = (np.zeros(shape) for shape in shapes)
        else:
            self._syn_batch, self._act_batch = (
                torch.zeros(shape, dtype=torch.float64, device=device) for shape in shapes
            )
        self._pools = PoolWindows()
        self._time_steps = 0

        for row, counter in enumerate(self.synaptic.values()):
            self._handles.append(counter.module.register_forward_hook(self._synaptic_hook(row, counter)))
        for row, module in enumerate(self.activation.values()):
            self._handles.append(module.register_forward_hook(self._activation_hook(row)))
        net = getattr(pl_module, "net", pl_module)
        self._handles.append(net.register_forward_pre_hook(self._steps_hook))
        # The pool windows of a forward pass: from the method's forward (or its network's, called alone)
        # to its end, an exception included, so the mode is never left pushed.
        for module in {id(m): m for m in (pl_module, net)}.values():
            self._handles.append(module.register_forward_pre_hook(self._pools.enter, prepend=True))
            self._handles.append(module.register_forward_hook(self._pools.leave, always_call=True))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _steps_hook(self, module, inputs):
        # The network's input is time-first [T, B, ...]: it runs T steps per sample.
        self._time_steps = max(self._time_steps, int(inputs[0].shape[0]))

    # The hooks run inside the forward pass's torch function mode (PoolWindows); their own torch calls
    # bypass it (DisableTorchFunction), which would otherwise dispatch each of them through Python.
    def _synaptic_hook(self, row: int, counter: SynapticCounter):
        def hook(module, inputs, output):
            x = inputs[0]
            with torch._C.DisableTorchFunction():
                self._syn_batch[row] += counter.count(
                    x, output, self._pools.windows, self._pools.pooled_window(x)
                )

        return hook

    def _activation_hook(self, row: int):
        def hook(module, inputs, output):
            with torch._C.DisableTorchFunction():
                row_values = activation_row(output, self._pools.moments(output))
                if isinstance(self._act_batch, torch.Tensor):
                    row_values = torch.tensor(row_values, dtype=torch.float64, device=self._act_batch.device)
                self._act_batch[row] += row_values

        return hook

    def flush(self, samples: int) -> None:
        """Move the counts of the batch just run into the (DDP-summed) metric state."""
        batch = torch.as_tensor(self._syn_batch), torch.as_tensor(self._act_batch)
        self.counts.update(*batch, samples, self._time_steps)
        self._syn_batch[...] = 0
        self._act_batch[...] = 0

    def on_test_start(self, trainer, pl_module):
        self.attach(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.flush(len(batch[1]))

    def on_test_epoch_end(self, trainer, pl_module):
        self.detach()
        self.summarize(pl_module)

    def on_test_end(self, trainer, pl_module):
        self.summary.update(
            measure_latency(trainer, pl_module, self.throughput_batches, self.latency_samples)
        )

    def on_exception(self, trainer, pl_module, exception):
        self.detach()

    def teardown(self, trainer, pl_module, stage):
        self.detach()

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
        layers = [
            self._synaptic_entry(name, dict(zip(COUNT_FIELDS, row, strict=True)), samples, steps)
            for name, row in zip(self.synaptic, synaptic.tolist(), strict=True)
        ]
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
            for key, value in [*entry.items(), *entry.get("counts", {}).items()]:
                if isinstance(value, float) and not math.isfinite(value):
                    raise MetricsError(f"Metric {key} of layer '{entry['name']}' is {value}.")
        self.layers = layers
        self.summary = self._totals(layers, synaptic, activation, samples, steps)
        return self.summary

    def _synaptic_entry(self, name: str, fields: dict, samples: float, steps: int) -> dict:
        """A synaptic layer's record entry: its raw counts per sample (:data:`RAW_FIELDS`) and what the
        run's rules make of them.

        The ANN reference of a layer is one pass over one sample: its padded dense ops per sample divided
        by the passes it made per sample, min(T, rows per sample). That is T for a layer run once per time
        step (the network runs T steps; the ``ann`` baseline has T = 1, so its ratio is exactly 1), whatever
        the layout (tokens: a Linear over [T, B, L, F] passes L vectors per step, all in the reference);
        and 1 for a layer run once per sample though the network runs T steps (an encoding layer that
        convolves the static image once). A layer run fewer than T times on several rows per sample is
        not told apart from one run every step."""
        if fields["calls"] == 0:
            raise MetricsError(
                f"Synaptic layer '{name}' was never called during the test loop, so its operations "
                "cannot be counted. Declare only layers the forward pass uses in synaptic_layers()."
            )
        passes = min(steps, fields["rows"] / samples)
        counts = {key: fields[key] / samples for key in COUNT_FIELDS}
        counts["ann_macs"] = counts["padded"] / passes
        counts["ann_outputs"] = counts["outputs"] / passes
        counts = {key: counts[key] for key in RAW_FIELDS}
        acs, macs = self.rules.ops(counts)
        declared = self.declared[name]
        module = declared.module
        weights = module.weight.numel()
        bias = module.bias.numel() if module.bias is not None else 0
        return {
            "name": name,
            "type": type(module).__name__,
            "input": input_kind(fields, self.rules.spiking),
            "counts": counts,
            "dense_ops": counts["dense"],
            "padded_dense_ops": counts["padded"],
            "effective_ops": counts["effective"],
            "acs": acs,
            "macs": macs,
            "ann_macs": counts["ann_macs"],
            "weight_bits": declared.weight_bits,
            "storage_bits": weights * declared.weight_bits + 32 * (bias + declared.scale_params),
            "storage_bits_fp32": 32 * (weights + bias),
        }

    def _totals(self, layers, synaptic, activation, samples, steps) -> dict:
        total = dict(zip(COUNT_FIELDS, (float(v) / samples for v in synaptic.sum(0)), strict=True))
        spiking_rows = [i for i, name in enumerate(self.activation) if name in self.spiking_names]
        spk = activation[spiking_rows].sum(0) if spiking_rows else None
        act = activation.sum(0)
        neuron_updates = float(spk[0]) / samples if spk is not None else None
        storage = sum(layer.get("storage_bits", 0) for layer in layers)
        storage_fp32 = sum(layer.get("storage_bits_fp32", 0) for layer in layers)
        synaptic_layers = [layer for layer in layers if "counts" in layer]
        return {
            "time_steps": steps,
            **price(synaptic_layers, neuron_updates, steps, self.rules, self.costs, self.memory),
            "dense_ops": total["dense"],
            "padded_dense_ops": total["padded"],
            "effective_ops": total["effective"],
            "neuron_updates": neuron_updates,
            "spikes": float(spk[2]) / samples if spk is not None else None,
            "firing_rate": float(spk[2] / spk[0]) if spk is not None else None,
            "firing_rate_events": float(spk[1] / spk[0]) if spk is not None else None,
            "activation_sparsity": float(1 - act[1] / act[0]) if len(activation) else None,
            "storage_kib": storage / 8 / 1024,
            "storage_fp32_ratio": storage / storage_fp32,
        }
