"""A run: a stack of one or more models built from settings, trained as one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import vae_gumbel.device as device_module
from tests.conftest import poison_training_loss, tiny_run
from vae_gumbel.config import compose_settings
from vae_gumbel.errors import ConfigError, NonFiniteLossError
from vae_gumbel.estimators import build_estimator
from vae_gumbel.model import build_model, member_state
from vae_gumbel.objectives import build_objective
from vae_gumbel.run import Member, build_run, seed_everything


def members(mnist_root: Path, *per_member: list[str]) -> list[Member]:
    return [
        Member(compose_settings([*tiny_run(mnist_root), *overrides]), {}, None) for overrides in per_member
    ]


def test_a_stack_of_one_computes_what_a_lone_model_computes(mnist_root: Path) -> None:
    """100 steps of a run against the plain loop: one model, torch's Adam, the same draws."""
    (member,) = members(mnist_root, ["temperature=constant", "temperature.initial=0.5"])
    run = build_run([member])
    steps = 100
    stacked = []
    while len(stacked) < steps:
        for x in run.data.train.batches(20):
            stacked.append(run.step_fn(x, torch.full((1,), 0.5))[0, :2].clone())

    settings = member.settings
    seed_everything(settings.seed)
    model = build_model(settings.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.optim.lr, fused=True)
    objective = build_objective(settings.objective, build_estimator(settings.estimator))
    plain = []
    while len(plain) < steps:
        order = torch.randperm(len(run.data.train))
        for start in range(0, len(order), 20):
            losses = objective(model, run.data.train.targets(order[start : start + 20]), 0.5)
            optimizer.zero_grad()
            losses.loss_relaxed.backward()
            optimizer.step()
            plain.append(torch.stack([losses.loss_relaxed.detach(), losses.loss_unrelaxed]))
    torch.testing.assert_close(torch.stack(stacked[:steps]), torch.stack(plain[:steps]), rtol=1e-5, atol=0)


def test_each_member_starts_from_the_weights_of_a_lone_run_with_its_seed(mnist_root: Path) -> None:
    run = build_run(members(mnist_root, ["seed=3"], ["seed=5"]))
    for m, seed in enumerate((3, 5)):
        torch.manual_seed(seed)
        lone = build_model(run.settings.model).state_dict()
        assert all(torch.equal(member_state(run.model, m)[k], v) for k, v in lone.items())


def test_members_update_with_their_own_learning_rates(mnist_root: Path) -> None:
    run = build_run(members(mnist_root, ["optim.lr=1e-3"], ["optim.lr=1e-2"], ["optim.lr=1e-3", "seed=1"]))
    assert [g["lr"] for g in run.optimizer.optimizer.param_groups] == [1e-3, 1e-2]  # one group per setting
    assert [run.optimizer.member_options(m)["lr"] for m in range(3)] == [1e-3, 1e-2, 1e-3]


def test_a_failing_member_stops_alone_and_the_others_train_on_unchanged(
    mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    healthy = build_run(members(mnist_root, [], ["seed=1"]))
    healthy.train_epoch()
    poison_training_loss(monkeypatch, at_call=3, factor=torch.tensor([[1.0], [float("nan")]]))  # member 1
    poisoned = build_run(members(mnist_root, [], ["seed=1"]))
    poisoned.train_epoch()
    assert poisoned.active == [True, False]
    assert isinstance(poisoned.members[1].error, NonFiniteLossError) and "step 3" in str(
        poisoned.members[1].error
    )
    for name, value in member_state(healthy.model, 0).items():
        assert torch.equal(member_state(poisoned.model, 0)[name], value), name
    assert all(bool((value == 0).all()) for value in member_state(poisoned.model, 1).values())


def test_a_member_of_a_compiled_stack_whose_weights_turn_non_finite_stops_alone(mnist_root: Path) -> None:
    """What ``trainer.compile=auto`` gives a large stack on a CPU: a compiled step (here through
    AOTAutograd without inductor's code generation, to be quick)."""
    compiled = ["trainer.compile=true", "trainer.compile_backend=aot_eager"]
    runs = []
    for poison in (False, True):
        torch._dynamo.reset()
        run = build_run(members(mnist_root, compiled, [*compiled, "seed=1"], [*compiled, "seed=2"]))
        run.train_epoch()
        if poison:
            with torch.no_grad():
                run.model.decoder[0].weight[1, 0, 0] = float("nan")
        run.train_epoch()
        runs.append(run)
    healthy, poisoned = runs
    assert poisoned.step_path.startswith("compiled")
    assert healthy.active == [True, True, True] and poisoned.active == [True, False, True]
    assert isinstance(poisoned.members[1].error, NonFiniteLossError)
    for m in (0, 2):
        for name, value in member_state(healthy.model, m).items():
            assert torch.equal(member_state(poisoned.model, m)[name], value), (m, name)


def test_when_every_member_has_failed_the_error_ends_the_run(mnist_root: Path, monkeypatch) -> None:
    poison_training_loss(monkeypatch, at_call=1)
    run = build_run(members(mnist_root, []))
    with pytest.raises(NonFiniteLossError, match="non-finite at step 1"):
        run.train_epoch()


def test_jobs_that_differ_in_more_than_per_member_settings_do_not_stack(mnist_root: Path) -> None:
    with pytest.raises(ConfigError, match="differ in more than"):
        build_run(members(mnist_root, [], ["estimator=straight_through"]))


@pytest.mark.parametrize("native", [True, False])
def test_bf16_asked_for_on_a_cpu_that_emulates_it_trains_with_a_warning_that_says_so(
    mnist_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    with caplog.at_level(logging.WARNING, logger="vae_gumbel.train"):
        run = build_run(members(mnist_root, ["trainer.precision=bf16", "trainer.device=cpu"]))
        build_run(members(mnist_root, ["trainer.precision=auto", "trainer.device=cpu"]))
    assert run.step_path.endswith("bf16 autocast")
    warned = [record.getMessage() for record in caplog.records if "emulates" in record.getMessage()]
    # Once, for the run that asked for bf16: auto trains in float32 on such a CPU.
    assert warned == ([] if native else [device_module.slow_precision("bf16", torch.device("cpu"))])
    assert native or warned[0].endswith("trainer.precision=auto trains in float32 here")
