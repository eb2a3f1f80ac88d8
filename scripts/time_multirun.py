"""Time one sweep through several launchers side by side, against a single run.

    python scripts/time_multirun.py --sweep seed=0,1,2,3 [--sweep optim.lr=1e-3,3e-3]
        [--ways single stacked joblib separate] [--joblib-jobs 8] [--out outputs/bench/multirun]
        [TRAIN OVERRIDES ...]

Every way runs ``python -m vae_gumbel.train`` with the same overrides:

- ``single``: one run, the sweep's first job;
- ``stacked``: the whole sweep through ``hydra/launcher=stacked`` (one process, stacks of models);
- ``joblib``: the whole sweep through ``hydra/launcher=joblib`` with ``--joblib-jobs`` processes at once;
- ``separate``: every job as its own process, one after another, as a shell loop would run them.

Reports each way's wall time, its ratio to ``single`` and to ``separate``, the median epoch
time of its runs (from their metrics, which leave out start-up and compilation), what the
per-epoch extras (evaluation, logs, drawing the pictures, copying the state for the checkpoints)
cost the training thread per member and epoch, and what Hydra spent per job before it trained
(composing and preparing; from the runs' timelines, so not for joblib). Writes
``multirun.json`` and prints a Markdown table. Each timing gets a dated folder of its own under
``--out`` (its runs and multirun.json), so a second timing never finds the first one's finished
runs. Without ``--sweep`` it sweeps ``seed`` over ``--jobs`` values.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vae_gumbel import commands
from vae_gumbel.commands import at_least
from vae_gumbel.device import device_description, resolve_device
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import dated_folder, write_new
from vae_gumbel.run_folder import TIMELINES, RunFolder, find_runs
from vae_gumbel.timeline import EPOCH_EXTRAS, HYDRA_PHASES
from vae_gumbel.tracking import read_metrics

WAYS = ("single", "stacked", "joblib", "separate")


def timed_run(args: list[str], what: str) -> float:
    """Runs ``python args``; gives its wall time in seconds, or exits naming what failed."""
    started = time.perf_counter()
    result = commands.run_child([sys.executable, *args])
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {what} failed (exit code {result.returncode}); see its output above")
    return seconds


def median_epoch_seconds(run_dir: Path) -> float:
    """Gives a run's median epoch time; the first epoch, which compiles, counts only if alone."""
    seconds = [r["time/epoch_s"] for r in read_metrics(RunFolder(run_dir).metrics) if "time/epoch_s" in r]
    if not seconds:
        sys.exit(f"error: {run_dir} has no epoch times in metrics.jsonl")
    return statistics.median(seconds[1:] or seconds)


def phase_seconds(folder: Path, phases: tuple[str, ...]) -> float:
    """Gives the seconds of ``phases`` summed over every timeline written under ``folder`` (one per
    process job, or one per stacked batch)."""
    timelines = [json.loads(path.read_text()) for path in folder.rglob(TIMELINES)]
    if not timelines:
        sys.exit(f"error: no timeline under {folder}")
    return sum(timeline["phases"].get(phase, 0.0) for timeline in timelines for phase in phases)


def extras_per_member_epoch(folder: Path, runs: list[Path]) -> float:
    """Gives the seconds the per-epoch extras took on the training thread per member and epoch, over
    the epochs in the runs' metrics."""
    return phase_seconds(folder, EPOCH_EXTRAS) / sum(
        len(read_metrics(RunFolder(run).metrics)) for run in runs
    )


def hydra_per_job(folder: Path, runs: list[Path], way: str) -> float | None:
    """Gives the seconds Hydra spent per job before it trained (``HYDRA_PHASES``); None for joblib,
    whose launching process composes the jobs and writes no timeline."""
    return None if way == "joblib" else phase_seconds(folder, HYDRA_PHASES) / len(runs)


def jobs_of(sweeps: list[str]) -> list[list[str]]:
    """Gives every combination of the sweep's values, as each job's overrides."""
    axes = [
        [f"{key}={value}" for value in values.split(",")]
        for key, _, values in (s.partition("=") for s in sweeps)
    ]
    return [list(job) for job in itertools.product(*axes)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="append", default=[], help="KEY=V1,V2,...: one axis of the sweep")
    parser.add_argument(
        "--jobs", type=at_least(1), default=8, help="without --sweep: sweep seed over this many values"
    )
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=["single", "joblib"], help="what to time")
    parser.add_argument(
        "--joblib-jobs", type=at_least(1), default=None, help="joblib processes at once (default: all jobs)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/bench/multirun"),
        help="where each timing gets its own dated folder (runs and multirun.json)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="training overrides for every run; after --ways, put -- before them"
    )
    args = parser.parse_args(argv)
    sweeps = args.sweep or [f"seed={','.join(str(seed) for seed in range(args.jobs))}"]
    jobs = jobs_of(sweeps)
    with one_line_errors():  # before the measurement, which takes minutes
        out = dated_folder(args.out)
    train = ["-m", "vae_gumbel.train"]
    common = ["trainer.progress=false", "trainer.timeline=true", *args.overrides]
    timings: dict[str, dict] = {}
    for way in args.ways:
        folder = out / way
        if way == "single":
            seconds = timed_run([*train, *common, *jobs[0], f"hydra.run.dir={folder}"], "the single run")
        elif way == "separate":
            started = time.perf_counter()
            for i, job in enumerate(jobs):
                timed_run([*train, *common, *job, f"hydra.run.dir={folder / str(i)}"], f"separate run {i}")
            seconds = time.perf_counter() - started
        else:
            launcher = (
                ["hydra/launcher=stacked"]
                if way == "stacked"
                else [
                    "hydra/launcher=joblib",
                    f"hydra.launcher.n_jobs={args.joblib_jobs or len(jobs)}",
                ]
            )
            seconds = timed_run(
                [*train, "--multirun", *common, *launcher, *sweeps, f"hydra.sweep.dir={folder}"], way
            )
        runs = find_runs(folder)
        timings[way] = {
            "seconds": seconds,
            "runs": len(runs),
            "median_epoch_s": statistics.median(median_epoch_seconds(r) for r in runs),
            "extras_per_member_epoch_s": extras_per_member_epoch(folder, runs),
            "hydra_per_job_s": hydra_per_job(folder, runs, way),
        }
    first_config = RunFolder(find_runs(out / args.ways[0])[0]).config
    report = {
        # The device the runs trained on, as their composed config names it.
        "device": device_description(resolve_device(OmegaConf.load(first_config).trainer.device)),
        "torch": torch.__version__,
        "jobs": len(jobs),
        "sweep": sweeps,
        "overrides": args.overrides,
        "ways": timings,
    }
    for way, timing in timings.items():
        for base in ("single", "separate"):
            if base in timings and base != way:
                timing[f"vs_{base}"] = timing["seconds"] / timings[base]["seconds"]
    text = json.dumps(report, indent=2) + "\n"
    _, happened = write_new(out / "multirun.json", lambda path: path.write_text(text))
    lines = [
        f"{report['device']}, torch {report['torch']}; {len(jobs)} jobs ({' '.join(sweeps)}); "
        f"overrides: {' '.join(args.overrides) or '(none)'}",
        "",
        "| way | runs | wall time (s) | vs single | vs separate | median epoch (s) "
        "| extras per member-epoch (s) | Hydra per job (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for way, timing in timings.items():
        ratios = " | ".join(
            f"{timing[key]:.2f}x" if key in timing else "" for key in ("vs_single", "vs_separate")
        )
        epoch = f"{timing['median_epoch_s']:.3f} | {timing['extras_per_member_epoch_s']:.4f}"
        hydra = "" if timing["hydra_per_job_s"] is None else f"{timing['hydra_per_job_s']:.3f}"
        lines.append(f"| {way} | {timing['runs']} | {timing['seconds']:.1f} | {ratios} | {epoch} | {hydra} |")
    print("\n".join(lines))
    print(happened)


if __name__ == "__main__":
    commands.on_interrupt_say(commands.TIMING_INTERRUPTED)
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
