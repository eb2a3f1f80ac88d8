"""The categorical VAE's shapes, its linear logits and its prior."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from vae_gumbel.model import CategoricalVAE


def test_encoder_gives_batch_by_n_by_k_logits_of_either_sign() -> None:
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=30, categorical_dim=10)
    logits = model.encode(torch.rand(16, 1, 28, 28))
    assert logits.shape == (16, 30, 10)
    assert (logits < 0).any() and (logits > 0).any()


def test_decoder_gives_pixel_logits_of_either_sign() -> None:
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=4, categorical_dim=3, hidden=(32,))
    pixels = model.decode(model.sample_prior(8))
    assert pixels.shape == (8, 784)
    assert (pixels < 0).any() and (pixels > 0).any()


def test_layer_sizes_follow_the_arguments() -> None:
    model = CategoricalVAE(latent_dim=20, categorical_dim=5, hidden=(64, 32))
    encoder = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    decoder = [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert encoder == [64, 32, 100]
    assert decoder == [32, 64, 784]


def test_prior_samples_are_uniform_one_hot_draws() -> None:
    model = CategoricalVAE(latent_dim=30, categorical_dim=10)
    codes = model.sample_prior(20_000, generator=torch.Generator().manual_seed(1))
    assert codes.shape == (20_000, 30, 10)
    assert set(codes.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(codes.sum(-1), torch.ones(20_000, 30))
    counts = codes.sum(dim=(0, 1)).numpy()
    assert stats.chisquare(counts).pvalue > 0.01


def test_latent_samplers_give_relaxed_hard_and_exact_codes() -> None:
    torch.manual_seed(2)
    model = CategoricalVAE(latent_dim=3, categorical_dim=4, hidden=(16,))
    logits = model.encode(torch.rand(5, 784))
    relaxed = model.sample_relaxed(logits, 1.0)
    hard = model.sample_straight_through(logits, 1.0)
    exact = model.sample_discrete(logits)
    assert ((relaxed > 0) & (relaxed < 1)).all()
    assert relaxed.requires_grad and hard.requires_grad and not exact.requires_grad
    for one_hot in (hard, exact):
        assert torch.equal(one_hot.sum(-1), torch.ones(5, 3))


@pytest.mark.parametrize("kwargs", [{"latent_dim": 0}, {"categorical_dim": 1}, {"hidden": (0,)}])
def test_bad_sizes_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="must be >= 1|must be >= 2"):
        CategoricalVAE(**kwargs)
