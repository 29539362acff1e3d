"""``nmnist_sim``: the 5,000 embedded mnist5k digits seen by a simulated saccading event camera.

N-MNIST was recorded by moving an ATIS camera in three saccades in front of a monitor showing each MNIST
digit. This module replays that in simulation, so the neuromorphic path runs end to end with no download:

* the 28x28 digit lies on a black 34x34 field and moves (bilinear sub-pixel shifts) along a closed
  triangle of three 100 ms saccades with smooth (cosine) speed profiles, sampled every 1 ms;
* each pixel keeps a reference log intensity and emits one ON (OFF) event per crossing of its contrast
  threshold upwards (downwards), moving the reference by one threshold per event, as a DVS/ATIS pixel
  does; thresholds differ per pixel (fixed-pattern mismatch) and per polarity;
* events get µs timestamps uniformly jittered inside their 1 ms step, and sparse background-activity
  noise events are added.

The streams are written in N-MNIST's own ``.bin`` format and layout (``Train|Test/<digit>/<id>.bin``, id =
the digit's index in mnist5k) under ``<root>/nmnist_sim/``, and then go through exactly the N-MNIST reader
and frame pipeline. Generation is vectorised over digits (one loop over the 300 time steps), takes
seconds, is deterministic given the seed, and runs once: ``generator.json`` marks a complete set and
records how many recordings it holds, so a file deleted later is an error, not a silently smaller
dataset. The split is mnist5k's: the 1,000 mnist5k test digits are ``Test/``, and the same stratified
10 % of the rest is the validation set (3,600 / 400 / 1,000). The files are generated, so the fix for a
missing or corrupt one is to delete the folder (it is regenerated), not to fetch an archive.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.progress import Phase
from bench.registry import register_dataset
from datamodules.base import stratified_split
from datamodules.events import Events, encode_nmnist_bin
from datamodules.frame_cache import LOCK_SUFFIX, SampleIndex, exclusive, owner_tag, remove_orphans
from datamodules.mnist5k import SPLIT_SEED as MNIST5K_SPLIT_SEED
from datamodules.mnist5k import load_mnist5k
from datamodules.nmnist import NMNIST
from datamodules.readiness import NOT_BUILT, Readiness

SIM_VERSION = 1  # bump when the simulation changes: the files are then regenerated
SIM_SEED = 0
SENSOR = 34
#: Top-left corner of the digit on the 34x34 field at the saccade turning points, (x, y) in pixels:
#: down-right, left, up-right, back to the start (a closed triangle, as N-MNIST's camera motion).
VERTICES = np.array([(3.0, 1.0), (6.0, 4.0), (0.0, 4.0), (3.0, 1.0)])
SACCADE_STEPS = 100  # per saccade
STEP_US = 1000  # 1 ms simulation steps -> 300 ms per sample, like N-MNIST
THRESHOLD = (0.45, 0.45)  # mean ON / OFF contrast thresholds (log intensity)
MISMATCH = 0.02  # per-pixel threshold standard deviation (fixed pattern of the simulated sensor)
DARK = 0.15  # black level of the monitor relative to white: log(DARK + intensity) stays finite
NOISE_HZ = 0.1  # background-activity events per pixel per second
CHUNK = 500  # digits simulated at once (results do not depend on it)
GENERATING = ".generating-"  # a generation in progress: .generating-<host>-<pid>
_PAD = 8


def saccade_path() -> np.ndarray:
    """Digit offsets ``(x, y)`` at every step: ``float [3 * SACCADE_STEPS + 1, 2]``."""
    s = np.arange(1, SACCADE_STEPS + 1) / SACCADE_STEPS
    ease = (1 - np.cos(np.pi * s)) / 2  # smooth start and stop of each saccade
    legs = [a + ease[:, None] * (b - a) for a, b in zip(VERTICES[:-1], VERTICES[1:], strict=True)]
    return np.concatenate([VERTICES[:1], *legs])


def _shifted(canvas: np.ndarray, ox: float, oy: float) -> np.ndarray:
    """Intensity seen by the 34x34 sensor with the digit's top-left corner at ``(ox, oy)``.

    Separable bilinear interpolation: pixel (r, c) sees the digit at (r - oy, c - ox).
    """
    fx, fy = int(np.floor(ox)), int(np.floor(oy))
    ax, ay = np.float32(ox - fx), np.float32(oy - fy)
    r, c = _PAD - fy, _PAD - fx
    window = canvas[:, r - 1 : r + SENSOR, c - 1 : c + SENSOR]
    rows = window[:, :, 1:] * (1 - ax)
    rows += window[:, :, :-1] * ax
    out = rows[:, 1:] * (1 - ay)
    out += rows[:, :-1] * ay
    return out


def _log_intensity(canvas: np.ndarray, ox: float, oy: float) -> np.ndarray:
    out = _shifted(canvas, ox, oy).ravel()
    out += np.float32(DARK)
    return np.log(out, out=out)


def _simulate_chunk(images: np.ndarray, thresholds: np.ndarray, path: np.ndarray) -> np.ndarray:
    """DVS pixels over ``images`` ``[n, 28, 28]`` in [0, 1]: rows (digit, step, y, x, p, count), sorted
    by digit, then step, polarity (ON first) and pixel."""
    n = len(images)
    canvas = np.zeros((n, SENSOR + _PAD, SENSOR + _PAD), dtype=np.float32)
    canvas[:, _PAD : _PAD + 28, _PAD : _PAD + 28] = images
    # Flat per-pixel state over the chunk; only pixels that fire are touched beyond the comparisons.
    on, off = (np.broadcast_to(t, (n, SENSOR, SENSOR)).ravel() for t in thresholds)
    reference = _log_intensity(canvas, *path[0])
    rows = []
    for step in range(1, len(path)):
        delta = _log_intensity(canvas, *path[step])
        delta -= reference
        for polarity, threshold, sign in ((1, on, 1.0), (0, off, -1.0)):
            fired = np.flatnonzero(delta >= threshold) if sign > 0 else np.flatnonzero(delta <= -threshold)
            if fired.size:
                counts = np.floor(delta[fired] * sign / threshold[fired])
                reference[fired] += sign * counts * threshold[fired]
                digit, pixel = np.divmod(fired, SENSOR * SENSOR)
                y, x = np.divmod(pixel, SENSOR)
                columns = (digit, np.full_like(digit, step - 1), y, x, np.full_like(digit, polarity))
                rows.append(np.stack([*columns, counts.astype(np.int64)], 1))
    rows = np.concatenate(rows) if rows else np.zeros((0, 6), dtype=np.int64)
    return rows[np.argsort(rows[:, 0], kind="stable")]


def _finish(rows: np.ndarray, rng: np.random.Generator, duration: int) -> Events:
    """One digit's threshold crossings -> events: µs jitter inside each step, noise, time order."""
    rows = np.repeat(rows[:, 1:5], rows[:, 5], axis=0)  # one row per event: step, y, x, p
    noise = rng.poisson(NOISE_HZ * SENSOR * SENSOR * duration * 1e-6)
    t = np.concatenate(
        [rows[:, 0] * STEP_US + rng.integers(0, STEP_US, len(rows)), rng.integers(0, duration, noise)]
    )
    x = np.concatenate([rows[:, 2], rng.integers(0, SENSOR, noise)])
    y = np.concatenate([rows[:, 1], rng.integers(0, SENSOR, noise)])
    p = np.concatenate([rows[:, 3], rng.integers(0, 2, noise)])
    order = np.argsort(t, kind="stable")
    return Events(t[order], x[order], y[order], p[order])


def simulate(images: np.ndarray, seed: int = SIM_SEED, first_id: int = 0) -> Iterator[Events]:
    """Event streams of the simulated three-saccade sensor over ``uint8 [n, 28, 28]`` digits, one by one.

    Deterministic given ``seed``: the pixel thresholds come from ``seed`` and digit ``first_id + i``'s
    timing jitter and noise from ``(seed, first_id + i)``, so a digit's events do not depend on which
    other digits are simulated with it (nor on :data:`CHUNK`). Timestamps are sorted, in µs from 0.
    """
    rng = np.random.default_rng(seed)
    thresholds = np.stack(
        [np.clip(rng.normal(mean, MISMATCH, (SENSOR, SENSOR)), 0.05, None) for mean in THRESHOLD]
    ).astype(np.float32)
    path = saccade_path()
    duration = (len(path) - 1) * STEP_US
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK].astype(np.float32) / 255.0
        rows = _simulate_chunk(chunk, thresholds, path)
        bounds = np.searchsorted(rows[:, 0], np.arange(len(chunk) + 1))
        for d in range(len(chunk)):
            digit_rng = np.random.default_rng([seed, first_id + start + d])
            yield _finish(rows[bounds[d] : bounds[d + 1]], digit_rng, duration)


def layout(labels: np.ndarray) -> list[str]:
    """Digit i's file relative to the folder, ``Train|Test/<digit>/<i:05d>.bin`` (mnist5k's test digits
    are ``Test/``)."""
    _, test = stratified_split(labels, 0.2, MNIST5K_SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return [f"{'Test' if is_test[i] else 'Train'}/{labels[i]}/{i:05d}.bin" for i in range(len(labels))]


def generate(folder: Path, seed: int = SIM_SEED) -> dict:
    """Write the 5,000 simulated recordings as N-MNIST ``.bin`` files under ``folder`` (atomically);
    leftovers of a generation that was killed are removed first."""
    images, labels = load_mnist5k()
    files = layout(labels)
    phase = Phase("nmnist_sim")
    phase.start(f"simulating {len(images)} event recordings of the mnist5k digits into {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphans(folder, GENERATING)
    tmp = folder / f"{GENERATING}{owner_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in ("Train", "Test"):
            for digit in range(10):
                (tmp / split / str(digit)).mkdir(parents=True)
        total = 0
        for i, events in enumerate(simulate(images, seed)):
            (tmp / files[i]).write_bytes(encode_nmnist_bin(events))
            total += events.size
            phase.tick(f"{i + 1}/{len(images)} recordings")
        for split in ("Train", "Test"):
            shutil.rmtree(folder / split, ignore_errors=True)
            (tmp / split).rename(folder / split)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker = {"version": SIM_VERSION, "seed": seed, "samples": len(images), "events": total}
    (folder / "generator.json").write_text(json.dumps(marker, indent=1))
    phase.end(f"wrote {len(images)} recordings")
    return marker


@register_dataset("nmnist_sim")
class NMNISTSim(NMNIST):
    """mnist5k digits through a simulated 3-saccade event camera, in N-MNIST's format (34x34x2)."""

    embedded = True
    frames = 6
    split_by = "time"
    sizes = "3,600 / 400 / 1,000"
    expected_layout = "Train|Test/<digit>/<id>.bin, generated from the mnist5k digits"
    source = "the simulator in datamodules/nmnist_sim.py (delete the folder to regenerate it)"

    @classmethod
    def fixture(cls, root: Path) -> None:
        """None: generating the 5,000 recordings takes half a minute; nmnist_sim is N-MNIST's format and
        reader (the ``nmnist`` fixture) fed by the simulator, which test_datamodules_events.py checks."""
        return None

    def marker(self) -> dict | None:
        """``generator.json`` if it marks a complete set made by this simulator version and seed."""
        try:
            marker = json.loads((self.data_dir / "generator.json").read_text())
        except (OSError, ValueError):
            return None
        if marker.get("version") == SIM_VERSION and marker.get("seed") == SIM_SEED:
            return marker
        return None

    def index(self) -> SampleIndex:
        marker = self.marker()
        if marker is None:
            try:
                # Once: the other processes that need the recordings wait, then find them made.
                lock = self.data_dir / f"generator{LOCK_SUFFIX}"
                with exclusive(lock, f"the simulated recordings {self.data_dir}", "generated"):
                    marker = self.marker() or generate(self.data_dir)
            except OSError as error:
                raise DataError(
                    f"Could not write the simulated N-MNIST recordings to {self.data_dir}: {error}. "
                    "Point data.root (or $SNNBENCH_DATA) at a writable folder."
                ) from error
        index = self.scan()
        ids = sorted(int(path.stem) if path.stem.isdigit() else -1 for path in index.paths)
        if ids != list(range(marker["samples"])):  # the generator writes ids 0..samples-1, once each
            raise self.missing(self.difference(index, marker["samples"]))
        return index

    def difference(self, index: SampleIndex, expected: int) -> str:
        """What is missing (and what is extra) on disk compared with what the generator wrote."""
        found = {path.relative_to(self.data_dir).as_posix() for path in index.paths}
        wanted = layout(load_mnist5k()[1])
        missing = [str(self.data_dir / f) for f in wanted if f not in found]
        extra = sorted(str(self.data_dir / f) for f in found.difference(wanted))
        what = f"generator.json records {expected:,} recordings, and {len(index):,} .bin files were found"
        if missing:
            what += f"; {len(missing):,} missing, e.g. {', '.join(missing[:3])}"
        if extra:
            what += f"; {len(extra):,} not made by the generator, e.g. {', '.join(extra[:3])}"
        return what

    def missing(self, what: str) -> DataError:
        return DataError(f"The nmnist_sim dataset is incomplete: {what}. {self.repair_hint()}")

    def where_to_get(self) -> str:
        return self.repair_hint()

    def readiness(self) -> Readiness:
        if self.marker() is None:
            return Readiness(
                self.registry_key,
                self.data_dir,
                NOT_BUILT,
                "its recordings are generated from the embedded mnist5k digits on first use (about 30 s)",
                {str(self.cache_path): "not built"},
            )
        return super().readiness()

    def repair_hint(self) -> str:
        return (
            f"It is generated data: delete the folder {self.data_dir} and the next run regenerates it from "
            "the embedded mnist5k digits (about 30 s)."
        )
