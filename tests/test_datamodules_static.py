"""Static DataModules on tiny fixtures written in the real on-disk formats, read by the real loaders.

MNIST/Fashion-MNIST: the four IDX files with big-endian headers. CIFAR: latin1-readable pickled batches
plus the meta file, read by torchvision's own classes subclassed with the fixture files' md5s (the
recommended way round their hard-coded md5 checks). Tiny ImageNet: the official zip's tree with small
PIL-written JPEGs. Nothing is downloaded: the download tests either need the (absent) internet or talk to a
local server that never answers, so they fail within seconds. mnist5k (the embedded digits): its k-fold
cross-validation splits (its fixed split is checked with the runs in test_training.py).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import urllib.request
import zipfile

import numpy as np
import pytest
import torch
from helpers import QUICK
from torchvision import datasets
from torchvision.transforms import v2

from bench import registry
from bench.config import load_config
from bench.errors import ConfigError, DataError
from bench.results import predictions
from bench.runner import run
from datamodules.base import stratified_split
from datamodules.fixtures.tiny_imagenet import COLOURS, WNIDS, write_tiny_imagenet
from datamodules.fixtures.torchvision_sets import (
    fixture_datamodule,
    md5,
    write_cifar10,
    write_cifar100,
    write_mnist,
)
from datamodules.mnist5k import MNIST5k, load_mnist5k
from datamodules.static_images import SPLIT_SEED, probe
from datamodules.tiny_imagenet import TinyImageNet
from datamodules.torchvision_sets import CIFAR10, CIFAR100, MNIST, FashionMNIST

STATIC = {
    "mnist": MNIST,
    "fashion_mnist": FashionMNIST,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "tiny_imagenet": TinyImageNet,
}


MNISTS = [(MNIST, "MNIST", 0.1307, 0.3081), (FashionMNIST, "FashionMNIST", 0.2860, 0.3530)]


@pytest.fixture(autouse=True)
def outside_slurm(monkeypatch):
    """The download paths as outside a SLURM job, even when the tests run in one (inside, nothing is
    downloaded at all: tests/test_prepare.py)."""
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("cls", "class_name", "mean", "std"), MNISTS, ids=["mnist", "fashion_mnist"])
def test_idx_sets_load_split_and_normalise(tmp_path, cls, class_name, mean, std):
    written = write_mnist(tmp_path / cls.registry_key, class_name)
    dm = cls(root=str(tmp_path), batch_size=4, val_fraction=0.25)
    dm.prepare_data()  # files present: nothing to download
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 10)
    # Stratified: one of the four training digits of every class is held out.
    val_labels = np.array([int(dm.val_set[i][1]) for i in range(len(dm.val_set))])
    assert np.bincount(val_labels, minlength=10).tolist() == [1] * 10
    assert not set(dm.val_set.indices) & set(dm.train_set.indices)
    # Evaluation images are the written pixels, scaled to [0, 1] and normalised; labels are the written ones.
    for i in range(len(dm.val_set)):
        image, label = dm.val_set[i]
        j = dm.val_set.indices[i]
        assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
        expected = (torch.from_numpy(written["train_x"][j]).float() / 255 - mean) / std
        torch.testing.assert_close(image[0], expected)
        assert int(label) == written["train_y"][j]
    image, label = dm.test_set[3]
    torch.testing.assert_close(image[0], (torch.from_numpy(written["test_x"][3]).float() / 255 - mean) / std)
    assert int(label) == written["test_y"][3]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, *dm.input_shape) and x.dtype == torch.float32 and y.dtype == torch.int64
    # MNIST-style augmentation: random crop of the 2-pixel padded digit, no flip.
    train_tf, _ = dm.transforms()
    crops = [t for t in train_tf.transforms if isinstance(t, v2.RandomCrop)]
    assert len(crops) == 1 and crops[0].padding == [2, 2, 2, 2]
    assert not any(isinstance(t, v2.RandomHorizontalFlip) for t in train_tf.transforms)


def test_split_is_fixed_whatever_the_run_seed(tmp_path):
    write_mnist(tmp_path / "mnist", "MNIST")
    splits = []
    for seed in (0, 123):
        torch.manual_seed(seed)
        np.random.seed(seed)
        dm = MNIST(root=str(tmp_path), val_fraction=0.25)
        dm.setup()
        splits.append((dm.train_set.indices.tolist(), dm.val_set.indices.tolist()))
    assert splits[0] == splits[1]


def test_without_augmentation_train_images_are_only_normalised(tmp_path):
    written = write_mnist(tmp_path / "mnist", "MNIST")
    dm = MNIST(root=str(tmp_path), val_fraction=0.25, augment=False)
    dm.setup()
    image, _ = dm.train_set[0]
    expected = (torch.from_numpy(written["train_x"][dm.train_set.indices[0]]).float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(image[0], expected)


@pytest.mark.parametrize(
    ("name", "damage", "says"),
    [
        (
            "train-images-idx3-ubyte",
            lambda b: b[:-100],
            "holds 31,276 bytes but its header (40, 28, 28) needs 31,376",
        ),
        ("t10k-labels-idx1-ubyte", lambda b: b"\x00\x00\x08\x03" + b[4:], "IDX magic number 2049"),
    ],
    ids=["truncated", "wrong-magic"],
)
def test_corrupt_idx_file_is_named(tmp_path, name, damage, says):
    write_mnist(tmp_path / "mnist", "MNIST")
    path = tmp_path / "mnist" / "MNIST" / "raw" / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as info:
        MNIST(root=str(tmp_path)).setup()
    assert str(path) in str(info.value) and says in str(info.value)


CIFARS = [
    (CIFAR10, write_cifar10, datasets.CIFAR10, "labels"),
    (CIFAR100, write_cifar100, datasets.CIFAR100, "fine_labels"),
]


@pytest.mark.parametrize(("cls", "write", "tv_class", "key"), CIFARS, ids=["cifar10", "cifar100"])
def test_cifar_sets_load_split_and_normalise(tmp_path, cls, write, tv_class, key):
    folder, written = write(tmp_path / cls.registry_key)
    dm = fixture_datamodule(cls, tv_class, folder)(root=str(tmp_path), batch_size=8, val_fraction=0.5)
    dm.prepare_data()
    dm.setup()
    n_train, n_test = (100, 20) if cls is CIFAR10 else (200, 100)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (n_train // 2, n_train // 2, n_test)
    train_labels = np.concatenate([written[name][key] for name, _ in tv_class.train_list])
    train_rows = np.concatenate([written[name]["data"] for name, _ in tv_class.train_list])
    val_labels = np.array([int(dm.val_set[i][1]) for i in range(len(dm.val_set))])
    per_class = np.bincount(train_labels, minlength=dm.num_classes) // 2
    assert np.bincount(val_labels, minlength=dm.num_classes).tolist() == per_class.tolist()
    mean, std = torch.tensor(cls.mean).view(3, 1, 1), torch.tensor(cls.std).view(3, 1, 1)
    for i in (0, len(dm.val_set) - 1):
        image, label = dm.val_set[i]
        j = dm.val_set.indices[i]
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
        # Plane order R, G, B and row-major 32x32 within each plane, as in the original batches.
        expected = (torch.from_numpy(train_rows[j].reshape(3, 32, 32)).float() / 255 - mean) / std
        torch.testing.assert_close(image, expected)
        assert int(label) == train_labels[j]  # the fine label for CIFAR-100, not the coarse one
    test_name = tv_class.test_list[0][0]
    assert int(dm.test_set[5][1]) == written[test_name][key][5]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64
    train_tf, _ = dm.transforms()
    kinds = [type(t) for t in train_tf.transforms]
    assert kinds[:2] == [v2.RandomCrop, v2.RandomHorizontalFlip] and train_tf.transforms[0].padding == [4] * 4


def test_cifar_md5_mismatch_names_the_file(tmp_path):
    folder, _ = write_cifar10(tmp_path / "cifar10")
    cls = fixture_datamodule(CIFAR10, datasets.CIFAR10, folder)
    damaged = folder / "data_batch_3"
    data = bytearray(damaged.read_bytes())
    data[-10] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        cls(root=str(tmp_path)).setup()
    message = str(info.value)
    assert str(damaged) in message and "md5" in message and "cifar-10-python.tar.gz" in message


def test_cifar_broken_pickle_names_the_file(tmp_path):
    folder, _ = write_cifar10(tmp_path / "cifar10")
    broken = folder / "test_batch"
    broken.write_bytes(broken.read_bytes()[:500])  # md5s are taken after the damage: only unpickling fails
    cls = fixture_datamodule(CIFAR10, datasets.CIFAR10, folder)
    with pytest.raises(DataError) as info:
        cls(root=str(tmp_path)).setup()
    assert f"file {broken}:" in str(info.value)


def test_tiny_imagenet_labels_follow_sorted_wnids(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny_imagenet")
    dm = TinyImageNet(root=str(tmp_path), batch_size=3, val_fraction=0.25)
    dm.prepare_data()
    dm.setup()
    assert dm.wnids() == sorted(WNIDS)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (9, 3, 6)
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    for split in (dm.val_set, dm.test_set):
        for i in range(len(split)):
            image, label = split[i]
            path, _ = split.base.samples[split.indices[i]]
            assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
            wnid = sorted(WNIDS)[label]
            # The greyscale JPEG (grey level 30) comes back as three equal channels.
            colour = (30, 30, 30) if path.endswith("n09999999_0.JPEG") else COLOURS[wnid]
            pixels = (image * std + mean) * 255  # undo the normalisation: back to the written colour
            assert (pixels.mean(dim=(1, 2)) - torch.tensor(colour, dtype=torch.float32)).abs().max() < 3
            if split is dm.val_set:
                assert f"/train/{wnid}/images/" in path
    assert sorted(int(dm.val_set[i][1]) for i in range(3)) == [0, 1, 2]  # stratified
    assert [dm.test_set[i][1] for i in range(6)] == [2, 0, 1, 2, 0, 1]  # val_annotations order
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 3, 64, 64) and y.dtype == torch.int64
    train_tf, _ = dm.transforms()
    assert [type(t) for t in train_tf.transforms][:2] == [v2.RandomCrop, v2.RandomHorizontalFlip]


def test_tiny_imagenet_greyscale_jpeg_becomes_rgb(tmp_path):
    write_tiny_imagenet(tmp_path / "tiny_imagenet")
    dm = TinyImageNet(root=str(tmp_path))
    dm.setup()
    base = dm.train_set.base
    i = next(k for k, (path, _) in enumerate(base.samples) if path.endswith("n09999999_0.JPEG"))
    image, label = base[i]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64) and label == 2
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def zip_tree(base, archive) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(base.rglob("*")):
            zf.write(path, path.relative_to(base.parent).as_posix())


def test_tiny_imagenet_zip_with_the_right_md5_is_extracted_offline(tmp_path):
    data_dir = tmp_path / "tiny_imagenet"
    base = write_tiny_imagenet(tmp_path / "staging")
    data_dir.mkdir()
    archive = data_dir / "tiny-imagenet-200.zip"
    zip_tree(base, archive)
    shutil.rmtree(tmp_path / "staging")
    cls = type("FixtureTinyImageNet", (TinyImageNet,), {"zip_md5": md5(archive)})
    dm = cls(root=str(tmp_path), download_timeout=1)
    dm.prepare_data()  # the zip is here: no network, only the md5 check and the extraction
    dm.setup()
    assert (data_dir / "tiny-imagenet-200" / "wnids.txt").is_file()
    assert len(dm.test_set) == 6


def test_tiny_imagenet_zip_md5_mismatch_names_the_zip(tmp_path):
    data_dir = tmp_path / "tiny_imagenet"
    data_dir.mkdir()
    archive = data_dir / "tiny-imagenet-200.zip"
    zip_tree(write_tiny_imagenet(tmp_path / "staging"), archive)
    with pytest.raises(DataError) as info:
        TinyImageNet(root=str(tmp_path)).prepare_data()
    message = str(info.value)
    assert (
        str(archive) in message and "90528d7ca1a48142e341f4ef8d21d0de" in message and md5(archive) in message
    )
    assert not (data_dir / "tiny-imagenet-200").exists()  # nothing extracted from a bad zip


def test_tiny_imagenet_corrupt_jpeg_is_named_when_read(tmp_path):
    base = write_tiny_imagenet(tmp_path / "tiny_imagenet")
    bad = base / "val" / "images" / "val_4.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])
    dm = TinyImageNet(root=str(tmp_path))
    dm.setup()
    with pytest.raises(DataError, match=f"Could not decode Tiny ImageNet image {bad}"):
        dm.test_set[4]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda b: (b / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn00000000\t0\t0\t1\t1\n"),
            "line 1",
        ),
        (lambda b: (b / "val" / "images" / "val_2.JPEG").unlink(), "val_2.JPEG is missing"),
        (lambda b: shutil.rmtree(b / "train" / "n02085620"), "n02085620"),
    ],
    ids=["unknown-wnid", "missing-val-image", "missing-class-folder"],
)
def test_tiny_imagenet_bad_tree_is_a_data_error(tmp_path, edit, says):
    edit(write_tiny_imagenet(tmp_path / "tiny_imagenet"))
    with pytest.raises(DataError, match=says):
        TinyImageNet(root=str(tmp_path)).setup()


# -- Missing data and downloads ------------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(STATIC))
def test_missing_data_names_the_path_and_where_to_get_it(tmp_path, key):
    cls = registry.get_dataset(key)
    assert cls is STATIC[key]
    dm = cls(root=str(tmp_path), download=False)
    for step in (dm.prepare_data, dm.setup):
        with pytest.raises(DataError) as info:
            step()
        message = str(info.value)
        assert str(tmp_path / key) in message and cls.download_urls[0] in message
        assert "data.download is false" in message
    assert not (tmp_path / key).exists()


def refuse_downloads(monkeypatch) -> None:
    """Any download that starts fails the test: the reachability probe must refuse it first."""
    for cls in STATIC.values():
        monkeypatch.setattr(cls, "_fetch", lambda self: pytest.fail("a download was started"))


@pytest.mark.parametrize("key", sorted(STATIC))
def test_download_without_internet_fails_fast_and_says_so(tmp_path, key, monkeypatch):
    cls = STATIC[key]
    if probe(cls.download_urls[0], 2.0) is None:
        pytest.skip("this machine reaches the download host: a real download would start")
    refuse_downloads(monkeypatch)  # fast: refused after the probe, no download left to wait on
    with pytest.raises(DataError) as info:
        cls(root=str(tmp_path), download_timeout=2.0).prepare_data()
    message = str(info.value)
    assert message.startswith(f"Downloading {cls.title} to {tmp_path / key} failed: could not reach ")
    assert all(url in message for url in cls.download_urls) and "offline" in message


@pytest.fixture
def silent_proxy(monkeypatch):
    """A local 'proxy' that accepts connections and never answers: a download through it can only time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    urllib.request.install_opener(None)  # urlopen caches its proxies in a global opener: rebuild it
    yield url
    server.close()
    urllib.request.install_opener(None)


@pytest.mark.parametrize("key", ["cifar10", "tiny_imagenet"])
def test_a_stalled_download_times_out(tmp_path, silent_proxy, key):
    start = time.monotonic()
    with pytest.raises(DataError, match=f"Downloading .* to {tmp_path / key} failed: .*timed out"):
        STATIC[key](root=str(tmp_path), download_timeout=1.0).prepare_data()
    assert time.monotonic() - start < 10


# -- Through `bench run` ------------------------------------------------------------------------------------
# The fixture's digits in batches of 8, all 10 test digits tested.
ON_FIXTURE = [*QUICK, "data.batch_size=8", "data.val_fraction=0.25", "trainer.limit_test_batches=1.0"]


def test_bench_run_trains_and_tests_on_the_idx_fixture(workdir):
    write_mnist(workdir / "data" / "mnist", "MNIST")
    record = run("ann", "mnist", ON_FIXTURE).record
    assert record["status"] == "ok" and record["dataset_facts"]["input_shape"] == [1, 28, 28]
    # tested on exactly the fixture's 10 test digits: the accuracy is a whole number of tenths
    correct = record["metrics"]["test_acc"] * 10
    assert correct == pytest.approx(round(correct), abs=1e-6)
    assert (
        record["config"]["data"]["download"] is True
    )  # present files: the Trainer's prepare_data is a no-op


def test_bench_run_offline_fails_fast_with_a_failed_record(workdir, monkeypatch):
    if probe(CIFAR10.download_urls[0], 2.0) is None:
        pytest.skip("this machine reaches the download host: a real download would start")
    refuse_downloads(monkeypatch)
    with pytest.raises(DataError, match="Downloading CIFAR-10 .* failed: could not reach"):
        run("ann", "cifar10", [*ON_FIXTURE, "data.download_timeout=2"])
    (record_path,) = (workdir / "results" / "runs").glob("*.json")
    assert json.loads(record_path.read_text())["status"] == "failed"


# -- mnist5k: k-fold cross-validation ----------------------------------------------------------------------
def fold_ids(folds: int, fold_seed: int = SPLIT_SEED) -> list[np.ndarray]:
    """The test digits of each of the k folds (nothing is set up: ``test_ids`` reads the labels only)."""
    return [MNIST5k(folds=folds, fold=f, fold_seed=fold_seed).test_ids for f in range(folds)]


@pytest.mark.parametrize("folds", [5, 7])
def test_the_k_folds_partition_every_digit_but_the_validation_ones_each_fold_stratified(folds):
    labels = load_mnist5k()[1]
    tests = fold_ids(folds)
    validation = stratified_split(labels, 0.1, SPLIT_SEED)[1]  # 50 a class, the same for every fold
    everything = np.concatenate(tests)
    assert len(everything) == 4500 and not set(everything) & set(validation)  # disjoint folds
    assert sorted([*everything, *validation]) == list(range(5000))
    for ids in tests:
        assert ids.dtype.kind == "i" and (np.diff(ids) > 0).all()  # ascending: the test set's order
        per_class = np.bincount(labels[ids], minlength=10)
        if folds == 5:
            assert per_class.tolist() == [90] * 10
        else:  # 450 = 7 x 64 + 2: the first two folds hold one more of each class
            assert set(per_class.tolist()) <= {64, 65} and len(set(per_class.tolist())) == 1


def test_a_folds_validation_digits_are_fixed_its_training_digits_the_other_folds():
    images, labels = load_mnist5k()
    validation = stratified_split(labels, 0.1, SPLIT_SEED)[1]
    dm = MNIST5k(folds=5, fold=3, fold_seed=7)
    dm.setup()
    test = dm.test_ids
    pool = np.setdiff1d(np.arange(5000), test)  # the training pool, ascending (its dataset's order)
    train, val = pool[dm.train_set.indices], pool[dm.val_set.indices]
    assert val.tolist() == validation.tolist()  # never tested, in no fold: what tuning chooses on
    assert not set(train) & set(test) and not set(train) & set(val)
    assert sorted([*train, *val]) == pool.tolist()
    assert (len(train), len(val), len(test)) == (3600, 500, 900) and dm.sizes == "3,600 / 500 / 900"
    assert np.bincount(labels[val]).tolist() == [50] * 10
    assert (dm.test_set.base.images[:, 0].numpy() == images[test]).all()
    assert dm.test_set.base.labels.tolist() == labels[test].tolist()
    assert (dm.train_set.base.images[:, 0].numpy() == images[pool]).all()
    assert dm.facts.for_record()["cross_validation"] == {"folds": 5, "fold": 3, "fold_seed": 7}
    odd = MNIST5k(folds=7, fold=5, val_fraction=0.2)  # the stated sizes are the split's, for any k
    odd.setup()
    assert odd.sizes == f"{len(odd.train_set):,} / {len(odd.val_set):,} / {len(odd.test_set):,}"


def test_without_folds_the_split_is_the_fixed_one():
    labels = load_mnist5k()[1]
    pool, test = stratified_split(labels, 0.2, SPLIT_SEED)  # the fixed split, as it always was
    fixed = MNIST5k()
    fixed.setup()
    assert fixed.test_set.base.labels.tolist() == labels[test].tolist()
    train, val = stratified_split(labels[pool], 0.1, SPLIT_SEED)
    assert (
        fixed.train_set.indices.tolist() == train.tolist() and fixed.val_set.indices.tolist() == val.tolist()
    )
    assert fixed.test_ids is None and "cross_validation" not in fixed.facts.for_record()
    assert fixed.cross_validation is None and fixed.sizes == MNIST5k.sizes == "3,600 / 400 / 1,000"
    # nothing new in the config: the fixed split's runs keep their ids
    assert "folds" not in load_config("ann", "mnist5k")["data"]


def test_another_fold_seed_is_another_partition():
    first, other = fold_ids(5, 0), fold_ids(5, 1)
    assert first[0].tolist() != other[0].tolist()
    assert sorted(np.concatenate(other).tolist()) == sorted(np.concatenate(first).tolist())


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["data.folds=1"], "data.folds=1 is not a number of folds: give a whole number from 2 to 450"),
        (["data.folds=451"], "data.folds=451 is not a number of folds"),
        # not whole numbers: refused by the type check of every override (issue 33)
        (["data.folds=2.5"], "data.folds=2.5 has the wrong type: the DataModule (MNIST5k) takes folds as an"),
        (["data.folds=true"], "data.folds=true has the wrong type: the DataModule (MNIST5k) takes folds as"),
        (
            ["data.folds=5", "data.fold=5"],
            "data.fold=5 is not one of the 5 folds: give a whole number from 0 to 4",
        ),
        (["data.folds=5", "data.fold=-1"], "data.fold=-1 is not one of the 5 folds"),
        (["data.folds=5", "data.fold_seed=-1"], "data.fold_seed=-1 is not a seed"),
        (["data.fold=2"], "data.fold=2 given without data.folds"),
        (["data.folds=null", "data.fold_seed=3"], "data.fold_seed=3 given without data.folds"),
    ],
)
def test_bad_fold_settings_are_refused_naming_the_key(overrides, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config("ann", "mnist5k", overrides)


@pytest.mark.parametrize("key", ["folds", "fold", "fold_seed"])
def test_other_datasets_refuse_the_fold_keys(key):
    with pytest.raises(ConfigError, match=f"Unknown key data.{key} for MNIST. Valid data keys: "):
        load_config("ann", "mnist", [f"data.{key}=2"])


def test_a_fold_runs_record_names_its_fold_and_each_tested_digit(workdir):
    """Untrained, two test batches of 32: the record's ids are the fold's first 64 digits, in order."""
    overrides = [*QUICK, "trainer.limit_train_batches=0", "trainer.limit_val_batches=0"]
    overrides += ["trainer.limit_test_batches=2", "data.folds=5", "data.fold=2", "data.fold_seed=4"]
    record = run("ann", "mnist5k", overrides).record
    assert record["status"] == "ok"
    assert record["dataset_facts"]["cross_validation"] == {"folds": 5, "fold": 2, "fold_seed": 4}
    entry = record["test_predictions"]
    ids = MNIST5k(folds=5, fold=2, fold_seed=4).test_ids[:64]
    assert entry["items"] == 64 and predictions.ids(entry).tolist() == ids.tolist()
    assert predictions.decode(entry)[1].tolist() == load_mnist5k()[1][ids].tolist()
