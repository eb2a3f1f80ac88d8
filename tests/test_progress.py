"""Signs of life for long work: a bar on a terminal, log lines with the time left in a file."""

from __future__ import annotations

import logging
import sys

import pytest

import vae_gumbel.progress as progress_module
from vae_gumbel.progress import Progress, duration, shows_progress


def test_the_progress_bar_shows_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not shows_progress("auto")  # pytest captures the output: not a terminal
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert shows_progress("auto") and not shows_progress("false") and shows_progress("true")


def test_in_a_log_file_long_work_says_how_far_it_is_and_what_is_left(monkeypatch, caplog) -> None:
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    logger = logging.getLogger("test.progress")
    with (
        caplog.at_level(logging.INFO, logger="test.progress"),
        Progress(400, "IWAE", "auto", logger, "img") as p,
    ):
        for _ in range(4):
            p.update(100)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3  # none once the work is done
    assert lines[0].startswith("IWAE: 100/400 img (25%), about ") and lines[0].endswith(" s left")


def test_progress_false_is_silent(monkeypatch, caplog) -> None:
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO), Progress(10, "IWAE", "false", logging.getLogger("quiet")) as p:
        p.update(5)
    assert not caplog.records


def test_durations_read_as_a_person_says_them() -> None:
    assert [duration(s) for s in (12, 600, 7200)] == ["12 s", "10 min", "2.0 h"]
