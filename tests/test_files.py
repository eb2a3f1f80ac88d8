"""Writing files without losing any: a replacement is whole or absent, a different file is kept."""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

import pytest

from vae_gumbel.errors import ConfigError, WriteError
from vae_gumbel.files import (
    CONTINUE_RUN,
    check_writable,
    replace_text,
    replacing,
    taking_turns,
    unwritable,
    writing,
)


def test_a_replacement_takes_the_place_of_the_old_file_only_once_written(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("old\n")
    with replacing(path) as handle:
        handle.write(b"new\n")
        assert path.read_text() == "old\n"  # a reader meanwhile finds the old file
    assert path.read_text() == "new\n"
    assert list(tmp_path.iterdir()) == [path]


def test_a_replacement_that_fails_halfway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    replace_text(path, '{"status": "completed"}\n')
    with pytest.raises(OSError, match="No space left"):
        with replacing(path) as handle:
            handle.write(b'{"sta')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == '{"status": "completed"}\n'
    assert list(tmp_path.iterdir()) == [path]


def test_a_place_for_output_is_made_or_refused_naming_the_setting(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "folder", "out=")
    assert (tmp_path / "new" / "folder").is_dir() and not any((tmp_path / "new" / "folder").iterdir())
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="file is a file, not a folder; give out= a place you can write to"):
        check_writable(tmp_path / "file", "out=")
    with pytest.raises(ConfigError, match=r"cannot write into .*file/below \(Not a directory\); give out="):
        check_writable(tmp_path / "file" / "below", "out=")


def test_a_full_disk_is_refused_before_the_work_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FullDisk:  # creating a file takes no space; its first byte does
        def __init__(self, **kwargs) -> None: ...
        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc) -> None: ...
        def write(self, data: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        flush = write

    monkeypatch.setattr(tempfile, "TemporaryFile", FullDisk)
    with pytest.raises(
        ConfigError, match=r"\(No space left on device\); free some space, or give out= a place"
    ):
        check_writable(tmp_path, "out=")


@pytest.mark.parametrize(
    ("failure", "free", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 10**9, "no space left on device. Free some space"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), 10**9, "disk quota exceeded. Free some space"),
        (RuntimeError("unexpected pos 3 vs 1"), 0, "no space left on device. Free some space"),
        (OSError(errno.EIO, "Input/output error"), 10**9, "input/output error. Put that right"),
        (OSError(errno.EEXIST, "File exists", "/run/samples"), 10**9, "file exists (/run/samples)."),
    ],
    ids=["full", "quota", "full-as-torch-says-it", "io-error", "in-the-way"],
)
def test_a_failed_write_names_the_file_the_reason_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Exception, free: int, said: str
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**12, 0, free))
    path = tmp_path / "metrics.jsonl"
    error = unwritable(path, failure, "the run's metrics", CONTINUE_RUN)
    assert str(error).startswith(f"could not write the run's metrics {path}: {said}")
    assert str(error).endswith("then continue with resume=last")
    with pytest.raises(WriteError, match="could not write the run's status .*; the old one is kept. "):
        with writing(tmp_path / "status.json", "the run's status", kept="the old one is kept"):
            raise OSError(errno.ENOSPC, "No space left on device")


def test_processes_that_take_turns_on_a_folder_wait_for_each_other(tmp_path: Path) -> None:
    import fcntl
    import os

    with taking_turns(tmp_path):
        other = os.open(tmp_path, os.O_RDONLY)  # another holder, as another process would be
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again after the block
    finally:
        os.close(other)
    assert list(tmp_path.iterdir()) == []  # the folder itself is the lock: no file left
