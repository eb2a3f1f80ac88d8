"""Training speed under each thread setting, on an idle machine and on a busy one, side by side.

    python scripts/busy_machine.py [--settings auto null 1] [--rounds 2] [--passive]
        [--out outputs/bench/busy_machine] [TRAIN OVERRIDES ...]

For each round, and each ``trainer.num_threads`` setting in turn, runs ``python -m
vae_gumbel.train`` in three situations:

- ``idle``: alone;
- ``busy``: beside one process that keeps one core busy (a Python loop, as another user's job);
- ``pair``: two of our runs with the same setting at once.

With ``--passive`` each situation also runs ``null`` (every core) with ``OMP_WAIT_POLICY=PASSIVE``,
OpenMP threads that sleep instead of spinning while they wait. Reports the median training
images/s of each run's epochs (from ``metrics.jsonl``; for ``pair``, of both runs) and the
threads ``auto`` chose. Writes ``busy_machine.json`` into a dated folder under ``--out`` and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vae_gumbel import commands
from vae_gumbel.commands import at_least
from vae_gumbel.errors import one_line_errors
from vae_gumbel.files import dated_folder
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.threads import usable_cores
from vae_gumbel.tracking import read_metrics

SITUATIONS = ("idle", "busy", "pair")
BUSY_LOOP = "while True: pass"


def start_run(folder: RunFolder, setting: str, passive: bool, overrides: list[str]) -> subprocess.Popen:
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE") if passive else None
    command = [sys.executable, "-m", "vae_gumbel.train", "trainer.progress=false"]
    command += [*overrides, f"trainer.num_threads={setting}", f"hydra.run.dir={folder.path}"]
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen, folder: RunFolder) -> list[float]:
    """Waits for a run; gives its epochs' training images/s, or exits naming its error."""
    _, stderr = process.communicate()
    if process.returncode != 0:
        sys.exit(f"error: the run in {folder.path} failed (exit code {process.returncode}): {stderr[-500:]}")
    return [record["throughput/train_img_s"] for record in read_metrics(folder.metrics)]


def chosen_threads(folder: RunFolder) -> str:
    """Gives the thread counts a run under auto moved through, from its log ("unchanged" when it
    never moved)."""
    moves = [
        line.split("CPU threads: ", 1)[1].split(" (")[0]
        for line in folder.log.read_text().splitlines()
        if "CPU threads: " in line
    ]
    return ", ".join(moves) if moves else "unchanged"


def measure(situation: str, name: str, setting: str, passive: bool, out: Path, overrides: list[str]) -> dict:
    """Runs one situation with one setting into folders named SITUATION_NAME_I; gives the runs'
    epochs' images/s and the threads auto chose."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if situation == "busy" else None
    try:
        if busy is not None:
            time.sleep(1.0)  # the busy loop is running before the run looks at the machine
        folders = [RunFolder(out / f"{situation}_{name}_{i}") for i in range(2 if situation == "pair" else 1)]
        processes = [start_run(folder, setting, passive, overrides) for folder in folders]
        rates = [
            rate
            for process, folder in zip(processes, folders, strict=True)
            for rate in finish(process, folder)
        ]
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    threads = chosen_threads(folders[0]) if setting == "auto" else "fixed"
    return {"situation": situation, "img_s": rates, "threads": threads}


def thread_setting(text: str) -> str:
    """An argparse type: a value of trainer.num_threads. A training override given after the list
    would otherwise be taken for one, and fail only minutes later."""
    if text in ("auto", "null") or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(
        f"must be auto, null or a number >= 1, got {text!r} (put training overrides after --)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--settings",
        nargs="+",
        type=thread_setting,
        default=["auto", "null", "1"],
        help="trainer.num_threads values",
    )
    parser.add_argument(
        "--rounds", type=at_least(1), default=2, help="each measurement this often, alternating"
    )
    parser.add_argument("--passive", action="store_true", help="also null with OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/bench/busy_machine"),
        help="where each measurement gets a dated folder",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="training overrides (e.g. data.train_limit=20000); after --settings, put -- before them",
    )
    args = parser.parse_args(argv)
    with one_line_errors():  # before the measurement, which takes minutes
        out = dated_folder(args.out)
    variants = [(setting, setting, False) for setting in args.settings]
    if args.passive:
        variants.append(("null", "null, OMP passive", True))
    results = []
    for round_ in range(args.rounds):
        for situation in SITUATIONS:
            for setting, label, passive in variants:
                name = f"r{round_}_{label.replace(', ', '_').replace(' ', '_')}"
                measured = measure(situation, name, setting, passive, out, args.overrides)
                results.append({"setting": label, **measured})
                print(
                    f"{situation:5s} {label:20s} median {statistics.median(results[-1]['img_s']):7.0f} img/s",
                    flush=True,
                )
    rows = []
    for situation in SITUATIONS:
        for _, label, _ in variants:
            runs = [r for r in results if r["situation"] == situation and r["setting"] == label]
            rates = [rate for run in runs for rate in run["img_s"]]
            threads = "; ".join(sorted({run["threads"] for run in runs}))
            rows.append(
                {
                    "situation": situation,
                    "setting": label,
                    "median_img_s": statistics.median(rates),
                    "min_img_s": min(rates),
                    "max_img_s": max(rates),
                    "threads": threads,
                }
            )
    report = {
        "cores": usable_cores(),
        "overrides": args.overrides,
        "rounds": args.rounds,
        "rows": rows,
        "runs": results,
    }
    (out / "busy_machine.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"{usable_cores()} cores; overrides: {' '.join(args.overrides) or '(none)'}; {args.rounds} rounds",
        "",
        "| situation | trainer.num_threads | images/s per run (median) | range | auto chose |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {row['situation']} | {row['setting']} | {row['median_img_s']:,.0f} | "
        f"{row['min_img_s']:,.0f}-{row['max_img_s']:,.0f} | {row['threads']} |"
        for row in rows
    ]
    print("\n".join(lines))
    print(f"wrote {out / 'busy_machine.json'}")


if __name__ == "__main__":
    commands.on_interrupt_say(commands.TIMING_INTERRUPTED)
    commands.run(main)  # a Ctrl-C ends it in one line, --version names the versions
