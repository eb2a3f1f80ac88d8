"""Writing output files without losing any: a different file already at the name is never replaced
silently, and a file that is replaced (a checkpoint, the records, status.json) is whole or absent.

Every file is written under a temporary name beside its target first (``partial_path``); a
replacement then takes the target's place atomically (``replacing``). Pictures and figures: if the
target exists with the same content (the same bytes, unless the caller says what "the same" means,
such as the same pixels), nothing changes; if it differs, the new file takes the first free numbered
name (``grid_2.png``, ``grid_3.png``, ...) unless the user asked to overwrite.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from vae_gumbel.errors import WriteError, first_line

# Free bytes below which a failed write is put down to a full disk: torch's zip writer, for one, only
# says that it lost count. Judged while the partial file still takes its space.
FULL_DISK_BYTES = 1 << 20
# The errors of a full disk and of a full quota.
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# What a training run does once the disk takes its writes again.
CONTINUE_RUN = "continue with resume=last"


def partial_path(path: Path) -> Path:
    """Gives the temporary name beside ``path`` that a file is written under before it takes its own."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def partial_files(folder: Path) -> list[Path]:
    """Gives the temporary files in ``folder`` (``partial_path``): writes cut short by a kill, or in
    progress."""
    return sorted(folder.glob(".*.*.partial*"))


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """Gives a file to write ``path``'s new content into: a temporary file beside it, which takes
    the place of ``path`` (os.replace) when the block ends and is removed if the block fails, so
    that a reader, or a crash, finds the old file or the new one, never half of one."""
    partial = partial_path(path)
    try:
        with partial.open("wb") as handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def taking_turns(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``folder`` itself (no lock file) for the block, so that processes
    that read a file there and then replace it take turns. Where the system or the file system has
    no locks, the block runs without one."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without locks
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # and with it the lock


def write_failure(path: Path, err: BaseException) -> tuple[str, bool]:
    """Says why ``path`` could not be written, in plain words (with the file in the way, if another),
    and whether the disk or the quota is full: torch's zip writer, for one, only says that it lost
    count, so a disk with almost no room left counts as full."""
    try:
        full = shutil.disk_usage(path.parent).free < FULL_DISK_BYTES
    except OSError:
        full = False
    full = full or getattr(err, "errno", None) in FULL_DISK_ERRNOS
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror.lower()
        if err.filename and Path(err.filename) not in (path, partial_path(path)):
            reason += f" ({err.filename})"  # in the way: a file where a folder of the path belongs
    else:
        reason = "no space left on device" if full else first_line(err)
    return reason, full


def unwritable(path: Path, err: BaseException, what: str, then: str, kept: str = "") -> WriteError:
    """Gives the error for a file that could not be written: what it is and where, why
    (``write_failure``), what is kept, and what to do ``then``."""
    reason, full = write_failure(path, err)
    remedy = "Free some space" if full else "Put that right"
    kept = f"; {kept}" if kept else ""
    return WriteError(f"could not write {what} {path}: {reason}{kept}. {remedy}, then {then}")


@contextmanager
def writing(path: Path, what: str, then: str = CONTINUE_RUN, kept: str = "") -> Iterator[None]:
    """Turns an OSError of the writes in the block into the WriteError ``unwritable`` gives."""
    try:
        yield
    except OSError as err:
        raise unwritable(path, err, what, then, kept) from err


def replace_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` in place of what is there, atomically (``replacing``)."""
    with replacing(path) as handle:
        handle.write(text.encode())


def numbered(path: Path, number: int) -> Path:
    return path.with_name(f"{path.stem}_{number}{path.suffix}")


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def write_new(
    path: str | Path,
    write: Callable[[Path], object],
    overwrite: bool = False,
    same: Callable[[Path, Path], bool] = same_bytes,
) -> tuple[Path, str]:
    """Writes a file by calling ``write(temporary path)``; gives where it ended up and a line that
    says what happened (written, unchanged, replaced, or written under a new name). ``same(existing,
    new)`` says whether a file already at the name holds what would be written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(path)
    write(partial)
    try:
        if claim(partial, path):
            return path, f"wrote {path}"
        if same(path, partial):
            return path, f"{path} is already there, unchanged"
        if overwrite:
            partial.replace(path)
            return path, f"replaced {path}"
        target = claim_numbered(partial, path)
        return target, f"{path} exists and differs: wrote {target} (overwrite=true replaces it instead)"
    finally:
        partial.unlink(missing_ok=True)


def claim(partial: Path, path: Path) -> bool:
    """Gives the written file the name ``path`` if no file has it (atomically: of two processes,
    one wins); says whether it did."""
    try:
        os.link(partial, path)
    except FileExistsError:
        return False
    return True


def claim_numbered(file: Path, path: Path) -> Path:
    """Gives ``file`` the first free numbered name beside ``path`` (``grid_2.png``, ...; atomically,
    as ``claim``); gives that name. With ``file`` = ``path``, the file there keeps a second name, so
    that a new file written at ``path`` does not take it away."""
    number = 2
    while not claim(file, numbered(path, number)):
        number += 1
    return numbered(path, number)


def check_writable(folder: Path, setting: str) -> None:
    """Makes ``folder`` if needed and checks that a file can be written there, before the work whose
    result goes there; raises ConfigError naming ``setting`` otherwise."""
    from vae_gumbel.errors import ConfigError

    if folder.is_file():
        raise ConfigError(f"{folder} is a file, not a folder; give {setting} a place you can write to")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as probe:  # a byte, so that a full disk shows
            probe.write(b"\0")
            probe.flush()
    except OSError as err:
        full = err.errno in FULL_DISK_ERRNOS
        raise ConfigError(
            f"cannot write into {folder} ({err.strerror or err}); "
            f"{'free some space, or ' if full else ''}give {setting} a place you can write to"
        ) from err


def dated_folder(parent: Path, setting: str = "--out") -> Path:
    """Makes and gives a new folder PARENT/YYYY-MM-DD_HH-MM-SS (absolute): a measurement of its own
    beside the earlier ones, never mixed with them. A parent that cannot be written is a ConfigError
    naming ``setting``."""
    check_writable(parent, setting)
    folder = (parent / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    folder.mkdir(parents=True)
    return folder
