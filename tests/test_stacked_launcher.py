"""hydra/launcher=stacked: a sweep's jobs trained in one process as stacks, each in a normal run folder."""

from __future__ import annotations

import json
import math
import re
import shlex
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hydra_plugins.vae_gumbel_launcher.stacked_launcher import ComposedJobs
from tests.conftest import compose_config, run_module, tiny_run
from tests.test_train import EPOCH_KEYS
from vae_gumbel.evaluate import run_evaluation
from vae_gumbel.run_folder import RunFolder, sweep_timeline
from vae_gumbel.sample import sample
from vae_gumbel.timeline import HYDRA_COMPOSES, PREPARE_JOBS, SWEEPER_CHECKS
from vae_gumbel.tracking import read_metrics

pytestmark = pytest.mark.slow


def stacked_sweep(tmp_path: Path, mnist_root: Path, *overrides: str):
    sweep_dir = tmp_path / "sweep"
    result = run_module(
        "vae_gumbel.train",
        "-m",
        "hydra/launcher=stacked",
        *tiny_run(mnist_root),
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
    )
    return sweep_dir, result


def test_a_stacked_sweep_writes_a_normal_run_folder_per_job(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = stacked_sweep(
        tmp_path, mnist_root, "trainer.epochs=2", "seed=0,1", "optim.lr=1e-3,3e-3", "trainer.timeline=true"
    )
    assert result.returncode == 0, result.stderr
    assert "stack of 4 (jobs 0 1 2 3), epoch 2/2: 4 training" in result.stdout + result.stderr
    # The basic sweeper composed every job to check the batch, and the launcher took those configs.
    phases = json.loads(sweep_timeline(sweep_dir, 0, 3).read_text())["phases"]
    assert 0 < phases[SWEEPER_CHECKS] and 0 < phases[HYDRA_COMPOSES]
    # It sweeps the seed, so the report it offers gives each setting's mean over seeds.
    assert f"compare its runs: python -m vae_gumbel.report {sweep_dir} --group-by-seed\n" in result.stdout
    assert (sweep_dir / "multirun.yaml").is_file()
    losses = set()
    for job in range(4):
        folder = RunFolder(sweep_dir / str(job))
        records = read_metrics(folder.metrics)
        assert [r["epoch"] for r in records] == [1, 2] and EPOCH_KEYS <= set(records[-1])
        losses.add(records[-1]["test/loss"])
        assert json.loads(folder.status.read_text())["status"] == "completed"
        overrides = yaml.safe_load(folder.overrides.read_text())
        assert any(o.startswith("seed=") for o in overrides) and folder.config.is_file()
        log = folder.log.read_text()
        assert "in a stack of 4" in log and "epoch 2/2" in log and "#1 :" not in log
        # Its summary says how to train it on, as a job of any launcher's does: its own overrides.
        more = shlex.split(log.split("train on to 4 epochs: ")[1].splitlines()[0])
        assert [o for o in overrides if o.startswith(("seed=", "optim.lr="))] == [
            o for o in more if o.startswith(("seed=", "optim.lr="))
        ]
        assert more[-3:] == ["trainer.epochs=4", "resume=last", f"hydra.run.dir={folder.path.resolve()}"]
        (run,) = folder.tensorboard.iterdir()  # one TensorBoard run per job, named by its overrides
        assert "seed=" in run.name and "optim.lr=" in run.name
        events = EventAccumulator(str(run)).Reload()
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        assert folder.epoch_picture("prior", 2).is_file() and folder.epoch_picture("code_usage", 2).is_file()
        # The checkpoints are today's: sample and evaluate read them unchanged.
        picture, _ = sample(compose_config("sample", [f"checkpoint={folder.path}", "mode=reconstruction"]))
        assert picture.is_file()
        _, report = run_evaluation(
            compose_config("evaluate", [f"checkpoint={folder.path}", "iwae_samples=[1,4]"])
        )
        assert math.isfinite(report["iwae_nll"]["4"])
    assert len(losses) == 4


def test_the_best_bound_search_selects_each_job_by_its_validation_bound(
    tmp_path: Path, mnist_root: Path
) -> None:
    # The search's own grid, narrowed on the command line to two learning rates of the tiny model.
    narrowed = [
        "model.latent_dim=4",
        "estimator=gumbel_softmax",
        "optim.lr=1e-3,2e-3",
        "temperature.rate=1e-4",
    ]
    sweep_dir, result = stacked_sweep(
        tmp_path,
        mnist_root,
        "hparams_search=best_bound",
        *narrowed,
        "data.validation=40",
        "eval.final_iwae_samples=[10]",
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"stack of 2 \(jobs \d+ \d+\), epoch 1/1", result.stdout + result.stderr)
    # The search selects by the bound, and the end of the sweep says how to rank by it.
    assert f"compare its runs: python -m vae_gumbel.report {sweep_dir} [--sort bound]\n" in result.stdout
    for job in range(2):
        folder = RunFolder(sweep_dir / str(job))
        last = read_metrics(folder.metrics)[-1]
        assert json.loads(folder.eval_json_of("val").read_text())["iwae_nll"]["10"] == last["val/iwae_nll_10"]
        assert not folder.eval_json.exists()
        assert "80 train / 40 validation / 60 test images" in folder.log.read_text()


class CountingLoader:
    """A config loader that records what it composes."""

    def __init__(self) -> None:
        self.composed: list[tuple[str, ...]] = []

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        self.composed.append(tuple(sweep_overrides))
        return OmegaConf.create({"overrides": list(sweep_overrides)})


def test_the_launcher_takes_the_configs_the_sweeper_composed_to_check_its_batch() -> None:
    loader, master, composed = CountingLoader(), OmegaConf.create({"master": 1}), ComposedJobs()
    composed.watch(loader)
    batch = [["seed=0"], ["seed=1"]]
    Sweeper.validate_batch_is_legal(
        SimpleNamespace(hydra_context=SimpleNamespace(config_loader=loader), config=master), batch
    )
    configs = [composed.take(master, job) for job in batch]
    assert [config.overrides for config in configs] == batch
    assert loader.composed == [("seed=0",), ("seed=1",)]  # once each, by the sweeper's check
    # A config is handed out once: asked for again, or for another master config, it is composed afresh.
    assert composed.take(master, ["seed=0"]) is not configs[0]
    composed.take(OmegaConf.create({"master": 2}), ["seed=1"])
    assert loader.composed[2:] == [("seed=0",), ("seed=1",)] and not composed.kept
    assert composed.seconds > 0  # the sweeper's check, which the sweep's timeline reports
    composed.forget()
    assert composed.seconds == 0


def test_configs_no_job_took_are_forgotten_and_a_second_watcher_keeps_its_own() -> None:
    loader, master, first, second = CountingLoader(), OmegaConf.create({}), ComposedJobs(), ComposedJobs()
    first.watch(loader)
    second.watch(loader)
    loader.load_sweep_config(master_config=master, sweep_overrides=["seed=0"])
    assert not first.kept and len(second.kept) == 1
    second.forget()
    assert not second.kept


def test_a_bad_value_fails_its_job_alone_before_any_training(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = stacked_sweep(tmp_path, mnist_root, "seed=0,1", "temperature.initial=-1,1.0")
    assert result.returncode != 0  # the sweep reports its failed jobs at the end
    assert "temperature.initial must be > 0, got -1.0" in result.stderr
    statuses = [json.loads(RunFolder(sweep_dir / str(job)).status.read_text()) for job in range(4)]
    assert [s["status"] for s in statuses] == ["failed", "completed", "failed", "completed"]
    assert not RunFolder(sweep_dir / "0").metrics.exists()
    assert "stack of 2 (jobs 1 3), epoch 1/1" in result.stdout + result.stderr


def test_a_job_that_trains_alone_shows_its_epochs_on_the_console(tmp_path: Path, mnist_root: Path) -> None:
    # Two estimators cannot share a stack: each job trains alone, its epoch lines go to its log file.
    sweep_dir, result = stacked_sweep(tmp_path, mnist_root, "estimator=gumbel_softmax,straight_through")
    assert result.returncode == 0, result.stderr
    for job in range(2):  # after one epoch on tiny data its code may tell nothing yet
        line = rf"job {job}, epoch 1/1: test loss \d+\.\d\d(; no active variable)?\n"
        assert re.search(line, result.stdout + result.stderr)


def test_optuna_hands_the_stacked_launcher_batches_of_trials(tmp_path: Path, mnist_root: Path) -> None:
    sweep_dir, result = stacked_sweep(
        tmp_path,
        mnist_root,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "trainer.timeline=true",
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("Launching 2 jobs as stacks") == 2
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    finals = [read_metrics(RunFolder(sweep_dir / str(job)).metrics)[-1]["test/loss"] for job in range(4)]
    assert results["best_value"] == pytest.approx(min(finals))
    # Each batch's timeline, in the sweep folder: its own phases, the process's start-up in the first.
    first, second = (json.loads(sweep_timeline(sweep_dir, *jobs).read_text()) for jobs in ((0, 1), (2, 3)))
    assert first["jobs"] == second["jobs"] == 2
    assert "start: interpreter and imports" in first["phases"]
    assert "start: interpreter and imports" not in second["phases"]
    for timeline in (first, second):
        assert 0 < timeline["phases"]["train: steps"] < timeline["total_seconds"]
        assert timeline["phases"][PREPARE_JOBS] > 0


def test_tensorboard_hparams_mark_exactly_the_swept_keys_and_show_the_chosen_metrics(
    tmp_path: Path, mnist_root: Path
) -> None:
    from tests.test_tracking import TensorBoardServer

    sweep_dir, result = stacked_sweep(
        tmp_path, mnist_root, "seed=0,1", "temperature.initial=0.5,1.0", "data.validation=40"
    )
    assert result.returncode == 0, result.stderr
    runs = sorted(path.name for path in sweep_dir.glob("*/tensorboard/*"))
    assert runs == sorted(
        f"seed={s},temperature.initial={t}" for s in (0, 1) for t in (0.5, 1.0)
    )  # what differs, only
    server = TensorBoardServer(sweep_dir)
    try:
        experiment = server.post(
            "/data/plugin/hparams/experiment", {"experimentName": ""}, ready=lambda e: e.get("hparamInfos")
        )
        differs = {info["name"] for info in experiment["hparamInfos"] if info.get("differs")}
        assert differs == {"seed", "temperature.initial"}
        assert {"optim.lr", "data.batch_size", "trainer.epochs", "estimator.name"} <= {
            i["name"] for i in experiment["hparamInfos"]
        }
        metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
        # The metrics every run logs, then those only some do: here the validation losses.
        assert metrics == ["test/loss", "test/best_loss", "train/loss_unrelaxed", "val/loss", "val/best_loss"]
    finally:
        server.close()


def test_an_interrupted_stacked_sweep_prints_the_command_that_continues_it(
    tmp_path: Path, mnist_root: Path
) -> None:
    from tests.test_interrupts import start, wait_for

    sweep_dir = tmp_path / "sweep"
    arguments = ["hydra/launcher=stacked", *tiny_run(mnist_root), "seed=0,1", "trainer.epochs=3"]
    command = ["-m", "vae_gumbel.train", "-m", *arguments, f"hydra.sweep.dir={sweep_dir}"]
    process = start(command, tmp_path, pause="step=0.05")
    wait_for(lambda: len(read_metrics(RunFolder(sweep_dir / "1").metrics)) >= 1, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    printed = shlex.split(line.split("continue the sweep with: ", 1)[1])
    assert printed[:4] == ["python", "-m", "vae_gumbel.train", "-m"]
    assert printed[-2:] == ["resume=last", f"hydra.sweep.dir={sweep_dir}"]
    for job in ("0", "1"):  # each job's status says how to continue it alone
        alone = shlex.split(json.loads(RunFolder(sweep_dir / job).status.read_text())["resume"])
        assert f"seed={job}" in alone and alone[-2:] == ["resume=last", f"hydra.run.dir={sweep_dir / job}"]
    result = run_module(*printed[2:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for job in ("0", "1"):
        assert json.loads(RunFolder(sweep_dir / job).status.read_text())["status"] == "completed"
        assert [r["epoch"] for r in read_metrics(RunFolder(sweep_dir / job).metrics)] == [1, 2, 3]


def test_jobs_waiting_for_their_stack_are_recorded_and_listed_at_once(
    tmp_path: Path, mnist_root: Path
) -> None:
    from tests.test_interrupts import start, wait_for
    from vae_gumbel.jobs import read_job

    sweep_dir = tmp_path / "sweep"
    arguments = ["hydra/launcher=stacked", "hydra.launcher.max_members=1", *tiny_run(mnist_root), "seed=0,1"]
    command = ["-m", "vae_gumbel.train", "-m", *arguments, "trainer.epochs=3", f"hydra.sweep.dir={sweep_dir}"]
    process = start(command, tmp_path, pause="step=0.05")
    wait_for(lambda: len(read_metrics(RunFolder(sweep_dir / "0").metrics)) >= 1, process)
    waiting = read_job(sweep_dir / "1", sweep_dir)
    assert (waiting.overrides["seed"], waiting.status) == ("1", "incomplete")
    assert read_job(sweep_dir / "0", sweep_dir).status == "training"
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
