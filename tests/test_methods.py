"""Registry-driven: every registered method on a tiny batch shaped like every registered dataset."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from bench import registry
from bench.config import load_config
from bench.runner import build

PAIRS = [(m, d) for m in registry.methods() for d in registry.datasets()]


def tiny_batch(datamodule, batch_size: int = 3, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    if datamodule.kind == "event":
        shape = (batch_size, datamodule.frames, *datamodule.input_shape)
        x = torch.randint(0, 3, shape, generator=generator).float()
    else:
        x = torch.randn(batch_size, *datamodule.input_shape, generator=generator)
    y = torch.randint(0, datamodule.num_classes, (batch_size,), generator=generator)
    return x, y


@pytest.fixture(params=PAIRS, ids=[f"{m}-{d}" for m, d in PAIRS])
def built(request, workdir):
    method, dataset = request.param
    cfg = load_config(method, dataset)
    torch.manual_seed(0)
    datamodule, model = build(cfg, method, dataset)
    return datamodule, model


def assert_trains_one_step(model, x, y, num_classes: int) -> None:
    """Logits of the right shape, a finite loss, finite gradients for every parameter, and a nonzero
    gradient at the first synaptic layer: the loss reaches back through every layer to the input."""
    logits = model(x)
    assert logits.shape == (len(y), num_classes)
    loss = model.compute_loss(logits, y)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = next(iter(model.synaptic_layers().values())).module
    assert first.weight.grad.abs().sum() > 0, "no gradient reaches the first synaptic layer"


def test_forward_backward_gives_finite_loss_and_gradients(built):
    datamodule, model = built
    assert_trains_one_step(model, *tiny_batch(datamodule), datamodule.num_classes)


def neuron_states(model) -> list[torch.Tensor]:
    """Every tensor memory (membrane potentials, traces) of every stateful module, in order."""
    return [
        value.clone()
        for module in model.modules()
        if isinstance(module, MemoryModule)
        for value in module._memories.values()
        if isinstance(value, torch.Tensor)
    ]


def test_neuron_state_does_not_leak_between_batches(built):
    datamodule, model = built
    model.eval()
    first, second = (tiny_batch(datamodule, seed=s)[0] for s in (1, 2))
    with torch.no_grad():
        fresh = model(second)
        fresh_states = neuron_states(model)
        model(first)
        torch.testing.assert_close(model(second), fresh, rtol=0, atol=0)
        for state, expected in zip(neuron_states(model), fresh_states, strict=True):
            torch.testing.assert_close(state, expected, rtol=0, atol=0)
        if model.spiking_layers():
            # The state is real: skipping the base class's reset leaves a different membrane.
            model(first)
            model.net(model.encode(second))
            leaked = neuron_states(model)
            assert any(not torch.equal(a, b) for a, b in zip(leaked, fresh_states, strict=True))


def test_declares_its_synaptic_layers_with_bit_widths(built):
    _, model = built
    layers = model.synaptic_layers()
    # every conv/linear layer of the network, and all in full precision before any training
    convs = {name for name, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)}
    assert set(layers) == convs and all(layer.module is model.get_submodule(n) for n, layer in layers.items())
    assert {layer.weight_bits for layer in layers.values()} == {32}
