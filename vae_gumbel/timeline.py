"""Where a run's time goes: the wall time of each phase, from the process's start to its end.

The process has one timeline, as it has one root logger: every phase adds its seconds to it,
from whichever thread runs it. Each job starts it afresh (``start``), so that a sweep run in one
process never counts one job's phases in another's. ``trainer.timeline=true`` writes it into the
run folder as ``timeline.json`` (a stacked sweep: into the sweep folder) and logs it as a table;
``scripts/time_to_result.py`` adds what only the outside sees (the process's exit) and compares
whole commands.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vae_gumbel.files import replace_text

# What an epoch costs the training thread besides its steps: the per-epoch extras.
EVALUATE = "evaluate: test ELBO"
LOG_EPOCH = "logs: metrics.jsonl, TensorBoard scalars, log lines"
DRAW_PICTURES = "pictures: draw (training thread)"
COPY_STATE = "checkpoints: copy the state (training thread)"
EPOCH_EXTRAS = (EVALUATE, LOG_EPOCH, DRAW_PICTURES, COPY_STATE)
# The part of those extras that the training thread spent waiting for the background writes to
# catch up (a disk slower than training); counted in the phase it interrupted as well.
WRITER_CATCH_UP = "of which: waiting for the background writes to catch up"
# What Hydra costs before a job trains: composing its config (a sweeper that checks its batch composes
# every job once more) and, in a stacked sweep, preparing the jobs' folders.
HYDRA_COMPOSES = "start: Hydra composes the config"
SWEEPER_CHECKS = "sweep: the sweeper composes every job to check it"
PREPARE_JOBS = "sweep: compose and prepare the jobs"
HYDRA_PHASES = (HYDRA_COMPOSES, SWEEPER_CHECKS, PREPARE_JOBS)


def process_start() -> float | None:
    """Gives when this process started (seconds since the epoch), to a clock tick; None off Linux.

    /proc/self/stat gives the start in clock ticks since boot; the clock since boot is read now, so
    the boot instant never enters (/proc/stat's ``btime`` is whole seconds, which would put the
    start up to a second early and move that second from the process's exit to its imports).
    """
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        now = time.time()
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return now - since_boot + ticks / os.sysconf("SC_CLK_TCK")


class Timeline:
    """Seconds per phase, in the order phases first appear; safe to add to from any thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()
        self.started: float | None = None  # when the job began (seconds since the epoch)
        self.jobs = 0  # jobs started in this process

    def start(self) -> bool:
        """Starts a job's timeline: the process's first job from the process's start, with its
        start-up phases still to be added (gives True); a later one from now, from nothing."""
        with self.lock:
            self.seconds.clear()
            self.jobs += 1
            began = process_start() if self.jobs == 1 else None
            self.started = began if began is not None else time.time()
            return began is not None

    def total(self) -> float | None:
        """Gives the seconds since the job began, None if it never started."""
        return None if self.started is None else time.time() - self.started

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the wall time of the block to phase ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def write(self, path: Path, **facts: object) -> None:
        """Writes the phases (and facts such as the process's total so far) as JSON, atomically."""
        replace_text(path, json.dumps({"phases": dict(self.seconds), **facts}, indent=2) + "\n")

    def table(self, total: float | None = None) -> str:
        """Gives the phases as a Markdown table, with their share of ``total`` when given."""
        lines = ["| phase | seconds | share |", "|---|---|---|"]
        for name, seconds in self.seconds.items():
            share = f"{seconds / total:.0%}" if total else ""
            lines.append(f"| {name} | {seconds:.2f} | {share} |")
        return "\n".join(lines)


TIMELINE = Timeline()
