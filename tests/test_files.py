"""Writing files without losing any: a replacement is whole or absent, a different file is kept."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from vae_gumbel.errors import ConfigError
from vae_gumbel.files import check_writable, replace_text, replacing


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
