"""Image grids of what the model generates: one implementation for the trainer and ``sample``."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from vae_gumbel.model import CategoricalVAE

IMAGE_SHAPE = (1, 28, 28)
GRID_PADDING = 2


def pixel_probabilities(model: CategoricalVAE, codes: torch.Tensor) -> torch.Tensor:
    """Gives decoded images (batch, 1, 28, 28) as Bernoulli means in [0, 1] for codes (batch, N, K)."""
    return torch.sigmoid(model.decode(codes).float()).view(-1, *IMAGE_SHAPE)


@torch.inference_mode()
def prior_grid(model: CategoricalVAE, rows: int = 8, cols: int = 8, seed: int = 0) -> torch.Tensor:
    """Gives a (3, H, W) grid of images decoded from uniform-prior codes drawn with ``seed``.

    The codes are drawn on the CPU, so the same seed gives the same codes on every device.
    """
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    codes = model.sample_prior(rows * cols, generator=generator, device="cpu").to(device)
    return tile(pixel_probabilities(model, codes), cols)


def tile(images: torch.Tensor, cols: int) -> torch.Tensor:
    """Gives images (n, 1, 28, 28) laid out ``cols`` to a row as one (3, H, W) CPU tensor."""
    return make_grid(images.detach().float().cpu(), nrow=cols, padding=GRID_PADDING, pad_value=1.0)


def save_grid(grid: torch.Tensor, path: str | Path) -> Path:
    """Writes a (3, H, W) grid in [0, 1] as a PNG, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    return path
