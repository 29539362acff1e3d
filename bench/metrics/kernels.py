"""Reading an activation once on the CPU: fused reductions compiled by numba.

The metrics callback reads every activation of the test loop (issue 29: its in-hook time stays <= 5 % of
the test loop). torch has no single reduction giving a tensor's sum and whether it is binary: its
reductions read a tensor three times (sum, extremes, sum of squares), the callback's main cost on the
CPU. Here one pass per tensor gives, per column of a ``[rows, width]`` array:

* the sum of the values and of |x - x^2|, which is 0 exactly when every value is 0 or 1 (every term is
  >= 0, so nothing cancels; a NaN or an overflow makes it non-zero): the binary test;
* with ``nonzero``, also the nonzero values (a pooled map's events).

For binary spikes, the common case, that is all: their nonzero values and extremes follow from the sums.
Other tensors take a second pass, :func:`column_extremes`, only when their extremes are asked for.

Sums are float32 within a chunk of at most :data:`CHUNK_ROWS` rows (exact for binary and small-integer
sums: at most 2**16 ones per column and chunk), float64 across chunks. A large tensor's rows are split
over torch's number of CPU threads (the kernels release the GIL); any other is one compiled call.
fastmath lets LLVM vectorise the sums (reassociation, no signed zeros) but keeps NaN and infinity
semantics. On a GPU the callback uses torch's reductions, which are bandwidth-bound there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

#: Rows of one chunk: the float32 sums within a chunk stay exact for binary inputs (<= 2**16 per column).
CHUNK_ROWS = 1 << 16
#: From this many elements on, a tensor is split over torch's CPU threads (a hand-off costs more below).
PARALLEL_ELEMENTS = 1 << 20
#: Width of the lanes that a tensor without columns is read in (its elements in rows of this many).
LANES = 1024
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


@njit(nogil=True, boundscheck=False, fastmath=_FASTMATH, cache=True)
def _column_sums(a, chunk_rows, count_nonzero):  # pragma: no cover - compiled
    """(sums, total of |x - x^2|, nonzero values) per column of ``a``, float64; float32 within each chunk
    of ``chunk_rows`` rows (the inner loops vectorise over the columns)."""
    width = a.shape[1]
    sums, nonzero, odd_total = np.zeros(width), np.zeros(width), 0.0
    part, odd, events = np.empty(width, a.dtype), np.empty(width, a.dtype), np.empty(width, a.dtype)
    for start in range(0, a.shape[0], chunk_rows):
        part[:], odd[:], events[:] = 0, 0, 0
        stop = min(start + chunk_rows, a.shape[0])
        if count_nonzero:
            for r in range(start, stop):
                for c in range(width):
                    v = a[r, c]
                    part[c] += v
                    odd[c] += abs(v - v * v)
                    events[c] += 1.0 if v != 0 else 0.0
        else:
            for r in range(start, stop):
                for c in range(width):
                    v = a[r, c]
                    part[c] += v
                    odd[c] += abs(v - v * v)
        for c in range(width):
            sums[c] += part[c]
            nonzero[c] += events[c]
            odd_total += odd[c]
    return sums, odd_total, nonzero


@njit(nogil=True, boundscheck=False, fastmath=_FASTMATH, cache=True)
def _extremes(a, chunk_rows):  # pragma: no cover - compiled
    """(lows, highs, nonzero values) per column of ``a``; the counts float32 within each chunk of
    ``chunk_rows`` rows (exact), float64 across chunks, as :func:`_column_sums` counts them."""
    width = a.shape[1]
    low, high = np.full(width, np.inf, a.dtype), np.full(width, -np.inf, a.dtype)
    nonzero, events = np.zeros(width), np.empty(width, a.dtype)
    for start in range(0, a.shape[0], chunk_rows):
        events[:] = 0
        for r in range(start, min(start + chunk_rows, a.shape[0])):
            for c in range(width):
                v = a[r, c]
                events[c] += 1.0 if v != 0 else 0.0
                low[c] = v if v < low[c] else low[c]
                high[c] = v if v > high[c] else high[c]
        for c in range(width):
            nonzero[c] += events[c]
    return low, high, nonzero


_pools: dict[int, ThreadPoolExecutor] = {}


def _over_rows(x: torch.Tensor, columns: int | None, reduce: Callable) -> list[tuple]:
    """``reduce`` of the CPU tensor ``x`` read as ``[-1, columns]`` (or in lanes), its rows split over
    torch's number of CPU threads when it is large (one call otherwise: the common case, kept lean, as the
    callback runs it on every activation); the last elements of a tensor read in lanes are one short row."""
    flat = x.detach().reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    array = flat.contiguous().numpy()
    width = columns or min(LANES, max(1, array.size))
    body = array.size - array.size % width
    rows = array[:body].reshape(-1, width)
    threads = torch.get_num_threads()
    if threads > 1 and array.size >= PARALLEL_ELEMENTS:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="snnbench-metrics")
        step = math.ceil(len(rows) / threads)
        results = list(_pools[threads].map(reduce, [rows[i : i + step] for i in range(0, len(rows), step)]))
    else:
        results = [reduce(rows)]
    if body < array.size:
        results.append(reduce(array[body:].reshape(1, -1)))
    return results


def _combine(parts: list[np.ndarray], columns: int | None) -> torch.Tensor:
    """Per-column arrays of the parts of one tensor, added (``columns`` None: their grand total)."""
    if not columns:
        return torch.tensor([sum(float(p.sum()) for p in parts)], dtype=torch.float64)
    return torch.from_numpy(parts[0] if len(parts) == 1 else np.sum(parts, axis=0))


def column_sums(
    x: torch.Tensor, columns: int | None, nonzero: bool
) -> tuple[torch.Tensor, bool, torch.Tensor | None]:
    """Per-column sums (float64) of a CPU tensor viewed as ``[-1, columns]`` (``columns`` None: the total,
    as one column), whether every value is 0 or 1, and with ``nonzero`` the nonzero values per column."""
    results = _over_rows(x, columns, lambda a: _column_sums(a, CHUNK_ROWS, nonzero))
    binary = all(r[1] == 0 for r in results)
    sums = _combine([r[0] for r in results], columns)
    return sums, binary, _combine([r[2] for r in results], columns) if nonzero else None


def column_extremes(x: torch.Tensor, columns: int | None) -> tuple[float, float, torch.Tensor]:
    """The minimum and maximum (NaN skipped) of a CPU tensor, and its nonzero values per column of
    ``[-1, columns]`` (float64; ``columns`` None: in total, as one column)."""
    results = _over_rows(x, columns, lambda a: _extremes(a, CHUNK_ROWS))
    low = min(float(r[0].min()) for r in results)
    high = max(float(r[1].max()) for r in results)
    return low, high, _combine([r[2] for r in results], columns)
