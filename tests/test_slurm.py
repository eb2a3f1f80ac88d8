"""hydra/launcher=slurm on a real SLURM cluster: two tiny jobs through sbatch, one of them requeued
while it runs, which continues from its checkpoint to the numbers of an uninterrupted run.

Needs a cluster: ``sudo bash scripts/slurm_cluster.sh start`` brings up one node on loopback, and
``export SLURM_CONF=...`` (as it prints) points the SLURM commands at it; then ``python -m pytest -m slurm``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_config, run_module, tiny_run
from tests.test_train import without_timing
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train


def cluster_is_up() -> bool:
    if shutil.which("sinfo") is None or "SLURM_CONF" not in os.environ:
        return False
    return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(
        not cluster_is_up(), reason="no SLURM cluster: start one with scripts/slurm_cluster.sh start"
    ),
]

# The resources a job asks for, as the one-node cluster of scripts/slurm_cluster.sh can give them.
ON_THIS_CLUSTER = [
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


def sweep_command(launcher: str, *overrides: str) -> list[str]:
    """Gives the command of a sweep through ``hydra/launcher=LAUNCHER`` with this cluster's resources."""
    return [
        sys.executable,
        "-m",
        "vae_gumbel.train",
        "-m",
        f"hydra/launcher={launcher}",
        *ON_THIS_CLUSTER,
        *overrides,
    ]


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def sweep_acting_after_an_epoch(
    command: list[str], cwd: Path, first_epoch_done: RunFolder, act: Callable[[], None], **environment: str
) -> subprocess.CompletedProcess:
    """Runs a SLURM sweep and calls ``act`` once ``first_epoch_done`` has finished an epoch; gives
    how the sweep ended."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **environment}
    sweep_process = subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (first_epoch_done.metrics.is_file() and read_metrics(first_epoch_done.metrics)):
            assert sweep_process.poll() is None and time.monotonic() < deadline, sweep_process.communicate()
            time.sleep(0.5)
        act()
        output, errors = sweep_process.communicate(timeout=300)
    finally:
        if sweep_process.poll() is None:
            sweep_process.kill()
    return subprocess.CompletedProcess(command, sweep_process.returncode, output, errors)


def requeue_task_0() -> None:
    """Requeues task 0 of the sweep's array, as SLURM does to a preempted job, and starts it again at once."""
    (task,) = [line for line in slurm("squeue", "-h", "-o", "%i").split() if line.endswith("_0")]
    slurm("scontrol", "requeue", task)
    while "PENDING" not in slurm("squeue", "-h", "-j", task, "-o", "%T"):
        time.sleep(0.5)
    slurm("scontrol", "update", f"JobId={task}", "StartTime=now")  # no requeue delay, for the test


def sweep_requeuing_task_0(command: list[str], cwd: Path, first_epoch_done: RunFolder) -> str:
    """Runs a SLURM sweep and requeues its array's task 0 once ``first_epoch_done`` has finished an
    epoch; gives the sweep's output, after checking that it succeeded."""
    ended = sweep_acting_after_an_epoch(
        command, cwd, first_epoch_done, requeue_task_0, VAE_GUMBEL_PAUSE="epoch=2"
    )
    assert ended.returncode == 0, ended.stdout + ended.stderr
    return ended.stdout + ended.stderr


def assert_requeued_and_resumed(folder: RunFolder) -> None:
    log = folder.log.read_text()
    assert (
        "interrupted by SIGTERM" in log
        and "a requeued SLURM job: continuing from" in log
        and "resumed at epoch" in log
    ), log


def test_two_jobs_run_through_sbatch_and_a_requeued_one_resumes_to_the_same_numbers(
    mnist_root: Path, tmp_path: Path
) -> None:
    assert cluster_is_up(), "no SLURM cluster answers (SLURM_CONF, sinfo)"
    sweep = tmp_path / "sweep"
    job = RunFolder(sweep / "0")
    command = sweep_command(
        "slurm", *tiny_run(mnist_root), "trainer.epochs=4", "seed=0,1", f"hydra.sweep.dir={sweep}"
    )
    sweep_requeuing_task_0(command, tmp_path, job)
    for folder in (job, RunFolder(sweep / "1")):
        assert json.loads(folder.status.read_text())["status"] == "completed"
    assert_requeued_and_resumed(job)
    reference = tmp_path / "uninterrupted"
    train(compose_config("train", [*tiny_run(mnist_root), "trainer.epochs=4", "seed=0"]), reference)
    assert without_timing(read_metrics(job.metrics)) == without_timing(
        read_metrics(RunFolder(reference).metrics)
    )


def test_each_stack_is_one_slurm_job_and_a_requeued_stack_resumes_every_member(
    mnist_root: Path, tmp_path: Path
) -> None:
    assert cluster_is_up(), "no SLURM cluster answers (SLURM_CONF, sinfo)"
    sweep = tmp_path / "sweep"
    overrides = [
        *tiny_run(mnist_root),
        "trainer.epochs=4",
        "seed=0,1",
        "estimator=gumbel_softmax,straight_through",
    ]
    command = sweep_command("stacked_slurm", *overrides, f"hydra.sweep.dir={sweep}")
    # Task 0 is the first stack: jobs 0 and 2 (gumbel_softmax, seeds 0 and 1).
    output = sweep_requeuing_task_0(command, tmp_path, RunFolder(sweep / "0"))
    assert "4 jobs as 2 stacks of at most 64 models, a submitted job each" in output
    for job in (0, 2):
        assert_requeued_and_resumed(RunFolder(sweep / str(job)))
    # The same sweep trained in one process, uninterrupted: the same numbers for every job.
    reference = tmp_path / "in_one_process"
    in_one_process = ["-m", "hydra/launcher=stacked", *overrides, f"hydra.sweep.dir={reference}"]
    result = run_module("vae_gumbel.train", *in_one_process, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for job in range(4):
        folder = RunFolder(sweep / str(job))
        assert json.loads(folder.status.read_text())["status"] == "completed"
        assert "in a stack of 2" in folder.log.read_text()
        assert without_timing(read_metrics(folder.metrics)) == without_timing(
            read_metrics(RunFolder(reference / str(job)).metrics)
        )


def test_a_job_cancelled_on_this_cluster_ends_the_sweep_in_one_line_while_the_job_before_it_runs(
    mnist_root: Path, tmp_path: Path
) -> None:
    # This cluster keeps no accounting (scripts/slurm_cluster.sh), so sacct cannot tell the state;
    # and Hydra's launcher alone would wait for job 0, which runs for hours, before telling of job 1.
    assert cluster_is_up(), "no SLURM cluster answers (SLURM_CONF, sinfo)"
    sweep = tmp_path / "sweep"
    job = RunFolder(sweep / "1")
    command = sweep_command(
        "slurm", *tiny_run(mnist_root), "trainer.epochs=10000", "seed=0,1", f"hydra.sweep.dir={sweep}"
    )
    cancelled: list[str] = []

    def cancel_task_1() -> None:
        cancelled[:] = [task for task in slurm("squeue", "-h", "-o", "%i").split() if task.endswith("_1")]
        slurm("scancel", *cancelled)

    try:
        ended = sweep_acting_after_an_epoch(command, tmp_path, job, cancel_task_1)
    finally:
        tasks = slurm("squeue", "-h", "-o", "%i").split()
        if tasks:
            slurm("scancel", *tasks)  # job 0, left to run by the sweep
    (task,), output, errors = cancelled, ended.stdout, ended.stderr
    said = [line for line in errors.splitlines() if line.startswith("error:")]
    assert ended.returncode == 1 and len(said) == 1, errors
    assert said[0].startswith(f"error: SLURM job {task} ended without a result (state: CANCELLED"), errors
    assert json.loads(job.status.read_text())["status"] == "interrupted"  # its checkpoint is kept
    assert "not completed: 2 of 2 runs" in output + errors and "1: interrupted" in output + errors
