"""``nmnist``: N-MNIST (Orchard et al. 2015), MNIST digits recorded by an ATIS camera making 3 saccades.

Layout as the official ``Train.zip`` / ``Test.zip`` extract: ``<root>/nmnist/Train/<digit>/<id>.bin`` and
``Test/<digit>/<id>.bin`` (60,000 / 10,000 samples, 34x34 pixels, 2 polarities, ~300 ms each). The
official test set is the test split; validation is carved from Train, stratified with a fixed seed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bench.registry import register_dataset
from datamodules.event_frames import EventFrameDataModule, list_files
from datamodules.events import NMNIST_URL, Events, read_nmnist_bin
from datamodules.frame_cache import SampleIndex

DIGITS = tuple(str(d) for d in range(10))
OFFICIAL_SIZES = {"Train": 60_000, "Test": 10_000}

log = logging.getLogger(__name__)


@register_dataset("nmnist")
class NMNIST(EventFrameDataModule):
    """N-MNIST: MNIST digits recorded by a saccading ATIS event camera (34x34x2, 10 classes)."""

    num_classes = 10
    sensor = (34, 34)
    input_shape = (2, 34, 34)
    frames = 16
    split_by = "number"
    sizes = "54,001 / 5,999 / 10,000"
    expected_layout = "Train/<digit 0-9>/<id>.bin and Test/<digit 0-9>/<id>.bin (5-byte ATIS event records)"
    source = f"the official Train.zip and Test.zip of N-MNIST, {NMNIST_URL}"
    required = tuple(f"{split}/{digit}" for split in ("Train", "Test") for digit in DIGITS)

    @classmethod
    def fixture(cls, root: Path) -> NMNIST:
        from datamodules.fixtures import nmnist as fixtures  # on use: reading needs no writers

        return fixtures.fixture(cls, root)

    def index(self) -> SampleIndex:
        index = self.scan()
        self.check_complete(index)
        return index

    def scan(self) -> SampleIndex:
        """Every ``.bin`` under ``Train/<digit>/`` and ``Test/<digit>/`` (an empty class is an error)."""
        root = self.require_dir(self.data_dir, "the dataset folder")
        paths: list[Path] = []
        labels: list[int] = []
        is_test: list[bool] = []
        for split in ("Train", "Test"):
            folder = root / split
            if not folder.is_dir():
                nested = sorted(p.parent for p in root.glob(f"*/{split}") if p.is_dir())
                hint = f" (found {nested[0]}: move its contents up one level)" if nested else ""
                raise self.missing(f"{folder} does not exist{hint}")
            for digit in DIGITS:
                files = list_files(self.require_dir(folder / digit, "the class folder"), ".bin")
                if not files:
                    raise self.missing(f"the class folder {folder / digit} holds no .bin files")
                paths += files
                labels += [int(digit)] * len(files)
                is_test += [split == "Test"] * len(files)
        return SampleIndex(paths, np.array(labels, dtype=np.int64), test=np.array(is_test))

    def check_complete(self, index: SampleIndex) -> None:
        """Warn when the split sizes differ from the official 60,000 / 10,000 recordings.

        Only a warning: the archives carry no file list, so a smaller tree may be a deliberate subset
        (or a test fixture); the warning gives the counts found and where to get the full set.
        """
        found = {"Train": int((~index.test).sum()), "Test": int(index.test.sum())}
        if found != OFFICIAL_SIZES:
            log.warning(
                "N-MNIST under %s holds %s Train / %s Test recordings, not the official %s / %s, so its "
                "splits differ from everyone else's. Unless this subset is deliberate, re-extract %s.",
                self.data_dir,
                *(f"{n:,}" for n in (*found.values(), *OFFICIAL_SIZES.values())),
                self.source,
            )

    def repair_hint(self) -> str:
        """How to replace a missing or corrupt file (generated data says how to regenerate it instead)."""
        return f"Re-extract it from the official N-MNIST archive ({NMNIST_URL})."

    def read(self, path: Path) -> Events:
        return read_nmnist_bin(path, *self.sensor, hint=self.repair_hint())
