"""The divergence guard: a run whose training loss is non-finite, or stays far above its starting value,
or whose weights blow up, fails with a clear message instead of finishing ``ok`` at chance accuracy.

The rule (stated in the README): the losses of every ``window`` training steps are checked together, with
the weights' norm (one host synchronisation per window, not one per step); the run has diverged when a
window holds a non-finite loss, or when the mean loss of ``patience`` consecutive windows, or of the last
(partial) window at the end of training, exceeds ``factor`` times the starting loss, the loss of the run's
first step (floored at ``floor``, so a near-zero start cannot make every later loss look diverged), or when
the global L2 norm of the weights is non-finite or more than ``weight_factor`` times its value before the
first step (floored at 1). The weights' rule catches what the loss cannot show: a network whose output is
bounded (multi-threshold neurons' spike counts under an MSE loss) keeps a bounded loss while an absurd
learning rate throws its weights to 1e9 and its accuracy to chance.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from bench.errors import Diverged


def diverged(model: pl.LightningModule, what: str) -> Diverged:
    """The error every divergence ends with: what happened, where, and the advice."""
    lr = getattr(model.hparams, "lr", None)
    return Diverged(
        f"{what} at epoch {model.current_epoch}, step {model.global_step} ({type(model).__name__}, "
        f"lr={lr}). Training diverged: lower method.lr, or use trainer.precision=32-true if you trained "
        "in reduced precision."
    )


def weight_norm(module: torch.nn.Module) -> torch.Tensor:
    """The global L2 norm of ``module``'s floating-point parameters, as a tensor on their device."""
    norms = [torch.linalg.vector_norm(p.detach(), dtype=torch.float32) for p in module.parameters()]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class DivergenceGuard(Callback):
    """Fails the run on a non-finite loss, one ``factor`` x above its start, or weights ``weight_factor`` x
    their initial norm (see the module doc)."""

    def __init__(
        self,
        window: int = 10,
        patience: int = 3,
        factor: float = 100.0,
        floor: float = 0.01,
        weight_factor: float = 1000.0,
    ):
        self.window, self.patience, self.factor, self.floor = window, patience, factor, floor
        self.weight_factor = weight_factor
        self.start: float | None = None
        self.start_weights: float | None = None
        self.losses: list[torch.Tensor] = []
        self.high_windows = 0

    def on_train_start(self, trainer, pl_module) -> None:
        if self.start_weights is None:  # a resumed run keeps the norm from before its first step
            self.start_weights = float(weight_norm(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self.losses.append(loss.detach().float().reshape(()))
        if self.start is None or len(self.losses) >= self.window:
            self.check(pl_module, final=False)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.losses:
            self.check(pl_module, final=True)

    def check(self, pl_module: pl.LightningModule, final: bool) -> None:
        losses = torch.stack(self.losses)
        weights = weight_norm(pl_module).to(losses.device)
        losses, weights = torch.cat([losses, weights.reshape(1)]).cpu().split([len(self.losses), 1])
        self.losses = []  # the window's one synchronisation is above
        if not torch.isfinite(losses).all():
            bad = float(losses[~torch.isfinite(losses)][0])
            raise diverged(pl_module, f"The training loss became {bad}")
        self.check_weights(pl_module, float(weights))
        if self.start is None:
            self.start = float(losses[0])
            return
        mean, limit = float(losses.mean()), self.factor * max(self.start, self.floor)
        self.high_windows = self.high_windows + 1 if mean > limit else 0
        if self.high_windows >= self.patience or (final and mean > limit):
            raise diverged(
                pl_module,
                f"The training loss stayed at {mean:.3g} ({mean / max(self.start, self.floor):.3g}x its "
                f"starting value {self.start:.3g}; the limit is {self.factor:g}x)",
            )

    def check_weights(self, pl_module: pl.LightningModule, norm: float) -> None:
        if math.isnan(norm):
            raise diverged(pl_module, "The weights became NaN")
        if self.start_weights is None:
            return
        ratio = norm / max(self.start_weights, 1.0)
        if ratio > self.weight_factor:
            raise diverged(
                pl_module,
                f"The weights grew to {ratio:.3g}x their initial norm ({norm:.3g} from "
                f"{self.start_weights:.3g}; the limit is {self.weight_factor:g}x)",
            )

    def state_dict(self) -> dict:
        return {"start": self.start, "start_weights": self.start_weights, "high_windows": self.high_windows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start = state_dict.get("start")
        self.start_weights = state_dict.get("start_weights")
        self.high_windows = state_dict.get("high_windows", 0)
        if self.start is not None and not math.isfinite(self.start):
            self.start = None
        if self.start_weights is not None and not math.isfinite(self.start_weights):
            self.start_weights = None
