"""The negative ELBO: reconstruction, KL to the uniform prior, and the relaxed/unrelaxed pair."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import OneHotCategorical, kl_divergence

from vae_gumbel.config import ObjectiveConfig
from vae_gumbel.estimators import gumbel_softmax_estimator, straight_through_estimator
from vae_gumbel.model import CategoricalVAE, stack
from vae_gumbel.objectives import (
    KL_TERMS,
    BernoulliNll,
    Elbo,
    bernoulli_nll,
    build_objective,
    code_perplexity,
    kl_per_variable,
    kl_to_uniform,
)


def test_kl_equals_torch_distributions_kl_to_the_uniform_categorical() -> None:
    logits = torch.randn(64, 30, 10, generator=torch.Generator().manual_seed(0)) * 3
    posterior = OneHotCategorical(logits=logits)
    prior = OneHotCategorical(logits=torch.zeros(10))
    torch.testing.assert_close(kl_per_variable(logits), kl_divergence(posterior, prior))
    torch.testing.assert_close(kl_to_uniform(logits), kl_divergence(posterior, prior).sum(-1))


def test_kl_is_zero_for_a_uniform_posterior_and_positive_otherwise() -> None:
    assert torch.allclose(kl_to_uniform(torch.zeros(4, 30, 10)), torch.zeros(4), atol=1e-6)
    logits = torch.randn(1000, 5, 10, generator=torch.Generator().manual_seed(1))
    assert (kl_per_variable(logits) >= 0).all()


def test_kl_of_a_near_one_hot_posterior_approaches_log_k() -> None:
    logits = torch.full((1, 1, 10), -1e4)
    logits[..., 3] = 1e4
    assert kl_to_uniform(logits).item() == pytest.approx(math.log(10), rel=1e-6)


def test_reconstruction_matches_a_hand_computation() -> None:
    decoder_logits = torch.tensor([[0.0, 2.0, -1.0]])
    target = torch.tensor([[1.0, 0.0, 0.5]])
    p = torch.sigmoid(decoder_logits)
    by_hand = -(target * p.log() + (1 - target) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(bernoulli_nll(decoder_logits, target), by_hand)
    # log 2 + (2 + log(1 + e^-2)) + (0.5 + log(1 + e^-1)) for this example, in nats
    expected = math.log(2) + 2 + math.log1p(math.exp(-2)) + 0.5 + math.log1p(math.exp(-1))
    assert bernoulli_nll(decoder_logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_reconstruction_is_stable_for_extreme_logits() -> None:
    decoder_logits = torch.tensor([[1e4, -1e4, 80.0, -80.0]], requires_grad=True)
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    loss = bernoulli_nll(decoder_logits, target)
    loss.sum().backward()
    assert loss.item() == pytest.approx(2e4)
    torch.testing.assert_close(decoder_logits.grad, torch.tensor([[1.0, -1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("targets", ["binary", "grey levels"])
def test_reconstruction_and_its_gradient_are_torchs_binary_cross_entropy(targets: str) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 100, 784, generator=generator, dtype=torch.float64) * 6
    logits[..., :4] = torch.tensor([20.0, -20.0, 0.0, 1e-3], dtype=torch.float64)
    target = torch.rand(100, 784, generator=generator, dtype=torch.float64)
    if targets == "binary":
        target = (target < 0.3).double()
    weights = torch.randn(3, 100, generator=generator, dtype=torch.float64)
    ours, reference = logits.float().requires_grad_(), logits.clone().requires_grad_()
    loss = bernoulli_nll(ours, target)  # members (3) share the batch's targets (100, 784)
    expected = F.binary_cross_entropy_with_logits(reference, target.expand_as(reference), reduction="none")
    expected = expected.sum(-1)
    (loss * weights).sum().backward()
    (expected * weights).sum().backward()
    assert loss.dtype == torch.float32
    # float32 rounding of a sum of 784 terms of about 1,900 nats in all; the gradient per pixel
    torch.testing.assert_close(loss.double(), expected, rtol=0, atol=1e-3)
    torch.testing.assert_close(ours.grad.double(), reference.grad, rtol=0, atol=1e-6)


def test_reconstructions_gradient_passes_gradcheck_for_logits_and_targets() -> None:
    generator = torch.Generator().manual_seed(4)
    logits = (torch.randn(2, 3, 5, generator=generator, dtype=torch.float64) * 4).requires_grad_()
    target = torch.rand(2, 3, 5, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(BernoulliNll.apply, (logits, target))
    assert torch.autograd.gradgradcheck(BernoulliNll.apply, (logits, target)) is not None


def test_relaxed_and_unrelaxed_losses_come_from_one_noise_draw() -> None:
    torch.manual_seed(2)
    model = CategoricalVAE(latent_dim=6, categorical_dim=4, hidden=(32,))
    x = torch.rand(16, 784).bernoulli()
    torch.manual_seed(3)
    losses = Elbo(gumbel_softmax_estimator)(model, x, 0.5)
    # Recompute the unrelaxed loss by hand from the same noise: one draw of (16, 6, 4) uniforms.
    torch.manual_seed(3)
    logits = model.encode(x)
    hard = gumbel_softmax_estimator(logits, 0.5).hard
    expected = (bernoulli_nll(model.decode(hard), x) + kl_to_uniform(logits)).mean()
    torch.testing.assert_close(losses.loss_unrelaxed, expected.detach())
    assert losses.loss_relaxed.requires_grad and not losses.loss_unrelaxed.requires_grad
    torch.testing.assert_close(losses.loss_relaxed, losses.recon + losses.kl)


def test_straight_through_losses_coincide() -> None:
    torch.manual_seed(4)
    model = CategoricalVAE(latent_dim=6, categorical_dim=4, hidden=(32,))
    x = torch.rand(16, 784).bernoulli()
    losses = Elbo(straight_through_estimator)(model, x, 0.5)
    assert losses.loss_relaxed.item() == losses.loss_unrelaxed.item()


def test_a_stacks_losses_are_each_members_own_with_its_own_temperature() -> None:
    torch.manual_seed(5)
    lone = [CategoricalVAE(latent_dim=6, categorical_dim=4, hidden=(32,)) for _ in range(2)]
    x = torch.rand(2, 16, 784).bernoulli()
    tau = torch.tensor([0.5, 2.0])
    torch.manual_seed(6)
    stacked = Elbo(gumbel_softmax_estimator)(stack(lone), x, tau.view(2, 1, 1, 1))
    noise = torch.Generator().manual_seed(6)
    uniforms = torch.rand(2, 16, 6, 4, generator=noise)  # the one draw the stack made
    for m, model in enumerate(lone):
        logits = model.encode(x[m])
        gumbel = -torch.log(-torch.log(uniforms[m].clamp(min=torch.finfo().tiny, max=1 - torch.finfo().eps)))
        relaxed = torch.softmax((logits + gumbel) / tau[m], -1)
        expected = (bernoulli_nll(model.decode(relaxed), x[m]) + kl_to_uniform(logits)).mean()
        torch.testing.assert_close(stacked.loss_relaxed[m], expected, rtol=1e-5, atol=1e-4)


def test_the_objective_takes_its_kl_term_from_its_settings() -> None:
    assert build_objective(ObjectiveConfig(kl="relaxed"), gumbel_softmax_estimator).kl is KL_TERMS["relaxed"]
    assert build_objective(ObjectiveConfig(), gumbel_softmax_estimator).kl is KL_TERMS["analytic"]


def test_code_perplexity_counts_the_categories_in_use() -> None:
    one_hot = torch.nn.functional.one_hot
    collapsed = one_hot(torch.zeros(100, 2, dtype=torch.long), 10).float().mean(0)
    spread = one_hot(torch.arange(100).remainder(10).unsqueeze(1).expand(100, 2), 10).float().mean(0)
    assert code_perplexity(collapsed).tolist() == pytest.approx([1.0, 1.0])
    assert code_perplexity(spread).tolist() == pytest.approx([10.0, 10.0])
