"""Compare the runs of a sweep: ``python -m vae_gumbel.report SWEEP_DIR [--sort best]``.

Reads every job folder below SWEEP_DIR (a Hydra multirun folder, or any folder of runs such
as ``outputs/``): its ``.hydra/overrides.yaml``, ``metrics.jsonl`` and ``status.json``. Prints
a table sorted by final (or best) test loss with the overrides as columns, and writes it as
``report.csv`` and ``report.md`` with ``report.png``, the test loss per epoch of every job.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from vae_gumbel.run_folder import RunFolder, find_runs
from vae_gumbel.tracking import read_metrics, read_status


@dataclass
class Job:
    name: str  # the folder, relative to the report's root
    overrides: dict[str, str]
    records: list[dict[str, Any]]
    status: str  # completed, failed, incomplete
    error: str = ""
    final_test_loss: float = math.nan
    best_test_loss: float = math.nan
    best_epoch: int | None = None
    epochs: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)


def parse_overrides(path: Path) -> dict[str, str]:
    """Gives Hydra's recorded command-line overrides as key -> value."""
    if not path.is_file():
        return {}
    overrides = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def read_job(path: Path, root: Path) -> Job:
    """Gives what a job folder says about its run."""
    folder = RunFolder(path)
    records = read_metrics(folder.metrics)
    status = read_status(folder)
    job = Job(
        name=str(path.relative_to(root)) if path != root else ".",
        overrides=parse_overrides(folder.overrides),
        records=records,
        status=status.get("status", "incomplete"),
        error=status.get("error", ""),
        epochs=records[-1]["epoch"] if records else 0,
    )
    job.curve = [(r["epoch"], r["test/loss"]) for r in records if "test/loss" in r]
    if job.curve:
        job.final_test_loss = job.curve[-1][1]
        job.best_epoch, job.best_test_loss = min(job.curve, key=lambda point: point[1])
    return job


def varying_keys(jobs: list[Job]) -> list[str]:
    """Gives the override keys whose values differ between jobs (all of them for a single job)."""
    keys = sorted({key for job in jobs for key in job.overrides})
    if len(jobs) > 1:
        keys = [k for k in keys if len({job.overrides.get(k, "") for job in jobs}) > 1]
    return keys


def table(jobs: list[Job], sort: str = "final") -> tuple[list[str], list[list[Any]]]:
    """Gives the report's columns and rows: best first, failed and unfinished jobs last.

    Overrides that every job shares are left out; they do not tell jobs apart.
    """
    keys = varying_keys(jobs)
    columns = ["job", "status", *keys, "epochs", "final test loss", "best test loss", "best epoch", "error"]

    def order(job: Job) -> tuple[int, float]:
        loss = job.final_test_loss if sort == "final" else job.best_test_loss
        return (
            0 if job.status == "completed" else 1 if job.records else 2,
            loss if math.isfinite(loss) else math.inf,
        )

    rows = [
        [
            job.name,
            job.status,
            *[job.overrides.get(k, "") for k in keys],
            job.epochs,
            _round(job.final_test_loss),
            _round(job.best_test_loss),
            job.best_epoch if job.best_epoch is not None else "",
            job.error,
        ]
        for job in sorted(jobs, key=order)
    ]
    return columns, rows


def _round(value: float) -> float | str:
    return round(value, 3) if math.isfinite(value) else ""


def markdown(columns: list[str], rows: list[list[Any]]) -> str:
    """Gives a Markdown table."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def curves_figure(jobs: list[Job], title: str) -> Figure:
    """Gives loss per epoch: for one run, its relaxed and unrelaxed training loss and its test loss
    with the temperature on a second axis; for several, the test loss of each, labelled by its
    overrides."""
    figure = Figure(figsize=(9, 5))
    axis = figure.subplots()
    if len(jobs) == 1:
        records = jobs[0].records
        for key, label, style in (
            ("train/loss_relaxed", "train, relaxed", "-"),
            ("train/loss_unrelaxed", "train, unrelaxed", "--"),
            ("test/loss", "test (exact discrete)", "-o"),
        ):
            points = [(r["epoch"], r[key]) for r in records if key in r]
            if points:
                axis.plot(*zip(*points, strict=True), style, markersize=3, label=label)
        temperature_axis = axis.twinx()
        temperature_axis.plot(
            [r["epoch"] for r in records], [r["temperature"] for r in records], ":", color="gray"
        )
        temperature_axis.set_ylabel("temperature", color="gray")
    else:
        varying = varying_keys(jobs)
        for job in jobs:
            if job.curve:
                label = (
                    ", ".join(f"{k}={job.overrides[k]}" for k in varying if k in job.overrides) or job.name
                )
                axis.plot(*zip(*job.curve, strict=True), "-o", markersize=3, label=f"{job.name}: {label}")
    axis.set(
        xlabel="epoch", ylabel="negative ELBO (nats)" if len(jobs) == 1 else "test loss (negative ELBO, nats)"
    )
    axis.set_title(title)
    if axis.lines:
        axis.legend(fontsize=7, loc="upper right")
    return figure


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Writes a figure as PNG, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def report(root: Path, sort: str = "final") -> str:
    """Writes report.csv, report.md and report.png into ``root`` and gives the Markdown table."""
    jobs = [read_job(folder, root) for folder in find_runs(root)]
    if not jobs:
        raise FileNotFoundError(
            f"no runs below {root}: expected folders with metrics.jsonl or .hydra/overrides.yaml"
        )
    columns, rows = table(jobs, sort)
    with (root / "report.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    text = markdown(columns, rows)
    (root / "report.md").write_text(text)
    save_figure(curves_figure(jobs, title=str(root)), root / "report.png")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare the runs of a sweep or a folder of runs.")
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, or any folder of run folders")
    parser.add_argument(
        "--sort", choices=("final", "best"), default="final", help="sort by final or best test loss"
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a folder", file=sys.stderr)
        return 1
    try:
        print(report(args.sweep_dir, args.sort), end="")
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.sweep_dir / 'report.csv'}, report.md and report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
