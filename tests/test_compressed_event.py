"""``compressed_event``: the filter ablation at equal gain, the neurons' own learning rate, the facts.

Compression, event re-binning and the network are tested with ``multi_threshold`` in
``test_multi_threshold_methods.py``.
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from helpers import quiet_trainer
from torch.utils.data import DataLoader, TensorDataset

from bench.config import load_config
from bench.errors import ConfigError
from methods.common.neurons import MultiThresholdLIF
from methods.compressed_event import CompressedEventSNN


def ablation_model(*overrides: str, **options) -> CompressedEventSNN:
    """The model of the ablation sweep's cell (nmnist_sim's config) with the variant's overrides."""
    method = dict(load_config("compressed_event", "nmnist_sim", list(overrides)).method)
    method.update(options)
    return CompressedEventSNN(num_classes=10, input_shape=(2, 34, 34), kind="event", frames=6, **method)


def neurons(model: CompressedEventSNN) -> list[MultiThresholdLIF]:
    return list(model.neurons().values())


def test_without_the_filter_a_neuron_keeps_the_full_models_first_step_gain():
    # Full: J = 0.5 J + 0.5 x, H = V + (J - V) / 2 (alpha 0.5, tau 2), K = 3, V_th = 0.25, soft reset.
    # Without the filter the input is scaled by g = 1 - alpha_0 = 0.5: H = V + (0.5 x - V) / 2.
    # x = 0.6, 0.6:
    #   full:        J = 0.3, 0.45; H = 0.15 (0), 0.15 + (0.45 - 0.15) / 2 = 0.3 (1); V = 0.15, 0.05.
    #   no filter:   H = 0.15 (0), 0.15 + (0.3 - 0.15) / 2 = 0.225 (0); V = 0.15, 0.225.
    #   (old, g = 1: H = 0.3 (1), V = 0.05; the first step already differed.)
    # Step 1 is the same; step 2 differs: the ablation removes the filter's memory, not its gain.
    full = neurons(ablation_model())[0]
    plain = neurons(ablation_model("method.synaptic_filter=false"))[0]
    assert not plain.synaptic_filter and plain.input_gain == 0.5 and full.input_gain == 1.0
    x = torch.full((2, 1), 0.6)
    with torch.no_grad():
        out_full, out_plain = full(x[:1]), plain(x[:1])
        assert out_full.tolist() == out_plain.tolist() == [[0.0]]
        assert full.v.item() == plain.v.item() == pytest.approx(0.15)
        assert full(x[1:]).tolist() == [[1.0]] and full.v.item() == pytest.approx(0.05)
        assert plain(x[1:]).tolist() == [[0.0]] and plain.v.item() == pytest.approx(0.225)


def test_at_t1_the_whole_network_without_the_filter_equals_the_full_one():
    """At T = 1 the filter is the constant gain 1 - alpha: with the same weights, every layer of the
    equal-gain no-filter network fires exactly as the full one's (the old gain of 1 did not)."""
    small = dict(time_steps=1, frames=2, layers="4C3-MP2-4C3-MP2", voting=2)
    torch.manual_seed(0)
    full = CompressedEventSNN(num_classes=2, input_shape=(2, 8, 8), kind="event", **small)
    plain = CompressedEventSNN(
        num_classes=2, input_shape=(2, 8, 8), kind="event", synaptic_filter=False, **small
    )
    missing, unexpected = plain.load_state_dict(full.state_dict(), strict=False)
    assert not missing and unexpected and all(key.endswith("w_syn") for key in unexpected)
    x = torch.randint(0, 3, (6, 2, 2, 8, 8)).float()
    spikes = {"full": [], "plain": []}
    for name, model in (("full", full), ("plain", plain)):
        for neuron in neurons(model):
            neuron.register_forward_hook(lambda module, args, output, name=name: spikes[name].append(output))
        with torch.no_grad():
            model(x)
    assert len(spikes["full"]) == 3 and all(s.sum() > 0 for s in spikes["full"])
    for a, b in zip(spikes["full"], spikes["plain"], strict=True):
        assert torch.equal(a, b)


def test_at_t1_tau_is_only_a_gain_and_on_images_compression_does_nothing():
    """The module docstring's two statements: at T = 1 a neuron sees ``(1 - alpha) g / tau`` of its input
    and nothing else, so tau = 4 with twice the gain fires exactly as tau = 2; on static images
    ``compression`` is ignored."""
    small = dict(num_classes=2, input_shape=(2, 8, 8), kind="event", time_steps=1, frames=2, layers="4C3-MP2")
    torch.manual_seed(0)
    slow = CompressedEventSNN(tau=4.0, input_gain=2.0, learnable_tau=False, **small)
    fast = CompressedEventSNN(tau=2.0, learnable_tau=False, **small)
    fast.load_state_dict(slow.state_dict())
    x = torch.randint(0, 3, (6, 2, 2, 8, 8)).float()
    with torch.no_grad():
        rates = slow(x)
        assert torch.equal(rates, fast(x)) and rates.sum() > 0 and slow.net[2].v.abs().sum() > 0
    image = torch.rand(3, 1, 4, 4)
    on, off = (
        CompressedEventSNN(num_classes=2, input_shape=(1, 4, 4), time_steps=3, layers="4FC", compression=c)
        for c in (True, False)
    )
    assert torch.equal(on.encode(image), off.encode(image))


def test_the_facts_show_equal_first_step_gain_at_initialisation():
    full = ablation_model().run_details()["facts"]
    plain = ablation_model("method.synaptic_filter=false").run_details()["facts"]
    unit = ablation_model("method.synaptic_filter=false", "method.input_gain=1.0").run_details()["facts"]
    assert full["first_step_gain"] == pytest.approx(0.25) and plain["first_step_gain"] == pytest.approx(0.25)
    assert unit["first_step_gain"] == pytest.approx(0.5)  # the gain the ablation had before issue 30
    assert (full["input_gain"], plain["input_gain"], unit["input_gain"]) == (1.0, 0.5, 1.0)
    assert "synaptic_alpha_mean" in full and not any(key.startswith("synaptic_alpha") for key in plain)


def test_the_facts_are_the_learnt_values_over_layers():
    model = CompressedEventSNN(num_classes=2, input_shape=(2, 8, 8), layers="4C3-MP2-4FC", voting=1)
    taus, alphas = [1.5, 3.0, 5.0], [0.2, 0.5, 0.8]
    with torch.no_grad():
        for neuron, tau, alpha in zip(neurons(model), taus, alphas, strict=True):
            neuron.w.fill_(-math.log(tau - 1))  # 1/tau = sigmoid(w)
            neuron.w_syn.fill_(math.log(alpha / (1 - alpha)))  # alpha = sigmoid(w_syn)
    details = model.run_details()
    assert [d["tau"] for d in details["neurons"].values()] == pytest.approx(taus)
    facts = details["facts"]
    assert all(isinstance(value, float) for value in facts.values())
    expected = {
        "input_gain": 1.0,
        "first_step_gain": (0.8 / 1.5 + 0.5 / 3.0 + 0.2 / 5.0) / 3,
        "tau_mean": 9.5 / 3,
        "tau_min": 1.5,
        "tau_max": 5.0,
        "synaptic_alpha_mean": 0.5,
        "synaptic_alpha_min": 0.2,
        "synaptic_alpha_max": 0.8,
    }
    assert facts == pytest.approx(expected)


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("input_gain", "unit", r"method.input_gain must be null \(equal gain\) or a number > 0, got 'unit'"),
        ("input_gain", 0.0, r"method.input_gain must be null \(equal gain\) or a number > 0, got 0.0"),
        ("input_gain", True, r"method.input_gain must be null \(equal gain\) or a number > 0, got True"),
        ("neuron_lr", 0.0, r"method.neuron_lr must be null \(the same as method.lr\) or > 0, got 0.0"),
        ("neuron_lr", "fast", "method.neuron_lr must be null"),
        ("neuron_lr", True, "method.neuron_lr must be null"),
    ],
)
def test_bad_gain_and_neuron_learning_rate_are_config_errors(option, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        CompressedEventSNN(num_classes=2, input_shape=(1, 4, 4), layers="4FC", **{option: value})


def test_the_neuron_input_gain_scales_the_input_in_both_implementations():
    x = torch.rand(4, 3, 5) * 2
    for fused in (True, False):
        gained = MultiThresholdLIF(
            levels=3, v_threshold=0.25, synaptic_filter=True, input_gain=0.5, fused=fused
        )
        plain = MultiThresholdLIF(levels=3, v_threshold=0.25, synaptic_filter=True, fused=fused)
        inputs = x.clone().requires_grad_()
        halved = (0.5 * x).requires_grad_()
        gained(inputs).sum().backward()
        plain(halved).sum().backward()
        assert torch.equal(gained.v, plain.v) and torch.equal(gained.i_syn, plain.i_syn)
        torch.testing.assert_close(inputs.grad, 0.5 * halved.grad)
    with pytest.raises(ConfigError, match="input_gain must be > 0"):
        MultiThresholdLIF(input_gain=0.0)


def fit_tiny(model: CompressedEventSNN, steps: int) -> pl.Trainer:
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (8 * steps, 4, 2, 8, 8), generator=generator).float()
    y = torch.randint(0, 2, (8 * steps,), generator=generator)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    return trainer


def test_neuron_lr_gives_tau_and_alpha_their_own_cosine_decayed_learning_rate():
    small = dict(num_classes=2, input_shape=(2, 8, 8), kind="event", frames=4, layers="4C3-MP2", voting=2)
    torch.manual_seed(0)
    model = CompressedEventSNN(neuron_lr=0.1, **small)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = fit_tiny(model, steps=4)
    groups = trainer.optimizers[0].param_groups
    assert [group["initial_lr"] for group in groups] == [1e-3, 0.1]
    own = [p for n in neurons(model) for p in (n.w, n.w_syn)]
    assert len(groups[1]["params"]) == 4 and all(any(p is q for q in own) for p in groups[1]["params"])
    assert len(groups[0]["params"]) + 4 == len(list(model.parameters()))
    assert all(group["lr"] == pytest.approx(0.0, abs=1e-12) for group in groups)  # cosine to 0 in 4 steps
    # Adam moves each parameter by about its learning rate per step: the neurons' w by up to 4 x 0.1 x
    # (the cosine's mean), the weights by at most a hundredth of that.
    moved = {name: (p.detach() - start[name]).abs().max().item() for name, p in model.named_parameters()}
    assert max(v for k, v in moved.items() if k.endswith(("w", "w_syn"))) > 0.05
    assert max(v for k, v in moved.items() if not k.endswith(("w", "w_syn"))) < 4e-3
    # Without it: one group at method.lr.
    torch.manual_seed(0)
    trainer = fit_tiny(CompressedEventSNN(**small), steps=4)
    assert [group["initial_lr"] for group in trainer.optimizers[0].param_groups] == [1e-3]
