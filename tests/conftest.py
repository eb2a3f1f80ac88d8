"""Shared fixtures: tiny MNIST-format files and the real Hydra config, shrunk for speed."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vae_gumbel.config  # noqa: F401  (registers the schema)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TRAIN_IMAGES, TEST_IMAGES = 120, 60


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


def write_fake_mnist(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
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


def small_overrides(mnist_root: Path) -> list[str]:
    """Overrides that keep a training run to a second: tiny data, model and batches."""
    return [
        f"data.root={mnist_root}",
        "data.download=false",
        "data.verify_checksums=false",  # the fixture files are not the real MNIST
        "data.batch_size=20",
        "model.latent_dim=4",
        "model.categorical_dim=5",
        "model.hidden=[32]",
        "trainer.epochs=1",
        "trainer.progress=false",
        "trainer.log_every_n_steps=2",
        "trainer.device=cpu",
    ]


@pytest.fixture
def compose_train(mnist_root: Path) -> Callable[..., DictConfig]:
    """Composes conf/train.yaml with the small overrides plus the given ones."""

    def _compose(*overrides: str, small: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            base = small_overrides(mnist_root) if small else []
            return compose("train", overrides=[*base, *overrides])

    return _compose


def run_python(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python args`` as a user would on a server (no display), capturing its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "DISPLAY", "MPLBACKEND")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_module(module: str, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``python -m module args``."""
    return run_python("-m", module, *args, cwd=cwd, timeout=timeout)
