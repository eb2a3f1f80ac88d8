"""Sample grids from checkpoints, the pictures written during training, and the figure scripts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from tests.conftest import CONF, REPO, run_module, run_python, small_overrides
from vae_gumbel.checkpoint import build_model, load_checkpoint, save_checkpoint
from vae_gumbel.errors import CheckpointError
from vae_gumbel.grids import grid_size, prior_grid, traversal_grid
from vae_gumbel.sample import sample
from vae_gumbel.train import train

LATENT_DIM, CATEGORIES = 4, 5  # the small model of small_overrides


@pytest.fixture(scope="module")
def run_dir(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with checkpoints from a tiny two-epoch training."""
    folder = tmp_path_factory.mktemp("run")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        train(compose("train", overrides=[*small_overrides(mnist_root), "trainer.epochs=2"]), folder)
    return folder


def sample_with(*overrides: str) -> Path:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return sample(compose("sample", overrides=list(overrides)))


def png_size(path: Path) -> tuple[int, int]:
    """Gives (height, width) of a PNG."""
    with Image.open(path) as image:
        return image.size[1], image.size[0]


@pytest.mark.parametrize(
    "mode, extra, tiles",
    [
        ("prior", ["rows=3", "cols=5"], (3, 5)),
        ("reconstruction", ["rows=4", "cols=6"], (4, 6)),
        ("traversal", ["variables=[0,2,3]"], (3, CATEGORIES)),
        ("temperature", ["cols=7", "temperatures=[0.1,1.0,10.0]"], (1 + 3, 7)),
    ],
)
def test_each_mode_writes_a_png_of_the_expected_size(
    run_dir: Path, tmp_path: Path, mode, extra, tiles
) -> None:
    out = sample_with(f"checkpoint={run_dir}", f"mode={mode}", f"out={tmp_path / 'grid.png'}", *extra)
    assert out == tmp_path / "grid.png"
    assert png_size(out) == grid_size(*tiles)


def test_default_output_sits_in_the_runs_samples_folder_named_by_mode_and_seed(run_dir: Path) -> None:
    out = sample_with(f"checkpoint={run_dir}", "mode=prior", "seed=7")
    assert out == run_dir / "samples" / "prior_seed7.png"
    assert png_size(out) == grid_size(8, 8)


def test_same_seed_gives_byte_identical_pngs_and_another_seed_another(run_dir: Path, tmp_path: Path) -> None:
    paths = [
        sample_with(f"checkpoint={run_dir}", "mode=reconstruction", f"seed={seed}", f"out={tmp_path / name}")
        for seed, name in ((3, "a.png"), (3, "b.png"), (4, "c.png"))
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_prior_images_are_probabilities(run_dir: Path) -> None:
    grid = prior_grid(build_model(load_checkpoint(run_dir)), 4, 4, seed=0)
    assert grid.min() >= 0 and grid.max() <= 1
    assert grid.std() > 0.01  # not a flat grey


def test_traversal_rows_differ_from_each_other(run_dir: Path, mnist_root: Path) -> None:
    model = build_model(load_checkpoint(run_dir))
    grid = traversal_grid(model, torch.rand(1, 784), variables=[0, 1, 2, 3])
    height = grid_size(1, 1)[0] - 2
    rows = [grid[:, 2 + i * height : (i + 1) * height] for i in range(4)]
    assert all(not torch.equal(rows[i], rows[j]) for i in range(4) for j in range(i + 1, 4))
    first_row_tiles = [rows[0][:, :, 2 + k * height : (k + 1) * height] for k in range(CATEGORIES)]
    assert not torch.equal(first_row_tiles[0], first_row_tiles[1])  # each category decodes differently


def test_which_last_picks_the_last_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    best = sample_with(f"checkpoint={run_dir}", f"out={tmp_path / 'best.png'}")
    last = sample_with(f"checkpoint={run_dir}", "which=last", f"out={tmp_path / 'last.png'}")
    same_model = load_checkpoint(run_dir / "checkpoints" / "best.pt")["epoch"] == 2
    assert (best.read_bytes() == last.read_bytes()) == same_model


def test_cli_draws_from_a_trained_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.png"
    result = run_module(
        "vae_gumbel.sample", f"checkpoint={run_dir}", "mode=traversal", f"out={out}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert png_size(out) == grid_size(8 if LATENT_DIM >= 8 else LATENT_DIM, CATEGORIES)
    assert not list(tmp_path.glob("*.log")) and not (tmp_path / ".hydra").exists()


@pytest.mark.parametrize(
    "argument, message",
    [
        ("checkpoint={missing}", "does not exist"),
        ("checkpoint={empty_dir}", "is not a run folder with a saved best.pt"),
        ("mode=painting", "mode must be one of"),
    ],
)
def test_cli_reports_bad_input_in_one_line(
    run_dir: Path, tmp_path: Path, argument: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    argument = argument.format(missing=tmp_path / "nope.pt", empty_dir=tmp_path / "empty")
    extra = [] if argument.startswith("checkpoint") else [f"checkpoint={run_dir}"]
    result = run_module("vae_gumbel.sample", argument, *extra, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_checkpoint_whose_weights_do_not_fit_its_model_is_refused(run_dir: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    checkpoint["architecture"]["latent_dim"] = LATENT_DIM + 1
    save_checkpoint(tmp_path / "bad.pt", checkpoint)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        sample_with(f"checkpoint={tmp_path / 'bad.pt'}")


def test_training_writes_reconstructions_and_code_usage_each_sample_epoch(run_dir: Path) -> None:
    samples = {p.name for p in (run_dir / "samples").iterdir()}
    for epoch in ("001", "002"):
        assert {
            f"epoch_{epoch}.png",
            f"reconstruction_epoch_{epoch}.png",
            f"code_usage_epoch_{epoch}.png",
        } <= samples
    assert png_size(run_dir / "samples" / "reconstruction_epoch_001.png") == grid_size(8, 8)


@pytest.mark.parametrize(
    "name", ["gumbel_distribution", "gumbel_max", "softmax_temperature", "gumbel_softmax"]
)
def test_figure_scripts_run_headless_and_write_a_png(tmp_path: Path, name: str) -> None:
    result = run_python(str(REPO / "scripts/make_figures.py"), name, "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000


def test_plot_run_draws_a_runs_curves_into_outputs_figures(run_dir: Path, tmp_path: Path) -> None:
    result = run_python(str(REPO / "scripts/plot_run.py"), str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "outputs" / "figures" / f"{run_dir.name}_curves.png").stat().st_size > 10_000
