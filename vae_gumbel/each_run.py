"""A command given a folder of runs (a sweep, or a folder of sweeps) does its work on each run in
turn, in this one process: ``evaluate`` writes each run's eval.json, ``sample`` draws each run's grid.

One run's failure does not stop the others; the command names the runs that failed and exits 1. A
Ctrl-C says which runs kept what was done for them.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vae_gumbel.device import resolve_device
from vae_gumbel.errors import ConfigError, Interrupted, RunsFailed, VaeGumbelError, first_line
from vae_gumbel.run_folder import RunFolder, find_runs, is_run, why_no_checkpoint

T = TypeVar("T")


@dataclass(frozen=True)
class Work:
    """How a command speaks of what it does to a run: ``evaluates``, ``evaluating``, ``evaluated``,
    what a run keeps of it (``eval.json``; written whole or not at all) and what ``out=`` would name
    for one run (``evaluation``)."""

    does: str
    doing: str
    done: str
    output: str
    one: str


def runs_in(path: str | Path) -> list[Path] | None:
    """Gives the runs below ``path`` when it is a folder of runs, in natural order; None when it
    names one checkpoint or one run (or nothing that holds a run)."""
    folder = Path(path).expanduser()
    if not folder.is_dir() or is_run(folder):
        return None
    return find_runs(folder) or None


def each_run(
    folder: Path,
    runs: list[Path],
    settings: Any,
    work: Callable[[Path], T],
    show: Callable[[T], str],
    words: Work,
) -> list[T]:
    """Does ``work`` on each run's ``settings.which`` checkpoint in turn, printing the run before and
    ``show`` of what the work gave after; gives what it gave for each run done. First, once for all
    runs, it refuses ``settings.out`` (one file) and a ``settings.device`` that is not there. A run
    without the checkpoint is passed over with the reason; a run whose work fails is named with its
    error and the others go on, and then this raises RunsFailed, which counts them."""
    if settings.out:
        raise ConfigError(
            f"out= names one file, and {folder} is a folder of {len(runs)} runs: leave out= unset "
            f"(each run's {words.one} goes into its own folder) or give one run"
        )
    resolve_device(settings.device, key="device")  # a device that is not there fails every run: say it once
    which = settings.which
    done: list[T] = []
    failed: list[Path] = []
    for number, run in enumerate(runs, 1):
        file = RunFolder(run).checkpoint(which)
        print(f"[{number}/{len(runs)}] {run}")
        if not file.is_file():
            print(f"  passed over: {why_no_checkpoint(run, which)}")
            continue
        try:
            done.append(work(file))
        except (Interrupted, KeyboardInterrupt) as stopped:
            signum = getattr(stopped, "signum", signal.SIGINT)
            raise Interrupted(
                signum,
                f"interrupted by {signal.Signals(signum).name} while {words.doing} {run}: nothing was "
                f"written for it, and the runs {words.done} before it ({len(done)}) keep their "
                f"{words.output}; the same command {words.does} every run again",
            ) from None
        except VaeGumbelError as err:
            failed.append(run)
            print(f"  error: {first_line(err)}")
            continue
        print(show(done[-1]))
    if failed:
        named = ", ".join(str(run.relative_to(folder)) for run in failed)
        done_line = summary_line(words, done, runs, folder)
        raise RunsFailed(f"{done_line}; {len(failed)} failed ({named}), each says why above")
    return done


def summary_line(words: Work, done: list, runs: list[Path], folder: Path) -> str:
    """Says how many runs of the folder were done."""
    return f"{words.done} {len(done)} of {len(runs)} runs in {folder}"
