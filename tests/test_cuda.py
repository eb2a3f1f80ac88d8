"""The fast path on a CUDA device: data on the device, no host-device syncs in the step, CUDA
graphs that are really used. Skipped where there is no CUDA device; run with ``pytest -m cuda``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch._dynamo

from tests.test_train import without_timing
from vae_gumbel.benchmark import check_same_losses
from vae_gumbel.benchmark import main as benchmark_main
from vae_gumbel.data import ImageSet, load_images, load_mnist
from vae_gumbel.estimators import get_estimator
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train
from vae_gumbel.training import GRAPH_WARMUP_STEPS, StepPlan, StepSums, build_step

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")


def test_the_data_set_lives_on_the_device_as_uint8(mnist_root: Path) -> None:
    data = load_mnist(mnist_root, device=CUDA, download=False, verify_checksums=False)
    assert data.train.pixels.device.type == "cuda" and data.train.pixels.dtype == torch.uint8
    batch = next(data.train.batches(20))
    assert batch.device.type == "cuda" and batch.dtype == torch.float32 and batch.shape == (20, 784)


def small_model_and_adam(capturable: bool = False) -> tuple[CategoricalVAE, torch.optim.Adam]:
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,)).to(CUDA)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=capturable)


@pytest.mark.parametrize(
    "plan",
    [StepPlan(None), StepPlan("reduce-overhead"), StepPlan("default", cuda_graph=True)],
    ids=["eager", "reduce-overhead", "whole-step-graph"],
)
def test_a_training_step_never_waits_for_the_device(mnist_root: Path, plan: StepPlan) -> None:
    torch._dynamo.reset()
    images = ImageSet(load_images(mnist_root, train=True).to(CUDA), 255.0, resample=True)
    model, optimizer = small_model_and_adam(capturable=plan.cuda_graph)
    step_fn = build_step(model, optimizer, get_estimator("gumbel_softmax"), plan)
    batches = [*images.batches(20), *images.batches(20)]  # 12 batches, drawn before the check
    tau = torch.tensor(1.0, device=CUDA)
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
    totals, first_bad_step = sums.read()
    assert first_bad_step is None and all(math.isfinite(t) for t in totals)


def test_a_cuda_graph_of_the_step_trains_exactly_like_the_eager_step(mnist_root: Path) -> None:
    """Same seed, same batches: the replayed graph gives the eager step's losses and weights,
    so it also draws the same random numbers."""
    images = ImageSet(load_images(mnist_root, train=True).to(CUDA), 255.0, resample=False)
    batches = [images.targets(slice(i, i + 20)) for i in range(0, 120, 20)] * 2
    tau = torch.tensor(0.5, device=CUDA)
    runs = []
    for plan in (StepPlan(None), StepPlan(None, cuda_graph=True)):
        model, optimizer = small_model_and_adam(capturable=True)
        step_fn = build_step(model, optimizer, get_estimator("gumbel_softmax"), plan)
        torch.manual_seed(1)
        values = torch.stack([step_fn(x, tau).clone() for x in batches])
        runs.append((values, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (eager_values, eager_weights), (graph_values, graph_weights) = runs
    torch.testing.assert_close(graph_values, eager_values, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(graph_weights, eager_weights, rtol=1e-5, atol=1e-6)


def test_the_benchmark_times_every_configuration_at_two_batch_sizes(mnist_root: Path, tmp_path) -> None:
    """The graphs of one batch size are freed before the next batch size captures its own; this
    once failed with an illegal memory access (a cuBLAS workspace left in a freed graph's pool)."""
    argv = ["--device", "cuda", "--data-root", str(mnist_root), "--no-verify", "--batch-sizes", "20", "40"]
    argv += ["--images", "120", "--repeats", "1", "--latent-dim", "4", "--categorical-dim", "5"]
    argv += ["--hidden", "32", "--peak-size", "256", "--out", str(tmp_path)]
    assert benchmark_main(argv) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert {row["config"] for row in rows} == {
        "baseline",
        "trainer eager",
        "trainer compiled + CUDA graph",
        "trainer compiled (reduce-overhead)",
        "trainer bf16",
        "trainer compiled bf16 + CUDA graph",
    }
    assert len(rows) == 12 and all(math.isfinite(row["loss"]) for row in rows)


def test_compile_true_replays_one_cuda_graph_per_step_and_anneals_through_it(
    compose_train, tmp_path, monkeypatch
) -> None:
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: replays.append(1) or replay(graph))
    torch._dynamo.reset()
    cfg = compose_train(
        "trainer.device=cuda",
        "trainer.compile=true",
        "temperature.every=1",
        "temperature.rate=0.05",
        "trainer.epochs=2",
    )
    metrics = train(cfg, tmp_path)
    assert math.isfinite(metrics["test/loss"]) and metrics["temperature"] < 0.6
    assert len(replays) == 2 * 6 - GRAPH_WARMUP_STEPS  # every step after the warm-up


def test_cuda_graphs_and_bf16_train_like_the_eager_float32_step(compose_train, tmp_path) -> None:
    torch._dynamo.reset()
    eager = train(
        compose_train("trainer.device=cuda", "trainer.epochs=3", "trainer.compile=false"), tmp_path / "eager"
    )
    fast = train(
        compose_train(
            "trainer.device=cuda", "trainer.epochs=3", "trainer.compile=true", "trainer.precision=bf16"
        ),
        tmp_path / "fast",
    )
    # Compiled kernels draw other random numbers than eager ones, so only the distribution agrees.
    assert fast["test/loss"] == pytest.approx(eager["test/loss"], rel=0.05)


@pytest.mark.parametrize(
    "overrides",
    [
        ("estimator=straight_through",),
        ("estimator=gumbel_rao",),
        ("estimator=reinmax",),
        ("temperature=learned",),
        ("trainer.precision=bf16", "estimator=gumbel_rao"),
    ],
    ids=lambda o: ",".join(o),
)
def test_every_estimator_and_the_learned_temperature_train_with_the_default_cuda_graphs(
    compose_train, tmp_path, overrides: tuple[str, ...]
) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    metrics = train(compose_train("trainer.device=cuda", "trainer.epochs=2", *overrides), tmp_path)
    assert math.isfinite(metrics["test/loss"]) and math.isfinite(metrics["train/loss_relaxed"])
    assert torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] == 0


def test_resume_with_the_default_cuda_graphs_continues_exactly(compose_train, tmp_path) -> None:
    anneal = ("trainer.device=cuda", "temperature.every=1", "temperature.rate=0.05")
    torch._dynamo.reset()
    train(compose_train(*anneal, "trainer.epochs=3"), tmp_path / "straight")
    torch._dynamo.reset()
    train(compose_train(*anneal, "trainer.epochs=1"), tmp_path / "interrupted")
    torch._dynamo.reset()
    train(compose_train(*anneal, "trainer.epochs=3", "resume=last"), tmp_path / "interrupted")
    straight, interrupted = (
        without_timing(read_metrics(tmp_path / run / "metrics.jsonl")) for run in ("straight", "interrupted")
    )
    assert interrupted == straight


def test_a_checkpoint_written_on_a_cpu_resumes_with_the_default_cuda_graphs(compose_train, tmp_path) -> None:
    train(compose_train("trainer.device=cpu", "trainer.epochs=1"), tmp_path)
    torch._dynamo.reset()
    metrics = train(compose_train("trainer.device=cuda", "trainer.epochs=2", "resume=last"), tmp_path)
    assert metrics["epoch"] == 2 and math.isfinite(metrics["test/loss"])


def test_the_benchmark_loss_check_holds_on_cuda(mnist_root: Path) -> None:
    images = ImageSet(load_images(mnist_root, train=True).to(CUDA), 255.0, resample=False)
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,)).to(CUDA)
    assert check_same_losses(str(mnist_root), images, model, CUDA, steps=5, batch_size=20) < 1e-3
