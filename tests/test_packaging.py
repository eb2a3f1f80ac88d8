"""The installed package: a wheel holds its configs and console commands and works from any directory."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_run
from vae_gumbel.commands import COMMANDS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel built from this checkout installed in it; its
    dependencies (torch, hydra, ...) are borrowed from the test's own environment, read-only."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(REPO)],
        check=True,
        capture_output=True,
    )
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    (wheel,) = (root / "dist").glob("vae_gumbel-*.whl")
    packages = next(env.glob("lib/python*/site-packages"))
    (packages / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = ["install", "-q", "--no-deps", "--no-index", str(wheel)]  # this pip, into that environment
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), *install], check=True
    )
    return env


def run_command(wheel_env: Path, command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [wheel_env / "bin" / command, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_the_wheel_holds_the_configs_and_composes_them_from_any_directory(
    wheel_env: Path, tmp_path: Path
) -> None:
    result = run_command(
        wheel_env, "vae-gumbel-train", "--cfg", "job", "optim=radam", "data=fashion_mnist", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "name: radam" in result.stdout and "name: fashion_mnist" in result.stdout
    shown = ["--cfg", "hydra", "-p", "hydra.launcher", "hydra/launcher=stacked_slurm"]
    launcher = run_command(wheel_env, "vae-gumbel-train", *shown, cwd=tmp_path)
    assert launcher.returncode == 0, launcher.stderr
    assert "StackedSlurmLauncher" in launcher.stdout and "partition: gpu" in launcher.stdout
    for command in ("vae-gumbel-sample", "vae-gumbel-evaluate"):  # their configs live apart from train's
        shown = run_command(wheel_env, command, "--cfg", "job", "checkpoint=RUN", cwd=tmp_path)
        assert shown.returncode == 0 and "checkpoint: RUN" in shown.stdout, shown.stderr
    where = subprocess.run(
        [wheel_env / "bin" / "python", "-c", "import vae_gumbel; print(vae_gumbel.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert str(wheel_env) in where.stdout  # the installed copy, not this checkout


def test_the_installed_command_trains_from_another_directory(
    wheel_env: Path, mnist_root: Path, tmp_path: Path
) -> None:
    result = run_command(
        wheel_env, "vae-gumbel-train", *tiny_run(mnist_root), "hydra.run.dir=run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "completed" and (tmp_path / "run" / "train.log").is_file()
    for command in (f"vae-gumbel-{name}" for name in COMMANDS):
        assert (wheel_env / "bin" / command).is_file(), command
