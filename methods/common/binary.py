"""Binary weights: layers whose weights switch between full precision and ``alpha sign(W)``.

XNOR-Net style binarisation (``papers.md`` §1.1, §3): ``W_b = alpha sign(W)`` with ``sign(0) = +1`` and
``alpha = ||W_c||_1 / n`` per output channel, computed from latent full-precision weights that training
updates through the clipped straight-through estimator ``dL/dW = dL/dW_b 1[|W| <= 1]``; and binary weight
optimisation (BWO, ALBSNN's journal version), which instead updates ``alpha`` and flips signs from
``dL/dW_b`` directly. Which layers are binarised, and when, is the method's choice (``methods/albsnn.py``,
which also says which parts are reconstructions).
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import layer
from torch import nn


def sign(weight: torch.Tensor) -> torch.Tensor:
    """``sign`` with ``sign(0) = +1``, so every binary weight is +-1."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


def scaling_factors(weight: torch.Tensor) -> torch.Tensor:
    """``alpha_c = ||W_c||_1 / n`` per output channel (dim 0), shaped to broadcast against ``weight``."""
    return weight.abs().mean(dim=tuple(range(1, weight.dim())), keepdim=True)


class _Binarize(torch.autograd.Function):
    """Forward ``alpha sign(W)``; backward the clipped straight-through estimator ``1[|W| <= 1]``."""

    @staticmethod
    def forward(ctx, weight):
        ctx.save_for_backward(weight)
        return scaling_factors(weight) * sign(weight)

    @staticmethod
    def backward(ctx, grad_output):
        (weight,) = ctx.saved_tensors
        return grad_output * (weight.abs() <= 1).to(grad_output.dtype)


def binarize(weight: torch.Tensor) -> torch.Tensor:
    return _Binarize.apply(weight)


class BinaryConv2d(layer.Conv2d):
    """A conv whose weights switch between full precision and ``alpha sign(W)`` (latent FP weights kept).

    Buffers, so they are checkpointed: ``binarised``; ``bwo`` (binary weight optimisation: ``alpha`` is
    then the buffer ``bwo_alpha`` updated by the BWO rule, and the latent weights only carry signs).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("binarised", torch.tensor(False))
        self.register_buffer("bwo", torch.tensor(False))
        self.register_buffer("bwo_alpha", torch.zeros(self.out_channels, 1, 1, 1))
        self.binary_weight: torch.Tensor | None = None  # BWO: the last training W_b, which gets dL/dW_b

    def storage_bits(self, binarised: bool) -> int:
        """Weight storage: 32-bit weights, or 1-bit weights + one 32-bit alpha per output channel."""
        n = self.weight.numel()
        return n + 32 * self.out_channels if binarised else 32 * n

    def effective_weight(self) -> torch.Tensor:
        if not self.binarised:
            return self.weight
        if not self.bwo:
            return binarize(self.weight)
        weight = self.bwo_alpha * sign(self.weight.detach())
        if self.training and torch.is_grad_enabled():
            self.binary_weight = weight.requires_grad_()
        return weight

    def start_bwo(self) -> None:
        with torch.no_grad():
            self.bwo_alpha.copy_(scaling_factors(self.weight))
        self.bwo.fill_(True)

    @torch.no_grad()
    def bwo_step(self, grad: torch.Tensor, lr: float, flip_threshold: float) -> int:
        """One BWO update from ``grad = dL/dW_b``; returns the number of flipped signs."""
        signs = sign(self.weight)
        self.bwo_alpha -= lr * (grad * signs).sum(dim=(1, 2, 3), keepdim=True)
        flip = grad * signs > flip_threshold
        self.weight.copy_(torch.where(flip, -self.weight, self.weight))
        return int(flip.sum())

    def _conv_forward(self, x, weight, bias):
        return super()._conv_forward(x, self.effective_weight(), bias)


def full_precision_bits(module: nn.Module) -> int:
    """32-bit storage of a synaptic layer's weights and bias."""
    bias = 0 if module.bias is None else module.bias.numel()
    return 32 * (module.weight.numel() + bias)
