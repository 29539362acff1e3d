"""``cifar10_dvs``: CIFAR10-DVS (Li et al. 2017), CIFAR-10 images moved on a monitor, seen by a DVS128.

Layout as the ten official figshare class zips extract:
``<root>/cifar10_dvs/<class>/cifar10_<class>_<i>.aedat`` (AEDAT 2.0, i = 0..999, 10,000 recordings).
Coordinates follow spikingjelly's convention (see :func:`datamodules.events.read_aedat2_dvs128`). There
is no official split; ``split`` picks the protocol and is stored with every result, because the two give
very different accuracies:

* ``random_9_1`` (default): per class a random 90 % train / 10 % test, stratified, fixed seed;
* ``tebn``: per class ids 0-99 are the test set (Duan et al., NeurIPS 2022; typically much higher scores).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bench.errors import ConfigError
from bench.registry import register_dataset
from datamodules.base import stratified_split
from datamodules.event_frames import SPLIT_SEED, EventFrameDataModule, list_files
from datamodules.events import Events, read_aedat2_dvs128
from datamodules.frame_cache import SampleIndex

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("random_9_1", "tebn")
URL = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (one zip per class)"


@register_dataset("cifar10_dvs")
class CIFAR10DVS(EventFrameDataModule):
    """CIFAR10-DVS: CIFAR-10 images recorded by a DVS128 (128x128x2, 10 classes, AEDAT 2.0)."""

    num_classes = 10
    sensor = (128, 128)
    input_shape = (2, 48, 48)
    frames = 10
    split_by = "number"
    frame_size = 48  # 128 -> 48 and T = 10, as TET/TEBN train on CIFAR10-DVS
    split = "random_9_1"
    class_names = CLASSES
    sizes = "8,100 / 900 / 1,000"
    expected_layout = "<class>/cifar10_<class>_<i>.aedat for the 10 classes " + ", ".join(CLASSES)
    source = URL
    required = CLASSES

    @classmethod
    def fixture(cls, root: Path) -> CIFAR10DVS:
        from datamodules.fixtures import cifar10_dvs as fixtures  # on use: reading needs no writers

        return fixtures.fixture(cls, root)

    def __init__(self, *args, split: str = "random_9_1", **kwargs):
        super().__init__(*args, **kwargs)
        if split not in SPLITS:
            raise ConfigError(
                f"data.split={split!r} is not a CIFAR10-DVS protocol; use random_9_1 (stratified 9:1, "
                "fixed seed) or tebn (ids 0-99 of each class are the test set)."
            )
        self.split = split

    def index(self) -> SampleIndex:
        root = self.require_dir(self.data_dir, "the dataset folder")
        paths: list[Path] = []
        labels: list[int] = []
        ids: list[int] = []
        for label, name in enumerate(CLASSES):
            files = list_files(self.require_dir(root / name, "the class folder"), ".aedat")
            if not files:
                raise self.missing(f"the class folder {root / name} holds no .aedat files")
            pattern = re.compile(rf"cifar10_{name}_(\d+)\.aedat")
            for path in files:
                match = pattern.fullmatch(path.name)
                if match is None:
                    raise self.missing(f"{path} is not named cifar10_{name}_<i>.aedat")
                ids.append(int(match.group(1)))
            paths += files
            labels += [label] * len(files)
        self.sample_ids = np.array(ids, dtype=np.int64)
        return SampleIndex(paths, np.array(labels, dtype=np.int64))

    def read(self, path: Path) -> Events:
        return read_aedat2_dvs128(path, hint=f"Re-extract it from the official class zip ({URL}).")

    def split_indices(self, index: SampleIndex) -> tuple[np.ndarray, np.ndarray]:
        if self.split == "tebn":
            test = self.sample_ids < 100
            return np.flatnonzero(~test), np.flatnonzero(test)
        return stratified_split(index.labels, 0.1, SPLIT_SEED)
