"""The device a run trains on."""

from __future__ import annotations

import pytest
import torch

from vae_gumbel.device import allow_tf32, resolve_device
from vae_gumbel.errors import ConfigError


def test_tf32_is_a_cuda_setting_that_leaves_the_cpu_alone() -> None:
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        allow_tf32(torch.device("cpu"), True)
        assert torch.backends.cuda.matmul.allow_tf32 == before
        allow_tf32(torch.device("cuda"), True)
        assert torch.backends.cuda.matmul.allow_tf32
        allow_tf32(torch.device("cuda"), False)
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_auto_is_the_cpu_without_cuda_and_a_missing_gpu_names_the_setting_it_came_from() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="^device=cuda but no CUDA device is available"):
        resolve_device("cuda", key="device")
