"""The errors a user acts on: what they say, and that they survive the trip from a worker process."""

from __future__ import annotations

import pickle
import signal

import pytest

from vae_gumbel.errors import (
    CheckpointError,
    ConfigError,
    Interrupted,
    NonFiniteLossError,
    UnreadableCheckpoint,
    VaeGumbelError,
)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("optim.lr must be > 0, got -1.0"),
        CheckpointError("/runs/a/checkpoints/last.pt does not exist"),
        UnreadableCheckpoint("/runs/a/checkpoints/last.pt", "it is cut short", "train on from best.pt"),
        NonFiniteLossError.in_weights(12),
        Interrupted(signal.SIGTERM, "interrupted by SIGTERM: continue with resume=last", step=40),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_error_comes_back_from_a_worker_process_as_it_was_raised(error: BaseException) -> None:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert vars(again) == vars(error)
    if isinstance(error, VaeGumbelError):
        assert again.exit_code == error.exit_code


def test_an_unreadable_checkpoint_says_why_and_what_to_do_and_takes_better_advice() -> None:
    error = UnreadableCheckpoint("/runs/a/checkpoints/last.pt", "the file is empty")
    assert str(error) == (
        "cannot read checkpoint /runs/a/checkpoints/last.pt (the file is empty); the file is corrupt "
        "or not a vae-gumbel checkpoint: use another checkpoint (best.pt or an earlier run)"
    )
    advised = error.advising("train on from its best.pt")
    assert isinstance(advised, CheckpointError) and str(advised).endswith(": train on from its best.pt")
    assert advised.reason == error.reason
