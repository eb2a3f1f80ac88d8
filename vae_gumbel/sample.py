"""Draw a PNG grid from a checkpoint: ``python -m vae_gumbel.sample checkpoint=PATH [mode=...]``
(or ``vae-gumbel-sample``). Given a folder of runs (a sweep), it draws the grid of each run that
has the checkpoint, into the run's samples/.

The model's kind and sizes come from the checkpoint itself. Modes: ``prior`` (codes from the
uniform prior), ``reconstruction`` (test images and their reconstructions), ``traversal`` (one
variable at a time through its K categories) and ``temperature`` (relaxed samples at several
temperatures).
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: this module's command runs it (see commands.py)
    from vae_gumbel import commands

    commands.sample()

import logging
from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from vae_gumbel.checkpoint import load_checkpoint, model_from_checkpoint, test_set_of
from vae_gumbel.config import SampleConfig, config_path, validate
from vae_gumbel.device import resolve_device
from vae_gumbel.each_run import Work, each_run, runs_in, summary_line
from vae_gumbel.errors import ConfigError, one_line_errors
from vae_gumbel.files import check_writable, write_new, writing
from vae_gumbel.grids import SAMPLE_MODES, picture_name, same_picture, save_grid
from vae_gumbel.run_folder import RunFolder, resolve_checkpoint

log = logging.getLogger(__name__)


SAMPLING = Work(does="samples", doing="sampling", done="sampled", output="pictures", one="picture")


def sample(cfg: DictConfig) -> tuple[Path, str]:
    """Draws the grid that ``cfg`` asks for from one checkpoint or run; gives where it was written
    and what happened there."""
    settings: SampleConfig = validate(cfg, SampleConfig)
    return draw(settings, resolve_checkpoint(to_absolute_path(settings.checkpoint), settings.which))


def draw(settings: SampleConfig, file: Path) -> tuple[Path, str]:
    """Draws the grid that ``settings`` ask for from checkpoint ``file``; gives where it was written
    and what happened there (a different picture already at the name is never replaced unless
    ``overwrite`` says so; the same pixels, however encoded, count as the same picture)."""
    device = resolve_device(settings.device, key="device")
    checkpoint = load_checkpoint(file)
    model = model_from_checkpoint(checkpoint, source=str(file)).to(device).eval()
    out = (
        Path(to_absolute_path(settings.out))
        if settings.out
        else RunFolder.of_checkpoint(file).samples / picture_name(settings, model, checkpoint["epoch"])
    )
    check_writable(out.parent, "out=")  # before the drawing, which may take minutes
    mode = SAMPLE_MODES[settings.mode]
    count = mode.images(settings)
    x = (
        test_set_of(checkpoint, device, settings.data.root, limit=count, file=file).targets(slice(None))
        if count
        else None
    )
    if x is not None and len(x) < count and not mode.fewer_images_do:
        raise ConfigError(
            f"mode={settings.mode} with these rows and cols shows {count:,} test images, and the test set "
            f"has {len(x):,}; ask for fewer rows or cols"
        )
    grid = mode.draw(model, x, settings)
    with writing(out, "the picture", then="draw it again (or give out= another place)"):
        return write_new(
            out, lambda path: save_grid(grid, path), overwrite=settings.overwrite, same=same_picture
        )


def sample_runs(settings: SampleConfig, runs: list[Path], folder: Path) -> list[tuple[Path, str]]:
    """Draws the grid from each run of a folder of runs that has the checkpoint, into the run's
    samples/ (``each_run``); gives where each went and what happened there."""
    drawn = each_run(
        folder, runs, settings, lambda file: draw(settings, file), lambda done: f"  {done[1]}", SAMPLING
    )
    log.info("%s", summary_line(SAMPLING, drawn, runs, folder))
    return drawn


def sample_command(cfg: DictConfig) -> None:
    """Draws the grid ``cfg`` asks for from the checkpoint or run it names, or from each run of a
    folder of runs."""
    settings: SampleConfig = validate(cfg, SampleConfig)
    path = to_absolute_path(settings.checkpoint)
    runs = runs_in(path)
    if runs is not None:
        sample_runs(settings, runs, Path(path))
        return
    _, happened = draw(settings, resolve_checkpoint(path, settings.which))
    log.info(happened)


@hydra.main(version_base="1.3", config_path=config_path("sample"), config_name="sample")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        sample_command(cfg)
