"""Registry-driven: every registered method on a tiny batch shaped like every registered dataset."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from bench import registry
from bench.config import load_config
from bench.errors import ConfigError
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


MATCHED_BACKBONE = "32C3-AP2-64C3-AP2-128C3-AP2"


@pytest.mark.parametrize("method", list(registry.methods()))
@pytest.mark.parametrize("dataset", ["mnist5k", "nmnist_sim"])
def test_every_method_reads_the_matched_backbone_in_the_layer_notation(method, dataset, workdir):
    # The matched track (configs/sweeps/matched.yaml): the same three convs in every method, whatever
    # its head; on event data the SNNs at T = 2 of 8 frames, ann once over the frames stacked as channels.
    steps = 1 if method == "ann" else 2
    overrides = [f"method.layers={MATCHED_BACKBONE}", f"method.time_steps={steps}", "data.frames=8"]
    cfg = load_config(method, dataset, overrides if dataset == "nmnist_sim" else overrides[:2])
    datamodule, model = build(cfg, method, dataset)
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    in_channels = 8 * 2 if method == "ann" and dataset == "nmnist_sim" else datamodule.input_shape[0]
    assert [(c.in_channels, c.out_channels) for c in convs[:3]] == [(in_channels, 32), (32, 64), (64, 128)]
    pools = [m for m in model.net.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 3 and not any(isinstance(m, nn.MaxPool2d) for m in model.net.modules())
    assert model.time_steps == steps
    x, y = tiny_batch(datamodule, batch_size=16)
    assert_trains_one_step(model, x, y, datamodule.num_classes)


def test_compressed_event_trains_from_its_first_step_at_t1_on_the_matched_backbone(workdir):
    # At T = 1 the filter + PLIF pass (1 - alpha) / tau = 1/4 of the input at the only step: without BN
    # before the voting neurons they stay below V_th at initialisation, and the rectangular surrogate
    # passes no gradient at all (this test failed so before the BN was added).
    cfg = load_config(
        "compressed_event", "mnist5k", [f"method.layers={MATCHED_BACKBONE}", "method.time_steps=1"]
    )
    datamodule, model = build(cfg, "compressed_event", "mnist5k")
    x, y = tiny_batch(datamodule, batch_size=16)
    assert_trains_one_step(model, x, y, datamodule.num_classes)


@pytest.mark.parametrize(("method", "static_steps"), [("lif_sg", 4), ("hybrid_stdb", 5)])
def test_time_steps_null_is_every_frame_on_event_data_and_the_methods_own_t_on_images(
    method, static_steps, workdir
):
    assert load_config(method, "nmnist_sim").method.time_steps is None
    assert (
        build(load_config(method, "nmnist_sim", ["data.frames=10"]), method, "nmnist_sim")[1].time_steps == 10
    )
    assert build(load_config(method, "mnist5k"), method, "mnist5k")[1].time_steps == static_steps


def test_the_ann_baseline_runs_once_over_stacked_frames_and_refuses_more_steps(workdir):
    cfg = load_config("ann", "nmnist_sim", ["method.time_steps=2"], check=False)
    with pytest.raises(ConfigError, match="stacked as input channels, so it runs T = 1"):
        build(cfg, "ann", "nmnist_sim")
