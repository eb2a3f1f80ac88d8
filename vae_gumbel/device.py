"""The device a run trains on, and the process-wide settings that go with it."""

from __future__ import annotations

import functools
import logging
import platform
import re
from pathlib import Path

import torch

from vae_gumbel.errors import ConfigError

log = logging.getLogger(__name__)

# The device settings every command takes.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

# The elements a parallel loop of torch gives each thread at least (ATen's GRAIN_SIZE).
PARALLEL_GRAIN = 32768

# The bits of a denormal float32 (about 1.5e-39): exponent zero, mantissa not.
DENORMAL_BITS = 1 << 20


def device_setting(key: str, name: str) -> None:
    """Refuses a device setting that no command takes, naming its ``key``."""
    if DEVICE_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"{key} must be one of 'auto', 'cpu', 'cuda', 'cuda:N', got {name!r}")


def resolve_device(name: str, key: str = "trainer.device") -> torch.device:
    """Gives the device for a device setting (``key`` names it in errors): auto picks CUDA when
    there is one."""
    device_setting(key, name)
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


def flush_denormals(device: torch.device) -> None:
    """On a CPU run, makes float arithmetic flush denormal numbers (below 1.2e-38 in magnitude) to zero.

    Training makes them: Adam's first moment of a weight whose gradient stays zero for a while (an
    input pixel that is nearly always black, a hidden unit that rarely fires) shrinks by 0.9 a step
    through the denormal range. After three epochs of the tutorial set-up a third of the moments were
    denormal, and every operation on one takes the CPU's slow path: from the second epoch on, an
    epoch took 1.6-1.7x as long. Zero instead of a number that small changes no loss beyond its last
    bits. Each thread has its own setting, which the threads it starts inherit, so this must come
    before torch's first parallel operation starts its thread pool (reading a checkpoint does):
    first thing in a run. Where it came too late, it says so.
    """
    if device.type != "cpu":
        return
    torch.set_flush_denormal(True)
    if threads_keep_denormals():
        log.warning(
            "denormal numbers are flushed to zero on this thread but not on all of torch's CPU threads, "
            "whose pool started before the run set it: a long run can take 1.5x as long. Call "
            "torch.set_flush_denormal(True) before the first computation with torch"
        )


def threads_keep_denormals() -> bool:
    """Says whether one of torch's CPU threads keeps denormal numbers: multiplies one by one on
    every thread of the pool (one grain of a parallel loop each) and looks for what is left. The
    numbers are made from their bits: a float written on a flushing thread would be zero already."""
    bits = torch.full((PARALLEL_GRAIN * torch.get_num_threads(),), DENORMAL_BITS, dtype=torch.int32)
    return bool((bits.view(torch.float32) * 1.0).count_nonzero())


def quiet_cuda_warnings(device: torch.device) -> None:
    """On a CPU run, silences torch's warning that it finds no CUDA runtime (logged when inductor
    first compiles, by a CUDA build of torch on a machine without a GPU): true, and not a problem."""
    if device.type == "cpu":
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work, so that a wall-clock time covers it (no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The CPU flags of native bf16 arithmetic: AVX-512 BF16 and AMX on x86, the BF16 extension on Arm.
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_info(*fields: str) -> list[str]:
    """Gives the values of the given fields of /proc/cpuinfo, one per line that has one (none
    where there is no such file)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    pairs = [line.split(":", 1) for line in lines if ":" in line]
    return [value.strip() for name, value in pairs if name.strip() in fields]


def cpu_has_native_bf16() -> bool:
    """Says whether this CPU computes in bf16 natively (read from /proc/cpuinfo; False elsewhere)."""
    flags = {flag for value in cpu_info("flags", "Features") for flag in value.split()}
    return bool(flags & NATIVE_BF16_FLAGS)


@functools.cache  # asked at every checkpoint of every member; /proc/cpuinfo is long on a large machine
def hardware_name(device: torch.device) -> str:
    """Names the hardware of ``device``: the GPU's name, or ``CPU: `` and the CPU's model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU: " + (next(iter(cpu_info("model name")), None) or platform.processor() or platform.machine())


def device_description(device: torch.device) -> str:
    """Names the hardware a timing came from: the GPU's name, or the CPU's model and the threads
    torch uses on it."""
    if device.type == "cuda":
        return hardware_name(device)
    return f"{hardware_name(device)}, {torch.get_num_threads()} threads"


def resolve_precision(setting: str, device: torch.device) -> str:
    """Gives the precision ``trainer.precision`` means on ``device``: ``auto`` (the default) is bf16
    autocast on a CPU with native bf16 instructions (elsewhere bf16 is emulated, 5.4x slower than
    float32 on an AVX2 CPU) and float32 everywhere else (on CUDA a graphed step gains little from
    it). Over four seeds of ``experiment=seed_notebook``, bf16's 10-epoch test loss was no worse
    than float32's (docs/performance.md)."""
    if setting != "auto":
        return setting
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "32"


def slow_precision(precision: str, device: torch.device) -> str | None:
    """Says why ``precision`` is slow on ``device`` where it is: bf16 on a CPU without native bf16
    instructions, which torch emulates; None elsewhere."""
    if precision != "bf16" or device.type != "cpu" or cpu_has_native_bf16():
        return None
    return (
        "trainer.precision=bf16 on a CPU without native bf16 instructions (AVX512-BF16, AMX): torch "
        "emulates them, several times slower than float32 (5.4x on a 2-core AVX2 EPYC); "
        "trainer.precision=auto trains in float32 here"
    )
