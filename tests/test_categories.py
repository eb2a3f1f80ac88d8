"""Softmax, log-softmax and argmax over the categories: torch's results, whichever kernel runs them."""

from __future__ import annotations

import pytest
import torch

from vae_gumbel.categories import ROW_KERNEL_FROM, argmax, log_softmax, one_hot, softmax

# Short category axes run across rows on the CPU, long ones row by row: both must give torch's values.
SHAPES = [(10,), (100, 30, 10), (3, 100, 30, 10), (100, 8, 4), (5, 2), (7, ROW_KERNEL_FROM), (4, 3, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "ours, torchs",
    [(log_softmax, torch.log_softmax), (softmax, torch.softmax)],
    ids=["log_softmax", "softmax"],
)
def test_values_and_gradients_are_torchs(shape, dtype, ours, torchs) -> None:
    x = (4 * torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))).requires_grad_()
    weights = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    expected = torchs(x, dim=-1)
    got = ours(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        torch.autograd.grad((got * weights).sum(), x)[0],
        torch.autograd.grad((expected * weights).sum(), x)[0],
    )


def test_a_view_and_an_empty_batch_work_too() -> None:
    x = torch.randn(30, 100, 10).transpose(0, 1)  # (100, 30, 10), not contiguous
    torch.testing.assert_close(log_softmax(x), torch.log_softmax(x, dim=-1))
    assert log_softmax(torch.empty(0, 30, 10)).shape == (0, 30, 10)
    assert argmax(torch.empty(0, 30, 10)).shape == (0, 30)


def test_argmax_takes_the_first_of_tied_maxima_and_a_nan_as_torch_does() -> None:
    x = torch.randint(0, 3, (10_000, 10), generator=torch.Generator().manual_seed(0)).float()
    x[::7, 3] = float("nan")
    tied = (x == x.amax(dim=-1, keepdim=True)).sum(dim=-1) > 1
    assert tied.sum() > 1000  # many rows hold their maximum more than once
    index = argmax(x)
    assert index.dtype == torch.int64
    assert torch.equal(index, x.argmax(dim=-1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.bool])
@pytest.mark.parametrize("shape", [(7,), (100, 30), (3, 4, 5), (0, 2)])
def test_one_hot_is_torchs(shape, dtype) -> None:
    index = torch.randint(0, 6, shape, generator=torch.Generator().manual_seed(0))
    got = one_hot(index, 6, dtype)
    assert got.dtype == dtype
    assert torch.equal(got, torch.nn.functional.one_hot(index, 6).to(dtype))
