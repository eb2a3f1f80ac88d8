"""Temperature schedules: the Gumbel-Softmax temperature as a function of the global step.

Fixed schedules are pure functions of the step, evaluated in closed form, so a resumed
run sees exactly the temperature an uninterrupted one would. The learned temperature is
a module whose parameter the optimiser trains with the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ConstantTemperature:
    """tau(t) = initial."""

    learned = False

    def __init__(self, initial: float) -> None:
        if not initial > 0:
            raise ValueError(f"temperature.initial must be > 0, got {initial}")
        self.initial = float(initial)

    def __call__(self, step: int) -> float:
        return self.initial


class ExponentialAnnealing:
    """tau(t) = max(min, initial * exp(-rate * s)) with s = t rounded down to a multiple of ``every``.

    The temperature changes only every ``every`` steps; since it is computed from the global
    step, it never compounds and never resets per epoch.
    """

    learned = False

    def __init__(self, initial: float, min: float, rate: float, every: int) -> None:  # noqa: A002
        if not initial > 0:
            raise ValueError(f"temperature.initial must be > 0, got {initial}")
        if not 0 < min <= initial:
            raise ValueError(f"temperature.min must satisfy 0 < min <= initial ({initial}), got {min}")
        if not rate > 0:
            raise ValueError(f"temperature.rate must be > 0, got {rate}")
        if every < 1:
            raise ValueError(f"temperature.every must be >= 1, got {every}")
        self.initial, self.min, self.rate, self.every = float(initial), float(min), float(rate), every

    def __call__(self, step: int) -> float:
        held_step = (step // self.every) * self.every
        return max(self.min, self.initial * math.exp(-self.rate * held_step))


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LearnedTemperature(nn.Module):
    """tau = min + softplus(raw): a positive temperature with a floor, trained with the model.

    Its gradient comes from the relaxed loss; the floor keeps the relaxation from
    collapsing to an argmax with exploding gradients.
    """

    learned = True

    def __init__(self, initial: float, min: float) -> None:  # noqa: A002
        super().__init__()
        if not min > 0:
            raise ValueError(f"temperature.min must be > 0, got {min}")
        if not initial > min:
            raise ValueError(
                f"temperature.initial must be > temperature.min ({min}) for a learned "
                f"temperature, got {initial}"
            )
        self.min = float(min)
        self.raw = nn.Parameter(torch.tensor(_inverse_softplus(initial - min)))

    def forward(self, step: int | None = None) -> torch.Tensor:
        """Gives the current temperature as a 0-d tensor; the step is accepted and ignored."""
        return self.min + F.softplus(self.raw)


Schedule = ConstantTemperature | ExponentialAnnealing | LearnedTemperature


def build_schedule(
    name: str,
    initial: float,
    min: float | None = None,  # noqa: A002
    rate: float | None = None,
    every: int = 1,
) -> Schedule:
    """Gives the schedule named ``constant``, ``exp_anneal`` or ``learned``."""
    if name == "constant":
        return ConstantTemperature(initial)
    if name == "exp_anneal":
        if min is None or rate is None:
            raise ValueError("temperature.min and temperature.rate are required for exp_anneal")
        return ExponentialAnnealing(initial, min, rate, every)
    if name == "learned":
        if min is None:
            raise ValueError("temperature.min is required for a learned temperature")
        return LearnedTemperature(initial, min)
    raise ValueError(
        f"unknown temperature.schedule {name!r}; choose one of ['constant', 'exp_anneal', 'learned']"
    )
