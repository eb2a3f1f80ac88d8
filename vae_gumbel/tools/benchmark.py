"""Time the tutorial loop against the trainer's own path, side by side in one run.

    python -m vae_gumbel.benchmark [--device auto] [--batch-sizes 100 1000 10000] [--images 30000]

On the same device and data it first checks that both loops give the same losses from the
same seed, then times, per batch size, the baseline (``vae_gumbel.tools.baseline``) and the
trainer's step eager, compiled and in bf16 (on CUDA), alternating them so machine noise
hits every configuration alike. Every trainer configuration is a real run's step, built by
``build_run`` from the packaged config with a few overrides. It also measures the device's dense
matmul throughput in each precision it times, so each configuration's model TFLOP/s reads as a
fraction of what the hardware does. Writes ``bench.json`` and ``bench.md`` into ``--out``.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: this module's command runs it (see commands.py)
    from vae_gumbel import commands

    commands.benchmark()

import argparse
import functools
import itertools
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch._dynamo

from vae_gumbel.commands import argument_parser, at_least
from vae_gumbel.config import TrainConfig, compose_settings
from vae_gumbel.data import Data, ImageSet
from vae_gumbel.datasets import ensure, load_images
from vae_gumbel.device import (
    allow_tf32,
    device_description,
    resolve_device,
    resolve_precision,
    synchronize,
)
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import check_writable, write_new
from vae_gumbel.likelihood import score_test_set
from vae_gumbel.loop import Temperatures, train_epoch
from vae_gumbel.model import CategoricalVAE, unstack
from vae_gumbel.optim import OPTIMIZERS
from vae_gumbel.run import Member, Run, build_run
from vae_gumbel.step import GRAPH_WARMUP_STEPS, plan_step
from vae_gumbel.tools.baseline import tutorial_loader, tutorial_run
from vae_gumbel.tools.peak import matmul_peak_tflops

EPOCH_IMAGES = 60_000
CHECK_TAU = 0.5  # a power of two: the same division whether tau is a float or a tensor


def model_flops_per_image(model: CategoricalVAE, unrelaxed_decode: bool = True) -> int:
    """Gives the matmul FLOPs of one training image: forward, backward (twice the forward),
    and the no-grad decoder pass of the unrelaxed loss."""

    def macs(module: torch.nn.Module) -> int:
        return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear))

    forward = 2 * (macs(model.encoder) + macs(model.decoder))
    return 3 * forward + (2 * macs(model.decoder) if unrelaxed_decode else 0)


def trainer_settings(
    device: torch.device,
    batch_size: int,
    compile: str = "false",
    precision: str = "32",
    model: tuple = (30, 10, (512, 256)),
    tau: float = 1.0,
    tf32: bool = True,
    seed: int = 0,
) -> TrainConfig:
    """Gives the settings of the trainer's path the benchmark times: the tutorial's set-up
    (grey levels, constant tau, Adam 1e-3, seed 0) with the given step options."""
    latent_dim, categorical_dim, hidden = model
    return compose_settings(
        [
            "data.binarize=none",
            f"data.batch_size={batch_size}",
            f"model.latent_dim={latent_dim}",
            f"model.categorical_dim={categorical_dim}",
            f"model.hidden=[{','.join(str(h) for h in hidden)}]",
            "temperature=constant",
            f"temperature.initial={tau}",
            f"trainer.device={device}",
            f"trainer.compile={compile}",
            f"trainer.precision={precision}",
            f"trainer.tf32={tf32}",
            f"seed={seed}",
        ]
    )


@functools.cache
def default_epochs() -> int:
    """Gives the packaged config's ``trainer.epochs``: composed once, not once per batch size."""
    return compose_settings([]).trainer.epochs


def default_options(
    device: torch.device, batch_size: int, train_images: int = EPOCH_IMAGES
) -> tuple[str, str]:
    """Gives the ``trainer.compile`` and ``trainer.precision`` that the defaults (``auto`` and
    ``auto``) resolve to on ``device`` for a default-length run at ``batch_size``: the path a user
    who sets nothing trains on."""
    plan = plan_step("auto", device, steps=default_epochs() * math.ceil(train_images / batch_size))
    if plan.compile is None:
        compile = "graph" if plan.cuda_graph else "false"
    else:
        compile = "true" if plan.compile == "default" else plan.compile
    return compile, resolve_precision("auto", device)


def trainer_run(settings: TrainConfig | list[TrainConfig], data: Data) -> Run:
    """Gives the run these settings build on ``data`` (a stack, for a list of them): its step is the
    one the trainer takes."""
    members = settings if isinstance(settings, list) else [settings]
    return build_run([Member(member, {}, folder=None) for member in members], data=data)


def check_same_losses(root: str, data: Data, settings: TrainConfig, steps: int = 20) -> float:
    """Gives the largest per-step loss difference between the two loops from the same seed,
    weights, batches and noise; raises if they disagree beyond float tolerance."""
    run = trainer_run(settings, data)
    device, batch_size = run.device, settings.data.batch_size
    baseline_model = unstack(run.model, 0)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[: steps * batch_size]
    torch.manual_seed(1)
    # The same optimizer as the trainer's, so that the numbers can agree exactly.
    fused = device.type in OPTIMIZERS["adam"].fused_devices
    baseline_optimizer = torch.optim.Adam(baseline_model.parameters(), lr=1e-3, fused=fused)
    loader = tutorial_loader(root, batch_size, order=order.tolist(), device=device)
    baseline, _, _ = tutorial_run(
        baseline_model, baseline_optimizer, loader, CHECK_TAU, steps, device, replay_noise=True
    )
    torch.manual_seed(1)
    tau = torch.full((1,), CHECK_TAU, device=device)
    trainer = []
    for i in range(steps):
        index = order[i * batch_size : (i + 1) * batch_size].to(device)
        trainer.append(run.step_fn(data.train.targets(index)[None], tau)[0].tolist())
    worst = max(
        max(abs(a.loss_relaxed - b[0]), abs(a.loss_unrelaxed - b[1]))
        for a, b in zip(baseline, trainer, strict=True)
    )
    if not worst <= 1e-3 * max(1.0, abs(trainer[0][0])):
        raise RuntimeError(f"the baseline and the trainer disagree by {worst:.3g} nats on the same steps")
    return worst


def time_trainer(run: Run, steps: int) -> tuple[float, int, float]:
    """Runs the trainer's epoch loop for ``steps`` batches; gives seconds, images and the mean loss."""
    batch_size, members = run.settings.data.batch_size, len(run.members)
    batches = itertools.islice(
        itertools.chain.from_iterable(run.data.train.batches(batch_size, members) for _ in itertools.count()),
        steps,
    )
    synchronize(run.device)
    started = time.perf_counter()
    result = train_epoch(
        run.step_fn,
        batches,
        Temperatures(run.schedule, 0, steps, run.device),
        num_batches=steps,
        log_every=10**9,
        progress="false",
    )
    synchronize(run.device)
    return time.perf_counter() - started, result.images, float(result.means[0, 0])


def time_stacks(
    data: Data, settings: Any, sizes: list[int], steps: int, repeats: int, device: torch.device
) -> list[dict[str, Any]]:
    """Times the step of stacks of ``sizes`` members (seeds 0, 1, ...), the median of ``repeats`` runs
    of ``steps`` steps after a warm-up; gives each size's seconds per member-step."""
    rows = []
    for size in sizes:
        torch._dynamo.reset()
        run = trainer_run([settings(seed=seed) for seed in range(size)], data)
        time_trainer(run, max(GRAPH_WARMUP_STEPS + 2, 5))  # compilation, graph capture
        seconds = statistics.median(time_trainer(run, steps)[0] for _ in range(repeats))
        rows.append({"members": size, "seconds_per_member_step": seconds / (steps * size)})
        print(
            f"stack of {size:>4}: {rows[-1]['seconds_per_member_step'] * 1e3:.3f} ms per member-step",
            flush=True,
        )
        del run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for row in rows:
        row["speedup_vs_one"] = rows[0]["seconds_per_member_step"] / row["seconds_per_member_step"]
    return rows


def compare_epochs(root: str, data: Data, settings: TrainConfig, epochs: int) -> dict[str, float]:
    """Trains both loops for ``epochs`` epochs from the same weights (grey-level targets, batch 100,
    tau = 1) and gives each one's test loss, scored by the same evaluation. The trainer runs with
    its settings' TF32 choice; the baseline keeps PyTorch's defaults."""
    results = {}
    steps = epochs * (len(data.train) // settings.data.batch_size)
    for name in ("baseline", "trainer"):
        run = trainer_run(settings, data)
        torch.manual_seed(2)
        started = time.perf_counter()
        if name == "baseline":
            allow_tf32(run.device, False)
            model = unstack(run.model, 0)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # as tutorials do
            loader = tutorial_loader(root, settings.data.batch_size, device=run.device)
            tutorial_run(model, optimizer, loader, 1.0, steps, run.device)
        else:
            time_trainer(run, steps)
            model = run.model
        results[f"{name}_seconds"] = time.perf_counter() - started
        allow_tf32(run.device, False)
        results[f"{name}_test_loss"] = score_test_set(model, data.test, batch_size=10_000, seed=0)[0].metrics[
            "test/loss"
        ]
    return results


def configurations(
    device: torch.device, batch_size: int, train_images: int, args: argparse.Namespace, tf32: bool
) -> dict[str, tuple[tuple[str, str] | None, str]]:
    """Gives the configurations timed at ``batch_size``, by name: each one's ``trainer.compile`` and
    ``trainer.precision`` (None: the tutorial loop) and its matmul precision. The compiled rows run as
    ``trainer.compile=true`` does (on CUDA, one CUDA graph per step). The row of the path the defaults
    pick here for a default run (``default_options``) says so; where none is that path, a row of its
    own is added (unless it compiles and ``--no-compile`` was given), so that the default is timed."""
    fp32 = "tf32" if tf32 else "float32"
    compiled = plan_step("true", device)
    graphed = " + CUDA graph" if compiled.cuda_graph else ""
    configs: dict[str, tuple[tuple[str, str] | None, str]] = {
        "baseline": (None, "float32"),
        "trainer eager": (("false", "32"), fp32),
    }
    if not args.no_compile:
        configs[f"trainer compiled{graphed}"] = (("true", "32"), fp32)
        if device.type == "cuda":  # inductor's own CUDA graphs, around forward and backward only
            configs["trainer compiled (reduce-overhead)"] = (("reduce-overhead", "32"), fp32)
    if device.type == "cuda" or args.bf16:
        configs["trainer bf16"] = (("false", "bf16"), "bfloat16")
        if not args.no_compile:
            configs[f"trainer compiled bf16{graphed}"] = (("true", "bf16"), "bfloat16")
    default = default_options(device, batch_size, train_images)
    for name, (options, _) in configs.items():
        if options == default:
            return {(f"{name} (the default here)" if n == name else n): c for n, c in configs.items()}
    compile, precision = default
    if args.no_compile and compile not in ("false", "graph"):
        return configs
    path = {"false": "eager", "graph": "eager + CUDA graph", "true": f"compiled{graphed}"}.get(
        compile, f"compile={compile}"
    )
    configs[f"trainer default ({path}, {'bf16' if precision == 'bf16' else 'fp32'})"] = (
        default,
        "bfloat16" if precision == "bf16" else fp32,
    )
    return configs


@dataclass
class Timing:
    config: str
    batch_size: int
    seconds: list[float]  # per repetition, for ``images`` images
    images: int
    peak_memory_mb: float | None
    loss: float  # the last measured loss, a sanity check that training ran


def middle_half(values: list[float]) -> list[float] | None:
    """Gives the first and third quartiles of ``values`` (None for fewer than two): where the middle
    half of a ratio measured round by round lies, the spread that noise on the machine gives it."""
    if len(values) < 2:
        return None
    first, _, third = statistics.quantiles(values, n=4, method="inclusive")
    return [first, third]


def _peak_memory(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device, key="--device")
    ensure(args.data_root, "mnist", download=True, verify_checksums=not args.no_verify)
    train = ImageSet(load_images(args.data_root, "mnist", train=True).to(device), 255.0, resample=False)
    test = ImageSet(load_images(args.data_root, "mnist", train=False).to(device), 255.0, resample=False)
    data = Data(train=train, test=test)
    model_shape = (args.latent_dim, args.categorical_dim, tuple(args.hidden))
    tf32 = device.type == "cuda" and not args.no_tf32

    def settings(
        batch_size: int,
        compile: str = "false",
        precision: str = "32",
        tau: float = 1.0,
        tf32: bool = tf32,
        seed: int = 0,
    ) -> TrainConfig:
        return trainer_settings(device, batch_size, compile, precision, model_shape, tau, tf32, seed)

    allow_tf32(device, False)  # the loss check compares full float32 arithmetic
    worst = check_same_losses(args.data_root, data, settings(100, tau=CHECK_TAU, tf32=False))
    print(
        f"same losses: the baseline and the trainer agree within {worst:.2g} nats over 20 steps", flush=True
    )
    epochs = None
    if args.epochs:
        epochs = {"epochs": args.epochs, **compare_epochs(args.data_root, data, settings(100), args.epochs)}
        print(f"after {args.epochs} epoch(s): {epochs}", flush=True)

    configs = {size: configurations(device, size, len(train), args, tf32) for size in args.batch_sizes}
    peak_size = args.peak_size or (8192 if device.type == "cuda" else 2048)
    precisions = sorted({precision for named in configs.values() for _, precision in named.values()})

    def measure_peaks() -> dict[str, float]:
        return {precision: matmul_peak_tflops(device, precision, peak_size) for precision in precisions}

    peaks_before = measure_peaks()
    print(f"matmul peak ({peak_size} x {peak_size} matrices), TFLOP/s: {peaks_before}", flush=True)

    timings: list[Timing] = []
    prepared: dict[str, Any] = {}
    for batch_size in args.batch_sizes:
        steps = max(2, args.images // batch_size)
        warmup = max(GRAPH_WARMUP_STEPS + 2, min(20, steps // 5))  # a CUDA graph is replayed by then
        # Every configuration compiles the same function anew: forget the last batch size's steps
        # and compiled code, so that Dynamo's recompile limit is never reached.
        prepared.clear()
        torch._dynamo.reset()
        for name, (options, _) in configs[batch_size].items():  # compile and warm up each one first
            if options is None:
                allow_tf32(device, False)
                model = unstack(trainer_run(settings(batch_size), data).model, 0)
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # as tutorials do
                loader = tutorial_loader(args.data_root, batch_size, device=device)
                tutorial_run(model, optimizer, loader, 1.0, warmup, device)
                prepared[name] = (model, optimizer, loader)
            else:
                trial = trainer_run(settings(batch_size, *options), data)
                time_trainer(trial, warmup)
                prepared[name] = trial
            timings.append(Timing(name, batch_size, [], 0, None, math.nan))
        for _ in range(args.repeats):  # alternate, so noise on the machine hits every configuration
            for name in configs[batch_size]:
                timing = next(t for t in timings if t.config == name and t.batch_size == batch_size)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                if name == "baseline":
                    allow_tf32(device, False)
                    model, optimizer, loader = prepared[name]
                    losses, seconds, count = tutorial_run(model, optimizer, loader, 1.0, steps, device)
                    loss = losses[-1].loss_relaxed
                else:
                    allow_tf32(device, tf32)
                    seconds, count, loss = time_trainer(prepared[name], steps)
                timing.seconds.append(seconds)
                timing.images, timing.loss = count, loss
                timing.peak_memory_mb = _peak_memory(device)
                print(f"batch {batch_size:>5} {name:<32} {count / seconds:>10.0f} img/s", flush=True)

    stacks = None
    if args.stack_sizes:

        def member_settings(seed: int) -> TrainConfig:
            return settings(args.stack_batch_size, "auto", "32", seed=seed)

        stacks = time_stacks(data, member_settings, args.stack_sizes, args.stack_steps, args.repeats, device)

    # The peak again, after the timings: a peak measured while the machine was busy would make the
    # configurations look faster than the hardware allows. The higher of the two is the ceiling.
    peaks_after = measure_peaks()
    peaks = {precision: max(peaks_before[precision], peaks_after[precision]) for precision in precisions}
    flops = model_flops_per_image(CategoricalVAE(args.latent_dim, args.categorical_dim, args.hidden))
    rows = []
    for timing in timings:
        seconds = statistics.median(timing.seconds)
        per_image = seconds / timing.images
        baseline = next(t for t in timings if t.config == "baseline" and t.batch_size == timing.batch_size)
        baseline_per_image = statistics.median(baseline.seconds) / baseline.images
        # Each round times every configuration in turn: its ratios share the machine's state.
        rounds = [
            (theirs / baseline.images) / (ours / timing.images)
            for theirs, ours in zip(baseline.seconds, timing.seconds, strict=True)
        ]
        options, precision = configs[timing.batch_size][timing.config]
        model_tflops = flops / per_image / 1e12
        rows.append(
            {
                **asdict(timing),
                "epoch_s": per_image * EPOCH_IMAGES,
                "images_per_s": 1 / per_image,
                "speedup_vs_baseline": baseline_per_image / per_image,
                "speedup_middle_half": middle_half(rounds),
                "model_tflops": model_tflops,
                "trainer_settings": options and {"compile": options[0], "precision": options[1]},
                "matmul_precision": precision,
                "fraction_of_matmul_peak": model_tflops / peaks[precision],
            }
        )
    return {
        "device": device_description(device),
        "torch": torch.__version__,
        "model": {
            "latent_dim": args.latent_dim,
            "categorical_dim": args.categorical_dim,
            "hidden": args.hidden,
        },
        "model_flops_per_image": flops,
        "trainer_tf32": tf32,
        "matmul_peak": {"size": peak_size, "tflops": peaks, "before": peaks_before, "after": peaks_after},
        "loss_check_max_difference": worst,
        "same_epochs": epochs,
        "repeats": args.repeats,
        "results": rows,
        "stacks": stacks and {"batch_size": args.stack_batch_size, "steps": args.stack_steps, "rows": stacks},
    }


def markdown(report: dict[str, Any]) -> str:
    notes = [  # paragraphs above the table
        f"Device: {report['device']}; torch {report['torch']}; model {report['model']}; "
        f"{report['model_flops_per_image'] / 1e6:.2f} MFLOP per training image;"
        f" median of {report['repeats']} runs (in brackets, the middle half of the rounds' ratios: each"
        " round times every configuration in turn)"
        + (
            "; the trainer's matmuls in TF32 (`trainer.tf32`), the baseline's in float32."
            if report.get("trainer_tf32")
            else "."
        )
    ]
    if report.get("matmul_peak"):
        size, peaks = report["matmul_peak"]["size"], report["matmul_peak"]["tflops"]
        measured = ", ".join(f"{name} {value:.3g}" for name, value in peaks.items())
        notes.append(
            f"Matmul peak measured in this run ({size} x {size} matrices, the higher of a measurement"
            f" before and one after the timings), TFLOP/s: {measured}."
        )
        over = [row["config"] for row in report["results"] if row["fraction_of_matmul_peak"] > 1.0]
        if over:
            notes.append(
                f"WARNING: {', '.join(sorted(set(over)))} exceeded the matmul peak: the machine was busy"
                " while the peak was measured (before and after); rerun on an idle machine."
            )
    if report.get("same_epochs"):
        same = report["same_epochs"]
        notes.append(
            f"After {same['epochs']} epoch(s) from the same weights: test loss baseline "
            f"{same['baseline_test_loss']:.2f} ({same['baseline_seconds']:.1f} s), trainer "
            f"{same['trainer_test_loss']:.2f} ({same['trainer_seconds']:.1f} s)."
        )
    lines = [
        "\n\n".join(notes),
        "",
        "| batch | configuration | s / epoch | images / s | vs baseline | model TFLOP/s "
        "| of matmul peak | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        memory = f"{row['peak_memory_mb']:.0f}" if row["peak_memory_mb"] is not None else "n/a"
        spread = row.get("speedup_middle_half")
        speedup = f"{row['speedup_vs_baseline']:.2f}x" + (
            f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread and row["config"] != "baseline" else ""
        )
        lines.append(
            f"| {row['batch_size']} | {row['config']} | {row['epoch_s']:.3f} | {row['images_per_s']:,.0f} | "
            f"{speedup} | {row['model_tflops']:.4f} | "
            f"{row['fraction_of_matmul_peak']:.1%} ({row['matmul_precision']}) | {memory} |"
        )
    if report.get("stacks"):
        stacks = report["stacks"]
        lines += [
            "",
            f"Stacked step (`trainer.compile=auto`), batch {stacks['batch_size']} per member, "
            f"median of {report['repeats']} runs of {stacks['steps']} steps:",
            "",
            "| members | ms per member-step | member-steps / s | vs one member |",
            "|---|---|---|---|",
        ]
        for row in stacks["rows"]:
            lines.append(
                f"| {row['members']} | {row['seconds_per_member_step'] * 1e3:.3f} | "
                f"{1 / row['seconds_per_member_step']:,.0f} | {row['speedup_vs_one']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        "vae_gumbel.benchmark",
        "Time the tutorial loop against the trainer, side by side; writes OUT/bench.json and bench.md.",
        [
            "                                          # on the GPU if there is one",
            "--device cpu --no-compile --batch-sizes 100 1000",
            "--device cpu --batch-sizes 100 --bf16     # also bf16 autocast on the CPU",
            "--stack-sizes 1 8 64 256                  # also the stacked step per member-step",
        ],
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    parser.add_argument("--data-root", default="data", help="the folder holding MNIST/raw (default: data)")
    parser.add_argument(
        "--batch-sizes", type=at_least(1), nargs="+", default=[100, 1000, 10000], help="batch sizes timed"
    )
    parser.add_argument(
        "--images", type=at_least(1), default=30_000, help="images timed per configuration and batch size"
    )
    parser.add_argument(
        "--repeats", type=at_least(1), default=3, help="timings per configuration (median reported)"
    )
    parser.add_argument("--latent-dim", type=at_least(1), default=30, help="N, the latent variables")
    parser.add_argument(
        "--categorical-dim", type=at_least(2), default=10, help="K, the categories per variable"
    )
    parser.add_argument(
        "--hidden", type=at_least(1), nargs="+", default=[512, 256], help="the MLP's hidden widths"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast on the CPU")
    parser.add_argument(
        "--no-tf32", action="store_true", help="keep the trainer's CUDA matmuls in full float32"
    )
    parser.add_argument(
        "--epochs",
        type=at_least(0),
        default=0,
        help="also train both loops this many epochs; compare test loss",
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the MNIST checksums (own MNIST-format files)"
    )
    parser.add_argument(
        "--peak-size",
        type=at_least(0),
        default=0,
        help="matrix size for the matmul peak (default 8192 on CUDA, 2048 on the CPU)",
    )
    parser.add_argument(
        "--stack-sizes",
        type=at_least(1),
        nargs="*",
        default=[],
        help="also time the stacked step (trainer.compile=auto) of stacks of these sizes, e.g. 1 8 64 256",
    )
    parser.add_argument(
        "--stack-batch-size", type=at_least(1), default=100, help="batch size of the stacked step"
    )
    parser.add_argument(
        "--stack-steps", type=at_least(1), default=50, help="steps timed per stack size and repeat"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/bench"), help="folder of bench.json and bench.md"
    )
    args = parser.parse_args(argv)
    with one_line_errors():
        check_writable(args.out, "--out")  # before the timings, which take minutes
        report = run(args)
    table = markdown(report)
    print(table)
    for name, text in (("bench.json", json.dumps(report, indent=2) + "\n"), ("bench.md", table)):
        print(write_new(args.out / name, lambda path, text=text: path.write_text(text))[1])
    return 0
