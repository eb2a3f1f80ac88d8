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
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_config, tiny_run
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

ON_THIS_CLUSTER = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


def test_two_jobs_run_through_sbatch_and_a_requeued_one_resumes_to_the_same_numbers(
    mnist_root: Path, tmp_path: Path
) -> None:
    assert cluster_is_up(), "no SLURM cluster answers (SLURM_CONF, sinfo)"
    sweep = tmp_path / "sweep"
    job = RunFolder(sweep / "0")
    command = [sys.executable, "-m", "vae_gumbel.train", "-m", *ON_THIS_CLUSTER, *tiny_run(mnist_root)]
    command += ["trainer.epochs=4", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "VAE_GUMBEL_PAUSE": "epoch=2"}
    sweep_process = subprocess.Popen(
        command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (job.metrics.is_file() and read_metrics(job.metrics)):  # job 0 has finished its first epoch
            assert sweep_process.poll() is None and time.monotonic() < deadline, sweep_process.communicate()
            time.sleep(0.5)
        (task,) = [
            line.split()[0]
            for line in slurm("squeue", "-h", "-o", "%i %T").splitlines()
            if line.split()[0].endswith("_0")
        ]
        slurm("scontrol", "requeue", task)
        while "PENDING" not in slurm("squeue", "-h", "-j", task, "-o", "%T"):
            time.sleep(0.5)
        slurm("scontrol", "update", f"JobId={task}", "StartTime=now")  # no requeue delay, for the test
        output, _ = sweep_process.communicate(timeout=300)
    finally:
        if sweep_process.poll() is None:
            sweep_process.kill()
    assert sweep_process.returncode == 0, output
    for folder in (job, RunFolder(sweep / "1")):
        assert json.loads(folder.status.read_text())["status"] == "completed"
    log = job.log.read_text()
    assert (
        "interrupted by SIGTERM" in log
        and "a requeued SLURM job: continuing from" in log
        and "resumed at epoch" in log
    )
    reference = tmp_path / "uninterrupted"
    train(compose_config("train", [*tiny_run(mnist_root), "trainer.epochs=4", "seed=0"]), reference)
    assert without_timing(read_metrics(job.metrics)) == without_timing(
        read_metrics(RunFolder(reference).metrics)
    )
