"""Temperature schedules: closed form, monotone, floored, pure in the step."""

from __future__ import annotations

import math

import pytest
import torch

from vae_gumbel.config import TemperatureConfig
from vae_gumbel.schedules import (
    ConstantTemperature,
    ExponentialAnnealing,
    LearnedTemperature,
    build_schedule,
)


def test_annealed_temperature_equals_the_closed_form() -> None:
    schedule = ExponentialAnnealing(initial=1.0, min=0.5, rate=3e-5, every=1000)
    for step in [0, 1, 999, 1000, 1001, 12_345, 20_000, 50_000]:
        expected = max(0.5, math.exp(-3e-5 * (step // 1000) * 1000))
        assert schedule(step) == pytest.approx(expected, rel=1e-12)


def test_annealed_temperature_is_monotone_and_floored() -> None:
    schedule = ExponentialAnnealing(initial=2.0, min=0.3, rate=1e-4, every=100)
    values = [schedule(step) for step in range(0, 100_000, 37)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert min(values) == 0.3


def test_annealed_temperature_is_a_pure_function_of_the_step() -> None:
    schedule = ExponentialAnnealing(initial=1.0, min=0.5, rate=3e-5, every=1000)
    forward = [schedule(step) for step in range(0, 30_000, 500)]
    again = [ExponentialAnnealing(1.0, 0.5, 3e-5, 1000)(step) for step in range(0, 30_000, 500)]
    assert forward == again
    assert schedule(12_000) == schedule(12_000)


def test_constant_temperature_never_changes() -> None:
    assert {ConstantTemperature(1.0)(step) for step in (0, 10, 10**6)} == {1.0}


def test_learned_temperature_starts_at_initial_and_stays_above_its_floor() -> None:
    schedule = LearnedTemperature(initial=1.0, min=0.1)
    assert schedule().item() == pytest.approx(1.0, rel=1e-6)
    with torch.no_grad():
        schedule.raw.fill_(-100.0)
    assert schedule().item() >= 0.1


def test_learned_temperature_is_trained_by_its_gradient() -> None:
    schedule = LearnedTemperature(initial=1.0, min=0.1)
    optimizer = torch.optim.SGD(schedule.parameters(), lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        schedule().backward()  # minimising tau itself must lower it
        optimizer.step()
    assert 0.1 < schedule().item() < 1.0


def test_a_schedule_for_a_stack_gives_each_member_its_own_temperature_at_every_step() -> None:
    settings = [
        TemperatureConfig(name="exp_anneal", initial=1.0, min=0.5, rate=1e-3, every=10),
        TemperatureConfig(name="exp_anneal", initial=2.0, min=0.1, rate=1e-2, every=1),
    ]
    schedule = build_schedule(settings)
    steps = list(range(0, 300, 7))
    values = schedule(steps)
    assert values.shape == (len(steps), 2)
    for row, step in zip(values, steps, strict=True):
        assert row.tolist() == pytest.approx(
            [max(0.5, math.exp(-1e-3 * (step // 10) * 10)), max(0.1, 2.0 * math.exp(-1e-2 * step))], rel=1e-12
        )


def test_a_learned_temperature_for_a_stack_has_one_parameter_per_member() -> None:
    schedule = build_schedule(
        [
            TemperatureConfig(name="learned", initial=1.0, min=0.1),
            TemperatureConfig(name="learned", initial=2.0, min=0.5),
        ]
    )
    assert schedule.raw.shape == (2,)
    assert schedule().tolist() == pytest.approx([1.0, 2.0], rel=1e-6)
