"""Interrupts and faults: SIGINT and SIGTERM keep the last epoch and say how to go on; SIGKILL at any
moment leaves loadable checkpoints and untorn metrics, and every run resumes exactly."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import REPO, compose_config, tiny_run
from tests.test_train import without_timing
from vae_gumbel.errors import Interrupted
from vae_gumbel.interrupts import StoppedBySignal, override, resume_command, shell_command, stop_on_signals
from vae_gumbel.jobs import read_job
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train

EPOCHS = 4


def test_a_signal_asks_for_a_stop_and_a_second_one_stops_at_once() -> None:
    with stop_on_signals() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_where_no_step_boundary_comes_a_signal_stops_at_once() -> None:
    with stop_on_signals() as stop:
        with stop.at_once(), pytest.raises(StoppedBySignal) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
        assert stopped.value.signum == signal.SIGTERM
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)  # asked for before: the stop comes on entry
        with pytest.raises(StoppedBySignal), stop.at_once():
            pass


def test_an_interrupt_in_the_final_iwae_stops_it_and_resume_computes_the_bounds(
    mnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.train as trainer

    overrides = [*tiny_run(mnist_root), "trainer.epochs=1", "eval.final_iwae_samples=[1,10]"]
    evaluate = trainer.final_iwae

    def interrupted_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the evaluation starts
        evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "final_iwae", interrupted_evaluation)
    with pytest.raises(
        Interrupted, match=r"epoch 1 \(its last: the training is done, its final IWAE bounds are not\)"
    ):
        train(compose_config("train", overrides), tmp_path)
    folder = RunFolder(tmp_path)
    assert json.loads(folder.status.read_text())["status"] == "interrupted"
    assert "test/iwae_nll_10" not in read_metrics(folder.metrics)[-1]
    monkeypatch.setattr(trainer, "final_iwae", evaluate)
    metrics = train(compose_config("train", [*overrides, "resume=last"]), tmp_path)
    assert "test/iwae_nll_10" in metrics and "test/iwae_nll_10" in read_metrics(folder.metrics)[-1]
    assert json.loads(folder.status.read_text())["status"] == "completed"


def test_the_command_that_continues_a_run_started_from_weights_continues_from_its_own_checkpoint(
    tmp_path: Path,
) -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    overrides = ["debug=tiny", "resume=outputs/a", "resume_weights_only=true", "seed=3", "trainer.epochs=2"]
    with initialize_config_module(config_module="vae_gumbel.conf", version_base="1.3"):
        HydraConfig.instance().set_config(compose("train", overrides=overrides, return_hydra_config=True))
    try:
        task = HydraConfig.get().overrides.task
    finally:
        HydraConfig.instance().cfg = None
    command = resume_command(tmp_path, task, {"trainer.epochs": "4"})
    branch = resume_command(tmp_path / "branch", task, start=tmp_path / "best.pt")
    # resume=last with resume_weights_only=true is refused: the weights now come from the run itself.
    assert shlex.split(command) == [
        *("python", "-m", "vae_gumbel.train", "debug=tiny", "seed=3", "trainer.epochs=4", "resume=last"),
        f"hydra.run.dir={tmp_path.resolve()}",
    ]
    # From a checkpoint file, into a folder of its own.
    assert shlex.split(branch) == [
        *("python", "-m", "vae_gumbel.train", "debug=tiny", "seed=3", "trainer.epochs=2"),
        f"resume={tmp_path / 'best.pt'}",
        f"hydra.run.dir={(tmp_path / 'branch').resolve()}",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "/runs/plain",
        "/runs/with space",
        "/runs/ü",
        "/runs/a,b",
        "/runs/a'b",
        '/runs/a"b',
        "/runs/[x]=y",
        " edge",
        "/runs/${x}",
        "/runs/a\\${x}\\",
        "/runs/$x",
    ],
)
def test_an_override_in_a_printed_command_reads_back_as_the_value_it_names(value: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (word,) = shlex.split(shell_command("python", override("hydra.run.dir", value)))[1:]
    parsed = OverridesParser.create().parse_override(word).value()
    assert OmegaConf.create({"value": parsed}).value == value  # as the composed config holds it


def test_the_lines_that_close_a_run_in_an_awkward_folder_are_commands_a_shell_and_hydra_read(
    mnist_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    folder = tmp_path / "runs, ü" / "a b"
    caplog.set_level(logging.INFO, logger="vae_gumbel.train")
    train(compose_config("train", tiny_run(mnist_root)), folder)
    summary = caplog.text.split("done: ", 1)[1]
    commands = {line.split(":", 1)[0].strip(): line.split(":", 1)[1] for line in summary.splitlines()[1:]}
    assert shlex.split(commands["TensorBoard"]) == ["tensorboard", "--logdir", str(folder / "tensorboard")]
    for name, module in (("samples", "vae_gumbel.sample"), ("likelihoods", "vae_gumbel.evaluate")):
        words = shlex.split(commands[name])
        assert words[:3] == ["python", "-m", module]
        assert OverridesParser.create().parse_override(words[3]).value() == str(folder)


@pytest.fixture(scope="module")
def uninterrupted(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    train(compose_config("train", [*tiny_run(mnist_root), f"trainer.epochs={EPOCHS}"]), folder)
    return without_timing(read_metrics(RunFolder(folder).metrics))


def start(args: list[str], cwd: Path, pause: str, new_session: bool = False) -> subprocess.Popen:
    """Starts ``python args``; in a session of its own with ``new_session``, so that a signal to its
    process group reaches it and its worker processes, as a terminal's Ctrl-C does."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "VAE_GUMBEL_PAUSE": pause}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def train_command(mnist_root: Path, folder: RunFolder) -> list[str]:
    """Gives the arguments of ``python`` that train the tiny run of EPOCHS epochs into ``folder``."""
    return [
        "-m",
        "vae_gumbel.train",
        *tiny_run(mnist_root),
        f"trainer.epochs={EPOCHS}",
        f"hydra.run.dir={folder.path}",
    ]


def finish(folder: RunFolder, overrides: list[str]) -> None:
    """Resumes the run in ``folder`` to its end in this process (as its command line would)."""
    train(compose_config("train", overrides), folder.path)


def epochs_logged(folder: RunFolder) -> int:
    return len(read_metrics(folder.metrics))


def assert_everything_left_behind_is_sound(folder: RunFolder) -> None:
    """Every checkpoint left in the folder loads weights-only, and every line of metrics.jsonl is whole
    (a write cut short leaves only its hidden temporary file)."""
    for which in ("last", "best"):
        if folder.checkpoint(which).exists():
            torch.load(folder.checkpoint(which), weights_only=True)
    if folder.metrics.exists():
        for line in folder.metrics.read_text().splitlines():
            json.loads(line)


@pytest.mark.slow
def test_sigterm_and_sigint_keep_the_last_epoch_and_the_printed_command_resumes_exactly(
    mnist_root: Path, tmp_path: Path, uninterrupted: list[dict]
) -> None:
    folder = RunFolder(tmp_path / "run")
    command = train_command(mnist_root, folder)
    # SIGTERM in the first epoch: nothing trained yet is kept, but the start is.
    process = start(command, tmp_path, pause="step=0.2")
    wait_for(lambda: folder.log.is_file() and "training" in folder.log.read_text(), process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    status = json.loads(folder.status.read_text())
    assert (status["status"], status["signal"], status["epoch"], status["step"]) == (
        "interrupted",
        "SIGTERM",
        0,
        0,
    )
    assert torch.load(folder.checkpoint("last"), weights_only=True)["epoch"] == 0
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "interrupted by SIGTERM" in line and "resume=last" in line
    resume = shlex.split(line.split("continue with: ", 1)[1])
    assert resume[:3] == ["python", "-m", "vae_gumbel.train"] and f"hydra.run.dir={folder.path}" in resume
    # The printed command resumes; SIGINT (Ctrl-C) in a later epoch keeps the epochs before it.
    process = start(resume[1:], tmp_path, pause="step=0.05")
    wait_for(lambda: epochs_logged(folder) >= 2, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    status = json.loads(folder.status.read_text())
    assert (
        status["status"] == "interrupted"
        and status["epoch"] >= 2
        and status["stopped_at_step"] > status["step"]
    )
    assert torch.load(folder.checkpoint("last"), weights_only=True)["epoch"] == status["epoch"]
    assert_everything_left_behind_is_sound(folder)
    # And once more to the end (in this process): the same numbers as a run never interrupted.
    finish(folder, [item for item in resume[3:] if not item.startswith("hydra.")])
    assert json.loads(folder.status.read_text())["status"] == "completed"
    assert without_timing(read_metrics(folder.metrics)) == uninterrupted


@pytest.mark.slow
def test_killed_anywhere_a_run_leaves_sound_files_and_resumes_exactly(
    mnist_root: Path, tmp_path: Path, uninterrupted: list[dict]
) -> None:
    folder = RunFolder(tmp_path / "run")
    command = train_command(mnist_root, folder)
    resume = [*command, "resume=last"]

    def kill(process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        assert_everything_left_behind_is_sound(folder)
        assert read_job(folder.path, folder.path).status == "killed"  # what a report says of it

    # In the middle of the second epoch.
    process = start(command, tmp_path, pause="step=0.05")
    wait_for(lambda: epochs_logged(folder) >= 1 and folder.checkpoint("last").is_file(), process)
    time.sleep(0.15)
    kill(process)
    # Inside a checkpoint write: the new file written, not yet moved into place.
    process = start(resume, tmp_path, pause="checkpoint=30")
    wait_for(lambda: any(folder.checkpoint("last").parent.glob(".*.partial.pt")), process)
    kill(process)
    assert folder.leftovers()  # its temporary file, which the next run into the folder removes
    # Between two epochs, once this process has finished one.
    finished_epochs = folder.log.read_text().count(f"/{EPOCHS} step")
    process = start(resume, tmp_path, pause="epoch=30")
    wait_for(lambda: folder.log.read_text().count(f"/{EPOCHS} step") > finished_epochs, process)
    time.sleep(0.5)
    kill(process)
    finish(folder, [*tiny_run(mnist_root), f"trainer.epochs={EPOCHS}", "resume=last"])
    assert without_timing(read_metrics(folder.metrics)) == uninterrupted
    assert folder.leftovers() == []


@pytest.mark.slow
def test_an_interrupted_sweep_prints_the_command_that_continues_all_its_jobs(
    mnist_root: Path, tmp_path: Path
) -> None:
    sweep_dir = tmp_path / "sweep"
    command = ["-m", "vae_gumbel.train", "-m", *tiny_run(mnist_root), "seed=0,1", f"trainer.epochs={EPOCHS}"]
    process = start([*command, f"hydra.sweep.dir={sweep_dir}"], tmp_path, pause="step=0.05")
    wait_for(lambda: epochs_logged(RunFolder(sweep_dir / "0")) >= 1, process)
    process.send_signal(signal.SIGINT)  # in job 0: job 1 has not started
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert f"resume=last hydra.run.dir={sweep_dir / '0'}; or the whole sweep with: " in line
    finish_the_sweep(line.split("or the whole sweep with: ", 1)[1], command, sweep_dir)


def finish_the_sweep(printed: str, command: list[str], sweep_dir: Path) -> None:
    """Checks that the printed command is the sweep's own with resume=last into its folder, runs it,
    and checks that both jobs then complete all their epochs."""
    words = shlex.split(printed)
    assert words == ["python", *command, "resume=last", f"hydra.sweep.dir={sweep_dir}"]
    finished = start(words[1:], sweep_dir.parent, pause="")
    _, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr
    for job in ("0", "1"):
        folder = RunFolder(sweep_dir / job)
        assert json.loads(folder.status.read_text())["status"] == "completed"
        assert [record["epoch"] for record in read_metrics(folder.metrics)] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_ctrl_c_to_a_joblib_sweep_says_how_to_continue_it(mnist_root: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.num_threads=1"]
    command = [
        "-m",
        "vae_gumbel.train",
        "-m",
        *launcher,
        *tiny_run(mnist_root),
        "seed=0,1",
        f"trainer.epochs={EPOCHS}",
    ]
    process = start([*command, f"hydra.sweep.dir={sweep_dir}"], tmp_path, pause="step=0.05", new_session=True)
    wait_for(lambda: all(epochs_logged(RunFolder(sweep_dir / job)) >= 1 for job in "01"), process)
    os.killpg(process.pid, signal.SIGINT)  # the launcher and both workers, each in a job
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT, stderr
    assert "no training was in progress" not in stderr
    said = "error: interrupted by SIGINT: the sweep stopped, and its runs keep their last checkpoints; "
    (line,) = [line for line in stderr.splitlines() if line.startswith(said)]
    finish_the_sweep(line.split("continue the sweep with: ", 1)[1], command, sweep_dir)


def test_a_stop_by_signal_comes_back_from_a_worker_process_with_its_signal() -> None:
    again = pickle.loads(pickle.dumps(StoppedBySignal(signal.SIGINT)))
    assert isinstance(again, StoppedBySignal) and again.signum == signal.SIGINT and str(again) == "SIGINT"
