"""Registry-driven: what every registered method does whatever the dataset's size, on the matched track's
small backbone over a static and an event dataset (the full-size network of every method on every dataset
trains a step in test_methods_on_fixtures.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import REAL_DATASETS, assert_trains_one_step, tiny_batch
from spikingjelly.activation_based.base import MemoryModule
from torch import nn

from bench import registry
from bench.config import load_config
from bench.errors import ConfigError
from bench.runner import build
from bench.sweep.spec import load_sweep
from methods.albsnn import ALBSNN

MATCHED_BACKBONE = "32C3-AP2-64C3-AP2-128C3-AP2"
MATCHED = [(m, d) for m in registry.methods() for d in ("mnist5k", "nmnist_sim")]


@pytest.fixture(params=MATCHED, ids=[f"{m}-{d}" for m, d in MATCHED])
def matched(request, workdir):
    """(method, dataset, DataModule, model) of the matched track (configs/sweeps/matched.yaml): the same
    three convs in every method, whatever its head; on event data the SNNs at T = 2 of 8 frames, ann once
    over the frames stacked as channels."""
    method, dataset = request.param
    steps = 1 if method == "ann" else 2
    overrides = [f"method.layers={MATCHED_BACKBONE}", f"method.time_steps={steps}", "data.frames=8"]
    cfg = load_config(method, dataset, overrides if dataset == "nmnist_sim" else overrides[:2])
    torch.manual_seed(0)
    return (method, dataset, *build(cfg, method, dataset))


def test_every_method_reads_the_matched_backbone_in_the_layer_notation(matched):
    method, dataset, datamodule, model = matched
    convs = [m for m in model.net.modules() if isinstance(m, nn.Conv2d)]
    in_channels = 8 * 2 if method == "ann" and dataset == "nmnist_sim" else datamodule.input_shape[0]
    assert [(c.in_channels, c.out_channels) for c in convs[:3]] == [(in_channels, 32), (32, 64), (64, 128)]
    pools = [m for m in model.net.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 3 and not any(isinstance(m, nn.MaxPool2d) for m in model.net.modules())
    assert model.time_steps == (1 if method == "ann" else 2)
    x, y = tiny_batch(datamodule, batch_size=16)
    assert_trains_one_step(model, x, y, datamodule.num_classes)


# The voting methods' exact counts on the matched sweep, with their populations reading the last conv's
# maps averaged over H x W (method.voting_input: gap). The convs and their BN: 32 x 9 (x 2 on nmnist_sim's
# two polarities) + 2 x 32 + 32 x 64 x 9 + 2 x 64 + 64 x 128 x 9 + 2 x 128 = 92,896 on mnist5k, 93,184 on
# nmnist_sim; the voting Linear 128 x (10 classes x 10 neurons) + its BN 2 x 100 = 13,000; compressed_event's
# 4 neuron layers learn tau and the filter's alpha, 8 more. Flattened (128 x 3 x 3 or 128 x 4 x 4 features
# into 100 neurons) they were 208,296 / 208,304 and 298,184 / 298,192.
VOTING_PARAMS = {
    ("multi_threshold", "mnist5k"): 92_896 + 13_000,
    ("compressed_event", "mnist5k"): 92_896 + 13_000 + 8,
    ("multi_threshold", "nmnist_sim"): 93_184 + 13_000,
    ("compressed_event", "nmnist_sim"): 93_184 + 13_000 + 8,
}


# lif_sg's counts on matched_matrix (configs/sweeps/matched_matrix.yaml lists every method's): one backbone
# per input family, a Linear from its flattened maps to the classes.
MATRIX_PARAMS = {
    "mnist": 393_162,  # 64C3-AP2-128C3-AP2-256C3-AP2, 3x3x256 maps
    "fashion_mnist": 393_162,
    "nmnist": 411_658,  # the same convs on 2 polarities, 4x4x256 maps
    "cifar10": 9_243_722,  # VGG-11's convs (average pooling, the last pool dropped), 2x2x512 maps
    "cifar100": 9_428_132,
    "tiny_imagenet": 9_650_664,  # a 32C3-AP2 stem, then VGG-11's convs, 2x2x512 maps
    "cifar10_dvs": 9_268_746,  # VGG-11's convs at 48x48, 3x3x512 maps
    "dvs_gesture": 9_273_355,
}
SWEEP_DATASETS = {
    "matched": ["mnist5k", "nmnist_sim"],
    "matched_matrix": list(REAL_DATASETS),
}


@pytest.mark.parametrize("name", sorted(SWEEP_DATASETS))
def test_every_method_of_a_matched_sweep_has_parameters_within_10_percent_of_lif_sg(name, workdir):
    """The matched track's rule (issue 31): one head for every method, or parameters within 10 % where a head
    defines the method. Each method is built as its sweep cell runs it (at T = 1: no parameter depends on
    T), one cell per method and dataset (models only: no data is read)."""
    sweep = load_sweep(name, check=False)
    params = {}
    for cell in sweep.cells:
        if (cell.method, cell.dataset) not in params and "method.time_steps=1" in cell.args:
            _, model = build(cell.config(), cell.method, cell.dataset)
            params[cell.method, cell.dataset] = sum(p.numel() for p in model.parameters())
    datasets = SWEEP_DATASETS[name]
    assert sorted(params) == sorted((m, d) for m in registry.methods() for d in datasets)
    if name == "matched":
        assert {key: params[key] for key in VOTING_PARAMS} == VOTING_PARAMS
    else:
        assert {d: params["lif_sg", d] for d in datasets} == MATRIX_PARAMS
        # every SNN at T = 1, 2, 4 and ann once, 3 seeds, on each dataset
        snns = len(registry.methods()) - 1
        assert len([c for c in sweep.cells if c.stage is None]) == (snns * 3 + 1) * 3 * len(datasets)
    for (method, dataset), count in params.items():
        reference = params["lif_sg", dataset]
        assert abs(count - reference) <= 0.1 * reference, f"{method} on {dataset}: {count} vs {reference}"


def neuron_states(model) -> list[torch.Tensor]:
    """Every tensor memory (membrane potentials, traces) of every stateful module, in order."""
    return [
        value.clone()
        for module in model.modules()
        if isinstance(module, MemoryModule)
        for value in module._memories.values()
        if isinstance(value, torch.Tensor)
    ]


def test_neuron_state_does_not_leak_between_batches(matched):
    _, _, datamodule, model = matched
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


def bit_widths(model) -> dict[str, tuple[int, int]]:
    """(weight bits, scale parameters) of each declared synaptic layer, by name."""
    return {name: (layer.weight_bits, layer.scale_params) for name, layer in model.synaptic_layers().items()}


def test_layers_are_declared_at_32_bits_unless_albsnn_has_binarised_them(workdir):
    # The default, once: full precision and no scale parameters.
    _, model = build(load_config("lif_sg", "mnist5k"), "lif_sg", "mnist5k")
    assert set(bit_widths(model).values()) == {(32, 0)}
    # albsnn, the one method that declares other widths: full precision until it binarises; then the
    # binarised convs at 1 bit with one scale per output channel (8 each here), the first conv and the
    # classifier still at 32 bits.
    model = ALBSNN(num_classes=2, input_shape=(1, 8, 8), layers="4C3-8C3-8C3", policy="all")
    assert bit_widths(model) == {"net.0": (32, 0), "net.3": (32, 0), "net.6": (32, 0), "net.9": (32, 0)}
    model.select([(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))])
    assert bit_widths(model) == {"net.0": (32, 0), "net.3": (1, 8), "net.6": (1, 8), "net.9": (32, 0)}


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


@pytest.mark.parametrize("dataset", ["mnist5k", "nmnist_sim"])
@pytest.mark.parametrize(
    ("steps", "says"),
    [
        ("2", r"runs once per sample \(T = 1\) on every dataset"),
        ("null", r"method.time_steps=null has the wrong type: the method \(ANN\) takes time_steps as an int"),
    ],
)
def test_the_ann_baseline_runs_once_and_refuses_more_steps_on_every_dataset(workdir, dataset, steps, says):
    frames = ["data.frames=8"] if dataset == "nmnist_sim" else []
    with pytest.raises(ConfigError, match=says):
        load_config("ann", dataset, [f"method.time_steps={steps}", *frames])
    assert load_config("ann", dataset, frames).method.time_steps == 1
