"""Profile the trainer's step with torch.profiler: where a step's time goes, and how many
operators (and, on CUDA, kernels) it launches.

    python scripts/profile_step.py [--device auto] [--batch-size 100] [--steps 50] [--compile [MODE]] [--bf16]
                                   [--latent-dim 30] [--categorical-dim 10] [--hidden 512 256] [--members 1]

Uses random binary images, so it needs no data set. Prints the wall time of a step timed
without the profiler (with a tiny model, that is the host's cost of a step), then the top
operators by self time and the operator count per step; on CUDA also the kernels run, the
launches the host makes (a replayed CUDA graph is one launch however many kernels it holds)
and the host-device synchronisations per step. With --members M it profiles the step of a stack
of M models (seeds 0 to M-1, as a stacked sweep trains them), each on the same batch. With
--trace DIR it also writes a Chrome trace.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vae_gumbel import commands
from vae_gumbel.commands import at_least
from vae_gumbel.data import Data, ImageSet
from vae_gumbel.device import synchronize
from vae_gumbel.tools.benchmark import trainer_run, trainer_settings

# CUDA runtime and driver calls, as the profiler records them on the host.
LAUNCH_CALLS = frozenset(
    {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch"}
)
SYNC_CALLS = frozenset({"cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize"})


def count_calls(events: list, names: frozenset[str]) -> dict[str, int]:
    """Gives how often each of ``names`` occurs among the profiler's ``events``."""
    counts: dict[str, int] = {}
    for event in events:
        if event.name in names:
            counts[event.name] = counts.get(event.name, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per step")
    parser.add_argument("--steps", type=int, default=50, help="steps profiled (after warm-up)")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="true",
        default="false",
        help="as trainer.compile: true (on CUDA, one CUDA graph per step), reduce-overhead, ...",
    )
    parser.add_argument("--no-tf32", action="store_true", help="full float32 matmuls on CUDA")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the losses stay float32)")
    parser.add_argument("--latent-dim", type=int, default=30, help="N, the latent variables")
    parser.add_argument("--categorical-dim", type=int, default=10, help="K, the categories per variable")
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256], help="the MLP's hidden widths")
    parser.add_argument("--num-threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--members", type=at_least(1), default=1, help="models in the stack")
    parser.add_argument("--rows", type=int, default=15, help="operators listed")
    parser.add_argument("--trace", type=Path, default=None, help="folder for a Chrome trace")
    args = parser.parse_args(argv)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    settings = [
        trainer_settings(
            args.device,
            args.batch_size,
            compile=args.compile,
            precision="bf16" if args.bf16 else "32",
            model=(args.latent_dim, args.categorical_dim, tuple(args.hidden)),
            tf32=not args.no_tf32,  # as trainer.tf32 does by default
            seed=seed,
        )
        for seed in range(args.members)
    ]
    images = ImageSet(torch.randint(0, 2, (args.batch_size, 784), dtype=torch.uint8), 1.0, resample=False)
    run = trainer_run(
        settings, Data(train=images, test=images)
    )  # the trainer's own step, as the benchmark times it
    step, device = run.step_fn, run.device
    print(
        f"step: {type(step).__name__} of {args.members} member(s), trainer.compile={args.compile} on {device}"
    )
    x = images.targets(slice(None)).to(device).expand(args.members, -1, -1)
    tau = torch.ones(args.members, device=device)
    for _ in range(10):  # warm-up (and compilation)
        step(x, tau)

    def sync() -> None:
        synchronize(device)

    sync()
    started = time.perf_counter()
    for _ in range(args.steps):
        step(x, tau)
    sync()
    per_step_ms = (time.perf_counter() - started) / args.steps * 1e3
    print(f"wall time per step, without the profiler: {per_step_ms:.3f} ms")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step(x, tau)
        sync()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    calls = sum(e.count for e in prof.key_averages() if not e.key.startswith("ProfilerStep"))
    print(f"operator calls per step: {calls / args.steps:.0f}")
    if device.type == "cuda":
        events = prof.events()
        kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        print(f"CUDA kernels per step: {kernels / args.steps:.1f}")
        launches = count_calls(events, LAUNCH_CALLS)
        print(f"launches per step: {sum(launches.values()) / args.steps:.1f} {launches}")
        syncs = count_calls(events, SYNC_CALLS)
        syncs["cudaDeviceSynchronize"] = syncs.get("cudaDeviceSynchronize", 0) - 1  # the one after the loop
        print(f"host-device synchronisations per step: {sum(syncs.values()) / args.steps:.2f} {syncs}")
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(args.trace / "trace.json"))


if __name__ == "__main__":
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
