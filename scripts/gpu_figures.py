"""Measure the figures of docs/performance.md that need a GPU, the most wanted first, within a budget.

    python scripts/gpu_figures.py --out outputs/bench/gpu [--budget 540] [--data-root data]
        [--steps cuda_tests cold warm sweep stacked_step stack_profile joblib | ... reinmax]
        [--seeds 8] [--joblib-seeds 2] [--stack-sizes 1 8 64 256] [--repeats 3] [--reinmax-seeds 10]
        [TRAIN OVERRIDES ...]

One command for a GPU that is lent for a few minutes. The steps, in this order:

- ``cuda_tests``: ``python -m pytest -m cuda`` (the graphed steps, exactness, resume);
- ``cold``: the default run's whole command with an empty compile cache
  (``scripts/time_to_result.py --cold``);
- ``warm``: the same after an untimed run that fills the caches, median of ``--repeats``;
- ``sweep``: ``--seeds`` seeds x 8 settings (two values each of ``optim.lr``, ``temperature.initial``
  and ``temperature.rate``) through ``hydra/launcher=stacked``, against one default run
  (``scripts/time_multirun.py``);
- ``stacked_step``: ``python -m vae_gumbel.benchmark`` at batch 100 (its eager rows; the compiled
  ones are in docs/performance.md), with the stacked step per member-step for ``--stack-sizes``;
- ``stack_profile``: ``scripts/profile_step.py --members 64``, the kernels of the eager step of a
  stack of 64 (what its GPU time goes to);
- ``joblib``: the same 8 settings over ``--joblib-seeds`` seeds through the joblib launcher, 8 jobs
  at once. With 2 seeds that is 16 jobs, two rounds of the eight rounds the whole sweep would take:
  the whole sweep through joblib takes about ``seeds / joblib-seeds`` times as long (it needs the
  ``sweep`` extra);
- ``reinmax``, only when named in ``--steps``: the ReinMax MNIST-VAE comparison in its 10x30
  configuration, every estimator over ``--reinmax-seeds`` seeds, three seed stacks side by side
  (``scripts/reinmax2023.py --at-once 3``), its table of means and standard errors at the end of
  its output, and ``reinmax/reinmax2023.csv``, ``.md`` and ``runs.csv`` beside the runs.

Each measurement gets a dated folder of its own under ``--out``. A step gets what is left of
``--budget`` seconds; when that runs out it is stopped with every process it started, and a step
that would start with under 30 s left is skipped. The folder's ``summary.md`` is rewritten as each
step ends: its command, exit status, seconds and the end of its output (the tables the tools
print); ``STEP.log`` holds its whole output and ``STEP/`` what it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from vae_gumbel import commands
from vae_gumbel.commands import at_least
from vae_gumbel.device import device_description, resolve_device
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import dated_folder, replace_text
from vae_gumbel.provenance import version_line

STEPS = ("cuda_tests", "cold", "warm", "sweep", "stacked_step", "stack_profile", "joblib", "reinmax")
# What a plain run measures: the performance figures; the comparison takes a visit of its own.
DEFAULT_STEPS = STEPS[:-1]
# The sweep's 8 settings, beside its seeds: the learning rate and the temperature schedule.
SETTINGS = ("optim.lr=3e-4,1e-3", "temperature.initial=0.5,1.0", "temperature.rate=3e-5,1e-4")
LEAST_SECONDS = 30.0  # a step that would start with less than this left is skipped
TAIL_LINES = 40  # lines of each step's output kept in the summary


def seeds(count: int) -> str:
    """Gives the sweep axis of ``count`` seeds, ``seed=0,1,...``."""
    return "seed=" + ",".join(str(seed) for seed in range(count))


def step_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """Gives each step's command line (without the interpreter), from the parsed arguments."""
    scripts = Path(__file__).resolve().parent
    data = [f"data.root={args.data_root}", *args.overrides]
    settings = [f"--sweep={axis}" for axis in SETTINGS]
    time_to_result = str(scripts / "time_to_result.py")
    time_multirun = str(scripts / "time_multirun.py")
    profile_step = str(scripts / "profile_step.py")
    reinmax = [str(scripts / "reinmax2023.py"), "--configurations", "10x30", "--at-once", "3"]
    return {
        # Eight workers: the tests mostly compile, which takes the host's cores, not the GPU.
        "cuda_tests": ["-m", "pytest", str(scripts.parent / "tests"), "-m", "cuda", "-q", "-n", "8"],
        "cold": [time_to_result, "--cold", "--repeats", "1", "--out", str(args.out / "cold"), *data],
        "warm": [
            *(time_to_result, "--warm-up", "1", "--repeats", str(args.repeats)),
            *("--out", str(args.out / "warm"), *data),
        ],
        # The compiled single-model rows are in docs/performance.md already; the stacks compile.
        "stacked_step": [
            *("-m", "vae_gumbel.benchmark", "--data-root", args.data_root, "--no-compile"),
            *("--batch-sizes", "100", "--stack-sizes", *map(str, args.stack_sizes)),
            *("--out", str(args.out / "stacked_step")),
        ],
        "stack_profile": [profile_step, "--members", "64", "--steps", "10", "--rows", "20"],
        "sweep": [
            *(time_multirun, f"--sweep={seeds(args.seeds)}", *settings, "--ways", "single", "stacked"),
            *("--out", str(args.out / "sweep"), *data),
        ],
        "joblib": [
            *(time_multirun, f"--sweep={seeds(args.joblib_seeds)}", *settings, "--ways", "joblib"),
            *("--joblib-jobs", "8", "--out", str(args.out / "joblib"), *data),
        ],
        "reinmax": [
            *reinmax,
            "--seeds",
            str(args.reinmax_seeds),
            "--out",
            str(args.out / "reinmax"),
            "--",
            *data,
        ],
    }


def run_step(command: list[str], log: Path, seconds: float) -> int | None:
    """Runs ``python command`` into ``log`` for at most ``seconds``; gives its exit status, or None
    if it ran out of time (then it is stopped with every process it started)."""
    with log.open("w") as output:
        # A session of its own, so that stopping it reaches the runs and workers it starts.
        process = subprocess.Popen(
            [sys.executable, *command], stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            stop(process)
            return None
        except BaseException:  # Ctrl-C: the terminal's signal does not reach another session
            stop(process)
            raise


def stop(process: subprocess.Popen) -> None:
    """Stops a step's process session: SIGTERM first (runs write their checkpoints), then SIGKILL to
    whatever of it still runs 10 s later."""
    with contextlib.suppress(ProcessLookupError):  # it may have ended just now
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None and not session_runs(process.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def session_runs(group: int) -> bool:
    """Says whether any process of the process group ``group`` is left (a zombie counts)."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def tail(log: Path) -> str:
    """Gives the last lines of a step's output."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-TAIL_LINES:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/bench/gpu"), help="the folder of every step's output"
    )
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all the steps together")
    parser.add_argument("--data-root", default="data", help="the folder holding MNIST/raw")
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=STEPS,
        default=list(DEFAULT_STEPS),
        help="which steps, in their order (default: all but reinmax)",
    )
    parser.add_argument(
        "--seeds", type=at_least(1), default=8, help="seeds of the stacked sweep (x 8 settings)"
    )
    parser.add_argument(
        "--joblib-seeds", type=at_least(1), default=2, help="seeds of the joblib sweep (x 8 settings)"
    )
    parser.add_argument(
        "--stack-sizes",
        type=at_least(1),
        nargs="+",
        default=[1, 8, 64, 256],
        help="members of the stacked steps timed",
    )
    parser.add_argument(
        "--repeats", type=at_least(1), default=3, help="timed warm runs (the median is reported)"
    )
    parser.add_argument(
        "--reinmax-seeds", type=at_least(1), default=10, help="seeds of each estimator in the reinmax step"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="training overrides for every run; after --steps or --stack-sizes, put -- before them",
    )
    args = parser.parse_args(argv)
    if not args.budget > 0:
        parser.error(f"--budget must be a number of seconds above 0, got {args.budget}")
    with one_line_errors():  # before the steps, which take minutes
        args.out = dated_folder(args.out)
    started = time.monotonic()
    commands = step_commands(args)
    header = (
        f"# GPU figures\n\n{datetime.now():%Y-%m-%d %H:%M}; {device_description(resolve_device('auto'))}; "
        f"{version_line()}; budget {args.budget:.0f} s; "
        f"overrides: {' '.join(args.overrides) or '(none)'}"
    )
    sections: list[str] = []
    for name in [step for step in STEPS if step in args.steps]:
        left = args.budget - (time.monotonic() - started)
        command = "python " + " ".join(commands[name])
        if left < LEAST_SECONDS:
            sections.append(f"## {name}: skipped, {left:.0f} s of the budget left\n\n`{command}`")
        else:
            log = args.out / f"{name}.log"
            step_started = time.monotonic()
            try:
                status = run_step(commands[name], log, left)
            except KeyboardInterrupt:
                sections.append(f"## {name}: interrupted by SIGINT\n\n`{command}`\n\n```\n{tail(log)}\n```")
                replace_text(args.out / "summary.md", "\n\n".join([header, *sections]) + "\n")
                print(
                    f"error: interrupted by SIGINT in the step {name}, which was stopped with its "
                    f"processes; what the steps measured so far is in {args.out / 'summary.md'}",
                    file=sys.stderr,
                )
                sys.exit(130)
            seconds = time.monotonic() - step_started
            ended = "stopped: out of budget" if status is None else f"exit status {status}"
            sections.append(f"## {name}: {ended}, {seconds:.1f} s\n\n`{command}`\n\n```\n{tail(log)}\n```")
        replace_text(args.out / "summary.md", "\n\n".join([header, *sections]) + "\n")
        print(sections[-1].splitlines()[0], flush=True)
    print(f"wrote {args.out / 'summary.md'}")


if __name__ == "__main__":
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
