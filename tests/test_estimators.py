"""Gradient estimators against exact gradients, the conditional Gumbel draw, and the relaxed KL."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from vae_gumbel.config import EstimatorConfig
from vae_gumbel.estimators import ESTIMATORS, build_estimator
from vae_gumbel.gumbel import conditional_gumbel, gapped_logits, gumbel_cdf, gumbel_max
from vae_gumbel.objectives import exp_concrete_log_density, relaxed_kl
from vae_gumbel.tools.gradient_study import (
    exact_gradient,
    gradient_stats,
    quadratic_objective,
    sample_gradients,
)

# The statistical tests need scipy (the dev extra). Where only the runtime dependencies are
# installed (say, for `pytest -m cuda` on a GPU machine), this module skips instead of failing
# the collection of every test.
stats = pytest.importorskip("scipy.stats")


def get_estimator(name: str, rao_samples: int = 10, **settings):
    return build_estimator(EstimatorConfig(name=name, rao_samples=rao_samples, **settings))


def category_counts_fit(index: torch.Tensor, probabilities: torch.Tensor) -> float:
    """Gives the chi-square p-value of the categories drawn in ``index`` against ``probabilities``."""
    counts = torch.bincount(index.flatten(), minlength=len(probabilities)).double()
    expected = probabilities.double() / probabilities.double().sum() * counts.sum()
    return stats.chisquare(counts.numpy(), expected.numpy()).pvalue


LOGITS = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
F = quadratic_objective(2, 3, seed=1)


def test_exact_gradient_matches_finite_differences() -> None:
    exact = exact_gradient(LOGITS, F)

    def expectation(logits: torch.Tensor) -> float:
        from vae_gumbel.tools.gradient_study import all_codes

        codes = all_codes(2, 3)
        q = (codes * torch.log_softmax(logits, -1)).sum((-2, -1)).exp()
        return float((q * F(codes)).sum())

    step = 1e-3
    for n, k in [(0, 0), (1, 2)]:
        bumped = LOGITS.clone()
        bumped[n, k] += step
        lowered = LOGITS.clone()
        lowered[n, k] -= step
        assert exact[n, k].item() == pytest.approx(
            (expectation(bumped) - expectation(lowered)) / (2 * step), abs=1e-3
        )


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_every_estimators_mean_gradient_points_the_right_way(name: str, tau: float) -> None:
    stats_ = gradient_stats(get_estimator(name), LOGITS, F, tau, samples=20_000, seed=2)
    assert stats_.cosine > 0.95


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_gumbel_rao_has_straight_throughs_bias_and_lower_variance(tau: float) -> None:
    straight = sample_gradients(get_estimator("straight_through"), LOGITS, F, tau, 40_000, seed=3)
    rao = sample_gradients(get_estimator("gumbel_rao", rao_samples=10), LOGITS, F, tau, 40_000, seed=4)
    # Equal expectations: the means agree within a few standard errors of their difference.
    difference = straight.mean(0) - rao.mean(0)
    standard_error = ((straight.var(0) + rao.var(0)) / 40_000).sqrt()
    assert (difference.abs() < 4 * standard_error + 1e-6).all()
    variance = lambda g: float(((g - g.mean(0)) ** 2).sum((-2, -1)).mean())  # noqa: E731
    assert variance(rao) < 0.5 * variance(straight)


def test_more_rao_samples_lower_the_variance_further() -> None:
    few = gradient_stats(get_estimator("gumbel_rao", rao_samples=2), LOGITS, F, 1.0, samples=20_000, seed=5)
    many = gradient_stats(get_estimator("gumbel_rao", rao_samples=50), LOGITS, F, 1.0, samples=20_000, seed=5)
    assert many.variance < few.variance


@pytest.mark.parametrize("first_order", ["straight_through", "softmax_straight_through"])
def test_reinmax_is_less_biased_than_straight_through_at_tau_one(first_order: str) -> None:
    reinmax = gradient_stats(get_estimator("reinmax"), LOGITS, F, 1.0, samples=40_000, seed=6)
    straight = gradient_stats(get_estimator(first_order), LOGITS, F, 1.0, samples=40_000, seed=6)
    assert reinmax.bias < 0.5 * straight.bias


@pytest.mark.parametrize(
    "name",
    [
        "straight_through",
        "softmax_straight_through",
        "gumbel_rao",
        "reinmax",
        "reinmax_rao",
        "decoupled_straight_through",
        "gapped_straight_through",
    ],
)
def test_straight_through_family_feeds_the_exact_one_hot_sample_forward(name: str) -> None:
    logits = torch.randn(64, 5, 7, generator=torch.Generator().manual_seed(7))
    latent = get_estimator(name)(logits.requires_grad_(), 0.7, generator=torch.Generator().manual_seed(8))
    assert latent.z_is_hard and torch.equal(latent.z.detach(), latent.hard)
    latent.z.sum(-1).pow(2).sum().backward()  # a gradient reaches the logits
    assert torch.isfinite(logits.grad).all()


def test_conditional_gumbel_noise_keeps_the_given_argmax() -> None:
    logits = torch.randn(500, 6, generator=torch.Generator().manual_seed(9)) * 3
    index = gumbel_max(logits, generator=torch.Generator().manual_seed(10))
    noise = conditional_gumbel(logits, index, 20, generator=torch.Generator().manual_seed(11))
    assert torch.equal((logits + noise).argmax(-1), index.expand(20, -1))


def test_conditional_gumbel_noise_averaged_over_the_argmax_is_standard_gumbel() -> None:
    """Drawing the argmax from softmax(logits) and then G given it must give i.i.d. Gumbel(0, 1) noise."""
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0])
    index = gumbel_max(logits.expand(40_000, -1), generator=torch.Generator().manual_seed(12))
    noise = conditional_gumbel(
        logits.expand(40_000, -1), index, 1, generator=torch.Generator().manual_seed(13)
    )[0]
    for k in range(4):
        result = stats.kstest(noise[:, k].double().numpy(), lambda x: gumbel_cdf(torch.as_tensor(x)).numpy())
        assert result.pvalue > 0.001, k


def test_exp_concrete_density_matches_torch_distributions() -> None:
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(14))
    for tau in (0.3, 1.0, 2.5):
        reference = ExpRelaxedCategorical(torch.tensor(tau), logits=logits)
        value = reference.sample()
        torch.testing.assert_close(exp_concrete_log_density(value, logits, tau), reference.log_prob(value))


def test_relaxed_kl_is_zero_when_posterior_equals_prior_and_positive_on_average() -> None:
    uniform = torch.zeros(1000, 3, 10)
    log_sample = ExpRelaxedCategorical(torch.tensor(0.5), logits=uniform).sample()
    assert relaxed_kl(log_sample, uniform, 0.5, 0.5).abs().max() < 1e-3
    logits = torch.randn(4000, 3, 10, generator=torch.Generator().manual_seed(15)) * 2
    log_sample = ExpRelaxedCategorical(torch.tensor(0.5), logits=logits).sample()
    assert relaxed_kl(log_sample, logits, 0.5, 0.5).mean() > 0


def test_relaxed_kl_stays_finite_at_small_temperatures() -> None:
    from vae_gumbel.gumbel import gumbel_softmax_sample

    logits = torch.randn(64, 20, 10, generator=torch.Generator().manual_seed(16)) * 5
    sample = gumbel_softmax_sample(logits, 0.01, generator=torch.Generator().manual_seed(17))
    assert torch.isfinite(relaxed_kl(sample.log_soft, logits, 0.01, 0.5)).all()
    assert not torch.isfinite(torch.log(sample.soft)).all()  # the naive log would not be


def test_log_of_k_categories_is_the_largest_kl() -> None:
    # A sanity anchor for the analytic KL the estimators are trained with.
    from vae_gumbel.objectives import kl_per_variable

    assert float(kl_per_variable(torch.tensor([[[50.0, 0, 0, 0]]]))) == pytest.approx(math.log(4), rel=1e-4)


def test_decoupled_straight_through_with_equal_temperatures_is_straight_through() -> None:
    """At tau_f = 1 and tau_b = 1 the paper's softmax(logits / tau + G) is softmax(logits + G)."""
    gradients = {}
    for name in ("straight_through", "decoupled_straight_through"):
        leaf = LOGITS.expand(500, -1, -1).clone().requires_grad_()
        latent = get_estimator(name)(leaf, 1.0, generator=torch.Generator().manual_seed(18))
        F(latent.z).sum().backward()
        gradients[name] = (latent.hard, leaf.grad)
    assert torch.equal(gradients["straight_through"][0], gradients["decoupled_straight_through"][0])
    torch.testing.assert_close(gradients["straight_through"][1], gradients["decoupled_straight_through"][1])


def test_decoupled_forward_sample_is_an_exact_draw_from_the_tempered_posterior() -> None:
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0])
    estimator = get_estimator("decoupled_straight_through", forward_temperature=2.0)
    latent = estimator(logits.expand(40_000, -1), 0.5, generator=torch.Generator().manual_seed(19))
    index = latent.hard.argmax(-1)
    assert category_counts_fit(index, torch.softmax(logits / 2.0, -1)) > 0.001
    assert category_counts_fit(index, torch.softmax(logits, -1)) < 1e-6  # not q itself


def test_decoupled_backward_temperature_trades_variance_for_spread() -> None:
    estimator = get_estimator("decoupled_straight_through")
    sharp = gradient_stats(estimator, LOGITS, F, 0.5, samples=20_000, seed=20)
    smooth = gradient_stats(estimator, LOGITS, F, 2.0, samples=20_000, seed=20)
    assert smooth.variance < 0.5 * sharp.variance


def test_gapped_logits_make_the_sampled_category_lead_by_the_gap_and_move_no_more() -> None:
    logits = torch.tensor([[2.0, 1.5, -3.0, 0.9], [2.0, 1.5, -3.0, 0.9]])
    moved = gapped_logits(logits, torch.tensor([2, 0]), gap=1.0)
    # The sampled -3.0 rises to the top (2.0), 2.0 and 1.5 fall to 1.0, 0.9 is already 1.1 below.
    torch.testing.assert_close(moved[0], torch.tensor([1.0, 1.0, 2.0, 0.9]))
    torch.testing.assert_close(moved[1], torch.tensor([2.0, 1.0, -3.0, 0.9]))
    logits = torch.randn(1000, 7, generator=torch.Generator().manual_seed(21)) * 3
    index = torch.randint(0, 7, (1000,), generator=torch.Generator().manual_seed(22))
    for gap in (0.5, 1.0, 3.0):
        moved = gapped_logits(logits, index, gap)
        leader = moved.gather(-1, index[:, None])
        others = moved.masked_fill(torch.nn.functional.one_hot(index, 7).bool(), -torch.inf)
        assert (leader - others.max(-1, keepdim=True).values >= gap - 1e-6).all()
        assert (moved <= logits.max(-1, keepdim=True).values).all()


def test_gapped_straight_through_draws_from_q_with_less_variance_than_straight_through() -> None:
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0])
    latent = get_estimator("gapped_straight_through")(
        logits.expand(40_000, -1), 0.5, generator=torch.Generator().manual_seed(23)
    )
    assert category_counts_fit(latent.hard.argmax(-1), torch.softmax(logits, -1)) > 0.001
    for tau in (0.5, 1.0):
        gapped = gradient_stats(get_estimator("gapped_straight_through"), LOGITS, F, tau, 20_000, seed=24)
        straight = gradient_stats(get_estimator("straight_through"), LOGITS, F, tau, 20_000, seed=24)
        assert gapped.variance < 0.5 * straight.variance, tau


def test_softmax_straight_through_draws_from_q_and_backpropagates_the_tempered_softmax() -> None:
    logits = torch.tensor([1.5, 0.2, -0.7, 0.0])
    latent = get_estimator("softmax_straight_through")(
        logits.expand(40_000, -1), 0.5, generator=torch.Generator().manual_seed(25)
    )
    assert category_counts_fit(latent.hard.argmax(-1), torch.softmax(logits, -1)) > 0.001
    # Whatever the sample, the gradient is the Jacobian of softmax(logits / tau): no noise in it.
    tau, upstream = 0.7, torch.randn(64, 5, 7, generator=torch.Generator().manual_seed(26))
    batch = torch.randn(64, 5, 7, generator=torch.Generator().manual_seed(27)).requires_grad_()
    latent = get_estimator("softmax_straight_through")(
        batch, tau, generator=torch.Generator().manual_seed(28)
    )
    (latent.z * upstream).sum().backward()
    p = torch.softmax(batch.detach() / tau, dim=-1)
    torch.testing.assert_close(batch.grad, p * (upstream - (p * upstream).sum(-1, keepdim=True)) / tau)
    # So its variance comes from the sample alone: far below straight-through Gumbel-Softmax's.
    for tau in (0.5, 1.0):
        plain = gradient_stats(get_estimator("softmax_straight_through"), LOGITS, F, tau, 20_000, seed=29)
        straight = gradient_stats(get_estimator("straight_through"), LOGITS, F, tau, 20_000, seed=29)
        assert plain.variance < 0.1 * straight.variance, tau


def softmax_jacobian_times(p: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """Gives J(p) upstream for the softmax Jacobian J(p) = diag(p) - p p^T, over the last axis."""
    return p * (upstream - (p * upstream).sum(-1, keepdim=True))


def test_reinmax_rao_draws_from_q_and_rao_blackwellises_reinmaxs_midpoint_jacobian() -> None:
    from vae_gumbel.gumbel import gumbel_softmax_sample

    logits = torch.tensor([1.5, 0.2, -0.7, 0.0])
    latent = get_estimator("reinmax_rao")(
        logits.expand(40_000, -1), 0.5, generator=torch.Generator().manual_seed(30)
    )
    assert category_counts_fit(latent.hard.argmax(-1), torch.softmax(logits, -1)) > 0.001
    # Its gradient, written out: 2 E[J(softmax((m + G) / tau)) | D] / tau - J(pi0) / 2, with
    # m = log((D + pi0) / 2), the mean over the conditional draws G given argmax(m + G) = D.
    tau, draws = 0.7, 100
    upstream = torch.randn(64, 5, 7, generator=torch.Generator().manual_seed(31))
    batch = torch.randn(64, 5, 7, generator=torch.Generator().manual_seed(32)).requires_grad_()
    latent = get_estimator("reinmax_rao", rao_samples=draws)(
        batch, tau, generator=torch.Generator().manual_seed(33)
    )
    (latent.z * upstream).sum().backward()
    generator = torch.Generator().manual_seed(33)  # the same draws, in the same order
    sample = gumbel_softmax_sample(batch.detach(), 1.0, generator=generator)
    pi0 = torch.softmax(batch.detach(), -1)
    midpoint = torch.log((sample.hard + pi0) / 2)
    noise = conditional_gumbel(midpoint, sample.index, draws, generator=generator)
    assert torch.equal((midpoint + noise).argmax(-1), sample.index.expand(draws, -1, -1))
    conditional = softmax_jacobian_times(torch.softmax((midpoint + noise) / tau, -1), upstream).mean(0) / tau
    expected = 2 * conditional - softmax_jacobian_times(pi0, upstream) / 2
    assert torch.equal(latent.hard, sample.hard)
    torch.testing.assert_close(batch.grad, expected)


def test_reinmax_rao_has_less_variance_than_reinmax_and_less_bias_at_a_low_temperature() -> None:
    for tau in (0.5, 1.0, 2.0):
        rao = gradient_stats(get_estimator("reinmax_rao", rao_samples=100), LOGITS, F, tau, 20_000, seed=34)
        reinmax = gradient_stats(get_estimator("reinmax"), LOGITS, F, tau, 20_000, seed=34)
        assert rao.variance < 0.5 * reinmax.variance, tau
        if tau == 0.5:  # at tau = 1 ReinMax is nearly exact on this quadratic f, and ReinMax-Rao is not
            assert rao.bias < 0.5 * reinmax.bias
    few = gradient_stats(get_estimator("reinmax_rao", rao_samples=5), LOGITS, F, 1.0, 20_000, seed=35)
    many = gradient_stats(get_estimator("reinmax_rao", rao_samples=100), LOGITS, F, 1.0, 20_000, seed=35)
    assert many.variance < 0.75 * few.variance
