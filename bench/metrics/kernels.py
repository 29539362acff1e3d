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
sums: at most 2**16 ones per column and chunk), float64 across chunks. Chunks are spread over torch's
number of CPU threads (the kernels release the GIL). fastmath lets LLVM vectorise the sums (reassociation,
no signed zeros) but keeps NaN and infinity semantics. On a GPU the callback uses torch's reductions,
which are bandwidth-bound there.
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
def _sums(a, sums, odd):  # pragma: no cover - compiled
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            v = a[r, c]
            sums[c] += v
            odd[c] += abs(v - v * v)


@njit(nogil=True, boundscheck=False, fastmath=_FASTMATH, cache=True)
def _sums_nonzero(a, sums, odd, nonzero):  # pragma: no cover - compiled
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            v = a[r, c]
            sums[c] += v
            odd[c] += abs(v - v * v)
            nonzero[c] += 1.0 if v != 0 else 0.0


@njit(nogil=True, boundscheck=False, fastmath=_FASTMATH, cache=True)
def _extremes(a, low, high, nonzero):  # pragma: no cover - compiled
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            v = a[r, c]
            nonzero[c] += 1.0 if v != 0 else 0.0
            low[c] = v if v < low[c] else low[c]
            high[c] = v if v > high[c] else high[c]


def _chunk_sums(a: np.ndarray, nonzero: bool) -> tuple[np.ndarray, ...]:
    """(sums, |x - x^2| sums[, nonzero counts]) per column of ``a``, as float64 arrays."""
    parts = [np.zeros(a.shape[1], dtype=a.dtype) for _ in range(3 if nonzero else 2)]
    (_sums_nonzero if nonzero else _sums)(a, *parts)
    return tuple(p.astype(np.float64) for p in parts)


def _chunk_extremes(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """(lows, highs, nonzero counts) per column of ``a``."""
    low, high = np.full(a.shape[1], np.inf, dtype=a.dtype), np.full(a.shape[1], -np.inf, dtype=a.dtype)
    nonzero = np.zeros(a.shape[1], dtype=a.dtype)
    _extremes(a, low, high, nonzero)
    return low, high, nonzero.astype(np.float64)


_pools: dict[int, ThreadPoolExecutor] = {}


def _over_chunks(x: torch.Tensor, columns: int | None, reduce: Callable) -> list[tuple[np.ndarray, ...]]:
    """``reduce`` of every chunk of rows of the CPU tensor ``x`` read as ``[-1, columns]`` (or in lanes),
    on torch's number of CPU threads; the last elements of a tensor read in lanes are one short row."""
    flat = x.detach().reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    width = columns or min(LANES, max(1, flat.numel()))
    body = flat.numel() - flat.numel() % width
    rows = flat[:body].contiguous().numpy().reshape(-1, width)
    threads = max(1, torch.get_num_threads())
    chunks = max(math.ceil(len(rows) / CHUNK_ROWS), threads if flat.numel() >= PARALLEL_ELEMENTS else 1)
    step = max(1, math.ceil(len(rows) / chunks))
    parts = [rows[i : i + step] for i in range(0, len(rows), step)] or [rows]
    if len(parts) > 1 and threads > 1:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="snnbench-metrics")
        results = list(_pools[threads].map(reduce, parts))
    else:
        results = [reduce(part) for part in parts]
    if body < flat.numel():
        results.append(reduce(flat[body:].contiguous().numpy().reshape(1, -1)))
    return results


def _per_column(columns: int | None) -> Callable[[np.ndarray], np.ndarray]:
    return (lambda v: v) if columns else (lambda v: v.sum(keepdims=True))


def column_sums(
    x: torch.Tensor, columns: int | None, nonzero: bool
) -> tuple[torch.Tensor, bool, torch.Tensor | None]:
    """Per-column sums (float64) of a CPU tensor viewed as ``[-1, columns]`` (``columns`` None: the total,
    as one column), whether every value is 0 or 1, and with ``nonzero`` the nonzero values per column."""
    results = _over_chunks(x, columns, lambda a: _chunk_sums(a, nonzero))
    keep = _per_column(columns)
    sums = torch.from_numpy(sum(keep(r[0]) for r in results))
    binary = sum(float(r[1].sum()) for r in results) == 0
    return sums, binary, torch.from_numpy(sum(keep(r[2]) for r in results)) if nonzero else None


def column_extremes(x: torch.Tensor, columns: int | None) -> tuple[float, float, torch.Tensor]:
    """The minimum and maximum (NaN skipped) of a CPU tensor, and its nonzero values per column of
    ``[-1, columns]`` (float64; ``columns`` None: in total, as one column)."""
    results = _over_chunks(x, columns, _chunk_extremes)
    low = min(float(r[0].min()) for r in results)
    high = max(float(r[1].max()) for r in results)
    return low, high, torch.from_numpy(sum(_per_column(columns)(r[2]) for r in results))
