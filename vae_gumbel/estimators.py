"""Gradient estimators: how a posterior sample reaches the decoder and sends gradients back.

Each estimator draws one noise sample and returns what the decoder sees in the training
pass (``z``, differentiable in the logits) together with the exact one-hot sample of the
same draw (``hard``), from which the trainer scores the unrelaxed loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from vae_gumbel.gumbel import Temperature, gumbel_softmax_sample, straight_through


class LatentSample(NamedTuple):
    """A training-pass code and the exact discrete code of the same noise draw."""

    z: torch.Tensor  # (batch, N, K) fed to the decoder, carries the gradient
    hard: torch.Tensor  # (batch, N, K) exact one-hot sample, no gradient
    z_is_hard: bool  # True when z's forward value is exactly ``hard``


Estimator = Callable[..., LatentSample]


def gumbel_softmax_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
) -> LatentSample:
    """Gives the relaxed sample as z: a biased, low-variance, fully differentiable path."""
    sample = gumbel_softmax_sample(logits, tau, generator=generator)
    return LatentSample(z=sample.soft, hard=sample.hard, z_is_hard=False)


def straight_through_estimator(
    logits: torch.Tensor, tau: Temperature, generator: torch.Generator | None = None
) -> LatentSample:
    """Gives the exact one-hot sample as z, with the relaxed sample's gradient."""
    sample = gumbel_softmax_sample(logits, tau, generator=generator)
    return LatentSample(z=straight_through(sample.soft, sample.hard), hard=sample.hard, z_is_hard=True)


ESTIMATORS: dict[str, Estimator] = {
    "gumbel_softmax": gumbel_softmax_estimator,
    "straight_through": straight_through_estimator,
}


def get_estimator(name: str) -> Estimator:
    """Gives the estimator registered under ``name``."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}") from None
