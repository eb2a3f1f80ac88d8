"""Train the ReinMax MNIST-VAE comparison: every estimator of the papers' tables that this project
has, with the settings the papers give for it, over several seeds; then summarise it.

    python scripts/reinmax2023.py [--configurations 10x30 8x4 ...] [--estimators reinmax ...]
        [--seeds 10] [--first-seed 0] [--out outputs/reinmax2023]
        [--launcher stacked | stacked_slurm | ...]
        [--dry-run | --summary-only | --released RESULTS] [-- TRAIN OVERRIDES ...]

The ``--`` keeps the list options from taking the overrides (``data.root=...``) as values.

The set-up is ``experiment=reinmax2023`` (Liu et al., NeurIPS 2023; Wang & Bui, arXiv 2603.08257):
grey-level targets, 784-512-256 MLPs, batch 100, 160 epochs, a constant temperature. A latent
configuration is written categories x variables, as in the papers ("10x30": 30 variables of 10
categories). For each configuration and estimator, one stacked sweep over the seeds trains into
OUT/CONFIGURATION/ESTIMATOR, a folder per seed named for it, with the estimator's optimizer,
learning rate and temperature from SETTINGS. ``--first-seed`` adds seeds to a comparison already
run: ``--first-seed 10 --seeds 10`` trains seeds 10-19 beside 0-9, and the summary counts all. With
``--launcher stacked`` (the default) the sweeps train here, one after another on this console, or
``--at-once`` of them at a time (on a GPU, small stacks side by side keep it busier than one); with
``stacked_slurm`` each seed stack trains as one SLURM job, ``--at-once`` sweeps (8) waiting for
theirs at a time. A sweep that does not train on this console writes its output to
OUT/CONFIGURATION/ESTIMATOR.log.

A Ctrl-C, SIGTERM or a closed terminal is passed on to every sweep once (each runs in a session of
its own): runs here stop at the next step with their last epoch kept (SLURM jobs go on), nothing
new starts, and the script ends in one line with the command that continues the comparison (the
same one, with ``resume=last``). A Ctrl-Z suspends the sweeps running here with the script (their
SLURM jobs go on), and ``fg`` or ``bg`` continues them.

The summary gives, per configuration and estimator, the mean, standard error and count over the
seeds that completed of the papers' two numbers: the training loss of the last epoch (one exact
one-hot sample per image, ``train/loss_unrelaxed``) and the one-sample test negative ELBO
(``test/loss``). It writes OUT/reinmax2023.csv and OUT/reinmax2023.md and prints the Markdown,
and OUT/runs.csv with everything each run recorded. Beside each number the Markdown puts the same
number from the authors' released runs (docs/reinmax2023_released.csv) and how many standard errors
of the difference ours lies from it, where ours ran as many epochs (``--theirs`` names another such
file); ``--released RESULTS [--released-epoch E]`` makes that file from their result files.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from vae_gumbel import commands
from vae_gumbel.commands import at_least
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import check_writable, replace_text
from vae_gumbel.interrupts import STARTING_POINT, handling, shell_command, without
from vae_gumbel.report import gathered, write_csv, write_runs_csv
from vae_gumbel.run_folder import RunFolder, find_runs, status_now
from vae_gumbel.seeds import Estimate, mean_and_stderr
from vae_gumbel.tracking import read_metrics

# Categories x variables -> (model.categorical_dim, model.latent_dim).
CONFIGURATIONS = {
    "8x4": (8, 4),
    "4x24": (4, 24),
    "8x16": (8, 16),
    "16x12": (16, 12),
    "64x8": (64, 8),
    "10x30": (10, 30),
}


class Estimator(NamedTuple):
    label: str  # the papers' tables' name
    code: str  # their public code's name, which their result files' names hold too
    overrides: list[str]  # what makes ours the same estimator


# Our estimator -> the papers' estimator: their code's Gumbel-Rao averages 100 conditional draws.
ESTIMATORS = {
    "straight_through": Estimator("STGS", "gumbel", []),
    "softmax_straight_through": Estimator("ST", "st", []),
    "gumbel_rao": Estimator("GR-MC100", "rao_gumbel", ["estimator.rao_samples=100"]),
    "gapped_straight_through": Estimator("GST-1.0", "gst-1.0", []),
    "reinmax": Estimator("ReinMax", "reinmax", []),
    "reinmax_rao": Estimator("ReinMax-Rao", "reinmax_v3", []),  # 100 conditional draws, as packaged
}


class Setting(NamedTuple):
    optimizer: str  # optim=adam | radam
    lr: float
    tau: float


# (configuration, estimator) -> the optimizer, learning rate and temperature of the papers' grid
# search, as Wang & Bui's public code lists them ("according to table 8", hyperparameters.py of
# danielwang0452/ReinMax_ASC; its 4x24 key is written (24, 4)). Its ReinMax rows are exactly the
# settings of Liu et al.'s scripts (mnist_vae/reinmax_C_L.sh of LiyuanLucasLiu/ReinMax).
SETTINGS = {
    ("8x4", "straight_through"): Setting("adam", 3e-4, 0.5),
    ("8x4", "gumbel_rao"): Setting("adam", 5e-4, 0.5),
    ("8x4", "gapped_straight_through"): Setting("adam", 5e-4, 1.0),
    ("8x4", "softmax_straight_through"): Setting("adam", 1e-3, 1.3),
    ("8x4", "reinmax"): Setting("adam", 5e-4, 1.3),
    ("4x24", "straight_through"): Setting("radam", 5e-4, 0.3),
    ("4x24", "gumbel_rao"): Setting("radam", 5e-4, 0.3),
    ("4x24", "gapped_straight_through"): Setting("radam", 5e-4, 0.5),
    ("4x24", "softmax_straight_through"): Setting("radam", 1e-3, 1.5),
    ("4x24", "reinmax"): Setting("radam", 5e-4, 1.5),
    ("8x16", "straight_through"): Setting("radam", 5e-4, 0.5),
    ("8x16", "gumbel_rao"): Setting("radam", 7e-4, 0.7),
    ("8x16", "gapped_straight_through"): Setting("radam", 7e-4, 0.5),
    ("8x16", "softmax_straight_through"): Setting("radam", 1e-3, 1.5),
    ("8x16", "reinmax"): Setting("radam", 7e-4, 1.5),
    ("16x12", "straight_through"): Setting("radam", 7e-4, 0.7),
    ("16x12", "gumbel_rao"): Setting("adam", 5e-4, 1.0),
    ("16x12", "gapped_straight_through"): Setting("radam", 7e-4, 0.5),
    ("16x12", "softmax_straight_through"): Setting("adam", 5e-4, 1.5),
    ("16x12", "reinmax"): Setting("radam", 7e-4, 1.5),
    ("64x8", "straight_through"): Setting("radam", 7e-4, 0.7),
    ("64x8", "gumbel_rao"): Setting("adam", 7e-4, 2.0),
    ("64x8", "gapped_straight_through"): Setting("radam", 7e-4, 0.7),
    ("64x8", "softmax_straight_through"): Setting("adam", 5e-4, 1.5),
    ("64x8", "reinmax"): Setting("radam", 5e-4, 1.5),
    ("10x30", "straight_through"): Setting("radam", 5e-4, 0.5),
    ("10x30", "gumbel_rao"): Setting("radam", 5e-4, 1.0),
    ("10x30", "gapped_straight_through"): Setting("radam", 5e-4, 0.5),
    ("10x30", "softmax_straight_through"): Setting("radam", 7e-3, 1.4),
    ("10x30", "reinmax"): Setting("radam", 5e-4, 1.3),
    # ReinMax-Rao (their reinmax_v3): the list gives it lr 5e-4 and tau 1 everywhere, but its
    # authors searched a grid (Adam and RAdam, lr 3e-4 to 7e-4, tau 0.1 to 1.5) over ten seeds and
    # chose by the mean training loss (process_results.py of DiscreteNumericalMethodsASC); these are
    # the grid points that rule picks from their released runs (RELEASED).
    ("8x4", "reinmax_rao"): Setting("adam", 5e-4, 1.0),
    ("4x24", "reinmax_rao"): Setting("radam", 5e-4, 0.7),
    ("8x16", "reinmax_rao"): Setting("radam", 7e-4, 1.0),
    ("16x12", "reinmax_rao"): Setting("radam", 7e-4, 1.0),
    ("64x8", "reinmax_rao"): Setting("radam", 7e-4, 1.0),
    ("10x30", "reinmax_rao"): Setting("radam", 5e-4, 0.7),
}

# The papers' two numbers, from each run's last epoch.
METRICS = {"train loss (last epoch)": "train/loss_unrelaxed", "test negative ELBO": "test/loss"}


# Where the seed stacks train: in the sweep's own process, or each as a submitted job.
LAUNCHERS = ("stacked", "stacked_slurm", "stacked_submitit_local")


def sweep_command(
    configuration: str,
    estimator: str,
    seeds: range,
    folder: Path,
    overrides: list[str],
    launcher: str = "stacked",
) -> list[str]:
    """Gives the command that trains one estimator on one configuration over the seeds, as one stack,
    each seed's run in a folder named for the seed (so that later seeds join earlier ones)."""
    categories, variables = CONFIGURATIONS[configuration]
    setting = SETTINGS[configuration, estimator]
    return [
        sys.executable,
        "-m",
        "vae_gumbel.train",
        "--multirun",
        f"hydra/launcher={launcher}",
        "experiment=reinmax2023",
        f"model.categorical_dim={categories}",
        f"model.latent_dim={variables}",
        f"estimator={estimator}",
        *ESTIMATORS[estimator].overrides,
        f"optim={setting.optimizer}",
        f"optim.lr={setting.lr:g}",
        f"temperature.initial={setting.tau:g}",
        f"seed={','.join(str(seed) for seed in seeds)}",
        f"hydra.sweep.dir={folder}",
        "hydra.sweep.subdir=${seed}",
        *overrides,
    ]


# The authors' own runs of this comparison, released with Wang & Bui's code: a file per run, a line
# per epoch, the training loss first and the test loss fourth (results/ of
# danielwang0452/DiscreteNumericalMethodsASC, commit c9ef131), summarised in THEIRS.
RELEASED = "github.com/danielwang0452/DiscreteNumericalMethodsASC, commit c9ef131, results/"
RELEASED_COLUMNS = {"train loss (last epoch)": 0, "test negative ELBO": 3}
THEIRS = Path(__file__).resolve().parent.parent / "docs" / "reinmax2023_released.csv"


def released_file(results: Path, configuration: str, estimator: str, seed: int) -> Path:
    """Gives the authors' result file of one seed of an estimator, with SETTINGS' settings."""
    categories, variables = CONFIGURATIONS[configuration]
    setting = SETTINGS[configuration, estimator]
    optimizer = {"adam": "Adam", "radam": "RAdam"}[setting.optimizer]
    return results / (
        f"results_seed{seed}_{ESTIMATORS[estimator].code}_cat{categories}_lat{variables}"
        f"_opt{optimizer}_lr{float(setting.lr)}_temp{float(setting.tau)}.txt"
    )


def row_of(configuration: str, estimator: str, epochs: int, values: dict[str, list[float]]) -> dict[str, Any]:
    """Gives a summary row: the estimator's names and settings, and for each of METRICS the mean,
    standard error and count over seeds of ``values`` (an Estimate)."""
    setting = SETTINGS[configuration, estimator]
    named = ESTIMATORS[estimator]
    row: dict[str, Any] = {
        "configuration": configuration,
        "estimator": estimator,
        "their name": f"{named.label} (their code: {named.code})",
        "optimizer, lr, tau": f"{setting.optimizer}, {setting.lr:g}, {setting.tau:g}",
        "epochs": epochs,
    }
    return row | {name: mean_and_stderr(values[name]) for name in METRICS}


def summary_rows(out: Path, configurations: list[str], estimators: list[str]) -> list[dict[str, Any]]:
    """Gives one row per configuration and estimator trained under ``out``: mean, standard error and
    count over its seeds' last epochs of each of METRICS, of the runs that completed (a run that
    stopped early would bring an earlier epoch's numbers into the mean), as an Estimate."""
    rows = []
    for configuration in configurations:
        for estimator in estimators:
            runs = [RunFolder(run) for run in find_runs(out / configuration / estimator)]
            completed = [run for run in runs if status_now(run).get("status") == "completed"]
            last = [records[-1] for records in (read_metrics(run.metrics) for run in completed) if records]
            if not last:
                continue
            values = {
                name: [float(record.get(key, "nan")) for record in last] for name, key in METRICS.items()
            }
            rows.append(row_of(configuration, estimator, min(record["epoch"] for record in last), values))
    return rows


def released_rows(
    results: Path, configurations: list[str], estimators: list[str], seeds: int, epochs: int = 160
) -> list[dict[str, Any]]:
    """Gives the summary rows of the authors' released runs in ``results`` (RELEASED) after
    ``epochs`` epochs (160: their last): the numbers of that epoch, of the seeds 0..seeds-1 whose
    file reaches it."""
    rows = []
    for configuration in configurations:
        for estimator in estimators:
            last = []
            for seed in range(seeds):
                file = released_file(results, configuration, estimator, seed)
                lines = file.read_text().split() if file.is_file() else []
                if len(lines) >= epochs:
                    try:
                        last.append([float(value) for value in lines[epochs - 1].split(",")])
                    except ValueError:
                        sys.exit(f"error: {file}, line {epochs}, is not a line of numbers; is it their file?")
            if last:
                values = {name: [line[i] for line in last] for name, i in RELEASED_COLUMNS.items()}
                rows.append(row_of(configuration, estimator, epochs, values))
    return rows


def read_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Gives the epoch and METRICS of each (configuration, estimator) of a summary CSV that
    ``write_rows`` wrote."""
    try:
        return {
            (row["configuration"], row["estimator"]): {"epochs": int(row["epochs"])}
            | {name: gathered(row, name) for name in METRICS}
            for row in csv.DictReader(path.read_text().splitlines())
        }
    except OSError as err:
        sys.exit(f"error: --theirs {path} cannot be read ({err.strerror}); give a file that --released wrote")
    except (KeyError, ValueError, TypeError) as err:
        sys.exit(f"error: --theirs {path} is not a summary that --released wrote ({err!r} in it)")


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Writes summary rows as CSV, each metric as its mean, standard error and count."""
    columns = list(rows[0])
    write_csv(columns, [[row[column] for column in columns] for row in rows], path)


def apart(ours: Estimate, theirs: Estimate) -> str:
    """Gives ours minus theirs and how many standard errors of that difference it is, bold beyond 3."""
    difference = ours.mean - theirs.mean
    stderr = math.hypot(ours.stderr, theirs.stderr)
    if not (math.isfinite(difference) and stderr > 0):
        return ""
    text = f"{difference:+.2f} ({abs(difference) / stderr:.1f} SE)"
    return f"**{text}**" if abs(difference) > 3 * stderr else text


def markdown(rows: list[dict[str, Any]], theirs: dict[tuple[str, str], dict[str, Any]] | None = None) -> str:
    """Gives the rows as a Markdown table, each metric as mean +- standard error (seeds); with
    ``theirs`` (``read_rows``), the authors' released numbers of the same epoch beside each, and ours
    minus theirs in standard errors of the difference (bold beyond three)."""
    header = ["configuration", "estimator", "optimizer, lr, tau", "epochs"]
    for name in METRICS:
        header += [f"{name} (seeds)", *(["theirs", "ours - theirs"] if theirs else [])]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        cells = [
            row["configuration"],
            f"`{row['estimator']}` ({row['their name']})",
            row["optimizer, lr, tau"],
            str(row["epochs"]),
        ]
        for name in METRICS:
            cells.append(row[name].quoted())
            if theirs:
                same = theirs.get((row["configuration"], row["estimator"]), {})
                their = same.get(name) if same.get("epochs") == row["epochs"] else None
                cells += [their.quoted(), apart(row[name], their)] if their else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# The signals that stop the comparison, and the one each sweep gets for it, once: a closed terminal
# (SIGHUP) no longer reaches a sweep in a session of its own, and the trainer stops cleanly on SIGTERM.
STOP_SIGNALS = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}


@contextlib.contextmanager
def passing_on_stops(running: dict[Any, subprocess.Popen]) -> Iterator[list[int]]:
    """For the duration, a SIGINT, SIGTERM or SIGHUP to this script goes on to every sweep in
    ``running`` (STOP_SIGNALS; to its whole session: the sweep and any process it started) and into
    the list this gives, and a Ctrl-Z (SIGTSTP) suspends the sweeps with the script until a ``fg``
    or ``bg`` continues it.

    Each sweep runs in a session of its own, so a terminal's Ctrl-C reaches it only this way, once:
    a second signal would stop its runs at once instead of at the next step. A terminal's Ctrl-Z
    would stop the script alone and leave its sweeps training; they get SIGSTOP, since a session
    of their own discards SIGTSTP."""
    received: list[int] = []

    def signal_sweeps(signum: int) -> None:
        for process in running.values():
            with contextlib.suppress(ProcessLookupError):  # it may have ended just now
                os.killpg(process.pid, signum)

    def pass_on(signum: int, frame: object) -> None:
        received.append(signum)
        signal_sweeps(STOP_SIGNALS[signum])

    def suspend(signum: int, frame: object) -> None:
        signal_sweeps(signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here, as a Ctrl-Z would, until SIGCONT
        signal.signal(signal.SIGTSTP, suspend)
        signal_sweeps(signal.SIGCONT)

    with handling(STOP_SIGNALS, pass_on), handling([signal.SIGTSTP], suspend):
        yield received


def sweep_log(out: Path, configuration: str, estimator: str) -> Path:
    """Gives the file a sweep that does not train on this console writes its output to."""
    return out / configuration / f"{estimator}.log"


def train_sweeps(
    sweeps: dict[tuple[str, str], list[str]], out: Path, at_once: int, on_console: bool
) -> tuple[list[tuple[str, str]], int | None]:
    """Runs up to ``at_once`` sweeps at a time until all have ended, or a stop signal came (then
    nothing new starts, and the running ones stop with their last epoch kept). With ``on_console``
    (one at a time) a sweep's output goes to this console and the first sweep that fails ends the
    comparison; otherwise it goes to OUT/CONFIGURATION/ESTIMATOR.log. Gives the sweeps that
    failed, (configuration, estimator), and the stop signal that came, if one did."""
    waiting = list(sweeps.items())
    running: dict[tuple[str, str], subprocess.Popen] = {}
    failed: list[tuple[str, str]] = []
    with passing_on_stops(running) as received:

        def may_start() -> bool:
            return not received and not (on_console and failed)

        def start(configuration: str, estimator: str, command: list[str]) -> None:
            if on_console:
                print(f"training {estimator} on {configuration}", flush=True)
                process = subprocess.Popen(command, start_new_session=True)
            else:
                log_file = sweep_log(out, configuration, estimator)
                log_file.parent.mkdir(parents=True, exist_ok=True)
                with log_file.open("w") as output:
                    process = subprocess.Popen(
                        command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
                    )
                print(f"started {estimator} on {configuration}; its output: {log_file}", flush=True)
            running[configuration, estimator] = process
            if received:  # a signal came while it started, before it was running to pass it on to
                os.killpg(process.pid, STOP_SIGNALS[received[0]])

        while running or (waiting and may_start()):
            while waiting and len(running) < at_once and may_start():
                (configuration, estimator), command = waiting.pop(0)
                start(configuration, estimator, command)
            time.sleep(0.2)
            for (configuration, estimator), process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[configuration, estimator]
                if process.returncode != 0 and not received:  # a stopped sweep has not failed
                    failed.append((configuration, estimator))
    return failed, (received[0] if received else None)


def continue_command(args: argparse.Namespace, out: Path) -> str:
    """Gives the command line that continues this comparison where it stopped (``resume=last``)."""
    return shell_command(
        *("python", os.path.relpath(__file__), "--configurations", *args.configurations),
        *("--estimators", *args.estimators, "--seeds", args.seeds, "--first-seed", args.first_seed),
        *("--out", out),
        *("--launcher", args.launcher, "--at-once", args.at_once, "--"),
        *without(args.overrides, STARTING_POINT),
        "resume=last",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument(
        "--configurations",
        nargs="+",
        choices=list(CONFIGURATIONS),
        default=["10x30"],
        help="latent configurations, categories x variables",
    )
    parser.add_argument(
        "--estimators",
        nargs="+",
        choices=list(ESTIMATORS),
        default=list(ESTIMATORS),
        help="estimators trained",
    )
    parser.add_argument(
        "--seeds",
        type=at_least(1),
        default=10,
        help="how many seeds per configuration and estimator: 0..N-1, or from --first-seed",
    )
    parser.add_argument(
        "--first-seed",
        type=at_least(0),
        default=0,
        metavar="S",
        help="train seeds S..S+N-1 instead, to add seeds to a comparison already run (the summary "
        "counts every seed under --out)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/reinmax2023"), help="folder of the sweeps and the summary"
    )
    parser.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="stacked",
        help="where each seed stack trains: stacked, here and one sweep after another; stacked_slurm "
        "(or stacked_submitit_local), a submitted job per stack, --at-once sweeps at a time",
    )
    parser.add_argument(
        "--at-once",
        type=at_least(1),
        default=None,
        help="the most sweeps at a time: with stacked, training here (default 1, one after another on "
        "this console); with a submitting launcher, waiting for their jobs (default 8; each in a "
        "process of about 0.5 GB on this machine)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="print the training commands, run nothing")
    what.add_argument("--summary-only", action="store_true", help="summarise the runs already under --out")
    what.add_argument(
        "--released",
        type=Path,
        metavar="RESULTS",
        help="summarise the authors' released runs in RESULTS (their results/ folder) instead, into "
        "--out/reinmax2023_released.csv and .md; docs/reinmax2023_released.csv, which every summary "
        "puts beside ours, is that file for all configurations and estimators",
    )
    parser.add_argument(
        "--released-epoch",
        type=at_least(1),
        default=160,
        metavar="E",
        help="with --released: the epoch whose numbers to take (default 160, their last), to compare "
        "shorter runs of ours at the same epoch (--theirs)",
    )
    parser.add_argument(
        "--theirs",
        type=Path,
        metavar="CSV",
        help="the authors' numbers that the summary puts beside ours, where their epoch is ours "
        "(default docs/reinmax2023_released.csv of this checkout, epoch 160, where there is one)",
    )
    parser.add_argument("overrides", nargs="*", help="training overrides, after -- (e.g. -- resume=last)")
    args = parser.parse_args(argv)
    if args.at_once is None:
        args.at_once = 1 if args.launcher == "stacked" else 8
    out = args.out.resolve()
    if args.released is not None:
        summarise_released(
            args.released, args.configurations, args.estimators, args.seeds, args.released_epoch, out
        )
        return
    if not (args.summary_only or args.dry_run):
        with one_line_errors():  # before the sweeps, which take hours
            check_writable(out, "--out")
    if not args.summary_only:
        sweeps = {
            (configuration, estimator): sweep_command(
                configuration,
                estimator,
                range(args.first_seed, args.first_seed + args.seeds),
                out / configuration / estimator,
                args.overrides,
                args.launcher,
            )
            for configuration in args.configurations
            for estimator in args.estimators
        }
        if args.dry_run:
            print("\n".join(shell_command("python", *command[1:]) for command in sweeps.values()))
            return
        on_console = args.launcher == "stacked" and args.at_once == 1
        failed, stopped_by = train_sweeps(sweeps, out, args.at_once, on_console)
        if stopped_by is not None:
            where = (
                "the runs stopped with their last epoch kept (each job's status.json says where)"
                if args.launcher == "stacked"
                else "the sweeps stopped waiting, and jobs on a cluster go on (squeue; scancel stops them); "
                "once they have ended"
            )
            print(
                f"error: interrupted by {signal.Signals(stopped_by).name}: {where}; continue the comparison "
                f"with: {continue_command(args, out)}",
                file=sys.stderr,
            )
            sys.exit(128 + stopped_by)
        if failed and on_console:
            sys.exit(f"error: the sweep of {failed[0][1]} on {failed[0][0]} failed; see its output above")
        if failed:
            logs = ", ".join(str(sweep_log(out, *sweep)) for sweep in failed)
            sys.exit(f"error: {len(failed)} of {len(sweeps)} sweeps failed; see {logs}")
    rows = summary_rows(out, args.configurations, args.estimators)
    if not rows:
        sys.exit(f"error: no finished runs under {out}")
    write_rows(rows, out / "reinmax2023.csv")
    theirs = args.theirs or (THEIRS if THEIRS.is_file() else None)
    table = markdown(rows, read_rows(theirs) if theirs else None)
    replace_text(out / "reinmax2023.md", table)
    runs = write_runs_csv(out)
    print(table + f"wrote {out / 'reinmax2023.csv'}, {out / 'reinmax2023.md'} and {runs} (every run)")


def summarise_released(
    results: Path, configurations: list[str], estimators: list[str], seeds: int, epoch: int, out: Path
) -> None:
    """Writes and prints the summary of the authors' released runs in ``results`` after ``epoch``."""
    rows = released_rows(results, configurations, estimators, seeds, epoch)
    if not rows:
        example = released_file(results, configurations[0], estimators[0], 0)
        sys.exit(
            f"error: no released runs of these estimators that reach epoch {epoch} in {results} "
            f"(such as {example.name}); "
            f"give their results/ folder ({RELEASED})"
        )
    with one_line_errors():
        check_writable(out, "--out")
    write_rows(rows, out / "reinmax2023_released.csv")
    table = markdown(rows)
    replace_text(out / "reinmax2023_released.md", table)
    print(table + f"wrote {out / 'reinmax2023_released.csv'} and {out / 'reinmax2023_released.md'}")


if __name__ == "__main__":
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
