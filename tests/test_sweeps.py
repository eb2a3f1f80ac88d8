"""Sweeps: Hydra multirun with the basic sweeper, joblib, Optuna and submitit, and the sweep report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from tests.conftest import CONF, run_module, small_overrides
from vae_gumbel.report import report
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train


def multirun(tmp_path: Path, mnist_root: Path, *overrides: str) -> tuple[Path, object]:
    sweep_dir = tmp_path / "sweep"
    result = run_module(
        "vae_gumbel.train",
        "-m",
        *small_overrides(mnist_root),
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    return sweep_dir, result


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_basic_sweeper_runs_every_combination_in_its_own_job_folder(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = multirun(
        tmp_path, mnist_root, "temperature.initial=0.5,1.0", "estimator=gumbel_softmax,straight_through"
    )
    assert result.returncode == 0, result.stderr
    assert (sweep_dir / "multirun.yaml").is_file()
    jobs = job_dirs(sweep_dir)
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
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
    failed, finished = job_dirs(sweep_dir)
    assert json.loads((failed / "status.json").read_text())["status"] == "failed"
    assert read_metrics(finished / "metrics.jsonl")[-1]["epoch"] == 1
    table = report(sweep_dir)
    assert table.splitlines()[2].startswith("| 1 | completed | 1.0 |")
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


def test_optuna_config_composes_with_its_search_space() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "minimize" and cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper.params["optim.lr"] == "tag(log, interval(1e-4, 3e-3))"


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm", "submitit_local"])
def test_submitit_launcher_configs_compose(launcher: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_
    if launcher == "slurm":
        assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.gpus_per_node) == ("gpu", 1)
        assert cfg.hydra.launcher.timeout_min == 240


def test_submitit_local_runs_a_job(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = multirun(
        tmp_path, mnist_root, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "seed=3"
    )
    assert result.returncode == 0, result.stderr
    (job,) = job_dirs(sweep_dir)
    assert read_metrics(job / "metrics.jsonl")[-1]["epoch"] == 1


def test_rerun_with_resume_last_continues_unfinished_jobs_and_leaves_finished_ones(
    compose_train, tmp_path
) -> None:
    finished, unfinished = tmp_path / "0", tmp_path / "1"
    train(compose_train("trainer.epochs=2"), finished)
    train(compose_train("trainer.epochs=1"), unfinished)  # as if killed after its first epoch
    untouched = {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()}
    for job in (finished, unfinished):
        train(compose_train("trainer.epochs=2", "resume=last"), job)
    assert {p: p.stat().st_mtime_ns for p in finished.rglob("*") if p.is_file()} == untouched
    assert [r["epoch"] for r in read_metrics(unfinished / "metrics.jsonl")] == [1, 2]


def write_job(folder: Path, overrides: list[str], losses: list[float], status: dict | None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    records = [
        {"epoch": i + 1, "step": 10 * (i + 1), "temperature": 1.0, "test/loss": loss}
        for i, loss in enumerate(losses)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))


def test_report_sorts_by_final_or_best_test_loss_with_overrides_as_columns(tmp_path: Path) -> None:
    write_job(
        tmp_path / "0",
        ["optim.lr=0.001", "estimator=gumbel_softmax"],
        [120.0, 110.0],
        {"status": "completed"},
    )
    write_job(
        tmp_path / "1",
        ["optim.lr=0.003", "estimator=gumbel_softmax"],
        [100.0, 115.0],
        {"status": "completed"},
    )
    write_job(
        tmp_path / "2",
        ["optim.lr=0.01", "estimator=gumbel_softmax"],
        [],
        {"status": "failed", "error": "NonFiniteLossError: the loss became non-finite at step 7"},
    )
    lines = report(tmp_path).splitlines()
    assert (
        lines[0]
        == "| job | status | optim.lr | epochs | final test loss | best test loss | best epoch | error |"
    )
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 0", "| 1", "| 2"]
    assert lines[4].endswith("| NonFiniteLossError: the loss became non-finite at step 7 |")
    by_best = report(tmp_path, sort="best").splitlines()
    assert [line.split(" | ")[0] for line in by_best[2:]] == ["| 1", "| 0", "| 2"]
    for name in ("report.csv", "report.md", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (
        (tmp_path / "report.csv").read_text().splitlines()[1].startswith("1,completed,0.003,2,115.0,100.0,1,")
    )


def test_report_cli_works_on_a_folder_of_single_runs(tmp_path: Path) -> None:
    write_job(tmp_path / "2026-11-22" / "10-00-00-1", [], [130.0], {"status": "completed"})
    write_job(tmp_path / "2026-11-22" / "11-00-00-2", ["trainer.epochs=1"], [125.0], None)
    result = run_module("vae_gumbel.report", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| 2026-11-22/10-00-00-1 | completed |" in result.stdout
    assert "| 2026-11-22/11-00-00-2 | incomplete |" in result.stdout


def test_long_override_lists_make_short_unique_tensorboard_run_names() -> None:
    from vae_gumbel.train import short_run_name

    assert short_run_name("optim.lr=0.0006466422717414558,estimator=straight_through") == (
        "optim.lr=0.0006466,estimator=straight_through"
    )
    long_a, long_b = ("x" * 300 + ",seed=1"), ("x" * 300 + ",seed=2")
    assert len(short_run_name(long_a)) == 200
    assert short_run_name(long_a) != short_run_name(long_b)
    assert short_run_name("data.root=/a/b") == "data.root=_a_b"
