"""``tiny_imagenet``: Tiny ImageNet (200 ImageNet classes, 64x64 RGB) in the official zip's layout.

``<root>/tiny_imagenet/tiny-imagenet-200/`` holds ``wnids.txt``, ``train/<wnid>/images/*.JPEG`` (500 per
class, read the way torchvision's ``ImageFolder`` reads them) and the flat ``val/images/*.JPEG`` labelled by
``val/val_annotations.txt``. The official test images carry no labels, so the labelled val set (50 per class)
is this suite's test split and validation is carved from train. Labels are indices into the *sorted* wnids
(``wnids.txt`` itself is not sorted), the order ``ImageFolder`` would give the class folders. JPEGs are
decoded lazily (100,000 decoded images would take 1.2 GB), and the greyscale ones are expanded to RGB.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.datasets.utils import calculate_md5, download_url, extract_archive
from torchvision.io import ImageReadMode, decode_image

from bench.errors import DataError
from bench.registry import register_dataset
from datamodules.static_images import StaticImageData

FOLDER = "tiny-imagenet-200"
ARCHIVE = "tiny-imagenet-200.zip"


def read_rgb(path: str) -> torch.Tensor:
    """A JPEG as uint8 ``[3, 64, 64]``; a file that does not decode is a :class:`DataError` naming it."""
    try:
        image = decode_image(path, mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as error:
        raise DataError(
            f"Could not decode Tiny ImageNet image {path}: {error}. The file is corrupt: extract "
            f"{ARCHIVE} again (official zip: {TinyImageNet.download_urls[0]})."
        ) from error
    if image.shape != (3, 64, 64):
        raise DataError(
            f"Tiny ImageNet image {path} is {image.shape[2]}x{image.shape[1]}, not 64x64: this is not the "
            f"official {FOLDER} tree ({TinyImageNet.download_urls[0]})."
        )
    return image


class LabelledFiles(Dataset):
    """``(path, label)`` pairs read as uint8 RGB images on access."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        return read_rgb(path), label


@register_dataset("tiny_imagenet")
class TinyImageNet(StaticImageData):
    """Tiny ImageNet, 200 ImageNet classes; the official val set is the test split (official zip)."""

    title = "Tiny ImageNet"
    num_classes = 200
    input_shape = (3, 64, 64)
    sizes = "90,000 / 10,000 / 10,000"
    mean, std = (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)
    default_crop_padding = 4
    default_hflip = True
    download_urls = ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",)
    zip_md5 = "90528d7ca1a48142e341f4ef8d21d0de"  # tests swap in their fixture zip's md5
    checked = "every labelled val image present (the zip's md5 is checked when it is extracted)"
    layout = (
        f"tiny_imagenet/{FOLDER}/ as the official zip extracts: wnids.txt, train/<wnid>/images/*.JPEG, "
        f"val/images/*.JPEG and val/val_annotations.txt (or {ARCHIVE} itself in tiny_imagenet/, which "
        "download=true checks and extracts without the network)"
    )

    @classmethod
    def fixture(cls, root: Path) -> TinyImageNet:
        from datamodules.fixtures import tiny_imagenet as fixtures  # on use: reading needs no writers

        return fixtures.fixture(cls, root)

    @property
    def folder(self) -> Path:
        return self.data_dir / FOLDER

    def _required(self) -> list[Path]:
        base = self.folder
        return [
            base / "wnids.txt",
            base / "train",
            base / "val" / "images",
            base / "val" / "val_annotations.txt",
        ]

    def _archives(self) -> list[tuple[Path, str | None]]:
        # Any zip already here means no network is needed: _fetch checks its md5 and names it if it is bad.
        return [(self.data_dir / ARCHIVE, None)]

    def _fetch(self) -> None:
        archive = self.data_dir / ARCHIVE
        if not archive.exists():
            partial = archive.with_name(ARCHIVE + ".part")  # an interrupted download never poses as the zip
            partial.unlink(missing_ok=True)
            download_url(self.download_urls[0], str(self.data_dir), partial.name)
            partial.replace(archive)
        actual = calculate_md5(archive)
        if actual != self.zip_md5:
            raise DataError(
                f"Tiny ImageNet archive {archive} is corrupt: its md5 is {actual}, expected {self.zip_md5} "
                f"(a truncated or interrupted download?). Delete it and run again to download it afresh, or "
                f"get it from {self.download_urls[0]} yourself."
            )
        try:
            extract_archive(str(archive), str(self.data_dir))
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(f"Could not extract Tiny ImageNet archive {archive}: {error}.") from error

    def _problem(self, path: Path, what: str) -> DataError:
        return DataError(f"Tiny ImageNet file {path} {what}. {self._where_to_get()}")

    def wnids(self) -> list[str]:
        """The sorted wnids of ``wnids.txt``: label ``i`` is ``wnids()[i]``."""
        path = self.folder / "wnids.txt"
        wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not wnids or len(set(wnids)) != len(wnids) or len(wnids) > self.num_classes:
            raise self._problem(path, f"must list up to {self.num_classes} distinct wnids, one a line")
        return sorted(wnids)

    def _read(self, train: bool) -> tuple[Dataset, np.ndarray]:
        class_to_idx = {wnid: i for i, wnid in enumerate(self.wnids())}
        if train:
            try:
                samples = make_dataset(str(self.folder / "train"), class_to_idx, extensions=IMG_EXTENSIONS)
            except FileNotFoundError as error:  # a wnid without images
                raise self._problem(self.folder / "train", f"is incomplete: {error}") from error
        else:
            samples, path = [], self.folder / "val" / "val_annotations.txt"
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                fields = line.split("\t")
                if not line.strip():
                    continue
                if len(fields) < 2 or fields[1] not in class_to_idx:
                    raise self._problem(
                        path, f"line {number} ({line!r}) is not '<file> TAB <wnid from wnids.txt>'"
                    )
                image = self.folder / "val" / "images" / fields[0]
                if not image.is_file():
                    raise self._problem(image, f"is missing (listed on line {number} of {path.name})")
                samples.append((str(image), class_to_idx[fields[1]]))
        labels = np.array([label for _, label in samples], dtype=np.int64)
        return LabelledFiles(samples), labels
