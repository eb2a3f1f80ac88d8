"""Temperature schedules: the Gumbel-Softmax temperature as a function of the global step.

Fixed schedules are pure functions of the step, evaluated in closed form (float64, on the
host), so a resumed run sees exactly the temperature an uninterrupted one would. Their
parameters may be arrays with one entry per member of a stack: ``schedule(steps)`` with steps
(S,) then gives (S, M). The learned temperature is a module whose parameter the optimiser
trains with the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from vae_gumbel.config import TemperatureConfig

ArrayLike = float | Sequence[float] | np.ndarray


def _steps(step: int | np.ndarray, parameter: np.ndarray) -> np.ndarray:
    """Gives the step(s), with a trailing axis that broadcasts against per-member parameters when
    the parameters are per member."""
    steps = np.asarray(step, dtype=np.int64)
    return steps[..., None] if parameter.ndim else steps


class ConstantTemperature:
    """tau(t) = initial."""

    learned = False
    fields: ClassVar[tuple[str, ...]] = ("initial",)

    def __init__(self, initial: ArrayLike) -> None:
        self.initial = np.asarray(initial, dtype=np.float64)

    def __call__(self, step: int | np.ndarray) -> np.ndarray:
        return self.initial * np.ones_like(_steps(step, self.initial), dtype=np.float64)


class ExponentialAnnealing:
    """tau(t) = max(min, initial * exp(-rate * s)) with s = t rounded down to a multiple of ``every``.

    The temperature changes only every ``every`` steps; since it is computed from the global
    step, it never compounds and never resets per epoch.
    """

    learned = False
    fields: ClassVar[tuple[str, ...]] = ("initial", "min", "rate", "every")

    def __init__(self, initial: ArrayLike, min: ArrayLike, rate: ArrayLike, every: ArrayLike) -> None:  # noqa: A002
        self.initial, self.min, self.rate = (np.asarray(v, dtype=np.float64) for v in (initial, min, rate))
        self.every = np.asarray(every, dtype=np.int64)

    def __call__(self, step: int | np.ndarray) -> np.ndarray:
        held_step = (_steps(step, self.initial) // self.every) * self.every
        return np.maximum(self.min, self.initial * np.exp(-self.rate * held_step))


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LearnedTemperature(nn.Module):
    """tau = min + softplus(raw): a positive temperature with a floor, trained with the model.

    Its gradient comes from the relaxed loss; the floor keeps the relaxation from
    collapsing to an argmax with exploding gradients. With per-member arrays, ``raw`` holds
    one temperature per member.
    """

    learned = True
    fields: ClassVar[tuple[str, ...]] = ("initial", "min")

    def __init__(self, initial: ArrayLike, min: ArrayLike) -> None:  # noqa: A002
        super().__init__()
        initial, min = np.asarray(initial, dtype=np.float64), np.asarray(min, dtype=np.float64)  # noqa: A001
        self.register_buffer("min", torch.tensor(min, dtype=torch.float32), persistent=False)
        raw = np.vectorize(_inverse_softplus)(initial - min)
        self.raw = nn.Parameter(torch.tensor(raw, dtype=torch.float32))

    def forward(self, step: int | None = None) -> torch.Tensor:
        """Gives the current temperature as a tensor (a 0-d one, or one per member); the step is
        accepted and ignored."""
        return self.min + F.softplus(self.raw)


Schedule = ConstantTemperature | ExponentialAnnealing | LearnedTemperature

SCHEDULES: dict[str, type[Schedule]] = {
    "constant": ConstantTemperature,
    "exp_anneal": ExponentialAnnealing,
    "learned": LearnedTemperature,
}


def build_schedule(settings: Sequence[TemperatureConfig]) -> Schedule:
    """Gives the schedule ``temperature.name`` names, with one entry per member in each parameter.

    All members share the schedule's kind; each has its own initial, min, rate and every.
    """
    kind = SCHEDULES[settings[0].name]
    return kind(**{field: [getattr(member, field) for member in settings] for field in kind.fields})
