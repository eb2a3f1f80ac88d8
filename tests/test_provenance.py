"""What a number was computed with: the versions of the code and libraries, and the hardware."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import vae_gumbel
from vae_gumbel.provenance import environment, source_revision

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(folder: Path, *arguments: str) -> str:
    command = ["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    return subprocess.run([*command, *arguments], capture_output=True, text=True, check=True).stdout.strip()


def package_at(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Makes the package seem to run from ``folder``/vae_gumbel (source_revision reads the place
    it was imported from)."""
    package = folder / "vae_gumbel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""the package"""\n')
    monkeypatch.setattr(vae_gumbel, "__file__", str(package / "__init__.py"))
    return package


@pytest.fixture(autouse=True)
def fresh_revision() -> Iterator[None]:
    """source_revision asks git once per process; each test asks afresh, and leaves no answer behind."""
    source_revision.cache_clear()
    yield
    source_revision.cache_clear()


def test_the_environment_names_the_versions_and_the_hardware() -> None:
    found = environment(torch.device("cpu"))
    assert found["vae_gumbel"] == vae_gumbel.__version__
    assert (found["python"], found["torch"]) == (platform.python_version(), torch.__version__)
    assert found["cuda"] is None  # on a CPU, whatever torch was built for
    assert found["device"].startswith("CPU: ") and len(found["device"]) > len("CPU: ")
    assert set(found) == {"vae_gumbel", "source", "python", "torch", "cuda", "device"}  # no host name


@needs_git
def test_a_checkout_gives_its_commit_and_says_when_tracked_files_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = package_at(tmp_path / "checkout", monkeypatch)
    git(tmp_path / "checkout", "init", "-q")
    git(tmp_path / "checkout", "add", ".")
    git(tmp_path / "checkout", "commit", "-q", "-m", "first")
    commit = git(tmp_path / "checkout", "rev-parse", "--short=12", "HEAD")
    assert source_revision() == commit
    (tmp_path / "checkout" / "notes.txt").write_text("untracked files do not count\n")
    source_revision.cache_clear()
    assert source_revision() == commit
    (package / "__init__.py").write_text('"""the package, edited"""\n')
    source_revision.cache_clear()
    assert source_revision() == f"{commit}+changes"


@needs_git
def test_an_installed_copy_inside_another_repository_gives_no_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"  # a user's repository that holds a virtual environment
    package_at(project / ".venv" / "lib" / "site-packages", monkeypatch)
    git(project, "init", "-q")
    git(project, "commit", "-q", "--allow-empty", "-m", "the user's own")
    assert source_revision() is None


def test_without_git_there_is_no_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package_at(tmp_path / "anywhere", monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    assert source_revision() is None
