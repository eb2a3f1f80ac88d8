"""Time a Hydra multirun of N jobs sharing one device against a single job, side by side.

    python scripts/time_multirun.py --jobs 8 [--out outputs/bench/multirun] [TRAIN OVERRIDES ...]

Runs ``python -m vae_gumbel.train`` once (seed 0), then the same training as a joblib
multirun of N jobs (seeds 0..N-1) on the same device. Reports both wall times and their
ratio, and each job's median epoch time from its metrics, which leaves out start-up and
compilation. Writes ``multirun.json`` into ``--out`` and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vae_gumbel.device import resolve_device
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.tools.peak import device_description
from vae_gumbel.tracking import read_metrics


def timed_run(args: list[str], what: str) -> float:
    """Runs ``python args``; gives its wall time in seconds, or exits naming what failed."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *args], check=False)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the multirun, all at once")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/multirun"))
    parser.add_argument("overrides", nargs="*", help="training overrides for every run")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    out = args.out.resolve()
    train, common = ["-m", "vae_gumbel.train"], ["trainer.progress=false", *args.overrides]
    single_dir, sweep_dir = out / "single", out / "multirun"

    single_s = timed_run([*train, *common, "seed=0", f"hydra.run.dir={single_dir}"], "the single job")
    seeds = ",".join(str(seed) for seed in range(args.jobs))
    multirun_s = timed_run(
        [
            *train,
            "--multirun",
            *common,
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={args.jobs}",
            f"seed={seeds}",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        f"the multirun of {args.jobs} jobs",
    )
    report = {
        # The device the runs trained on, as their composed config names it.
        "device": device_description(
            resolve_device(OmegaConf.load(RunFolder(single_dir).config).trainer.device)
        ),
        "torch": torch.__version__,
        "jobs": args.jobs,
        "overrides": args.overrides,
        "single_s": single_s,
        "multirun_s": multirun_s,
        "ratio": multirun_s / single_s,
        "single_epoch_s": median_epoch_seconds(single_dir),
        "job_epoch_s": [median_epoch_seconds(sweep_dir / str(job)) for job in range(args.jobs)],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "multirun.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['device']}, torch {report['torch']}, overrides: {' '.join(args.overrides) or '(none)'}\n\n"
        "| run | wall time (s) | median epoch (s) |\n|---|---|---|\n"
        f"| 1 job | {single_s:.1f} | {report['single_epoch_s']:.3f} |\n"
        f"| {args.jobs} jobs, joblib | {multirun_s:.1f} | "
        f"{statistics.median(report['job_epoch_s']):.3f} (median of the jobs) |\n\n"
        f"{args.jobs} jobs took {report['ratio']:.2f}x the wall time of one."
    )


if __name__ == "__main__":
    main()
