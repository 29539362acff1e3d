"""Event pipeline benchmark: our readers + integration against spikingjelly and tonic, same events, same run.

Run by hand (not part of the test suite); tonic is optional and need not be in the project's venv:

    .venv/bin/pip install --no-deps --target /tmp/tonic_site tonic importRosbag expelliarmus
    PYTHONPATH=/tmp/tonic_site .venv/bin/python benchmarks/event_pipeline.py [--digits 500] [--frames 16]

The events are nmnist_sim recordings (the simulated saccading sensor over mnist5k digits), written as
N-MNIST ``.bin`` files and, concatenated, as one AEDAT 2.0 and one AEDAT 3.1 file in a temporary folder.
Each stage prints events/s (best of ``--repeats``) and the ratio ours / reference measured in this run,
and whether the outputs are identical.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from spikingjelly.datasets import utils as sj_utils
from spikingjelly.datasets.cifar10_dvs import _load_origin_data as sj_read_aedat2

from datamodules.events import (
    Events,
    encode_nmnist_bin,
    events_to_frames,
    read_aedat2_dvs128,
    read_aedat31_polarity,
    read_nmnist_bin,
)
from datamodules.mnist5k import load_mnist5k
from datamodules.nmnist_sim import simulate

try:
    from tonic.functional.to_frame import to_frame_numpy
    from tonic.io import events_struct, read_mnist_file
except ImportError:  # optional reference
    to_frame_numpy = None

H = W = 34


def best_rate(fn, events: int, repeats: int) -> tuple[float, object]:
    """(events per second of the fastest of ``repeats`` calls, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return events / best, result


def numpy_nmnist(path: Path) -> Events:
    """A hand-written vectorised decoder of the same 5-byte records, to judge spikingjelly's."""
    r = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    return Events((r[:, 2] & 0x7F) << 16 | r[:, 3] << 8 | r[:, 4], r[:, 0], r[:, 1], r[:, 2] >> 7)


def sj_frames(e: Events, frames: int, split_by: str) -> np.ndarray | str:
    try:
        d = {"t": e.t, "x": e.x, "y": e.y, "p": e.p}
        return sj_utils.integrate_events_by_fixed_frames_number(d, split_by, frames, H, W)
    except (IndexError, ValueError) as error:  # spikingjelly fails on an empty time bin
        return f"{type(error).__name__}: {error}"


def to_tonic(e: Events) -> np.ndarray:
    out = np.empty(e.size, dtype=events_struct)
    out["x"], out["y"], out["t"], out["p"] = e.x, e.y, e.t, e.p
    return out


def write_aedat2(path: Path, e: Events) -> None:
    """DVS128 jAER addresses chosen so that our (spikingjelly-oriented) reader returns ``e``."""
    address = ((127 - e.x) << 8) | ((127 - e.y) << 1) | (1 - e.p)
    words = np.stack([address, e.t], 1).astype(">u4")
    path.write_bytes(b"#!AER-DAT2.0\r\n# Timestamps tick is 1 us\r\n" + words.tobytes())


def write_aedat31(path: Path, e: Events, packet: int = 4096) -> None:
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    data = (e.x << 17) | (e.y << 2) | (e.p << 1) | 1
    words = np.stack([data, e.t], 1).astype("<u4")
    chunks = [header]
    for start in range(0, e.size, packet):
        block = words[start : start + packet]
        chunks.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, len(block), len(block), len(block)))
        chunks.append(block.tobytes())
    path.write_bytes(b"".join(chunks))


def row(name: str, rate: float, reference: float | None = None, same: str = "") -> None:
    ratio = f"{rate / reference:8.2f}x" if reference else " " * 9
    print(f"  {name:<52} {rate / 1e6:9.2f} M ev/s  {ratio}  {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=500)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images, _ = load_mnist5k()
    streams = list(simulate(images[: args.digits]))
    total = sum(e.size for e in streams)
    T, reps = args.frames, args.repeats
    per = total / len(streams)
    print(f"{len(streams)} nmnist_sim recordings, {total:,} events ({per:.0f} per sample), T={T}")
    if to_frame_numpy is None:
        print("  (tonic is not importable: its columns are skipped; see the module docstring)")

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, e in enumerate(streams):
            paths.append(Path(tmp) / f"{i:05d}.bin")
            paths[-1].write_bytes(encode_nmnist_bin(e))

        print("\nN-MNIST .bin reading (per file)")
        ours, got = best_rate(lambda: [read_nmnist_bin(p) for p in paths], total, reps)
        sj, sj_got = best_rate(lambda: [sj_utils.load_ATIS_bin(str(p)) for p in paths], total, reps)
        mine, np_got = best_rate(lambda: [numpy_nmnist(p) for p in paths], total, reps)
        same = all(
            np.array_equal(a.t, b["t"]) and np.array_equal(a.x, b["x"])
            for a, b in zip(got, sj_got, strict=True)
        )
        row("ours (checks + spikingjelly load_ATIS_bin)", ours, sj, f"identical to sj: {same}")
        row("spikingjelly load_ATIS_bin", sj)
        row("hand-written numpy decoder (not used)", mine, sj)
        if to_frame_numpy is not None:
            tonic, _ = best_rate(lambda: [read_mnist_file(str(p), events_struct) for p in paths], total, reps)
            row("tonic io.read_mnist_file", tonic)
            row("ours vs tonic", ours, tonic)

        for split_by in ("number", "time"):
            print(f"\nIntegration into {T} frames by {split_by} (events in memory)")
            ours, frames = best_rate(
                lambda sb=split_by: [events_to_frames(e, T, sb, H, W) for e in streams], total, reps
            )
            sj, sj_out = best_rate(lambda sb=split_by: [sj_frames(e, T, sb) for e in streams], total, reps)
            failed = sum(isinstance(f, str) for f in sj_out)
            same = all(
                isinstance(b, np.ndarray) and np.array_equal(a, b)
                for a, b in zip(frames, sj_out, strict=True)
            )
            note = f"identical to sj: {same}" + (f" (sj failed on {failed} samples)" if failed else "")
            row("ours events_to_frames (one bincount)", ours, sj, note)
            row("spikingjelly integrate_events_by_fixed_frames_number", sj)
            if to_frame_numpy is not None:
                structured = [to_tonic(e) for e in streams]
                key = {"number": "n_event_bins", "time": "n_time_bins"}[split_by]
                tonic, t_out = best_rate(
                    lambda k=key, ss=structured: [to_frame_numpy(s, (W, H, 2), **{k: T}) for s in ss],
                    total,
                    reps,
                )
                same = sum(np.array_equal(a, b) for a, b in zip(frames, t_out, strict=True))
                row(f"tonic ToFrame({key}={T})", tonic)
                row("ours vs tonic", ours, tonic, f"identical frames: {same}/{len(frames)} samples")

        print(f"\nRead + integrate ({T} frames by number), per file")

        def ours_pipeline():
            return [events_to_frames(read_nmnist_bin(p), T, "number", H, W) for p in paths]

        def sj_pipeline():
            return [
                sj_utils.integrate_events_by_fixed_frames_number(
                    sj_utils.load_ATIS_bin(str(p)), "number", T, H, W
                )
                for p in paths
            ]

        ours, _ = best_rate(ours_pipeline, total, reps)
        sj, _ = best_rate(sj_pipeline, total, reps)
        row("ours", ours, sj)
        row("spikingjelly", sj)
        if to_frame_numpy is not None:

            def tonic_pipeline():
                return [
                    to_frame_numpy(read_mnist_file(str(p), events_struct), (W, H, 2), n_event_bins=T)
                    for p in paths
                ]

            tonic, _ = best_rate(tonic_pipeline, total, reps)
            row("tonic (read_mnist_file + ToFrame)", tonic)
            row("ours vs tonic", ours, tonic)

        # The same events, concatenated, as one AEDAT file of each version (one long recording).
        cat = Events(*(np.concatenate([getattr(e, f) for e in streams]) for f in Events._fields))
        cat = cat._replace(t=np.arange(cat.size, dtype=np.int64))
        aedat2, aedat31 = Path(tmp) / "all2.aedat", Path(tmp) / "all31.aedat"
        write_aedat2(aedat2, cat)
        write_aedat31(aedat31, cat)

        print("\nAEDAT 2.0 (CIFAR10-DVS) reading, one file")
        ours, got = best_rate(lambda: read_aedat2_dvs128(aedat2), total, reps)
        sj, sj_got = best_rate(lambda: sj_read_aedat2(aedat2), total, reps)
        same = all(np.array_equal(getattr(got, k), sj_got[k]) for k in "txyp")
        trip = all(np.array_equal(a, b) for a, b in zip(got, cat, strict=True))
        row("ours read_aedat2_dvs128", ours, sj, f"identical to sj: {same}; round trip: {trip}")
        row("spikingjelly cifar10_dvs._load_origin_data (private)", sj)

        print("\nAEDAT 3.1 (DVS128 Gesture) reading, one file, 4096-event packets")
        ours, got = best_rate(lambda: read_aedat31_polarity(aedat31), total, reps)
        sj, sj_got = best_rate(lambda: sj_utils.load_aedat_v3(str(aedat31)), total, 1)
        same = all(np.array_equal(getattr(got, k), sj_got[k]) for k in "txyp")
        row("ours read_aedat31_polarity (one shot per packet)", ours, sj, f"identical to sj: {same}")
        row("spikingjelly load_aedat_v3 (per-event loop, 1 run)", sj)
        if to_frame_numpy is not None:
            from tonic.io import read_dvs_ibm

            try:
                read_dvs_ibm(str(aedat31))
                print("  tonic read_dvs_ibm: ran")
            except Exception as error:  # known to crash in tonic 1.7.0 (header reader API change)
                print(f"  tonic read_dvs_ibm: fails ({type(error).__name__}: {error})")


if __name__ == "__main__":
    sys.exit(main())
