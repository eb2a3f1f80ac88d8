"""Honest test scores: the test ELBO of every member of a stack, and importance-weighted bounds."""

from __future__ import annotations

import math

import pytest
import torch

from vae_gumbel.data import ImageSet
from vae_gumbel.likelihood import importance_weighted_nll, score_test_set
from vae_gumbel.model import CategoricalVAE, stack
from vae_gumbel.objectives import bernoulli_nll
from vae_gumbel.tools.gradient_study import all_codes


@pytest.fixture(scope="module")
def tiny_model_and_data() -> tuple[CategoricalVAE, torch.Tensor]:
    """A 2 x 3 latent model (9 codes: log p(x) is exact by enumeration) and binary images."""
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=2, categorical_dim=3, hidden=(16,))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3)  # a peaked posterior and decoder: bounds far from tight at k = 1
    x = torch.rand(20, 784).lt(0.3).float()
    return model, x


def exact_log_likelihood(model: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    codes = all_codes(2, 3)
    with torch.no_grad():
        log_px_z = torch.stack([-bernoulli_nll(model.decode(c.expand(len(x), 2, 3)), x) for c in codes])
    return torch.logsumexp(log_px_z - 2 * math.log(3), dim=0)


def exact_elbo_moments(model: CategoricalVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gives E_q[log w] (the ELBO) and Var_q[log w] per image, by enumeration."""
    codes = all_codes(2, 3)
    with torch.no_grad():
        log_q_all = torch.log_softmax(model.encode(x), -1)
        q, log_w = [], []
        for c in codes:
            log_q = (c * log_q_all).sum((-2, -1))
            log_joint = -bernoulli_nll(model.decode(c.expand(len(x), 2, 3)), x) - 2 * math.log(3)
            q.append(log_q.exp())
            log_w.append(log_joint - log_q)
    q, log_w = torch.stack(q).double(), torch.stack(log_w).double()
    mean = (q * log_w).sum(0)
    return mean, (q * (log_w - mean) ** 2).sum(0)


def test_iwae_bounds_tighten_with_k_toward_the_exact_likelihood(tiny_model_and_data) -> None:
    model, x = tiny_model_and_data
    exact_nll = float(-exact_log_likelihood(model, x).mean())
    estimate = importance_weighted_nll(model, x, (1, 10, 100, 5000), batch_size=7, max_rows=300, seed=1)
    bounds = [estimate.iwae_nll[k] for k in (1, 10, 100, 5000)]
    assert bounds[0] - exact_nll > 1.0  # k = 1 is loose on this model
    assert all(a >= b - 0.05 for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(b >= exact_nll - 0.05 for b in bounds)
    assert bounds[-1] == pytest.approx(exact_nll, abs=0.05)


def test_negative_elbo_averaged_over_draws_matches_the_exact_elbo(tiny_model_and_data) -> None:
    model, x = tiny_model_and_data
    draws = 2000
    estimate = importance_weighted_nll(model, x, (draws,), batch_size=20, seed=2)
    elbo, variance = exact_elbo_moments(model, x)
    standard_error = float(variance.mean().sqrt()) / math.sqrt(len(x) * draws)
    assert estimate.neg_elbo == pytest.approx(float(-elbo.mean()), abs=5 * standard_error)
    assert estimate.samples == draws


def test_bad_numbers_of_importance_samples_are_refused(tiny_model_and_data) -> None:
    model, x = tiny_model_and_data
    with pytest.raises(ValueError, match=">= 1"):
        importance_weighted_nll(model, x, (0, 10))


def test_the_test_elbo_scores_every_member_with_the_same_draws_as_a_lone_model() -> None:
    torch.manual_seed(0)
    lone = [CategoricalVAE(latent_dim=3, categorical_dim=4, hidden=(16,)) for _ in range(3)]
    images = ImageSet(torch.randint(0, 2, (50, 784), dtype=torch.uint8), 1.0, resample=False)
    stacked = score_test_set(stack(lone), images, batch_size=20, seed=7)
    for m, model in enumerate(lone):
        (alone,) = score_test_set(model, images, batch_size=20, seed=7)
        assert stacked[m].metrics == pytest.approx(alone.metrics, rel=1e-5)
        torch.testing.assert_close(stacked[m].usage, alone.usage)


def test_a_stack_evaluates_batch_size_rows_at_a_time_however_many_members_it_has(monkeypatch) -> None:
    torch.manual_seed(0)
    model = stack([CategoricalVAE(latent_dim=3, categorical_dim=4, hidden=(16,)) for _ in range(4)])
    images = ImageSet(torch.randint(0, 2, (50, 784), dtype=torch.uint8), 1.0, resample=False)
    shapes, encode = [], model.encode
    monkeypatch.setattr(model, "encode", lambda x: shapes.append(x.shape[:2]) or encode(x))
    score_test_set(model, images, batch_size=20, seed=7)
    assert shapes == [(4, 5)] * 10  # 4 members x 5 images: 20 rows, over all 50 images


def test_the_test_elbo_is_the_same_at_every_evaluation() -> None:
    torch.manual_seed(1)
    model = CategoricalVAE(latent_dim=3, categorical_dim=4, hidden=(16,))
    images = ImageSet(torch.randint(0, 2, (30, 784), dtype=torch.uint8), 1.0, resample=False)
    first, again = (score_test_set(model, images, 10, seed=3)[0].metrics for _ in range(2))
    assert first == again
    assert score_test_set(model, images, 30, seed=3)[0].metrics == pytest.approx(
        first, rel=1e-6
    )  # same draws


def test_a_variable_is_active_when_its_code_tells_something_about_the_image(monkeypatch) -> None:
    """Variable 0 follows the image, variable 1 is frozen on one category for every image (the
    largest KL to the prior, log K, and nothing learnt), variable 2 is the prior itself."""
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=3, categorical_dim=4, hidden=(16,))
    pixels = torch.zeros(40, 784, dtype=torch.uint8)
    pixels[::2, 0] = 1  # half the images have their first pixel on
    images = ImageSet(pixels, 1.0, resample=False)

    def encode(x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*x.shape[:-1], 3, 4)
        logits[..., 0, 0] = 30.0 * x[..., 0]  # category 0 for images with the pixel on,
        logits[..., 0, 1] = 30.0 * (1 - x[..., 0])  # category 1 for the others
        logits[..., 1, 2] = 30.0
        return logits

    monkeypatch.setattr(model, "encode", encode)
    (scores,) = score_test_set(model, images, batch_size=10, seed=0)
    kl = scores.kl_per_variable
    assert kl[0] == pytest.approx(math.log(4), abs=1e-4) and kl[1] == pytest.approx(math.log(4), abs=1e-4)
    assert kl[2] == pytest.approx(0.0, abs=1e-6)
    assert scores.metrics["test/active_variables"] == 1  # one bit about the image: log 2 nats
