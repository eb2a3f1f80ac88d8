"""The categorical VAE's shapes, its linear logits and its prior."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import seeded_models
from vae_gumbel.model import CategoricalVAE, member_state, stack, stack_size, unstack

# The statistical tests need scipy (the dev extra). Where only the runtime dependencies are
# installed (say, for `pytest -m cuda` on a GPU machine), this module skips instead of failing
# the collection of every test.
stats = pytest.importorskip("scipy.stats")


def test_encoder_gives_batch_by_n_by_k_logits_of_either_sign() -> None:
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=30, categorical_dim=10)
    logits = model.encode(torch.rand(16, 784))
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


@pytest.mark.parametrize("count", [1, 3])
def test_a_stack_computes_what_each_of_its_models_computes(count: int) -> None:
    lone = seeded_models(count)
    stacked = stack(lone)
    assert stack_size(stacked) == count and stacked.encoder[0].weight.shape == (count, 16, 784)
    x = torch.rand(count, 5, 784, generator=torch.Generator().manual_seed(1))
    logits = stacked.encode(x)
    decoded = stacked.decode(torch.softmax(logits, -1))
    for m, model in enumerate(lone):
        torch.testing.assert_close(logits[m], model.encode(x[m]))
        torch.testing.assert_close(decoded[m], model.decode(torch.softmax(model.encode(x[m]), -1)))


def test_a_members_weights_are_its_models_state_dict_and_unstack_gives_it_back() -> None:
    lone = seeded_models(2)
    stacked = stack(lone)
    for m, model in enumerate(lone):
        assert member_state(stacked, m).keys() == model.state_dict().keys()
        single = unstack(stacked, m)
        assert stack_size(single) == 1 and single.encoder[0].weight.shape == (16, 784)
        assert all(torch.equal(single.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("count", [1, 3])
def test_autograd_gives_each_stacked_weights_gradient_in_the_weights_own_memory_order(count: int) -> None:
    """Else autograd copies each gradient into its weight's order on every step: one more pass over
    all the weights of the stack."""
    stacked = stack(seeded_models(count))
    x = torch.rand(count, 5, 784)
    loss = stacked.decode(torch.softmax(stacked.encode(x), -1)).sum()
    parameters = list(stacked.parameters())
    for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters), strict=True):
        assert gradient.stride() == parameter.stride()


def test_unstacked_and_saved_weights_are_in_plain_memory_order() -> None:
    single = unstack(stack(seeded_models(3)), 1)
    assert all(value.is_contiguous() for value in single.state_dict().values())


def test_unstacking_draws_no_random_number() -> None:
    stacked = stack(seeded_models(2))
    state = torch.get_rng_state()
    unstack(stacked, 1)
    assert torch.equal(torch.get_rng_state(), state)
