"""``dvs_gesture``: IBM DVS128 Gesture (Amir et al. 2017), 11 hand/arm gestures by 29 subjects.

Layout as ``DvsGesture.tar.gz`` extracts: ``<root>/dvs_gesture/DvsGesture/`` holding
``userNN_<lighting>.aedat`` (AEDAT 3.1) + ``userNN_<lighting>_labels.csv`` (``class,startTime_usec,
endTime_usec``, class 1..11) and ``trials_to_train.txt`` / ``trials_to_test.txt``. One sample per CSV
row (events with start <= t < end), as spikingjelly and snnTorch count them: 1,176 train / 288 test.
Labels are the CSV class minus one (spikingjelly's folder order permutes classes 3-11; we do not).
Validation is carved from the training rows, stratified with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.errors import DataError
from bench.registry import register_dataset
from datamodules.event_frames import EventFrameDataModule
from datamodules.events import Events, read_aedat31_polarity
from datamodules.frame_cache import SampleIndex

URL = "https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz)"
CLASSES = (
    "hand clap",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
)


@register_dataset("dvs_gesture")
class DVSGesture(EventFrameDataModule):
    """IBM DVS128 Gesture: 11 gestures, one sample per label-CSV row (128x128x2, AEDAT 3.1)."""

    num_classes = 11
    sensor = (128, 128)
    input_shape = (2, 128, 128)
    frames = 16
    split_by = "number"
    class_names = CLASSES
    sizes = "≈1,058 / ≈118 / 288"
    expected_layout = (
        "DvsGesture/userNN_<lighting>.aedat, DvsGesture/userNN_<lighting>_labels.csv, "
        "DvsGesture/trials_to_train.txt and DvsGesture/trials_to_test.txt"
    )
    source = URL
    required = ("DvsGesture/trials_to_train.txt", "DvsGesture/trials_to_test.txt")

    @classmethod
    def fixture(cls, root: Path) -> DVSGesture:
        from datamodules.fixtures import dvs_gesture as fixtures  # on use: reading needs no writers

        return fixtures.fixture(cls, root)

    def index(self) -> SampleIndex:
        root = self.require_dir(self.data_dir, "the dataset folder")
        folder = root / "DvsGesture"
        if not folder.is_dir():
            hint = (
                " (the trial lists lie directly in it: move them into DvsGesture/)"
                if (root / "trials_to_train.txt").exists()
                else ""
            )
            raise self.missing(f"{folder} does not exist{hint}")
        paths: list[Path] = []
        labels: list[int] = []
        windows: list[np.ndarray] = []
        is_test: list[bool] = []
        for split in ("train", "test"):
            for recording in self._trials(folder / f"trials_to_{split}.txt"):
                rows = self._label_rows(folder / f"{Path(recording).stem}_labels.csv")
                if not (folder / recording).is_file():
                    raise self.missing(
                        f"{folder / recording}, listed in trials_to_{split}.txt, does not exist"
                    )
                paths += [folder / recording] * len(rows)
                labels += list(rows[:, 0] - 1)
                windows.append(rows[:, 1:])
                is_test += [split == "test"] * len(rows)
        return SampleIndex(
            paths, np.array(labels, dtype=np.int64), np.concatenate(windows), test=np.array(is_test)
        )

    def _trials(self, listing: Path) -> list[str]:
        if not listing.is_file():
            raise self.missing(f"the trial list {listing} does not exist")
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not names or not all(name.endswith(".aedat") for name in names):
            raise self.missing(f"{listing} should list one userNN_<lighting>.aedat file per line")
        return names

    def _label_rows(self, csv: Path) -> np.ndarray:
        """``int64 [rows, 3]``: class 1..11, start µs, end µs."""
        if not csv.is_file():
            raise self.missing(f"the label file {csv} does not exist")
        try:
            rows = np.loadtxt(csv, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        except ValueError as error:
            raise DataError(
                f"{csv} is corrupt: expected a header line then rows of class,startTime_usec,endTime_usec "
                f"integers ({error}). Re-extract it from {URL}."
            ) from error
        if rows.shape[1:] != (3,) or len(rows) == 0:
            raise DataError(
                f"{csv} is corrupt: expected rows of 3 integers (class,start,end), got {rows.shape}."
            )
        bad = (rows[:, 0] < 1) | (rows[:, 0] > 11) | (rows[:, 1] >= rows[:, 2])
        if bad.any():
            raise DataError(
                f"{csv} is corrupt: row {int(np.flatnonzero(bad)[0]) + 1} ({rows[bad][0].tolist()}) needs a "
                f"class in 1..11 and start < end. Re-extract it from {URL}."
            )
        return rows

    def read(self, path: Path) -> Events:
        return read_aedat31_polarity(path, *self.sensor, hint=f"Re-extract it from {URL}.")
