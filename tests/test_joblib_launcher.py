"""hydra/launcher=joblib: Hydra's joblib launcher, with a worker that dies said in one line."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from hydra_plugins.vae_gumbel_launcher.joblib_launcher import worker_ended
from tests.conftest import tiny_run
from tests.test_interrupts import EPOCHS, epochs_logged, finish_the_sweep, start, wait_for
from vae_gumbel.run_folder import RunFolder


def test_a_worker_killed_is_read_as_most_often_a_lack_of_memory() -> None:
    joblib_says = (
        "A worker process managed by the executor was unexpectedly terminated. This could be caused "
        "by a segmentation fault ...\n\nThe exit codes of the workers are {SIGKILL(-9)}"
    )
    assert worker_ended(joblib_says) == (
        "a joblib worker process ended abruptly (exit code SIGKILL(-9): killed, most often by the "
        "system for lack of memory; fewer parallel jobs (hydra.launcher.n_jobs=N) need less)"
    )
    assert "(exit code SIGSEGV(-11))" in worker_ended("The exit codes of the workers are {SIGSEGV(-11)}")
    assert worker_ended("something else") == "a joblib worker process ended abruptly"


@pytest.mark.slow
def test_a_killed_worker_ends_the_sweep_in_one_line_that_says_how_to_continue_it(
    mnist_root: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.num_threads=1"]
    command = ["-m", "vae_gumbel.train", "-m", *launcher, *tiny_run(mnist_root), "seed=0,1"]
    command.append(f"trainer.epochs={EPOCHS}")
    process = start([*command, f"hydra.sweep.dir={sweep_dir}"], tmp_path, pause="step=0.05")
    wait_for(lambda: all(epochs_logged(RunFolder(sweep_dir / job)) >= 1 for job in "01"), process)
    worker = json.loads(RunFolder(sweep_dir / "0").status.read_text())["pid"]
    os.kill(worker, signal.SIGKILL)  # as the system's out-of-memory killer would
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    said = "error: a joblib worker process ended abruptly (exit code SIGKILL(-9): killed, most often"
    (line,) = [line for line in stderr.splitlines() if line.startswith(said)]
    assert "joblib stopped the sweep's other jobs with it; each run keeps its last checkpoint" in line
    finish_the_sweep(line.split("continue the sweep with: ", 1)[1], command, sweep_dir)
