"""``hybrid_stdb``: hybrid input encoding, single-spike neurons, STDB gradient, readout, threshold init."""

from __future__ import annotations

import math

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from bench.errors import ConfigError, TrainingError
from bench.metrics import EnergyMetrics
from bench.runner import run
from methods.hybrid_stdb import HybridSTDB, SingleSpikeIF, calibrate_thresholds, default_layers, hybrid_encode

QUICK = [
    "trainer.enable_progress_bar=false",
    "logger=none",
    "trainer.enable_checkpointing=false",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "metrics.latency_samples=2",
    "metrics.throughput_batches=1",
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


def test_hybrid_encoding_scales_each_sample_on_its_own_and_a_flat_image_never_fires():
    images = torch.tensor([[0.0, 1.0, 3.0, 4.0], [-1.0, -1.0, -1.0, -1.0]]).view(2, 1, 2, 2)
    spikes = hybrid_encode(images, 5)[1:].reshape(4, 2, 4)
    # sample 0: x_hat = 0, .25, .75, 1 -> steps never, 5, 3, 2 (indices 4, 2, 1 into steps 2..5)
    assert spike_steps(spikes[:, 0]) == [None, 4, 2, 1]
    assert spikes[:, 1].sum() == 0


def test_event_frames_pass_through_as_binary_spikes():
    model = HybridSTDB(
        num_classes=2, input_shape=(1, 1, 2), kind="event", frames=4, time_steps=2, layers="4FC"
    )
    frames = torch.tensor([[0.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.0]]).view(1, 4, 1, 1, 2)
    encoded = model.encode(frames)  # steps = frames 1+2 and 3+4, each pixel 1 if it had any event
    assert encoded.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]


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
    # do/dm = alpha exp(-beta dt), m = u / V_th - 1, dt = steps since the last spike, counted from the
    # reset state before step 1 (dt = 1 at step 1). Inputs x[t]; loss = sum_t o[t].
    alpha, beta, v_th = 0.3, 0.5, 2.0
    neuron = SingleSpikeIF(v_threshold=v_th, alpha=alpha, beta=beta)
    x = torch.tensor([[0.8, 0.2], [1.6, 0.2], [1.0, 0.2], [0.2, 0.2]], requires_grad=True)  # [T=4, 2]
    spikes = neuron(x)
    # Neuron A: u = 0.8, 2.4 (fires at step 2, > 2.0), then frozen at 2.4: dt = 1, 2, 1, 2.
    # Neuron B: u = 0.2, 0.4, 0.6, 0.8, silent: dt = 1, 2, 3, 4.
    assert spikes.tolist() == [[0, 0], [1, 0], [0, 0], [0, 0]]
    assert neuron.v.tolist() == pytest.approx([2.4, 0.8])
    spikes.sum().backward()
    g = [alpha * math.exp(-beta * dt) / v_th for dt in (1, 2, 3, 4)]
    # u[t] = sum of x[s] over s <= t while open: A integrates steps 1-2 only, B every step.
    grad_a = [g[0] + g[1] + g[0] + g[1], g[1] + g[0] + g[1], 0.0, 0.0]
    grad_b = [sum(g[0:]), sum(g[1:]), sum(g[2:]), g[3]]
    torch.testing.assert_close(x.grad, torch.tensor([grad_a, grad_b]).T)


def test_readout_combines_output_spike_time_and_membrane():
    model = HybridSTDB(num_classes=3, input_shape=(1, 1, 2), time_steps=3, layers="4FC", time_weight=0.5)
    out = model.net[-1]
    out.v_threshold.fill_(2.0)
    out.v = torch.tensor([[3.0, 1.0, 2.4]])
    spikes = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).view(3, 1, 3)
    # t = 2, T + 1 = 4 (silent), 1; z = U / V_th - 0.5 t = 1.5 - 1, 0.5 - 2, 1.2 - 0.5
    torch.testing.assert_close(model.readout(spikes), torch.tensor([[0.5, -1.5, 0.7]]))


def two_layer_net() -> nn.Sequential:
    first, second = layer.Linear(2, 2, bias=False), layer.Linear(2, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
        second.weight.copy_(torch.tensor([[0.5, -1.0]]))
    return nn.Sequential(first, SingleSpikeIF(), second, SingleSpikeIF(output=True))


def test_thresholds_are_the_scaled_max_ann_pre_activation():
    net = two_layer_net()
    x = torch.tensor([[[1.0, 1.0], [2.0, -1.0]]])  # [T=1, B=2, 2]
    # Layer 1 pre-activations: [3, -0.5] and [0, -2.5] -> max 3; ReLU -> [3, 0], [0, 0].
    # Layer 2 pre-activations: 0.5 * 3 = 1.5 and 0 -> max 1.5.
    thresholds = calibrate_thresholds(net, x, scaling_factor=0.7)
    assert thresholds == pytest.approx({"1": 2.1, "3": 1.05})
    assert float(net[1].v_threshold) == pytest.approx(2.1) and float(net[3].v_threshold) == pytest.approx(
        1.05
    )
    assert not net[1].ann_mode and not net[3].ann_mode  # back to spiking
    with pytest.raises(TrainingError, match="no positive pre-activation"):
        calibrate_thresholds(net, -x.abs(), scaling_factor=0.7)


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
    for key, value in (("scaling_factor", 0.0), ("ann_epochs", -1), ("leak", 1.5), ("stdb_alpha", 0.0)):
        with pytest.raises(ConfigError, match=f"method.{key}={value}"):
            HybridSTDB(num_classes=10, input_shape=(1, 28, 28), **{key: value})


def test_hybrid_run_pretrains_the_ann_then_fine_tunes_the_converted_snn(workdir):
    record = run("hybrid_stdb", "mnist5k", [*QUICK, "method.ann_epochs=1"]).record
    details = record["method_details"]
    assert details["ann_epochs"] == 1 and 0 <= details["ann_val_acc"] <= 1
    assert set(details["thresholds"]) == {"net.2", "net.6", "net.11", "net.13"}
    assert all(value > 0 and value != 1.0 for value in details["thresholds"].values())
    assert details["final_thresholds"] == details["thresholds"]  # fixed during STDB fine-tuning
    metrics = record["metrics"]
    assert metrics["time_steps"] == 5 and metrics["ann_snn_energy_ratio"] > 1


def test_from_scratch_skips_the_ann_phase(workdir, monkeypatch):
    monkeypatch.setattr(HybridSTDB, "pretrain_ann", lambda *args: pytest.fail("the ANN phase ran"))
    record = run("hybrid_stdb", "mnist5k", [*QUICK, "method.ann_epochs=0", "method.v_threshold=0.5"]).record
    details = record["method_details"]
    assert "ann_val_acc" not in details
    assert set(details["final_thresholds"].values()) == {0.5}


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
    assert fired.tolist() == [True, False, False] and dt.tolist() == [
        3,
        5,
        5,
    ]  # A: spike at step 2 of 4 -> dt 3 next


def test_bn_statistics_are_re_estimated_on_the_snn_inputs():
    torch.manual_seed(0)
    model = HybridSTDB(num_classes=10, input_shape=(1, 28, 28))
    x = torch.randn(6, 1, 28, 28)
    conv_outputs = []
    model.net[0].register_forward_hook(lambda m, i, out: conv_outputs.append(out.detach()))
    model.recalibrate_norms([(x, torch.zeros(6))], batches=1)
    (out,) = conv_outputs
    assert out.shape[:2] == (5, 6)  # the hybrid-coded sequence, not the ANN's single analog step
    bn = model.net[1]
    torch.testing.assert_close(bn.running_mean, out.mean((0, 1, 3, 4)))
    torch.testing.assert_close(bn.running_var, out.transpose(0, 2).flatten(1).var(1))
    assert bn.momentum == 0.1 and model.training
