"""Event-camera file readers and event -> frame integration, vectorised with numpy.

Readers return :class:`Events`: unsigned or int64 arrays as decoded (no widening copies) of ``t`` (µs),
``x``/``y`` (pixels, origin at the top left) and ``p`` (polarity, 1 = ON). Bit layouts follow the
official formats:

* N-MNIST ``.bin``: 5-byte ATIS records (x, y, polarity + 23-bit timestamp); decoded by spikingjelly's
  vectorised ``load_ATIS_bin`` (correct and as fast as a hand-written decoder: see
  ``benchmarks/event_pipeline.py``), after our own size and range checks.
* AEDAT 2.0 (CIFAR10-DVS, jAER DVS128): big-endian (address, timestamp) int32 pairs after ``#`` header
  lines. spikingjelly's decoder is private API and does not drop external events, so it is ours.
* AEDAT 3.1 (DVS128 Gesture): little-endian packets of a 28-byte header + events; only polarity packets
  (type 1) are decoded, each in one shot (spikingjelly's ``load_aedat_v3`` loops per event in Python).

Corrupt or truncated files raise :class:`bench.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
from spikingjelly.datasets.utils import load_ATIS_bin

from bench.errors import DataError

#: Bumped whenever a reader or the integration changes its output: part of every frame-cache path.
READER_VERSION = 1
SPLIT_BY = ("number", "time")

NMNIST_URL = "https://www.garrickorchard.com/datasets/n-mnist (Mendeley Data doi 10.17632/468j46mzdv.1)"


class Events(NamedTuple):
    """One event stream: equal-length non-negative integer arrays, in file order."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray

    @property
    def size(self) -> int:
        """The number of events (``len()`` stays the tuple's 4 fields)."""
        return int(self.t.size)

    def select(self, mask_or_slice) -> Events:
        return Events(*(a[mask_or_slice] for a in self))


def _read_bytes(path: Path, what: str, hint: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"Could not read {what} file {path}: {error.strerror or error}. {hint}") from error


def _check_range(events: Events, path: Path, height: int, width: int, what: str, hint: str) -> Events:
    if events.size and (events.x.max() >= width or events.y.max() >= height):
        raise DataError(
            f"{path} is corrupt: its events lie outside the {width}x{height} sensor of a {what} file "
            f"(x up to {events.x.max()}, y up to {events.y.max()}). {hint}"
        )
    return events


# --- N-MNIST .bin --------------------------------------------------------------------------------------
def read_nmnist_bin(path: str | Path, height: int = 34, width: int = 34, hint: str | None = None) -> Events:
    """Decode an N-MNIST ``.bin`` file (no header; 40-bit big-endian records, see data-formats.md §4).

    ``hint`` ends every error message: how to get a good copy (default: re-extract the official archive;
    generated data such as nmnist_sim says how to regenerate it instead).
    """
    hint = hint or f"Re-extract it from the official N-MNIST archive ({NMNIST_URL})."
    try:
        raw = load_ATIS_bin(path)
    except OSError as error:
        raise DataError(f"Could not read N-MNIST file {path}: {error.strerror or error}. {hint}") from error
    except ValueError:  # 3 or 4 stray bytes: spikingjelly's strided fields no longer broadcast
        raw = None
    size = os.stat(path).st_size
    if size < 5:  # no recording is empty: a copy cut short
        raise DataError(f"{path} holds no event ({size} bytes): a truncated or failed copy. {hint}")
    if raw is None or raw["x"].size != raw["t"].size:  # 1 or 2 stray bytes: one field is longer
        raise DataError(
            f"{path} is truncated or corrupt: N-MNIST .bin files hold 5-byte event records, but this one "
            f"has {size} bytes ({size % 5} stray byte(s) after the last whole record). {hint}"
        )
    events = Events(raw["t"], raw["x"], raw["y"], raw["p"])
    return _check_range(events, Path(path), height, width, "N-MNIST", hint)


def encode_nmnist_bin(events: Events) -> bytes:
    """The 5-byte-record encoding of ``events`` (the inverse of :func:`read_nmnist_bin`)."""
    t = np.asarray(events.t, dtype=np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("N-MNIST timestamps must fit in 23 bits (0 <= t < 8,388,608 µs).")
    for name in ("x", "y"):
        values = np.asarray(getattr(events, name))
        if len(values) and (values.min() < 0 or values.max() > 255):
            raise ValueError(f"N-MNIST {name} coordinates must fit in one byte.")
    records = np.empty((len(t), 5), dtype=np.uint8)
    records[:, 0] = events.x
    records[:, 1] = events.y
    records[:, 2] = (np.asarray(events.p, dtype=np.int64) != 0) << 7 | (t >> 16) & 0x7F
    records[:, 3] = (t >> 8) & 0xFF
    records[:, 4] = t & 0xFF
    return records.tobytes()


# --- AEDAT headers -------------------------------------------------------------------------------------
def _header_end(data: bytes, path: Path, magic: bytes, hint: str, end_line: bytes | None = None) -> int:
    """Byte offset where the binary part starts, after the ``#`` header lines (checks the version line)."""
    if not data.startswith(magic):
        first = data[:40].split(b"\n")[0].decode("latin1").strip()
        raise DataError(
            f"{path} is not an {magic[2:].decode()} file: its first line should start with "
            f"{magic.decode()!r} but reads {first!r}. {hint}"
        )
    pos = 0
    while data.startswith(b"#", pos):
        newline = data.find(b"\n", pos)
        if newline < 0:
            raise DataError(f"{path} is truncated: its text header never ends. {hint}")
        line, pos = data[pos : newline + 1], newline + 1
        if end_line is not None and line.rstrip(b"\r\n") == end_line:
            return pos
    if end_line is not None:
        raise DataError(f"{path} is corrupt: its header has no {end_line.decode()!r} line. {hint}")
    return pos


# --- AEDAT 2.0 (jAER DVS128: CIFAR10-DVS) --------------------------------------------------------------
def read_aedat2_dvs128(path: str | Path, hint: str = "") -> Events:
    """Decode a jAER AEDAT 2.0 DVS128 file with spikingjelly's CIFAR10-DVS orientation.

    Address bits: 15 external event (dropped), 14-8 Y, 7-1 X, 0 polarity. Like spikingjelly (whose
    pipeline produced most published CIFAR10-DVS numbers) we return ``x = 127 - Y``, ``y = 127 - X``,
    ``p = 1 - bit0``: the transposed, flipped view that shows the CIFAR images upright.
    """
    path = Path(path)
    data = _read_bytes(path, "AEDAT 2.0", hint)
    start = _header_end(data, path, b"#!AER-DAT2.0", hint)
    body = len(data) - start
    if body % 8:
        raise DataError(
            f"{path} is truncated or corrupt: after the header, AEDAT 2.0 holds 8-byte (address, "
            f"timestamp) records, but {body} bytes remain ({body % 8} stray). {hint}"
        )
    words = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2).astype(np.uint32)
    address, t = words[:, 0], words[:, 1]
    outside = address & 0xFFFF8000  # external/special events and non-DVS128 addresses
    if outside.any():
        keep = outside == 0
        address, t = address[keep], t[keep]
    x_raw, y_raw = (address >> 1) & 0x7F, (address >> 8) & 0x7F
    return Events(t, 127 - y_raw, 127 - x_raw, 1 - (address & 1))


# --- AEDAT 3.1 (cAER: DVS128 Gesture) ------------------------------------------------------------------
PACKET_HEADER = struct.Struct("<hhiiiiii")  # type, source, size, ts offset, ts overflow, capacity, n, valid


def read_aedat31_polarity(path: str | Path, height: int = 128, width: int = 128, hint: str = "") -> Events:
    """Decode the polarity events of an AEDAT 3.1 file; packets of other types are skipped.

    libcaer polarity data: bit 0 valid mark (events without it are dropped), bit 1 polarity, y from
    bit 2 and x from bit 17 (masks 0x7FFF); timestamp = (packet overflow << 31) | int32 timestamp.
    """
    path = Path(path)
    data = _read_bytes(path, "AEDAT 3.1", hint)
    offset = _header_end(data, path, b"#!AER-DAT3.1", hint, end_line=b"#!END-HEADER")
    words, overflows = [], []
    while offset < len(data):
        if len(data) - offset < PACKET_HEADER.size:
            raise DataError(
                f"{path} is truncated: {len(data) - offset} byte(s) at offset {offset} cannot hold a "
                f"28-byte AEDAT 3.1 packet header. {hint}"
            )
        kind, _, size, _, overflow, capacity, _, _ = PACKET_HEADER.unpack_from(data, offset)
        end = offset + PACKET_HEADER.size + capacity * size
        if size <= 0 or capacity < 0 or end > len(data):
            raise DataError(
                f"{path} is truncated or corrupt: the packet at offset {offset} declares {capacity} "
                f"events of {size} bytes, which runs past the end of the file ({len(data)} bytes). {hint}"
            )
        if kind == 1 and capacity:
            if size != 8:
                raise DataError(f"{path} is corrupt: a polarity packet declares {size}-byte events, not 8.")
            words.append(np.frombuffer(data, dtype="<u4", count=2 * capacity, offset=offset + 28))
            overflows.append(np.full(capacity, overflow, dtype=np.int64))
        offset = end
    if not words:
        empty = np.zeros(0, dtype=np.int64)
        return Events(empty, empty, empty, empty)
    pairs = np.concatenate(words).reshape(-1, 2).astype(np.int64)
    overflow = np.concatenate(overflows)
    payload, ts = pairs[:, 0], pairs[:, 1] & 0x7FFFFFFF
    valid = (payload & 1) == 1
    payload, ts, overflow = payload[valid], ts[valid], overflow[valid]
    events = Events(
        (overflow << 31) | ts, (payload >> 17) & 0x7FFF, (payload >> 2) & 0x7FFF, (payload >> 1) & 1
    )
    return _check_range(events, path, height, width, "DVS128", hint)


# --- events -> frames ----------------------------------------------------------------------------------
def downsample(events: Events, sensor: tuple[int, int], size: tuple[int, int]) -> Events:
    """Map coordinates from ``sensor`` (H, W) onto a coarser ``size`` grid: ``x * out_w // W`` (sum
    pooling of the events; bins are 2 or 3 pixels wide for 128 -> 48). No event is dropped."""
    (height, width), (out_h, out_w) = sensor, size
    if (out_h, out_w) == (height, width):
        return events
    return events._replace(x=events.x * out_w // width, y=events.y * out_h // height)


def frame_index(t: np.ndarray, frames: int, split_by: str) -> np.ndarray:
    """Which of ``frames`` segments each event falls in, following spikingjelly's conventions.

    ``number``: segment i holds events [i*d, (i+1)*d) with d = N // frames, the last one up to N (all in
    the last segment when N < frames). ``time``: with dt = (t_max - t_0) // frames, segment i holds
    t_0 + i*dt <= t < t_0 + (i+1)*dt, the last one up to t_max. Unlike spikingjelly, empty time segments
    are fine (zero frames) and no per-segment Python loop is needed.
    """
    n = t.size
    if split_by == "number":
        step = n // frames
        if step == 0:
            return np.full(n, frames - 1, dtype=np.int64)
        return np.minimum(np.arange(n, dtype=np.int64) // step, frames - 1)
    if split_by == "time":
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        t0 = t.min()
        dt = max(int(t.max() - t0) // frames, 1)
        return np.minimum((t - t0) // dt, frames - 1).astype(np.int64)
    raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")


def events_to_frames(events: Events, frames: int, split_by: str, height: int, width: int) -> np.ndarray:
    """Count events per (frame, polarity, y, x): int64 ``[frames, 2, H, W]`` (channel 0 OFF, 1 ON).

    One bincount over all events; the counts of a sample sum to its number of events.
    """
    index = frame_index(events.t, frames, split_by)
    cells = 2 * height * width
    flat = index * cells + (events.p != 0) * (height * width) + events.y * width + events.x
    return np.bincount(flat, minlength=frames * cells).reshape(frames, 2, height, width)
