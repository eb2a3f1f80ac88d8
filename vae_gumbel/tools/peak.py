"""The device's dense matmul throughput, per precision: the ceiling a configuration's model TFLOP/s
is held against."""

from __future__ import annotations

import math
import time

import torch

from vae_gumbel.device import allow_tf32, synchronize

# The matmul precision of each kind of row, and the dtype its peak is measured in.
MATMUL_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16}
PEAK_CALLS = 3  # matmuls per timed repetition of the peak measurement


def matmul_peak_tflops(device: torch.device, precision: str, size: int, repeats: int = 5) -> float:
    """Measures the device's dense matmul throughput in ``precision`` (square ``size`` matrices,
    the best of ``repeats``): the ceiling that a configuration's model TFLOP/s is held against."""
    generator = torch.Generator(device=device).manual_seed(0)
    dtype = MATMUL_DTYPES[precision]
    a, b = (torch.randn(size, size, device=device, dtype=dtype, generator=generator) for _ in range(2))
    allow_tf32(device, precision == "tf32")
    try:
        torch.mm(a, b)  # warm-up: library handles, kernel selection
        synchronize(device)
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(PEAK_CALLS):
                torch.mm(a, b)
            synchronize(device)
            best = min(best, (time.perf_counter() - started) / PEAK_CALLS)
    finally:
        allow_tf32(device, False)
    return 2 * size**3 / best / 1e12
