"""The CPU's one-pass reductions (bench.metrics.kernels) against torch's reductions (the GPU's path), and
the binary test's exactness.

The callback reads each activation once on the CPU (issue 29); what it finds must not depend on the
device: every kind of tensor gives the same sums, nonzero entries, extremes and binary verdict by both
paths, on one thread or several, in one chunk of rows or many."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.metrics import kernels
from bench.metrics.counting import Moments


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    spikes = (torch.rand(64, 6, 10, 10, generator=g) < 0.3).float()
    return {
        "binary": spikes,
        "pooled": F.avg_pool2d(spikes, 2),
        "signed": torch.randint(-1, 2, (300, 33), generator=g).float(),
        "graded": torch.randint(0, 4, (300, 33), generator=g).float(),
        "analog": torch.rand(200, 50, generator=g) * 3,  # non-negative: sums in any order stay close
        "all zero": torch.zeros(40, 10),
        "all one": torch.ones(40, 10),
        "float64": (torch.rand(300, 20, generator=g) < 0.5).double(),
        "non-contiguous": (torch.rand(50, 40, generator=g) < 0.5).float().t(),
        "bool": torch.rand(100, 10, generator=g) < 0.5,
        "odd length": (torch.rand(1000 * 7 + 3, generator=g) < 0.5).float(),
    }


def assert_same(ours: Moments, reference: Moments, exact: bool) -> None:
    assert ours.binary == reference.binary
    assert (ours.low, ours.high) == (reference.low, reference.high)
    assert torch.equal(ours.nonzero.reshape(-1), reference.nonzero.reshape(-1))
    if exact:
        assert torch.equal(ours.sums.reshape(-1), reference.sums.reshape(-1))
    else:
        torch.testing.assert_close(ours.sums.reshape(-1), reference.sums.reshape(-1), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("name", sorted(tensors()))
@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("nonzero", [False, True])
def test_one_pass_on_the_cpu_finds_what_torchs_reductions_find(name, per_column, nonzero):
    x = tensors()[name]
    columns = x.shape[-1] if per_column and x.dim() > 1 else None
    ours, reference = Moments.of(x, columns, nonzero), Moments.by_torch(x, columns, nonzero=True)
    assert_same(ours, reference, exact=name != "analog")
    assert ours.binary == (name not in ("pooled", "signed", "graded", "analog"))


@pytest.mark.parametrize("name", ["binary", "signed", "analog"])
def test_a_broadcast_input_is_read_once_and_counted_as_every_copy(name):
    """An image fed to each of T steps by ``expand`` (stride 0 along T): its distinct values are read
    once, and every count is that of the T copies."""
    image = tensors()[name][:8]
    expanded = image.expand(4, *image.shape)
    columns = image.shape[-1]
    ours, copies = Moments.of(expanded, columns), Moments.by_torch(expanded.contiguous(), columns, True)
    assert ours.repeats == 4 and ours.values.shape == (1, *image.shape)
    assert_same(ours, copies, exact=name != "analog")
    # T, not the columns, is broadcast here: no shortcut, every element read
    across = torch.ones(8, 1).expand(-1, 5)
    assert Moments.of(across, 5).repeats == 1


def test_the_binary_test_is_exact_where_sums_of_squares_are_not():
    """A subnormal value squares to 0 in float32, so sum(x) == sum(x^2) and extremes in [0, 1] called
    [0, 1e-40, 1] binary; sum |x - x^2| > 0 does not."""
    for values in ([0.0, 1e-40, 1.0], [0.0, 1 - 2**-24, 1.0], [0.0, float("nan"), 1.0], [0.0, 2.0, -1.0]):
        x = torch.tensor(values)
        assert not Moments.of(x).binary and not Moments.by_torch(x).binary, values
    assert Moments.of(torch.tensor([0.0, 1.0, 1.0])).binary


def test_chunks_and_threads_change_nothing(monkeypatch):
    """Many chunks of rows, spread over several threads, sum to what one chunk on one thread sums."""
    g = torch.Generator().manual_seed(1)
    x = F.avg_pool2d((torch.rand(96, 4, 12, 12, generator=g) < 0.2).float(), 2)
    threads = torch.get_num_threads()
    one = Moments.of(x, 4 * 6 * 6, nonzero=True)
    monkeypatch.setattr(kernels, "CHUNK_ROWS", 7)
    monkeypatch.setattr(kernels, "PARALLEL_ELEMENTS", 1)
    try:
        torch.set_num_threads(2)
        many = Moments.of(x, 4 * 6 * 6, nonzero=True)
    finally:
        torch.set_num_threads(threads)
    assert_same(many, one, exact=True)
    assert many.total == float(x.sum(dtype=torch.float64)) > 0
