"""hydra/launcher=stacked_slurm and stacked_submitit_local: each stack of a sweep as one submitit job.

The local executor runs each job in a process of its own, as SLURM would on a node; the same
launcher through a real SLURM cluster is in tests/test_slurm.py. A killed job ends a sweep through
Hydra's own submitit_local (which has these launchers' errors) as it ends a stacked one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")  # the sweep extra

from hydra import compose, initialize_config_module  # noqa: E402
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from hydra_plugins.vae_gumbel_launcher.stacked_submitit_launcher import group_into_stacks  # noqa: E402
from hydra_plugins.vae_gumbel_launcher.submitit_launcher import SlurmJobsLauncher  # noqa: E402
from tests.conftest import CONFIG_MODULE, REPO, run_module, tiny_run  # noqa: E402
from tests.test_train import without_timing
from vae_gumbel.run_folder import RunFolder, lock_state
from vae_gumbel.tracking import read_metrics


def test_jobs_are_grouped_as_the_stacked_launcher_trains_them(mnist_root: Path) -> None:
    sweep = [
        ["seed=0"],
        ["seed=0", "estimator=straight_through"],
        ["seed=1", "optim.lr=3e-3", "temperature.initial=0.5"],  # per member: the same stack as job 0
        ["seed=1", "temperature.initial=0"],  # fails its checks
        ["seed=2"],
    ]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        jobs = [
            (idx, compose("train", [*tiny_run(mnist_root), *overrides], return_hydra_config=True))
            for idx, overrides in enumerate(sweep)
        ]
    assert group_into_stacks(jobs, max_members=2) == [[0, 2], [4], [1], [3]]
    assert group_into_stacks(jobs, max_members=64) == [[0, 2, 4], [1], [3]]


def test_stacked_slurm_asks_slurm_for_what_hydra_launcher_slurm_asks(mnist_root: Path) -> None:
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        slurm, stacked = (
            OmegaConf.to_container(
                compose("train", [f"hydra/launcher={name}"], return_hydra_config=True).hydra.launcher
            )
            for name in ("slurm", "stacked_slurm")
        )
    assert stacked.pop("_target_").endswith("StackedSlurmLauncher") and stacked.pop("max_members") == 64
    assert slurm.pop("_target_") == "hydra_plugins.vae_gumbel_launcher.submitit_launcher.SlurmJobsLauncher"
    assert issubclass(SlurmJobsLauncher, SlurmLauncher)  # Hydra's, with SLURM's errors in one line
    assert stacked == slurm and slurm["partition"] == "gpu" and slurm["gpus_per_node"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["stacked", "stacked_submitit_local"])
def test_a_stack_cap_below_one_is_refused_before_anything_runs(
    launcher: str, tmp_path: Path, mnist_root: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    overrides = [f"hydra/launcher={launcher}", "hydra.launcher.max_members=0", *tiny_run(mnist_root)]
    result = run_module(
        "vae_gumbel.train", "-m", *overrides, "seed=0,1", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr == "error: hydra.launcher.max_members must be an integer >= 1, got 0\n"
    assert not (sweep_dir / "0").exists()  # no job was prepared


@pytest.mark.slow
def test_each_stack_trains_in_a_submitted_job_to_the_numbers_of_an_in_process_stack(
    tmp_path: Path, mnist_root: Path
) -> None:
    sweep = ["trainer.epochs=2", "seed=0,1", "temperature.initial=0,1.0"]

    def swept(launcher: str) -> tuple[Path, str]:
        sweep_dir = tmp_path / launcher
        overrides = [
            f"hydra/launcher={launcher}",
            *tiny_run(mnist_root),
            *sweep,
            f"hydra.sweep.dir={sweep_dir}",
        ]
        result = run_module("vae_gumbel.train", "-m", *overrides, cwd=tmp_path)
        assert result.returncode != 0  # the sweep reports its two failed jobs at the end
        return sweep_dir, result.stdout + result.stderr

    sweep_dir, said = swept("stacked_submitit_local")
    assert "4 jobs as 2 stacks of at most 64 models, a submitted job each" in said
    assert "temperature.initial must be > 0, got 0.0" in said
    submitted = sorted(path for path in (sweep_dir / ".submitit").iterdir() if any(path.glob("*_result.pkl")))
    assert len(submitted) == 2  # one submitit job per stack: the failing jobs', and the stack of two
    statuses = [json.loads(RunFolder(sweep_dir / str(job)).status.read_text())["status"] for job in range(4)]
    assert statuses == ["failed", "completed", "failed", "completed"]
    assert "in a stack of 2" in RunFolder(sweep_dir / "1").log.read_text()

    reference, _ = swept("stacked")
    for job in (1, 3):
        trained, expected = (
            read_metrics(RunFolder(folder / str(job)).metrics) for folder in (sweep_dir, reference)
        )
        assert [r["epoch"] for r in trained] == [1, 2]
        assert without_timing(trained) == without_timing(expected)


def killed_after_an_epoch(folder: RunFolder) -> None:
    """Kills the process that trains into ``folder`` (as the out-of-memory killer would) once it has
    finished an epoch."""
    deadline = time.monotonic() + 120
    while not (folder.metrics.is_file() and read_metrics(folder.metrics)):
        assert time.monotonic() < deadline, "the run did not finish an epoch"
        time.sleep(0.2)
    os.kill(json.loads(folder.status.read_text())["pid"], signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["stacked_submitit_local", "submitit_local"])  # Hydra's, with our errors
def test_a_killed_stack_or_job_ends_the_sweep_in_one_line_while_the_one_before_it_trains(
    tmp_path: Path, mnist_root: Path, launcher: str
) -> None:
    # Two stacks or jobs (a stack's members train for as many epochs): the first trains for hours.
    sweep_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "vae_gumbel.train", "-m", f"hydra/launcher={launcher}"]
    command += [*tiny_run(mnist_root), "trainer.epochs=100000,2000", f"hydra.sweep.dir={sweep_dir}"]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    # Into files, not pipes: the first one's process, left to run, keeps the sweep's output open.
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        sweep = subprocess.Popen(
            command, cwd=tmp_path, env=environment, stdout=out, stderr=err, start_new_session=True
        )
    try:
        killed_after_an_epoch(RunFolder(sweep_dir / "1"))
        sweep.wait(timeout=120)
        assert lock_state(RunFolder(sweep_dir / "0")) == "another"  # the first one trains on
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the sweep's processes, the first one's among them
    output, errors = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    said = [line for line in errors.splitlines() if line.startswith("error:")]
    assert sweep.returncode == 1 and len(said) == 1 and "Traceback" not in errors, errors
    assert "ended without a result" in said[0] and said[0].startswith("error: local job "), errors
    assert "the sweep's other jobs are left to run (their processes go on)" in said[0], errors
    assert "not completed: 2 of 2 runs (0: training, 1: killed)" in output + errors
