"""The sample entry point: grids from a checkpoint, named and seeded, and its one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import (
    TEST_IMAGES,
    assert_one_line_error,
    compose_config,
    run_module,
    run_module_noting_imports,
    sweep_of,
    tiny_run,
)
from tests.test_grids import grid_size
from vae_gumbel.config import SampleConfig, validate
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.sample import sample
from vae_gumbel.train import train

LATENT_DIM, CATEGORIES = 4, 5  # the tiny model of debug=tiny


@pytest.fixture(scope="module")
def run_dir(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with checkpoints from a tiny two-epoch training."""
    folder = tmp_path_factory.mktemp("run")
    train(compose_config("train", [*tiny_run(mnist_root), "trainer.epochs=2"]), folder)
    return folder


def sample_with(*overrides: str) -> Path:
    return sample(compose_config("sample", list(overrides)))[0]


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


def test_default_names_carry_every_setting_that_changes_the_picture(run_dir: Path) -> None:
    samples = RunFolder(run_dir).samples
    out = sample_with(f"checkpoint={run_dir}", "mode=prior", "seed=7")
    assert out == samples / "prior_rows8_cols8_seed7_epoch002.png"
    assert png_size(out) == grid_size(8, 8)
    # Reconstructions of sampled and of argmax codes are different pictures, in different files.
    drawn = sample_with(f"checkpoint={run_dir}", "mode=reconstruction")
    argmax = sample_with(f"checkpoint={run_dir}", "mode=reconstruction", "code=argmax")
    assert drawn.name == "reconstruction_code-sample_rows8_cols8_seed0_epoch002.png"
    assert argmax.name == "reconstruction_code-argmax_rows8_cols8_seed0_epoch002.png"
    temperature = sample_with(f"checkpoint={run_dir}", "mode=temperature", "temperatures=[0.5,2.0]")
    assert temperature.name == "temperature_temperatures-0.5-2_cols8_seed0_epoch002.png"


def test_one_picture_has_one_default_name(run_dir: Path) -> None:
    # rows chooses how many top-KL variables a traversal shows, at most the model's; chosen
    # variables make the rows themselves (and rows with them is refused).
    all_variables = sample_with(f"checkpoint={run_dir}", "mode=traversal", f"rows={LATENT_DIM + 10}")
    assert all_variables.name == f"traversal_variables-top-kl_rows{LATENT_DIM}_epoch002.png"
    chosen = sample_with(f"checkpoint={run_dir}", "mode=traversal", "variables=[1,3]")
    assert chosen.name == "traversal_variables-1-3_epoch002.png"
    # Reconstructions come in pairs of rows: rows=3 draws what rows=2 draws.
    odd, even = (sample_with(f"checkpoint={run_dir}", "mode=reconstruction", f"rows={n}") for n in (3, 2))
    assert odd == even and odd.name == "reconstruction_code-sample_rows2_cols8_seed0_epoch002.png"


def test_an_existing_different_picture_is_never_replaced_silently(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    out.write_bytes(b"someone else's picture")
    path, said = sample(compose_config("sample", [f"checkpoint={run_dir}", f"out={out}"]))
    assert out.read_bytes() == b"someone else's picture"
    assert path == tmp_path / "grid_2.png" and "exists and differs: wrote" in said
    again, said = sample(compose_config("sample", [f"checkpoint={run_dir}", f"out={path}"]))
    assert again == path and "unchanged" in said  # the same picture again: nothing new
    path, said = sample(compose_config("sample", [f"checkpoint={run_dir}", f"out={out}", "overwrite=true"]))
    assert path == out and said == f"replaced {out}" and out.read_bytes() == again.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "grid_2.png"]  # no partial files


def test_the_same_pixels_in_another_encoding_are_the_same_picture(run_dir: Path, tmp_path: Path) -> None:
    out = sample_with(f"checkpoint={run_dir}", f"out={tmp_path / 'grid.png'}")
    with Image.open(out) as grey:
        assert grey.mode == "L"
        grey.convert("RGB").save(out)  # how an earlier version stored the same grid
    rgb = out.read_bytes()
    path, said = sample(compose_config("sample", [f"checkpoint={run_dir}", f"out={out}"]))
    assert path == out and "unchanged" in said and out.read_bytes() == rgb
    with Image.open(out) as picture:  # one pixel changed: another picture
        picture.load()
    picture.putpixel((0, 0), (255, 0, 0))
    picture.save(out)
    path, said = sample(compose_config("sample", [f"checkpoint={run_dir}", f"out={out}"]))
    assert path == tmp_path / "grid_2.png" and "exists and differs" in said


def test_same_seed_gives_byte_identical_pngs_and_another_seed_another(run_dir: Path, tmp_path: Path) -> None:
    paths = [
        sample_with(f"checkpoint={run_dir}", "mode=reconstruction", f"seed={seed}", f"out={tmp_path / name}")
        for seed, name in ((3, "a.png"), (3, "b.png"), (4, "c.png"))
    ]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_which_last_picks_the_last_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    from vae_gumbel.checkpoint import load_checkpoint

    best = sample_with(f"checkpoint={run_dir}", f"out={tmp_path / 'best.png'}")
    last = sample_with(f"checkpoint={run_dir}", "which=last", f"out={tmp_path / 'last.png'}")
    same_model = load_checkpoint(run_dir, which="best")["epoch"] == 2
    assert (best.read_bytes() == last.read_bytes()) == same_model


def test_training_writes_its_pictures_at_the_same_size_as_sample(run_dir: Path) -> None:
    assert png_size(RunFolder(run_dir).epoch_picture("reconstruction", 1)) == grid_size(8, 8)
    assert png_size(RunFolder(run_dir).epoch_picture("prior", 2)) == grid_size(8, 8)


@pytest.mark.slow
def test_cli_draws_from_a_trained_checkpoint(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.png"
    result = run_module(
        "vae_gumbel.sample", f"checkpoint={run_dir}", "mode=traversal", f"out={out}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert png_size(out) == grid_size(LATENT_DIM, CATEGORIES)
    assert not list(tmp_path.glob("*.log")) and not (tmp_path / ".hydra").exists()


def test_cli_draws_without_importing_torchvision_nor_torch_dynamo(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prior.png"
    result, imported = run_module_noting_imports(
        "vae_gumbel.sample", f"checkpoint={run_dir}", f"out={out}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and imported == []


def test_a_missing_or_empty_checkpoint_and_a_bad_mode_are_clear_errors(run_dir: Path, tmp_path: Path) -> None:
    from vae_gumbel.errors import CheckpointError, ConfigError

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="does not exist"):
        sample_with(f"checkpoint={tmp_path / 'nope.pt'}")
    with pytest.raises(CheckpointError, match="empty is not a run folder$"):
        sample_with(f"checkpoint={tmp_path / 'empty'}")
    with pytest.raises(ConfigError, match="mode must be one of"):
        sample_with(f"checkpoint={run_dir}", "mode=painting")
    with pytest.raises(ConfigError, match=r"temperatures must be finite numbers, got \[1.0, inf\]"):
        sample_with(f"checkpoint={run_dir}", "mode=temperature", "temperatures=[1,inf]")


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            ["rows=1000", "cols=1000"],
            "mode=prior with rows=1000 and cols=1000 asks for a grid of 1,000,000 pictures",
        ),
        (["mode=temperature", "cols=20000"], "with 5 temperatures and cols=20000 asks for a grid of 120,000"),
        (["mode=traversal", "variables=[]"], "variables must be null .* or a non-empty list"),
    ],
)
def test_a_grid_too_large_to_draw_is_refused_before_anything_is_drawn(settings: list[str], says: str) -> None:
    from vae_gumbel.errors import ConfigError

    with pytest.raises(ConfigError, match=says):
        sample_with("checkpoint=unused", *settings)


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            ["variables=[0,5]"],
            "variables=[0,5] is read by mode=traversal only, and this grid is mode=prior: ",
        ),
        (
            ["mode=temperature", "code=argmax"],
            "code=argmax is read by mode=reconstruction only, and this grid",
        ),
        (
            ["mode=reconstruction", "temperatures=[0.5,1]"],
            "temperatures=[0.5,1] is read by mode=temperature",
        ),
        (
            ["mode=temperature", "rows=4"],
            "rows=4 is not read by mode=temperature, whose grid is a row of test ",
        ),
        (["mode=traversal", "cols=3"], "cols=3 is not read by mode=traversal, whose grid is a row of K "),
        (["mode=traversal", "seed=2"], "seed=2 is not read by mode=traversal"),
        (["mode=traversal", "variables=[0,1]", "rows=3"], "rows=3 is not read by mode=traversal"),
    ],
)
def test_a_setting_the_chosen_mode_does_not_read_is_refused_rather_than_ignored(
    settings: list[str], says: str
) -> None:
    from vae_gumbel.errors import ConfigError

    with pytest.raises(ConfigError, match="^" + re.escape(says)):
        sample_with("checkpoint=unused", *settings)
    # A default value, given or not, is no sign of another mode; what a mode reads passes: traversal's
    # rows (its top-KL variables), temperature's cols and seed.
    for allowed in (["mode=traversal", "code=sample", "rows=3"], ["mode=temperature", "cols=4", "seed=1"]):
        validate(compose_config("sample", ["checkpoint=unused", *allowed]), SampleConfig)


def test_a_reconstruction_of_more_images_than_the_test_set_is_refused(run_dir: Path) -> None:
    from vae_gumbel.errors import ConfigError

    with pytest.raises(
        ConfigError, match=f"shows {2 * TEST_IMAGES:,} test images, and the test set has {TEST_IMAGES:,}"
    ):
        sample_with(f"checkpoint={run_dir}", "mode=reconstruction", "rows=4", f"cols={TEST_IMAGES}")


def test_an_output_that_is_no_png_or_cannot_be_written_is_refused_before_drawing(
    run_dir: Path, tmp_path: Path
) -> None:
    from vae_gumbel.errors import ConfigError

    with pytest.raises(ConfigError, match="out must be null or the path of a file ending in .png"):
        sample_with(f"checkpoint={run_dir}", f"out={tmp_path / 'grid.jpg'}")
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(
        ConfigError, match="cannot write into .*file/grids .*; give out= a place you can write to"
    ):
        sample_with(f"checkpoint={run_dir}", f"out={tmp_path / 'file' / 'grids' / 'grid.png'}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
def test_cli_reports_bad_input_in_one_line_with_exit_code_2(run_dir: Path, tmp_path: Path) -> None:
    result = run_module("vae_gumbel.sample", f"checkpoint={tmp_path / 'nope.pt'}", cwd=tmp_path)
    assert_one_line_error(result, 2, "does not exist")


@pytest.mark.slow
def test_cli_refuses_an_unsafe_checkpoint_for_safety(tmp_path: Path) -> None:
    import os

    import torch

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo this should never run",))

    torch.save({"format_version": 2, "model": RunsCode()}, tmp_path / "unsafe.pt")
    result = run_module("vae_gumbel.sample", f"checkpoint={tmp_path / 'unsafe.pt'}", cwd=tmp_path)
    assert_one_line_error(result, 2, "holds objects a vae-gumbel checkpoint never holds")
    assert "refused for safety" in result.stderr and "weights_only" not in result.stderr
    assert "this should never run" not in result.stdout


def test_a_folder_of_runs_gets_each_runs_grid_in_its_own_samples_folder(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from vae_gumbel.sample import sample_command

    sweep = sweep_of(run_dir, tmp_path / "sweep", 2, waiting=True)
    caplog.set_level(logging.INFO, logger="vae_gumbel.sample")
    sample_command(compose_config("sample", [f"checkpoint={sweep}", "rows=3", "seed=11"]))
    name = "prior_rows3_cols8_seed11_epoch002.png"
    drawn = [RunFolder(sweep / job).samples / name for job in ("0", "1")]
    assert drawn[0].read_bytes() == drawn[1].read_bytes()  # the same model and seed
    assert png_size(drawn[0]) == grid_size(3, 8)
    printed = capsys.readouterr().out
    assert f"[1/3] {sweep / '0'}\n  wrote {drawn[0]}" in printed
    assert f"[3/3] {sweep / '2'}\n  passed over: the run in {sweep / '2'} has not started" in printed
    assert caplog.records[-1].getMessage() == f"sampled 2 of 3 runs in {sweep}"


def test_a_run_that_cannot_be_sampled_is_named_and_the_others_are_drawn(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.sample as sample_module
    from vae_gumbel.errors import ConfigError, Interrupted, RunsFailed

    def sample_folder(*overrides: str) -> None:
        sample_module.sample_command(compose_config("sample", list(overrides)))

    sweep = sweep_of(run_dir, tmp_path / "sweep", 3)
    (sweep / "1" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunsFailed, match=r"^sampled 2 of 3 runs in .*; 1 failed \(1\), each says why above$"):
        sample_folder(f"checkpoint={sweep}", "seed=12")
    assert "  error: cannot read checkpoint" in capsys.readouterr().out
    grids = [RunFolder(sweep / job).samples / "prior_rows8_cols8_seed12_epoch002.png" for job in "012"]
    assert [grid.is_file() for grid in grids] == [True, False, True]
    with pytest.raises(ConfigError, match=r"^out= names one file, and .* is a folder of 3 runs"):
        sample_folder(f"checkpoint={sweep}", f"out={tmp_path / 'grid.png'}")
    # Ctrl-C while the third run draws: the first keeps its picture, and the message says so.
    saved = sample_module.save_grid

    def interrupted_at_the_third(grid, path):
        if Path(path).parent.parent == sweep / "2":
            raise KeyboardInterrupt
        saved(grid, path)

    monkeypatch.setattr(sample_module, "save_grid", interrupted_at_the_third)
    says = rf"^interrupted by SIGINT while sampling {sweep / '2'}: .* the runs sampled before it \(1\) keep"
    with pytest.raises(Interrupted, match=says) as err:
        sample_folder(f"checkpoint={sweep}", "seed=13")
    assert err.value.exit_code == 130
    grids = [RunFolder(sweep / job).samples / "prior_rows8_cols8_seed13_epoch002.png" for job in "012"]
    assert [grid.is_file() for grid in grids] == [True, False, False]


@pytest.mark.slow
def test_cli_samples_a_sweep_and_exits_1_when_a_run_failed(run_dir: Path, tmp_path: Path) -> None:

    sweep = sweep_of(run_dir, tmp_path / "sweep", 2)
    (sweep / "0" / "checkpoints" / "best.pt").write_bytes(b"")
    result = run_module("vae_gumbel.sample", f"checkpoint={sweep}", "mode=reconstruction", cwd=tmp_path)
    assert_one_line_error(result, 1, "sampled 1 of 2 runs in")
    assert "[2/2]" in result.stdout and any(RunFolder(sweep / "1").samples.glob("reconstruction_*.png"))
