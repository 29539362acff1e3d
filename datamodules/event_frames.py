"""The DataModule side of the event-camera datasets: frame settings, splits, loaders, error messages.

Every sample's events are read once, (optionally) downsampled and integrated into ``frames`` fine frames
``[T, 2, H, W]`` (event counts; channel 0 OFF, 1 ON) and kept in a checksummed on-disk cache
(:mod:`datamodules.frame_cache`: where it lives, when it is stale or corrupt, how it is built, and the
lock that makes the processes needing one cache build it once). A cache that must be (re)built in a folder
that cannot be written is a :class:`~bench.errors.DataError` saying what to do. Nothing is downloaded:
the official archives are fetched by hand (``source``), then ``bench prepare`` builds the caches.

Methods receive the fine frames as ``[B, T, 2, H, W]``; a method that wants fewer time steps aggregates
them itself (e.g. 16 fine frames -> 2 steps of synaptic current).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.errors import ConfigError, DataError
from datamodules.base import BenchDataModule, stratified_split
from datamodules.events import SPLIT_BY, Events
from datamodules.frame_cache import (
    CACHE_DIR,
    CORRUPT,
    LOCK_SUFFIX,
    FrameSpec,
    SampleIndex,
    build_frame_cache,
    cache_looks_built,
    cache_problem,
    exclusive,
)
from datamodules.readiness import MISSING, NOT_BUILT, READY, Readiness, human_bytes

log = logging.getLogger(__name__)

SPLIT_SEED = 0  # fixes every train/val (and CIFAR10-DVS train/test) split for good, whatever the run seed


class FrameDataset(Dataset):
    """Samples ``indices`` of a frame cache: ``(float32 [T, 2, H, W], label)``.

    The memory map is opened lazily, so DataLoader workers each open their own instead of pickling it.
    """

    def __init__(self, path: Path, indices: np.ndarray, labels: np.ndarray):
        self.path = Path(path)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels)[self.indices], dtype=torch.long)
        self._frames = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def frames(self) -> np.ndarray:
        if self._frames is None:
            self._frames = np.load(self.path, mmap_mode="r")
        return self._frames

    def __getitem__(self, i):
        return torch.from_numpy(self.frames[self.indices[i]].astype(np.float32)), self.labels[i]

    def __getstate__(self):
        return {**self.__dict__, "_frames": None}


class EventFrameDataModule(BenchDataModule):
    """Base of the event-camera DataModules (not registered): subclasses say where samples are and how
    to read a file; this class caches frames, splits and serves ``[B, T, 2, H, W]`` batches."""

    kind = "event"
    sensor: tuple[int, int]  # (H, W) of the camera
    frames = 16  # defaults of the constructor arguments (None), shown by `bench list`
    split_by = "number"
    frame_size: int | None = None  # default side of the frames; None: the sensor's
    expected_layout = ""  # the tree under <root>/<key>/, for error messages
    source = ""  # where to get the data, for error messages
    required: tuple[str, ...] = ()  # paths under <root>/<key>/ whose presence the quick check looks for

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        frames: int | None = None,
        split_by: str | None = None,
        size: int | None = None,
        val_fraction: float = 0.1,
    ):
        super().__init__(root, batch_size, num_workers)
        frames = type(self).frames if frames is None else frames
        split_by = type(self).split_by if split_by is None else split_by
        size = (self.frame_size or min(self.sensor)) if size is None else size
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
            raise ConfigError(
                f"data.frames must be a positive integer (fine frames per sample), got {frames!r}."
            )
        if split_by not in SPLIT_BY:
            raise ConfigError(f"data.split_by={split_by!r} is not supported; use one of {SPLIT_BY}.")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= min(self.sensor):
            raise ConfigError(
                f"data.size must be an integer from 1 to the sensor's {min(self.sensor)} pixels (the side "
                f"of the frames after spatial downsampling), got {size!r}."
            )
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction!r}.")
        self.frames = int(frames)
        self.split_by = split_by
        self.size = int(size)
        self.val_fraction = float(val_fraction)
        height, width = self.sensor
        self.spec = FrameSpec(
            self.frames,
            split_by,
            height * self.size // max(self.sensor),
            width * self.size // max(self.sensor),
        )
        self.input_shape = (2, self.spec.height, self.spec.width)
        self.cache_dir: Path | None = None
        self.samples: SampleIndex | None = None
        self.cache_built = False  # whether this instance built its cache (rather than finding it valid)

    # --- what a subclass provides ------------------------------------------------------------------------
    def index(self) -> SampleIndex:
        """Find the samples on disk (checking the layout) without reading events."""
        raise NotImplementedError

    def read(self, path: Path) -> Events:
        """Decode one source file."""
        raise NotImplementedError

    def split_indices(self, index: SampleIndex) -> tuple[np.ndarray, np.ndarray]:
        """``(train_pool, test)`` sample indices (default: the official split); validation is carved from
        the pool by :meth:`setup`."""
        return np.flatnonzero(~index.test), np.flatnonzero(index.test)

    # --- shared ------------------------------------------------------------------------------------------
    @property
    def frame_spec(self) -> dict:
        """The frame parameters to record with every result (T, split_by, frame size, reader version)."""
        return self.spec.as_dict()

    def missing(self, what: str) -> DataError:
        """A DataError that names the problem, the expected tree and where to get the data."""
        return DataError(
            f"The {self.registry_key} dataset is missing or incomplete: {what}. Expected under "
            f"{self.data_dir}/: {self.expected_layout}. Get it from {self.source} and extract it there "
            f"(or point data.root / $SNNBENCH_DATA at the folder that holds {self.registry_key}/)."
        )

    def require_dir(self, path: Path, what: str) -> Path:
        if not path.is_dir():
            raise self.missing(f"{what} {path} does not exist")
        return path

    def prepare_cache(self) -> tuple[SampleIndex, Path]:
        """The sample index and a valid frame cache for it (built if missing or stale, rebuilt with a
        warning if corrupt; a DataError if it cannot be written)."""
        index = self.index()
        if len(index) == 0:
            raise self.missing(f"no samples were found under {self.data_dir}")
        cache = self.cache_path
        fingerprint = index.fingerprint(self.data_dir)
        problem = cache_problem(cache, self.spec, len(index), fingerprint)
        if problem is not None:
            try:
                # One build: the others needing this cache wait for the lock, then find it valid.
                with exclusive(cache.with_name(cache.name + LOCK_SUFFIX), f"the frame cache {cache}"):
                    problem = cache_problem(cache, self.spec, len(index), fingerprint)
                    if problem is not None:
                        self._build(cache, index, fingerprint, problem)
            except OSError as error:
                raise DataError(
                    f"The {self.registry_key} frame cache {cache} {problem}, and it cannot be written there "
                    f"({error.strerror or error}). Make {self.data_dir} writable (with room for the cache), "
                    f"or copy the {self.registry_key}/ folder somewhere writable and point data.root (or "
                    f"$SNNBENCH_DATA) at the folder that holds the copy."
                ) from error
        return index, cache

    def _build(self, cache: Path, index: SampleIndex, fingerprint: str, problem: str) -> None:
        level = logging.WARNING if problem == CORRUPT else logging.INFO
        log.log(level, "The %s frame cache %s %s: (re)building it.", self.registry_key, cache, problem)
        workers = min(4, os.cpu_count() or 1)
        build_frame_cache(cache, index, self.read, self.sensor, self.spec, fingerprint, workers)
        self.cache_built = True

    @property
    def cache_path(self) -> Path:
        """``<root>/<key>/snnbench_cache/<frame spec>/``: this configuration's frame cache."""
        return self.data_dir / CACHE_DIR / self.spec.name

    def prepare_data(self) -> None:
        self.prepare_cache()

    # --- readiness (bench prepare, bench sweep --dry-run) ---------------------------------------------------
    def source_problem(self) -> str | None:
        """What is missing of the source files, from the presence of :attr:`required` alone (quick)."""
        for name in ("", *self.required):
            path = self.data_dir / name
            if not path.exists():
                return f"{path} does not exist"
        return None

    def where_to_get(self) -> str:
        return (
            f"Expected under {self.data_dir}/: {self.expected_layout}. Get it from {self.source} and extract "
            "it there."
        )

    def readiness(self) -> Readiness:
        """Whether the source files and this configuration's frame cache are on disk (file presence only:
        the dry run's check)."""
        problem = self.source_problem()
        if problem is not None:
            return Readiness(self.registry_key, self.data_dir, MISSING, f"{problem}. {self.where_to_get()}")
        cache = self.cache_path
        if cache_looks_built(cache, self.spec):
            size = human_bytes((cache / "frames.npy").stat().st_size)
            return Readiness(self.registry_key, self.data_dir, READY, caches={str(cache): f"ready, {size}"})
        return Readiness(self.registry_key, self.data_dir, NOT_BUILT, caches={str(cache): "not built"})

    def make_ready(self) -> Readiness:
        """Check the source files, build (or verify) this configuration's frame cache and split it; a
        :class:`DataError` says what is missing. ``bench prepare``'s work for one configuration."""
        self.setup()
        cache = self.cache_dir
        size = human_bytes((cache / "frames.npy").stat().st_size)
        sets = (self.train_set, self.val_set, self.test_set)
        counts = " / ".join(f"{len(s):,}" for s in sets) + " train / val / test samples"
        note = f"built now, {size}" if self.cache_built else f"ready, checksums verified, {size}"
        return Readiness(self.registry_key, self.data_dir, READY, counts, caches={str(cache): note})

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        index, self.cache_dir = self.prepare_cache()
        self.samples = index  # sample i of every split's ``indices`` is ``index.paths[i]``
        pool, test = self.split_indices(index)
        train, val = (pool[i] for i in stratified_split(index.labels[pool], self.val_fraction, SPLIT_SEED))
        path = self.cache_dir / "frames.npy"
        self.train_set = FrameDataset(path, train, index.labels)
        self.val_set = FrameDataset(path, val, index.labels)
        self.test_set = FrameDataset(path, test, index.labels)

    def event_counts(self) -> np.ndarray:
        """Events per sample (after downsampling, which drops none), in index order; after ``setup``."""
        return np.load(self.cache_dir / "events.npy")


def numeric_sort_key(path: Path) -> tuple:
    """Sort ``2.bin`` before ``10.bin`` (numeric stems first, then the rest by name)."""
    stem = path.stem.rsplit("_", 1)[-1]
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def list_files(folder: Path, suffix: str) -> list[Path]:
    """Files of ``folder`` ending in ``suffix``, numerically sorted (``os.scandir``: fast on 60,000 files)."""
    with os.scandir(folder) as entries:
        files = [Path(e.path) for e in entries if e.name.endswith(suffix) and e.is_file()]
    return sorted(files, key=numeric_sort_key)
