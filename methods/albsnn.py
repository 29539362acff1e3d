"""``albsnn``: adaptive local binary SNN with accuracy loss estimators, T = 1.

Paper: Y. Pei, C. Xu, Z. Wu, Y. Liu, Y. Yang, "ALBSNN: ultra-low latency adaptive local binary spiking
neural network with accuracy loss estimator", Frontiers in Neuroscience 17:1225871 (2023); preprint
arXiv 2208.00398 (C. Xu, Y. Pei, Z. Wu, Y. Liu, Y. Yang). See ``papers.md`` §3.

Follows the paper (its abstract, verified): accuracy loss estimators evaluate, during training, the error
the binarised weights cause and so select which layers are binarised (the others stay full precision:
"local" binarisation); global average pooling replaces the fully connected layers; ultra-low latency
(T = 1); storage saving of more than 20 %; the journal version's binary weight optimisation (BWO), which
updates the weights by adjusting the binary weights directly once training reaches a plateau (here an
optional last phase, ``bwo_epochs``).

Lineage [L] (BSO, Liang et al. 2025, citing ALBSNN): ``sign(0) = +1``, latent full-precision weights,
straight-through estimator ``dsign/dW = 1[|W| <= 1]``, first layer and classifier in full precision.

Reconstructions [R] (``papers.md`` §3, §1.1; the paper's ALE formula and selection rule are unknown):

* binarisation (XNOR-Net style): ``W_b = alpha sign(W)``, ``alpha = ||W_c||_1 / n`` per output channel;
  backward ``dL/dW = dL/dW_b 1[|W| <= 1]``.
* accuracy loss estimator (ALE) of layer l, ``estimator=loss`` (default): the measured increase of the
  training loss (the method's cross-entropy) when layer l alone is binarised and every other candidate is
  in full precision, network in eval mode, on a fixed calibration set: ``calibration_batches`` training
  batches drawn once when training starts (a fixed shuffle and augmentation under a forked RNG, so every
  epoch and every DDP rank sees the same images and the training samples are those of the
  full-precision twin; capped by ``limit_train_batches``). The estimate is in loss units (nats), so it
  predicts what binarising costs now. BN keeps its running statistics, so the estimate includes how far
  binarising moves each channel's statistics (most of the cost on mnist5k, and what training on the
  binary weights absorbs first; with BN re-estimated on the calibration set every single layer there
  costs about 0.1 nats and the order is noise). ``papers.md``'s two relative-error forms stay as options;
  they have no loss scale and hardly differ between layers (issue 15: 0.19-0.27 for every layer in the
  published mnist5k records, so layer size decided): ``estimator=weight``,
  ``||W_l - alpha_l sign W_l||^2 / ||W_l||^2`` (0.25 for any uniform weight distribution, whatever the
  layer does), and ``estimator=output``, the same relative error on the layer's output for the first
  calibration batch.
* selection: the network trains in full precision while the layers are chosen. At the start of every
  epoch from epoch 1 on (epoch 0 would see the random init), the ALE is measured, smoothed across epochs
  (``s <- ale_momentum s + (1 - ale_momentum) ALE``) and the policy picks its layers from the smoothed
  ALE. Once ``stable_epochs`` consecutive picks agree (at the latest at epoch
  ``ceil(select_until max_epochs)``, or when BWO starts) the pick is applied and frozen for the rest of
  training: a choice can no longer flip on noise, and the binarised layers train with their binary
  weights from then on. ``policy=storage`` binarises the lowest-ALE layers, greedily, until
  ``storage_saving`` of the full-precision storage is saved, then un-binarises, highest ALE first, every
  chosen layer the target does not need (layers differ in size by orders of magnitude, so the plain
  greedy may binarise far more than the target); ``threshold``, ``papers.md``'s "estimated loss within
  delta": the lowest-ALE layers while their summed ALE stays within ``delta`` (losses add to first
  order); ``all`` every candidate; ``none`` nothing, and no estimates (the full-precision twin).
  Candidates: every conv but the first and the classifier.
* neuron: STBP LIF (``k_tau`` 0.2, i.e. tau 1.25; ``V_th`` 0.25; hard reset; rectangular surrogate of
  width 1) after BN, the shared ``MultiThresholdLIF`` with one level. Direct encoding.
* GAP head: the last conv has one channel per class (full precision) and BN, like every conv here; its
  output averaged over H x W and T gives the logits; cross-entropy.
* BWO: ``alpha_c <- alpha_c - bwo_lr sum_i(dL/dW_b,ci sign(W_ci))`` (the exact gradient of ``alpha``) and
  ``sign(W_ci)`` flips where ``dL/dW_b,ci sign(W_ci) > bwo_flip_threshold``. ``papers.md`` writes the flip
  condition as ``-dL/dW_b sign(W) > gamma``; a flip changes the loss by about ``-2 alpha dL/dW_b sign(W)``,
  so that condition would raise the loss and the sign is taken here as the descent direction. The latent
  weights get no optimiser step in BWO. With BN after every conv the loss hardly depends on a channel's
  scale, so ``alpha``'s gradient is ~0 and BWO acts through the sign flips.
* networks: ``32C3-MP2-64C3-MP2-128C3-MP2-128C3`` (3x3 maps before the classifier at 28 pixels) for 1-2
  channel inputs up to 34 pixels; VGG-11's convolution stack (max pooling) for colour and larger inputs,
  with a ``32C3-MP2`` stem above 34 pixels and input average pooling above 64; max pooling keeps spikes
  binary, so binarised layers only add ``+-alpha``.

Energy and storage (``papers.md`` §1.5): binarised layers still cost ACs on spikes; they are declared with
1-bit weights and one 32-bit ``alpha`` per output channel, so the metrics callback reports the storage.

The binary layer (``BinaryConv2d``: binarisation, its straight-through estimator, the BWO update and the
storage count) is in ``methods/common/binary.py``; this module keeps the ALE, the selection policies, the
GAP network and the LightningModule.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from spikingjelly.activation_based import layer
from torch import nn
from torch.utils.data import DataLoader

from bench.errors import ConfigError
from bench.registry import register_method
from methods.base import BenchMethod, SynapticLayer
from methods.common.binary import BinaryConv2d, full_precision_bits, scaling_factors, sign
from methods.common.networks import parse_layers, sized_layers
from methods.common.neurons import MultiThresholdLIF

SMALL_NET = "32C3-MP2-64C3-MP2-128C3-MP2-128C3"
VGG11 = "64C3-MP2-128C3-MP2-256C3-256C3-MP2-512C3-512C3-MP2-512C3-512C3"
POLICIES = ("storage", "threshold", "all", "none")
ESTIMATORS = ("loss", "output", "weight")
CALIBRATION_SEED = 0  # the calibration set is the same in every run and on every rank

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def default_layers(input_shape: Sequence[int]) -> str:
    """Small net for 1-2 channel inputs up to 34 pixels, else VGG-11 (+ stem / input pooling)."""
    return sized_layers(input_shape, SMALL_NET, VGG11, stem="32C3-MP2")


def weight_error(weight: torch.Tensor) -> float:
    """``||W - alpha sign(W)||^2 / ||W||^2``: the relative error binarising the layer causes."""
    weight = weight.detach()
    error = weight - scaling_factors(weight) * sign(weight)
    return float(error.square().sum() / weight.square().sum().clamp(min=torch.finfo(weight.dtype).tiny))


def output_error(conv: nn.Conv2d, x: torch.Tensor) -> float:
    """``||conv(x; W) - conv(x; alpha sign W)||^2 / ||conv(x; W)||^2`` on the layer's input ``x``."""
    weight = conv.weight.detach()
    full = nn.Conv2d._conv_forward(conv, x, weight, None)
    binary = nn.Conv2d._conv_forward(conv, x, scaling_factors(weight) * sign(weight), None)
    return float((full - binary).square().sum() / full.square().sum().clamp(min=torch.finfo(x.dtype).tiny))


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 6) for name, value in values.items()}


def calibration_set(loader: DataLoader, count: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """``count`` batches of ``loader``'s dataset, the same at every call: a fixed shuffle and augmentation,
    drawn under a forked RNG so the training run's own random stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CALIBRATION_SEED)
        fixed = DataLoader(
            loader.dataset, batch_size=loader.batch_size, shuffle=True, collate_fn=loader.collate_fn
        )
        return [(x.to(device), y.to(device)) for x, y in itertools.islice(fixed, count)]


def choose_layers(
    estimates: dict[str, float],
    saved_bits: dict[str, int],
    total_bits: int,
    policy: str,
    storage_saving: float,
    delta: float,
) -> list[str]:
    """The candidate layers to binarise under ``policy`` (see the module docstring), lowest ALE first."""
    ranked = sorted(estimates, key=estimates.get)
    if policy == "none":
        return []
    if policy == "all":
        return ranked
    if policy == "threshold":
        within = itertools.accumulate(estimates[name] for name in ranked)
        return [name for name, total in zip(ranked, within, strict=True) if total <= delta]
    target, chosen = storage_saving * total_bits, []
    for name in ranked:
        if sum(saved_bits[n] for n in chosen) >= target:
            break
        chosen.append(name)
    for name in reversed(list(chosen)):  # drop what the target no longer needs, highest ALE first
        if sum(saved_bits[n] for n in chosen if n != name) >= target:
            chosen.remove(name)
    return chosen


def gap_network(
    input_shape: Sequence[int], num_classes: int, layers: str, make_neuron: Callable[[], nn.Module]
) -> nn.Sequential:
    """``Conv-BN-neuron`` blocks and pooling from a layer string, then a full-precision classifier conv
    (one channel per class) with BN and global average pooling; every conv after the first is a
    BinaryConv2d. BN on the class maps gives the averaged logits a trainable scale from the start."""
    blocks: list[nn.Module] = []
    why = ": global average pooling replaces FC layers"
    in_channels, first = int(input_shape[0]), True
    for spec in parse_layers(layers, input_shape, allowed="C AP MP", why=why):
        if spec.kind == "C":
            conv = (layer.Conv2d if first else BinaryConv2d)(
                spec.inputs, spec.size, spec.kernel, padding=spec.kernel // 2, bias=False, step_mode="m"
            )
            blocks += [conv, layer.BatchNorm2d(spec.size, step_mode="m"), make_neuron()]
            in_channels, first = spec.size, False
        else:
            pool = layer.AvgPool2d if spec.kind == "AP" else layer.MaxPool2d
            blocks.append(pool(spec.kernel, step_mode="m"))
    blocks += [
        layer.Conv2d(in_channels, num_classes, 3, padding=1, bias=False, step_mode="m"),
        layer.BatchNorm2d(num_classes, step_mode="m"),
        layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    ]
    return nn.Sequential(*blocks)


@register_method("albsnn")
class ALBSNN(BenchMethod):
    """Binary SNN whose binarised layers are chosen during training by accuracy loss estimators."""

    design = {"static": (1, 1), "event": (1, 10)}
    design_basis = "T = 1 on images (all its reported results); 2-channel event frames at T = 1-10"

    def __init__(
        self,
        num_classes: int,
        input_shape: Sequence[int],
        kind: str = "static",
        time_steps: int = 1,
        frames: int | None = None,
        layers: str = "auto",
        v_threshold: float = 0.25,
        tau: float = 1.25,
        surrogate_a: float = 1.0,
        estimator: str = "loss",
        calibration_batches: int = 8,
        policy: str = "storage",
        storage_saving: float = 0.2,
        delta: float = 1.0,
        ale_momentum: float = 0.5,
        stable_epochs: int = 3,
        select_until: float = 0.5,
        bwo_epochs: int = 0,
        bwo_lr: float = 1.0e-3,
        bwo_flip_threshold: float = 2.0e-2,
        **optim,
    ):
        super().__init__(num_classes, input_shape, kind, time_steps, frames=frames, **optim)
        if estimator not in ESTIMATORS:
            raise ConfigError(f"method.estimator={estimator!r} is not supported; use one of {ESTIMATORS}.")
        if policy not in POLICIES:
            raise ConfigError(f"method.policy={policy!r} is not supported; use one of {POLICIES}.")
        if not 0 < storage_saving < 1:
            raise ConfigError(
                f"method.storage_saving={storage_saving} must lie in (0, 1): the fraction of the "
                "full-precision weight storage the storage policy saves by binarising layers."
            )
        if not 0 <= ale_momentum < 1 or not 0 <= select_until <= 1:
            raise ConfigError(
                f"method.ale_momentum={ale_momentum} must lie in [0, 1) (the weight of the past in the "
                f"smoothed ALE) and method.select_until={select_until} in [0, 1] (the fraction of the "
                "epochs by which the selection is frozen)."
            )
        if int(calibration_batches) < 1 or int(stable_epochs) < 1 or int(bwo_epochs) < 0:
            raise ConfigError(
                f"method.calibration_batches (got {calibration_batches}) and method.stable_epochs (got "
                f"{stable_epochs}) must be >= 1, method.bwo_epochs >= 0 (got {bwo_epochs})."
            )
        self.estimator, self.calibration_batches = estimator, int(calibration_batches)
        self.policy, self.storage_saving, self.delta = policy, float(storage_saving), float(delta)
        self.ale_momentum, self.stable_epochs = float(ale_momentum), int(stable_epochs)
        self.select_until = float(select_until)
        self.bwo_epochs = int(bwo_epochs)
        self.bwo_lr, self.bwo_flip_threshold = float(bwo_lr), float(bwo_flip_threshold)
        self.calibration: list[tuple[torch.Tensor, ...]] = []  # drawn when training starts
        self.history: list[dict] = []  # one entry per estimate / BWO epoch, for the run record

        def make_neuron():
            return MultiThresholdLIF(
                levels=1,
                v_threshold=v_threshold,
                tau=tau,
                decay_input=False,
                hard_reset=True,
                surrogate="rect",
                surrogate_a=surrogate_a,
            )

        spec = default_layers(input_shape) if layers == "auto" else layers
        self.net = gap_network(input_shape, num_classes, spec, make_neuron)

    # --- estimators and layer selection --------------------------------------------------------------
    def candidates(self) -> dict[str, BinaryConv2d]:
        return {name: m for name, m in self.named_modules() if isinstance(m, BinaryConv2d)}

    def storage_ratio(self) -> float:
        """Weight storage (+ biases, alphas) over the all-full-precision network's, as the callback does."""
        layers = self.synaptic_layers().values()
        full = [full_precision_bits(s.module) for s in layers]
        stored = [
            bits - (32 - s.weight_bits) * s.module.weight.numel() + 32 * s.scale_params
            for s, bits in zip(layers, full, strict=True)
        ]
        return sum(stored) / sum(full)

    def calibration_loss(self, batches: Batches) -> float:
        """The method's loss, averaged over every sample of ``batches``."""
        total = sum(float(self.compute_loss(self(x), y)) * len(y) for x, y in batches)
        return total / sum(len(y) for _, y in batches)

    @torch.no_grad()
    def estimate(self, batches: Batches = ()) -> dict[str, float]:
        """Every candidate's ALE on the calibration ``batches``, each layer binarised alone, the others in
        full precision, in eval mode; the binarised flags and the mode are restored afterwards."""
        layers = self.candidates()
        if self.estimator == "weight":
            return {name: weight_error(m.weight) for name, m in layers.items()}
        if not batches:
            raise ValueError(f"the {self.estimator} estimator needs calibration batches.")
        was_training, binarised = self.training, {name: bool(m.binarised) for name, m in layers.items()}
        inputs: dict[str, torch.Tensor] = {}
        hooks = []
        try:
            self.eval()
            for m in layers.values():
                m.binarised.fill_(False)
            if self.estimator == "output":
                hooks = [
                    m.register_forward_hook(lambda _, args, out, name=name: inputs.__setitem__(name, args[0]))
                    for name, m in layers.items()
                ]
                self(batches[0][0])
                return {name: output_error(m, inputs[name].flatten(0, 1)) for name, m in layers.items()}
            full = self.calibration_loss(batches)
            estimates = {}
            for name, m in layers.items():
                m.binarised.fill_(True)
                estimates[name] = self.calibration_loss(batches) - full
                m.binarised.fill_(False)
            return estimates
        finally:
            self.train(was_training)
            for hook in hooks:
                hook.remove()
            for name, m in layers.items():
                m.binarised.fill_(binarised[name])

    def choose(self, estimates: dict[str, float]) -> list[str]:
        """The layers ``policy`` binarises given ``estimates``, in network order."""
        layers = self.candidates()
        saved = {name: m.storage_bits(False) - m.storage_bits(True) for name, m in layers.items()}
        total = sum(full_precision_bits(s.module) for s in super().synaptic_layers().values())
        chosen = choose_layers(estimates, saved, total, self.policy, self.storage_saving, self.delta)
        return [name for name in layers if name in chosen]

    def binarise(self, chosen: Sequence[str]) -> None:
        for name, m in self.candidates().items():
            m.binarised.fill_(name in chosen)

    def select(self, batches: Batches = ()) -> tuple[list[str], dict[str, float]]:
        """Estimate, choose and binarise at once (no smoothing): (chosen, estimates)."""
        estimates = self.estimate(batches)
        chosen = self.choose(estimates)
        self.binarise(chosen)
        return chosen, estimates

    def frozen(self) -> bool:
        return any(entry.get("frozen") for entry in self.history)

    # --- training hooks ------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        """Draw the calibration set: the same batches at every epoch and on every rank."""
        if self.policy != "none" and self.estimator != "weight":
            count = min(self.calibration_batches, self.trainer.num_training_batches)
            self.calibration = calibration_set(self.trainer.train_dataloader, count, self.device)

    def on_train_epoch_start(self) -> None:
        """Until frozen, from epoch 1 on: estimate, smooth, choose; freeze the choice once it is stable, at
        the ``select_until`` deadline or when BWO starts. The first BWO epoch starts BWO on the frozen
        layers."""
        epoch, layers = self.current_epoch, self.candidates()
        in_bwo = self.bwo_epochs > 0 and epoch >= self.trainer.max_epochs - self.bwo_epochs
        if in_bwo and self.frozen():
            if not any(bool(m.bwo) for m in layers.values()):
                for m in layers.values():
                    if m.binarised:
                        m.start_bwo()
            self.history.append({"epoch": epoch, "bwo": True, "flips": 0})
            return
        if self.policy == "none" or self.frozen() or (epoch == 0 and not in_bwo):
            return
        raw = self.estimate(self.calibration)
        # Identical data give identical estimates on every rank; the mean also absorbs float noise.
        mean = self.trainer.strategy.reduce(
            torch.tensor(list(raw.values()), device=self.device), reduce_op="mean"
        )
        raw = dict(zip(raw, mean.tolist(), strict=True))
        last = next((e["ale_smoothed"] for e in reversed(self.history) if "ale_smoothed" in e), raw)
        momentum = self.ale_momentum
        smoothed = {name: momentum * last[name] + (1 - momentum) * raw[name] for name in raw}
        choice = self.choose(smoothed)
        choices = [*(e["choice"] for e in self.history if "choice" in e), choice]
        stable = len(choices) >= self.stable_epochs and all(
            c == choice for c in choices[-self.stable_epochs :]
        )
        deadline = max(1, math.ceil(self.select_until * self.trainer.max_epochs))
        entry = {"epoch": epoch, "ale": rounded(raw), "ale_smoothed": rounded(smoothed), "choice": choice}
        entry["frozen"] = stable or epoch >= deadline or in_bwo
        if entry["frozen"]:
            self.binarise(choice)
        entry.update(binarised=[name for name, m in layers.items() if m.binarised])
        entry.update(storage_ratio=round(self.storage_ratio(), 6))
        if in_bwo:
            for name in choice:
                layers[name].start_bwo()
            entry.update(bwo=True, flips=0)
        self.history.append(entry)
        self.log("albsnn/binarised_layers", float(len(entry["binarised"])))
        self.log("albsnn/storage_ratio", entry["storage_ratio"])
        state = "frozen" if entry["frozen"] else "not yet applied"
        self.print(f"albsnn epoch {epoch}: ALE {entry['ale_smoothed']} (smoothed), choice {choice} ({state})")

    def on_before_optimizer_step(self, optimizer) -> None:
        """BWO: update alpha and the signs from dL/dW_b; the latent weights get no optimiser step."""
        for m in self.candidates().values():
            if m.binarised and m.bwo and m.binary_weight is not None and m.binary_weight.grad is not None:
                grad = self.trainer.strategy.reduce(m.binary_weight.grad, reduce_op="mean")  # DDP: all ranks
                flips = m.bwo_step(grad, self.bwo_lr, self.bwo_flip_threshold)
                self.history[-1]["flips"] += flips
                m.binary_weight = None

    # --- declarations and records --------------------------------------------------------------------
    def synaptic_layers(self) -> dict[str, SynapticLayer]:
        layers = super().synaptic_layers()
        for name, m in self.candidates().items():
            if m.binarised:
                layers[name] = SynapticLayer(m, weight_bits=1, scale_params=m.out_channels)
        return layers

    def run_details(self) -> dict:
        return {
            "policy": self.policy,
            "estimator": self.estimator,
            "calibration_samples": sum(len(y) for _, y in self.calibration),
            "frozen_at_epoch": next((e["epoch"] for e in self.history if e.get("frozen")), None),
            "binarised": [name for name, m in self.candidates().items() if m.binarised],
            "storage_ratio": self.storage_ratio(),
            "selection_per_epoch": self.history,
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["albsnn_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = checkpoint.get("albsnn_history", [])
