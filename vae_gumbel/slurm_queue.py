"""How the submitit launchers learn that a job has ended: in the order the jobs end, and on a SLURM
cluster that keeps no accounting.

Hydra's submitit launcher asks its jobs for their results one after another, in the sweep's
order, so a job that SLURM cancelled, or killed for its memory or time (or a local job's process
that was killed), would be told only once every job before it had ended: hours later, behind a
long job. ``told_as_they_end`` has the launcher wait for the jobs in the order they end, so the
first job to end without a result ends the sweep at once.

submitit learns a job's state from ``sacct``. A cluster without accounting
(``AccountingStorageType=accounting_storage/none``, common on small lab clusters) answers every
``sacct`` with "Slurm accounting storage is disabled", so submitit sees every job as UNKNOWN and
waits for its result file: a job that SLURM cancelled, or killed for its memory or time, leaves the
sweep waiting forever, with four lines of warnings at each look. ``QueueWatcher`` asks ``sacct``
once; where it has no accounting to answer from, it reads the states from ``squeue``, which knows
a job until ``MinJobAge`` (5 minutes by default) after its end, and takes a job that has left
``squeue`` without a result for ended. Imported only by the submitit launchers: it needs submitit.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import submitit
from submitit.helpers import as_completed
from submitit.slurm import slurm

# What sacct says, and exits 1, on a cluster without accounting.
NO_ACCOUNTING = "accounting storage is disabled"
# The state of a job that left squeue before its end was seen; not a state of SLURM's own.
LEFT_THE_QUEUE = "ended; squeue no longer knows it, and there is no accounting to ask"
# submitit's own delay between looks at its jobs' states, at most.
SUBMITIT_DELAY_S = 600
# How many of its jobs the launcher looks at per second, at most: each look costs a few calls to
# the file system of the job's folder (shared, on a cluster), so a big sweep is looked over less
# often, up to every LOOK_EVERY_S_AT_MOST. SLURM is asked only as often as the watcher's delay allows.
LOOKS_PER_S = 8
LOOK_EVERY_S_AT_MOST = 10.0


def sacct_answers(command: list[str]) -> bool:
    """Gives whether ``sacct`` can tell job states here: False only where it says that the
    cluster keeps no accounting. Any other failure is left to submitit, which warns and looks again."""
    try:
        said = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return said.returncode == 0 or NO_ACCOUNTING not in said.stderr


class QueueWatcher(slurm.SlurmInfoWatcher):
    """submitit's watcher of SLURM job states, which reads ``squeue`` where ``sacct`` cannot answer."""

    def __init__(self, delay_s: int = SUBMITIT_DELAY_S) -> None:
        super().__init__(delay_s=delay_s)
        self.accounting: bool | None = None  # unknown until sacct is first asked

    def _make_command(self) -> list[str] | None:
        command = super()._make_command()
        if command is None:
            return None
        if self.accounting is None:
            self.accounting = sacct_answers(command)
        if self.accounting:
            return command
        # All of this user's jobs: squeue fails on the id of a job it no longer knows.
        return ["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--user={os.getuid()}"]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        """Gives each watched job's state, from sacct's answer or squeue's."""
        if self.accounting:
            return super().read_info(string)
        text = string.decode() if isinstance(string, bytes) else string
        states = super().read_info("JobID|State\n" + text)  # squeue's ids and states, as sacct writes them
        for job_id in self._registered - self._finished - states.keys():
            states[job_id] = {"JobID": job_id, "State": LEFT_THE_QUEUE}
        return states


@contextmanager
def watched_without_accounting() -> Iterator[None]:
    """Has submitit's SLURM jobs watched by a ``QueueWatcher`` for the duration: submitit keeps one
    watcher for all its SLURM jobs, on their class, and Hydra's launcher builds the executor."""
    submitits = slurm.SlurmJob.watcher
    slurm.SlurmJob.watcher = QueueWatcher()
    try:
        yield
    finally:
        slurm.SlurmJob.watcher = submitits


def look_every_s(jobs: int) -> float:
    """Gives how often the launcher looks over its ``jobs`` jobs: every second for a few, less
    often for many (LOOKS_PER_S)."""
    return min(LOOK_EVERY_S_AT_MOST, max(1.0, jobs / LOOKS_PER_S))


@contextmanager
def told_as_they_end() -> Iterator[None]:
    """Has the jobs that submitit submits for the duration waited for in the order they end: the
    first job to end without a result raises its error then, not after the jobs before it in the
    sweep. Hydra's launcher builds the executor and waits in ``launch``, so the wait goes into the
    executor's ``map_array``, on its class."""
    submitits = submitit.AutoExecutor.map_array

    def map_array(executor, fn, *iterables):  # type: ignore[no-untyped-def]
        jobs = submitits(executor, fn, *iterables)
        for job in as_completed(jobs, poll_frequency=look_every_s(len(jobs))):
            job.results()  # raises for a job that ended without a result; the result is read again later
        return jobs

    submitit.AutoExecutor.map_array = map_array  # type: ignore[method-assign]
    try:
        yield
    finally:
        submitit.AutoExecutor.map_array = submitits  # type: ignore[method-assign]
