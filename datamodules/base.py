"""Shared DataModule plumbing.

Every DataModule publishes its :class:`~datamodules.facts.DataFacts` (``num_classes``, ``input_shape``
``(C, H, W)``, ``kind``, for event data ``frames``, ...) as class attributes and, once configured, as
``facts``, without touching the disk, so the runner, the config checks, ``bench list`` and tests read them
cheaply.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from bench import paths
from bench.errors import ConfigError
from datamodules.facts import DataFacts
from datamodules.readiness import Readiness


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` with ``round(fraction * n_c)`` of every class ``c`` held out.

    The permutation depends only on ``seed`` (not on the run's seed), so a split is fixed for good.
    """
    rng = np.random.default_rng(seed)
    keep, held_out = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_out = int(round(fraction * len(idx)))
        held_out.append(idx[:n_out])
        keep.append(idx[n_out:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held_out))


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Each item's fold ``0..k-1``: every class's items, permuted by ``seed``, cut into k consecutive
    blocks of sizes as equal as possible (``np.array_split``: exactly ``n_c / k`` where k divides the
    class's ``n_c``; else the first blocks hold one more). The permutations are :func:`stratified_split`'s
    (the same generator, drawn class by class), so fold 0 of ``k`` folds under ``seed`` is the held-out set
    of ``stratified_split(labels, 1 / k, seed)`` whenever ``n_c / k`` is a whole number for every class.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        for j, block in enumerate(np.array_split(rng.permutation(np.flatnonzero(labels == c)), k)):
            fold[block] = j
    return fold


class TensorImageDataset(Dataset):
    """In-memory uint8 images ``[N, C, H, W]`` + labels, with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[i]


class BenchDataModule(pl.LightningDataModule):
    """Base of all DataModules: loaders over ``train_set`` / ``val_set`` / ``test_set`` made in ``setup``."""

    num_classes: int
    input_shape: tuple[int, int, int]
    kind: str = "static"
    frames: int | None = None
    embedded: bool = False
    sizes: str = ""  # "train / val / test" sample counts, for `bench list`
    split: str | None = None  # which published split, where a dataset offers several
    frame_spec: dict | None = None  # how events become frames (event DataModules)
    cross_validation: dict | None = None  # {folds, fold, fold_seed}: which k-fold test fold, where chosen

    def __init__(self, root: str | None = None, batch_size: int = 128, num_workers: int = 0):
        super().__init__()
        if int(batch_size) < 1 or int(num_workers) < 0:
            raise ConfigError(
                f"data.batch_size={batch_size} must be >= 1 and data.num_workers={num_workers} >= 0."
            )
        self.root = Path(root).expanduser() if root else paths.data_root()
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.train_set = self.val_set = self.test_set = None

    @property
    def facts(self) -> DataFacts:
        """This configured DataModule's facts (``frames`` and ``input_shape`` may follow its arguments)."""
        return DataFacts(
            num_classes=int(self.num_classes),
            input_shape=tuple(int(s) for s in self.input_shape),
            kind=self.kind,
            frames=self.frames,
            embedded=self.embedded,
            sizes=self.sizes,
            split=self.split,
            frame_spec=self.frame_spec,
            cross_validation=self.cross_validation,
        )

    @property
    def test_ids(self) -> np.ndarray | None:
        """The test items' ids in the test set's order (int64 indices into the dataset's whole pool of
        items), where different runs may test different items (k-fold cross-validation); None where the
        test set is fixed. The run record keeps them beside each item's prediction."""
        return None

    @classmethod
    def fixture(cls, root: Path) -> BenchDataModule | None:
        """A DataModule reading a tiny copy of this dataset that this writes under ``root`` in the exact
        on-disk format: the registry-driven tests train every method on it, so a new dataset brings its
        own. The override delegates to its writer in ``datamodules/fixtures/``, so the DataModule keeps
        only the reading code. None only where no copy can be written quickly (the override says why)."""
        raise NotImplementedError(
            f"{cls.__name__} provides no fixture(root): write a tiny copy of the dataset in its real "
            "on-disk format under root and return a DataModule that reads it."
        )

    @property
    def data_dir(self) -> Path:
        """``<root>/<key>/``: where this dataset lives on disk."""
        return self.root / self.registry_key

    # --- readiness: ``bench prepare`` and the dry run's data check (datamodules/readiness.py) --------------
    downloadable = False  # whether `bench prepare` can fetch this dataset's files

    def readiness(self) -> Readiness:
        """Whether this configuration's data (and caches) are on disk, from the presence of files alone."""
        raise NotImplementedError

    def make_ready(self) -> Readiness:
        """Download where this DataModule can, verify, convert and build the caches, once; then split, and
        report the sizes. A :class:`~bench.errors.DataError` says what is missing and where to get it."""
        raise NotImplementedError

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)
