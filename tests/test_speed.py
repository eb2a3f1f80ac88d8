"""The fast path: compiled steps without recompiles, bf16, and the side-by-side benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch._dynamo

from tests.conftest import run_module
from vae_gumbel.benchmark import check_same_losses, model_flops_per_image
from vae_gumbel.config import validate
from vae_gumbel.data import ImageSet, load_images
from vae_gumbel.estimators import get_estimator
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.train import train
from vae_gumbel.training import StepPlan, StepSums, allow_tf32, build_step, plan_step


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


def test_a_cuda_graph_of_the_step_needs_a_capturable_optimizer() -> None:
    model = CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="capturable=True"):
        build_step(model, optimizer, get_estimator("gumbel_softmax"), StepPlan("default", cuda_graph=True))


def test_the_default_compiles_with_cuda_graphs_on_cuda_and_stays_eager_on_a_cpu(compose_train) -> None:
    assert validate(compose_train(small=False)).trainer.compile == "auto"
    assert plan_step("auto", torch.device("cuda")) == StepPlan("default", cuda_graph=True)
    assert plan_step("auto", torch.device("cpu")) == StepPlan(None)


def test_model_flops_count_every_matmul_of_a_training_image() -> None:
    model = CategoricalVAE(latent_dim=2, categorical_dim=3, hidden=(4,), input_dim=784)
    encoder, decoder = 784 * 4 + 4 * 6, 6 * 4 + 4 * 784
    assert model_flops_per_image(model) == 3 * 2 * (encoder + decoder) + 2 * decoder
    assert model_flops_per_image(model, unrelaxed_decode=False) == 3 * 2 * (encoder + decoder)


def test_baseline_and_trainer_compute_the_same_losses(mnist_root: Path) -> None:
    images = ImageSet(load_images(mnist_root, train=True), 255.0, resample=False)
    torch.manual_seed(0)
    model = CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,))
    assert (
        check_same_losses(str(mnist_root), images, model, torch.device("cpu"), steps=5, batch_size=20) < 1e-3
    )


def test_benchmark_cli_writes_json_and_a_markdown_table(mnist_root: Path, tmp_path: Path) -> None:
    result = run_module(
        "vae_gumbel.benchmark",
        "--data-root",
        str(mnist_root),
        "--batch-sizes",
        "20",
        "40",
        "--images",
        "80",
        "--repeats",
        "2",
        "--no-compile",
        "--latent-dim",
        "4",
        "--categorical-dim",
        "5",
        "--hidden",
        "32",
        "--no-verify",
        "--bf16",
        "--peak-size",
        "128",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "same losses" in result.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["batch_size"], r["config"]): r for r in report["results"]}
    configs = ("baseline", "trainer eager", "trainer bf16")
    assert set(rows) == {(b, c) for b in (20, 40) for c in configs}
    assert all(len(r["seconds"]) == 2 and r["images_per_s"] > 0 for r in rows.values())
    assert rows[(20, "baseline")]["speedup_vs_baseline"] == 1.0
    # Each row is held against the measured matmul peak of its own precision.
    peaks = report["matmul_peak"]["tflops"]
    assert report["matmul_peak"]["size"] == 128 and set(peaks) == {"float32", "bfloat16"}
    assert [rows[(20, c)]["matmul_precision"] for c in configs] == ["float32", "float32", "bfloat16"]
    for row in rows.values():
        assert row["fraction_of_matmul_peak"] == pytest.approx(
            row["model_tflops"] / peaks[row["matmul_precision"]]
        )
    table = (tmp_path / "bench.md").read_text()
    assert "| 20 | trainer eager |" in table and "Matmul peak measured in this run (128 x 128" in table
    same = report["same_epochs"]
    assert same["epochs"] == 1 and same["trainer_test_loss"] == pytest.approx(
        same["baseline_test_loss"], rel=0.1
    )


def test_a_partial_last_batch_recompiles_once_instead_of_failing(compose_train, tmp_path: Path) -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = compose_train(
        "trainer.compile=true", "trainer.compile_backend=aot_eager", "data.batch_size=50", "trainer.epochs=2"
    )
    metrics = train(cfg, tmp_path)  # 120 images: batches of 50, 50 and 20
    assert metrics["step"] == 6 and math.isfinite(metrics["train/loss_relaxed"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2


def test_profile_script_prints_the_top_operators(tmp_path: Path) -> None:
    from tests.conftest import REPO, run_python

    result = run_python(
        str(REPO / "scripts/profile_step.py"),
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--steps",
        "3",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "aten::addmm" in result.stdout and "operator calls per step:" in result.stdout


def test_multirun_timing_compares_n_jobs_with_one(tmp_path: Path, mnist_root: Path) -> None:
    from tests.conftest import REPO, run_python, small_overrides

    out = tmp_path / "timing"
    result = run_python(
        str(REPO / "scripts/time_multirun.py"),
        "--jobs",
        "2",
        "--out",
        str(out),
        *small_overrides(mnist_root),
        "trainer.num_threads=1",
        "trainer.epochs=2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "multirun.json").read_text())
    assert report["jobs"] == 2 and len(report["job_epoch_s"]) == 2
    assert report["device"].startswith("CPU")  # the runs' trainer.device=cpu, even beside a GPU
    assert report["ratio"] == pytest.approx(report["multirun_s"] / report["single_s"])
    for run in (out / "single", out / "multirun" / "0", out / "multirun" / "1"):
        assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert "2 jobs took" in result.stdout


def test_multirun_timing_stops_at_a_failing_run(tmp_path: Path, mnist_root: Path) -> None:
    from tests.conftest import REPO, run_python, small_overrides

    result = run_python(
        str(REPO / "scripts/time_multirun.py"),
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "timing"),
        *small_overrides(mnist_root),
        "temperature.initial=-1",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "error: the single job failed" in result.stderr
    assert not (tmp_path / "timing" / "multirun.json").exists()


def test_tf32_is_a_cuda_setting_that_leaves_the_cpu_alone() -> None:
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        allow_tf32(torch.device("cpu"), True)
        assert torch.backends.cuda.matmul.allow_tf32 == before
        allow_tf32(torch.device("cuda"), True)
        assert torch.backends.cuda.matmul.allow_tf32
        allow_tf32(torch.device("cuda"), False)
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_step_sums_add_up_and_find_the_first_non_finite_step_across_flushes() -> None:
    sums = StepSums(torch.device("cpu"), capacity=3, first_step=10)
    values = [torch.tensor([float(i), 1.0, 2.0, 3.0]) for i in range(7)]
    for v in values:
        sums.add(v, batch=2)
    totals, bad = sums.read()
    assert totals == pytest.approx([2 * 21.0, 14.0, 28.0, 42.0]) and bad is None
    sums.add(torch.tensor([1.0, 1.0, 1.0, 1.0]), batch=2)  # step 17
    sums.add(torch.tensor([1.0, math.inf, 1.0, 1.0]), batch=2)  # step 18: the first bad one
    sums.add(torch.tensor([math.nan, 1.0, 1.0, 1.0]), batch=2)
    sums.add(torch.tensor([1.0, 1.0, 1.0, 1.0]), batch=2)  # a flush in between keeps the first
    assert sums.read()[1] == 18
