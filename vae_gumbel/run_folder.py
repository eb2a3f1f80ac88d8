"""The layout of a run folder: the one place that spells its paths.

RUN/.hydra/config.yaml, overrides.yaml   the config and the command-line overrides of the run in
RUN/.hydra/hydra.yaml                    the folder, and Hydra's config, in Hydra's format
RUN/train.log                            the log
RUN/metrics.jsonl                        one JSON object per epoch
RUN/status.json                          how the run ended (training, while it trains)
RUN/tensorboard/                         TensorBoard event files
RUN/checkpoints/last.pt, best.pt         the latest checkpoint and the one with the lowest validation
                                         loss (test loss if the run holds no validation set out)
RUN/samples/*.png                        sample grids and code-usage maps
RUN/eval.json                            the importance-weighted evaluation
RUN/eval_val.json                        the same on the validation set (eval.final_iwae_on=val)
RUN/timeline.json                        with trainer.timeline=true: the wall time of each phase
RUN/.lock                                held by the process that trains into the folder
SWEEP/multirun.yaml                      Hydra's record of a sweep: its config and command line
SWEEP/timeline_jobs_FIRST-LAST.json      the same for a batch of jobs of a stacked sweep
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from vae_gumbel.errors import CheckpointError, ConfigError, FolderBusy, exit_in_one_line
from vae_gumbel.files import check_writable, partial_files

try:
    import fcntl  # the run folder's lock
except ImportError:  # not a POSIX system: no lock
    fcntl = None

log = logging.getLogger("vae_gumbel.train")

CHECKPOINTS = ("best", "last")
# The folder of a run that holds them, as {which}.pt.
CHECKPOINT_FOLDER = "checkpoints"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def hydra_file(self, name: str) -> Path:
        """Gives .hydra/{name}: config.yaml, hydra.yaml or overrides.yaml."""
        return self.path / ".hydra" / name

    @property
    def config(self) -> Path:
        return self.hydra_file("config.yaml")

    def launch_directory(self) -> Path | None:
        """Gives the directory the run was launched from (Hydra's ``runtime.cwd``, which its
        .hydra/hydra.yaml records): what its relative paths, such as ``data.root``, are relative
        to; None where the folder does not say (a run started from Python, a damaged record)."""
        import yaml

        try:
            with self.hydra_file("hydra.yaml").open() as handle:
                record = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            return Path(record["hydra"]["runtime"]["cwd"])
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return None

    @property
    def overrides(self) -> Path:
        return self.hydra_file("overrides.yaml")

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def eval_json(self) -> Path:
        return self.path / "eval.json"

    def eval_json_of(self, split: str) -> Path:
        """Gives the file of the importance-weighted evaluation on ``split``: eval.json for test."""
        return self.eval_json if split == "test" else self.path / f"eval_{split}.json"

    @property
    def timeline(self) -> Path:
        return self.path / "timeline.json"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    def leftovers(self) -> list[Path]:
        """Gives the temporary files of writes in the folder (in progress, or cut short by a kill)."""
        return [
            file
            for place in (self.path, self.path / ".hydra", self.path / CHECKPOINT_FOLDER, self.samples)
            for file in partial_files(place)
        ]

    def checkpoint(self, which: str = "last") -> Path:
        """Gives checkpoints/{which}.pt: ``last`` or ``best``."""
        return self.path / CHECKPOINT_FOLDER / f"{which}.pt"

    def epoch_picture(self, name: str, epoch: int) -> Path:
        """Gives the PNG of a picture drawn during training: samples/{name}_epoch_NNN.png, and
        samples/epoch_NNN.png for the prior grid."""
        prefix = "" if name == "prior" else f"{name}_"
        return self.samples / f"{prefix}epoch_{epoch:03d}.png"

    @classmethod
    def of_checkpoint(cls, file: Path) -> RunFolder:
        """Gives the run folder a checkpoint file belongs to (its own folder if it is not in one's
        checkpoints/)."""
        folder = Path(file).parent
        return cls(folder.parent if folder.name == CHECKPOINT_FOLDER else folder)


# Every timeline file under a folder: runs' timeline.json and stacked sweeps' timeline_jobs_*.json.
TIMELINES = "timeline*.json"


# How long a start waits for a folder's lock before it is refused: others only look at a lock
# (``lock_state``) for microseconds, while a process that trains holds it for the whole run. Short,
# since a sweep launched again while the first still trains waits this long for each of its jobs.
LOCK_PATIENCE_S = 0.1

# The folders whose lock this process holds (``training_into``): its own lock is not another's.
_held_here: set[Path] = set()


@contextmanager
def training_into(folder: RunFolder, logger: logging.Logger = log) -> Iterator[None]:
    """Holds the lock of ``folder`` while this process trains into it, so that a second process (a
    continue command started while the run still goes, a sweep launched again into its folder)
    is refused with FolderBusy instead of writing the same checkpoints and records. The operating
    system drops the lock when the process ends, however it ends. Where the file system has no
    locks, training goes on without one, and the log (``logger``) says so."""
    folder.path.mkdir(parents=True, exist_ok=True)
    with open(folder.lock, "a+") as file:
        locked = False
        if fcntl is not None:
            try:
                take_lock(file)
                locked = True
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip() or "a process"
                raise FolderBusy(
                    f"{folder.path} is being trained by another process ({holder}); wait for it to "
                    "end, or train into another folder (hydra.run.dir=... or hydra.sweep.dir=...)"
                ) from None
            except OSError as err:
                logger.warning("%s takes no lock (%s): train into it from one process only", folder.path, err)
        if not locked:
            yield
            return
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        for leftover in folder.leftovers():  # of a process killed while it wrote: no longer anyone's
            leftover.unlink(missing_ok=True)
        _held_here.add(folder.path.resolve())
        try:
            yield
        finally:
            _held_here.discard(folder.path.resolve())


def take_lock(file: Any) -> None:
    """Takes the exclusive lock of an open lock file, waiting up to LOCK_PATIENCE_S for one that
    is only being looked at; raises BlockingIOError if another process holds it."""
    deadline = time.monotonic() + LOCK_PATIENCE_S
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def holds_trained_run(folder: RunFolder) -> bool:
    """Says whether a run folder holds a run that trained: one that wrote a checkpoint."""
    return any(folder.checkpoint(name).is_file() for name in CHECKPOINTS)


def lock_state(folder: RunFolder) -> str:
    """Says who holds the folder's lock (``training_into``) now: "free", "here" (this process),
    "another" (another process), or "unknown" (no lock file, or a file system without locks).
    Looking holds the lock for a moment, which a process starting to train waits out."""
    if fcntl is None:
        return "unknown"
    if folder.path.resolve() in _held_here:
        return "here"
    try:
        with open(folder.lock) as file:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return "another"
    except OSError:  # no lock file, or no locks on this file system
        return "unknown"
    return "free"


def trained_by_another(folder: RunFolder) -> bool:
    """Says whether another process trains into the folder now: its records are that run's, and
    a start that is refused, or that will be, leaves them alone."""
    return lock_state(folder) == "another"


def sweep_record(sweep_dir: Path) -> Path:
    """Gives the file where a sweep's config and command line are recorded (by Hydra's basic
    sweeper, and for every sweeper by ``tracking.SweepSummary``)."""
    return Path(sweep_dir) / "multirun.yaml"


def sweep_tensorboard(sweep_dir: Path) -> Path:
    """Gives the folder of a sweep's own TensorBoard log: the HParams tab's summary of its runs."""
    return Path(sweep_dir) / "tensorboard"


def sweep_timeline(sweep_dir: Path, first_job: int, last_job: int) -> Path:
    """Gives the timeline file of a stacked sweep's batch of jobs first_job..last_job."""
    return Path(sweep_dir) / f"timeline_jobs_{first_job}-{last_job}.json"


def read_status(folder: RunFolder) -> dict[str, Any]:
    """Gives what status.json says about how a run ended ({} if it has none)."""
    try:
        status = json.loads(folder.status.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return status if isinstance(status, dict) else {}


def status_now(folder: RunFolder) -> dict[str, Any]:
    """Gives what status.json says about a run, but ``killed`` where it says ``training`` while no
    process holds the folder's lock: the run ended without saying how (SIGKILL, the out-of-memory
    killer, a lost node)."""
    status = read_status(folder)
    if status.get("status") == "training" and lock_state(folder) == "free":
        status["status"] = "killed"
    return status


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path:
    """Gives the checkpoint file for ``path``: the file itself, or RUN/checkpoints/{which}.pt of a
    run folder, given as the folder or as its checkpoints/ folder."""
    path = Path(path).expanduser()
    if path.is_dir() and path.name == CHECKPOINT_FOLDER:
        path = path.parent
    if path.is_dir():
        candidate = RunFolder(path).checkpoint(which)
        if not candidate.is_file():
            raise CheckpointError(f"no checkpoint at {candidate}: {why_no_checkpoint(path, which)}")
        return candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a .pt file or a run folder")
    return path


def why_no_checkpoint(path: Path, which: str) -> str:
    """Says why a folder has no checkpoints/{which}.pt, and what to give instead."""
    folder = RunFolder(path)
    other = next(name for name in CHECKPOINTS if name != which)
    if folder.checkpoint(other).is_file():
        return f"{path} holds only {other}.pt; give its path, {folder.checkpoint(other)}, or which={other}"
    if status := read_status(folder):
        if status.get("status") == "failed" and "epoch" not in status and status.get("error"):
            return f"the run in {path} failed before it saved any: {status['error']}"
        state = status.get("status", "?") + (f" at epoch {status['epoch']}" if "epoch" in status else "")
        return (
            f"the run in {path} ({state}) saved none: a run writes its first checkpoint after its "
            "first epoch (trainer.epochs=0 writes none)"
        )
    if is_run(path):
        return f"the run in {path} has not started: its job is recorded, and nothing else yet"
    runs = [child for child in sorted(path.iterdir(), key=natural) if is_run(child)]
    if runs:
        return f"{path} is a folder of runs; give one of them, such as {runs[0]}"
    return f"{path} is not a run folder"


# The files that make a folder a run folder.
RUN_MARKERS = ("metrics.jsonl", "status.json", ".hydra/overrides.yaml")


def is_run(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def natural(path: Path) -> list[tuple[float, str]]:
    """Sorts paths in natural order: job 2 before job 10, numbered folders before named ones."""
    return [(int(part), "") if part.isdigit() else (math.inf, part) for part in path.parts]


def find_runs(root: Path) -> list[Path]:
    """Gives every run folder below ``root`` (itself included), in natural order."""
    folders = set()
    for marker in RUN_MARKERS:
        for path in Path(root).rglob(marker):
            folders.add(path.parent.parent if marker.startswith(".hydra") else path.parent)
    return sorted(folders, key=natural)


class FolderCheck(Callback):
    """A Hydra callback (``hydra.callbacks`` in train.yaml) that makes the run's folder, or the
    sweep's, before Hydra does and refuses one that cannot be made or written (a file at its name,
    a place without write permission) in one line with exit code 2: Hydra would stop there with a
    Python trace."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check(Path(str(config.hydra.run.dir)), "hydra.run.dir")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check(Path(str(config.hydra.sweep.dir)), "hydra.sweep.dir")

    @staticmethod
    def _check(folder: Path, setting: str) -> None:
        try:
            check_writable(folder, f"{setting}=")
        except ConfigError as err:  # Hydra would only warn about a callback's error, and go on
            exit_in_one_line(err)
