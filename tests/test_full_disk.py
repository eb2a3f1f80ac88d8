"""A disk that fills up under a run, for real: a small tmpfs, so root only (skipped elsewhere). The run
stops with one line that says the disk is full, keeps the checkpoint written before, and, once there
is room again, resumes to the numbers of a run that never stopped."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config, fixture_data
from tests.test_train import without_timing
from vae_gumbel.errors import WriteError
from vae_gumbel.files import partial_files
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train

# The default model's checkpoint takes 14.7 MB: the first fits on the disk, a second beside it does not.
DISK = "22m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 22 MB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small disk needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(disk)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_run_on_a_disk_that_fills_up_keeps_its_checkpoint_and_resumes_exactly(
    mnist_root: Path, small_disk: Path, tmp_path: Path
) -> None:
    # One thread: a rerun is bit-identical only with a fixed thread count (auto follows the load).
    overrides = [*fixture_data(mnist_root), "data.batch_size=20", "trainer.num_threads=1"]
    train(compose_config("train", [*overrides, "trainer.epochs=3"]), tmp_path / "uninterrupted")
    folder = RunFolder(small_disk / "run")

    with pytest.raises(WriteError) as caught:
        train(compose_config("train", [*overrides, "trainer.epochs=3"]), folder.path)
    assert str(caught.value) == (
        f"could not write checkpoint {folder.checkpoint('last')}: no space left on device; the checkpoint "
        "written before it is kept. Free some space, then continue with resume=last"
    )
    assert torch.load(folder.checkpoint("last"), weights_only=True)["epoch"] == 1
    assert partial_files(folder.checkpoint("last").parent) == []
    status = json.loads(folder.status.read_text())
    assert status["status"] == "failed" and "no space left on device" in status["error"]

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # room again
    train(compose_config("train", [*overrides, "trainer.epochs=3", "resume=last"]), folder.path)
    expected = without_timing(read_metrics(RunFolder(tmp_path / "uninterrupted").metrics))
    assert without_timing(read_metrics(folder.metrics)) == expected
    assert json.loads(folder.status.read_text())["status"] == "completed"
