"""The Gumbel distribution, Gumbel-max sampling and the Gumbel-Softmax relaxation."""

from __future__ import annotations

import pytest
import torch

from vae_gumbel.gumbel import (
    gumbel_cdf,
    gumbel_icdf,
    gumbel_max,
    gumbel_pdf,
    gumbel_softmax,
    gumbel_softmax_sample,
    sample_gumbel,
)

# The statistical tests need scipy (the dev extra). Where only the runtime dependencies are
# installed (say, for `pytest -m cuda` on a GPU machine), this module skips instead of failing
# the collection of every test.
stats = pytest.importorskip("scipy.stats")


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mu, beta", [(0.0, 1.0), (1.5, 3.0), (-2.0, 0.5)])
def test_pdf_integrates_to_one(mu: float, beta: float) -> None:
    x = torch.linspace(mu - 20 * beta, mu + 60 * beta, 400_001, dtype=torch.float64)
    assert torch.trapezoid(gumbel_pdf(x, mu, beta), x).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("mu, beta", [(0.0, 1.0), (1.5, 3.0)])
def test_cdf_inverts_icdf(mu: float, beta: float) -> None:
    u = torch.linspace(1e-6, 1 - 1e-6, 1001, dtype=torch.float64)
    torch.testing.assert_close(gumbel_cdf(gumbel_icdf(u, mu, beta), mu, beta), u)


def test_pdf_and_cdf_match_torch_distributions() -> None:
    reference = torch.distributions.Gumbel(torch.tensor(0.5), torch.tensor(2.0))
    x = torch.linspace(-5, 15, 101)
    torch.testing.assert_close(gumbel_pdf(x, 0.5, 2.0), reference.log_prob(x).exp())
    torch.testing.assert_close(gumbel_cdf(x, 0.5, 2.0), reference.cdf(x))


@pytest.mark.parametrize("mu, beta", [(0.0, 1.0), (1.5, 3.0)])
def test_inverse_cdf_samples_follow_the_cdf(mu: float, beta: float) -> None:
    draws = sample_gumbel((50_000,), mu, beta, dtype=torch.float64, generator=generator(1))
    result = stats.kstest(draws.numpy(), lambda x: gumbel_cdf(torch.as_tensor(x), mu, beta).numpy())
    assert result.pvalue > 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_noise_is_finite_even_at_the_extreme_uniforms(dtype: torch.dtype, monkeypatch) -> None:
    extremes = torch.tensor([0.0, 1.0, 1.0 - 2**-25, 2**-149])

    def rand(shape, **kwargs):
        return extremes.to(kwargs["dtype"])

    monkeypatch.setattr(torch, "rand", rand)
    assert torch.isfinite(sample_gumbel((4,), dtype=dtype)).all()


def chi_square_pvalue(indices: torch.Tensor, probs: torch.Tensor) -> float:
    observed = torch.bincount(indices, minlength=probs.numel()).double()
    probs = probs.double() / probs.double().sum()
    expected = probs * indices.numel()
    return stats.chisquare(observed.numpy(), expected.numpy()).pvalue


@pytest.mark.parametrize(
    "logits",
    [torch.tensor([0.7, 0.2, 0.1]).log(), torch.randn(10, generator=generator(3)) * 2],
    ids=["three-categories", "ten-random-logits"],
)
def test_gumbel_max_frequencies_match_softmax(logits: torch.Tensor) -> None:
    draws = 200_000
    indices = gumbel_max(logits.expand(draws, -1), generator=generator(4))
    assert chi_square_pvalue(indices, torch.softmax(logits, -1)) > 0.01


def test_gumbel_max_one_hot_marks_the_sampled_index() -> None:
    logits = torch.randn(64, 5, 7, generator=generator(5))
    one_hot = gumbel_max(logits, one_hot=True, generator=generator(6))
    index = gumbel_max(logits, generator=generator(6))
    assert one_hot.shape == logits.shape
    assert torch.equal(one_hot.argmax(-1), index)
    assert torch.equal(one_hot.sum(-1), torch.ones(64, 5))


def test_hard_sample_is_exact_one_hot_and_the_argmax_of_the_soft_sample() -> None:
    logits = torch.randn(256, 30, 10, generator=generator(7))
    sample = gumbel_softmax_sample(logits, 0.7, generator=generator(8))
    hard = gumbel_softmax(logits, 0.7, hard=True, generator=generator(8))
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(hard.sum(-1), torch.ones(256, 30))
    assert torch.equal(hard, sample.hard)
    assert torch.equal(hard.argmax(-1), sample.soft.argmax(-1))


def test_hard_sample_has_exactly_the_soft_samples_gradient() -> None:
    logits = torch.randn(32, 4, 6, generator=generator(9))
    weights = torch.randn(32, 4, 6, generator=generator(10))
    grads = []
    for hard in (False, True):
        leaf = logits.clone().requires_grad_()
        (gumbel_softmax(leaf, 0.5, hard=hard, generator=generator(11)) * weights).sum().backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_softmax_runs_over_the_last_axis_only() -> None:
    logits = torch.randn(8, 30, 10, generator=generator(12)) - 5.0  # negative logits are fine
    soft = gumbel_softmax(logits, 1.0, generator=generator(13))
    torch.testing.assert_close(soft.sum(-1), torch.ones(8, 30))
    assert (soft >= 0).all()


def test_small_temperature_gives_nearly_one_hot_and_large_nearly_uniform() -> None:
    logits = torch.randn(1000, 10, generator=generator(14))
    cold = gumbel_softmax(logits, 0.01, generator=generator(15))
    hot = gumbel_softmax(logits, 100.0, generator=generator(15))
    assert cold.max(-1).values.mean() > 0.99
    assert (hot - 0.1).abs().max() < 0.05


def test_zero_d_tensor_temperature_receives_a_gradient() -> None:
    tau = torch.tensor(0.8, requires_grad=True)
    logits = torch.randn(16, 10, generator=generator(16))
    (gumbel_softmax(logits, tau, generator=generator(17))[:, 0]).sum().backward()
    assert tau.grad is not None and torch.isfinite(tau.grad) and tau.grad != 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("categories", [2, 1000])
def test_no_nan_or_inf_over_the_supported_range(dtype, tau, scale, categories) -> None:
    logits = (torch.randn(64, categories, generator=generator(18)) * scale).to(dtype)
    logits.requires_grad_()
    for hard in (False, True):
        sample = gumbel_softmax(logits, tau, hard=hard, generator=generator(19))
        assert sample.dtype == dtype
        assert torch.isfinite(sample).all()
        (sample * torch.arange(categories, dtype=dtype)).sum().backward()
        assert torch.isfinite(logits.grad).all()
        logits.grad = None


@pytest.mark.parametrize("hard", [False, True])
def test_gradient_descent_through_samples_moves_the_mean_toward_the_target(hard: bool) -> None:
    """The toy problem: move E[index] of a 5-category distribution from 2 to 4."""
    torch.manual_seed(20)
    logits = torch.zeros(5, requires_grad=True)
    values = torch.arange(5.0)
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(300):
        z = gumbel_softmax(logits.expand(256, -1), 0.5, hard=hard)
        loss = ((z @ values - 4.0) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mean = (torch.softmax(logits, -1) @ values).item()
    assert mean > 3.5
