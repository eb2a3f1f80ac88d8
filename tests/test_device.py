"""The device a run trains on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vae_gumbel.device as device_module
from tests.conftest import REPO, run_python
from vae_gumbel.device import (
    NATIVE_BF16_FLAGS,
    allow_tf32,
    cpu_has_native_bf16,
    device_description,
    hardware_name,
    resolve_device,
    resolve_precision,
)
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


@pytest.mark.parametrize("name", ["gpu", "cuda0", "cpu:1", "CUDA", ""])
def test_a_device_name_no_command_takes_is_refused_naming_its_setting(name: str) -> None:
    with pytest.raises(
        ConfigError, match=f"^--device must be one of 'auto', 'cpu', 'cuda', 'cuda:N', got '{name}'$"
    ):
        resolve_device(name, key="--device")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_bf16_natively(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "32")
    assert resolve_precision("auto", torch.device("cuda")) == "32"
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"
    assert resolve_precision("32", torch.device("cpu")) == "32"


def test_native_bf16_is_read_from_the_cpus_flags() -> None:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    flags = " ".join(line for line in lines if line.startswith(("flags", "Features"))).split()
    assert cpu_has_native_bf16() == bool(set(flags) & NATIVE_BF16_FLAGS)


def test_the_hardware_is_named_by_the_cpus_model_and_a_timing_also_by_its_threads(monkeypatch) -> None:
    monkeypatch.setattr(device_module, "cpu_info", lambda *fields: ["Example CPU 9000"])
    hardware_name.cache_clear()  # asked once per process
    try:
        assert hardware_name(torch.device("cpu")) == "CPU: Example CPU 9000"
        threads = torch.get_num_threads()
        assert device_description(torch.device("cpu")) == f"CPU: Example CPU 9000, {threads} threads"
    finally:
        hardware_name.cache_clear()


@pytest.mark.parametrize("pool_first", [False, True])
def test_flushing_denormals_reaches_every_thread_or_says_which_do_not(pool_first: bool) -> None:
    # Each thread has its own setting, which the threads it starts inherit: a pool of torch's that
    # started before keeps its own, and one thread of two keeps denormals.
    script = (
        "import torch; torch.set_num_threads(2); "
        + ("torch.ones(1 << 20).sum(); " if pool_first else "")
        + "from vae_gumbel.device import flush_denormals, threads_keep_denormals; "
        "flush_denormals(torch.device('cpu')); print('kept:', threads_keep_denormals())"
    )
    result = run_python("-c", script, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"kept: {pool_first}" in result.stdout
    warned = "not on all of torch's CPU threads" in result.stderr
    assert warned == pool_first
    if warned:
        assert "torch.set_flush_denormal(True) before the first computation" in result.stderr


def test_torch_keeps_denormals_unless_told() -> None:
    result = run_python(
        "-c", "from vae_gumbel.device import threads_keep_denormals as k; print('kept:', k())", cwd=REPO
    )
    assert "kept: True" in result.stdout, result.stderr
