"""How many CPU threads a run uses: ``trainer.num_threads`` (a number, null for every core, or auto).

A CPU step is a chain of short parallel regions, each ending at a barrier that waits for the
slowest of torch's threads. When another process holds a core, the thread that shares it runs in
slices, and every region waits for it: throughput collapses far below that of fewer threads (see
docs/performance.md). ``auto`` therefore uses only the cores that the rest of the machine leaves
free, measured from /proc/stat on the CPUs the run may use without this process's own time, and
checks again after every epoch, so that runs started together settle on sharing the cores. The
cores a run may use are its CPU affinity (a SLURM allocation), fewer where a cgroup's CPU quota
(a container's limit) allows fewer: null and auto never start more threads than that. A run's
thread count changes the rounding of its sums, so runs under ``auto`` on a busy machine agree with
each other to float rounding, not bit for bit; a fixed number makes reruns bit-identical.
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


def usable_cpus() -> set[int] | None:
    """Gives the CPUs this process may run on (its affinity, as a SLURM allocation or taskset set
    it); None where the system does not say."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return None


def usable_cores() -> int:
    """Gives the cores this process may use at once: its CPUs, fewer where a cgroup's CPU quota (a
    container's CPU limit) allows fewer, rounded up as the JVM does."""
    cpus = usable_cpus()
    cores = len(cpus) if cpus is not None else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """Gives the CPU time per second that this process's cgroups allow it (cores' worth: 1.5 for
    cpu.max "150000 100000"), the tightest along the hierarchy of cgroup v2 and of v1's cpu
    controller; None without a quota. ``root`` is where /proc and /sys are (tests give a copy)."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if not path:
            continue
        if controllers == "":  # cgroup v2: cpu.max holds "QUOTA PERIOD" or "max PERIOD"
            for folder in ancestors(root / "sys/fs/cgroup", path):
                limits.append(read_quota(folder / "cpu.max", None))
        elif "cpu" in controllers.split(","):  # cgroup v1: cpu.cfs_quota_us is -1 without a quota
            for mount in dict.fromkeys((controllers, "cpu")):  # cpu,cpuacct, and its usual link
                for folder in ancestors(root / "sys/fs/cgroup" / mount, path):
                    limits.append(read_quota(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"))
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def ancestors(mount: Path, path: str) -> list[Path]:
    """Gives the folders of cgroup ``path`` and of every cgroup above it under ``mount``."""
    parts = [part for part in path.split("/") if part]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def read_quota(quota_file: Path, period_file: Path | None) -> float | None:
    """Gives a cgroup's quota in cores' worth (v2: cpu.max alone; v1: quota and period files)."""
    try:
        fields = quota_file.read_text().split()
        if period_file is not None:
            fields.append(period_file.read_text().strip())
        if fields[0] in ("max", "-1"):  # no quota
            return None
        quota, period = float(fields[0]), float(fields[1])
    except (OSError, IndexError, ValueError):
        return None
    return quota / period if period > 0 else None


@dataclass(frozen=True)
class CpuTimes:
    """Busy seconds of the CPUs this process may run on and of this process, at a moment."""

    busy: float  # of the CPUs read
    own: float  # this process's and its finished child processes' (a data fetch's npm, say)
    at: float


def cpu_times(cpus: set[int] | None = None) -> CpuTimes | None:
    """Reads the busy time of ``cpus`` (every CPU if None) and this process's (all its threads, and
    the child processes it has waited for); None where /proc is not there. Only the CPUs a run may
    use count: other jobs on the other cores of a shared node (SLURM, taskset) take nothing from
    it, and neither does the run's own work done by a child (the first run's data fetch)."""
    try:
        stat = Path("/proc/stat").read_text()
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        busy = busy_ticks(stat, cpus)
        own_ticks = sum(int(ticks) for ticks in own[11:15])  # utime, stime, cutime, cstime
    except (OSError, IndexError, ValueError):
        return None
    if busy is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return CpuTimes(busy / tick, own_ticks / tick, time.monotonic())


def busy_ticks(stat: str, cpus: set[int] | None = None) -> int | None:
    """Gives the busy clock ticks in /proc/stat's text ``stat``: of the CPUs in ``cpus`` (its
    cpuN lines), or of all of them (its first line); None if it holds none of them."""
    total, found = 0, False
    for line in stat.splitlines():
        name, *values = line.split() or [""]
        if not name.startswith("cpu"):
            break  # the cpu lines come first
        wanted = name == "cpu" if cpus is None else name != "cpu" and int(name[3:]) in cpus
        if not wanted:
            continue
        fields = [int(value) for value in values]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
        total += sum(fields[:8]) - idle  # user, nice, system, irq, softirq, steal
        found = True
    return total if found else None


def others_busy_cores(start: CpuTimes, end: CpuTimes) -> float:
    """Gives how many cores other processes kept busy between two readings, on average."""
    wall = end.at - start.at
    if wall <= 0:
        return 0.0
    others = (end.busy - start.busy) - (end.own - start.own)
    return max(0.0, others / wall)


def threads_for(free_cores: float, cores: int) -> int:
    """Gives the threads for ``free_cores`` of ``cores``: a core counts as taken once others use a
    third of it (a process that competes with our threads for its core shows up at about two
    thirds of one), at least one thread."""
    return max(1, min(cores, math.floor(free_cores + 1 / 3)))


def oversubscribed(threads: int, cores: int) -> str:
    """Gives the warning for a fixed thread count above the cores a run may use."""
    return (
        f"trainer.num_threads={threads} starts more threads than the {cores} core{'s' if cores > 1 else ''} "
        "this process may use (its CPU affinity and CPU quota): they take turns, and each step waits "
        f"for the slowest, which can make it many times slower; trainer.num_threads={cores} or auto "
        "uses the cores there are (a fixed count is only needed for bit-identical reruns)"
    )


class ThreadCount:
    """Sets torch's intra-op threads as ``trainer.num_threads`` says and, under ``auto`` on a CPU,
    adjusts them to the cores that other processes leave free: first over the run's first
    FIRST_LOOK_S (loading its data, building its model, its first steps: others' time is the
    machine's without this process's own, so the run need not wait idle to see it), then after every
    epoch."""

    def __init__(self, setting: str | None, device: torch.device) -> None:
        self.adapts = setting == "auto" and device.type == "cpu"
        self.cores = usable_cores()
        # The CPUs whose time is watched: those the run may use (others' jobs elsewhere are theirs).
        self.cpus = usable_cpus()
        self.watched = len(self.cpus) if self.cpus is not None else self.cores
        self.since = cpu_times(self.cpus)
        self.looked = False  # whether the first measurement is taken
        if not self.adapts:
            threads = self.cores if setting in (None, "auto") else int(setting)
            if threads > self.cores and device.type == "cpu":
                log.warning(oversubscribed(threads, self.cores))
            torch.set_num_threads(threads)
        elif torch.get_num_threads() > self.cores:  # torch counts the machine's cores, not a quota
            log.info(
                "CPU threads: %d -> %d (the cores this process may use, by its CPU affinity and CPU"
                " quota; trainer.num_threads=N fixes the count)",
                torch.get_num_threads(),
                self.cores,
            )
            torch.set_num_threads(self.cores)

    def first_look(self) -> None:
        """Takes the first measurement if it is not taken yet and FIRST_LOOK_S have passed since the
        count was made; else does nothing. The run calls it once built and at each log point of its
        steps, so it never waits for it."""
        if not self.looked:
            self.adjust()

    def adjust(self) -> None:
        """Sets the threads from the cores others used since the last measurement."""
        if not self.adapts or self.since is None:
            self.looked = True
            return
        since, now = self.since, cpu_times(self.cpus)
        if now is None or now.at - since.at < FIRST_LOOK_S:
            return  # too short a look says little: the next one covers this one's time too
        self.since, self.looked = now, True
        busy = others_busy_cores(since, now)
        threads = threads_for(self.watched - busy, self.cores)
        if threads != torch.get_num_threads():
            log.info(
                "CPU threads: %d -> %d (other processes keep %.1f of %d cores busy;"
                " trainer.num_threads=N fixes the count)",
                torch.get_num_threads(),
                threads,
                busy,
                self.watched,
            )
            torch.set_num_threads(threads)
