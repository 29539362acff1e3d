"""Per-call reductions: what one call of a synaptic (conv/linear) or activation layer adds to the counts.

Each call is reduced on the input's device to one row of the raw counts (:data:`COUNT_FIELDS`, the
per-call part of :data:`bench.metrics.rules.RAW_FIELDS`); no activation tensor is kept. Counts follow
NeuroBench (``../shared/reference/metrics-and-peers.md`` §3) where it defines them:

* *dense* ops = every connection of every input element, border-aware (an input next to the zero padding
  reaches fewer outputs; groups and dilation honoured); *effective* ops = the same for the nonzero inputs
  only. Bias adds are not counted; weights are taken as nonzero (NeuroBench also skips exact-zero weights,
  which trained float weights do not have).
* *padded dense* ops = every kernel tap of every output, padding taps included: what an accelerator,
  cuDNN, op_counter and the papers' FLOP counts compute, and what MACs are counted on.

A call's input kind (:data:`~bench.metrics.rules.INPUT_KINDS`) is decided by its values alone, so a pooled
map reaches every consumer as the same kind however it got there (a view, a channel chunk, a ``cat``, a
copy): :func:`classify`, with the windows of the average pools of spikes that :class:`PoolWindows` saw
in the same forward pass. Which of the raw counts become ACs or MACs is :mod:`bench.metrics.rules`' call.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torchmetrics import Metric

from bench.errors import BenchError
from bench.metrics.kernels import column_extremes, column_sums
from bench.metrics.rules import INPUT_KINDS, RAW_FIELDS

#: The raw counts summed over the calls of a synaptic layer: every :data:`RAW_FIELDS` key but the ANN
#: reference's, which the callback derives from them once the number of time steps is known.
COUNT_FIELDS = tuple(key for key in RAW_FIELDS if not key.startswith("ann_"))
#: Per activation layer: outputs (= neuron updates), nonzero outputs (spike events), sum of |outputs|.
ACT_FIELDS = ("outputs", "nonzero", "amplitude")


class MetricsError(BenchError):
    """A metric could not be computed; the message names the layer."""


class OpCounts(Metric):
    """Sums of the per-layer counters over the test set; summed across DDP processes on compute."""

    full_state_update = False

    def __init__(self, n_synaptic: int, n_activation: int):
        super().__init__()
        self.add_state(
            "synaptic", torch.zeros(n_synaptic, len(COUNT_FIELDS), dtype=torch.float64), dist_reduce_fx="sum"
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
TRANSPOSED_CONVOLUTIONS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def require_countable(name: str, module: nn.Module) -> None:
    """Raise :class:`MetricsError` unless :class:`SynapticCounter` can count ``module``'s ops."""
    if isinstance(module, CONVOLUTIONS + TRANSPOSED_CONVOLUTIONS):
        if module.padding_mode != "zeros":
            raise MetricsError(
                f"Cannot count synaptic operations of layer '{name}' ({type(module).__name__}): "
                f"padding_mode={module.padding_mode!r} is not supported, only 'zeros'."
            )
    elif not isinstance(module, nn.Linear):
        raise MetricsError(
            f"Cannot count synaptic operations of layer '{name}': {type(module).__name__} is not "
            "Conv1d/2d/3d, ConvTranspose1d/2d/3d or Linear. Declare only those in synaptic_layers()."
        )


class SynapticCounter:
    """Reduces one call of a conv/linear layer to its :data:`COUNT_FIELDS` row, on the input's device."""

    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        require_countable(name, module)
        self.transposed = isinstance(module, TRANSPOSED_CONVOLUTIONS)
        if isinstance(module, nn.Linear):
            self.spatial_dims = 0
            self.in_features = module.in_features
            self.fanout_per_channel = module.out_features
        else:
            self.spatial_dims = len(module.kernel_size)
            self.in_features = module.in_channels
            self.fanout_per_channel = module.out_channels // module.groups
        self.field = {key: i for i, key in enumerate(COUNT_FIELDS)}
        self._geometry: dict[tuple, tuple[torch.Tensor, float, float]] = {}
        self._index: dict[tuple, torch.Tensor] = {}  # the fields of each set of maps, per device

    def geometry(
        self, spatial: tuple[int, ...], spatial_out: tuple[int, ...], device: torch.device
    ) -> tuple[torch.Tensor, float, float]:
        """(fan-out map, dense ops, padded dense ops) of one image of ``spatial`` size (``spatial_out``
        after the layer), or of one vector for a Linear (``spatial``: its features), from the layer's own
        geometry: the fan-out of each input position (border-aware) is the gradient of the summed output
        of an all-ones kernel with respect to the input.

        Padded dense ops are op_counter's MACs: every kernel tap of every output of a convolution, padding
        taps included; every kernel tap of every input of a transposed convolution, the taps that its
        ``padding`` crops from the output included."""
        key = (spatial, spatial_out, device)
        if key not in self._geometry and not self.spatial_dims:
            fanout = torch.full(spatial, float(self.fanout_per_channel), dtype=torch.float64, device=device)
            dense = float(self.in_features * self.fanout_per_channel)
            self._geometry[key] = (fanout, dense, dense)
        if key not in self._geometry:
            m = self.module
            kernel_taps = math.prod(m.kernel_size)
            # The test loop runs under inference mode; the probe needs autograd for this one product.
            with torch.inference_mode(False), torch.enable_grad():
                probe = torch.ones(1, 1, *spatial, dtype=torch.float64, device=device, requires_grad=True)
                kernel = torch.ones(1, 1, *m.kernel_size, dtype=torch.float64, device=device)
                if self.transposed:
                    natural = [
                        (size - 1) * s - 2 * p + d * (k - 1) + 1
                        for size, s, p, d, k in zip(
                            spatial, m.stride, m.padding, m.dilation, m.kernel_size, strict=True
                        )
                    ]
                    output_padding = [o - n for o, n in zip(spatial_out, natural, strict=True)]
                    conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[self.spatial_dims - 1]
                    out = conv(probe, kernel, None, m.stride, m.padding, output_padding, 1, m.dilation)
                    padded = math.prod(spatial) * m.in_channels * kernel_taps * self.fanout_per_channel
                else:
                    conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]
                    out = conv(probe, kernel, stride=m.stride, padding=m.padding, dilation=m.dilation)
                    padded = math.prod(spatial_out) * m.out_channels * m.in_channels // m.groups * kernel_taps
                (grad,) = torch.autograd.grad(out.sum(), probe)
            fanout = grad[0, 0].detach() * self.fanout_per_channel
            dense = float(fanout.sum()) * self.in_features
            self._geometry[key] = (fanout.reshape(-1), dense, float(padded))
        return self._geometry[key]

    def count(
        self, x: torch.Tensor, output: torch.Tensor, windows: set[int], pooled: int | None = None
    ) -> list[float] | torch.Tensor:
        """The :data:`COUNT_FIELDS` row of one call with input ``x`` and ``output`` (floats on the CPU, a
        tensor on ``x``'s device otherwise, so that nothing waits for it); ``windows``: those of
        the average pools of spikes run so far in this forward pass; ``pooled``: the window when ``x`` is
        itself the output of such a pool (:meth:`PoolWindows.pooled_window`), whose values are known to be
        pooled spikes without checking them again."""
        x = x.detach()
        # A row is an image of a convolution, a vector of a Linear (tokens and time steps included); its
        # columns are the input positions, or the features.
        dims = self.spatial_dims or 1
        spatial, spatial_out = tuple(x.shape[-dims:]), tuple(output.shape[-dims:])
        fanout, dense_per_row, padded_per_row = self.geometry(spatial, spatial_out, x.device)
        columns = math.prod(spatial)
        rows = x.numel() // (columns if not self.spatial_dims else columns * self.in_features)
        if pooled:  # as classify() finds: binary when every pooled value happens to be 0 or 1
            stats = Moments.of(x, columns=columns, nonzero=True)
            kind, window = ("binary", 1) if stats.binary else ("pooled", pooled)
        else:
            stats = Moments.of(x, columns=columns)
            kind, window = classify(stats.values, stats, windows)
        padded = rows * padded_per_row
        scalars = {
            "calls": 1.0,
            "rows": float(rows),
            "outputs": float(output.numel()),
            "dense": rows * dense_per_row,
            "padded": padded,
            f"{kind}_calls": 1.0,
        }
        if kind == "pooled":
            scalars["pooled_padded"] = padded
        elif kind == "analog":
            scalars["analog_padded"] = padded
        flat = stats.values.reshape(-1, columns)  # the distinct values, each standing stats.repeats times
        if kind == "binary":
            events = stats.sums
        elif stats.nonzero is not None:
            events = stats.nonzero
        else:
            events = nonzero_per_column(flat, stats.low < 0) * stats.repeats
        maps = {"effective": events}
        if kind in ("binary", "signed", "graded", "pooled"):
            maps[f"{kind}_events"] = events
        if kind == "graded":
            amplitude = (
                stats.sums if stats.low >= 0 else flat.abs().sum(0, dtype=torch.float64) * stats.repeats
            )
            maps["graded_amplitude"] = amplitude
        elif kind == "pooled":
            maps["pooled_amplitude"] = stats.sums
            # the pre-pool spikes: every value is k / A, so a column's sum times A is its whole count k
            maps["pooled_folded"] = (stats.sums * window).round()
        values = [0.0] * len(COUNT_FIELDS)
        for key, value in scalars.items():
            values[self.field[key]] = value
        if x.device.type == "cpu":  # numpy's dot products cost less than torch's small ops, call after call
            fan = fanout.numpy()
            for key, events in maps.items():
                values[self.field[key]] = float(events.numpy() @ fan)
            return values
        row = torch.tensor(values, dtype=torch.float64, device=x.device)
        index = self._index.get((tuple(maps), x.device))
        if index is None:
            index = self._index[tuple(maps), x.device] = torch.tensor(
                [self.field[key] for key in maps], device=x.device
            )
        row[index] = torch.stack(list(maps.values())) @ fanout  # each map x fan-out, summed
        return row


def distinct(x: torch.Tensor, columns: int | None) -> tuple[torch.Tensor, int]:
    """``x`` without the dimensions it is broadcast along (stride 0; with ``columns``, only among those
    that index its rows, outside the last dimensions that make up its ``columns``), and how many times
    each of its elements stands there: an image fed to every time step by ``expand`` is read once."""
    repeats, inner, keep = 1, 1, [slice(None)] * x.dim()
    for dim in reversed(range(x.dim())):
        if columns and inner < columns:  # a dimension of the columns
            inner *= x.shape[dim]
        elif x.stride(dim) == 0 and x.shape[dim] > 1:
            repeats *= x.shape[dim]
            keep[dim] = slice(0, 1)
    if repeats == 1 or (columns and inner != columns):
        return x, 1
    return x[tuple(keep)], repeats


#: Elements of a block that :meth:`Moments.of` reduces on a GPU (most tensors are one block).
BLOCK_ELEMENTS = 1 << 24


class Moments:
    """Sum (per column, or in total), whether every value is 0 or 1, minimum, maximum and the nonzero
    entries per column: all that a call's classification and counts need.

    On the CPU one fused pass reads a tensor (:mod:`bench.metrics.kernels`): its sums and the binary test
    (and with ``nonzero``, its nonzero entries). For binary spikes the rest follows; other tensors take a
    second pass for their extremes and nonzero entries, when one of them is first asked for. On a GPU,
    torch's reductions over blocks of up to 2**24 elements (sums exact in float32 within a block: a binary
    block sums to at most 2**24; float64 across blocks); the nonzero entries only when asked for.
    """

    def __init__(
        self,
        sums: torch.Tensor,
        binary: bool,
        low: float | None = None,
        high: float | None = None,
        nonzero: torch.Tensor | None = None,
        rest: Callable[[], tuple[float, float, torch.Tensor]] | None = None,
        values: torch.Tensor | None = None,
        repeats: int = 1,
    ):
        """``rest``: gives (low, high, nonzero) when one of them is asked for and was not given;
        ``values``: the distinct values read (:func:`distinct`), each standing for ``repeats`` elements."""
        self.sums, self.binary = sums, binary
        self.total = float(sums.sum())
        self._low, self._high, self._nonzero, self._rest = low, high, nonzero, rest
        self.values, self.repeats = values, repeats

    def _complete(self) -> None:
        if self._rest is not None:
            low, high, nonzero = self._rest()
            self._low, self._high, self._rest = low, high, None
            self._nonzero = nonzero if self._nonzero is None else self._nonzero

    @property
    def low(self) -> float:
        if self._low is None:
            self._complete()
        return self._low

    @property
    def high(self) -> float:
        if self._high is None:
            self._complete()
        return self._high

    @property
    def nonzero(self) -> torch.Tensor | None:
        """Nonzero entries per column (None on a GPU unless :meth:`of` was asked for them)."""
        if self._nonzero is None:
            self._complete()
        return self._nonzero

    @classmethod
    def of(cls, x: torch.Tensor, columns: int | None = None, nonzero: bool = False) -> Moments:
        """Moments of ``x`` viewed as ``[-1, columns]`` with per-column sums, or flat with a total; with
        ``nonzero``, the nonzero entries per column from the same pass (on the CPU they are otherwise
        read when first asked for)."""
        values, repeats = distinct(x.detach(), columns)
        if values.device.type != "cpu":
            return cls.by_torch(values, columns, nonzero, repeats)
        sums, binary, nonzeros = column_sums(values, columns, nonzero)
        if repeats > 1:
            sums = sums * repeats
            nonzeros = nonzeros * repeats if nonzeros is not None else None
        if binary:  # each nonzero entry is a 1: the sums are the nonzero entries too
            total = float(sums.sum())
            low, high = (0.0 if total < x.numel() else 1.0), (1.0 if total > 0 else 0.0)
            return cls(sums, True, low, high, sums, values=values, repeats=repeats)

        def rest() -> tuple[float, float, torch.Tensor]:
            low, high, nonzeros = column_extremes(values, columns)
            return low, high, nonzeros * repeats

        return cls(sums, False, nonzero=nonzeros, rest=rest, values=values, repeats=repeats)

    @classmethod
    def by_torch(
        cls, x: torch.Tensor, columns: int | None = None, nonzero: bool = False, repeats: int = 1
    ) -> Moments:
        """:meth:`of` by torch's reductions, on any device (on the CPU, the tests' reference); ``x`` stands
        for ``repeats`` copies of itself. The binary test as on the CPU: the sum of |x - x^2| is 0 only
        when every value is 0 or 1."""
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        rows = x.reshape(-1, columns) if columns else x.reshape(-1)
        step = max(1, BLOCK_ELEMENTS // (columns or 1))
        sums, lows, highs, odd, nonzeros = [], [], [], [], []
        for block in rows.split(step):
            sums.append(block.sum(0, dtype=torch.float32) if columns else block.sum(dtype=torch.float32))
            odd.append((block - block * block).abs_().sum(dtype=torch.float32))
            low, high = torch.aminmax(block)
            lows.append(low)
            highs.append(high)
            if nonzero:
                nonzeros.append((block != 0).sum(0, dtype=torch.float32))
        scalars = torch.stack([torch.stack(lows).min(), torch.stack(highs).max(), torch.stack(odd).sum()])
        low, high, odd_total = scalars.tolist()  # one wait for the device
        nonzero_sums = torch.stack(nonzeros).double().sum(0) * repeats if nonzero else None
        sums = torch.stack(sums).double().sum(0) * repeats
        return cls(sums, odd_total == 0, low, high, nonzero_sums, values=x, repeats=repeats)


def nonzero_per_column(flat: torch.Tensor, signed: bool) -> torch.Tensor:
    """The nonzero entries of each column of ``flat`` (float64): the sum of their signs (``count_nonzero``
    is several times slower on the CPU)."""
    signs = torch.sign(flat)
    return (signs.abs_() if signed else signs).sum(0, dtype=torch.float64)


def classify(x: torch.Tensor, stats: Moments, windows: set[int]) -> tuple[str, int]:
    """(input kind, pool window) of a tensor by its values (:data:`~bench.metrics.rules.INPUT_KINDS`).

    binary: all in {0, 1}; signed: integers in [-1, 1] with a -1; graded: other integers; pooled:
    non-negative and, for some window A in ``windows`` (the smallest that fits), every value x A an
    integer up to the rounding of the average (the window is 1 for the other kinds); analog: the rest.
    Binary spikes, the common case, take no pass beyond :class:`Moments`; the other kinds one or two.

    The smallest fitting window, not the largest: a value k/4 is also a multiple of 1/16, so where a
    network pools 2x2 and also 4x4 (or a 2x2 pool after a 2x2 pool), the largest would fold every 2x2-pooled
    input as if it were 16 spikes per unit; the smallest is wrong only when every value of a 4x4-pooled map
    happens to be a multiple of 1/4.
    """
    if stats.binary:
        return "binary", 1
    # integers in [0, 1] are binary: only a tensor reaching outside may hold other integers
    if (stats.low < 0 or stats.high > 1) and (not x.is_floating_point() or not torch.frac(x).any()):
        return ("signed" if stats.low >= -1 and stats.high <= 1 else "graded"), 1
    if stats.low >= 0 and x.is_floating_point():
        for window in sorted(windows):
            # avg_pool and mean round k / A once: |x A - k| <= eps/2 x k, and k <= high x A
            tolerance = 2 * torch.finfo(x.dtype).eps * max(1.0, stats.high) * window
            if tolerance < 0.25:  # else the dtype cannot tell k / A from its neighbours
                scaled = x * window
                low, high = torch.aminmax(scaled.round().sub_(scaled))
                if max(-float(low), float(high)) <= tolerance:
                    return "pooled", window
    return "analog", 1


def _argument(args: tuple, kwargs: dict, index: int, name: str, default=None):
    return args[index] if len(args) > index else kwargs.get(name, default)


def _input(args: tuple, kwargs: dict) -> torch.Tensor:
    return _argument(args, kwargs, 0, "input")


def _avg_pool_window(dims: int):
    def window(args, kwargs, output) -> int | None:
        kernel = _argument(args, kwargs, 1, "kernel_size")
        divisor = _argument(args, kwargs, 6, "divisor_override") if dims > 1 else None
        kernel = (kernel,) * dims if isinstance(kernel, int) else tuple(kernel)
        return divisor or math.prod(kernel)

    return window


def _adaptive_window(dims: int):
    def window(args, kwargs, output) -> int | None:
        sizes, out_sizes = _input(args, kwargs).shape[-dims:], output.shape[-dims:]
        if all(o and i % o == 0 for i, o in zip(sizes, out_sizes, strict=True)):
            return math.prod(i // o for i, o in zip(sizes, out_sizes, strict=True))
        return None  # windows of unequal sizes: no single A

    return window


def _mean_window(args, kwargs, output) -> int | None:
    if _argument(args, kwargs, 1, "dim") is None:  # the mean of everything is a statistic, not a pool
        return None
    return _input(args, kwargs).numel() // max(1, output.numel())


def _uniform(func, args: tuple, kwargs: dict) -> bool:
    """Whether every window of this pool call averages the same number of elements: not so for an
    ``avg_pool`` with ``ceil_mode`` or with padding it leaves out of the average."""
    if func not in (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d):
        return True  # adaptive pools and means are counted only when their windows are equal
    padding = _argument(args, kwargs, 3, "padding", 0)
    ceil_mode = _argument(args, kwargs, 4, "ceil_mode", False)
    count_include_pad = _argument(args, kwargs, 5, "count_include_pad", True)
    padded = any(padding) if isinstance(padding, tuple | list) else bool(padding)
    return not ceil_mode and (count_include_pad or not padded)


#: The average pools :class:`PoolWindows` watches, and how each one's window is read from its call.
AVERAGE_POOLS = {
    F.avg_pool1d: _avg_pool_window(1),
    F.avg_pool2d: _avg_pool_window(2),
    F.avg_pool3d: _avg_pool_window(3),
    F.adaptive_avg_pool1d: _adaptive_window(1),
    F.adaptive_avg_pool2d: _adaptive_window(2),
    F.adaptive_avg_pool3d: _adaptive_window(3),
    torch.mean: _mean_window,
    torch.Tensor.mean: _mean_window,
}


class RecentTensors:
    """What was found about the last few tensors of a forward pass, by storage, size and type (the same
    for their views that keep every element). An entry counts only while its tensor is alive, so that its
    address cannot have been reused by another tensor: ``hold`` keeps the tensor alive while remembered
    (only the last few, so that a forward pass's activations are not all kept until it ends); without it,
    the entry is dropped when the tensor dies, and no activation outlives its use in the network.
    """

    def __init__(self, size: int = 4, hold: bool = True):
        self.size, self.hold = size, hold
        self._entries: dict[tuple, tuple[torch.Tensor | weakref.ref, object]] = {}

    @staticmethod
    def key(x: torch.Tensor) -> tuple:
        return (x.data_ptr(), x.numel(), x.dtype)

    def get(self, x: torch.Tensor):
        entry = self._entries.get(self.key(x))
        return entry[1] if entry else None

    def put(self, x: torch.Tensor, value) -> None:
        key = self.key(x)
        self._entries[key] = (x if self.hold else weakref.ref(x, lambda ref: self._forget(key, ref)), value)
        while len(self._entries) > self.size:
            del self._entries[next(iter(self._entries))]  # the oldest

    def _forget(self, key: tuple, ref: weakref.ref) -> None:
        # the tensor died: drop what was found (it may hold the same storage), unless replaced since
        if self._entries.get(key, (None,))[0] is ref:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


class PoolWindows(TorchFunctionMode):
    """Records the window A of every average pool of spikes run while it is active (one forward pass).

    A torch function mode sees the pools however they are written: ``nn.AvgPool*`` and spikingjelly's
    wrappers (which call ``F.avg_pool*``), ``F.avg_pool*`` itself, ``F.adaptive_avg_pool*`` where the input
    size is a multiple of the output size (A = the ratio's product), and ``mean`` over explicit dims
    (``x.mean((2, 3))``, a global average pool: A = the number of elements averaged). A function mode
    rather than a dispatch mode: it sees these calls as written, once each, before autograd or inference
    mode pick the aten ops they decompose into (which is how op_counter's dispatch rules miss convolutions
    under inference mode), and every other op passes straight through.

    A pool counts only when its input is non-negative spikes (binary or graded) or itself pooled spikes
    (then A is the product of both windows: a 2x2 pool after a 2x2 pool averages 16 spikes), so its input
    is classified (one sweep, as a synaptic layer's input is). A pool of signed spikes gives its consumers
    analog values, as :func:`classify` finds them: a -1 and a 1 in one window cancel, so neither the
    events nor the fold can be read from the average. A pool is taken to average windows of equal
    size: one whose border windows average fewer elements (``count_include_pad=False`` with padding,
    ``ceil_mode``) gives other fractions there, and its consumers see analog input (MACs over every tap),
    never a wrong fold.
    """

    def __init__(self):
        super().__init__()
        self.windows: set[int] = set()
        self.depth = 0  # nested forward calls of the watched modules (the method and its network)
        # A neuron's spikes are looked up again while the network still holds them (the pool after the
        # neuron reads a view of them); a pool's output is held, as under inference mode a view of it (all
        # that its consumer may see) does not keep it alive.
        self._moments = RecentTensors(hold=False)
        self._pooled = RecentTensors()

    def pooled_window(self, x: torch.Tensor) -> int | None:
        """The window A when ``x`` (or a view of it with the same storage and size) is the output of an
        average pool of spikes with equal windows just before in this forward pass: its values are then
        pooled spikes by construction, what :func:`classify` would find by checking them (a chunk, a
        ``cat`` or a copy of it is checked). None otherwise."""
        return self._pooled.get(x)

    def moments(self, x: torch.Tensor) -> Moments:
        """``Moments.of(x)``, once for a tensor read twice in a row: a neuron's spikes are read by its
        activation hook and again by the pool after it (a view of them: the same storage, the same
        totals)."""
        if self.depth == 0:
            return Moments.of(x)
        found = self._moments.get(x)
        if found is None:
            found = Moments.of(x)
            self._moments.put(x, found)
        return found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        window_of = AVERAGE_POOLS.get(func)
        if window_of is not None and isinstance(output, torch.Tensor):
            window = window_of(args, kwargs, output)
            if window and window > 1:
                x = _input(args, kwargs)
                stats = self.moments(x)
                kind, inner = classify(stats.values, stats, self.windows)
                if kind != "analog" and stats.low >= 0:
                    self.windows.add(window * inner)
                    if _uniform(func, args, kwargs):  # its output is pooled spikes by construction
                        self._pooled.put(output, window * inner)
        return output

    def enter(self, module, inputs) -> None:
        """Forward pre-hook: a new forward pass starts with no windows (nested calls keep the pass's)."""
        if self.depth == 0:
            self.windows = set()
            self.__enter__()
        self.depth += 1

    def leave(self, module, inputs, output) -> None:
        """Forward hook (``always_call=True``): leaves the mode when the outermost call returns or raises."""
        if self.depth == 0:  # its pre-hook never ran
            return
        self.depth -= 1
        if self.depth == 0:
            self._moments.clear()
            self._pooled.clear()
            self.__exit__(None, None, None)


def activation_row(output: torch.Tensor, stats: Moments) -> tuple[float, float, float]:
    """The :data:`ACT_FIELDS` of one call of an activation layer from its output and ``stats`` (its
    :class:`Moments`): outputs, nonzero outputs, sum of |outputs| (signed spikes count one each)."""
    out = output.detach()
    if stats.binary:
        return float(out.numel()), stats.total, stats.total
    if stats.nonzero is not None:
        events = float(stats.nonzero.sum())
    else:
        events = float(nonzero_per_column(out.reshape(-1, 1), signed=stats.low < 0).sum())
    amplitude = stats.total if stats.low >= 0 else float(out.abs().sum(dtype=torch.float64))
    return float(out.numel()), events, amplitude


def input_kind(fields: dict, spiking: bool) -> str:
    """What a synaptic layer's inputs were over the test loop, for its record entry."""
    if not spiking:
        return "dense (non-spiking method)"
    calls = fields["calls"]
    binary, signed, graded, pooled, analog = (fields[f"{kind}_calls"] for kind in INPUT_KINDS)
    if binary == calls:
        return "spikes"
    if binary + signed == calls:
        return "signed spikes"
    if binary + signed + graded == calls:
        return "graded spikes"
    if pooled == calls:
        return "pooled spikes"
    if analog == calls:
        return "analog"
    return "mixed"
