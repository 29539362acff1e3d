"""Event-camera datasets: tiny fixtures in the exact on-disk formats, loaded through the real DataModules.

Fixture bytes are packed here by hand (struct / byte lists, following data-formats.md), not with the
package's own writer, so a wrong bit layout in a reader cannot be mirrored by a wrong writer.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from helpers import items

from bench.errors import ConfigError, DataError
from datamodules import nmnist_sim
from datamodules.base import stratified_split
from datamodules.cifar10_dvs import CIFAR10DVS, CLASSES
from datamodules.dvs_gesture import DVSGesture
from datamodules.events import (
    Events,
    encode_nmnist_bin,
    events_to_frames,
    read_aedat2_dvs128,
    read_aedat31_polarity,
    read_nmnist_bin,
)
from datamodules.fixtures.cifar10_dvs import AEDAT2_HEADER, aedat2_record, write_cifar10_dvs
from datamodules.fixtures.dvs_gesture import AEDAT31_HEADER, GESTURE_CSV, aedat31_packet, write_gesture
from datamodules.fixtures.nmnist import HAND, nmnist_record, write_nmnist
from datamodules.mnist5k import load_mnist5k
from datamodules.nmnist import NMNIST
from datamodules.nmnist_sim import NMNISTSim


def reference_frames(events, frames, split_by, height, width, scale=1):
    """Plain-Python integration (spikingjelly's segment rules), one event at a time."""
    out = np.zeros((frames, 2, height, width), dtype=np.int64)
    n = len(events)
    ts = [e[3] for e in events]
    for i, (x, y, p, t) in enumerate(events):
        if split_by == "number":
            k = frames - 1 if n // frames == 0 else min(i // (n // frames), frames - 1)
        else:
            k = min((t - min(ts)) // max((max(ts) - min(ts)) // frames, 1), frames - 1)
        out[k, p, y // scale, x // scale] += 1
    return out


def test_nmnist_record_layout_matches_the_documented_example(tmp_path):
    path = tmp_path / "one.bin"
    path.write_bytes(bytes.fromhex("070f80028e") + nmnist_record(33, 0, 0, (1 << 23) - 1))
    events = read_nmnist_bin(path)
    assert [events.x.tolist(), events.y.tolist(), events.p.tolist(), events.t.tolist()] == [
        [7, 33],
        [15, 0],
        [1, 0],
        [654, 8388607],
    ]
    assert encode_nmnist_bin(events) == path.read_bytes()


def test_hand_computed_frames_by_number_and_by_time():
    events = Events(
        *(np.array(column) for column in zip(*[(t, x, y, p) for x, y, p, t in HAND], strict=True))
    )
    by_number = events_to_frames(events, 3, "number", 34, 34)
    expected = np.zeros((3, 2, 34, 34), dtype=np.int64)
    expected[0, 1, 2, 1] = 2  # events 0-1
    expected[1, 0, 0, 33] = expected[1, 0, 33, 0] = 1  # events 2-3
    expected[2, 1, 5, 5] = expected[2, 0, 5, 5] = 1  # events 4-5
    np.testing.assert_array_equal(by_number, expected)
    by_time = events_to_frames(events, 3, "time", 34, 34)  # dt = 90 // 3 = 30 µs
    expected = np.zeros((3, 2, 34, 34), dtype=np.int64)
    expected[0, 1, 2, 1], expected[0, 0, 0, 33] = 2, 1  # t = 0, 10, 20
    expected[1, 0, 33, 0], expected[1, 1, 5, 5] = 1, 1  # t = 30, 40
    expected[2, 0, 5, 5] = 1  # t = 90 (the last bin ends at t_max)
    np.testing.assert_array_equal(by_time, expected)
    # Fewer events than frames: all in the last one (spikingjelly); an empty time bin is just zeros.
    assert events_to_frames(events, 8, "number", 34, 34)[7].sum() == 6
    assert events_to_frames(events, 9, "time", 34, 34)[[5, 6, 7]].sum() == 0  # t // 10 = 0-4, 9->8


def test_nmnist_loads_every_sample_with_its_label_and_exact_frames(tmp_path):
    truth = write_nmnist(tmp_path / "nmnist")
    dm = NMNIST(root=str(tmp_path), frames=3, split_by="number", val_fraction=0.5, batch_size=4)
    assert (dm.kind, dm.frames, dm.input_shape, dm.num_classes) == ("event", 3, (2, 34, 34), 10)
    dm.prepare_data()
    assert dm.train_set is None  # prepare_data sets no state
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (10, 10, 10)
    seen = set()
    for split, dataset in (("Train", dm.train_set), ("Train", dm.val_set), ("Test", dm.test_set)):
        for path, x, y in items(dm, dataset):
            assert path.parts[-3] == split and int(y) == int(path.parent.name)
            assert x.shape == (3, 2, 34, 34) and x.dtype == torch.float32
            expected = reference_frames(truth[path], 3, "number", 34, 34)
            np.testing.assert_array_equal(x.numpy(), expected)
            assert x.sum() == len(truth[path])
            seen.add(path)
    assert seen == set(truth)
    counts = dm.event_counts()
    assert counts.tolist() == [len(truth[p]) for p in dm.samples.paths]
    hand = dm.samples.paths.index(tmp_path / "nmnist/Train/7/00070.bin")
    assert counts[hand] == 6
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 2, 34, 34) and y.dtype == torch.long


def test_nmnist_time_bins_and_downsampling(tmp_path):
    truth = write_nmnist(tmp_path / "nmnist")
    dm = NMNIST(root=str(tmp_path), frames=3, split_by="time", size=17, val_fraction=0.5)
    assert dm.input_shape == (2, 17, 17)
    dm.setup()
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        for path, x, _ in items(dm, dataset):
            np.testing.assert_array_equal(
                x.numpy(), reference_frames(truth[path], 3, "time", 17, 17, scale=2)
            )
    hand = tmp_path / "nmnist/Train/7/00070.bin"
    x = next(x for dataset in (dm.train_set, dm.val_set) for path, x, _ in items(dm, dataset) if path == hand)
    assert x[0, 0, 0, 16] == 1 and x[1, 0, 16, 0] == 1  # (33, 0) at t=20 and (0, 33) at t=30, halved
    assert dm.cache_dir.name == "frames-v1-T3-time-17x17"


def test_changed_frames_or_data_never_serve_a_stale_cache(tmp_path):
    truth = write_nmnist(tmp_path / "nmnist")
    first = NMNIST(root=str(tmp_path), frames=4, val_fraction=0.5)
    first.setup()
    assert first.cache_dir == tmp_path / "nmnist/snnbench_cache/frames-v1-T4-number-34x34"
    second = NMNIST(root=str(tmp_path), frames=2, val_fraction=0.5)
    second.setup()
    assert second.cache_dir.name == "frames-v1-T2-number-34x34"
    assert second.train_set[0][0].shape == (2, 2, 34, 34)
    assert second.event_counts().tolist() == first.event_counts().tolist()
    # 300 more events on one pixel of one file: the fingerprint changes, the cache is rebuilt, and a
    # cell above 255 is stored exactly (the cache widens from uint8 to uint16).
    path = tmp_path / "nmnist/Train/7/00070.bin"
    with path.open("ab") as f:
        f.write(nmnist_record(9, 9, 1, 100) * 300)
    os.utime(path, ns=(1, 1))
    third = NMNIST(root=str(tmp_path), frames=1, val_fraction=0.5)
    third.setup()
    hand = third.samples.paths.index(path)
    assert third.event_counts()[hand] == 306
    frames = np.load(third.cache_dir / "frames.npy", mmap_mode="r")
    assert frames.dtype == np.uint16 and frames[hand, 0, 1, 9, 9] == 300
    rebuilt = NMNIST(root=str(tmp_path), frames=4, val_fraction=0.5)
    rebuilt.setup()
    assert rebuilt.cache_dir == first.cache_dir and rebuilt.event_counts()[hand] == 306
    assert json.loads((rebuilt.cache_dir / "meta.json").read_text())["spec"]["frames"] == 4
    assert sum(len(v) for v in truth.values()) + 300 == rebuilt.event_counts().sum()


def test_nmnist_missing_dir_wrong_layout_and_truncated_file(tmp_path):
    with pytest.raises(DataError, match=r"(?s)nmnist does not exist.*Train/<digit 0-9>.*garrickorchard"):
        NMNIST(root=str(tmp_path)).prepare_data()
    write_nmnist(tmp_path / "elsewhere" / "nmnist" / "NMNIST")
    with pytest.raises(DataError, match=r"found .*NMNIST: move its contents up one level"):
        NMNIST(root=str(tmp_path / "elsewhere")).prepare_data()
    write_nmnist(tmp_path / "nmnist")
    (tmp_path / "nmnist/Test/3/00030.bin").unlink()
    with pytest.raises(DataError, match=r"Test/3 holds no \.bin files"):
        NMNIST(root=str(tmp_path)).prepare_data()
    (tmp_path / "nmnist/Test/3/00030.bin").write_bytes(nmnist_record(1, 1, 1, 1) + b"\x01\x02")
    with pytest.raises(DataError, match=r"00030\.bin is truncated or corrupt.*7 bytes \(2 stray"):
        NMNIST(root=str(tmp_path)).prepare_data()
    (tmp_path / "nmnist/Test/3/00030.bin").write_bytes(nmnist_record(40, 1, 1, 1))
    with pytest.raises(DataError, match=r"outside the 34x34 sensor"):
        NMNIST(root=str(tmp_path)).prepare_data()


def test_bad_frame_options_are_config_errors():
    with pytest.raises(ConfigError, match="data.frames"):
        NMNIST(frames=0)
    with pytest.raises(ConfigError, match="data.split_by"):
        NMNIST(split_by="events")
    with pytest.raises(ConfigError, match="data.size"):
        NMNIST(size=64)
    with pytest.raises(ConfigError, match="data.split='random'"):
        CIFAR10DVS(split="random")


def test_aedat2_reader_follows_spikingjelly_orientation(tmp_path):
    path = tmp_path / "a.aedat"
    path.write_bytes(AEDAT2_HEADER + aedat2_record(0, 0, 0, 0) + aedat2_record(127, 5, 1, 5))
    events = read_aedat2_dvs128(path)
    assert events.x.tolist() == [127, 122] and events.y.tolist() == [127, 0]  # x = 127 - Y, y = 127 - X
    assert events.p.tolist() == [1, 0] and events.t.tolist() == [0, 5]  # p = 1 - bit 0


@pytest.mark.parametrize(("split", "sizes"), [("random_9_1", (50, 40, 10)), ("tebn", (30, 20, 50))])
def test_cifar10_dvs_split_protocols_labels_and_counts(tmp_path, split, sizes):
    truth = write_cifar10_dvs(tmp_path / "cifar10_dvs")
    dm = CIFAR10DVS(root=str(tmp_path), split=split, size=128, frames=2, val_fraction=0.5)
    assert dm.split == split and dm.input_shape == (2, 128, 128)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == sizes
    test_ids = [int(p.stem.rsplit("_", 1)[1]) for p in (dm.samples.paths[i] for i in dm.test_set.indices)]
    if split == "tebn":
        assert sorted(set(test_ids)) == [0, 1, 2, 3, 4]
    assert np.bincount(dm.test_set.labels.numpy(), minlength=10).tolist() == [sizes[2] // 10] * 10
    for dataset in (dm.train_set, dm.val_set, dm.test_set):
        for path, x, y in items(dm, dataset):
            assert CLASSES[int(y)] == path.parent.name
            assert x.sum() == len(truth[path])  # the external event is not counted
    hand = tmp_path / "cifar10_dvs/airplane/cifar10_airplane_0.aedat"
    everything = [item for dataset in (dm.train_set, dm.val_set, dm.test_set) for item in items(dm, dataset)]
    x = next(x for path, x, _ in everything if path == hand)
    assert x[0, 1, 127, 127] == 1 and x[1, 0, 0, 122] == 1 and x.sum() == 2  # one event per frame


def test_cifar10_dvs_default_downsamples_to_48(tmp_path):
    truth = write_cifar10_dvs(tmp_path / "cifar10_dvs")
    dm = CIFAR10DVS(root=str(tmp_path), frames=1)
    assert dm.input_shape == (2, 48, 48) and dm.split == "random_9_1" and dm.frames == 1
    dm.setup()
    assert dm.cache_dir.name == "frames-v1-T1-number-48x48"
    assert dm.event_counts().sum() == sum(len(v) for v in truth.values())
    hand = dm.samples.paths.index(tmp_path / "cifar10_dvs/airplane/cifar10_airplane_0.aedat")
    frames = np.load(dm.cache_dir / "frames.npy")[hand, 0]
    assert frames[1, 47, 47] == 1 and frames[0, 0, 45] == 1  # 127 * 48 // 128 = 47, 122 * 48 // 128 = 45
    assert frames.sum() == 2


def test_cifar10_dvs_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(DataError, match=r"(?s)cifar10_dvs does not exist.*figshare"):
        CIFAR10DVS(root=str(tmp_path)).prepare_data()
    write_cifar10_dvs(tmp_path / "cifar10_dvs")
    (tmp_path / "cifar10_dvs/cat/other.aedat").write_bytes(AEDAT2_HEADER)
    with pytest.raises(DataError, match=r"other\.aedat is not named cifar10_cat_<i>\.aedat"):
        CIFAR10DVS(root=str(tmp_path)).prepare_data()
    (tmp_path / "cifar10_dvs/cat/other.aedat").unlink()
    path = tmp_path / "cifar10_dvs/cat/cifar10_cat_3.aedat"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"cifar10_cat_3\.aedat is truncated or corrupt.*5 stray"):
        CIFAR10DVS(root=str(tmp_path)).prepare_data()
    path.write_bytes(AEDAT31_HEADER)
    with pytest.raises(DataError, match=r"cifar10_cat_3\.aedat is not an AER-DAT2\.0 file"):
        CIFAR10DVS(root=str(tmp_path)).prepare_data()


def expected_window_counts(name: str) -> list[int]:
    return [3 + r for r in range(len(GESTURE_CSV[name]))]  # 2 + r events + the one at end - 1


def test_aedat31_reader_decodes_packets_overflow_and_valid_marks(tmp_path):
    path = tmp_path / "g.aedat"
    packets = aedat31_packet([(3, 4, 1, 5), (127, 0, 0, 6, 0)]) + aedat31_packet([(9, 8, 0, 7)], overflow=1)
    path.write_bytes(AEDAT31_HEADER + packets)
    events = read_aedat31_polarity(path)
    assert events.x.tolist() == [3, 9] and events.y.tolist() == [4, 8] and events.p.tolist() == [1, 0]
    assert events.t.tolist() == [5, (1 << 31) + 7]


def test_dvs_gesture_one_sample_per_csv_row(tmp_path):
    write_gesture(tmp_path / "dvs_gesture" / "DvsGesture")
    dm = DVSGesture(root=str(tmp_path), frames=2, size=64, val_fraction=0.5)
    assert (dm.num_classes, dm.input_shape) == (11, (2, 64, 64))
    dm.setup()
    assert len(dm.samples) == 9 and dm.samples.test.tolist() == [False] * 7 + [True] * 2
    assert dm.samples.labels.tolist() == [0, 1, 7, 7, 0, 1, 7, 0, 10]  # CSV class - 1
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 4, 2)
    expected = [c for name in GESTURE_CSV for c in expected_window_counts(name)]
    assert dm.event_counts().tolist() == expected
    frames = np.load(dm.cache_dir / "frames.npy")
    assert frames.reshape(9, -1).sum(1).tolist() == expected
    # user01 row 2 (class 2, [2000, 3000)): events (1, 7, p0, 2000), (6, 16, p1, 2001), (11, 25, p0, 2002),
    # (0, 0, p1, 2999); number split into 2 frames of 2 events; size 64 halves the coordinates.
    sample = frames[1]
    assert sample[0, 0, 3, 0] == 1 and sample[0, 1, 8, 3] == 1
    assert sample[1, 0, 12, 5] == 1 and sample[1, 1, 0, 0] == 1
    assert {int(y) for _, _, y in items(dm, dm.test_set)} == {0, 10}


def test_dvs_gesture_errors(tmp_path):
    folder = tmp_path / "dvs_gesture" / "DvsGesture"
    with pytest.raises(DataError, match=r"(?s)dvs_gesture does not exist.*research\.ibm\.com"):
        DVSGesture(root=str(tmp_path)).prepare_data()
    (tmp_path / "dvs_gesture").mkdir()
    (tmp_path / "dvs_gesture" / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    with pytest.raises(DataError, match=r"DvsGesture does not exist \(the trial lists lie directly in it"):
        DVSGesture(root=str(tmp_path)).prepare_data()
    write_gesture(folder)
    (folder / "user02_lab.aedat").rename(folder / "moved.aedat")
    with pytest.raises(DataError, match=r"user02_lab\.aedat, listed in trials_to_train\.txt, does not exist"):
        DVSGesture(root=str(tmp_path)).prepare_data()
    (folder / "moved.aedat").rename(folder / "user02_lab.aedat")
    good = (folder / "user24_led.aedat").read_bytes()
    (folder / "user24_led.aedat").write_bytes(good[:-4])
    with pytest.raises(DataError, match=r"user24_led\.aedat is truncated or corrupt: the packet at offset"):
        DVSGesture(root=str(tmp_path)).prepare_data()
    (folder / "user24_led.aedat").write_bytes(good.replace(b"#!END-HEADER\r\n", b""))
    with pytest.raises(DataError, match=r"has no '#!END-HEADER' line"):
        DVSGesture(root=str(tmp_path)).prepare_data()
    (folder / "user24_led.aedat").write_bytes(good)
    (folder / "user24_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,10,20\n1,30,40\n")
    with pytest.raises(DataError, match=r"user24_led_labels\.csv is corrupt: row 1"):
        DVSGesture(root=str(tmp_path)).prepare_data()


# --- nmnist_sim ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    images, labels = load_mnist5k()
    keep = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(10)])  # 100 digits
    return images[keep], labels[keep]


def test_simulated_sensor_is_deterministic_and_saccades_like_nmnist(digits):
    images = digits[0][:3]
    first, again = list(nmnist_sim.simulate(images)), list(nmnist_sim.simulate(images))
    for a, b in zip(first, again, strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    alone = next(nmnist_sim.simulate(images[2:], first_id=2))  # a digit does not depend on its batch
    assert all(np.array_equal(u, v) for u, v in zip(alone, first[2], strict=True))
    other = next(nmnist_sim.simulate(images, seed=1))
    assert not np.array_equal(other.t, first[0].t)
    for events in first:
        assert 1000 < events.size < 6000 and set(events.p.tolist()) == {0, 1}
        assert events.x.max() < 34 and events.y.max() < 34 and events.x.min() >= 0
        assert (np.diff(events.t) >= 0).all() and events.t.min() >= 0 and events.t.max() < 300_000
        # First saccade moves the digit down-right: its leading (ON) edges lie right of the OFF edges.
        first_saccade = events.t < 100_000
        on, off = first_saccade & (events.p == 1), first_saccade & (events.p == 0)
        assert events.x[on].mean() > events.x[off].mean() and events.y[on].mean() > events.y[off].mean()


def test_nmnist_sim_writes_nmnist_files_once_and_keeps_mnist5k_split(tmp_path, monkeypatch, digits):
    images, labels = digits
    monkeypatch.setattr(nmnist_sim, "load_mnist5k", lambda: (images, labels))
    dm = NMNISTSim(root=str(tmp_path))
    assert (dm.frames, dm.split_by, dm.input_shape, dm.embedded) == (6, "time", (2, 34, 34), True)
    dm.prepare_data()
    folder = tmp_path / "nmnist_sim"
    marker = json.loads((folder / "generator.json").read_text())
    assert marker["samples"] == 100 and marker["seed"] == nmnist_sim.SIM_SEED
    pool, test = stratified_split(labels, 0.2, 0)  # mnist5k's split of the same digits
    for i in (int(test[0]), int(pool[0])):
        split = "Test" if i in test else "Train"
        path = folder / split / str(labels[i]) / f"{i:05d}.bin"
        expected = next(nmnist_sim.simulate(images[i : i + 1], first_id=i))
        assert all(np.array_equal(u, v) for u, v in zip(read_nmnist_bin(path), expected, strict=True))
    stamp = (folder / "generator.json").stat().st_mtime_ns
    dm.setup()
    assert (folder / "generator.json").stat().st_mtime_ns == stamp  # generated once
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (70, 10, 20)
    ids = lambda ds: sorted(int(dm.samples.paths[i].stem) for i in ds.indices)  # noqa: E731
    assert ids(dm.test_set) == sorted(test.tolist())
    assert ids(dm.val_set) == sorted(pool[stratified_split(labels[pool], 0.1, 0)[1]].tolist())
    assert dm.event_counts().sum() == marker["events"]
    x, y = dm.test_set[0]
    assert x.shape == (6, 2, 34, 34) and x.sum() == dm.event_counts()[dm.test_set.indices[0]]
