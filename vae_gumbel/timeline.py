"""Where a run's time goes: the wall time of each phase, from the process's start to its end.

The process has one timeline, as it has one root logger: every phase adds its seconds to it,
from whichever thread runs it. ``trainer.timeline=true`` writes it into the run folder as
``timeline.json`` and logs it as a table; ``scripts/time_to_result.py`` adds what only the
outside sees (the process's exit) and compares whole commands.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def process_start() -> float | None:
    """Gives when this process started (seconds since the epoch), from /proc on Linux; None elsewhere."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


class Timeline:
    """Seconds per phase, in the order phases first appear; safe to add to from any thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

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
        """Writes the phases (and facts such as the process's total so far) as JSON."""
        path.write_text(json.dumps({"phases": dict(self.seconds), **facts}, indent=2) + "\n")

    def table(self, total: float | None = None) -> str:
        """Gives the phases as a Markdown table, with their share of ``total`` when given."""
        lines = ["| phase | seconds | share |", "|---|---|---|"]
        for name, seconds in self.seconds.items():
            share = f"{seconds / total:.0%}" if total else ""
            lines.append(f"| {name} | {seconds:.2f} | {share} |")
        return "\n".join(lines)


TIMELINE = Timeline()
