"""Registry-driven: every registered method trains a step on a real batch of every dataset's fixture.

The fixtures are the ones the DataModule tests write in the exact on-disk formats; the batch comes through
the real DataModule and loader, so a method meets the true dtype, shape and value range of each dataset.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from test_datamodules_events import write_cifar10_dvs, write_gesture, write_nmnist
from test_datamodules_static import (
    fixture_datamodule,
    write_cifar10,
    write_cifar100,
    write_mnist,
    write_tiny_imagenet,
)
from test_methods import assert_trains_one_step
from torchvision import datasets

from bench import registry
from bench.config import load_config
from datamodules.cifar10_dvs import CIFAR10DVS
from datamodules.dvs_gesture import DVSGesture
from datamodules.mnist5k import MNIST5k
from datamodules.nmnist import NMNIST
from datamodules.tiny_imagenet import TinyImageNet
from datamodules.torchvision_sets import CIFAR10, CIFAR100, MNIST, FashionMNIST


def _cifar(cls, write, tv_class):
    def make(root):
        folder, _ = write(root / cls.registry_key)
        return fixture_datamodule(cls, tv_class, folder)(root=str(root), batch_size=4, val_fraction=0.5)

    return make


FIXTURES = {
    "mnist5k": lambda root: MNIST5k(batch_size=4),
    "mnist": lambda root: (write_mnist(root / "mnist", "MNIST"), MNIST(root=str(root), batch_size=4))[1],
    "fashion_mnist": lambda root: (
        write_mnist(root / "fashion_mnist", "FashionMNIST"),
        FashionMNIST(root=str(root), batch_size=4),
    )[1],
    "cifar10": _cifar(CIFAR10, write_cifar10, datasets.CIFAR10),
    "cifar100": _cifar(CIFAR100, write_cifar100, datasets.CIFAR100),
    "tiny_imagenet": lambda root: (
        write_tiny_imagenet(root / "tiny_imagenet"),
        TinyImageNet(root=str(root), batch_size=3, val_fraction=0.25),
    )[1],
    "nmnist": lambda root: (
        write_nmnist(root / "nmnist"),
        NMNIST(root=str(root), frames=4, val_fraction=0.5, batch_size=4),
    )[1],
    "cifar10_dvs": lambda root: (
        write_cifar10_dvs(root / "cifar10_dvs"),
        CIFAR10DVS(root=str(root), frames=2, val_fraction=0.5, batch_size=4),
    )[1],
    "dvs_gesture": lambda root: (
        write_gesture(root / "dvs_gesture" / "DvsGesture"),
        DVSGesture(root=str(root), frames=2, size=64, val_fraction=0.5, batch_size=3),
    )[1],
}
# nmnist_sim is N-MNIST's format and reader (the `nmnist` fixture) fed by the simulator, which
# tests/test_datamodules_events.py checks; generating all 5,000 digits here would take half a minute.
FIXTURE_FREE = {"nmnist_sim"}


def test_every_registered_dataset_has_a_fixture_here():
    assert set(registry.datasets()) == set(FIXTURES) | FIXTURE_FREE


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def dataset_batch(request, tmp_path_factory):
    datamodule = FIXTURES[request.param](tmp_path_factory.mktemp(request.param))
    datamodule.prepare_data()
    datamodule.setup()
    return request.param, datamodule, next(iter(datamodule.train_dataloader()))


@pytest.mark.parametrize("method", sorted(registry.methods()))
def test_method_trains_one_step_on_the_fixture_batch(method, dataset_batch):
    key, datamodule, (x, y) = dataset_batch
    # The method's config as a run on this fixture would resolve it (time steps follow data.frames).
    frames = [f"data.frames={datamodule.frames}"] if datamodule.kind == "event" else []
    cfg = load_config(method, key, frames)
    facts = {"num_classes": datamodule.num_classes, "input_shape": datamodule.input_shape}
    facts.update(kind=datamodule.kind, frames=datamodule.frames)
    model = registry.get_method(method)(**facts, **OmegaConf.to_container(cfg.method, resolve=True))
    assert x.shape[-3:] == tuple(datamodule.input_shape) and y.max() < datamodule.num_classes
    assert_trains_one_step(model, x, y, datamodule.num_classes)
