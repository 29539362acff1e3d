"""Every registered method learns: a short fixed schedule on the real embedded mnist5k digits must reach a
stated test accuracy, well above chance (10 %) and above what the same schedule reaches when only the
readout layer trains.

The second bound is what makes the floors bite: a surrogate that returns zeros, a detached encoder or a
dead first layer leaves at most the readout learning, so such a break lands below the floor. Readout-only
accuracy of each method under this exact schedule (every parameter but the last synaptic layer's frozen)
was measured over three seeds and is written next to its floor; the floors sit between the two. A method
added later without a measured floor gets ``DEFAULT_FLOOR``.

Schedule: ``STEPS`` Adam steps of the method's own configured optimiser and learning rate, batch
``BATCH``, no augmentation, seed 0; then the 1,000 test digits. hybrid_stdb trains its SNN from scratch
with the STDB surrogate (no ANN phase, the from-scratch rate of its ablation's ``no_ann_init`` variant),
so its test is the STDB gradient's. albsnn trains in full precision within its first epoch (its layer
selection starts at epoch 1; the ALE has its own tests in test_albsnn.py).
"""

from __future__ import annotations

import time

import pytest
import pytorch_lightning as pl
import torch
from helpers import quiet_trainer

from bench import registry
from bench.config import load_config
from bench.runner import build

STEPS, BATCH = 40, 64
SCHEDULE = [f"data.batch_size={BATCH}", "data.augment=false"]
OVERRIDES = {"hybrid_stdb": ["method.ann_epochs=0", "method.lr=1e-3"]}

# method: (floor, readout-only accuracy). Measured under this schedule on one thread, seeds 0, 1, 2:
# ann 0.898-0.919 (readout-only 0.40-0.48), lif_sg 0.863-0.882 (0.10), slssnn 0.925-0.939 (0.56-0.63),
# albsnn 0.809-0.826 (0.47-0.53), compressed_event 0.622-0.682 (0.10-0.14), multi_threshold
# 0.905-0.916 (0.59-0.62), hybrid_stdb 0.800-0.835 (0.28-0.35). The floors sit a few points under the
# lowest seed (thread counts change float sums) and far above the best readout-only seed, listed here.
FLOORS = {
    "ann": (0.85, 0.483),
    "lif_sg": (0.80, 0.10),
    "slssnn": (0.88, 0.628),
    "albsnn": (0.75, 0.533),
    "compressed_event": (0.55, 0.135),
    "multi_threshold": (0.85, 0.621),
    "hybrid_stdb": (0.72, 0.348),
}


DEFAULT_FLOOR = (0.5, 0.0)


def test_every_floor_is_well_above_chance_and_its_readout_only_accuracy():
    assert set(FLOORS) <= set(registry.methods())
    for method, (floor, readout_only) in FLOORS.items():
        assert floor >= max(0.5, readout_only + 0.05), method


def held_out_accuracy(model: pl.LightningModule, datamodule) -> float:
    datamodule.setup("test")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in datamodule.test_dataloader():
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


@pytest.mark.parametrize("method", sorted(registry.methods()))
def test_a_short_fixed_schedule_on_mnist5k_beats_the_floor(method, workdir):
    pl.seed_everything(0, verbose=False)
    cfg = load_config(method, "mnist5k", [*SCHEDULE, *OVERRIDES.get(method, [])])
    datamodule, model = build(cfg, method, "mnist5k")
    trainer = quiet_trainer(max_steps=STEPS, max_epochs=-1, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    accuracy = held_out_accuracy(model, datamodule)
    floor, readout_only = FLOORS.get(method, DEFAULT_FLOOR)
    print(f"{method}: {accuracy:.3f} after {STEPS} steps in {time.perf_counter() - start:.1f} s")
    assert accuracy >= floor, (
        f"{method} reached {accuracy:.3f} test accuracy after {STEPS} steps, below its floor {floor} "
        f"(readout-only training reaches {readout_only}): something upstream of the readout stopped learning."
    )
