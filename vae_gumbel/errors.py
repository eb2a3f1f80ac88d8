"""Errors a user can act on, and how an entry point reports them: one line on stderr and an exit code.

Exit codes: 2 for a bad configuration or input that the project's own checks catch (a value, a
file, a checkpoint), 1 for a failure while training, 128 + the signal's number for a run stopped
by SIGINT or SIGTERM. ``HYDRA_FULL_ERROR=1`` shows the full trace instead of the line.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from hydra.errors import CompactHydraException

BAD_INPUT, FAILED = 2, 1


def first_line(err: BaseException) -> str:
    """Gives the first line of an exception's message (its type's name if it has none), for a
    one-line error that wraps it."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def describe(err: BaseException) -> str:
    """Gives an error as status.json records it: its type and the first line of its message."""
    return f"{type(err).__name__}: {first_line(err)}"


class VaeGumbelError(Exception):
    """Base class: the message names the problem and what to do about it."""

    exit_code = FAILED


class ConfigError(VaeGumbelError, ValueError):
    """A configuration value is out of range or unknown."""

    exit_code = BAD_INPUT


class DataError(VaeGumbelError):
    """The data set is missing, truncated, or does not match its checksum."""

    exit_code = BAD_INPUT


class CheckpointError(VaeGumbelError):
    """A checkpoint is missing, unreadable, unsafe, or does not fit the model."""

    exit_code = BAD_INPUT


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint file that cannot be read back: cut short, damaged, or no checkpoint at all."""

    ADVICE = "use another checkpoint (best.pt or an earlier run)"

    def __init__(self, file: object, reason: str, advice: str = ADVICE) -> None:
        super().__init__(
            f"cannot read checkpoint {file} ({reason}); the file is corrupt or not a vae-gumbel "
            f"checkpoint: {advice}"
        )
        self.file, self.reason, self.advice = file, reason, advice

    def __reduce__(self) -> tuple:  # a worker process hands it back pickled
        return type(self), (self.file, self.reason, self.advice)

    def advising(self, advice: str) -> UnreadableCheckpoint:
        """Gives the same error with ``advice``, for a caller that knows a better way on."""
        return UnreadableCheckpoint(self.file, self.reason, advice)


class FolderBusy(VaeGumbelError):
    """Another process trains into the run folder."""

    exit_code = BAD_INPUT


class RecordsError(VaeGumbelError):
    """A run's records (metrics.jsonl) are damaged before their last line, which no crash does."""

    exit_code = BAD_INPUT


class RunsFailed(VaeGumbelError):
    """A command's work failed for some runs of a folder of runs (each said why); the others got it."""


class NonFiniteLossError(VaeGumbelError):
    """Training produced a NaN or infinite loss, or non-finite weights."""

    ADVICE = (
        "training stopped and the last good checkpoint was kept. Lower optim.lr, or raise temperature.min"
    )

    @classmethod
    def at_step(cls, step: int) -> NonFiniteLossError:
        return cls(f"the loss became non-finite at step {step}; {cls.ADVICE}")

    @classmethod
    def in_weights(cls, step: int) -> NonFiniteLossError:
        return cls(f"the model's weights became non-finite by step {step}; {cls.ADVICE}")


class Interrupted(VaeGumbelError):
    """A run stopped by SIGINT or SIGTERM at a step boundary, its last checkpoint written."""

    def __init__(self, signum: int, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.step = step  # the global step at which it stopped
        self.exit_code = 128 + signum

    def __reduce__(self) -> tuple:  # a worker process hands it back pickled
        return type(self), (self.signum, str(self), self.step)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class WriteError(VaeGumbelError):
    """A file of the run could not be written: the disk is full, or the place is not writable."""


class RunFailed(CompactHydraException):
    """A job of a multirun that failed: Hydra shows just this one-line message, and the sweep goes on."""


def one_line(err: BaseException) -> str:
    """Gives the line an entry point prints for an error: the project's own message, or for any
    other error its type, its first line and how to see the whole trace."""
    if isinstance(err, VaeGumbelError):
        return f"error: {first_line(err)}"
    return f"error: {describe(err)} (run with HYDRA_FULL_ERROR=1 for the full trace)"


def exit_in_one_line(err: BaseException) -> NoReturn:
    """Ends the process with the error's one line on stderr and its exit code: also from inside
    Hydra's machinery (a callback, a launcher being built), which would only warn about an error
    or wrap it in lines of its own."""
    print(one_line(err), file=sys.stderr)
    raise SystemExit(getattr(err, "exit_code", FAILED))


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Reports an error raised inside as one line on stderr and exits with its code; in a Hydra
    multirun, fails only the job, with that line as its message (but an interrupt stops the sweep).
    HYDRA_FULL_ERROR=1 lets the error through with its trace."""
    try:
        yield
    except Exception as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if _in_multirun() and not isinstance(err, Interrupted):  # an interrupt stops the whole sweep
            raise RunFailed(one_line(err)) from err
        exit_in_one_line(err)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
