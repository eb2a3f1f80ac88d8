"""Signs of life for long work: a bar with an estimate on a terminal, log lines in a file.

A tqdm bar redraws itself on a terminal; written into a file (under CI, SLURM, nohup) its frames
would fill the log, so there the same progress arrives as a log line at most every
``LOG_EVERY_S`` seconds, with the share done and an estimate of the time left.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from tqdm import tqdm

LOG_EVERY_S = 30.0


def shows_progress(setting: str) -> bool:
    """Says whether a ``progress`` setting shows a bar: ``auto`` only on a terminal, where a bar
    redraws itself (written to a file, its frames would fill the log)."""
    if setting == "auto":
        return sys.stdout.isatty() and sys.stderr.isatty()
    return setting == "true"


def duration(seconds: float) -> str:
    """Gives a duration as a reader wants it: '45 s', '3 min', '1.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """How far a piece of work of ``total`` units has come: a tqdm bar where ``setting`` shows one,
    else (unless ``setting`` is false) a line on ``logger`` every LOG_EVERY_S seconds."""

    def __init__(
        self, total: int, description: str, setting: str, logger: logging.Logger, unit: str = "it"
    ) -> None:
        self.total, self.description, self.logger, self.unit = total, description, logger, unit
        shown = shows_progress(setting)
        self.bar = tqdm(
            total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True, disable=not shown
        )
        self.logs = setting != "false" and not shown
        self.done = 0
        self.started = self.last_log = time.perf_counter()

    def update(self, count: int) -> None:
        self.done += count
        self.bar.update(count)
        now = time.perf_counter()
        if self.logs and now - self.last_log >= LOG_EVERY_S and self.done < self.total:
            self.last_log = now
            left = (now - self.started) / self.done * (self.total - self.done)
            self.logger.info(
                "%s: %d/%d %s (%.0f%%), about %s left",
                self.description,
                self.done,
                self.total,
                self.unit,
                100 * self.done / self.total,
                duration(left),
            )

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
