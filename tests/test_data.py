"""Images on the device: binarization and batches for a stack of models."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import TEST_IMAGES, requires_cuda
from vae_gumbel.config import compose_settings
from vae_gumbel.data import load_data


def data_of(mnist_root: Path, binarize: str, device: str = "cpu"):
    settings = compose_settings(
        [
            f"data.root={mnist_root}",
            "data.download=false",
            "data.verify_checksums=false",
            f"data.binarize={binarize}",
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
