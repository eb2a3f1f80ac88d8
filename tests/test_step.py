"""The training step: its compile plan, compiled without recompiles, bf16, and as one CUDA graph."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch._dynamo

from tests.conftest import requires_cuda, tiny_run
from vae_gumbel.config import compose_settings
from vae_gumbel.errors import ConfigError
from vae_gumbel.estimators import ESTIMATORS
from vae_gumbel.loop import StepSums
from vae_gumbel.model import CategoricalVAE, stack
from vae_gumbel.objectives import Elbo
from vae_gumbel.optim import StackOptimizer
from vae_gumbel.run import Member, build_run
from vae_gumbel.step import (
    COMPILE_PAYS_AFTER_STEPS,
    GRAPH_WARMUP_STEPS,
    StepPlan,
    build_step,
    compile_pays,
    plan_step,
)
from vae_gumbel.train import train

CUDA = torch.device("cuda")


def test_compile_true_means_one_cuda_graph_per_step_on_cuda() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert plan_step("true", cuda) == StepPlan("default", cuda_graph=True)
    assert plan_step("true", cpu) == StepPlan("default")
    assert plan_step("max-autotune", cpu) == StepPlan("max-autotune")
    assert plan_step("reduce-overhead", cuda) == StepPlan("reduce-overhead")
    assert plan_step("false", cuda) == StepPlan(None)


def test_a_learned_temperature_gets_inductors_cuda_graphs_instead() -> None:
    # Its gradient leaves the step, which a graph of the whole step would cut off.
    assert plan_step("true", torch.device("cuda"), learned_temperature=True) == StepPlan("reduce-overhead")


def test_graph_replays_the_eager_step_as_one_cuda_graph_and_is_plain_eager_on_a_cpu() -> None:
    assert plan_step("graph", torch.device("cuda")) == StepPlan(None, cuda_graph=True)
    assert plan_step("graph", torch.device("cpu")) == StepPlan(None)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_default_compiles_only_runs_long_enough_to_repay_the_compile(device: str) -> None:
    assert compose_settings().trainer.compile == "auto"
    cuda, pays = device == "cuda", dict(COMPILE_PAYS_AFTER_STEPS[device])[1]
    assert plan_step("auto", torch.device(device), steps=pays - 1) == StepPlan(None, cuda_graph=cuda)
    compiled = StepPlan("default", cuda_graph=cuda, eager_if_compiling_fails=True)
    assert plan_step("auto", torch.device(device), steps=pays) == compiled
    assert plan_step("auto", torch.device(device)) == StepPlan(None, cuda_graph=cuda)  # length unknown
    learned = plan_step("auto", torch.device(device), learned_temperature=True, steps=pays)
    assert learned == StepPlan("reduce-overhead" if cuda else "default", eager_if_compiling_fails=True)


def test_a_large_stack_on_a_cpu_compiles_for_runs_that_one_model_would_not() -> None:
    cpu = torch.device("cpu")
    default_run = 10 * 600  # 10 epochs of 60,000 images at batch 100
    for members in (1, 2, 16, 31):  # each saves too little a step to repay the compile in 6,000
        assert plan_step("auto", cpu, steps=default_run, members=members) == StepPlan(None)
    compiled = StepPlan("default", eager_if_compiling_fails=True)
    for members in (32, 64, 256):
        assert plan_step("auto", cpu, steps=default_run, members=members) == compiled
        assert plan_step("auto", cpu, steps=60, members=members) == StepPlan(None)  # a smoke run
    assert plan_step("auto", cpu, members=64) == StepPlan(None)  # length unknown
    assert compile_pays(torch.device("cuda"), 50_000, members=256) is False  # not measured there


@pytest.mark.parametrize(
    ("plan", "precision", "says"),
    [
        (StepPlan(None), "bf16", "eager, bf16 autocast"),
        (StepPlan(None, cuda_graph=True), "32", "eager, one CUDA graph, float32"),
        (StepPlan("default", cuda_graph=True), "32", "compiled (default), one CUDA graph, float32"),
        (StepPlan("reduce-overhead"), "bf16", "compiled (reduce-overhead), bf16 autocast"),
    ],
)
def test_a_plan_says_how_the_step_runs(plan: StepPlan, precision: str, says: str) -> None:
    assert plan.describe(precision) == says


def stacked_model_and_adam(
    device: torch.device, capturable: bool = False
) -> tuple[CategoricalVAE, StackOptimizer]:
    torch.manual_seed(0)
    model = stack([CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,))]).to(device)
    optim = compose_settings(["optim=adam"]).optim
    return model, StackOptimizer(list(model.parameters()), [optim], device, capturable=capturable)


def test_a_cuda_graph_of_the_step_needs_a_capturable_optimizer() -> None:
    model, optimizer = stacked_model_and_adam(torch.device("cpu"))
    with pytest.raises(ValueError, match="capturable=True"):
        build_step(
            model,
            optimizer,
            Elbo(ESTIMATORS["gumbel_softmax"].build(None)),
            StepPlan("default", cuda_graph=True),
        )


def failing_compiler(graph, example_inputs):
    """A torch.compile backend that fails as inductor does on a machine without a C++ compiler."""
    raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")


def one_step(plan: StepPlan, backend: object = "inductor") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Gives the values and the updated weights of one step from fixed weights, batch and noise."""
    torch._dynamo.reset()
    model, optimizer = stacked_model_and_adam(torch.device("cpu"))
    step = build_step(model, optimizer, Elbo(ESTIMATORS["gumbel_softmax"].build(None)), plan, backend=backend)
    torch.manual_seed(1)
    values = step(torch.rand(1, 8, 784).round(), torch.ones(1))
    return values, [p.detach().clone() for p in model.parameters()]


def test_auto_trains_on_without_compiling_when_compiling_fails(caplog) -> None:
    eager_values, eager_weights = one_step(StepPlan(None))
    with caplog.at_level(logging.WARNING, logger="vae_gumbel.train"):
        values, weights = one_step(StepPlan("default", eager_if_compiling_fails=True), failing_compiler)
    assert "could not compile the training step" in caplog.text and "No working C++ compiler" in caplog.text
    torch.testing.assert_close(values, eager_values, rtol=0, atol=0)  # the same noise, the same update
    for updated, eager in zip(weights, eager_weights, strict=True):
        torch.testing.assert_close(updated, eager, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="compiler found\\); trainer.compile=false or auto trains without"):
        one_step(StepPlan("default"), failing_compiler)  # asked for by name: the run fails


def test_annealing_does_not_recompile_the_step(compose_train, tmp_path: Path) -> None:
    """The temperature enters the compiled step as a tensor: one graph for every temperature."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = compose_train(
        "trainer.compile=true",
        "trainer.compile_backend=aot_eager",  # Dynamo's guards, without code generation
        "temperature.every=1",
        "temperature.rate=0.05",
        "trainer.epochs=2",
    )
    metrics = train(cfg, tmp_path)
    assert metrics["temperature"] < 0.6  # it changed at every one of the 12 steps
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert torch._dynamo.utils.counters["frames"]["total"] == 1


def test_compiled_step_gives_the_eager_losses(compose_train, tmp_path: Path) -> None:
    torch._dynamo.reset()
    eager = train(compose_train(), tmp_path / "eager")
    compiled = train(
        compose_train("trainer.compile=true", "trainer.compile_backend=aot_eager"), tmp_path / "compiled"
    )
    for key in ("train/loss_relaxed", "train/loss_unrelaxed", "test/loss"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4), key


def test_bf16_autocast_trains_with_float32_losses(compose_train, tmp_path: Path) -> None:
    full = train(compose_train("trainer.epochs=3"), tmp_path / "fp32")
    half = train(compose_train("trainer.epochs=3", "trainer.precision=bf16"), tmp_path / "bf16")
    assert math.isfinite(half["train/loss_relaxed"])
    assert half["test/loss"] == pytest.approx(full["test/loss"], rel=0.05)


def test_a_partial_last_batch_recompiles_once_instead_of_failing(compose_train, tmp_path: Path) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = compose_train(
        "trainer.compile=true", "trainer.compile_backend=aot_eager", "data.batch_size=50", "trainer.epochs=2"
    )
    metrics = train(cfg, tmp_path)  # 120 images: batches of 50, 50 and 20
    assert metrics["step"] == 6 and math.isfinite(metrics["train/loss_relaxed"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


def test_a_stopped_member_gets_no_gradient(mnist_root: Path) -> None:
    run = build_run([Member(compose_settings(tiny_run(mnist_root)), {}, None) for _ in range(2)])
    x = next(run.data.train.batches(20, members=2))
    run.mask[1] = False
    before = [p.detach().clone() for p in run.model.parameters()]
    values = run.step_fn(x, torch.ones(2))
    assert values.shape == (2, 4) and torch.isfinite(values).all()
    for old, new in zip(before, run.model.parameters(), strict=True):
        assert not torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])


@requires_cuda
@pytest.mark.parametrize(
    "plan",
    [StepPlan(None), StepPlan("reduce-overhead"), StepPlan("default", cuda_graph=True)],
    ids=["eager", "reduce-overhead", "whole-step-graph"],
)
def test_a_training_step_never_waits_for_the_device(mnist_root: Path, plan: StepPlan) -> None:
    from vae_gumbel.data import ImageSet
    from vae_gumbel.datasets import load_images

    torch._dynamo.reset()
    images = ImageSet(load_images(mnist_root, "mnist", train=True).to(CUDA), 255.0, resample=True)
    model, optimizer = stacked_model_and_adam(CUDA, capturable=plan.cuda_graph)
    step_fn = build_step(model, optimizer, Elbo(ESTIMATORS["gumbel_softmax"].build(None)), plan)
    batches = [*images.batches(20), *images.batches(20)]  # 12 batches, drawn before the check
    tau = torch.ones(1, device=CUDA)
    sums = StepSums(CUDA, capacity=4, first_step=0)
    warmup = GRAPH_WARMUP_STEPS + 1  # compilation and graph capture may wait; replays must not
    for x in batches[:warmup]:
        sums.add(step_fn(x, tau), 20)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in batches[warmup:]:  # eight more steps, across flushes of the sums
            sums.add(step_fn(x, tau), 20)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    totals, first_bad_steps = sums.read()
    assert first_bad_steps == [None] and all(math.isfinite(t) for t in totals.ravel())


@requires_cuda
@pytest.mark.parametrize("precision", ["32", "bf16"])
def test_a_cuda_graph_of_the_step_trains_exactly_like_the_eager_step(
    mnist_root: Path, precision: str
) -> None:
    """Same seed, same batches: the replayed graph gives the eager step's losses and weights,
    so it also draws the same random numbers; in bf16 the twin's refresh and its gradients'
    hand-back are part of the graph."""
    from vae_gumbel.data import ImageSet
    from vae_gumbel.datasets import load_images

    images = ImageSet(load_images(mnist_root, "mnist", train=True).to(CUDA), 255.0, resample=False)
    batches = [images.targets(slice(i, i + 20))[None] for i in range(0, 120, 20)] * 2
    tau = torch.full((1,), 0.5, device=CUDA)
    assert_the_graph_trains_like_the_eager_step(
        lambda: stacked_model_and_adam(CUDA, capturable=True), batches, tau, precision=precision
    )


def assert_the_graph_trains_like_the_eager_step(
    build: Callable, batches: list, tau: torch.Tensor, precision: str = "32"
) -> None:
    """Trains a fresh (model, optimizer) from ``build()`` eagerly and as a CUDA graph on the same
    batches and noise; checks that both give the same losses and weights."""
    runs = []
    for plan in (StepPlan(None), StepPlan(None, cuda_graph=True)):
        model, optimizer = build()
        objective = Elbo(ESTIMATORS["gumbel_softmax"].build(None))
        step_fn = build_step(model, optimizer, objective, plan, precision=precision)
        torch.manual_seed(1)
        values = torch.stack([step_fn(x, tau).clone() for x in batches])
        runs.append((values, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (eager_values, eager_weights), (graph_values, graph_weights) = runs
    torch.testing.assert_close(graph_values, eager_values, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(graph_weights, eager_weights, rtol=1e-5, atol=1e-6)


def test_a_compiled_stack_anneals_each_members_temperature_without_recompiling(mnist_root: Path) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    members = [
        Member(
            compose_settings(
                [*tiny_run(mnist_root), "trainer.compile=true", "trainer.compile_backend=aot_eager", *rate]
            ),
            {},
            None,
        )
        for rate in (
            ["temperature.rate=0.05", "temperature.every=1"],
            ["temperature.rate=0.2", "temperature.every=2", "seed=1"],
        )
    ]
    run = build_run(members)
    first = run.train_epoch()
    second = run.train_epoch()
    assert (
        first.temperature.tolist() != second.temperature.tolist()
    )  # both members annealed, each its own way
    assert second.temperature[0] != second.temperature[1]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


@requires_cuda
def test_a_cuda_graph_of_a_stacked_step_trains_exactly_like_the_eager_stacked_step(mnist_root: Path) -> None:
    from vae_gumbel.data import ImageSet
    from vae_gumbel.datasets import load_images

    images = ImageSet(load_images(mnist_root, "mnist", train=True).to(CUDA), 255.0, resample=False)
    batches = [images.targets(torch.randperm(120, device=CUDA)[:20].expand(3, 20)) for _ in range(12)]
    tau = torch.tensor([0.5, 1.0, 2.0], device=CUDA)
    optims = [compose_settings([f"optim.lr={lr}"]).optim for lr in (1e-3, 3e-3, 1e-3)]

    def build() -> tuple:
        torch.manual_seed(0)
        model = stack([CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,)) for _ in range(3)])
        model = model.to(CUDA)
        return model, StackOptimizer(list(model.parameters()), optims, CUDA, capturable=True)

    assert_the_graph_trains_like_the_eager_step(build, batches, tau)
