"""How the SLURM launchers learn that a job has ended, on a cluster that keeps no accounting.

submitit learns a job's state from ``sacct``. A cluster without accounting
(``AccountingStorageType=accounting_storage/none``, common on small lab clusters) answers every
``sacct`` with "Slurm accounting storage is disabled", so submitit sees every job as UNKNOWN and
waits for its result file: a job that SLURM cancelled, or killed for its memory or time, leaves the
sweep waiting forever, with four lines of warnings at each look. ``QueueWatcher`` asks ``sacct``
once; where it has no accounting to answer from, it reads the states from ``squeue``, which knows
a job until ``MinJobAge`` (5 minutes by default) after its end, and takes a job that has left
``squeue`` without a result for ended. Imported only by the SLURM launchers: it needs submitit.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from submitit.slurm import slurm

# What sacct says, and exits 1, on a cluster without accounting.
NO_ACCOUNTING = "accounting storage is disabled"
# The state of a job that left squeue before its end was seen; not a state of SLURM's own.
LEFT_THE_QUEUE = "ended; squeue no longer knows it, and there is no accounting to ask"
# submitit's own delay between looks at its jobs' states, at most.
SUBMITIT_DELAY_S = 600


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
