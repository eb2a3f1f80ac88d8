"""What a number was computed with: the code, the libraries and the hardware.

Each checkpoint and each eval.json records the environment of the process that wrote it, so that a
table built from them can say where its numbers came from (and a reader can tell a change of torch
or of GPU from a change of method).
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import vae_gumbel

if TYPE_CHECKING:
    import torch

GIT_SECONDS = 10  # a git that answers slower than this (a hung network file system) is not waited for
# The libraries a command's --version names, beside the package and Python.
LIBRARIES = ("torch", "torchvision", "hydra-core", "omegaconf")


def environment(device: torch.device) -> dict[str, str | None]:
    """Gives the versions of this process's code and libraries and the hardware of ``device`` (not
    the host's name: checkpoints and eval.json get published; status.json names the host)."""
    import torch

    from vae_gumbel.device import hardware_name

    return {
        "vae_gumbel": vae_gumbel.__version__,
        "source": source_revision(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a TorchVersion, which a weights-only load refuses
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": hardware_name(device),
    }


@functools.cache
def source_revision() -> str | None:
    """Gives the git commit the package runs from, with ``+changes`` when its tracked files differ
    from it; None for an installed copy (or without git). A checkout counts only if it is the
    package's own, not a repository that merely holds a virtual environment with the package."""
    package = Path(vae_gumbel.__file__).resolve().parent
    try:
        top = _git(package, "rev-parse", "--show-toplevel")
        if (Path(top).resolve() / package.name) != package:
            return None
        commit = _git(package, "rev-parse", "--short=12", "HEAD")
        changed = _git(package, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changed else "")


def _git(folder: Path, *arguments: str) -> str:
    """Gives the output of a git command run in ``folder``, or raises."""
    done = subprocess.run(
        ["git", "-C", str(folder), *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=GIT_SECONDS,
    )
    return done.stdout.strip()


def version_line() -> str:
    """Gives what every command's ``--version`` prints: the package's version and commit, Python's and
    the main libraries' (read from their metadata: nothing heavy is imported)."""
    source = source_revision()
    versions = [f"vae-gumbel {vae_gumbel.__version__}" + (f" (git {source})" if source else "")]
    versions.append(f"Python {platform.python_version()}")
    for library in LIBRARIES:
        try:
            versions.append(f"{library} {importlib.metadata.version(library)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{library} not installed")
    return ", ".join(versions)
