"""bf16 training through a bf16 twin of the float32 model: autocast's numbers without its casts."""

from __future__ import annotations

import copy

import pytest
import torch

from vae_gumbel.estimators import ESTIMATORS
from vae_gumbel.mixed_precision import Bf16Twin
from vae_gumbel.model import CategoricalVAE, stack
from vae_gumbel.objectives import Elbo, kl_to_uniform


def a_stack(members: int) -> CategoricalVAE:
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32, 16)))
    return stack(models)


def loss_and_gradients(computes: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    """Runs the relaxed loss of ``computes`` under bf16 autocast and its backward pass, from fixed noise."""
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = Elbo(ESTIMATORS["gumbel_softmax"].build(None))(
            computes, x, torch.full((x.shape[0], 1, 1, 1), 0.7)
        )
    losses.loss_relaxed.sum().backward()
    return torch.stack([losses.loss_relaxed, losses.loss_unrelaxed]).detach()


@pytest.mark.parametrize("members", [1, 3])
def test_the_twin_gives_autocasts_losses_and_gradients_bit_for_bit(members: int) -> None:
    model = a_stack(members)
    reference = copy.deepcopy(model)
    x = torch.rand(members, 8, 784, generator=torch.Generator().manual_seed(0)).round()
    autocast = loss_and_gradients(reference, x)
    twin = Bf16Twin(model)
    twin.refresh()
    twinned = loss_and_gradients(twin.model, x)
    twin.hand_back_gradients()
    assert torch.equal(twinned, autocast)
    for (name, weight), expected in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert weight.grad.dtype == torch.float32, name
        assert torch.equal(weight.grad, expected.grad), name


def test_neither_pass_casts_a_weight() -> None:
    """The matmuls read the twin's bf16 weights as they are, and give their gradients in bf16."""
    model = a_stack(1)
    twin = Bf16Twin(model)
    twin.refresh()
    with torch.profiler.profile(record_shapes=True) as profiled:
        loss_and_gradients(twin.model, torch.rand(1, 8, 784).round())
    cast = {tuple(event.input_shapes[0]) for event in profiled.events() if event.name == "aten::_to_copy"}
    weights = {tuple(weight.squeeze(0).shape) for weight in model.parameters()}
    assert cast and not cast & weights


def test_the_twin_of_a_stack_of_one_computes_as_the_plain_model() -> None:
    """Its weights drop the member axis, so no pass indexes a weight out of the stack."""
    model = a_stack(1)
    twin = Bf16Twin(model)
    twin.refresh()
    assert [low.shape for low in twin.model.parameters()] == [w.shape[1:] for w in model.parameters()]
    with torch.profiler.profile() as profiled:
        loss_and_gradients(twin.model, torch.rand(1, 8, 784).round())
        twin.hand_back_gradients()
    assert "aten::squeeze" not in {event.name for event in profiled.events()}
    assert [w.grad.shape for w in model.parameters()] == [w.shape for w in model.parameters()]


def test_the_twin_keeps_a_stacks_memory_order() -> None:
    model = a_stack(3)
    twin = Bf16Twin(model)
    twin.refresh()
    loss_and_gradients(twin.model, torch.rand(3, 8, 784).round())
    twin.hand_back_gradients()
    for weight, low in zip(model.parameters(), twin.model.parameters(), strict=True):
        assert low.dtype == torch.bfloat16 and low.stride() == weight.stride()
        assert weight.grad.stride() == weight.stride()


def test_each_refresh_takes_the_float32_weights_as_they_are_now() -> None:
    model = a_stack(2)
    twin = Bf16Twin(model)
    twin.refresh()
    with torch.no_grad():
        for weight in model.parameters():
            weight.mul_(-3.0)  # as an update, or a checkpoint loaded between steps, would change them
    twin.refresh()
    for weight, low in zip(model.parameters(), twin.model.parameters(), strict=True):
        assert torch.equal(low, weight.detach().to(torch.bfloat16))
        assert low.grad is None


def test_a_weight_that_gets_no_gradient_keeps_none() -> None:
    model = a_stack(1)
    twin = Bf16Twin(model)
    twin.refresh()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kl_to_uniform(twin.model.encode(torch.rand(1, 8, 784))).sum().backward()  # the decoder is not used
    twin.hand_back_gradients()
    assert all(weight.grad is not None for weight in model.encoder.parameters())
    assert all(weight.grad is None for weight in model.decoder.parameters())
