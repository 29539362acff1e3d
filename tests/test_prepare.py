"""`bench prepare`, the frame-cache lock, the SLURM no-download rule and the dry run's data check (issue 32),
on fixture roots in the datasets' real formats. Nothing is downloaded: a "download" is the fixture writer."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers import REAL_DATASETS, needs_slurm, write_sweep

from bench import cli, registry
from bench.cli import main as bench_main
from bench.errors import DataError
from bench.sweep import wait_for_array
from datamodules import frame_cache, static_images
from datamodules.fixtures.nmnist import write_nmnist
from datamodules.fixtures.tiny_imagenet import write_tiny_imagenet
from datamodules.fixtures.torchvision_sets import md5, with_fixture_md5s, write_mnist
from datamodules.nmnist import NMNIST
from datamodules.readiness import MISSING, NOT_BUILT, READY
from datamodules.tiny_imagenet import TinyImageNet
from datamodules.torchvision_sets import CIFAR10, CIFAR100, MNIST

REPO = Path(__file__).resolve().parents[1]
REAL = REAL_DATASETS  # the embedded two need no fixture
EVENT = ("nmnist", "cifar10_dvs", "dvs_gesture")


@pytest.fixture
def wide(monkeypatch):
    """A console wide enough that no path is folded, so the output can be searched for whole paths."""
    monkeypatch.setattr(cli.console, "width", 2000)
    monkeypatch.setattr(cli.err_console, "width", 2000)


@pytest.fixture
def root(tmp_path, monkeypatch, wide):
    """Fixtures of the eight real datasets under one data root, read by the registered DataModules (the
    CIFAR ones with the fixture files' md5s in place of the originals')."""
    data = tmp_path / "data"
    for key in REAL:
        registry.get_dataset(key).fixture(data)
    for cls, folder in ((CIFAR10, "cifar-10-batches-py"), (CIFAR100, "cifar-100-python")):
        monkeypatch.setattr(
            cls, "tv_class", with_fixture_md5s(cls.tv_class, data / cls.registry_key / folder)
        )
    monkeypatch.setenv("SNNBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("SNNBENCH_LOGS", str(tmp_path / "logs"))
    monkeypatch.setenv("SNNBENCH_DATA", str(tmp_path / "elsewhere"))  # data.root=... must win
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    return data


def said(capsys) -> str:
    out = capsys.readouterr()
    return out.out + out.err


def caches(data: Path) -> dict[str, tuple[int, int]]:
    """Every frame cache under the data root: name -> (inode, mtime) of its frames.npy."""
    found = {}
    for path in sorted(data.glob("*/snnbench_cache/*/frames.npy")):
        st = path.stat()
        found[str(path.parent.relative_to(data))] = (st.st_ino, st.st_mtime_ns)
    return found


# --- bench prepare -------------------------------------------------------------------------------------
def test_prepare_makes_the_eight_datasets_ready_once_and_a_second_call_only_reports(root, capsys):
    assert bench_main(["prepare", *REAL, "mnist5k", f"data.root={root}"]) == 0
    out = said(capsys)
    for key in (*REAL, "mnist5k"):
        assert f"\n{key} ready (" in f"\n{out}", out
    assert "mnist5k ready (embedded, 3,600 / 400 / 1,000 train / val / test samples)" in out
    assert "cifar10 ready (90 / 10 / 20 train / val / test samples" in out
    assert "the md5 of every file checked" in out and "IDX headers checked" in out
    built = caches(root)
    assert sorted(built) == [
        "cifar10_dvs/snnbench_cache/frames-v1-T10-number-48x48",
        "dvs_gesture/snnbench_cache/frames-v1-T16-number-128x128",
        "nmnist/snnbench_cache/frames-v1-T16-number-34x34",
    ]
    for name in built:
        assert f"frame cache {root / name} (built now, " in out
    assert not (root.parent / "elsewhere").exists()

    assert bench_main(["prepare", *REAL, f"data.root={root}"]) == 0
    again = said(capsys)
    assert "built now" not in again and again.count("(ready, checksums verified") == 3
    assert caches(root) == built  # the same files: nothing was built again


def test_prepare_for_a_sweep_builds_every_cache_its_cells_need_once(root, tmp_path, capsys):
    sweep = write_sweep(
        tmp_path,
        "framed",
        "methods: [lif_sg, ann]\ndatasets: [nmnist, dvs_gesture]\nseeds: [0, 1]\n"
        "per_dataset: {dvs_gesture: {data.size: 32}}\n"
        "grid: {data.frames: [2, 4]}\n",
    )
    assert bench_main(["prepare", "--sweep", str(sweep), f"data.root={root}"]) == 0
    out = said(capsys)
    assert sorted(caches(root)) == [
        "dvs_gesture/snnbench_cache/frames-v1-T2-number-32x32",
        "dvs_gesture/snnbench_cache/frames-v1-T4-number-32x32",
        "nmnist/snnbench_cache/frames-v1-T2-number-34x34",
        "nmnist/snnbench_cache/frames-v1-T4-number-34x34",
    ]
    assert out.count("built now") == 4
    for key in ("nmnist", "dvs_gesture"):  # one line per dataset folder, however many configs
        assert out.count(f"\n{key} ready") == 1
    built = caches(root)
    assert bench_main(["prepare", "--sweep", str(sweep), f"data.root={root}"]) == 0
    assert "built now" not in said(capsys) and caches(root) == built


def test_a_removed_dataset_is_named_with_its_layout_and_prepare_exits_1(root, capsys):
    shutil.rmtree(root / "cifar10_dvs" / "airplane")
    shutil.rmtree(root / "mnist")
    code = bench_main(
        ["prepare", "mnist", "nmnist", "cifar10_dvs", f"data.root={root}", "data.download=false"]
    )
    out = said(capsys)
    assert code == 1 and "not ready: mnist, cifar10_dvs" in out
    assert "nmnist ready" in out
    lines = {line.split(" ", 1)[0]: line for line in out.splitlines() if " missing: " in line}
    assert sorted(lines) == ["cifar10_dvs", "mnist"]
    assert f"{root}/cifar10_dvs/airplane does not exist" in lines["cifar10_dvs"]
    assert "<class>/cifar10_<class>_<i>.aedat" in lines["cifar10_dvs"]  # the layout
    assert "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671" in lines["cifar10_dvs"]  # where
    assert f"{root}/mnist/MNIST/raw/train-images-idx3-ubyte is missing" in lines["mnist"]
    assert "train-labels-idx1-ubyte, t10k-images-idx3-ubyte" in lines["mnist"]
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in lines["mnist"]
    assert f"`bench prepare mnist data.root={root} data.download=false`" in lines["mnist"]
    assert "Traceback" not in out


def test_prepare_takes_data_overrides_only_and_needs_a_dataset(root, capsys):
    assert bench_main(["prepare", "mnist", "trainer.max_epochs=3"]) == 1
    assert "data.* overrides only" in said(capsys)
    assert bench_main(["prepare"]) == 1
    assert "Name the datasets to prepare" in said(capsys)
    assert bench_main(["prepare", "mnist", "data.frame=3"]) == 1
    assert "Unknown key data.frame for mnist. Valid data keys: augment," in said(capsys)
    assert bench_main(["prepare", "mnist", "nmnist", "data.frames=3", "data.download=false"]) == 1
    assert "mnist missing" in said(capsys)  # each takes its own keys: mnist is not downloaded


# --- SLURM: nothing downloads ----------------------------------------------------------------------------
def fake_download(monkeypatch) -> list:
    """A download that writes the fixture files where torchvision would (and counts itself); the
    reachability probe is not asked."""
    done = []

    def download(self):
        done.append(self.registry_key)
        write_mnist(self.data_dir, "MNIST")

    monkeypatch.setattr(static_images.StaticImageData, "_download", download)
    return done


def test_a_slurm_task_never_downloads_and_says_which_bench_prepare_to_run(tmp_path, monkeypatch):
    downloads = fake_download(monkeypatch)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    dm = MNIST(root=str(tmp_path), download=True)
    with pytest.raises(DataError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert downloads == [] and not (tmp_path / "mnist").exists()
    assert "runs in SLURM job 4242, where snnbench never downloads" in message
    assert f"run `bench prepare mnist data.root={tmp_path}`" in message
    assert "bench prepare --sweep <sweep>" in message
    assert f"{tmp_path}/mnist/MNIST/raw/train-images-idx3-ubyte is missing" in message

    # `bench prepare` asks for the download explicitly: it fetches even inside a SLURM allocation
    ready = MNIST(root=str(tmp_path), download=True, batch_size=4).make_ready()
    assert downloads == ["mnist"] and ready.state == READY
    assert MNIST(root=str(tmp_path), download=True).prepare_data() is None  # present: nothing to do
    assert downloads == ["mnist"]


def test_a_slurm_task_extracts_an_archive_already_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr(static_images, "probe", lambda *a: pytest.fail("the network was probed"))
    base = write_tiny_imagenet(tmp_path / "staging")
    archive = tmp_path / "tiny_imagenet" / "tiny-imagenet-200.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(base.rglob("*")):
            zipped.write(path, path.relative_to(base.parent))
    cls = type("FixtureTinyImageNet", (TinyImageNet,), {"zip_md5": md5(archive)})
    dm = cls(root=str(tmp_path), batch_size=3)
    assert dm.readiness().state == NOT_BUILT
    dm.prepare_data()  # no download: the zip is here
    assert dm.readiness().state == READY and (archive.parent / "tiny-imagenet-200" / "wnids.txt").is_file()


def test_outside_slurm_a_run_still_downloads_when_data_download_is_true(tmp_path, monkeypatch):
    downloads = fake_download(monkeypatch)
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    MNIST(root=str(tmp_path), download=True).prepare_data()
    assert downloads == ["mnist"] and (tmp_path / "mnist" / "download.lock").exists()


# --- the frame-cache lock ---------------------------------------------------------------------------------
BUILDER = """
import hashlib, json, os, sys, time
from pathlib import Path
from datamodules.nmnist import NMNIST

root, name, log, gate = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])

class Slow(NMNIST):
    registry_key = "nmnist"

    def read(self, path):
        with open(log, "a") as f:  # one line per source file read: counts the builds
            f.write(f"{name} {path.name}\\n")
        (gate.parent / f"{name}.building").touch()
        deadline = time.monotonic() + 600
        while not gate.exists():  # hold the build until the test opens the gate
            assert time.monotonic() < deadline, "the gate never opened"
            time.sleep(0.05)
        return super().read(path)

dm = Slow(root=root, frames=3, val_fraction=0.5)
dm.prepare_data()
dm.setup()
frames = (dm.cache_dir / "frames.npy").read_bytes()
print(json.dumps({"built": dm.cache_built, "sha": hashlib.sha256(frames).hexdigest()}))
"""


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_processes_needing_one_cache_build_it_once_and_read_the_same_frames(tmp_path):
    sources = write_nmnist(tmp_path / "nmnist")
    log, gate = tmp_path / "reads.log", tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def start(name: str) -> subprocess.Popen:
        err = open(tmp_path / f"{name}.err", "w")  # noqa: SIM115 - closed with the process below
        args = [sys.executable, "-c", BUILDER, str(tmp_path), name, str(log), str(gate)]
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True)

    first = start("first")
    wait_for((tmp_path / "first.building").exists, "the first build to start")  # it holds the lock now
    second = start("second")
    waiting = "waiting for the frame cache"
    wait_for(lambda: waiting in (tmp_path / "second.err").read_text(), "the second process to wait")
    gate.touch()  # let the first build finish
    outputs = {}
    for name, process in (("first", first), ("second", second)):
        stdout, _ = process.communicate(timeout=300)
        assert process.returncode == 0, (tmp_path / f"{name}.err").read_text()
        outputs[name] = json.loads(stdout.strip().splitlines()[-1])

    assert outputs["first"]["built"] is True and outputs["second"]["built"] is False
    assert outputs["first"]["sha"] == outputs["second"]["sha"]  # the very same frames
    reads = log.read_text().splitlines()
    assert len(reads) == len(sources) and all(line.startswith("first ") for line in reads)  # one build
    message = (tmp_path / "second.err").read_text()
    cache = tmp_path / "nmnist/snnbench_cache/frames-v1-T3-number-34x34"
    assert (
        f"waiting for the frame cache {cache} being built by another process (pid {first.pid} on " in message
    )
    assert "the other process is done after" in message
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name, f"{cache.name}.lock"]  # no temp


@needs_slurm
def test_a_two_task_slurm_array_sharing_an_unbuilt_cache_builds_it_once(tmp_path):
    """Issue 32's acceptance on real SLURM: both tasks of one array need the same unbuilt frame cache; the
    first holds its build open (the gate) until the other has said that it waits."""
    sources = write_nmnist(tmp_path / "nmnist")
    log, gate, script = tmp_path / "reads.log", tmp_path / "gate", tmp_path / "build.py"
    script.write_text(BUILDER)
    command = f"{sys.executable} {script} {tmp_path} task$SLURM_ARRAY_TASK_ID {log} {gate}"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", "--time=15", f"--chdir={REPO}"]
        + [f"--output={tmp_path}/task%a.out", f"--export=ALL,PYTHONPATH={REPO}", "--wrap", command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    array = submitted.stdout.strip().split(";")[0]
    outputs = [tmp_path / f"task{i}.out" for i in (0, 1)]
    try:
        wait_for(lambda: list(tmp_path.glob("task*.building")), "a task to start building", 600)
        (building,) = tmp_path.glob("task*.building")
        other = outputs[1 - int(building.name[len("task")])]
        waiting = "waiting for the frame cache"
        wait_for(lambda: other.exists() and waiting in other.read_text(), "the other task to wait", 600)
        gate.touch()
        wait_for_array(array)
    finally:
        subprocess.run(["scancel", array])
    results = [json.loads(out.read_text().strip().splitlines()[-1]) for out in outputs]
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["sha"] == results[1]["sha"]
    assert len(log.read_text().splitlines()) == len(sources)  # one build read every file once
    assert "SLURM job" in other.read_text() and "the other process is done after" in other.read_text()


def test_a_build_waits_for_the_lock_then_uses_the_cache_built_meanwhile(tmp_path, monkeypatch, caplog):
    """In one process: the lock held through another open file description (flock conflicts between them
    as between processes) by a 'process' that builds the cache while this one waits."""
    write_nmnist(tmp_path / "nmnist")
    dm = NMNIST(root=str(tmp_path), frames=3)
    cache = dm.cache_path
    cache.parent.mkdir(parents=True)
    holder = os.open(f"{cache}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    owner = {"host": "node7", "pid": 99, "slurm_job": "55_1", "since": "noon"}
    os.pwrite(holder, json.dumps(owner).encode(), 0)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the holder finishes its build and lets go
            other = NMNIST(root=str(tmp_path), frames=3)
            index = other.index()
            fingerprint = index.fingerprint(other.data_dir)
            frame_cache.build_frame_cache(cache, index, other.read, other.sensor, other.spec, fingerprint)
            fcntl.flock(holder, fcntl.LOCK_UN)

    monkeypatch.setattr(frame_cache.time, "sleep", sleep)
    try:
        with caplog.at_level(logging.INFO, logger="datamodules"):
            dm.prepare_data()
    finally:
        os.close(holder)
    assert dm.cache_built is False and len(sleeps) == 2
    assert (
        f"waiting for the frame cache {cache} being built by another process (pid 99 on node7, SLURM job "
        "55_1, since noon) ..." in caplog.text
    )
    assert "(re)building" not in caplog.text  # checked again under the lock: built meanwhile, kept
    assert os.path.getsize(f"{cache}.lock") == 0  # the owner line is cleared when the lock is let go


def test_without_file_locks_the_cache_is_built_with_a_warning(tmp_path, monkeypatch, caplog):
    write_nmnist(tmp_path / "nmnist")

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(frame_cache.fcntl, "flock", refuse)
    dm = NMNIST(root=str(tmp_path), frames=3, val_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="datamodules"):
        dm.setup()
    assert dm.cache_built and "cannot lock files" in caplog.text and "bench prepare" in caplog.text
    assert dm.event_counts().sum() > 0


# --- the dry run's data check ------------------------------------------------------------------------------
def test_dry_run_says_per_dataset_whether_its_data_is_ready(root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SNNBENCH_DATA", str(root))
    shutil.rmtree(root / "cifar10")
    sweep = write_sweep(tmp_path, "mixed", "methods: [ann]\ndatasets: [mnist5k, nmnist, cifar10]\n")

    def dry_run() -> tuple[dict[str, str], str]:
        assert bench_main(["sweep", str(sweep), "--dry-run"]) == 0
        out = said(capsys)
        lines = [line.removeprefix("data: ") for line in out.splitlines() if line.startswith("data: ")]
        return {line.split(" ", 1)[0]: line for line in lines}, out

    data, out = dry_run()
    assert list(data) == ["mnist5k", "nmnist", "cifar10"]
    assert out.index("data: mnist5k") < out.index("sweep mixed: 3 cells, in order")  # above the table
    assert "method" in out and "pending" in out  # the cell table as before
    assert data["mnist5k"] == "mnist5k ready (embedded)"
    cache = root / "nmnist/snnbench_cache/frames-v1-T16-number-34x34"
    assert data["nmnist"].startswith(f"nmnist not built: frame cache {cache} (not built). ")
    command = f"bench prepare --sweep mixed data.root={root}"
    assert f"`{command}` builds it once" in data["nmnist"]
    assert data["cifar10"].startswith(f"cifar10 missing: {root}/cifar10/cifar-10-batches-py/data_batch_1 is ")
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in data["cifar10"]
    assert f"`{command}` on a machine with internet, which downloads it" in data["cifar10"]
    assert not caches(root)  # the check built nothing

    assert bench_main(["prepare", "--sweep", str(sweep), "data.download=false"]) == 1  # cifar10: not here
    assert bench_main(["prepare", "nmnist"]) == 0
    said(capsys)
    data, _ = dry_run()
    assert data["nmnist"] == f"nmnist ready; frame cache {cache} (ready, {human(cache)})"


def human(cache: Path) -> str:
    from datamodules.readiness import human_bytes

    return human_bytes((cache / "frames.npy").stat().st_size)


def test_quick_check_states_of_a_static_set(tmp_path):
    dm = MNIST(root=str(tmp_path))
    assert dm.readiness().state == MISSING and dm.readiness().downloadable
    assert MNIST(root=str(tmp_path), download=False).readiness().downloadable is False
    write_mnist(tmp_path / "mnist", "MNIST")
    assert dm.readiness().state == READY
    for path in list((tmp_path / "mnist/MNIST/raw").iterdir()):  # only the downloaded .gz archives left
        path.with_name(path.name + ".gz").write_bytes(b"")
        path.unlink()
    item = dm.readiness()
    assert item.state == NOT_BUILT and "not extracted yet" in item.detail
