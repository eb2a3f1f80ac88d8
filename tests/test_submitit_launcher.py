"""hydra/launcher=slurm, stacked_slurm and Hydra's submitit_slurm: what SLURM says when it refuses a
sweep, or when a job ends without a result, in one line. The SLURM commands here are stand-ins on PATH,
so no cluster is needed (tests/test_slurm.py runs a real one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hydra_plugins.vae_gumbel_launcher.submitit_launcher import job_without_result, submission_refused
from tests.conftest import assert_one_line_error, run_module, tiny_run
from vae_gumbel.interrupts import train_command


def test_a_refused_submission_is_told_by_sbatchs_fatal_error_or_else_its_first() -> None:
    unreachable = (
        "sbatch: error: resolve_ctls_from_dns_srv: res_nsearch error: Unknown host\n"
        "sbatch: error: fetch_config: DNS SRV lookup failed\n"
        "sbatch: fatal: Could not establish a configuration source\n"
    )
    assert submission_refused(unreachable) == "sbatch: fatal: Could not establish a configuration source"
    partition = (
        "sbatch: error: invalid partition specified: gpu\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert submission_refused(partition) == "sbatch: error: invalid partition specified: gpu"
    assert submission_refused("") == "sbatch gave no reason"


def test_a_job_without_a_result_is_told_by_its_id_and_state() -> None:
    said = (
        "Job 42_0 (task: 0) with path /sweep/.submitit/42_0/42_0_0_result.pkl\n"
        "has not produced any output (state: OUT_OF_MEMORY)\n"
        "Error stream produced:\n----\nslurmstepd: error: Detected 1 oom_kill event\n"
    )
    assert job_without_result(said) == "SLURM job 42_0 ended without a result (state: OUT_OF_MEMORY)"


def slurm_commands(folder: Path, **scripts: str) -> dict[str, str]:
    """Puts shell scripts named for SLURM commands first on PATH (an srun, which submitit looks
    for, unless ``srun=None``); gives the environment."""
    folder.mkdir()
    scripts.setdefault("srun", "echo 'srun: a stand-in' >&2; exit 1")
    for name, body in scripts.items():
        if body is None:
            continue
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def sweep(tmp_path: Path, mnist_root: Path, launcher: str, **scripts: str) -> object:
    """Runs a sweep of two seeds through ``launcher`` with stand-in SLURM commands."""
    return run_module(
        "vae_gumbel.train",
        "-m",
        f"hydra/launcher={launcher}",
        *tiny_run(mnist_root),
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env=slurm_commands(tmp_path / "bin", **scripts),
    )


def sweep_seeing(tmp_path: Path, mnist_root: Path, *states: str) -> object:
    """Runs the sweep of two seeds through ``hydra/launcher=slurm`` on a stand-in cluster that
    takes the jobs as array 42 and whose sacct gives each task's ``states`` ("42_0|RUNNING")."""
    table = ["JobID|State|NodeList", *(f"{state}|node1" for state in states)]
    return sweep(
        tmp_path,
        mnist_root,
        "slurm",
        sbatch="echo 'Submitted batch job 42'",
        sacct="".join(f"echo '{line}'\n" for line in table),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "local"), [("slurm", "submitit_local"), ("stacked_slurm", "stacked_submitit_local")]
)
def test_a_machine_without_slurm_is_told_so_before_anything_is_submitted(
    tmp_path: Path, mnist_root: Path, launcher: str, local: str
) -> None:
    result = run_module(
        "vae_gumbel.train",
        *("-m", f"hydra/launcher={launcher}", *tiny_run(mnist_root), "seed=0,1"),
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        env={"PATH": str(tmp_path / "nothing")},  # no SLURM command, whatever this machine has
    )
    said = f"hydra/launcher={launcher} submits the jobs to SLURM, and SLURM's commands are not on this"
    assert_one_line_error(result, 2, said)
    assert f"or try it here with hydra/launcher={local}" in result.stderr
    assert not list((tmp_path / "sweep").glob("*/.submitit"))  # nothing was submitted


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "resources"),
    [
        ("slurm", ": vae_gumbel/conf/hydra/launcher/resources/slurm.yaml"),
        ("stacked_slurm", ": vae_gumbel/conf/hydra/launcher/resources/slurm.yaml"),
        ("submitit_slurm", ""),  # Hydra's, under its name: its resources are Hydra's defaults
    ],
)
def test_a_sweep_slurm_refuses_ends_in_one_line_that_says_why(
    tmp_path: Path, mnist_root: Path, launcher: str, resources: str
) -> None:
    refusal = [
        "sbatch: error: invalid partition specified: gpu",
        "sbatch: error: Batch job submission failed: Invalid partition name specified",
    ]
    result = sweep(
        tmp_path, mnist_root, launcher, sbatch="".join(f"echo '{line}' >&2\n" for line in refusal) + "exit 1"
    )
    said = (
        f"SLURM refused the sweep's jobs ({refusal[0]}); check the hydra.launcher settings (partition, "
        f"gpus_per_node, ...{resources}) and that SLURM answers"
    )
    assert_one_line_error(result, 2, said)


@pytest.mark.slow
def test_a_cancelled_job_ends_the_sweep_in_one_line_that_says_how_to_go_on(
    tmp_path: Path, mnist_root: Path
) -> None:
    result = sweep_seeing(tmp_path, mnist_root, "42_0|CANCELLED by 0", "42_1|CANCELLED by 0")
    go_on = ["-m", "hydra/launcher=slurm", *tiny_run(mnist_root), "seed=0,1", "resume=last"]
    said = (
        "SLURM job 42_0 ended without a result (state: CANCELLED by 0); the sweep's other jobs are left to "
        "run (squeue): once they end, continue the sweep with: "
        + train_command(*go_on, f"hydra.sweep.dir={(tmp_path / 'sweep').resolve()}")
    )
    assert_one_line_error(result, 1, said)


@pytest.mark.slow
def test_a_job_that_ends_without_a_result_ends_the_sweep_while_the_jobs_before_it_run(
    tmp_path: Path, mnist_root: Path
) -> None:
    # Job 0 runs on (for ever, here): the sweep does not wait for it to tell of job 1.
    result = sweep_seeing(tmp_path, mnist_root, "42_0|RUNNING", "42_1|OUT_OF_MEMORY")
    assert_one_line_error(result, 1, "SLURM job 42_1 ended without a result (state: OUT_OF_MEMORY)")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("queue", "state"),
    [("42_0|CANCELLED\n42_1|RUNNING", "CANCELLED"), ("42_1|RUNNING", "ended; squeue no longer knows it")],
    ids=["in squeue", "gone from squeue"],
)
def test_a_cancelled_job_ends_the_sweep_on_a_cluster_without_accounting(
    tmp_path: Path, mnist_root: Path, queue: str, state: str
) -> None:
    # sacct has no accounting to answer from: submitit alone would wait for the result for ever.
    no_accounting = "echo 'Slurm accounting storage is disabled' >&2\nexit 1"
    result = sweep(
        tmp_path,
        mnist_root,
        "slurm",
        sbatch="echo 'Submitted batch job 42'",
        sacct=no_accounting,
        squeue=f"printf '{queue}\\n'",
    )
    assert_one_line_error(result, 1, f"SLURM job 42_0 ended without a result (state: {state}")
    assert "Bypassing sacct error" not in result.stdout + result.stderr


@pytest.mark.slow
def test_ctrl_c_while_waiting_for_slurm_jobs_says_that_they_go_on(tmp_path: Path, mnist_root: Path) -> None:
    # sacct, which submitit asks while it waits for the jobs, sends the launcher a Ctrl-C.
    states = ["JobID|State|NodeList", "42_0|RUNNING|node1", "42_1|RUNNING|node1"]
    sacct = "kill -INT $PPID\n" + "".join(f"echo '{line}'\n" for line in states)
    result = sweep(tmp_path, mnist_root, "slurm", sbatch="echo 'Submitted batch job 42'", sacct=sacct)
    said = (
        "interrupted by SIGINT while waiting for the sweep's SLURM jobs, which go on (squeue; scancel stops "
        f"them); vae-gumbel-report {tmp_path / 'sweep'} shows their runs"
    )
    assert_one_line_error(result, 130, said)
