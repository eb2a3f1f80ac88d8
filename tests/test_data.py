"""Images on the device: binarization and batches for a stack of models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TEST_IMAGES, requires_cuda
from vae_gumbel.config import compose_settings
from vae_gumbel.data import ImageSet, load_data
from vae_gumbel.errors import ConfigError


def data_of(mnist_root: Path, binarize: str, *overrides: str, device: str = "cpu"):
    settings = compose_settings(
        [
            f"data.root={mnist_root}",
            "data.download=false",
            "data.verify_checksums=false",
            f"data.binarize={binarize}",
            *overrides,
        ]
    )
    return load_data(settings.data, device)


def test_dynamic_binarization_resamples_and_the_test_set_stays_fixed(mnist_root: Path) -> None:
    mnist = data_of(mnist_root, "dynamic")
    first, second = mnist.train.targets(slice(0, 50)), mnist.train.targets(slice(0, 50))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    again = data_of(mnist_root, "dynamic")
    assert torch.equal(mnist.test.targets(slice(None)), again.test.targets(slice(None)))
    assert mnist.test.targets(slice(None)).shape == (TEST_IMAGES, 784)


def test_dynamic_binarization_draws_each_pixel_with_its_grey_levels_probability() -> None:
    grey_levels = torch.tensor([0, 1, 64, 128, 191, 254, 255], dtype=torch.uint8)
    images = ImageSet(grey_levels.repeat(40_000, 1), 255.0, resample=True)
    torch.manual_seed(0)
    draws = images.targets(slice(None))
    assert draws.dtype == torch.float32 and set(draws.unique().tolist()) <= {0.0, 1.0}
    p = grey_levels.double() / 255
    standard_error = (p * (1 - p) / len(images)).sqrt()
    assert ((draws.double().mean(dim=0) - p).abs() <= 5 * standard_error).all()
    assert draws[:, 0].sum() == 0 and draws[:, -1].sum() == len(images)
    torch.manual_seed(0)
    assert torch.equal(draws, torch.bernoulli(grey_levels.repeat(40_000, 1).float() / 255))  # as before


def test_static_binarization_is_fixed_and_none_keeps_grey_levels(mnist_root: Path) -> None:
    static = data_of(mnist_root, "static")
    assert torch.equal(static.train.targets(slice(0, 50)), static.train.targets(slice(0, 50)))
    assert set(static.train.targets(slice(None)).unique().tolist()) == {0.0, 1.0}
    grey = data_of(mnist_root, "none")
    values = grey.train.targets(slice(None))
    assert values.min() >= 0 and values.max() <= 1
    assert ((values > 0) & (values < 1)).any()


def by_row(t: torch.Tensor) -> torch.Tensor:
    return t[torch.argsort(t @ torch.rand(784, generator=torch.Generator().manual_seed(0)))]


def test_rows_are_the_stored_images_at_an_index_of_any_shape() -> None:
    pixels = torch.randint(0, 256, (10, 784), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images = ImageSet(pixels, 255.0, resample=False)
    for index in (torch.tensor([3, 1, 4]), torch.tensor([[3, 1, 4], [1, 5, 9]]), slice(2, 5)):
        assert torch.equal(images.rows(index), pixels[index])
    batch = torch.tensor([[7, 0]])
    assert torch.equal(images.targets(batch), pixels[batch].float() / 255)


def test_an_epoch_of_batches_visits_every_image_once(mnist_root: Path) -> None:
    grey = data_of(mnist_root, "none")
    batches = list(grey.train.batches(batch_size=50))
    assert [b.shape for b in batches] == [(1, 50, 784), (1, 50, 784), (1, 20, 784)]
    seen = torch.cat(batches, dim=1)[0]
    assert torch.equal(by_row(seen), by_row(grey.train.targets(slice(None))))


def test_each_member_of_a_stack_sees_every_image_once_in_its_own_order(mnist_root: Path) -> None:
    grey = data_of(mnist_root, "none")
    epoch = torch.cat(list(grey.train.batches(batch_size=40, members=3)), dim=1)
    assert epoch.shape == (3, 120, 784)
    for member in epoch:
        assert torch.equal(by_row(member), by_row(grey.train.targets(slice(None))))
    assert not torch.equal(epoch[0], epoch[1])


@requires_cuda
def test_the_data_set_lives_on_the_device_as_uint8(mnist_root: Path) -> None:
    data = data_of(mnist_root, "dynamic", device="cuda")
    assert data.train.pixels.device.type == "cuda" and data.train.pixels.dtype == torch.uint8
    batch = next(data.train.batches(20))
    assert batch.device.type == "cuda" and batch.dtype == torch.float32 and batch.shape == (1, 20, 784)


# --- the validation set --------------------------------------------------------------------------


def test_validation_holds_out_the_last_training_images_which_training_never_sees(mnist_root: Path) -> None:
    from vae_gumbel.datasets import load_images

    every = load_images(mnist_root, "mnist", train=True)
    grey = data_of(mnist_root, "none", "data.validation=40")
    assert torch.equal(grey.train.pixels, every[:80]) and torch.equal(grey.validation.pixels, every[80:])
    limited = data_of(mnist_root, "none", "data.validation=40", "data.train_limit=30")
    assert torch.equal(limited.train.pixels, every[:30])
    assert torch.equal(limited.validation.pixels, every[80:])
    assert data_of(mnist_root, "none").validation is None  # the default: no validation set


def test_the_validation_set_has_fixed_targets_of_its_own(mnist_root: Path) -> None:
    dynamic = data_of(mnist_root, "dynamic", "data.validation=40")
    targets = dynamic.validation.targets(slice(None))
    assert targets.shape == (40, 784) and set(targets.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(targets, dynamic.validation.targets(slice(None)))  # not resampled
    again = data_of(mnist_root, "dynamic", "data.validation=40")
    assert torch.equal(targets, again.validation.targets(slice(None)))  # nor redrawn by another run
    # Static training's bits of the same images come from another seed: the two draws differ.
    static = data_of(mnist_root, "static", "data.train_limit=120")
    assert not torch.equal(targets, static.train.targets(slice(80, 120)))
    # Holding images out changes neither the test set nor the training images' static bits.
    plain = data_of(mnist_root, "static")
    held = data_of(mnist_root, "static", "data.validation=40")
    assert torch.equal(plain.test.pixels, held.test.pixels)
    assert torch.equal(plain.train.pixels[:80], held.train.pixels)


def test_a_validation_set_that_leaves_no_training_images_is_a_clear_error(mnist_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.validation=120 leaves no training images: .* holds 120"):
        data_of(mnist_root, "dynamic", "data.validation=120")
