"""Draw a PNG grid from a checkpoint: ``python -m vae_gumbel.sample checkpoint=PATH [mode=...]``.

The model's sizes come from the checkpoint itself. Modes: ``prior`` (codes from the uniform
prior), ``reconstruction`` (test images and their reconstructions), ``traversal`` (one
variable at a time through its K categories) and ``temperature`` (relaxed samples at
several temperatures).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from vae_gumbel.checkpoint import build_model, load_checkpoint, resolve_checkpoint
from vae_gumbel.config import CONF_DIR, SampleConfig, validate
from vae_gumbel.data import load_test_set
from vae_gumbel.errors import RunFailed, VaeGumbelError
from vae_gumbel.grids import (
    prior_grid,
    reconstruction_grid,
    save_grid,
    temperature_grid,
    traversal_grid,
)
from vae_gumbel.training import resolve_device

log = logging.getLogger(__name__)


def default_output(checkpoint_file: Path, mode: str, seed: int) -> Path:
    """Gives RUN_DIR/samples/{mode}_seed{seed}.png for a checkpoint in RUN_DIR/checkpoints/."""
    folder = checkpoint_file.parent
    run_dir = folder.parent if folder.name == "checkpoints" else folder
    return run_dir / "samples" / f"{mode}_seed{seed}.png"


def test_images(
    checkpoint: dict[str, Any], count: int, data_root: str | None, device: torch.device
) -> torch.Tensor:
    """Gives the first ``count`` test images, binarized as the checkpoint's run binarized them."""
    data_cfg = checkpoint["config"]["data"]
    images = load_test_set(
        to_absolute_path(data_root or data_cfg["root"]),
        data_cfg["binarize"],
        device=device,
        limit=count,
        download=data_cfg.get("download", True),
        verify_checksums=data_cfg.get("verify_checksums", True),
        binarize_seed=data_cfg.get("binarize_seed", 0),
    )
    return images.targets(slice(None))


def sample(cfg: DictConfig) -> Path:
    """Writes the grid that ``cfg`` asks for and gives its path."""
    settings: SampleConfig = validate(cfg, SampleConfig)
    device = resolve_device(settings.device)
    file = resolve_checkpoint(to_absolute_path(settings.checkpoint), settings.which)
    checkpoint = load_checkpoint(file)
    model = build_model(checkpoint, source=str(file)).to(device).eval()

    if settings.mode == "prior":
        grid = prior_grid(model, settings.rows, settings.cols, settings.seed)
    elif settings.mode == "reconstruction":
        x = test_images(checkpoint, max(1, settings.rows // 2) * settings.cols, settings.data_root, device)
        grid = reconstruction_grid(model, x, settings.rows, settings.cols, settings.seed, settings.code)
    elif settings.mode == "traversal":
        x = test_images(checkpoint, 1, settings.data_root, device)
        grid = traversal_grid(model, x, settings.variables, settings.rows)
    else:
        x = test_images(checkpoint, settings.cols, settings.data_root, device)
        grid = temperature_grid(model, x, settings.temperatures, settings.cols, settings.seed)

    out = (
        Path(to_absolute_path(settings.out))
        if settings.out
        else default_output(file, settings.mode, settings.seed)
    )
    return save_grid(grid, out)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        path = sample(cfg)
    except (VaeGumbelError, ValueError) as err:
        raise RunFailed(f"error: {err}") from None
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
