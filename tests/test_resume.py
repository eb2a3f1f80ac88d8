"""Where a job starts: fresh, from its own folder's run, or from another run's checkpoint, and never
over a run that its folder already holds."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_module
from vae_gumbel.errors import CheckpointError, ConfigError
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train


def test_resume_last_without_a_checkpoint_starts_fresh(compose_train, tmp_path: Path) -> None:
    metrics = train(compose_train("resume=last"), tmp_path)
    assert metrics["epoch"] == 1 and metrics["step"] == 6


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
    assert [r["epoch"] for r in read_metrics(RunFolder(unfinished).metrics)] == [1, 2]


def test_a_finished_run_continued_with_resume_last_says_there_is_nothing_to_do(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(compose_train("trainer.epochs=1"), tmp_path)
    caplog.set_level(logging.INFO)
    assert train(compose_train("trainer.epochs=1", "resume=last"), tmp_path)["epoch"] == 1
    assert f"{tmp_path} already finished its 1 epoch; nothing to do" in caplog.messages
    # Asked again with another learning rate, meant for a new run: nothing applies it, and it says so.
    caplog.clear()
    train(
        compose_train("trainer.epochs=1", "optim.lr=0.01", "trainer.num_threads=1", "resume=last"), tmp_path
    )
    assert caplog.messages[-1] == (
        f"{tmp_path} already finished its 1 epoch; nothing to do; it keeps its own settings, not this "
        "command's optim.lr (checkpoint 0.001, now 0.01): train those in another folder (hydra.run.dir=...)"
    )


def test_a_missing_resume_path_is_a_clear_error(compose_train, tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError,
        match=r"nowhere.pt does not exist; give a .pt file or a run folder \(resume=last continues",
    ):
        train(compose_train(f"resume={tmp_path / 'nowhere.pt'}"), tmp_path / "run")
    train(compose_train("trainer.epochs=0"), tmp_path / "scored")
    with pytest.raises(CheckpointError, match="no checkpoint at .*last.pt: the run in .* saved none"):
        train(compose_train(f"resume={tmp_path / 'scored'}"), tmp_path / "run")


def test_another_runs_checkpoint_with_no_epochs_left_to_train_is_refused(
    compose_train, tmp_path: Path
) -> None:
    """resume=RUN without a higher trainer.epochs (the README's example gives one) would train
    nothing: a folder with the old run's scores and no checkpoint of its own."""
    train(compose_train("trainer.epochs=2"), tmp_path / "a")
    for epochs in (1, 2):
        with pytest.raises(
            ConfigError,
            match=rf"^resume={tmp_path / 'a'}: its checkpoint \(last.pt\) stands at epoch 2, and "
            rf"trainer.epochs={epochs} leaves nothing to train from it; give trainer.epochs above 2",
        ):
            train(compose_train(f"trainer.epochs={epochs}", f"resume={tmp_path / 'a'}"), tmp_path / "b")
    assert not RunFolder(tmp_path / "b").checkpoint("last").exists()
    assert train(compose_train("trainer.epochs=3", f"resume={tmp_path / 'a'}"), tmp_path / "b")["epoch"] == 3


def test_a_folder_that_holds_a_run_is_never_trained_over(compose_train, tmp_path: Path, monkeypatch) -> None:
    train(compose_train(), tmp_path)
    before = RunFolder(tmp_path).checkpoint("last").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run .*resume=last"):
        train(compose_train(), tmp_path)
    assert RunFolder(tmp_path).checkpoint("last").read_bytes() == before
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued SLURM job continues where it stood
    assert train(compose_train("trainer.epochs=2"), tmp_path)["epoch"] == 2


def test_a_run_started_from_another_checkpoint_never_replaces_the_run_in_its_folder(
    compose_train, tmp_path: Path, monkeypatch
) -> None:
    other, here = tmp_path / "other", tmp_path / "here"
    train(compose_train(), other)
    train(compose_train("seed=5"), here)
    before = RunFolder(here).checkpoint("last").read_bytes()
    for start in ([f"resume={other}"], [f"resume={other}", "resume_weights_only=true"]):
        with pytest.raises(ConfigError, match=f"already holds a run .*resume={other} .*would"):
            train(compose_train("trainer.epochs=2", *start), here)
    assert RunFolder(here).checkpoint("last").read_bytes() == before
    # Naming the folder's own run continues it, as resume=last does, but starts no new run over it.
    with pytest.raises(ConfigError, match=f"resume={here} resume_weights_only=true would start a new run"):
        train(compose_train(f"resume={here}", "resume_weights_only=true"), here)
    assert RunFolder(here).checkpoint("last").read_bytes() == before
    assert train(compose_train("trainer.epochs=2", f"resume={here}"), here)["epoch"] == 2
    # A requeued SLURM job that started from another run's weights continues its own run.
    records = read_metrics(RunFolder(here).metrics)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    start = [f"resume={other}", "resume_weights_only=true"]
    assert train(compose_train("seed=5", "trainer.epochs=3", *start), here)["step"] == 18
    assert read_metrics(RunFolder(here).metrics)[:2] == records


def test_a_run_whose_last_checkpoint_is_broken_is_told_how_to_train_on_from_its_best(
    compose_train, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(compose_train("trainer.epochs=2"), run)
    last, best = RunFolder(run).checkpoint("last"), RunFolder(run).checkpoint("best")
    cut_short = last.read_bytes()[:5000]
    last.unlink()  # best.pt may be the same file: damage a copy of last.pt alone
    last.write_bytes(cut_short)
    with pytest.raises(CheckpointError, match=r"cut short\).*: its best.pt \(epoch \d\) is whole") as refused:
        train(compose_train("trainer.epochs=3", "resume=last"), run)
    resume, folder = str(refused.value).split("into another folder with ")[1].split()
    assert (resume, folder) == (f"resume={best.resolve()}", f"hydra.run.dir={run}-from-best")
    assert last.read_bytes() == cut_short  # the run's folder is as it was
    assert train(compose_train("trainer.epochs=3", resume), Path(f"{run}-from-best"))["epoch"] == 3
    best.unlink()
    best.write_bytes(b"")
    with pytest.raises(CheckpointError, match="nor can its best.pt be read; put back a copy of last.pt"):
        train(compose_train("trainer.epochs=3", "resume=last"), run)


def test_a_run_continued_from_another_directory_reads_the_data_it_was_launched_with(
    tmp_path: Path, mnist_root: Path
) -> None:
    """Not a second copy fetched into the other directory (a cluster's node may have no internet)."""
    project, elsewhere, run = tmp_path / "project", tmp_path / "elsewhere", tmp_path / "run"
    shutil.copytree(mnist_root / "MNIST", project / "data" / "MNIST")  # data.root=data, the default
    elsewhere.mkdir()
    overrides = ["debug=tiny", "data.download=false", "data.verify_checksums=false", f"hydra.run.dir={run}"]
    assert run_module("vae_gumbel.train", *overrides, cwd=project).returncode == 0
    for epochs in (2, 3):  # the second time, from the data root the first one recorded
        result = run_module(
            "vae_gumbel.train", *overrides, f"trainer.epochs={epochs}", "resume=last", cwd=elsewhere
        )
        assert result.returncode == 0, result.stderr
    assert [record["epoch"] for record in read_metrics(RunFolder(run).metrics)] == [1, 2, 3]
    assert not (elsewhere / "data").exists()
