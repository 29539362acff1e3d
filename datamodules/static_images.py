"""The shared base of the static image sets (MNIST, Fashion-MNIST, CIFAR-10/100, Tiny ImageNet, and the
embedded mnist5k): presence checks, a fail-fast download, file checks, a fixed stratified validation split
and tensor transforms over uint8 ``[C, H, W]`` images.

Downloads fail fast: a reachability probe bounded by ``download_timeout`` runs first (a machine without
internet gets a :class:`DataError` in seconds, not a hang), and the download itself runs under that socket
timeout. The probe is skipped when the archives torchvision would fetch already lie on disk.

Inside a SLURM job nothing is downloaded (compute nodes usually have no internet, and every array task would
fetch the same files at once): missing files are a :class:`DataError` giving the ``bench prepare`` command
to run on a machine with internet (archives already on disk are still extracted: no network). ``bench
prepare`` itself downloads wherever it runs (an interactive ``salloc`` shell is a SLURM job too). Two
processes never download into one folder at once: the download holds a lock (``<key>/download.lock``,
:func:`datamodules.frame_cache.exclusive`).
"""

from __future__ import annotations

import shlex
import socket
import threading
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets.utils import check_integrity
from torchvision.transforms import v2

from bench.claims import slurm_job
from bench.errors import ConfigError, DataError
from datamodules.base import BenchDataModule, stratified_split
from datamodules.frame_cache import LOCK_SUFFIX, exclusive
from datamodules.readiness import MISSING, NOT_BUILT, READY, Readiness, disk_bytes, human_bytes

SPLIT_SEED = 0  # fixes the train/val split for good, independent of the run's seed


def probe(url: str, timeout: float) -> str | None:
    """``None`` if a TCP connection to the URL's host (or its proxy) opens within ``timeout``, else why not.

    Runs in a daemon thread so that even a hanging DNS lookup cannot hold the caller past ``timeout``.
    """
    target = urlparse(urllib.request.getproxies().get(urlparse(url).scheme) or url)
    port = target.port or (443 if target.scheme == "https" else 80)
    outcome = [f"no answer within {timeout:g} s"]

    def connect() -> None:
        try:
            socket.create_connection((target.hostname, port), timeout=timeout).close()
            outcome[0] = None
        except OSError as error:
            outcome[0] = f"{type(error).__name__}: {error}"

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0]


@contextmanager
def socket_timeout(seconds: float):
    """Bound every blocking socket call (connect, each read) made by urllib inside the block."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class SplitView(Dataset):
    """``base[indices[i]]`` with ``transform`` applied to the image: train and val share one base dataset."""

    def __init__(self, base: Dataset, indices: np.ndarray, transform):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        image, label = self.base[int(self.indices[i])]
        return self.transform(image), label


class StaticImageData(BenchDataModule):
    """Base of the static image sets: presence checks, fail-fast download, fixed stratified val split.

    Subclasses say where the files are (``_required``), how to fetch them (``_fetch``, ``_archives``), how to
    check them (``_check_files``) and how to read a split as a dataset of uint8 ``[C, H, W]`` images.
    """

    kind = "static"
    title: str  # the dataset's name in messages
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_crop_padding: int
    default_hflip: bool
    download_urls: tuple[str, ...]  # probed before a download; the first is the one to fetch by hand
    layout: str  # the expected tree under data_dir, for messages
    source: str = ""  # where to get the files by hand, if not download_urls[0]
    checked = ""  # what setup() verifies of the files, for `bench prepare`'s report
    download_in_slurm = False  # `bench prepare` sets it: an explicit download, even inside a SLURM job

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        augment: bool = True,
        crop_padding: int | None = None,
        hflip: bool | None = None,
        download: bool = True,
        download_timeout: float = 10.0,
    ):
        super().__init__(root, batch_size, num_workers)
        if not 0 < float(val_fraction) < 1:
            raise ConfigError(f"data.val_fraction must lie strictly between 0 and 1, got {val_fraction}.")
        self.val_fraction = float(val_fraction)
        self.augment = bool(augment)
        self.crop_padding = self.default_crop_padding if crop_padding is None else int(crop_padding)
        self.hflip = self.default_hflip if hflip is None else bool(hflip)
        self.download = bool(download)
        self.download_timeout = float(download_timeout)

    # -- what subclasses provide ---------------------------------------------------------------------------
    def _required(self) -> list[Path]:
        """Paths that must exist before the dataset can be read."""
        raise NotImplementedError

    def _archives(self) -> list[tuple[Path, str]]:
        """(path, md5) of the archives whose presence makes a download work offline."""
        raise NotImplementedError

    def _fetch(self) -> None:
        """Download (or extract) the dataset into ``data_dir``."""
        raise NotImplementedError

    def _check_files(self) -> None:
        """Raise :class:`DataError` naming the first file that is corrupt."""

    def _read(self, train: bool) -> tuple[Dataset, np.ndarray]:
        """The train or test split as a dataset of (uint8 image, label), plus its labels."""
        raise NotImplementedError

    # -- shared flow ---------------------------------------------------------------------------------------
    def _missing(self) -> list[Path]:
        return [path for path in self._required() if not path.exists()]

    def _where_to_get(self) -> str:
        """The sentence every data error ends with: the expected tree and where to get the files."""
        return (
            f"Expected {self.root}/{self.layout}. Get it from {self.source or self.download_urls[0]}, or set "
            f"data.root to the folder that holds {self.registry_key}/."
        )

    def _missing_error(self, missing: list[Path]) -> DataError:
        how = (
            "data.download is true, so prepare_data() (which the Trainer calls first) downloads it there."
            if self.download
            else "data.download is false, so nothing was downloaded."
        )
        return DataError(
            f"{self.title} is not in {self.data_dir}: {missing[0]} is missing. {how} {self._where_to_get()}"
        )

    @property
    def downloadable(self) -> bool:
        """Whether ``bench prepare`` can fetch this dataset (torchvision's sets, Tiny ImageNet's zip)."""
        return bool(self.download_urls) and not self.embedded and self.download

    def prepare_command(self) -> str:
        """The ``bench prepare`` command that fetches this dataset into this ``data.root``."""
        return f"bench prepare {self.registry_key} data.root={shlex.quote(str(self.root))}"

    def _slurm_error(self, missing: list[Path], job: str) -> DataError:
        return DataError(
            f"{self.title} is not in {self.data_dir}: {missing[0]} is missing, and this process runs in "
            f"SLURM job {job}, where snnbench never downloads (compute nodes usually have no internet, and "
            f"every task would fetch the same files at once). On a machine with internet (e.g. the login "
            f"node) run `{self.prepare_command()}` (or `bench prepare --sweep <sweep> "
            f"data.root={shlex.quote(str(self.root))}` for every dataset of a sweep), then submit again. "
            f"{self._where_to_get()}"
        )

    def prepare_data(self) -> None:
        """Download once if the files are missing and ``download`` is on (never inside a SLURM job, unless
        ``bench prepare`` asks); sets no state."""
        missing = self._missing()
        if not missing:
            return
        if not self.download:
            raise self._missing_error(missing)
        job = slurm_job()
        offline = all(check_integrity(path, md5) for path, md5 in self._archives())  # extraction only
        if job and not offline and not self.download_in_slurm:
            raise self._slurm_error(missing, job)
        with ExitStack() as held:
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                lock = self.data_dir / f"download{LOCK_SUFFIX}"
                held.enter_context(exclusive(lock, f"{self.title} in {self.data_dir}", "downloaded"))
            except OSError as error:
                raise DataError(
                    f"Could not download {self.title}: {self.data_dir} cannot be written "
                    f"({error.strerror or error}). {self._where_to_get()}"
                ) from error
            if self._missing():  # else another process fetched it while this one waited
                self._download()

    def _download(self) -> None:
        if not all(check_integrity(path, md5) for path, md5 in self._archives()):
            reasons = [(url, probe(url, self.download_timeout)) for url in self.download_urls]
            if all(why for _, why in reasons):
                tried = "; ".join(f"{url} ({why})" for url, why in reasons)
                raise DataError(
                    f"Downloading {self.title} to {self.data_dir} failed: could not reach {tried}. Is this "
                    f"machine offline? {self._where_to_get()} Then data.download=false "
                    "skips the download."
                )
        try:
            with socket_timeout(self.download_timeout):
                self._fetch()
        except DataError:
            raise
        except Exception as error:  # network, md5 or archive errors from torchvision/urllib: one message
            raise DataError(
                f"Downloading {self.title} to {self.data_dir} failed: {type(error).__name__}: {error}. "
                f"{self._where_to_get()}"
            ) from error
        missing = self._missing()
        if missing:
            raise DataError(
                f"The {self.title} download finished but {missing[0]} is still missing. "
                f"{self._where_to_get()}"
            )

    # --- readiness ------------------------------------------------------------------------------------------
    def readiness(self) -> Readiness:
        """Ready when every required file is there; not built when only the downloaded archives are (an
        extraction, no network); else missing, with the expected tree and where to get it."""
        key, downloadable = self.registry_key, self.downloadable
        if self.embedded:
            return Readiness(key, self.data_dir, READY, "embedded")
        missing = self._missing()
        if not missing:
            return Readiness(key, self.data_dir, READY)
        archives = [path for path, _ in self._archives()]
        if archives and all(path.exists() for path in archives):
            detail = f"{archives[0]} is here, not extracted yet ({missing[0]} is missing)"
            return Readiness(key, self.data_dir, NOT_BUILT, detail, downloadable=downloadable)
        detail = f"{missing[0]} is missing. {self._where_to_get()}"
        return Readiness(key, self.data_dir, MISSING, detail, downloadable=downloadable)

    def make_ready(self) -> Readiness:
        """Download (where ``download`` is on, even inside a SLURM job) or extract what is missing, check
        the files and read both splits once; report the sample counts and the size on disk."""
        self.download_in_slurm = True
        self.prepare_data()
        self.setup()
        sets = (self.train_set, self.val_set, self.test_set)
        detail = " / ".join(f"{len(s):,}" for s in sets) + " train / val / test samples"
        if self.embedded:
            return Readiness(self.registry_key, self.data_dir, READY, f"embedded, {detail}")
        size = human_bytes(disk_bytes(self._required()))
        checked = f", {self.checked}" if self.checked else ""
        detail += f", {size} in {self.data_dir}{checked}"
        return Readiness(self.registry_key, self.data_dir, READY, detail)

    def transforms(self) -> tuple[v2.Compose, v2.Compose]:
        """(train, eval) transforms of a uint8 ``[C, H, W]`` image: augmentation, then scale + normalise."""
        normalize = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]
        augment = []
        if self.augment:
            augment.append(v2.RandomCrop(self.input_shape[1:], padding=self.crop_padding))
            if self.hflip:
                augment.append(v2.RandomHorizontalFlip())
        return v2.Compose(augment + normalize), v2.Compose(normalize)

    def _train_val(self, train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(training, validation) positions in the training pool: a fixed stratified ``val_fraction``."""
        return stratified_split(train_labels, self.val_fraction, SPLIT_SEED)

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        missing = self._missing()
        if missing:
            raise self._missing_error(missing)
        self._check_files()
        train_base, train_labels = self._read(train=True)
        test_base, test_labels = self._read(train=False)
        for labels, split in ((train_labels, "train"), (test_labels, "test")):
            if len(labels) == 0 or labels.min() < 0 or labels.max() >= self.num_classes:
                raise DataError(
                    f"The {split} labels of {self.title} in {self.data_dir} are not {self.num_classes} "
                    f"classes 0..{self.num_classes - 1} (found {len(labels)} labels"
                    + (f" from {labels.min()} to {labels.max()})." if len(labels) else ").")
                    + f" {self._where_to_get()}"
                )
        train_idx, val_idx = self._train_val(train_labels)
        train_tf, eval_tf = self.transforms()
        self.train_set = SplitView(train_base, train_idx, train_tf)
        self.val_set = SplitView(train_base, val_idx, eval_tf)
        self.test_set = SplitView(test_base, np.arange(len(test_labels)), eval_tf)
