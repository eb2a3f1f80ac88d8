"""The epoch loop: losses summed on the device, read back once per interval, per member."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vae_gumbel.loop import StepSums, Temperatures
from vae_gumbel.schedules import ExponentialAnnealing


def test_step_sums_add_up_and_find_the_first_non_finite_step_across_flushes() -> None:
    sums = StepSums(torch.device("cpu"), capacity=3, first_step=10)
    values = [torch.tensor([[float(i), 1.0, 2.0, 3.0]]) for i in range(7)]
    for v in values:
        sums.add(v, batch=2)
    totals, bad = sums.read()
    assert totals.tolist() == [pytest.approx([2 * 21.0, 14.0, 28.0, 42.0])] and bad == [None]
    sums.add(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), batch=2)  # step 17
    sums.add(torch.tensor([[1.0, math.inf, 1.0, 1.0]]), batch=2)  # step 18: the first bad one
    sums.add(torch.tensor([[math.nan, 1.0, 1.0, 1.0]]), batch=2)
    sums.add(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), batch=2)  # a flush in between keeps the first
    assert sums.read()[1] == [18]


def test_step_sums_keep_each_members_own_sums_and_first_bad_step() -> None:
    sums = StepSums(torch.device("cpu"), capacity=2, first_step=0, members=2)
    sums.add(torch.tensor([[1.0, 1, 1, 1], [2.0, 2, 2, 2]]), batch=10)
    sums.add(torch.tensor([[1.0, 1, 1, 1], [math.nan, 2, 2, 2]]), batch=10)
    sums.add(torch.tensor([[math.inf, 1, 1, 1], [2.0, 2, 2, 2]]), batch=10)
    totals, bad = sums.read()
    assert bad == [2, 1]
    assert totals[0, 1:].tolist() == [30.0, 30.0, 30.0] and totals[1, 1:].tolist() == [60.0, 60.0, 60.0]


def test_an_epochs_temperatures_are_the_schedules_for_each_step_and_member() -> None:
    schedule = ExponentialAnnealing([1.0, 2.0], [0.5, 0.5], [0.1, 0.01], [1, 5])
    temperatures = Temperatures(schedule, start_step=10, steps=4, device=torch.device("cpu"))
    for step in range(10, 14):
        expected = [max(0.5, math.exp(-0.1 * step)), max(0.5, 2.0 * math.exp(-0.01 * (step // 5) * 5))]
        assert temperatures.value(step) == pytest.approx(expected)
        assert temperatures.tensor(step).tolist() == pytest.approx(expected, rel=1e-6)
    assert isinstance(temperatures.value(10), np.ndarray)
