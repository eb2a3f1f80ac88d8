"""Stopping a run cleanly: SIGINT (Ctrl-C) and SIGTERM (what SLURM sends before preemption or at the
time limit) ask the training loop to stop at the next step boundary, so that it can write the state
of its last completed epoch and say how to go on. A second signal stops at once.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omegaconf import DictConfig

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedBySignal(KeyboardInterrupt):
    """Raised where the program stands when a stop cannot wait for a step boundary."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple:  # a worker process hands it back pickled
        return type(self), (self.signum,)


class StopRequest:
    """Holds the signal that asked the run to stop, if one did."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.immediate = False

    def __bool__(self) -> bool:
        return self.signum is not None

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Inside, where there is no step boundary to wait for (a long evaluation), a stop request
        raises StoppedBySignal at once; one that came before raises it on entry."""
        if self:
            raise StoppedBySignal(self.signum)
        self.immediate = True
        try:
            yield
        finally:
            self.immediate = False


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Installs SIGINT and SIGTERM handlers that ask for a stop at the next step boundary (a second
    signal, or the first inside ``StopRequest.at_once``, raises StoppedBySignal, a KeyboardInterrupt,
    at once); restores the previous handlers afterwards. Outside the main thread, where signals
    cannot be handled, the request never fires."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: object) -> None:
        if request or request.immediate:
            raise StoppedBySignal(request.signum or signum)
        request.signum = signum

    with handling(STOPPING_SIGNALS, handler):
        yield request


@contextmanager
def handling(signums: Iterable[int], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Has ``handler`` handle the signals ``signums`` for the duration (in the main thread), then
    gives them back their previous handlers."""
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def restarted_by_slurm() -> bool:
    """Says whether this process is a SLURM job started again after a requeue (preemption, time
    limit, or ``scontrol requeue``): such a job continues from its own checkpoint."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def under_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


# The overrides that say where a run starts from: a command that continues it starts from its own
# checkpoint instead (resume=last), so it leaves them out.
STARTING_POINT = ("resume=", "resume_weights_only=")

# The choices whose config files make every command that takes them a sweep (``hydra.mode:
# MULTIRUN``, conf/hparams_search/): the command that continues one of their jobs alone keeps them,
# for the settings they give the job, and runs in Hydra's RUN mode.
SWEEP_CHOICES = ("hparams_search=",)


def without(overrides: Sequence[str], prefixes: tuple[str, ...]) -> list[str]:
    """Gives the overrides that set none of the keys ``prefixes`` begin (``+``/``~`` aside)."""
    return [item for item in overrides if not item.lstrip("+~").startswith(prefixes)]


# What a value of a Hydra override may hold without quotes (its grammar's unquoted characters).
HYDRA_UNQUOTED = re.compile(r"[A-Za-z0-9_\-/\\+.$%*@?|: ]*")


def override(key: str, value: object) -> str:
    """Gives ``key=value`` as Hydra reads it back: a value with a character that Hydra's grammar
    takes only in quotes (an accent, a comma, a bracket, a quote, an edge of blanks) goes in double
    quotes, with the backslashes before a quote, or at the end, doubled. A ``${`` is escaped, as
    OmegaConf would otherwise read it as an interpolation."""
    text = str(value)
    if HYDRA_UNQUOTED.fullmatch(text) and text == text.strip() and "${" not in text:
        return f"{key}={text}"
    literal = re.sub(r"(\\*)(\$\{)", lambda m: 2 * m.group(1) + "\\" + m.group(2), text)
    quoted = re.sub(
        r'(\\*)("|$)', lambda m: 2 * m.group(1) + ("\\" if m.group(2) else "") + m.group(2), literal
    )
    return f'{key}="{quoted}"'


def shell_command(*words: object) -> str:
    """Gives a command line to copy into a shell: each word quoted as the shell needs it."""
    return shlex.join(str(word) for word in words)


def train_command(*arguments: str) -> str:
    return shell_command("python", "-m", "vae_gumbel.train", *arguments)


def sweep_resume_command(overrides: DictConfig, sweep_dir: Path) -> str:
    """Gives the command that continues a sweep: its own command line (``overrides``, Hydra's record
    of it: ``task`` and ``hydra``) with resume=last, into its folder. Jobs that completed are left
    as they are; the others continue from their checkpoints (or start, if they had none)."""
    task = without(overrides.task, STARTING_POINT)
    launch = without(overrides.hydra, ("hydra.sweep.dir=", "hydra.mode="))
    return train_command(
        "-m", *launch, *task, "resume=last", override("hydra.sweep.dir", sweep_dir.resolve())
    )


def multirun_resume_command(job_folder: Path) -> str | None:
    """In a job of a multirun, whatever its launcher, gives the command that continues the whole
    sweep, from the multirun.yaml that Hydra wrote into the sweep's folder above the job's; None
    for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    from vae_gumbel.run_folder import sweep_record

    for folder in Path(job_folder).resolve().parents:
        if (record := sweep_record(folder)).is_file():
            return sweep_resume_command(OmegaConf.load(record).hydra.overrides, folder)
    return None


def resume_command(
    folder: Path,
    overrides: Sequence[str] | None,
    changes: dict[str, str] | None = None,
    start: str | Path = "last",
) -> str | None:
    """Gives the command that continues a run started from the command line with ``overrides`` (its
    job's, as Hydra records them): those overrides with resume=last and its folder (for a job of a
    sweep, the command continues that job alone, in Hydra's RUN mode where a choice such as
    ``hparams_search=optuna`` would make it a sweep), and ``changes`` (dotted key -> value, such
    as more ``trainer.epochs``) in place of its own values; None for a run started from Python (no
    overrides). A run started from another run's weights continues from its own checkpoint, so
    ``resume_weights_only`` goes with the ``resume`` that named those weights. With a checkpoint
    file as ``start``, the command trains the run on from it into ``folder``."""
    if overrides is None:
        return None
    changes = changes or {}
    skip = (*STARTING_POINT, "hydra.", "hydra/", *(f"{key}=" for key in changes))
    kept = without(overrides, skip) + [override(key, value) for key, value in changes.items()]
    alone = ["hydra.mode=RUN"] if any(item.startswith(SWEEP_CHOICES) for item in kept) else []
    return train_command(
        *kept, override("resume", start), override("hydra.run.dir", folder.resolve()), *alone
    )
