"""Compare the runs of a sweep: ``python -m vae_gumbel.report SWEEP_DIR [--sort S] [--group-by-seed]
[--against KEY=VALUE]``.

Reads every job folder below SWEEP_DIR (a Hydra multirun folder, or any folder of runs such
as ``outputs/``): its ``.hydra/overrides.yaml``, ``metrics.jsonl`` and ``status.json``. Prints
a table sorted (``--sort final|best|bound``) by final or best loss, or by the IWAE bound: the final
one that a search minimises or, where no run computed one, that of ``evaluate``; on the validation
set when the runs held one out (the test set is then only reported), else on the test set, with the
overrides as columns, and writes it as ``report.csv`` and ``report.md`` with ``report.png``, the
test loss per epoch of every job.

With ``--group-by-seed``, jobs whose overrides differ only in ``seed`` (values compared as Hydra
reads them: ``1e-3`` is ``0.001``) form one setting, and the table gives each setting's mean and
standard error over its seeds (a seed trained twice counts once, with the mean of its runs) and
their count for the final and best test loss and, when the runs computed them, the IWAE bound with
the most samples:
``report_seeds.csv``, ``report_seeds.md`` and ``report_seeds.png`` (mean curve, band of one
standard error). ``--against KEY=VALUE`` adds each setting's difference to the setting with
KEY=VALUE instead of its own value, paired by seed (mean, standard error and count), and a
panel of those differences per epoch below the figure's curves.

Either way it also writes ``runs.csv``: one row per job with everything its folder records (every
override, the last epoch's metrics, the training time, the numbers of its eval.json), the file
to keep beside a published table.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: this module's command runs it (see commands.py)
    from vae_gumbel import commands

    commands.report()

import argparse
import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vae_gumbel.commands import argument_parser
from vae_gumbel.errors import ConfigError, one_line_errors
from vae_gumbel.files import replace_text, replacing, writing
from vae_gumbel.interrupts import shell_command
from vae_gumbel.jobs import (
    BOUND_SORTS,
    SORTS,
    Job,
    bound_sort,
    label,
    ranked,
    read_job,
    short,
    shown_loss,
    stale_notes,
    varying_keys,
)
from vae_gumbel.run_folder import find_runs
from vae_gumbel.seeds import (
    Estimate,
    Setting,
    ambiguous_baselines,
    baselines_of,
    by_seed,
    group_by_seed,
    loss_at,
    mean_and_stderr,
    paired,
    paired_difference,
    per_seed,
    ranked_settings,
    repeated_seeds,
    suggested_against,
)


def table(jobs: list[Job], sort: str = "final") -> tuple[list[str], list[list[Any]]]:
    """Gives the report's columns and rows, in the order of ``ranked``; only the overrides that
    tell jobs apart are columns."""
    keys = varying_keys(jobs)
    extra = optional_metrics(jobs)
    columns = ["job", "status", *keys, "epochs", *extra]
    columns += ["final test loss", "best test loss", "best epoch", "error"]
    rows = [
        [
            job.name,
            job.status,
            *[short(job.overrides.get(k, "")) for k in keys],
            job.epochs,
            *[_round(value(job)) for value in extra.values()],
            _round(job.final_test_loss),
            _round(job.best_test_loss),
            job.best_epoch if job.best_epoch is not None else "",
            job.error,
        ]
        for job in ranked(jobs, sort)
    ]
    return columns, rows


def optional_metrics(jobs: list[Job]) -> dict[str, Any]:
    """Gives the columns only some sweeps have, by name: the final validation loss if a job held a
    validation set out, and the IWAE bounds (validation, test) with the most samples, when every job
    that computed one used the same k; and the bound of ``evaluate``'s eval.json, when every run
    evaluated was evaluated with the same k, checkpoint (best.pt or last.pt) and number of images."""
    metrics: dict[str, Any] = {}
    if any(math.isfinite(job.final_val_loss) for job in jobs):
        metrics["final validation loss"] = lambda job: job.final_val_loss
        metrics["best validation loss"] = lambda job: job.best_val_loss
    for name, bound in (("validation", lambda job: job.val_iwae), ("test", lambda job: job.iwae)):
        ks = {bound(job)[0] for job in jobs if bound(job)}
        if len(ks) == 1:
            metrics[f"{name} IWAE NLL k={ks.pop()}"] = lambda job, of=bound: (of(job) or (0, math.nan))[1]
    evaluated = {job.evaluated[0] for job in jobs if job.evaluated}
    if len(evaluated) == 1:  # every evaluate of these runs measured the same thing
        (k, basis) = evaluated.pop()
        metrics[f"evaluate: test IWAE NLL k={k} ({basis})"] = lambda job: (
            job.evaluated or ((0, ""), math.nan)
        )[1]
    return metrics


def runs_table(jobs: list[Job]) -> tuple[list[str], list[list[Any]]]:
    """Gives one row per job with all that its folder records, for the CSV kept behind a published
    table: its status, every override, the last epoch's metrics, the training time summed over its
    epochs (a stack's members each give the stack's), and the numbers of its IWAE evaluations
    (eval.json, eval_val.json)."""
    rows = []
    for job in sorted(jobs, key=lambda job: job.name):
        last = job.records[-1] if job.records else {}
        row: dict[str, Any] = {"job": job.name, "status": job.status, **job.overrides}
        row.update(
            {
                METRIC_COLUMNS.get(key, key): value
                for key, value in last.items()
                if not isinstance(value, dict | list)
            }
        )
        row["time/train_s"] = sum(record.get("time/epoch_s", 0.0) for record in job.records)
        row.update(job.evaluations)
        row["error"] = job.error
        rows.append(row)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return columns, [[row.get(column, "") for column in columns] for row in rows]


# runs.csv's names for the metrics whose names are also a setting's, which an override may use: the
# temperature the last epoch ended at, beside the temperature schedule an override chooses.
METRIC_COLUMNS = {"temperature": "train/temperature"}
RUNS_CSV = "runs.csv"
AGAIN = "run the report again"  # what to do once a table or figure can be written


def write_runs_csv(root: Path) -> Path:
    """Writes ROOT/runs.csv, the ``runs_table`` of every run below ``root``; gives its path."""
    path = root / RUNS_CSV
    write_csv(*runs_table([read_job(folder, root) for folder in find_runs(root)]), path)
    return path


def _round(value: float) -> float | str:
    return round(value, 3) if math.isfinite(value) else ""


def estimate_columns(rows: list[list[Any]]) -> set[int]:
    """Gives the indices of the columns that hold Estimates (mean, stderr, n) rather than plain values."""
    return {i for row in rows for i, value in enumerate(row) if isinstance(value, Estimate)}


def markdown(columns: list[str], rows: list[list[Any]]) -> str:
    """Gives a Markdown table, its numbers with the same three decimals so that they line up, and
    each Estimate in one cell as a paper quotes it, mean +- stderr (n), which its column says."""

    def cell(value: Any) -> str:
        if isinstance(value, Estimate):
            return value.quoted()
        return f"{value:.3f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    estimates = estimate_columns(rows)
    header = [f"{name}, mean +- stderr (n)" if i in estimates else name for i, name in enumerate(columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def spread(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """Gives the table with each column of Estimates as three, NAME mean, NAME stderr and NAME n, for
    a CSV that a program reads (no value: an empty cell)."""
    estimates = estimate_columns(rows)
    if not estimates:
        return columns, rows
    header = [
        part
        for i, name in enumerate(columns)
        for part in ([f"{name} {field}" for field in Estimate._fields] if i in estimates else [name])
    ]

    def cells(i: int, value: Any) -> list[Any]:
        if i not in estimates:
            return [value]
        return [*(v if math.isfinite(v) else "" for v in value[:2]), value.n]

    return header, [[part for i, value in enumerate(row) for part in cells(i, value)] for row in rows]


def gathered(row: dict[str, str], name: str) -> Estimate:
    """Gives the Estimate that ``spread`` wrote as a CSV row's cells NAME mean, NAME stderr and
    NAME n (an empty cell: NaN)."""
    mean, stderr, n = (row[f"{name} {field}"] for field in Estimate._fields)
    return Estimate(float(mean or "nan"), float(stderr or "nan"), int(n))


def epoch_axis(axis: Any, ylabel: str) -> None:
    """Labels a figure's axes: whole epochs along x (never 1.5), ``ylabel`` up y."""
    axis.set(xlabel="epoch", ylabel=ylabel)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def curves_figure(jobs: list[Job], title: str, sort: str = "final") -> Figure:
    """Gives loss per epoch: for one run, its relaxed and unrelaxed training loss, its validation loss
    (if it held a validation set out) and its test loss, with the temperature on a second axis; for
    several, the test loss of each in the order of the table, the best few labelled by the overrides
    that tell them apart."""
    figure = Figure(figsize=(9, 5))
    axis = figure.subplots()
    if len(jobs) == 1:
        records = jobs[0].records
        for key, name, style, marker in (
            ("train/loss_relaxed", "train, relaxed", "-", None),
            ("train/loss_unrelaxed", "train, unrelaxed", "--", None),
            ("val/loss", "validation (exact discrete)", "-", "s"),
            ("test/loss", "test (exact discrete)", "-", "o"),
        ):
            points = [(r["epoch"], r[key]) for r in records if key in r]
            if points:
                marker = marker or lone(points, "o")
                axis.plot(*zip(*points, strict=True), style, marker=marker, markersize=3, label=name)
        temperature_axis = axis.twinx()
        temperatures = [(r["epoch"], r["temperature"]) for r in records if "temperature" in r]
        if temperatures:
            temperature_axis.plot(
                *zip(*temperatures, strict=True), ":", marker=lone(temperatures, "."), color="gray"
            )
        temperature_axis.set_ylabel("temperature", color="gray")
    else:
        keys = varying_keys(jobs)
        best = [job for job in ranked(jobs, sort) if job.curve]
        for rank, job in enumerate(best):
            finished = job.status == "completed"
            name, loss = shown_loss(job, sort)
            text = f"{job.name}: {label(job.overrides, keys) or job.name}, {name} {loss:.2f}"
            text += "" if finished else f" ({job.status})"
            draw_ranked(axis, *zip(*job.curve, strict=True), rank, len(best), text, dashed=not finished)
    epoch_axis(axis, "negative ELBO (nats)" if len(jobs) == 1 else "test loss (negative ELBO, nats)")
    axis.set_title(title)
    place_legend(axis, outside=len(jobs) > 1)
    return figure


# How many runs (or settings) a figure of many draws in colour, with a legend entry each.
HIGHLIGHTED = 6
FAINT = "0.75"


def lone(points: Any, marker: str) -> str | None:
    """Gives the marker a curve of a single point needs, which a line alone would not show."""
    return marker if len(points) == 1 else None


def draw_ranked(
    axis: Any,
    epochs: Any,
    values: Any,
    rank: int,
    count: int,
    text: str,
    dashed: bool = False,
    band: tuple[Any, Any] | None = None,
) -> None:
    """Draws the curve of the rank-th best of ``count`` runs: the best HIGHLIGHTED in colour and in
    the legend (with a band, if given), the rest thin and grey behind them, under one legend entry."""
    style = "--" if dashed else "-"
    if rank < HIGHLIGHTED:
        color = f"C{rank}"
        axis.plot(epochs, values, style, marker="o", markersize=3, color=color, label=text, zorder=3)
        if band is not None and len(epochs) == 1:  # a band one epoch wide has no width: a bar
            low, high = band
            bar = [[values[0] - low[0]], [high[0] - values[0]]]
            axis.errorbar(epochs, values, yerr=bar, color=color, capsize=4, alpha=0.5, zorder=2)
        elif band is not None:
            axis.fill_between(epochs, *band, color=color, alpha=0.2, zorder=2)
    else:
        others = f"{count - HIGHLIGHTED} others" if rank == HIGHLIGHTED else None
        axis.plot(
            epochs,
            values,
            style,
            marker=lone(epochs, "o"),
            markersize=2,
            color=FAINT,
            linewidth=0.8,
            label=others,
            zorder=1,
        )


# The widest line of a legend beside the plot, in characters: a longer label (an Optuna trial's five
# values) breaks between its parts, so the legend never grows wider than the plot itself.
LEGEND_WIDTH = 64


def legend_label(text: str) -> str:
    """Gives a label broken into lines of at most LEGEND_WIDTH characters between its parts (each
    setting, the number after the colon), never inside one; the lines after the first indented."""
    lines = [""]
    for part in re.split(r"(?<=, )|(?<=: )", text):
        if lines[-1].strip() and len(lines[-1]) + len(part) > LEGEND_WIDTH:
            lines.append("  ")
        lines[-1] += part
    return "\n".join(line.rstrip() for line in lines)


def place_legend(axis: Any, outside: bool) -> None:
    """Puts the legend beside the plot (for many runs, so it never covers a curve; long labels
    broken into lines, ``legend_label``) or in it, if anything drawn has a label."""
    handles, labels = axis.get_legend_handles_labels()
    if not handles:
        return
    if outside:
        labels = [legend_label(text) for text in labels]
        axis.legend(
            handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0
        )
    else:
        axis.legend(fontsize=7, loc="upper right")


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Writes a figure as PNG (whole or not at all), creating its folder."""
    path = Path(path)
    with writing(path, "the figure", then=AGAIN):
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as handle:
            figure.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return path


def seed_table(
    settings: list[Setting], sort: str = "final", against: tuple[str, str] | None = None
) -> tuple[list[str], list[list[Any]]]:
    """Gives one row per setting: its overrides, how many seeds completed, and the Estimate (mean,
    standard error and count) over its completed seeds of the final and best test loss (and of the
    IWAE bound), best first. With ``against`` (key, value), also each number's difference to the
    setting with that value instead of its own, paired by seed (``paired_difference``)."""
    keys = varying_keys(settings)
    settings = ranked_settings(settings, sort)
    metrics = {
        "final test loss": lambda job: job.final_test_loss,
        "best test loss": lambda job: job.best_test_loss,
        **optional_metrics([job for setting in settings for job in setting.jobs]),
    }
    baselines = baselines_of(settings, *against) if against else [None] * len(settings)
    columns = [*keys, "seeds", "completed", *(["paired with"] if against else [])]
    for name in metrics:
        columns.append(name)
        if against:
            columns.append(f"{name} minus {against[0]}={against[1]}")  # paired by seed
    rows = []
    for setting, baseline in zip(settings, baselines, strict=True):
        row: list[Any] = [short(setting.overrides.get(k, "")) for k in keys]
        row += [len(by_seed(setting.jobs)), len(by_seed(setting.completed))]
        if against:  # the baseline's overrides that tell settings apart, so that a pairing can be checked
            row.append(label(baseline.overrides, keys) if baseline else "")
        for value in metrics.values():
            row.append(mean_and_stderr(list(per_seed(setting.completed, value).values())))
            if against:
                row.append(paired_difference(setting, baseline, value))
        rows.append(row)
    return columns, rows


def seed_curves_figure(
    settings: list[Setting], title: str, sort: str = "final", against: tuple[str, str] | None = None
) -> Figure:
    """Gives each setting's mean test loss per epoch over its seeds (every run that reached the
    epoch, so that a sweep can be watched while it trains), with a band of one standard error; the
    numbers in the legend are the table's, mean +- stderr over the completed seeds. With ``against``
    (key, value), a second panel below gives each setting's paired difference to its baseline per
    epoch."""
    figure = Figure(figsize=(9, 10 if against else 5))
    axis, *below = figure.subplots(2 if against else 1, 1, sharex=True, squeeze=False)[:, 0]
    keys = varying_keys(settings)
    curves = []
    for setting in ranked_settings(settings, sort):  # the table's order
        epochs = sorted({epoch for job in setting.jobs for epoch, _ in job.curve})
        stats = [mean_and_stderr(list(per_seed(setting.jobs, loss_at(epoch)).values())) for epoch in epochs]
        if epochs:
            curves.append((setting, epochs, stats))

    def shown(job: Job) -> float:
        return shown_loss(job, sort)[1]

    for rank, (setting, epochs, stats) in enumerate(curves):
        means, band = mean_band(stats)
        started, completed = len(by_seed(setting.jobs)), len(by_seed(setting.completed))
        seeds = f"{started} seed{'s' if started > 1 else ''}"
        if completed < started:
            seeds = f"{completed} of {seeds} completed"
        final = mean_and_stderr(list(per_seed(setting.completed, shown).values()))
        if sort in BOUND_SORTS and 0 < final.n < completed:  # seeds that were not evaluated
            seeds += f", {completed - final.n} without a bound"
        name, quoted = label(setting.overrides, keys) or "all", final.quoted(count=False)
        # What the number is, named by a run that has it (a bound's k): one that was not evaluated has none.
        what = next((shown_loss(job, sort)[0] for job in setting.completed if math.isfinite(shown(job))), "")
        text = f"{name}: {what} {quoted} ({seeds})" if quoted else f"{name} ({seeds})"
        draw_ranked(axis, epochs, means, rank, len(curves), text, band=band)
    epoch_axis(axis, "test loss (negative ELBO, nats), mean +- stderr over seeds")
    axis.set_title(title)
    place_legend(axis, outside=True)
    if against:
        axis.set_xlabel("")
        ordered = [setting for setting, _, _ in curves]  # each in the colour it has above
        paired_curves(below[0], ordered, baselines_of(ordered, *against), against, keys)
    return figure


def mean_band(stats: list[Estimate]) -> tuple[list[float], tuple[list[float], list[float]]]:
    """Gives the means of ``mean_and_stderr`` results and the band of one standard error around them
    (none where a standard error is undefined)."""
    means = [mean for mean, _, _ in stats]
    errors = [0.0 if math.isnan(stderr) else stderr for _, stderr, _ in stats]
    return means, (
        [m - e for m, e in zip(means, errors, strict=True)],
        [m + e for m, e in zip(means, errors, strict=True)],
    )


def paired_curves(
    axis: Any,
    settings: list[Setting],
    baselines: list[Setting | None],
    against: tuple[str, str],
    keys: list[str],
) -> None:
    """Draws each setting's test loss minus its baseline's per epoch, paired by seed over the runs
    of both that reached the epoch (mean, band of one standard error), in the setting's rank colour;
    the legend gives the difference at the last epoch with its count of pairs."""
    axis.axhline(0.0, color=FAINT, linewidth=0.8, zorder=0)
    for rank, (setting, baseline) in enumerate(zip(settings, baselines, strict=True)):
        if baseline is None or baseline is setting:
            continue
        epochs = sorted({epoch for job in setting.jobs for epoch, _ in job.curve})
        stats = [paired(setting.jobs, baseline.jobs, loss_at(epoch)) for epoch in epochs]
        epochs, stats = [e for e, s in zip(epochs, stats, strict=True) if s[2]], [s for s in stats if s[2]]
        if not epochs:
            continue
        means, band = mean_band(stats)
        last, error, n = stats[-1]
        text = (
            f"{label(setting.overrides, keys)}: {last:+.2f} +- {error:.2f} ({n} pair{'s' if n != 1 else ''})"
        )
        draw_ranked(axis, epochs, means, rank, len(settings), text, band=band)
    epoch_axis(axis, "difference in test loss (nats)")
    axis.set_title(f"minus {against[0]}={against[1]}, paired by seed: mean +- stderr")
    place_legend(axis, outside=True)


def write_csv(columns: list[str], rows: list[list[Any]], path: Path) -> None:
    """Writes a table as CSV (each column of Estimates as three, ``spread``), in place of what is
    there (atomically: a reader, or a crash, finds the old table or the new one)."""
    columns, rows = spread(columns, rows)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    writer.writerows(rows)
    with writing(path, "the table", then=AGAIN):
        replace_text(path, text.getvalue())


def write_table(columns: list[str], rows: list[list[Any]], root: Path, name: str) -> str:
    """Writes a table as NAME.csv and NAME.md into ``root`` and gives the Markdown."""
    write_csv(columns, rows, root / f"{name}.csv")
    text = markdown(columns, rows)
    with writing(root / f"{name}.md", "the table", then=AGAIN):
        replace_text(root / f"{name}.md", text)
    return text


def report(
    root: Path, sort: str = "final", by_seed: bool = False, against: tuple[str, str] | None = None
) -> str:
    """Writes the report into ``root`` (``write_report``); gives its Markdown table."""
    return write_report(root, sort, by_seed, against)[0]


def write_report(
    root: Path, sort: str = "final", by_seed: bool = False, against: tuple[str, str] | None = None
) -> tuple[str, list[Setting], list[str]]:
    """Writes the report's table (report.csv, report.md) and figure (report.png) into ``root``, or
    with ``by_seed`` the table and figure over seeds (report_seeds.*), with ``against`` (key,
    value) each setting's paired difference to the one with that value; gives the Markdown table,
    grouped by seed the settings (else none), and the lines a reader should see below the table."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give a multirun folder or a folder of run folders")
    jobs = [read_job(folder, root) for folder in find_runs(root)]
    if not jobs:
        raise ConfigError(
            f"no runs below {root}: expected folders with metrics.jsonl or .hydra/overrides.yaml"
        )
    if sort == "bound":
        sort = bound_sort(jobs)
    write_csv(*runs_table(jobs), root / RUNS_CSV)
    notes = stale_notes(jobs, root)
    if sort == "evaluated":
        notes.append("ranked by the bound of evaluate (eval.json): no run computed a final IWAE bound")
    if by_seed or against:
        settings = group_by_seed(jobs)
        text = write_table(*seed_table(settings, sort, against), root, "report_seeds")
        save_figure(seed_curves_figure(settings, str(root), sort, against), root / "report_seeds.png")
        if against:
            notes = ambiguous_baselines(settings, *against) + notes
        return text, settings, repeated_seeds(settings) + notes
    text = write_table(*table(jobs, sort), root, "report")
    save_figure(curves_figure(jobs, str(root), sort), root / "report.png")
    return text, [], notes


def setting_of(text: str) -> tuple[str, str]:
    """Gives (key, value) of a command line's KEY=VALUE."""
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE, such as estimator=straight_through, got {text!r}"
        )
    return key, value


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        "vae_gumbel.report",
        "Compare the runs of a sweep or a folder of runs: a table on the standard output, and\n"
        "SWEEP_DIR/report.csv, report.md, report.png and runs.csv (report_seeds.* with the seed grouping).",
        [
            "outputs/multirun/2026-11-22/10-00-00-4242        # by final loss (validation, else test)",
            "outputs --sort best                              # every run under outputs, by its best loss",
            "outputs/best_bound/DATE_TIME --sort bound        # by the final IWAE bound, as a search selects",
            "SWEEP_DIR --group-by-seed                        # mean +- stderr over seeds, per setting",
            "SWEEP_DIR --against estimator=straight_through   # ... and differences, paired by seed",
        ],
    )
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, or any folder of run folders")
    parser.add_argument(
        "--sort",
        choices=SORTS,
        default="final",
        help="sort by final or best loss, or by the final IWAE bound with the most samples (what a "
        "sweep minimises when its runs compute one; else the bound of evaluate's eval.json); on the "
        "validation set for runs that held one out, else on the test set",
    )
    parser.add_argument(
        "--group-by-seed",
        action="store_true",
        help="one row per setting: mean, standard error and count over the jobs that differ only in seed",
    )
    parser.add_argument(
        "--against",
        type=setting_of,
        metavar="KEY=VALUE",
        help="with the seed grouping: each setting's difference to the setting that has KEY=VALUE "
        "instead (e.g. estimator=straight_through), paired by seed: mean, standard error and count",
    )
    args = parser.parse_args(argv)
    with one_line_errors():
        text, settings, notes = write_report(args.sweep_dir, args.sort, args.group_by_seed, args.against)
    print(text, end="")
    name = "report_seeds" if args.group_by_seed or args.against else "report"
    for line in notes:
        print(line)
    print(f"wrote {args.sweep_dir / name}.csv, {name}.md, {name}.png and runs.csv")
    if not args.against and (pairing := suggested_against(settings)):
        ordered = ["--sort", args.sort] if args.sort != "final" else []  # as this table was
        command = shell_command(
            "python", "-m", "vae_gumbel.report", args.sweep_dir, *ordered, "--against", "=".join(pairing)
        )
        print(f"each setting's difference to one of them, paired by seed: {command}")
    return 0
