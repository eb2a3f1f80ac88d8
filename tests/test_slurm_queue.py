"""Job states on a SLURM cluster without accounting: from squeue, and a job that squeue no longer
knows has ended; and jobs waited for in the order they end. The SLURM commands are stand-ins on
PATH (tests/test_slurm.py runs a real cluster)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytest.importorskip("submitit")

import submitit  # noqa: E402
from submitit.core.utils import FailedJobError  # noqa: E402
from submitit.slurm import slurm  # noqa: E402

from vae_gumbel.slurm_queue import (  # noqa: E402
    LEFT_THE_QUEUE,
    QueueWatcher,
    look_every_s,
    told_as_they_end,
    watched_without_accounting,
)

NO_ACCOUNTING = "echo 'Slurm accounting storage is disabled' >&2\nexit 1"


@pytest.fixture
def sacct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Puts a stand-in sacct with the given body first on PATH; gives the file that counts its calls."""
    calls = tmp_path / "sacct_calls"

    def stand_in(body: str) -> Path:
        (tmp_path / "sacct").write_text(f"#!/bin/sh\necho called >> {calls}\n{body}\n")
        (tmp_path / "sacct").chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        return calls

    return stand_in


def watching(*job_ids: str) -> QueueWatcher:
    watcher = QueueWatcher()
    for job_id in job_ids:
        watcher.register_job(job_id)
    return watcher


def test_without_accounting_sacct_is_asked_once_and_squeue_gives_the_states(sacct) -> None:
    calls = sacct(NO_ACCOUNTING)
    watcher = watching("42_0", "42_1")
    first, second = watcher._make_command(), watcher._make_command()
    assert first == second and first[:2] == ["squeue", "--noheader"]
    assert "--states=all" in first  # ended jobs too, until SLURM forgets them
    assert watcher.accounting is False and calls.read_text().count("called") == 1


def test_with_accounting_the_states_come_from_sacct_as_in_submitit(sacct) -> None:
    sacct("echo 'JobID|State|NodeList'")
    watcher = watching("42_0")
    assert watcher._make_command()[0] == "sacct" and watcher.accounting is True
    states = watcher.read_info("JobID|State|NodeList\n42_0|CANCELLED by 0|node1\n")
    assert states["42_0"]["State"] == "CANCELLED by 0"


def test_another_sacct_failure_is_left_to_submitit_which_warns_and_looks_again(sacct) -> None:
    sacct("echo 'sacct: error: slurmdbd: connection refused' >&2\nexit 1")
    watcher = watching("42_0")
    assert watcher._make_command()[0] == "sacct" and watcher.accounting is True


def test_squeues_states_are_read_per_task_and_a_job_it_no_longer_knows_has_ended(sacct) -> None:
    sacct(NO_ACCOUNTING)
    watcher = watching("42_0", "42_1", "42_2", "43")
    watcher._make_command()
    watcher._info_dict.update(watcher.read_info("42_0|CANCELLED\n42_[1-2]|PENDING\n"))
    state = {job_id: watcher.get_state(job_id, mode="cache") for job_id in ("42_0", "42_1", "42_2", "43")}
    assert state == {"42_0": "CANCELLED", "42_1": "PENDING", "42_2": "PENDING", "43": LEFT_THE_QUEUE}
    done = {job_id: watcher.is_done(job_id, mode="cache") for job_id in state}
    assert done == {"42_0": True, "42_1": False, "42_2": False, "43": True}


def test_submitits_own_watcher_is_back_after_the_launch() -> None:
    submitits = slurm.SlurmJob.watcher
    with pytest.raises(RuntimeError), watched_without_accounting():
        assert isinstance(slurm.SlurmJob.watcher, QueueWatcher)
        raise RuntimeError("the launch failed")
    assert slurm.SlurmJob.watcher is submitits


def runs_until(released: str) -> None:
    """A job that runs until the file ``released`` appears (at most a minute)."""
    deadline = time.monotonic() + 60
    while not Path(released).exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def fails(reason: str) -> None:
    raise ValueError(reason)


def run_or_fail(how: str, argument: str) -> None:
    {"run": runs_until, "fail": fails}[how](argument)


@pytest.mark.slow
def test_the_first_job_to_fail_is_told_while_the_jobs_before_it_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="local")
    executor.update_parameters(timeout_min=2)
    released = tmp_path / "released"
    submitted = kept_as_submitted(monkeypatch)
    submitits, started = submitit.AutoExecutor.map_array, time.monotonic()
    try:
        with told_as_they_end(), pytest.raises(FailedJobError, match="job 1 fails at once"):
            executor.map_array(run_or_fail, ["run", "fail"], [str(released), "job 1 fails at once"])
        assert time.monotonic() - started < 30  # job 0 runs a minute: nothing waited for it
    finally:
        released.touch()
        for job in submitted:  # job 0's process ends now: the test leaves none running
            job.wait()
    assert submitit.AutoExecutor.map_array is submitits


def kept_as_submitted(monkeypatch: pytest.MonkeyPatch) -> list[submitit.Job]:
    """Gives the list that every job submitted through ``AutoExecutor.map_array`` goes into."""
    submitted: list[submitit.Job] = []
    submitits = submitit.AutoExecutor.map_array

    def map_array(executor, fn, *iterables):  # type: ignore[no-untyped-def]
        jobs = submitits(executor, fn, *iterables)
        submitted.extend(jobs)
        return jobs

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    return submitted


def test_a_big_sweep_is_looked_over_less_often_than_a_small_one() -> None:
    # Each look at a job costs calls to the (shared) file system of its folder.
    assert [look_every_s(jobs) for jobs in (1, 8, 64, 80, 256)] == [1.0, 1.0, 8.0, 10.0, 10.0]
