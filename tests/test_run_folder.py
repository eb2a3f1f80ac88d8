"""The run folder's layout, owned by one module, and finding the checkpoint in it."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import vae_gumbel.run_folder as run_folder_module
from vae_gumbel.errors import CheckpointError, FolderBusy
from vae_gumbel.run_folder import (
    LOCK_PATIENCE_S,
    RunFolder,
    find_runs,
    lock_state,
    resolve_checkpoint,
    trained_by_another,
    training_into,
)


def test_a_checkpoint_and_its_run_folder_find_each_other(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.checkpoint("best") == tmp_path / "run" / "checkpoints" / "best.pt"
    assert RunFolder.of_checkpoint(folder.checkpoint("last")) == folder
    assert RunFolder.of_checkpoint(tmp_path / "elsewhere" / "model.pt") == RunFolder(tmp_path / "elsewhere")


def test_a_run_folder_or_a_file_resolves_to_a_checkpoint(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.checkpoint("last").parent.mkdir()
    folder.checkpoint("last").write_bytes(b"x")
    assert resolve_checkpoint(tmp_path, "last") == folder.checkpoint("last")
    assert resolve_checkpoint(folder.checkpoint("last")) == folder.checkpoint("last")
    assert resolve_checkpoint(tmp_path / "checkpoints", "last") == folder.checkpoint("last")  # its folder
    with pytest.raises(CheckpointError, match="holds only last.pt; give its path, .*last.pt, or which=last"):
        resolve_checkpoint(tmp_path, "best")
    with pytest.raises(CheckpointError, match="holds only last.pt"):
        resolve_checkpoint(tmp_path / "checkpoints", "best")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nope.pt")


def test_the_pictures_of_an_epoch_keep_their_documented_names(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert folder.epoch_picture("prior", 3).name == "epoch_003.png"
    assert folder.epoch_picture("reconstruction", 3).name == "reconstruction_epoch_003.png"
    assert folder.epoch_picture("code_usage", 12).name == "code_usage_epoch_012.png"


def test_a_folder_without_the_checkpoint_says_why_and_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"{tmp_path} is not a run folder"):
        resolve_checkpoint(tmp_path, "last")
    for job in ("0", "1"):
        RunFolder(tmp_path / job).path.mkdir()
        RunFolder(tmp_path / job).status.write_text('{"status": "completed", "epoch": 0}')
    with pytest.raises(
        CheckpointError, match=f"a folder of runs; give one of them, such as {tmp_path / '0'}$"
    ):
        resolve_checkpoint(tmp_path, "last")
    with pytest.raises(CheckpointError, match=r"\(completed at epoch 0\) saved none: .*trainer.epochs=0"):
        resolve_checkpoint(tmp_path / "1", "best")
    refused = RunFolder(tmp_path / "3")  # a job of a sweep whose value failed its checks
    refused.path.mkdir()
    refused.status.write_text('{"status": "failed", "error": "ConfigError: optim.lr must be > 0, got -1.0"}')
    with pytest.raises(
        CheckpointError, match=f"the run in {refused.path} failed before it saved any: ConfigError: optim.lr"
    ):
        resolve_checkpoint(refused.path, "last")
    queued = RunFolder(tmp_path / "2")  # a job of a sweep on a cluster, recorded and waiting
    queued.hydra_file("overrides.yaml").parent.mkdir(parents=True)
    queued.hydra_file("overrides.yaml").write_text("[]\n")
    with pytest.raises(
        CheckpointError, match=f"the run in {queued.path} has not started: its job is recorded"
    ):
        resolve_checkpoint(queued.path, "best")


def test_runs_are_found_below_a_folder_in_natural_order(tmp_path: Path) -> None:
    for job in ("10", "2", "1", "b", "a"):
        RunFolder(tmp_path / job).path.mkdir()
        RunFolder(tmp_path / job).metrics.write_text("")
    (tmp_path / "3" / ".hydra").mkdir(parents=True)
    RunFolder(tmp_path / "3").overrides.write_text("[]")
    assert [p.name for p in find_runs(tmp_path)] == ["1", "2", "3", "10", "a", "b"]


def test_one_process_at_a_time_trains_into_a_folder(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    with training_into(folder):
        holder = f"pid {os.getpid()} on {socket.gethostname()}"
        with pytest.raises(FolderBusy, match=f"run is being trained by another process \\({holder}\\)"):
            with training_into(folder):
                pass
    with training_into(folder):  # released when the first ends
        pass


def test_the_lock_says_who_trains_into_a_folder(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert lock_state(folder) == "unknown"  # no process ever trained into it
    with training_into(folder):
        assert lock_state(folder) == "here" and not trained_by_another(folder)
    assert lock_state(folder) == "free"
    holder = subprocess.Popen(  # another process that holds it
        [sys.executable, "-c", HOLD_LOCK, str(folder.lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"held\n"
        assert lock_state(folder) == "another" and trained_by_another(folder)
    finally:
        holder.communicate(b"")
    assert lock_state(folder) == "free"


# Holds the lock file argv[1] until its stdin closes.
HOLD_LOCK = """
import fcntl, sys
with open(sys.argv[1]) as file:
    fcntl.flock(file, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_start_waits_out_a_process_that_only_looks_at_the_lock(tmp_path: Path, monkeypatch) -> None:
    assert LOCK_PATIENCE_S <= 0.1  # a sweep launched again waits this long for each busy folder
    monkeypatch.setattr(run_folder_module, "LOCK_PATIENCE_S", 10.0)  # a look that a loaded machine drags out
    folder = RunFolder(tmp_path / "run")
    with training_into(folder):
        pass
    with open(folder.lock) as looker:
        fcntl.flock(looker, fcntl.LOCK_SH)  # as lock_state and a report look, for a moment
        release = threading.Timer(0.05, fcntl.flock, (looker, fcntl.LOCK_UN))
        release.start()
        with training_into(folder):
            assert lock_state(folder) == "here"
        release.join()


def test_a_process_that_takes_a_folder_removes_the_temporary_files_of_killed_writes(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.checkpoint("last").parent.mkdir(parents=True)
    leftovers = [
        folder.checkpoint("last").with_name(".last.4242.partial.pt"),
        folder.path / ".metrics.4242.partial.jsonl",
    ]
    for file in [*leftovers, folder.checkpoint("last")]:
        file.write_bytes(b"written")
    assert folder.leftovers() == sorted(leftovers)
    with training_into(folder):
        assert folder.leftovers() == [] and folder.checkpoint("last").read_bytes() == b"written"
