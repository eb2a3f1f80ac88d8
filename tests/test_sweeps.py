"""Sweeps: the training entry point under Hydra multirun, with the basic sweeper, joblib, Optuna, submitit."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_one_line_error, run_module, tiny_run
from vae_gumbel.report import report
from vae_gumbel.tracking import read_metrics

pytestmark = pytest.mark.slow


def multirun(tmp_path: Path, mnist_root: Path, *overrides: str) -> tuple[Path, object]:
    sweep_dir = tmp_path / "sweep"
    result = run_module(
        "vae_gumbel.train",
        "-m",
        *tiny_run(mnist_root),
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    return sweep_dir, result


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_basic_sweeper_runs_every_combination_in_its_own_job_folder(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = multirun(
        tmp_path,
        mnist_root,
        "temperature.initial=0.5,1.0",
        "estimator=gumbel_softmax,straight_through",
        "trainer.timeline=true",
    )
    assert result.returncode == 0, result.stderr
    assert (sweep_dir / "multirun.yaml").is_file()
    jobs = job_dirs(sweep_dir)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    # The jobs run one after another in one process; each timeline holds its own job's phases only,
    # and only the first job's counts the process's start-up.
    timelines = [json.loads((job / "timeline.json").read_text()) for job in jobs]
    assert "start: interpreter and imports" in timelines[0]["phases"]
    for timeline in timelines[1:]:
        assert "start: interpreter and imports" not in timeline["phases"]
        assert (
            0 < timeline["phases"]["train: steps"] < timeline["total_seconds"] < timelines[0]["total_seconds"]
        )
    combinations = set()
    for job in jobs:
        assert read_metrics(job / "metrics.jsonl")[-1]["epoch"] == 1
        assert (job / "checkpoints" / "last.pt").is_file()
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        combinations.add(tuple(o for o in overrides if o.startswith(("temperature.initial", "estimator"))))
        # TensorBoard names the job's run by its overrides.
        (run,) = (job / "tensorboard").iterdir()
        assert "estimator=" in run.name and "temperature.initial=" in run.name
    assert len(combinations) == 4


def test_joblib_launcher_runs_jobs_in_parallel_and_a_failing_job_loses_no_other(
    tmp_path: Path, mnist_root: Path
) -> None:
    sweep_dir, result = multirun(
        tmp_path,
        mnist_root,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "trainer.num_threads=1",
        "temperature.initial=-1,1.0",
    )
    assert result.returncode != 0
    assert "error: temperature.initial must be > 0, got -1.0" in result.stderr
    # The sweep still ends with its summary: which runs did not complete, and how to compare them all.
    ending = (result.stdout + result.stderr).split("sweep done: ", 1)[1].splitlines()
    assert ending[1] == "  not completed: 1 of 2 runs (0: failed), each says why in its status.json"
    assert ending[2] == "    0: ConfigError: temperature.initial must be > 0, got -1.0"
    assert ending[3].startswith("  compare its runs: python -m vae_gumbel.report ")
    assert "--group-by-seed" not in ending[3]  # the sweep varies no seed
    assert any((sweep_dir / "tensorboard").iterdir())  # the HParams tab's experiment summary
    failed, finished = job_dirs(sweep_dir)
    assert json.loads((failed / "status.json").read_text())["status"] == "failed"
    assert read_metrics(finished / "metrics.jsonl")[-1]["epoch"] == 1
    table = report(sweep_dir)
    assert table.splitlines()[2].startswith("| 1 | completed | 1 |")
    assert table.splitlines()[3].startswith("| 0 | failed | -1 |")
    assert "ConfigError: temperature.initial must be > 0" in table.splitlines()[3]


def test_optuna_search_runs_trials_and_minimises_the_returned_test_loss(
    tmp_path: Path, mnist_root: Path
) -> None:
    sweep_dir, result = multirun(tmp_path, mnist_root, "hparams_search=optuna", "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr
    assert len(job_dirs(sweep_dir)) == 2
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = min(read_metrics(j / "metrics.jsonl")[-1]["test/loss"] for j in job_dirs(sweep_dir))
    assert results["best_value"] == pytest.approx(best)
    assert set(results["best_params"]) == {
        "optim.lr",
        "temperature.initial",
        "temperature.min",
        "temperature.rate",
        "estimator",
    }
    # Like every sweep, it records its config and opens without the storage layer's start-up lines.
    assert (sweep_dir / "multirun.yaml").is_file() and "alembic" not in result.stdout + result.stderr
    # The command that trains a trial on continues that trial alone, not a new search.
    line = [line for line in result.stdout.splitlines() if "train on to 2 epochs: " in line][-1]
    words = shlex.split(line.split("train on to 2 epochs: ", 1)[1])
    assert words[:3] == ["python", "-m", "vae_gumbel.train"] and "hydra.mode=RUN" in words
    trial = Path(next(word for word in words if word.startswith("hydra.run.dir=")).split("=", 1)[1])
    more = run_module(*words[2:], cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert [r["epoch"] for r in read_metrics(trial / "metrics.jsonl")] == [1, 2]
    assert not (tmp_path / "outputs").exists()  # no new sweep started anywhere


def job_files(sweep_dir: Path) -> dict[Path, bytes]:
    """Gives the records and checkpoints of a sweep's jobs, byte for byte."""
    names = (
        "status.json",
        "metrics.jsonl",
        "checkpoints/last.pt",
        ".hydra/overrides.yaml",
        ".hydra/config.yaml",
    )
    return {job / name: (job / name).read_bytes() for job in job_dirs(sweep_dir) for name in names}


@pytest.mark.parametrize("launcher", ["basic", "stacked"])
def test_a_sweep_continued_with_other_values_refuses_the_folders_of_other_jobs(
    tmp_path: Path, mnist_root: Path, launcher: str
) -> None:
    sweep_dir, result = multirun(tmp_path, mnist_root, f"hydra/launcher={launcher}", "optim.lr=0.001,0.002")
    assert result.returncode == 0, result.stderr
    before = job_files(sweep_dir)
    # In another order, folder 0 would train job 0's run on with job 1's learning rate.
    _, result = multirun(
        tmp_path,
        mnist_root,
        f"hydra/launcher={launcher}",
        "optim.lr=0.002,0.001",
        "trainer.epochs=2",
        "resume=last",
    )
    assert result.returncode != 0
    refusal = "holds the run of another job of this sweep: optim.lr (checkpoint 0.001, now 0.002)"
    assert f"error: {sweep_dir / '0'} {refusal}" in result.stderr
    assert job_files(sweep_dir) == before  # nothing trained, nothing recorded
    # With its own values, the sweep goes on.
    _, result = multirun(
        tmp_path,
        mnist_root,
        f"hydra/launcher={launcher}",
        "optim.lr=0.001,0.002",
        "trainer.epochs=2",
        "resume=last",
    )
    assert result.returncode == 0, result.stderr
    assert [read_metrics(job / "metrics.jsonl")[-1]["epoch"] for job in job_dirs(sweep_dir)] == [2, 2]


def test_an_optuna_sweep_continued_with_other_trials_refuses_them_and_records_its_own_command(
    tmp_path: Path, mnist_root: Path
) -> None:
    search = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=stacked",
    ]
    sweep_dir, result = multirun(tmp_path, mnist_root, *search)
    assert result.returncode == 0, result.stderr
    before = job_files(sweep_dir)
    # Another sampler seed proposes other trials, as other objectives would.
    _, result = multirun(tmp_path, mnist_root, *search, "hydra.sweeper.sampler.seed=1", "resume=last")
    assert result.returncode != 0
    for job in ("0", "1"):
        assert (
            f"{sweep_dir / job} holds the run of another job of this sweep: " in result.stdout + result.stderr
        )
    assert job_files(sweep_dir) == before
    record = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
    assert (
        "hydra.sweeper.sampler.seed=1"
        in record["hydra"]["overrides"]["hydra"] + record["hydra"]["overrides"]["task"]
    )


def test_submitit_local_runs_a_job(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = multirun(
        tmp_path, mnist_root, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "seed=3"
    )
    assert result.returncode == 0, result.stderr
    (job,) = job_dirs(sweep_dir)
    assert read_metrics(job / "metrics.jsonl")[-1]["epoch"] == 1


def test_a_setting_for_some_of_a_sweeps_choices_goes_to_those_and_alone_is_refused(
    tmp_path: Path, mnist_root: Path
) -> None:
    """estimator.rao_samples in a sweep over estimators is meant for the ones that read it; given to
    a run whose estimator does not read it, it would change nothing, and the run is refused."""
    sweep_dir, result = multirun(
        tmp_path, mnist_root, "estimator=gumbel_softmax,gumbel_rao", "estimator.rao_samples=3"
    )
    assert result.returncode == 0, result.stderr
    for job, estimator in zip(job_dirs(sweep_dir), ("gumbel_softmax", "gumbel_rao"), strict=True):
        assert json.loads((job / "status.json").read_text())["status"] == "completed"
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["estimator"]
        assert (config["name"], config["rao_samples"]) == (estimator, 3)
    alone = run_module(
        "vae_gumbel.train",
        *tiny_run(mnist_root),
        "estimator.rao_samples=3",
        f"hydra.run.dir={tmp_path / 'alone'}",
        cwd=tmp_path,
    )
    assert_one_line_error(
        alone, 2, "error: estimator.rao_samples=3: estimator=gumbel_softmax does not read it, so it would"
    )
