"""The device a run trains on, and the process-wide settings that go with it."""

from __future__ import annotations

import torch

from vae_gumbel.errors import ConfigError


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """Gives the device for a device setting (``key`` names it in errors): auto picks CUDA when
    there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} but no CUDA device is available; use auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def allow_tf32(device: torch.device, enabled: bool) -> None:
    """Lets float32 matmuls on CUDA use TF32 tensor cores (float32 accumulation, 10-bit
    mantissa inputs): several times the throughput, well within the noise of a stochastic loss."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work, so that a wall-clock time covers it (no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
