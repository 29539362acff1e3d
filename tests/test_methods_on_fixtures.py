"""Registry-driven: every registered method, at its full size for each dataset, trains a step on a real
batch of every dataset's fixture and declares every synaptic layer it has.

Each DataModule writes its own fixture in the exact on-disk format (``fixture(root)``, found through the
registry, so a new dataset needs no edit here; one without a fixture fails with the base class's message).
The batch comes through the real DataModule and loader, so a method meets the true dtype, shape and value
range of each dataset. A dataset that writes no fixture (``fixture`` returns None and says why) gets the
DataModule of a run's config and a random batch of its shape.
"""

from __future__ import annotations

import pytest
from helpers import assert_trains_one_step, tiny_batch
from omegaconf import OmegaConf
from torch import nn

from bench import registry
from bench.config import load_config
from bench.runner import build


@pytest.fixture(scope="module", params=sorted(registry.datasets()))
def dataset_batch(request, tmp_path_factory):
    """(key, DataModule, first training batch) of the dataset's fixture; (key, None, None) without one."""
    datamodule = registry.get_dataset(request.param).fixture(tmp_path_factory.mktemp(request.param))
    if datamodule is None:
        return request.param, None, None
    datamodule.prepare_data()
    datamodule.setup()
    return request.param, datamodule, next(iter(datamodule.train_dataloader()))


@pytest.mark.parametrize("method", sorted(registry.methods()))
def test_method_trains_one_step_on_the_fixture_batch(method, dataset_batch, workdir):
    key, datamodule, batch = dataset_batch
    if datamodule is None:  # no fixture: the run's DataModule and model, a random batch of its shape
        datamodule, model = build(load_config(method, key), method, key)
        x, y = tiny_batch(datamodule)
    else:
        # The method's config as a run on this fixture would resolve it (time steps follow data.frames).
        frames = [f"data.frames={datamodule.frames}"] if datamodule.kind == "event" else []
        cfg = load_config(method, key, frames)
        facts = datamodule.facts.for_method()
        model = registry.get_method(method)(**facts, **OmegaConf.to_container(cfg.method, resolve=True))
        x, y = batch
        assert x.shape[-3:] == tuple(datamodule.input_shape) and y.max() < datamodule.num_classes
    # Every conv and linear layer of the network is declared (the metrics count and price these).
    layers = model.synaptic_layers()
    convs = {name for name, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)}
    assert set(layers) == convs and all(layer.module is model.get_submodule(n) for n, layer in layers.items())
    assert_trains_one_step(model, x, y, datamodule.num_classes)
