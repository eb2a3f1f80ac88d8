"""Optimizers over a stack: torch's own update for every member, with each member's own settings."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import seeded_models
from vae_gumbel.config import OptimConfig
from vae_gumbel.model import CategoricalVAE, member_state, stack
from vae_gumbel.optim import OPTIMIZERS, FusedAdam, FusedRAdam, StackOptimizer

CPU = torch.device("cpu")


def optim(name: str = "adam", **values) -> OptimConfig:
    return OptimConfig(name=name, **{"lr": 1e-2, **values})


def loss(model: CategoricalVAE, x: torch.Tensor) -> torch.Tensor:
    return model.decode(torch.softmax(model.encode(x), -1)).pow(2).mean(dim=(-2, -1))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_member_is_updated_as_torch_updates_a_lone_model_with_its_settings(name: str) -> None:
    settings = [optim(name, lr=1e-2), optim(name, lr=3e-3, betas=[0.8, 0.99], eps=1e-6, weight_decay=0.1)]
    lone = seeded_models(2)
    stacked = stack(seeded_models(2))
    optimizer = StackOptimizer(list(stacked.parameters()), settings, CPU)
    lone_optimizers = [
        OPTIMIZERS[name].cls(
            model.parameters(), lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay
        )
        for model, s in zip(lone, settings, strict=True)
    ]
    x = torch.rand(2, 5, 784, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        optimizer.zero_grad()
        loss(stacked, x).sum().backward()
        optimizer.step()
        for model, single, xm in zip(lone, lone_optimizers, x, strict=True):
            single.zero_grad()
            loss(model, xm).backward()
            single.step()
    # The batched and the lone matmuls round differently; where a gradient is near zero, Adam's
    # step (about lr, whatever the gradient's size) follows that rounding. So weights agree to a
    # thousandth of one step of the larger learning rate, moments as closely as before.
    for m, model in enumerate(lone):
        for key, value in model.state_dict().items():
            torch.testing.assert_close(member_state(stacked, m)[key], value, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            optimizer.member_state(m)["state"], lone_optimizers[m].state_dict()["state"], rtol=1e-5, atol=1e-7
        )


def test_fused_adam_updates_and_saves_exactly_as_torchs_fused_adam() -> None:
    """The same kernel, called without torch.optim: the same weights and moments bit for bit, and
    state_dicts of one layout, so that its checkpoints load in torch.optim.Adam."""
    ours, torchs = seeded_models(1)[0], seeded_models(1)[0]
    settings = [{"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}, {"lr": 3e-3}]

    def groups(model: CategoricalVAE) -> list[dict]:
        weights = list(model.parameters())
        return [{"params": weights[:4], **settings[0]}, {"params": weights[4:], **settings[1]}]

    fused, torch_fused = FusedAdam(groups(ours)), torch.optim.Adam(groups(torchs), fused=True)
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        for model, optimizer in ((ours, fused), (torchs, torch_fused)):
            model.zero_grad()
            loss(model, x).backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), torchs.parameters(), strict=True))
    for a, b in zip(ours.parameters(), torchs.parameters(), strict=True):
        assert fused.state[a].keys() == torch_fused.state[b].keys()
        assert all(torch.equal(value, torch_fused.state[b][key]) for key, value in fused.state[a].items())
    assert [{**group, "params": None} for group in fused.param_groups] == [
        {**group, "params": None} for group in torch_fused.param_groups
    ]


# Before RAdam's variance is tractable (rho_t > 5 from step 6), and after.
@pytest.mark.parametrize("steps", [4, 40])
def test_fused_radam_updates_as_torchs_radam_up_to_rounding(steps: int) -> None:
    """Adam's fused kernel with RAdam's rectified step size and scaled eps: torch.optim.RAdam's
    weights and moments up to float rounding, and its settings and state layout."""
    ours, torchs = seeded_models(1)[0], seeded_models(1)[0]
    settings = [{"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}, {"lr": 3e-3}]

    def groups(model: CategoricalVAE) -> list[dict]:
        weights = list(model.parameters())
        return [{"params": weights[:4], **settings[0]}, {"params": weights[4:], **settings[1]}]

    fused, radam = FusedRAdam(groups(ours)), torch.optim.RAdam(groups(torchs))
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(0))
    for _ in range(steps):
        for model, optimizer in ((ours, fused), (torchs, radam)):
            model.zero_grad()
            loss(model, x).backward()
            optimizer.step()
    moved = [
        (a - b).abs().max() for a, b in zip(ours.parameters(), seeded_models(1)[0].parameters(), strict=True)
    ]
    assert min(moved) > 5e-6  # every weight took its steps, by more than the tolerance below
    for a, b in zip(ours.parameters(), torchs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert fused.state[a].keys() == radam.state[b].keys()
        torch.testing.assert_close(fused.state[a], radam.state[b], rtol=1e-5, atol=1e-7)
    for ours_group, torch_group in zip(fused.param_groups, radam.param_groups, strict=True):
        assert {key: ours_group[key] for key in torch_group if key != "params"} == {
            key: value for key, value in torch_group.items() if key != "params"
        }


def test_fused_radam_refuses_decoupled_weight_decay() -> None:
    weights = list(seeded_models(1)[0].parameters())
    with pytest.raises(ValueError, match="adds the weight decay to the gradient"):
        FusedRAdam([{"params": weights, "weight_decay": 0.1, "decoupled_weight_decay": True}])


def test_fused_adam_updates_a_stacks_weights_in_their_memory_order_as_torch_does_without_copying() -> None:
    """A stack keeps each matrix in its gradient's memory order (not contiguous): the update runs
    on contiguous views of that memory, the same elementwise update, where torch's CPU kernel
    copies each such tensor into a contiguous one and back."""
    ours, torchs = stack(seeded_models(3)), stack(seeded_models(3))
    assert not ours.decoder[0].weight.is_contiguous()
    fused = FusedAdam([{"params": list(ours.parameters()), "lr": 1e-2}])
    torch_fused = torch.optim.Adam(torchs.parameters(), lr=1e-2, fused=True)
    x = torch.rand(3, 5, 784, generator=torch.Generator().manual_seed(0))
    for model, optimizer in ((ours, fused), (torchs, torch_fused)):
        for _ in range(3):
            model.zero_grad()
            loss(model, x).sum().backward()
            if optimizer is fused:
                cpu = [torch.profiler.ProfilerActivity.CPU]
                with torch.profiler.profile(activities=cpu, record_shapes=True) as profile:
                    optimizer.step()
            else:
                optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), torchs.parameters(), strict=True))
    for a, b in zip(ours.parameters(), torchs.parameters(), strict=True):
        assert all(torch.equal(value, torch_fused.state[b][key]) for key, value in fused.state[a].items())
        assert fused.state[a]["exp_avg"].stride() == a.stride()  # the state keeps the weight's layout
    copied = [
        event.input_shapes[0]
        for event in profile.events()
        if event.name in ("aten::copy_", "aten::clone") and event.input_shapes[0]  # not a scalar setting
    ]
    assert copied == []


def test_consecutive_members_of_one_setting_are_one_tensor_per_weight_for_torch() -> None:
    """Few large tensors keep the fused update's launches few and full."""
    stacked = stack(seeded_models(5))
    settings = [optim(), optim(), optim(), optim(lr=1e-3), optim()]
    optimizer = StackOptimizer(list(stacked.parameters()), settings, CPU)
    first, second = optimizer.optimizer.param_groups
    assert [p.shape[0] for p in first["params"]] == [3] * 8 + [1] * 8  # members 0-2, then member 4
    assert [p.shape[0] for p in second["params"]] == [1] * 8
    assert all(
        p.data_ptr() == s.data_ptr() for p, s in zip(first["params"][:8], stacked.parameters(), strict=True)
    )


def test_members_that_share_their_settings_share_one_parameter_group() -> None:
    stacked = stack(seeded_models(3))
    optimizer = StackOptimizer(list(stacked.parameters()), [optim(), optim(lr=1e-3), optim()], CPU)
    groups = optimizer.optimizer.param_groups
    assert [len(g["params"]) for g in groups] == [2 * 8, 8]  # 8 weights per member
    assert optimizer.group_of == [0, 1, 0]


def test_a_members_state_reads_and_loads_as_a_lone_models_optimizer_state() -> None:
    stacked = stack(seeded_models(2))
    optimizer = StackOptimizer(list(stacked.parameters()), [optim(), optim()], CPU)
    loss(stacked, torch.rand(2, 5, 784)).sum().backward()
    optimizer.step()
    state = optimizer.member_state(1)
    assert list(state["state"]) == list(range(8)) and state["param_groups"][0]["params"] == list(range(8))
    single = torch.optim.Adam(seeded_models(1)[0].parameters(), lr=1e-2)
    single.load_state_dict(state)  # the format a lone model's optimizer reads
    fresh = StackOptimizer(list(stack(seeded_models(2)).parameters()), [optim(), optim()], CPU)
    fresh.load_member_state(1, state)
    for i, saved in state["state"].items():
        assert all(torch.equal(fresh.member_state(1)["state"][i][key], value) for key, value in saved.items())
        other = fresh.member_state(0)["state"][i]  # member 0 shares the block: no moments, one step
        assert not other["exp_avg"].any() and not other["exp_avg_sq"].any()
        assert torch.equal(other["step"], saved["step"])


def test_resuming_keeps_this_runs_settings_and_way_of_updating_and_loads_what_was_learned() -> None:
    """A checkpoint of a one-graph CUDA run holds capturable=True, one of a CPU run False; the
    resuming run keeps its own, or its updates would fail (here: capturable Adam on a CPU)."""
    saved = StackOptimizer(list(stack(seeded_models(1)).parameters()), [optim(lr=0.5)], CPU)
    for parameter in saved.stacked:
        parameter.grad = torch.ones_like(parameter)
    saved.step()
    state = saved.member_state(0)
    state["param_groups"][0]["capturable"] = True  # as a CUDA run with trainer.compile=auto saves it
    resumed = StackOptimizer(list(stack(seeded_models(1)).parameters()), [optim(lr=1e-3)], CPU)
    resumed.load_member_state(0, state)
    assert resumed.member_options(0)["capturable"] is False and resumed.member_options(0)["lr"] == 1e-3
    for parameter in resumed.stacked:
        parameter.grad = torch.ones_like(parameter)
    resumed.step()
    assert float(resumed.member_state(0)["state"][0]["step"]) == 2


def test_a_reset_member_stays_put() -> None:
    stacked = stack(seeded_models(2))
    optimizer = StackOptimizer(list(stacked.parameters()), [optim(), optim()], CPU)
    loss(stacked, torch.rand(2, 5, 784)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        for parameter in stacked.parameters():
            parameter[1].zero_()
    optimizer.reset_member(1)
    for parameter in stacked.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    assert all(bool((p[1] == 0).all()) for p in stacked.parameters())


def test_a_reset_member_stays_put_also_in_a_weight_of_one_number_per_member() -> None:
    """A learned temperature is such a weight: (M,), so each member's slice has no dimension left."""
    weights = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(3))]
    optimizer = StackOptimizer(weights, [optim()] * 3, CPU)
    for weight in weights:
        weight.grad = torch.randn_like(weight)
    optimizer.step()
    with torch.no_grad():
        for weight in weights:
            weight[1].zero_()
    optimizer.reset_member(1)
    for weight in weights:
        weight.grad = torch.zeros_like(weight)
    optimizer.step()
    assert all(bool((weight[1] == 0).all()) and bool((weight[0] != 0).all()) for weight in weights)
