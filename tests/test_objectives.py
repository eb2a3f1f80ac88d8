"""The negative ELBO: reconstruction, KL to the uniform prior, and the relaxed/unrelaxed pair."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import OneHotCategorical, kl_divergence

from vae_gumbel.estimators import get_estimator
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.objectives import (
    bernoulli_nll,
    code_perplexity,
    code_usage,
    kl_per_variable,
    kl_to_uniform,
    relaxed_and_unrelaxed,
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
    decoder_logits = torch.tensor([[1e4, -1e4]])
    assert torch.isfinite(bernoulli_nll(decoder_logits, torch.tensor([[0.0, 1.0]]))).all()


def test_relaxed_and_unrelaxed_losses_come_from_one_noise_draw() -> None:
    torch.manual_seed(2)
    model = CategoricalVAE(latent_dim=6, categorical_dim=4, hidden=(32,))
    x = torch.rand(16, 784).bernoulli()
    torch.manual_seed(3)
    losses = relaxed_and_unrelaxed(model, x, 0.5, get_estimator("gumbel_softmax"))
    # Recompute the unrelaxed loss by hand from the same noise: one draw of (16, 6, 4) uniforms.
    torch.manual_seed(3)
    logits = model.encode(x)
    hard = get_estimator("gumbel_softmax")(logits, 0.5).hard
    expected = (bernoulli_nll(model.decode(hard), x) + kl_to_uniform(logits)).mean()
    torch.testing.assert_close(losses.loss_unrelaxed, expected.detach())
    assert losses.loss_relaxed.requires_grad and not losses.loss_unrelaxed.requires_grad
    torch.testing.assert_close(losses.loss_relaxed, losses.recon + losses.kl)


def test_straight_through_losses_coincide() -> None:
    torch.manual_seed(4)
    model = CategoricalVAE(latent_dim=6, categorical_dim=4, hidden=(32,))
    x = torch.rand(16, 784).bernoulli()
    losses = relaxed_and_unrelaxed(model, x, 0.5, get_estimator("straight_through"))
    assert losses.loss_relaxed.item() == losses.loss_unrelaxed.item()


def test_code_perplexity_counts_the_categories_in_use() -> None:
    one_hot = torch.nn.functional.one_hot
    collapsed = one_hot(torch.zeros(100, 2, dtype=torch.long), 10)
    spread = one_hot(torch.arange(100).remainder(10).unsqueeze(1).expand(100, 2), 10)
    assert code_perplexity(code_usage(collapsed)).tolist() == pytest.approx([1.0, 1.0])
    assert code_perplexity(code_usage(spread)).tolist() == pytest.approx([10.0, 10.0])


def test_unknown_estimator_names_the_choices() -> None:
    with pytest.raises(ValueError, match="gumbel_softmax"):
        get_estimator("reinforce")
