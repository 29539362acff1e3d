"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision's own dataset classes, on the shared
base of the static image sets (``datamodules/static_images.py``).

Each set lives in ``<root>/<key>/`` exactly as torchvision's download leaves it (``<root>/mnist/MNIST/raw/``,
``<root>/cifar10/cifar-10-batches-py/``, ...). Files are checked before torchvision reads them (IDX headers
against file sizes, CIFAR md5s, a pickle that will not load) so that a bad file is reported by name instead
of as a traceback from inside torchvision. The splits are read whole into memory as uint8 ``[N, C, H, W]``
(150 MB for CIFAR), so the per-sample transforms are tensor ops rather than PIL round trips.
"""

from __future__ import annotations

import math
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.utils import calculate_md5

from bench.errors import DataError
from bench.registry import register_dataset
from datamodules.base import TensorImageDataset
from datamodules.static_images import StaticImageData


class TorchvisionImages(StaticImageData):
    """A torchvision dataset class read whole into memory; a read failure is reported by file name."""

    tv_class: type  # the torchvision dataset class (tests swap in one carrying fixture md5s)

    def _load(self, train: bool):
        try:
            return self.tv_class(str(self.data_dir), train=train, download=False)
        except Exception as error:  # whatever torchvision raised: name the culprit file if we can
            culprit = self._culprit() or self.data_dir
            raise DataError(
                f"Could not read {self.title} file {culprit}: {type(error).__name__}: {error}. The file is "
                f"corrupt or truncated: delete it and download again. "
                f"{self._where_to_get()}"
            ) from error

    def _culprit(self) -> Path | None:
        return None

    def _fetch(self) -> None:
        self.tv_class(str(self.data_dir), train=False, download=True)


class IDXImages(TorchvisionImages):
    """MNIST-style sets: four IDX files in ``<key>/<ClassName>/raw/``, checked header against size."""

    default_crop_padding = 2
    default_hflip = False
    checked = "IDX headers checked against the file sizes"
    files = {  # name -> number of dimensions
        "train-images-idx3-ubyte": 3,
        "train-labels-idx1-ubyte": 1,
        "t10k-images-idx3-ubyte": 3,
        "t10k-labels-idx1-ubyte": 1,
    }

    @classmethod
    def fixture(cls, root: Path) -> IDXImages:
        from datamodules.fixtures import torchvision_sets as fixtures  # on use: reading needs no writers

        return fixtures.mnist_fixture(cls, root)

    @property
    def raw_folder(self) -> Path:
        return self.data_dir / self.tv_class.__name__ / "raw"

    def _required(self) -> list[Path]:
        return [self.raw_folder / name for name in self.files]

    def _archives(self) -> list[tuple[Path, str]]:
        return [(self.raw_folder / name, md5) for name, md5 in self.tv_class.resources]

    def _check_files(self) -> None:
        for name, ndim in self.files.items():
            path = self.raw_folder / name
            with open(path, "rb") as f:
                header = f.read(4 + 4 * ndim)
            size, magic, problem = path.stat().st_size, 0x0800 + ndim, None
            if len(header) < 4 + 4 * ndim or int.from_bytes(header[:4], "big") != magic:
                problem = f"does not start with the IDX magic number {magic} (uint8, {ndim}-D)"
            else:
                dims = struct.unpack(f">{ndim}I", header[4:])
                expected = 4 + 4 * ndim + math.prod(dims)
                if size != expected:
                    problem = f"holds {size:,} bytes but its header {dims} needs {expected:,}"
                elif ndim == 3 and dims[1:] != tuple(self.input_shape[1:]):
                    problem = (
                        f"holds {dims[1]}x{dims[2]} images, not {self.input_shape[1]}x{self.input_shape[2]}"
                    )
            if problem is not None:
                raise DataError(
                    f"{self.title} file {path} is corrupt: it {problem} (a truncated or partial download?). "
                    f"Delete it and download again. {self._where_to_get()}"
                )

    def _read(self, train: bool) -> tuple[Dataset, np.ndarray]:
        ds = self._load(train)
        images, labels = ds.data.unsqueeze(1), ds.targets
        if len(images) != len(labels):
            split = "train" if train else "t10k"
            raise DataError(
                f"{self.title} in {self.raw_folder} holds {len(images)} {split} images but {len(labels)} "
                f"labels: the files come from different downloads. {self._where_to_get()}"
            )
        return TensorImageDataset(images, labels), labels.numpy()


class CIFARImages(TorchvisionImages):
    """CIFAR-style sets: Python-2 pickled batches + a meta file, md5-checked one by one."""

    default_crop_padding = 4
    default_hflip = True
    checked = "the md5 of every file checked"

    @classmethod
    def fixture(cls, root: Path) -> CIFARImages:
        from datamodules.fixtures import torchvision_sets as fixtures  # on use: reading needs no writers

        return fixtures.cifar_fixture(cls, root)

    @property
    def folder(self) -> Path:
        return self.data_dir / self.tv_class.base_folder

    def _files(self) -> list[tuple[Path, str]]:
        listed = self.tv_class.train_list + self.tv_class.test_list
        meta = self.tv_class.meta
        return [(self.folder / name, md5) for name, md5 in listed] + [
            (self.folder / meta["filename"], meta["md5"])
        ]

    def _required(self) -> list[Path]:
        return [path for path, _ in self._files()]

    def _archives(self) -> list[tuple[Path, str]]:
        return [(self.data_dir / self.tv_class.filename, self.tv_class.tgz_md5)]

    def _check_files(self) -> None:
        for path, md5 in self._files():
            actual = calculate_md5(path)
            if actual != md5:
                raise DataError(
                    f"{self.title} file {path} is corrupt: its md5 is {actual}, expected {md5} (a truncated "
                    f"or modified file?). Delete {self.folder} and download again. {self._where_to_get()}"
                )

    def _culprit(self) -> Path | None:
        for path, _ in self._files():
            try:
                with open(path, "rb") as f:
                    entry = pickle.load(f, encoding="latin1")
            except Exception:
                return path
            if not isinstance(entry, dict):
                return path
        return None

    def _read(self, train: bool) -> tuple[Dataset, np.ndarray]:
        ds = self._load(train)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        return TensorImageDataset(images, labels), labels.numpy()


_MNIST_LAYOUT = (
    "{key}/{cls}/raw/ holding the four uncompressed IDX files train-images-idx3-ubyte, "
    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (or their four .gz "
    "downloads there, which download=true checks and gunzips without the network)"
)
_CIFAR_LAYOUT = (
    "{key}/{folder}/ holding {files} as extracted from {archive} "
    "(or the .tar.gz itself in {key}/, which download=true extracts without the network)"
)


@register_dataset("mnist")
class MNIST(IDXImages):
    """MNIST handwritten digits (torchvision download or the four IDX files)."""

    title = "MNIST"
    num_classes = 10
    input_shape = (1, 28, 28)
    sizes = "54,001 / 5,999 / 10,000"
    mean, std = (0.1307,), (0.3081,)
    tv_class = datasets.MNIST
    download_urls = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
    layout = _MNIST_LAYOUT.format(key="mnist", cls="MNIST")
    source = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/ (the four .gz files named above; "
        "mirror of http://yann.lecun.com/exdb/mnist/)"
    )


@register_dataset("fashion_mnist")
class FashionMNIST(IDXImages):
    """Fashion-MNIST clothing images (torchvision download or the four IDX files)."""

    title = "Fashion-MNIST"
    num_classes = 10
    input_shape = (1, 28, 28)
    sizes = "54,000 / 6,000 / 10,000"
    mean, std = (0.2860,), (0.3530,)
    tv_class = datasets.FashionMNIST
    download_urls = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    layout = _MNIST_LAYOUT.format(key="fashion_mnist", cls="FashionMNIST")
    source = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (the four .gz files named above; "
        "see https://github.com/zalandoresearch/fashion-mnist)"
    )


@register_dataset("cifar10")
class CIFAR10(CIFARImages):
    """CIFAR-10 natural images (torchvision download or the python pickles)."""

    title = "CIFAR-10"
    num_classes = 10
    input_shape = (3, 32, 32)
    sizes = "45,000 / 5,000 / 10,000"
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    tv_class = datasets.CIFAR10
    download_urls = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    layout = _CIFAR_LAYOUT.format(
        key="cifar10",
        folder="cifar-10-batches-py",
        files="data_batch_1..data_batch_5, test_batch and batches.meta",
        archive="cifar-10-python.tar.gz",
    )


@register_dataset("cifar100")
class CIFAR100(CIFARImages):
    """CIFAR-100 natural images, fine labels (torchvision download or the python pickles)."""

    title = "CIFAR-100"
    num_classes = 100
    input_shape = (3, 32, 32)
    sizes = "45,000 / 5,000 / 10,000"
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    tv_class = datasets.CIFAR100
    download_urls = ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",)
    layout = _CIFAR_LAYOUT.format(
        key="cifar100",
        folder="cifar-100-python",
        files="train, test and meta",
        archive="cifar-100-python.tar.gz",
    )
