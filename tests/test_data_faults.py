"""Data-layer faults of issue 16, each reproduced the way a user hit it: garbage inside a cached
``frames.npy``, a cache build killed with SIGKILL, a read-only data folder, a deleted or truncated
nmnist_sim ``.bin``. Fixtures are the real on-disk formats (see test_datamodules_events.py)."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import items

from bench.errors import DataError
from datamodules import frame_cache, nmnist_sim
from datamodules.fixtures.nmnist import nmnist_record, write_nmnist
from datamodules.frame_cache import HOST, remove_orphans
from datamodules.mnist5k import load_mnist5k
from datamodules.nmnist import NMNIST
from datamodules.nmnist_sim import NMNISTSim

REPO = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped), as a killed build's pid is."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def read_only_mount(monkeypatch, folder: Path) -> None:
    """Make every mkdir under ``folder`` fail as on a read-only mount (EROFS). chmod would not do: the
    tests may run as root, whom permission bits do not stop."""
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.is_relative_to(folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


# --- 6: frame cache ------------------------------------------------------------------------------------
def test_garbage_inside_a_cached_frames_file_is_rebuilt_with_a_warning(tmp_path, caplog):
    truth = write_nmnist(tmp_path / "nmnist")
    NMNIST(root=str(tmp_path), frames=3, val_fraction=0.5).setup()
    path = tmp_path / "nmnist/snnbench_cache/frames-v1-T3-number-34x34/frames.npy"
    size = path.stat().st_size
    frames = np.load(path, mmap_mode="r+")  # overwrite the contents; header and size stay intact
    frames[:] = 0
    frames.flush()
    del frames
    assert path.stat().st_size == size and np.load(path, mmap_mode="r").shape == (30, 3, 2, 34, 34)

    dm = NMNIST(root=str(tmp_path), frames=3, val_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="datamodules.event_frames"):
        dm.setup()
    assert "frames-v1-T3-number-34x34 is corrupt (its arrays no longer match the checksums" in caplog.text
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        for source, x, _ in items(dm, dataset):
            assert x.sum() == len(truth[source])  # the rebuilt frames, not the zeros
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="datamodules.event_frames"):
        NMNIST(root=str(tmp_path), frames=3, val_fraction=0.5).setup()
    assert not [r for r in caplog.records if r.name == "datamodules.event_frames"]  # sound: used as it is


def test_a_build_killed_with_sigkill_leaves_a_folder_that_the_next_build_removes(tmp_path):
    write_nmnist(tmp_path / "nmnist")
    killed = (
        "import os, signal, sys\n"
        "from datamodules.nmnist import NMNIST\n"
        "class Killed(NMNIST):\n"
        "    def read(self, path):  # frames.npy is allocated: die like kill -9 mid-build\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "Killed(root=sys.argv[1], frames=3).prepare_data()\n"
    )
    result = subprocess.run([sys.executable, "-c", killed, str(tmp_path)], cwd=REPO, timeout=300)
    assert result.returncode == -signal.SIGKILL
    cache_dir = tmp_path / "nmnist/snnbench_cache"
    (leftover,) = cache_dir.glob("frames-v1-T3-number-34x34.tmp-*")
    assert (leftover / "frames.npy").stat().st_size > 30 * 3 * 2 * 34 * 34

    dm = NMNIST(root=str(tmp_path), frames=4, val_fraction=0.5)  # the next build, of any cache
    dm.setup()
    left = sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(frame_cache.LOCK_SUFFIX))
    assert left == ["frames-v1-T4-number-34x34"]  # the build locks stay: removing one could split a lock
    assert dm.event_counts().sum() > 0


def test_only_temporary_folders_whose_owner_is_gone_are_removed(tmp_path):
    gone = dead_pid()
    day = time.time() - frame_cache.ORPHAN_AGE_S - 60
    names = {
        f"frames-v1-T4-number-34x34.tmp-{HOST}-{gone}": False,  # this host, pid gone: orphan
        f"frames-v1-T4-number-34x34.tmp-{HOST}-{os.getpid()}": True,  # this host, owner alive
        f"frames-v1-T2-time-34x34.tmp-node-17.cluster-{gone}": True,  # another node, fresh
        "frames-v1-T2-time-34x34.tmp-node-17.cluster-42": False,  # another node, a day old
        "frames-v1-T8-time-34x34.tmp-4242": False,  # named by an older version, a day old
        "frames-v1-T4-number-34x34": True,  # a cache
    }
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "frames.npy").write_bytes(b"\x93NUMPY")
    for name in ("frames-v1-T2-time-34x34.tmp-node-17.cluster-42", "frames-v1-T8-time-34x34.tmp-4242"):
        for path in (tmp_path / name / "frames.npy", tmp_path / name):
            os.utime(path, (day, day))
    remove_orphans(tmp_path, frame_cache.TMP_MARK)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, kept in names.items() if kept)


@pytest.mark.parametrize("problem", ["stale", "corrupt", "missing"])
def test_a_cache_that_cannot_be_written_is_a_data_error_saying_what_to_do(tmp_path, monkeypatch, problem):
    write_nmnist(tmp_path / "nmnist")
    if problem != "missing":
        NMNIST(root=str(tmp_path), frames=3).prepare_data()
    if problem == "stale":  # a source file changed since the cache was built
        os.utime(tmp_path / "nmnist/Test/3/00030.bin", ns=(1, 1))
    if problem == "corrupt":
        frames = np.load(
            tmp_path / "nmnist/snnbench_cache/frames-v1-T3-number-34x34/frames.npy", mmap_mode="r+"
        )
        frames[0] = 7
        frames.flush()
        del frames
    read_only_mount(monkeypatch, tmp_path / "nmnist")
    folder = tmp_path / "nmnist"
    with pytest.raises(DataError) as error:
        NMNIST(root=str(tmp_path), frames=3).prepare_data()
    message = str(error.value)
    assert f"frame cache {folder}/snnbench_cache/frames-v1-T3-number-34x34 " in message
    assert {"stale": "is stale", "corrupt": "is corrupt", "missing": "has not been built"}[problem] in message
    assert "Read-only file system" in message
    assert f"Make {folder} writable" in message and "point data.root (or $SNNBENCH_DATA)" in message


# --- 7, 8: nmnist_sim files ----------------------------------------------------------------------------
@pytest.fixture
def sim_digits(monkeypatch):
    """nmnist_sim from 50 mnist5k digits (5 per class, so every Test/ class holds one): seconds, same code."""
    images, labels = load_mnist5k()
    keep = np.concatenate([np.flatnonzero(labels == c)[:5] for c in range(10)])
    monkeypatch.setattr(nmnist_sim, "load_mnist5k", lambda: (images[keep], labels[keep]))
    return labels[keep]


def test_a_deleted_nmnist_sim_file_is_a_data_error_naming_it(tmp_path, sim_digits):
    folder = tmp_path / "nmnist_sim"
    NMNISTSim(root=str(tmp_path)).prepare_data()
    files = nmnist_sim.layout(sim_digits)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*/*.bin")) == sorted(files)
    (folder / files[7]).unlink()
    with pytest.raises(DataError) as error:
        NMNISTSim(root=str(tmp_path)).setup()
    message = str(error.value)
    assert "generator.json records 50 recordings, and 49 .bin files were found" in message
    assert f"1 missing, e.g. {folder / files[7]}." in message
    assert f"delete the folder {folder} and the next run regenerates it" in message
    assert "garrickorchard" not in message
    (folder / "Train/3/00099.bin").write_bytes(nmnist_record(1, 1, 1, 1))  # 50 files again, one stray
    with pytest.raises(DataError, match=r"1 missing, e\.g\. .*; 1 not made by the generator, e\.g\. .*00099"):
        NMNISTSim(root=str(tmp_path)).setup()


def test_a_truncated_file_says_regenerate_for_nmnist_sim_and_reextract_for_nmnist(tmp_path, sim_digits):
    folder = tmp_path / "nmnist_sim"
    NMNISTSim(root=str(tmp_path)).prepare_data()
    path = folder / nmnist_sim.layout(sim_digits)[3]
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(DataError) as error:
        NMNISTSim(root=str(tmp_path), frames=2).prepare_data()
    message = str(error.value)
    assert f"{path} is truncated or corrupt" in message
    assert f"delete the folder {folder} and the next run regenerates it" in message
    assert "official N-MNIST archive" not in message
    write_nmnist(tmp_path / "nmnist")
    (tmp_path / "nmnist/Test/3/00030.bin").write_bytes(nmnist_record(1, 1, 1, 1) + b"\x01\x02")
    with pytest.raises(DataError, match=r"00030\.bin is truncated.*Re-extract it from the official N-MNIST"):
        NMNIST(root=str(tmp_path)).prepare_data()


def test_an_empty_recording_is_an_error_naming_it_not_a_blank_sample(tmp_path, sim_digits):
    folder = tmp_path / "nmnist_sim"
    NMNISTSim(root=str(tmp_path)).prepare_data()
    path = folder / nmnist_sim.layout(sim_digits)[5]
    path.write_bytes(b"")
    with pytest.raises(DataError) as error:
        NMNISTSim(root=str(tmp_path), frames=2).prepare_data()
    message = str(error.value)
    assert f"{path} holds no event (0 bytes): a truncated or failed copy." in message
    assert f"delete the folder {folder} and the next run regenerates it" in message


def test_a_killed_generation_is_cleaned_up_by_the_next(tmp_path, sim_digits):
    orphan = tmp_path / "nmnist_sim" / f"{nmnist_sim.GENERATING}{HOST}-{dead_pid()}"
    (orphan / "Train" / "0").mkdir(parents=True)
    (orphan / "Train" / "0" / "00000.bin").write_bytes(nmnist_record(1, 1, 1, 1))
    NMNISTSim(root=str(tmp_path)).prepare_data()
    assert not orphan.exists()


def test_nmnist_warns_when_its_splits_are_not_the_official_sizes(tmp_path, caplog):
    write_nmnist(tmp_path / "nmnist")
    with caplog.at_level(logging.WARNING, logger="datamodules.nmnist"):
        NMNIST(root=str(tmp_path)).prepare_data()
    assert "holds 20 Train / 10 Test recordings, not the official 60,000 / 10,000" in caplog.text
