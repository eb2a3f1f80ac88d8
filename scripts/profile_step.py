"""Profile the trainer's step with torch.profiler: where a step's time goes, and how many
operators (and, on CUDA, kernels) it launches.

    python scripts/profile_step.py [--device auto] [--batch-size 100] [--steps 50] [--compile] [--bf16]

Uses random binary images, so it needs no data set. Prints the top operators by self time
and the operator count per step; with --trace DIR it also writes a Chrome trace.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vae_gumbel.estimators import get_estimator
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.training import FUSED_ADAM_DEVICES, TrainStep, compile_mode, resolve_device


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--trace", type=Path, default=None, help="folder for a Chrome trace")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = CategoricalVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type in FUSED_ADAM_DEVICES)
    step = TrainStep(
        model,
        optimizer,
        get_estimator("gumbel_softmax"),
        compile=compile_mode("true", device) if args.compile else None,
        precision="bf16" if args.bf16 else "32",
    )
    x = torch.rand(args.batch_size, 784, device=device).bernoulli()
    tau = torch.tensor(1.0, device=device)
    for _ in range(10):  # warm-up (and compilation)
        step(x, tau)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step(x, tau)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    calls = sum(e.count for e in prof.key_averages() if not e.key.startswith("ProfilerStep"))
    print(f"operator calls per step: {calls / args.steps:.0f}")
    if device.type == "cuda":
        kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
        print(f"CUDA kernels per step: {kernels / args.steps:.0f}")
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.trace / "trace.json"))


if __name__ == "__main__":
    main()
