"""Per-call reductions: what one call of a synaptic (conv/linear) or activation layer adds to the counts.

Each call is reduced on the input's device to one row of numbers; no activation tensor is kept. Counts
follow NeuroBench (``../shared/reference/metrics-and-peers.md`` §3) where it defines them:

* *dense* ops = every connection of every input element, border-aware (an input next to the zero padding
  reaches fewer outputs; groups and dilation honoured); *effective* ops = the same for the nonzero inputs
  only. Bias adds are not counted; weights are taken as nonzero (NeuroBench also skips exact-zero weights,
  which trained float weights do not have).
* *padded dense* ops = every kernel tap of every output, padding taps included: what an accelerator,
  cuDNN, op_counter and the papers' FLOP counts compute, and what MACs are counted on.
* ACs and MACs from :class:`~bench.metrics.rules.CountingRules`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from bench.errors import BenchError
from bench.metrics.rules import CountingRules

#: Per synaptic layer, summed over calls: calls; rows = images (conv) or vectors (linear) passed through,
#: i.e. samples x steps; dense, padded dense and effective ops; ACs; MACs; calls whose input was binary
#: spikes, graded spikes, and average-pooled spikes.
SYN_FIELDS = (
    "calls",
    "rows",
    "dense",
    "padded",
    "effective",
    "acs",
    "macs",
    "binary_calls",
    "graded_calls",
    "pooled_calls",
)
#: Per activation layer: outputs (= neuron updates), nonzero outputs (spike events), sum of outputs.
ACT_FIELDS = ("outputs", "nonzero", "amplitude")


class MetricsError(BenchError):
    """A metric could not be computed; the message names the layer."""


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


#: The convolutions counted, by their number of spatial dimensions (1, 2, 3).
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def require_countable(name: str, module: nn.Module) -> None:
    """Raise :class:`MetricsError` unless :class:`SynapticCounter` can count ``module``'s ops."""
    if isinstance(module, CONVOLUTIONS):
        if module.transposed or module.padding_mode != "zeros":
            raise MetricsError(
                f"Cannot count synaptic operations of layer '{name}' ({type(module).__name__}): "
                "transposed convolutions and padding modes other than 'zeros' are not supported."
            )
    elif not isinstance(module, nn.Linear):
        raise MetricsError(
            f"Cannot count synaptic operations of layer '{name}': {type(module).__name__} is not "
            "Conv1d, Conv2d, Conv3d or Linear. Declare only those in synaptic_layers()."
        )


class SynapticCounter:
    """Reduces one call of a conv/linear layer to the :data:`SYN_FIELDS` row, on the input's device."""

    def __init__(self, name: str, module: nn.Module, rules: CountingRules):
        self.name, self.module, self.rules = name, module, rules
        require_countable(name, module)
        if isinstance(module, CONVOLUTIONS):
            self.spatial_dims = len(module.kernel_size)
            self.in_features = module.in_channels
            self.fanout_per_channel = module.out_channels // module.groups
            # MACs of one output position: every tap of its kernel over its group's input channels
            self.taps_per_output = module.out_channels * module.in_channels // module.groups
            self.taps_per_output *= math.prod(module.kernel_size)
        else:  # Linear
            self.spatial_dims = 0
            self.in_features = module.in_features
            self.fanout_per_channel = module.out_features
        self._geometry: dict[tuple, tuple[torch.Tensor, float, float]] = {}

    def geometry(self, spatial: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, float, float]:
        """(fan-out map, dense ops, padded dense ops) of one image of ``spatial`` size, from the layer's own
        geometry: the fan-out of each input position (border-aware) is the gradient of the summed output of
        an all-ones kernel with respect to the input."""
        key = (spatial, device)
        if key not in self._geometry:
            m = self.module
            conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]
            # The test loop runs under inference mode; the probe needs autograd for this one product.
            with torch.inference_mode(False), torch.enable_grad():
                probe = torch.ones(1, 1, *spatial, dtype=torch.float64, device=device, requires_grad=True)
                kernel = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64, device=device)
                out = conv(probe, kernel, stride=m.stride, padding=m.padding, dilation=m.dilation)
                (grad,) = torch.autograd.grad(out.sum(), probe)
            fanout = grad[0, 0].detach() * self.fanout_per_channel
            dense = float(fanout.sum()) * self.in_features
            padded = float(out[0, 0].numel() * self.taps_per_output)
            self._geometry[key] = (fanout, dense, padded)
        return self._geometry[key]

    def count(self, x: torch.Tensor, pooled: bool) -> torch.Tensor:
        """The :data:`SYN_FIELDS` row of one call with input ``x``; ``pooled``: ``x`` is an average-pooled
        spike map."""
        x = x.detach()
        if self.spatial_dims:
            spatial = tuple(x.shape[-self.spatial_dims :])
            fanout, dense_per_row, padded_per_row = self.geometry(spatial, x.device)
            rows = x.numel() // (self.in_features * math.prod(spatial))  # images
        else:
            spatial = (x.shape[-1],)
            fanout = torch.full(spatial, float(self.fanout_per_channel), dtype=torch.float64, device=x.device)
            dense_per_row = padded_per_row = float(self.in_features * self.fanout_per_channel)
            rows = x.numel() // x.shape[-1]  # vectors
        stats = Moments.of(x, columns=math.prod(spatial))  # columns: the input positions
        kind = stats.kind(x)
        amplitude_map = stats.sums.view(spatial)
        if kind == "binary":
            events_map = amplitude_map
        else:
            events_map = (
                torch.count_nonzero(x.reshape(-1, amplitude_map.numel()), dim=0).double().view(spatial)
            )
        effective = (events_map * fanout).sum()
        amplitude = (amplitude_map * fanout).sum()
        pooled = pooled and kind == "analog"
        padded = rows * padded_per_row
        acs, macs = self.rules.split(kind, pooled, effective, amplitude, padded)
        values = (1, rows, rows * dense_per_row, padded, effective, acs, macs)
        values += (kind == "binary", kind == "graded", pooled)
        return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=x.device) for v in values])


#: Elements of a block that :meth:`Moments.of` reduces while it sits in the CPU's cache (2 MB of float32).
BLOCK_ELEMENTS = 1 << 19


class Moments:
    """Sum (per column, or in total), minimum, maximum and sum of squares of a tensor: all that a call's
    classification and counts need, read in one sweep.

    On the CPU the tensor is reduced in blocks that fit in cache, each block four ways while it is there:
    an activation is larger than the cache, and reading it from memory once instead of three times is
    most of the callback's cost. On a GPU the whole tensor is one block. Within a block, sums are float32
    (exact: binary and small-integer sums of a block stay far below 2**24); across blocks, float64.
    """

    def __init__(self, sums: torch.Tensor, low: float, high: float, squares: float):
        self.sums, self.low, self.high, self.squares = sums, low, high, squares
        self.total = float(sums.sum())

    @classmethod
    def of(cls, x: torch.Tensor, columns: int | None = None) -> Moments:
        """Moments of ``x`` viewed as ``[-1, columns]`` with per-column sums, or flat with a total."""
        x = x.detach()
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        rows = x.reshape(-1, columns) if columns else x.reshape(-1)
        width = columns or 1
        on_cpu = rows.device.type == "cpu"
        step = max(1, BLOCK_ELEMENTS // width) if on_cpu else max(1, rows.shape[0])
        sums, lows, highs, squares = [], [], [], []
        for block in rows.split(step):
            low, high = torch.aminmax(block)
            flat = block.reshape(-1)
            sums.append(block.sum(0, dtype=torch.float32) if columns else block.sum(dtype=torch.float32))
            lows.append(low)
            highs.append(high)
            squares.append(torch.dot(flat, flat))
        return cls(
            torch.stack(sums).double().sum(0),
            float(torch.stack(lows).min()),
            float(torch.stack(highs).max()),
            float(torch.stack(squares).double().sum()),
        )

    def kind(self, x: torch.Tensor) -> str:
        """``"binary"`` (all in {0, 1}), ``"graded"`` (non-negative integers) or ``"analog"``.

        On [0, 1], sum(x) - sum(x^2) = sum(x (1 - x)) is 0 only when every x is 0 or 1, and both sums are
        exact for binary tensors."""
        if self.low < 0:
            return "analog"
        if self.high <= 1:
            return "binary" if self.total == self.squares else "analog"
        if not x.is_floating_point():
            return "graded"
        return "graded" if float(torch.frac(x).sum()) == 0 else "analog"


def spike_kind(x: torch.Tensor) -> str:
    """``"binary"`` | ``"graded"`` | ``"analog"``: all in {0, 1}, non-negative integers, anything else."""
    return Moments.of(x).kind(x.detach())


def activation_row(output: torch.Tensor) -> tuple[float, float, float]:
    """The :data:`ACT_FIELDS` of one call of an activation layer: outputs, nonzero outputs, their sum."""
    out = output.detach()
    stats = Moments.of(out)
    events = stats.total if stats.kind(out) == "binary" else float(torch.count_nonzero(out))
    return float(out.numel()), events, stats.total


def input_kind(fields: dict, spiking: bool) -> str:
    """What a synaptic layer's inputs were over the test loop, for its record entry."""
    if not spiking:
        return "dense (non-spiking method)"
    calls, binary = fields["calls"], fields["binary_calls"]
    graded, pooled = fields["graded_calls"], fields["pooled_calls"]
    if binary == calls:
        return "spikes"
    if binary + graded == calls:
        return "graded spikes"
    if pooled == calls:
        return "pooled spikes"
    if binary + graded + pooled == 0:
        return "analog"
    return "mixed"
