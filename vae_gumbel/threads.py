"""How many CPU threads a run uses: ``trainer.num_threads`` (a number, null for every core, or auto).

A CPU step is a chain of short parallel regions, each ending at a barrier that waits for the
slowest of torch's threads. When another process holds a core, the thread that shares it runs in
slices, and every region waits for it: throughput collapses far below that of fewer threads (see
docs/performance.md). ``auto`` therefore uses only the cores that the rest of the machine leaves
free, measured from /proc/stat without this process's own time, and checks again after every
epoch, so that runs started together settle on sharing the cores. A run's thread count changes
the rounding of its sums, so runs under ``auto`` on a busy machine agree with each other to float
rounding, not bit for bit; a fixed number makes reruns bit-identical.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("vae_gumbel.train")

# How long the first look at the machine lasts, before a run has an epoch of its own to measure.
FIRST_LOOK_S = 0.25


def usable_cores() -> int:
    """Gives the cores this process may run on (its CPU affinity, as a SLURM allocation sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class CpuTimes:
    """Busy seconds of the whole machine and of this process, at a moment."""

    machine_busy: float
    own: float
    at: float


def cpu_times() -> CpuTimes | None:
    """Reads the machine's busy time (all cores) and this process's (all its threads); None where
    /proc is not there."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    busy = sum(fields[:8]) - idle  # user, nice, system, irq, softirq, steal
    return CpuTimes(busy / tick, (int(own[11]) + int(own[12])) / tick, time.monotonic())


def others_busy_cores(start: CpuTimes, end: CpuTimes) -> float:
    """Gives how many cores other processes kept busy between two readings, on average."""
    wall = end.at - start.at
    if wall <= 0:
        return 0.0
    others = (end.machine_busy - start.machine_busy) - (end.own - start.own)
    return max(0.0, others / wall)


def threads_for(free_cores: float, cores: int) -> int:
    """Gives the threads for ``free_cores`` of ``cores``: a core counts as taken once others use a
    third of it (a process that competes with our threads for its core shows up at about two
    thirds of one), at least one thread."""
    return max(1, min(cores, math.floor(free_cores + 1 / 3)))


class ThreadCount:
    """Sets torch's intra-op threads as ``trainer.num_threads`` says and, under ``auto`` on a CPU,
    adjusts them to the cores that other processes leave free: first while the run loads its data
    and builds its model (at least FIRST_LOOK_S), then after every epoch."""

    def __init__(self, setting: str | None, device: torch.device) -> None:
        self.adapts = setting == "auto" and device.type == "cpu"
        self.cores = usable_cores()
        self.since = cpu_times()
        if not self.adapts:
            torch.set_num_threads(self.cores if setting in (None, "auto") else int(setting))

    def start(self) -> None:
        """Takes the first measurement, once the run is built (waiting out FIRST_LOOK_S)."""
        if self.adapts and self.since is not None:
            time.sleep(max(0.0, FIRST_LOOK_S - (time.monotonic() - self.since.at)))
        self.adjust()

    def adjust(self) -> None:
        """Sets the threads from the cores others used since the last measurement."""
        since, now = self.since, cpu_times()
        if not self.adapts or since is None or now is None or now.at - since.at < FIRST_LOOK_S:
            return  # too short a look says little: the next one covers this one's time too
        self.since = now
        busy = others_busy_cores(since, now)
        threads = threads_for(self.cores - busy, self.cores)
        if threads != torch.get_num_threads():
            log.info(
                "CPU threads: %d -> %d (other processes keep %.1f of %d cores busy;"
                " trainer.num_threads=N fixes the count)",
                torch.get_num_threads(),
                threads,
                busy,
                self.cores,
            )
            torch.set_num_threads(threads)
