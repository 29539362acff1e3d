"""``hybrid_stdb``: hybrid input encoding, single-spike neurons, STDB gradient, readout, threshold init."""

from __future__ import annotations

import math
import re

import pytest
import torch
from helpers import QUICK
from spikingjelly.activation_based import functional, layer
from torch import nn

from bench.config import load_config
from bench.errors import ConfigError, TrainingError
from bench.metrics import EnergyMetrics
from bench.runner import run
from methods.common.conversion import calibrate, fold_norms, lloyd_max
from methods.common.neurons import SingleSpikeIF
from methods.common.surrogates import TALLY
from methods.hybrid_stdb import HybridSTDB, STDBNeuron, default_layers, gate_shares, hybrid_encode

# Two quick epochs of three batches (an ANN epoch, then STDB), calibrated on two batches at two scales.
TWO_EPOCHS = [
    *QUICK,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "method.calibration_batches=2",
    "method.threshold_scales=[1.0,1.4]",
]


def spike_steps(spikes: torch.Tensor) -> list[int | None]:
    """``[T, N]`` 0/1 -> for each of the N columns the step (from 1) of its one spike, or None."""
    steps = []
    for column in spikes.T:
        fired = column.nonzero().flatten().tolist()
        assert len(fired) <= 1, f"a pixel spiked at steps {fired}"
        steps.append(fired[0] + 1 if fired else None)
    return steps


def test_hybrid_encoding_of_a_hand_made_image():
    # x_hat = (x - 2) / 4 is 0, .1, .25, .5, .75, .9, 1; spike step 2 + floor(4 (1 - x_hat)) at T = 5:
    # 2 + floor(4, 3.6, 3, 2, 1, 0.4, 0) = 6 (after T: never), 5, 5, 4, 3, 2, 2.
    image = (2 + 4 * torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])).view(1, 1, 1, 7)
    encoded = hybrid_encode(image, 5)
    assert encoded.shape == (5, 1, 1, 1, 7)
    assert torch.equal(encoded[0], image)  # the analog image at the first step
    assert spike_steps(encoded[1:].reshape(4, 7)) == [None, 4, 4, 3, 2, 1, 1]  # indices into steps 2..5
    # T = 2: every nonzero pixel fires at step 2; T = 1: the analog image alone.
    assert spike_steps(hybrid_encode(image, 2)[1:].reshape(1, 7)) == [None, 1, 1, 1, 1, 1, 1]
    assert torch.equal(hybrid_encode(image, 1), image[None])


def test_pure_temporal_coding_has_no_analog_step():
    image = (2 + 4 * torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])).view(1, 1, 1, 7)
    # step 1 + floor(5 (1 - x_hat)) at T = 5: 6 (never), 5, 4, 3, 2, 1, 1
    encoded = hybrid_encode(image, 5, analog_step=False)
    assert encoded.shape == (5, 1, 1, 1, 7)
    assert spike_steps(encoded.reshape(5, 7)) == [None, 5, 4, 3, 2, 1, 1]


def test_the_ann_twin_sees_the_hybrid_input_summed_over_the_steps():
    model = HybridSTDB(num_classes=2, input_shape=(1, 1, 7), layers="4FC")
    image = (2 + 4 * torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])).view(1, 1, 1, 7)
    model.set_ann_mode(True)
    twin_input = model.encode(image)
    assert twin_input.shape == (1, 1, 1, 1, 7)
    # the analog image plus one spike for every pixel above the sample's minimum
    torch.testing.assert_close(twin_input[0], image + torch.tensor([0.0, 1, 1, 1, 1, 1, 1]).view(1, 1, 1, 7))


def test_hybrid_encoding_scales_each_sample_on_its_own_and_a_flat_image_never_fires():
    images = torch.tensor([[0.0, 1.0, 3.0, 4.0], [-1.0, -1.0, -1.0, -1.0]]).view(2, 1, 2, 2)
    spikes = hybrid_encode(images, 5)[1:].reshape(4, 2, 4)
    # sample 0: x_hat = 0, .25, .75, 1 -> steps never, 5, 3, 2 (indices 4, 2, 1 into steps 2..5)
    assert spike_steps(spikes[:, 0]) == [None, 4, 2, 1]
    assert spikes[:, 1].sum() == 0


def test_event_frames_enter_as_counts_like_other_methods_or_binarised():
    frames = torch.tensor([[0.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.0]]).view(1, 4, 1, 1, 2)
    encoded = {}
    for mode in ("counts", "binary"):
        model = HybridSTDB(
            num_classes=2,
            input_shape=(1, 1, 2),
            kind="event",
            frames=4,
            time_steps=2,
            layers="4FC",
            event_input=mode,
        )
        encoded[mode] = model.encode(frames).flatten().tolist()  # steps = frames 1+2 and 3+4
        assert model.run_details()["event_input"] == mode
    assert encoded == {"counts": [0.0, 3.0, 2.0, 0.0], "binary": [0.0, 1.0, 1.0, 0.0]}
    assert load_config("hybrid_stdb", "nmnist_sim").method.event_input == "counts"


def test_single_spike_neuron_fires_once_and_freezes_its_membrane():
    neuron = SingleSpikeIF(v_threshold=1.0)
    spikes = neuron(torch.full((6, 1), 0.6))
    # Integrate-and-fire would fire at steps 2, 4, 6 (0.6 per step, threshold 1, reset by subtraction);
    # the single-spike neuron fires at step 2 only and keeps u = 1.2.
    assert spikes.flatten().tolist() == [0, 1, 0, 0, 0, 0]
    assert neuron.v.item() == pytest.approx(1.2)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_no_neuron_fires_twice_in_a_forward_pass_on_random_data(shape):
    torch.manual_seed(0)
    # A threshold this low makes most neurons cross it again and again after their first spike.
    model = HybridSTDB(num_classes=10, input_shape=shape, v_threshold=0.05)
    outputs = {}
    for name, neuron in model.neurons().items():
        neuron.register_forward_hook(lambda m, i, out, name=name: outputs.__setitem__(name, out))
    model(torch.randn(4, *shape))
    assert len(outputs) == len(default_layers(shape).split("C3")) + 1  # hidden layers + output layer
    for name, spikes in outputs.items():
        counts = spikes.sum(0)
        assert counts.max() == 1, f"{name}: a neuron fired {int(counts.max())} times"
        assert counts.mean() > 0.2, f"{name}: too few neurons fired for the test to mean anything"


def test_stdb_gradient_equals_its_formula():
    # do/dm = alpha exp(-beta dt), m = u / V_th - 1, dt = steps since the neuron's spike (0 at the spike's
    # step); 0 before the neuron has spiked. Inputs x[t]; loss = sum_t o[t].
    alpha, beta, v_th = 0.3, 0.5, 2.0
    neuron = SingleSpikeIF(v_threshold=v_th, alpha=alpha, beta=beta)
    x = torch.tensor([[0.8, 0.2], [1.6, 0.2], [1.0, 0.2], [0.2, 0.2]], requires_grad=True)  # [T=4, 2]
    spikes = neuron(x)
    # Neuron A: u = 0.8, 2.4 (fires at step 2, > 2.0), then frozen at 2.4: dt = -, 0, 1, 2.
    # Neuron B: u = 0.2, 0.4, 0.6, 0.8, silent: no surrogate at any step.
    assert spikes.tolist() == [[0, 0], [1, 0], [0, 0], [0, 0]]
    assert neuron.v.tolist() == pytest.approx([2.4, 0.8]) and neuron.dt.tolist() == [2, -1]
    spikes.sum().backward()
    g = [alpha * math.exp(-beta * dt) / v_th for dt in (0, 1, 2)]
    # A's membrane at steps 2-4 is x1 + x2 (integration stops at the spike); at step 1 (surrogate 0) x1.
    grad_a = [sum(g), sum(g), 0.0, 0.0]
    torch.testing.assert_close(x.grad, torch.tensor([grad_a, [0.0] * 4]).T)


# Two neurons over T = 4 (V_th 2, alpha 0.3, beta 0.5) and a loss sum_t w_t o[t] with w = 1, 2, 3, 4 (the
# gradient reaching the spikes). A: u = 0.8, 2.4 (fires at step 2), frozen after. B: 0.2 per step, silent.
GATE_INPUT = [[0.8, 0.2], [1.6, 0.2], [1.0, 0.2], [0.2, 0.2]]
STEP_WEIGHTS = torch.arange(1.0, 5.0).view(4, 1)


def gate_gradient(pre_spike_alpha: float, fused: bool, beta: float | None = 0.5):
    neuron = STDBNeuron(2.0, 1.0, 0.3, beta, fused=fused, pre_spike_alpha=pre_spike_alpha)
    neuron.tally = torch.zeros(len(TALLY), dtype=torch.float64)
    x = torch.tensor(GATE_INPUT, requires_grad=True)
    spikes = neuron(x)
    assert spikes.tolist() == [[0, 0], [1, 0], [0, 0], [0, 0]]
    (spikes * STEP_WEIGHTS).sum().backward()
    return x.grad, dict(zip(TALLY, neuron.tally.tolist(), strict=True))


@pytest.mark.parametrize("fused", [True, False])
def test_the_fired_yet_gate_and_the_gradient_before_the_first_spike_by_hand(fused):
    # After A's spike: do/dm = 0.3 exp(-0.5 dt) at dt = 0, 1, 2 (steps 2-4), x 1/V_th, weighted 2, 3, 4;
    # it reaches x1 and x2, which built the membrane that fired.
    after = sum(w * 0.3 * math.exp(-0.5 * dt) / 2.0 for w, dt in ((2, 0), (3, 1), (4, 2)))
    gated, _ = gate_gradient(0.0, fused)
    # The gate: A's step 1 and all of B's steps are before a spike, so they pass nothing.
    torch.testing.assert_close(gated, torch.tensor([[after, 0.0], [after, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    # pre_spike_alpha = 0.1 passes do/dm = 0.1 there: dL/du[t] = w_t 0.1 / 2, and u[t] = x1 + ... + x[t]:
    # A: x1 gets 1 x 0.05 more; B: x[s] gets 0.05 (w_s + ... + w_4) = 0.5, 0.45, 0.35, 0.2.
    passed, _ = gate_gradient(0.1, fused)
    expected = [[after + 0.05, 0.5], [after, 0.45], [0.0, 0.35], [0.0, 0.2]]
    torch.testing.assert_close(passed, torch.tensor(expected))


def test_a_leaky_membrane_passes_the_pre_spike_gradient_back_with_the_leak():
    neuron = STDBNeuron(2.0, 0.5, 0.3, 0.5, pre_spike_alpha=0.1)  # leak 0.5: u[t] = 0.5 u[t-1] + x[t]
    x = torch.full((4, 1), 0.2, requires_grad=True)  # silent: u stays below 0.4
    (neuron(x) * STEP_WEIGHTS).sum().backward()
    # dL/dx[s] = sum_{t >= s} 0.5^(t - s) w_t 0.1 / 2
    expected = [sum(0.5 ** (t - s) * (t + 1) * 0.05 for t in range(s, 4)) for s in range(4)]
    torch.testing.assert_close(x.grad.flatten(), torch.tensor(expected))


def test_the_tally_of_the_gradient_on_steps_before_the_spike_by_hand():
    # |dL/do| = w_t everywhere. Before a spike: A's step 1 (1) and B's four steps (10): 11 of 20, 5 of 8
    # steps. pre_spike_alpha = 0.1 passes 11 x 0.1 there; after A's spike 0.3 (2 + 3 e^-0.5 + 4 e^-1).
    after = 0.3 * (2 + 3 * math.exp(-0.5) + 4 * math.exp(-1))
    _, passing = gate_gradient(0.1, fused=True)
    counts = {"grad_before": 11, "grad_all": 20, "steps_before": 5, "steps_all": 8}
    assert passing == pytest.approx({**counts, "passed_before": 1.1, "passed_after": after})
    shares = gate_shares(torch.tensor(list(passing.values())), gated=False)
    assert shares == pytest.approx(
        {
            "pre_spike_share": 0.55,
            "pre_spike_steps": 0.625,
            "blocked_share": 0.0,
            "pre_spike_passed_share": round(1.1 / (1.1 + after), 4),
        }
    )
    _, gate = gate_gradient(0.0, fused=True)  # the gate: nothing passes before the spike; 0.55 is blocked
    assert gate == pytest.approx({**counts, "passed_before": 0, "passed_after": 0})
    shares = gate_shares(torch.tensor(list(gate.values())), gated=True)
    assert (
        shares["blocked_share"] == shares["pre_spike_share"] == 0.55 and shares["pre_spike_passed_share"] == 0
    )
    _, constant = gate_gradient(0.0, fused=True, beta=None)  # alpha = 0.3 at every step: 3.3 and 2.7 passed
    assert constant == pytest.approx({**counts, "passed_before": 3.3, "passed_after": 2.7})
    assert gate_shares(torch.tensor(list(constant.values())), gated=False)["pre_spike_passed_share"] == 0.55


def surrogate_at(neuron: SingleSpikeIF, step: int) -> float:
    """The gradient of the output at ``step`` (from 0) of a neuron driven to fire at the first step."""
    x = torch.tensor([[2.0 * float(neuron.v_threshold)]] + [[0.0]] * 4, requires_grad=True)  # T = 5
    neuron.reset()
    neuron(x)[step].sum().backward()
    return float(x.grad[0, 0])


def test_stdb_surrogate_depends_on_spike_timing_at_the_defaults():
    model = HybridSTDB(num_classes=10, input_shape=(1, 28, 28))  # the method's defaults, T = 5
    cfg_beta = load_config("hybrid_stdb", "mnist5k").method.stdb_beta
    neuron = next(iter(model.neurons().values()))
    assert neuron.beta == cfg_beta == 0.5
    ratio = surrogate_at(neuron, 0) / surrogate_at(neuron, 4)  # dt = 0 against dt = T - 1 = 4
    assert ratio == pytest.approx(math.exp(0.5 * 4)) and ratio >= 5
    constant = HybridSTDB(num_classes=10, input_shape=(1, 28, 28), surrogate="constant")
    flat = next(iter(constant.neurons().values()))
    assert surrogate_at(flat, 0) == surrogate_at(flat, 4) == pytest.approx(0.3 / float(flat.v_threshold))
    silent = SingleSpikeIF(v_threshold=1.0, beta=None)  # constant: a neuron that never fires passes alpha
    x = torch.full((3, 1), 0.1, requires_grad=True)
    silent(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.9], [0.6], [0.3]]))


def test_readout_combines_output_spike_time_and_membrane():
    model = HybridSTDB(num_classes=3, input_shape=(1, 1, 2), time_steps=3, layers="4FC", time_weight=0.5)
    out = model.net[-1]
    out.v_threshold.fill_(2.0)
    out.v = torch.tensor([[3.0, 1.0, 2.4]])
    spikes = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).view(3, 1, 3)
    # t = 2, T + 1 = 4 (silent), 1; z = U / V_th - 0.5 t = 1.5 - 1, 0.5 - 2, 1.2 - 0.5
    torch.testing.assert_close(model.readout(spikes), torch.tensor([[0.5, -1.5, 0.7]]))


def test_folded_norms_give_the_ann_pre_activation_as_the_current_integrated_over_T():
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(3, 4, bias=False, step_mode="m"), layer.BatchNorm1d(4, step_mode="m"), SingleSpikeIF()
    )
    norm = net[1]
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.5, -0.5, 2.0, 1.0]))
        norm.bias.copy_(torch.tensor([0.3, -0.2, 0.0, 1.0]))
        norm.running_mean.copy_(torch.tensor([0.1, 0.2, -0.3, 0.4]))
        norm.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 2.0]))
    net.eval()
    x = torch.randn(1, 5, 3)
    with torch.no_grad():
        ann = norm(net[0](x))[0]
        fold_norms(net, time_steps=4)
        steps = torch.stack([x[0] * 0.25] * 4)  # any split of x over the 4 steps
        snn = norm(net[0](steps)).sum(0)
    torch.testing.assert_close(snn, ann)
    assert norm.weight.tolist() == [1.0] * 4 and norm.running_mean.abs().sum() == 0


def test_lloyd_max_quantiser_by_hand():
    # ReLU(z) = 0, 1, 1, 3, 3: threshold = mean / 2 = 1 -> level = mean above 1 = 3 -> threshold 1.5 -> 3
    assert lloyd_max(torch.tensor([-1.0, 1.0, 1.0, 3.0, 3.0])) == (1.5, 3.0)
    with pytest.raises(TrainingError, match="never has a positive input"):
        lloyd_max(torch.tensor([-1.0, 0.0]))


def test_calibration_sets_thresholds_from_the_snn_mode_input_and_folds_levels_forward():
    first, second = layer.Linear(2, 2, bias=False), layer.Linear(2, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
        second.weight.copy_(torch.tensor([[0.5, -1.0]]))
    net = nn.Sequential(first, SingleSpikeIF(), second, SingleSpikeIF(output=True))
    # two samples, two steps; integrated input of layer 1: x summed over t = [3, 3] -> [9, -1.5],
    # [1, 0] -> [1, -1]. Positive values 9, 1: threshold = 5 / 2 -> level 9 -> threshold 4.5 -> level 9.
    x = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[2.0, 2.0], [0.0, 0.0]]])  # [T=2, B=2, 2]
    calls = {first: 0, second: 0}
    for synapse in calls:
        synapse.register_forward_hook(lambda module, *_: calls.__setitem__(module, calls[module] + 1))
    chosen, (output,) = calibrate(net, [x], scale=1.2)
    assert calls == {first: 1, second: 1}  # the batch goes up the network once, one layer at a time
    functional.reset_net(net)
    assert torch.equal(output, net(x))  # what the converted network outputs: sample 0's output fires at 2
    assert output[:, :, 0].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert chosen["1"] == {"threshold": pytest.approx(1.2 * 4.5), "level": pytest.approx(9.0)}
    assert net[2].weight.tolist() == [[4.5, -9.0]]  # a spike of layer 1 stands for 9
    # Layer 1 at threshold 5.4: sample 0, neuron 0 integrates 3 then 9 and fires at step 2; nothing else.
    # The output layer then integrates 4.5 for sample 0, 0 for sample 1: Lloyd-Max threshold 2.25, x 1.2.
    assert chosen["3"] == {"threshold": pytest.approx(1.2 * 2.25)}


def test_conv1_costs_macs_on_the_analog_step_and_acs_on_the_spike_steps():
    torch.manual_seed(0)
    model = HybridSTDB(num_classes=10, input_shape=(1, 28, 28), v_threshold=0.5)  # BN on batch statistics
    x = torch.randn(2, 1, 28, 28)
    callback = EnergyMetrics(latency_samples=0, throughput_batches=0)
    callback.attach(model)
    with torch.no_grad():
        model(x)
    callback.flush(len(x))
    callback.detach()
    callback.summarize(model)
    conv1, *later = [entry for entry in callback.layers if "dense_ops" in entry]
    assert conv1["name"] == "net.0.synapse" and conv1["input"] == "mixed"
    # one analog step of five: 28x28 outputs x 32 channels x 9 taps, padding taps included
    assert conv1["macs"] == conv1["padded_dense_ops"] / 5 == 28 * 28 * 32 * 9
    assert 0 < conv1["acs"] < conv1["dense_ops"] * 4 / 5  # each pixel spikes at most once in steps 2-5
    # conv2 and the FC layer read average-pooled spikes: NeuroBench's effective MACs; the output layer ACs
    *pooled, output = later
    assert [entry["name"] for entry in pooled] == ["net.4", "net.9"]
    assert all(e["input"] == "pooled spikes" and e["macs"] == e["effective_ops"] > 0 for e in pooled)
    assert output["input"] == "spikes" and output["macs"] == 0 and output["acs"] > 0


def test_bad_hyper_parameters_are_config_errors():
    bad = {
        "ann_epochs": -1,
        "ann_fraction": 1.5,
        "leak": 1.5,
        "stdb_alpha": 0.0,
        "surrogate": "linear",
        "threshold_scales": [],
        "pre_spike_alpha": -0.1,
        "event_input": "spikes",
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError, match=re.escape(f"method.{key}={value!r}")):
            HybridSTDB(num_classes=10, input_shape=(1, 28, 28), **{key: value})
    with pytest.raises(ConfigError, match=r"method.pre_spike_alpha=0.1 .* unless method.surrogate=stdb"):
        HybridSTDB(num_classes=10, input_shape=(1, 28, 28), surrogate="constant", pre_spike_alpha=0.1)


def test_the_ann_phase_is_a_fraction_of_the_epoch_budget_unless_ann_epochs_is_given():
    def ann_epochs(max_epochs, **kwargs):
        return HybridSTDB(num_classes=10, input_shape=(1, 28, 28), **kwargs).resolve_ann_epochs(max_epochs)

    # rounded half up, at least one ANN epoch unless the fraction is 0, never more than the budget
    assert [ann_epochs(e, ann_fraction=0.3) for e in (1, 2, 5, 6, 10, 20)] == [1, 1, 2, 2, 3, 6]
    assert [ann_epochs(e, ann_fraction=0.5) for e in (1, 3, 5)] == [1, 2, 3]
    assert ann_epochs(10, ann_fraction=0.0) == 0 and ann_epochs(4, ann_fraction=1.0) == 4
    assert ann_epochs(10, ann_fraction=0.3, ann_epochs=7) == 7  # given: the fraction is not used
    with pytest.raises(ConfigError, match="set trainer.max_epochs, or method.ann_epochs"):
        ann_epochs(-1, ann_fraction=0.3)


def test_the_ann_phase_and_the_conversion_run_inside_lightnings_fit(workdir, monkeypatch, capsys):
    modes = []
    step = HybridSTDB.training_step
    monkeypatch.setattr(
        HybridSTDB,
        "training_step",
        lambda self, batch, i: (modes.append((self.current_epoch, self.ann_mode)), step(self, batch, i))[1],
    )
    record = run("hybrid_stdb", "mnist5k", [*TWO_EPOCHS, "method.ann_fraction=0.5"]).record
    assert sorted(set(modes)) == [(0, True), (1, False)]  # epoch 0: the ANN twin; epoch 1: STDB
    details = record["method_details"]
    assert details["ann_epochs"] == details["stdb_epochs"] == 1  # half of the two epochs each
    assert details["ann_val_acc"] > 0.1  # above chance after one epoch
    assert details["threshold_scale"] in (1.0, 1.4) and set(details["calibration_acc"]) == {"1.0", "1.4"}
    assert set(details["conversion"]) == {"net.2", "net.6", "net.11", "net.13"}
    assert details["converted_snn_val_acc"] > 0.1
    for name, entry in details["conversion"].items():
        assert details["final_thresholds"][name] == pytest.approx(entry["threshold"])  # fixed in STDB
    metrics = record["metrics"]
    assert metrics["time_steps"] == 5 and metrics["test_acc"] > 0.1
    # the history: each epoch's validation accuracy, and in STDB the gradient the "fired yet" gate blocks
    ann, stdb = details["epochs"]
    assert (ann["phase"], stdb["phase"]) == ("ann", "stdb") and ann["val_acc"] == pytest.approx(
        details["ann_val_acc"], abs=1e-4
    )
    assert stdb["val_acc"] == pytest.approx(metrics["val_acc"], abs=1e-4)
    assert 0 < stdb["blocked_share"] == stdb["pre_spike_share"] < 1 and stdb["pre_spike_passed_share"] == 0
    assert set(stdb["pre_spike_share_by_layer"]) == {"net.2", "net.6", "net.11"}  # not the output layer
    facts = details["facts"]
    assert facts["converted_accuracy"] == details["converted_snn_val_acc"]
    assert (
        facts["converted_calibration_accuracy"] == details["calibration_acc"][str(details["threshold_scale"])]
    )
    assert facts["blocked_share"] == stdb["blocked_share"] and facts["stdb_epochs"] == 1
    assert facts["stdb_gain"] == pytest.approx(stdb["val_acc"] - facts["converted_accuracy"], abs=1e-4)
    assert all(isinstance(value, int | float) for value in facts.values())
    # the conversion says what it does, each scale's outcome and how long it took, between the epochs' lines
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("hybrid_stdb: ")]
    assert said[0].startswith("hybrid_stdb: converting the ANN to an SNN at T = 5")
    assert "2 scale(s) on 2 training batch(es)" in said[0]
    assert [line.split(": calibration accuracy")[0] for line in said[1:3]] == [
        "hybrid_stdb: threshold scale 1.0 (1/2)",
        "hybrid_stdb: threshold scale 1.4 (2/2)",
    ]
    assert said[-1].startswith("hybrid_stdb: converted in ") and "STDB fine-tuning follows" in said[-1]


def test_a_run_that_ends_with_the_ann_phase_tests_the_converted_snn(workdir):
    overrides = [*TWO_EPOCHS, "method.ann_epochs=2"]  # as many ANN epochs as epochs
    details = run("hybrid_stdb", "mnist5k", overrides).record["method_details"]
    assert details["converted_snn_val_acc"] is not None and "threshold_scale" in details


def test_the_details_travel_with_a_checkpoint_so_a_resumed_run_keeps_its_history(tmp_path):
    model = HybridSTDB(num_classes=10, input_shape=(1, 28, 28))
    model.details.update(ann_val_acc=0.9, epochs=[{"epoch": 0, "phase": "ann", "val_acc": 0.9}])
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "last.ckpt")
    resumed = HybridSTDB(num_classes=10, input_shape=(1, 28, 28))
    resumed.on_load_checkpoint(torch.load(tmp_path / "last.ckpt", weights_only=True))
    assert resumed.details == model.details and resumed.details["epochs"][0]["val_acc"] == 0.9


def test_converted_norms_stay_frozen_biases_in_training_mode():
    model = HybridSTDB(num_classes=10, input_shape=(1, 28, 28))
    model.converted.fill_(True)
    model.train()
    norms = [m for m in model.net.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d)]
    assert norms and all(not m.training and not m.weight.requires_grad for m in norms)


def test_from_scratch_skips_the_ann_phase(workdir, monkeypatch):
    monkeypatch.setattr(HybridSTDB, "convert", lambda *args: pytest.fail("the ANN was converted"))
    overrides = [*TWO_EPOCHS, "method.ann_epochs=0", "method.v_threshold=0.5"]
    details = run("hybrid_stdb", "mnist5k", overrides).record["method_details"]
    assert "ann_val_acc" not in details
    assert set(details["final_thresholds"].values()) == {0.5}
    facts = details["facts"]  # nothing converted; both epochs are STDB epochs, gated
    assert (
        facts["converted_accuracy"] is None and facts["stdb_epochs"] == 2 and 0 < facts["blocked_share"] < 1
    )


def test_state_is_reset_between_samples_including_the_spike_bookkeeping():
    model = HybridSTDB(num_classes=10, input_shape=(1, 28, 28), v_threshold=0.2)
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        first = model(x)
        second = model(x)
        functional.reset_net(model.net)
        model.net(model.encode(x))
        third = model(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first, third, rtol=0, atol=0)


def test_step_by_step_gives_the_same_spikes_state_and_gradient_as_a_sequence():
    x = torch.tensor([[0.8, 0.2, -0.5], [1.6, 0.2, 2.0], [1.0, 0.2, 0.1], [0.2, 0.2, 0.3]])
    results = []
    for mode in ("m", "s"):
        neuron = SingleSpikeIF(v_threshold=2.0, leak=0.9, beta=0.5, step_mode=mode)
        inputs = x.clone().requires_grad_()
        spikes = neuron(inputs) if mode == "m" else torch.stack([neuron(step) for step in inputs])
        (spikes * torch.arange(1.0, 5.0).view(4, 1)).sum().backward()
        results.append((spikes, neuron.v, neuron.fired, neuron.dt, inputs.grad))
    for sequence, stepwise in zip(*results, strict=True):
        torch.testing.assert_close(sequence, stepwise)
    spikes, v, fired, dt, _ = results[0]
    # leak 0.9: A: u = 0.8, 0.72 + 1.6 = 2.32 > 2 fires at step 2; C: -0.5, -0.45 + 2 = 1.55, 1.495, 1.6455.
    assert spikes.T.tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    torch.testing.assert_close(v, torch.tensor([2.32, 0.2 * (1 + 0.9 + 0.81 + 0.729), 1.6455]))
    assert fired.tolist() == [True, False, False]
    assert dt.tolist() == [2, -1, -1]  # A: spike at step 2 of 4, 2 steps before the end; B, C never
