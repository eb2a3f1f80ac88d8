"""The side-by-side benchmark: the tutorial loop and the trainer's own step, on the same losses."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import requires_cuda, run_module
from vae_gumbel.data import Data, ImageSet
from vae_gumbel.datasets import load_images
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.tools.benchmark import (
    check_same_losses,
    configurations,
    default_options,
    main,
    markdown,
    middle_half,
    model_flops_per_image,
    trainer_settings,
)

TINY = (4, 5, (32,))


def test_model_flops_count_every_matmul_of_a_training_image() -> None:
    model = CategoricalVAE(latent_dim=2, categorical_dim=3, hidden=(4,), input_dim=784)
    encoder, decoder = 784 * 4 + 4 * 6, 6 * 4 + 4 * 784
    assert model_flops_per_image(model) == 3 * 2 * (encoder + decoder) + 2 * decoder
    assert model_flops_per_image(model, unrelaxed_decode=False) == 3 * 2 * (encoder + decoder)


def test_the_middle_half_of_a_ratio_is_between_its_quartiles() -> None:
    assert middle_half([5.0, 1.0, 4.0, 2.0, 3.0]) == [2.0, 4.0]
    assert middle_half([2.0, 4.0]) == [2.5, 3.5]
    assert middle_half([3.0]) is None  # one round has no spread


@pytest.mark.parametrize(
    ("device", "native_bf16", "batch_size", "default"),
    [
        ("cpu", True, 100, ("false", "bf16")),  # 6,000 steps: too short to repay compiling
        ("cpu", False, 100, ("false", "32")),
        ("cpu", False, 20, ("true", "32")),  # 30,000 steps: compiled
        ("cuda", True, 100, ("graph", "32")),  # one CUDA graph of the eager step
    ],
)
def test_the_default_path_is_what_auto_picks_for_a_default_run(
    device: str, native_bf16: bool, batch_size: int, default: tuple[str, str], monkeypatch
) -> None:
    monkeypatch.setattr("vae_gumbel.device.cpu_has_native_bf16", lambda: native_bf16)
    assert default_options(torch.device(device), batch_size, train_images=60_000) == default


def test_the_row_of_the_default_path_says_so_or_is_added(monkeypatch) -> None:
    monkeypatch.setattr("vae_gumbel.device.cpu_has_native_bf16", lambda: True)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def names(device, bf16: bool, no_compile: bool, batch_size: int = 100) -> list[str]:
        args = argparse.Namespace(bf16=bf16, no_compile=no_compile)
        return list(configurations(device, batch_size, 60_000, args, tf32=device.type == "cuda"))

    assert "trainer bf16 (the default here)" in names(cpu, bf16=True, no_compile=False)
    assert names(cpu, bf16=False, no_compile=True) == [
        "baseline",
        "trainer eager",
        "trainer default (eager, bf16)",
    ]
    # On CUDA the default replays the eager step as one CUDA graph, which no other row does.
    configs = configurations(cuda, 100, 60_000, argparse.Namespace(bf16=False, no_compile=True), tf32=True)
    assert configs["trainer default (eager + CUDA graph, fp32)"] == (("graph", "32"), "tf32")
    # A default that compiles is not timed when compiling was ruled out.
    assert not any("default" in name for name in names(cpu, bf16=False, no_compile=True, batch_size=20))
    assert "trainer compiled bf16 (the default here)" in names(
        cpu, bf16=True, no_compile=False, batch_size=20
    )
    assert "trainer default (compiled, bf16)" in names(cpu, bf16=False, no_compile=False, batch_size=20)


def fixture_data(mnist_root: Path, device: str = "cpu") -> Data:
    images = ImageSet(load_images(mnist_root, "mnist", train=True).to(device), 255.0, resample=False)
    return Data(train=images, test=images)


def test_baseline_and_trainer_compute_the_same_losses(mnist_root: Path) -> None:
    settings = trainer_settings(torch.device("cpu"), 20, model=TINY, tau=0.5, tf32=False)
    assert check_same_losses(str(mnist_root), fixture_data(mnist_root), settings, steps=5) < 1e-3


@pytest.mark.slow
def test_benchmark_cli_writes_json_and_a_markdown_table(mnist_root: Path, tmp_path: Path) -> None:
    result = run_module(
        "vae_gumbel.benchmark",
        *("--data-root", str(mnist_root), "--batch-sizes", "20", "40", "--images", "80", "--repeats", "2"),
        *(
            "--no-compile",
            "--latent-dim",
            "4",
            "--categorical-dim",
            "5",
            "--hidden",
            "32",
            "--no-verify",
            "--bf16",
        ),
        *("--peak-size", "128", "--epochs", "1", "--out", str(tmp_path)),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "same losses" in result.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    # The row of the path the defaults pick on this machine says so (eager fp32, or bf16 on a CPU
    # with native bf16).
    train_images = len(load_images(mnist_root, "mnist", train=True))
    for batch_size in (20, 40):
        (default,) = [
            r for r in report["results"] if r["batch_size"] == batch_size and "default" in r["config"]
        ]
        compile, precision = default_options(torch.device("cpu"), batch_size, train_images)
        assert default["trainer_settings"] == {"compile": compile, "precision": precision}
        assert default["config"].endswith(" (the default here)")
    rows = {(r["batch_size"], r["config"].removesuffix(" (the default here)")): r for r in report["results"]}
    configs = ("baseline", "trainer eager", "trainer bf16")
    assert set(rows) == {(b, c) for b in (20, 40) for c in configs}
    assert rows[(20, "trainer bf16")]["trainer_settings"] == {"compile": "false", "precision": "bf16"}
    assert all(len(r["seconds"]) == 2 and r["images_per_s"] > 0 for r in rows.values())
    assert rows[(20, "baseline")]["speedup_vs_baseline"] == 1.0
    # Beside the ratio of the medians, the middle half of the ratios of each round's timings.
    for row in rows.values():
        baseline = rows[(row["batch_size"], "baseline")]
        ratios = [
            (theirs / baseline["images"]) / (ours / row["images"])
            for theirs, ours in zip(baseline["seconds"], row["seconds"], strict=True)
        ]
        low, high = row["speedup_middle_half"]
        assert min(ratios) <= low <= high <= max(ratios)
    # Each row is held against the measured matmul peak of its own precision.
    peaks = report["matmul_peak"]["tflops"]
    assert report["matmul_peak"]["size"] == 128 and set(peaks) == {"float32", "bfloat16"}
    # The ceiling is the higher of a peak measured before and one measured after the timings.
    before, after = report["matmul_peak"]["before"], report["matmul_peak"]["after"]
    assert all(peaks[p] == max(before[p], after[p]) for p in peaks)
    assert [rows[(20, c)]["matmul_precision"] for c in configs] == ["float32", "float32", "bfloat16"]
    for row in rows.values():
        assert row["fraction_of_matmul_peak"] == pytest.approx(
            row["model_tflops"] / peaks[row["matmul_precision"]]
        )
    table = (tmp_path / "bench.md").read_text()
    eager = rows[(20, "trainer eager")]
    low, high = eager["speedup_middle_half"]
    assert f"| {eager['speedup_vs_baseline']:.2f}x ({low:.2f}-{high:.2f}) |" in table
    assert "| 20 | trainer eager" in table and "Matmul peak measured in this run (128 x 128" in table
    assert "WARNING" not in table or "exceeded the matmul peak" in table
    # One row over its peak, as on a machine busy while the peak ran (here the others are set below
    # it: on a busy machine, a real row may also pass its measured peak).
    for row in report["results"]:
        row["fraction_of_matmul_peak"] = 0.5
    report["results"][0]["fraction_of_matmul_peak"] = 1.5
    assert f"WARNING: {report['results'][0]['config']} exceeded the matmul peak" in markdown(report)
    same = report["same_epochs"]
    assert same["epochs"] == 1 and same["trainer_test_loss"] == pytest.approx(
        same["baseline_test_loss"], rel=0.1
    )


@requires_cuda
def test_the_benchmark_loss_check_holds_on_cuda(mnist_root: Path) -> None:
    settings = trainer_settings(torch.device("cuda"), 20, model=TINY, tau=0.5, tf32=False)
    assert check_same_losses(str(mnist_root), fixture_data(mnist_root, "cuda"), settings, steps=5) < 1e-3


@requires_cuda
def test_the_benchmark_times_every_configuration_at_two_batch_sizes(mnist_root: Path, tmp_path) -> None:
    """The graphs of one batch size are freed before the next batch size captures its own; this
    once failed with an illegal memory access (a cuBLAS workspace left in a freed graph's pool)."""
    argv = ["--device", "cuda", "--data-root", str(mnist_root), "--no-verify", "--batch-sizes", "20", "40"]
    argv += ["--images", "120", "--repeats", "1", "--latent-dim", "4", "--categorical-dim", "5"]
    argv += ["--hidden", "32", "--peak-size", "256", "--out", str(tmp_path)]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert {row["config"] for row in rows} == {
        "baseline",
        "trainer eager",
        "trainer compiled + CUDA graph",
        "trainer compiled (reduce-overhead)",
        "trainer bf16",
        "trainer compiled bf16 + CUDA graph",
        "trainer default (eager + CUDA graph, fp32)",  # what trainer.compile=auto does on a short run
    }
    assert len(rows) == 14 and all(math.isfinite(row["loss"]) for row in rows)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--batch-sizes", "100", "0"], "argument --batch-sizes: must be >= 1, got 0"),
        (["--stack-sizes", "8", "-1"], "argument --stack-sizes: must be >= 1, got -1"),
        (["--categorical-dim", "1"], "argument --categorical-dim: must be >= 2, got 1"),
        (["--images", "many"], "argument --images: must be a whole number, got 'many'"),
    ],
)
def test_bad_sizes_are_refused_in_one_line_before_anything_is_timed(
    arguments: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.tools.benchmark as benchmark

    monkeypatch.setattr(benchmark, "run", lambda args: pytest.fail("timed with bad sizes"))
    with pytest.raises(SystemExit) as exit_:
        main(arguments)
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith(says)


def test_an_output_folder_that_cannot_be_written_is_refused_before_anything_is_timed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import vae_gumbel.tools.benchmark as benchmark

    monkeypatch.setattr(benchmark, "run", lambda args: pytest.fail("timed before checking --out"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "a-file" / "bench")])
    assert "give --out a place you can write to" in capsys.readouterr().err
