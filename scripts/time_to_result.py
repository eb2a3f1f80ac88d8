"""Time whole commands, from a process's start to its end, and show where a run's time goes.

    python scripts/time_to_result.py [--repeats 3] [--cold | --warm-up 1] [--tutorial-epochs 1]
        [--data-root DIR] [--out outputs/bench/time_to_result] [TRAIN OVERRIDES ...]

Runs ``python -m vae_gumbel.train trainer.timeline=true OVERRIDES`` ``--repeats`` times (with
``--cold``, each with an empty compile cache: TORCHINDUCTOR_CACHE_DIR and trainer.compile_cache
in a fresh folder; with ``--warm-up``, after that many untimed runs that fill the default caches,
so that every timed run finds them warm) and, with ``--tutorial-epochs``, the tutorial loop's
whole process (``python -m vae_gumbel.tools.baseline``) alternately with it. Reports the median whole-process
wall time of each, their ratio, and the median seconds of each phase of the training runs
(from their timeline.json), with ``exit`` the part only the outside sees. Writes
``time_to_result.json`` and prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vae_gumbel import commands
from vae_gumbel.commands import at_least
from vae_gumbel.config import compose_settings
from vae_gumbel.datasets import ensure
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import dated_folder
from vae_gumbel.run_folder import RunFolder


def timed(command: list[str], environment: dict[str, str]) -> float:
    """Runs a command; gives its wall time, or exits naming it if it failed."""
    started = time.perf_counter()
    result = commands.run_child(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed (exit code {result.returncode}): {result.stderr[-500:]}")
    return seconds


def data_root_of(overrides: list[str]) -> str:
    """Gives the data folder of the runs the training overrides compose (``data.root``)."""
    return compose_settings(overrides).data.root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=at_least(1), default=3, help="runs of each command (medians reported)"
    )
    parser.add_argument("--cold", action="store_true", help="an empty compile cache for every run")
    parser.add_argument(
        "--warm-up", type=at_least(0), default=0, help="untimed runs first, which fill the compile caches"
    )
    parser.add_argument(
        "--tutorial-epochs", type=at_least(0), default=0, help="also time the tutorial loop's process"
    )
    parser.add_argument(
        "--data-root", help="the tutorial loop's MNIST folder (default: the overrides' data.root, else data)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/bench/time_to_result"),
        help="where each timing gets its own dated folder (runs and time_to_result.json)",
    )
    parser.add_argument("overrides", nargs="*", help="training overrides")
    args = parser.parse_args(argv)
    if args.cold and args.warm_up:
        parser.error("--cold times every run with an empty cache; --warm-up would fill it for nothing")
    with one_line_errors():  # before the measurement, which takes minutes
        if args.tutorial_epochs:
            data_root = args.data_root or data_root_of(args.overrides)
            ensure(data_root, "mnist")  # as the runs do, so that neither process times a download
        out = dated_folder(args.out)
    walls: dict[str, list[float]] = {"train": [], "tutorial": []}
    phases: list[dict[str, float]] = []
    train = [sys.executable, "-m", "vae_gumbel.train", "trainer.timeline=true", "trainer.progress=false"]
    for warm_up in range(args.warm_up):
        timed([*train, *args.overrides, f"hydra.run.dir={out / f'warm-up{warm_up}'}"], dict(os.environ))
    for repeat in range(args.repeats):
        environment = dict(os.environ)
        extra = []
        if args.cold:
            fresh = tempfile.mkdtemp(prefix="vae-gumbel-cold-")
            environment["TORCHINDUCTOR_CACHE_DIR"] = fresh
            extra = [f"trainer.compile_cache={fresh}/portable"]
        folder = RunFolder(out / f"run{repeat}")
        command = [*train, *args.overrides, *extra, f"hydra.run.dir={folder.path}"]
        wall = timed(command, environment)
        walls["train"].append(wall)
        timeline = json.loads(folder.timeline.read_text())
        phases.append({**timeline["phases"], "exit": wall - (timeline["total_seconds"] or wall)})
        if args.tutorial_epochs:
            tutorial = [
                sys.executable,
                "-m",
                "vae_gumbel.tools.baseline",
                "--epochs",
                str(args.tutorial_epochs),
            ]
            walls["tutorial"].append(timed([*tutorial, "--data-root", data_root], environment))
    names = list(dict.fromkeys(name for run in phases for name in run))
    median_phases = {name: statistics.median(run.get(name, 0.0) for run in phases) for name in names}
    report = {
        "torch": torch.__version__,
        "overrides": args.overrides,
        "cold": args.cold,
        "warm_up": args.warm_up,
        "repeats": args.repeats,
        "wall_s": {name: statistics.median(values) for name, values in walls.items() if values},
        "walls": walls,
        "phases_s": median_phases,
    }
    if walls["tutorial"]:
        report["train_vs_tutorial"] = report["wall_s"]["train"] / report["wall_s"]["tutorial"]
    (out / "time_to_result.json").write_text(json.dumps(report, indent=2) + "\n")
    total = report["wall_s"]["train"]
    whole = f"whole process: {total:.1f} s"
    if walls["tutorial"]:
        tutorial = report["wall_s"]["tutorial"]
        whole += f"; the tutorial loop's ({args.tutorial_epochs} epochs): {tutorial:.1f} s"
        whole += f", ratio {report['train_vs_tutorial']:.2f}"
    if args.cold:
        cache = "an empty compile cache for each run"
    elif args.warm_up:
        cache = f"the compile caches filled by {args.warm_up} untimed run(s) first"
    else:
        cache = "the compile caches as found"
    lines = [
        f"torch {report['torch']}; overrides: {' '.join(args.overrides) or '(none)'}; {cache}; "
        f"median of {args.repeats}",
        "",
        whole,
        "",
        "| phase | seconds | share |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {seconds:.2f} | {seconds / total:.0%} |" for name, seconds in median_phases.items()
    ]
    print("\n".join(lines))
    print(f"wrote {out / 'time_to_result.json'}")


if __name__ == "__main__":
    commands.on_interrupt_say(commands.TIMING_INTERRUPTED)
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
