"""Errors a user can act on; entry points print their message as one line and exit non-zero."""

from __future__ import annotations

from hydra.errors import CompactHydraException


def first_line(err: BaseException) -> str:
    """Gives the first line of an exception's message (its type's name if it has none), for a
    one-line error that wraps it."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def describe(err: BaseException) -> str:
    """Gives an error as status.json records it: its type and the first line of its message."""
    return f"{type(err).__name__}: {first_line(err)}"


class VaeGumbelError(Exception):
    """Base class: the message names the problem and what to do about it."""


class ConfigError(VaeGumbelError, ValueError):
    """A configuration value is out of range or unknown."""


class DataError(VaeGumbelError):
    """The data set is missing, truncated, or does not match its checksum."""


class CheckpointError(VaeGumbelError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


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


class RunFailed(CompactHydraException):
    """Raised by an entry point for any of the errors above; Hydra prints just its message."""
