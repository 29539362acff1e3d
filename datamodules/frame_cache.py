"""The on-disk frame cache of the event datasets: built once, checksummed, rebuilt when stale or corrupt.

All samples' frames ``[T, 2, H, W]`` (event counts; channel 0 OFF, 1 ON) are stored in one memory-mapped
``.npy`` under ``<root>/<key>/snnbench_cache/frames-v<reader>-T<frames>-<split_by>-<H>x<W>/``. The path
encodes every parameter that changes the frames, and ``meta.json`` holds a fingerprint of the source
files (name, size, mtime, time window), so a changed T, reader or data never serves stale frames, and
checksums of the cached arrays, verified whenever the cache is opened, so garbage written into a cache is
rebuilt (with a warning) instead of being trained on. The cache is built in a temporary folder and
renamed into place; a build killed outright (kill -9, a lost node) leaves that folder behind, and the
next build removes it once its owner is gone (:func:`remove_orphans`, also used by generated datasets).

One build at a time: a process that finds a cache missing, stale or corrupt takes an exclusive
``flock`` on ``<cache>.lock`` beside it (:func:`exclusive`) and looks again before building, so the other
tasks of a SLURM array that need the same cache wait (saying so, and for whom) and then use the cache the
first one built. ``flock`` is released by the kernel (on NFS by the server, once the client's lease ends)
when its holder dies, so a crashed build leaves no stale lock; it works across the nodes of NFSv4, GPFS and
Lustre mounted with ``-o flock``. Where the file system refuses locks, a warning says so and the process
builds without one: a duplicate build wastes time but is still safe (private temporary folder, atomic
rename), and ``bench prepare`` builds every cache once before a sweep anyway.
The DataModule side (splits, loaders, error messages) is :mod:`datamodules.event_frames`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.claims import slurm_job
from bench.errors import DataError
from bench.processes import pid_alive
from bench.progress import Phase
from datamodules.events import READER_VERSION, Events, downsample, events_to_frames

log = logging.getLogger(__name__)

CACHE_DIR = "snnbench_cache"
TMP_MARK = ".tmp-"  # a cache being built: <cache name>.tmp-<host>-<pid>
ORPHAN_AGE_S = 24 * 3600  # a temporary folder untouched this long is an orphan whatever its owner
HOST = socket.gethostname()
CHECKSUMMED = ("frames.npy", "events.npy")
#: Why a cache cannot be used as it is (the phrases end up in log lines and error messages).
MISSING = "has not been built yet (or its build was interrupted)"
STALE = "is stale (built from other source files, frame settings or snnbench version)"
CORRUPT = "is corrupt (its arrays no longer match the checksums written when it was built)"
LOCK_SUFFIX = ".lock"  # <cache name>.lock beside the cache: held while it is built
LOCK_POLL_S = 2.0  # a waiting process tries the lock this often
LOCK_NOTE_S = 300.0  # and says that it still waits this often
#: What flock raises where the file system does not support it (Lustre without -o flock, some FUSE).
NO_LOCKS = frozenset({errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})


@dataclass
class SampleIndex:
    """What the dataset holds, found without reading any events.

    ``paths[i]`` is sample i's source file; ``windows[i]`` (optional) its ``[start, end)`` µs time window
    inside that file (DVS128 Gesture: one sample per label-CSV row); ``labels[i]`` its class;
    ``test[i]`` whether it belongs to the official test set (None: the dataset has no official split).
    """

    paths: list[Path]
    labels: np.ndarray
    windows: np.ndarray | None = None
    test: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self, base: Path) -> str:
        """Hash of every source file's relative name, size and mtime, and of the time windows."""
        digest = hashlib.sha256()
        stats: dict[Path, str] = {}
        for i, path in enumerate(self.paths):
            if path not in stats:
                st = path.stat()
                stats[path] = f"{path.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}"
            window = "" if self.windows is None else f"\t{self.windows[i][0]}\t{self.windows[i][1]}"
            digest.update(f"{stats[path]}{window}\n".encode())
        return digest.hexdigest()


def _groups(index: SampleIndex) -> list[tuple[Path, list[int]]]:
    """Samples grouped by source file (in first-seen order), so each file is read once."""
    groups: dict[Path, list[int]] = {}
    for i, path in enumerate(index.paths):
        groups.setdefault(path, []).append(i)
    return list(groups.items())


class _Overflow(Exception):
    """A frame cell needs a wider integer than the cache's dtype."""


@dataclass(frozen=True)
class FrameSpec:
    """Everything that changes the frames; its ``name`` is the cache folder."""

    frames: int
    split_by: str
    height: int
    width: int
    reader_version: int = READER_VERSION

    @property
    def name(self) -> str:
        return f"frames-v{self.reader_version}-T{self.frames}-{self.split_by}-{self.height}x{self.width}"

    def as_dict(self) -> dict:
        return {
            "frames": self.frames,
            "split_by": self.split_by,
            "height": self.height,
            "width": self.width,
            "reader_version": self.reader_version,
        }


def owner_tag() -> str:
    """``<host>-<pid>``: names a temporary folder after its owner, so :func:`remove_orphans` can tell
    when the owner is gone."""
    return f"{HOST}-{os.getpid()}"


def _holder(fd: int) -> str:
    """Who holds the lock, as its holder wrote it into the lock file."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"null")
        text = f"pid {owner['pid']} on {owner['host']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "owner not known yet"
    if owner.get("slurm_job"):
        text += f", SLURM job {owner['slurm_job']}"
    return text + f", since {owner.get('since', '?')}"


def _acquire(fd: int, lock: Path, what: str, doing: str) -> bool:
    """Take the exclusive lock on ``fd``, waiting (and saying so) while another process holds it; False
    where the file system cannot lock files."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError as error:
        if error.errno not in NO_LOCKS:
            raise
        log.warning(
            "The file system of %s cannot lock files (%s): %s is %s without a lock, so other processes "
            "starting now may build it too (each in its own temporary folder; the result is the same). "
            "Run `bench prepare` before a sweep to build it once.",
            lock,
            error.strerror or error,
            what,
            doing,
        )
        return False
    start = time.monotonic()
    log.warning("waiting for %s being %s by another process (%s) ...", what, doing, _holder(fd))
    said = start
    while True:
        time.sleep(LOCK_POLL_S)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() - said >= LOCK_NOTE_S:
                said = time.monotonic()
                minutes = (said - start) / 60
                log.warning("still waiting for %s (%.0f min so far; %s)", what, minutes, _holder(fd))
    log.warning("%s: the other process is done after %.0f s; going on", what, time.monotonic() - start)
    return True


@contextlib.contextmanager
def exclusive(lock: Path, what: str, doing: str = "built") -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created if needed, never removed: removing a lock
    file others may hold open would let two processes lock two different files) while ``what`` is being
    ``doing``. Another process holding it is waited for, with a message naming it (pid, host, SLURM job),
    every :data:`LOCK_NOTE_S`. The caller checks again, inside, whether the work is still needed. Where
    the file system cannot lock, a warning and no lock (see the module docstring)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, writable = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:  # another user's lock file in a shared data root: locking needs no writing
        fd, writable = os.open(lock, os.O_RDONLY), False
    try:
        if _acquire(fd, lock, what, doing) and writable:
            since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            owner = {"host": HOST, "pid": os.getpid(), "slurm_job": slurm_job(), "since": since}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
        else:
            yield
    finally:
        os.close(fd)  # releases the lock


def cache_looks_built(cache: Path, spec: FrameSpec) -> bool:
    """Whether ``cache`` holds a finished cache of ``spec``, from its ``meta.json`` and the presence of its
    arrays alone (no array is read, nothing is hashed): the quick check of ``bench sweep --dry-run``. Its
    source fingerprint and checksums are verified when a run opens it (:func:`cache_problem`)."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(meta, dict)
        and meta.get("spec") == spec.as_dict()
        and all((cache / name).is_file() for name in CHECKSUMMED)
    )


def _last_write(path: Path) -> float:
    """The newest mtime of ``path`` and its entries (now, if it changes while we look)."""
    try:
        return max(p.stat().st_mtime for p in (path, *path.iterdir()))
    except OSError:
        return time.time()


def remove_orphans(folder: Path, mark: str, max_age_s: float = ORPHAN_AGE_S) -> None:
    """Delete the temporary folders ``<...><mark><host>-<pid>`` in ``folder`` whose owner is gone.

    A build killed outright (kill -9, OOM killer, a lost node) cannot clean up after itself, and its
    partial output can be as large as the cache. A folder is an orphan when its host is this machine and
    its pid no longer runs, or when nothing in it changed for ``max_age_s`` (24 h: no build takes that
    long; this covers owners on other nodes of a shared file system, where their pids mean nothing here,
    reused pids, and folders named by older versions without a host).
    """
    try:
        candidates = [p for p in folder.iterdir() if mark in p.name and p.is_dir()]
    except OSError:
        return
    for path in candidates:
        host, _, pid = path.name.rpartition(mark)[2].rpartition("-")
        dead = host == HOST and pid.isdigit() and not pid_alive(int(pid))
        if dead or time.time() - _last_write(path) > max_age_s:
            log.warning("Removing %s, left behind by an interrupted build", path)
            shutil.rmtree(path, ignore_errors=True)


def checksums(folder: Path) -> dict[str, str]:
    """blake2b digests of the cached arrays (:data:`CHECKSUMMED`), written at build time and verified
    each time the cache is opened.

    Hashing the memory-mapped bytes reads each file once, without a copy and with the GIL released, at
    roughly 0.8 GB/s per core: 0.1 s for nmnist_sim's cache, about 3 s for N-MNIST at T = 16. That is
    less than one epoch spends reading and converting the same frames, and it is what stops a cache
    whose contents were overwritten (header and size intact) from being trained on silently.
    """
    digests = {}
    for name in CHECKSUMMED:
        with open(folder / name, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            digests[name] = hashlib.blake2b(data).hexdigest()
    return digests


def cache_problem(cache: Path, spec: FrameSpec, samples: int, fingerprint: str) -> str | None:
    """Why the cache cannot be used as it is (:data:`MISSING`, :data:`STALE` or :data:`CORRUPT`); None if
    it can. The checksums are only computed once everything cheaper matched."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        shape = np.load(cache / "frames.npy", mmap_mode="r").shape
        if (
            meta.get("spec") != spec.as_dict()
            or meta.get("fingerprint") != fingerprint
            or shape != (samples, spec.frames, 2, spec.height, spec.width)
            or "checksums" not in meta
        ):
            return STALE
        return None if checksums(cache) == meta["checksums"] else CORRUPT
    except (OSError, ValueError):
        return MISSING


def build_frame_cache(
    cache: Path,
    index: SampleIndex,
    read: Callable[[Path], Events],
    sensor: tuple[int, int],
    spec: FrameSpec,
    fingerprint: str,
    workers: int = 2,
) -> None:
    """Read every sample, integrate it into frames and write ``frames.npy``, ``events.npy``, ``meta.json``
    (with the arrays' checksums). Orphaned temporary folders of killed builds are removed first. Says what
    it builds and where, how far it got (at most every 30 s) and how long it took (:mod:`bench.progress`)."""
    files = len(set(index.paths))
    phase = Phase("frame cache")
    phase.start(
        f"building the frames of {len(index)} samples from {files} files ({spec.frames} frames by "
        f"{spec.split_by}, {spec.height}x{spec.width}) in {cache}"
    )
    remove_orphans(cache.parent, TMP_MARK)
    tmp = cache.with_name(f"{cache.name}{TMP_MARK}{owner_tag()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for dtype in (np.uint16, np.uint32):
            try:
                _write_frames(tmp, index, read, sensor, spec, dtype, workers, phase)
                break
            except _Overflow:
                continue
        else:
            raise DataError(f"A frame of {cache} would hold over 2**32 events in one pixel: corrupt data?")
        meta = {
            "spec": spec.as_dict(),
            "samples": len(index),
            "fingerprint": fingerprint,
            "checksums": checksums(tmp),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(cache, ignore_errors=True)
        try:
            tmp.rename(cache)
        except OSError:  # another process finished the same cache first: keep theirs
            if not cache.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in cache.iterdir() if f.is_file())
    phase.end(f"built {cache}", f" ({size / 2**20:.1f} MiB)")


def _integrate_group(group, index, read, sensor, spec) -> list[tuple[int, np.ndarray]]:
    path, samples = group
    events = read(path)
    if spec.height != sensor[0] or spec.width != sensor[1]:
        events = downsample(events, sensor, (spec.height, spec.width))
    out = []
    for i in samples:
        sample = events
        if index.windows is not None:
            start, end = index.windows[i]
            sample = events.select((events.t >= start) & (events.t < end))
        out.append((i, events_to_frames(sample, spec.frames, spec.split_by, spec.height, spec.width)))
    return out


def _integrated(index, read, sensor, spec, workers) -> Iterator[tuple[int, np.ndarray]]:
    """Frames of every sample in file order; a few files are read ahead on worker threads."""
    groups = _groups(index)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for group in groups:
            pending.append(pool.submit(_integrate_group, group, index, read, sensor, spec))
            if len(pending) >= 4 * max(1, workers):
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _write_frames(tmp: Path, index, read, sensor, spec, dtype, workers, phase: Phase) -> None:
    shape = (len(index), spec.frames, 2, spec.height, spec.width)
    frames = np.lib.format.open_memmap(tmp / "frames.npy", mode="w+", dtype=dtype, shape=shape)
    counts = np.zeros(len(index), dtype=np.int64)
    limit, peak = np.iinfo(dtype).max, 0
    files, files_done, previous = len(set(index.paths)), 0, None
    for done, (i, sample) in enumerate(_integrated(index, read, sensor, spec, workers), 1):
        if index.paths[i] != previous:  # a file's samples come one after another
            files_done, previous = files_done + 1, index.paths[i]
        top = int(sample.max()) if sample.size else 0
        if top > limit:
            raise _Overflow
        peak = max(peak, top)
        frames[i] = sample
        counts[i] = int(sample.sum())
        phase.tick(f"{files_done}/{files} files read, {done}/{len(index)} samples")
    frames.flush()
    del frames
    if peak <= np.iinfo(np.uint8).max:  # most datasets: halve the cache
        wide = np.load(tmp / "frames.npy", mmap_mode="r")
        narrow = np.lib.format.open_memmap(tmp / "frames8.npy", mode="w+", dtype=np.uint8, shape=shape)
        for start in range(0, len(index), 1024):
            narrow[start : start + 1024] = wide[start : start + 1024]
        narrow.flush()
        del narrow, wide
        os.replace(tmp / "frames8.npy", tmp / "frames.npy")
    np.save(tmp / "events.npy", counts)
