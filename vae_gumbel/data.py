"""Images on the training device: binarization, and batches for one model or a stack of them.

All images stay on the training device as uint8; a batch is an index gather plus the
binarization, with no DataLoader, PIL or per-image Python. The raw files come from
``vae_gumbel.datasets``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from hydra.utils import to_absolute_path

from vae_gumbel.datasets import ensure, load_images

if TYPE_CHECKING:
    from vae_gumbel.config import DataConfig


def binarize_once(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Gives fixed binary images (uint8 0/1) drawn as Bernoulli(pixel / 255) with a CPU generator.

    The generator lives on the CPU so the bits are the same on every device.
    """
    generator = torch.Generator().manual_seed(seed)
    probabilities = images.cpu().float().div_(255)
    return torch.bernoulli(probabilities, generator=generator).to(torch.uint8)


@dataclass
class ImageSet:
    """Images on the training device, stored as uint8, turned into float targets per batch."""

    pixels: torch.Tensor  # (n, 784) uint8: grey levels 0..255, or fixed bits 0/1
    divisor: float  # 255 for grey levels (exactly as torchvision's ToTensor), 1 for fixed bits
    resample: bool  # draw fresh Bernoulli pixels each time an image is used

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def targets(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Gives float targets (..., batch, 784) in [0, 1] for the images at ``index`` (..., batch)."""
        x = self.pixels[index].float().div_(self.divisor)
        return torch.bernoulli(x) if self.resample else x

    def batches(self, batch_size: int, members: int = 1) -> Iterator[torch.Tensor]:
        """Yields target batches (members, batch, 784) over one epoch, each member in its own random
        order, drawn from the global generator (one permutation per member, in member order)."""
        orders = torch.stack([torch.randperm(len(self), device=self.pixels.device) for _ in range(members)])
        for start in range(0, len(self), batch_size):
            yield self.targets(orders[:, start : start + batch_size])


# How training images become targets: (training images, test images, binarize_seed) -> the two sets.
# The test set always has fixed targets, so test losses compare across epochs and runs: binarized
# once with a seed other than static training's (so the two are not correlated), or grey levels.
Binarization = Callable[[torch.Tensor, torch.Tensor, int], tuple[ImageSet, ImageSet]]


def _fixed_test_set(test: torch.Tensor, seed: int) -> ImageSet:
    return ImageSet(binarize_once(test, seed + 1), 1.0, resample=False)


BINARIZATIONS: dict[str, Binarization] = {
    "dynamic": lambda train, test, seed: (ImageSet(train, 255.0, resample=True), _fixed_test_set(test, seed)),
    "static": lambda train, test, seed: (
        ImageSet(binarize_once(train, seed), 1.0, resample=False),
        _fixed_test_set(test, seed),
    ),
    "none": lambda train, test, seed: (
        ImageSet(train, 255.0, resample=False),
        ImageSet(test, 255.0, resample=False),
    ),
}


@dataclass
class Data:
    train: ImageSet
    test: ImageSet  # fixed targets: binarized once (or grey levels), never resampled


def _on(images: ImageSet, device: torch.device | str) -> ImageSet:
    return ImageSet(images.pixels.to(device), images.divisor, images.resample)


def load_test_set(
    settings: DataConfig, device: torch.device | str = "cpu", limit: int | None = None
) -> ImageSet:
    """Gives the test set of ``settings`` on ``device``, binarized as its training binarizes it
    (``limit``: the first images only; default ``data.test_limit``)."""
    root = to_absolute_path(settings.root)
    ensure(root, settings.name, download=settings.download, verify_checksums=settings.verify_checksums)
    test = load_images(root, settings.name, train=False, limit=limit or settings.test_limit)
    empty = test[:0]
    return _on(BINARIZATIONS[settings.binarize](empty, test, settings.binarize_seed)[1], device)


def load_data(settings: DataConfig, device: torch.device | str = "cpu") -> Data:
    """Gives the train and test sets of ``settings`` on ``device``."""
    root = to_absolute_path(settings.root)
    ensure(root, settings.name, download=settings.download, verify_checksums=settings.verify_checksums)
    train = load_images(root, settings.name, train=True, limit=settings.train_limit)
    test = load_images(root, settings.name, train=False, limit=settings.test_limit)
    train_set, test_set = BINARIZATIONS[settings.binarize](train, test, settings.binarize_seed)
    return Data(train=_on(train_set, device), test=_on(test_set, device))
