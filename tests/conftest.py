"""Shared fixtures: tiny MNIST-format files and the real Hydra config, shrunk by its own debug group."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from vae_gumbel.config import CONFIG_MODULES  # (importing it registers the schema)

REPO = Path(__file__).resolve().parents[1]
CONFIG_MODULE = CONFIG_MODULES["train"]
TRAIN_IMAGES, TEST_IMAGES = 120, 60


# The marks of a test (or of one of its parameters) that needs a CUDA device: skipped without one,
# selected with `pytest -m cuda`.
CUDA_MARKS = (
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
)


def requires_cuda(test: Callable) -> Callable:
    """Marks a test that needs a CUDA device (``CUDA_MARKS``)."""
    for mark in reversed(CUDA_MARKS):
        test = mark(test)
    return test


def write_idx(path: Path, array: np.ndarray) -> None:
    """Writes a uint8 array in the IDX format MNIST uses."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gives (count, 28, 28) images of blurry strokes and their labels: MNIST-like enough to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=count)
    yy, xx = np.mgrid[0:28, 0:28]
    images = np.zeros((count, 28, 28))
    for i, label in enumerate(labels):
        angle = label * np.pi / 10
        cx, cy = 14 + rng.normal(0, 1.5, size=2)
        distance = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
        radius = np.hypot(xx - cx, yy - cy)
        images[i] = np.clip(1.5 - distance, 0, 1) * (radius < 10)
    return (images * 255).astype(np.uint8), labels.astype(np.uint8)


def write_fake_mnist(root: Path, folder: str = "MNIST") -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", TRAIN_IMAGES, 0), ("t10k", TEST_IMAGES, 1)):
        images, labels = fake_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding tiny MNIST-format files (not the real data set)."""
    return write_fake_mnist(tmp_path_factory.mktemp("mnist"))


def fixture_data(mnist_root: Path) -> list[str]:
    """Overrides that point a run at the fixture files, on the CPU (they are not the real MNIST)."""
    return [
        f"data.root={mnist_root}",
        "data.download=false",
        "data.verify_checksums=false",
        "trainer.device=cpu",
    ]


def tiny_run(mnist_root: Path) -> list[str]:
    """Overrides for a training run of about a second: the debug group's tiny set-up on the fixture data."""
    return ["debug=tiny", *fixture_data(mnist_root)]


def sweep_of(run_dir: Path, sweep: Path, jobs: int, waiting: bool = False) -> Path:
    """Gives a folder of ``jobs`` copies of a trained run, as a sweep's jobs, none evaluated yet, and
    with ``waiting`` one more job that has not started (recorded, no checkpoint yet)."""
    for job in range(jobs):
        shutil.copytree(run_dir, sweep / str(job))
        for old in (sweep / str(job)).glob("eval*.json"):
            old.unlink()
    if waiting:
        (sweep / str(jobs) / ".hydra").mkdir(parents=True)
        (sweep / str(jobs) / ".hydra" / "overrides.yaml").write_text("[]\n")
    return sweep


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Composes one of the packaged primary configs, as its entry point would."""
    with initialize_config_module(config_module=CONFIG_MODULES[name], version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.fixture
def compose_train(mnist_root: Path) -> Callable[..., DictConfig]:
    """Composes the training config with the tiny run's overrides plus the given ones."""

    def _compose(*overrides: str, small: bool = True) -> DictConfig:
        base = tiny_run(mnist_root) if small else []
        return compose_config("train", [*base, *overrides])

    return _compose


def seeded_models(count: int, **sizes: object) -> list:
    """Gives ``count`` small models, model i initialised from seed i."""
    from vae_gumbel.model import CategoricalVAE

    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(CategoricalVAE(**{"latent_dim": 3, "categorical_dim": 4, "hidden": (16,), **sizes}))
    return models


def poison_training_loss(
    monkeypatch: pytest.MonkeyPatch, at_call: int, factor: object = float("nan")
) -> None:
    """Makes the ``at_call``-th training step's reconstruction loss (counting calls with gradients)
    be multiplied by ``factor``: NaN for every member, or a tensor that picks members."""
    from vae_gumbel import objectives

    real, calls = objectives.negative_elbo, []

    def poisoned(decoder_logits, target, posterior_logits):
        elbo = real(decoder_logits, target, posterior_logits)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) == at_call:
                return elbo._replace(recon=elbo.recon * factor)
        return elbo

    monkeypatch.setattr(objectives, "negative_elbo", poisoned)


def run_python(
    *args: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python args`` as a user would on a server (no display), capturing its output."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DISPLAY", "MPLBACKEND")
    }
    environment["PYTHONPATH"] = str(REPO)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def load_script(name: str) -> object:
    """Imports ``scripts/NAME.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str) -> object:
    """Runs ``scripts/NAME``'s ``main(args)`` in this process: its command line without the cost of
    a new interpreter (for scripts that start their own training processes, or only read files)."""
    return load_script(Path(name).stem).main(list(args))


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python -m module args``."""
    return run_python("-m", module, *args, cwd=cwd, timeout=timeout, env=env)


# Imports that a command spares itself where it can: about 1 s each on a 2-core CPU.
HEAVY_IMPORTS = ("torchvision", "torch._dynamo")


def run_module_then(module: str, *args: str, cwd: Path, at_exit: str) -> subprocess.CompletedProcess:
    """Runs ``python -m module args``, then the Python code ``at_exit`` in the same process as it
    ends (what it imported, what state it left)."""
    code = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: exec({at_exit!r}))\n"
        f"sys.argv = [{module!r}, *sys.argv[1:]]\n"
        f"runpy.run_module({module!r}, run_name='__main__')\n"
    )
    return run_python("-c", code, *args, cwd=cwd)


def run_module_noting_imports(
    module: str, *args: str, cwd: Path, watched: tuple[str, ...] = HEAVY_IMPORTS
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs ``python -m module args``; gives its result and which of the ``watched`` modules it
    imported."""
    note = f"import sys; print('imported:', [n for n in {watched!r} if n in sys.modules])"
    result = run_module_then(module, *args, cwd=cwd, at_exit=note)
    imported = result.stdout.rpartition("imported: ")[2].strip()
    return result, [name.strip("' ") for name in imported.strip("[]").split(",") if name.strip()]


def documented_command_lines() -> list[str]:
    """Gives every line of the code blocks of the README and docs/ that starts with ``python``
    (a line continued with a backslash joined to the next), without those that use shell variables."""
    lines = []
    for document in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        in_block, parts = False, []
        for line in document.read_text().splitlines():
            if line.startswith("```"):
                in_block = not in_block
            elif in_block:
                parts.append(line)
                if line.endswith("\\"):
                    continue
                command = " ".join(part.rstrip("\\") for part in parts)
                parts = []
                if command.startswith("python ") and "$" not in command:
                    lines.append(command)
    return lines


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, text: str) -> None:
    """Checks an entry point's failure as a user sees it: its exit code, and one line on stderr that
    starts with 'error:' and says ``text``, with no traceback and no Hydra boilerplate."""
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr
    for noise in ("Traceback", "HYDRA_FULL_ERROR", "Error executing job"):
        assert noise not in result.stderr, result.stderr
