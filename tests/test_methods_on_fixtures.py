"""Registry-driven: every registered method trains a step on a real batch of every dataset's fixture.

Each DataModule writes its own fixture in the exact on-disk format (``fixture(root)``, found through the
registry, so a new dataset needs no edit here; one without a fixture fails with the base class's message).
The batch comes through the real DataModule and loader, so a method meets the true dtype, shape and value
range of each dataset.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from test_methods import assert_trains_one_step

from bench import registry
from bench.config import load_config


@pytest.fixture(scope="module", params=sorted(registry.datasets()))
def dataset_batch(request, tmp_path_factory):
    cls = registry.get_dataset(request.param)
    datamodule = cls.fixture(tmp_path_factory.mktemp(request.param))
    if datamodule is None:
        pytest.skip(f"{request.param} writes no fixture (why: {cls.__name__}.fixture's docstring)")
    datamodule.prepare_data()
    datamodule.setup()
    return request.param, datamodule, next(iter(datamodule.train_dataloader()))


@pytest.mark.parametrize("method", sorted(registry.methods()))
def test_method_trains_one_step_on_the_fixture_batch(method, dataset_batch):
    key, datamodule, (x, y) = dataset_batch
    # The method's config as a run on this fixture would resolve it (time steps follow data.frames).
    frames = [f"data.frames={datamodule.frames}"] if datamodule.kind == "event" else []
    cfg = load_config(method, key, frames)
    facts = datamodule.facts.for_method()
    model = registry.get_method(method)(**facts, **OmegaConf.to_container(cfg.method, resolve=True))
    assert x.shape[-3:] == tuple(datamodule.input_shape) and y.max() < datamodule.num_classes
    assert_trains_one_step(model, x, y, datamodule.num_classes)
