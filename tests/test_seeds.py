"""Runs over seeds: settings, their mean and standard error, and differences paired by seed."""

from __future__ import annotations

import math

import pytest

from vae_gumbel.jobs import Job
from vae_gumbel.seeds import group_by_seed, mean_and_stderr, paired, per_seed


def job(name: str, overrides: list[str], final: float, status: str = "completed") -> Job:
    return Job(
        name=name,
        overrides=dict(item.split("=", 1) for item in overrides),
        records=[],
        status=status,
        final_test_loss=final,
    )


def final(job: Job) -> float:
    return job.final_test_loss


def test_the_mean_and_standard_error_are_over_the_finite_values() -> None:
    mean, stderr, n = mean_and_stderr([1.0, 2.0, 3.0, math.nan, math.inf])
    assert (mean, n) == (2.0, 3)
    assert stderr == pytest.approx(1.0 / math.sqrt(3))  # sample standard deviation 1, over sqrt(3)
    assert math.isnan(mean_and_stderr([4.0])[1]) and mean_and_stderr([4.0])[::2] == (4.0, 1)
    assert math.isnan(mean_and_stderr([])[0]) and mean_and_stderr([])[2] == 0


def test_an_estimate_is_quoted_as_mean_plus_minus_standard_error_and_count() -> None:
    assert mean_and_stderr([100.0, 102.0]).quoted() == "101.00 +- 1.00 (2)"
    assert mean_and_stderr([98.0, math.nan]).quoted() == "98.00 (1)"  # one value has no standard error
    assert mean_and_stderr([math.nan]).quoted() == ""


def test_jobs_that_differ_only_in_their_seed_or_how_they_ran_are_one_setting() -> None:
    jobs = [
        job("0", ["estimator=reinmax", "optim.lr=1e-3", "seed=0"], 100.0),
        job("1", ["estimator=reinmax", "optim.lr=0.001", "seed=1", "resume=last"], 102.0),
        job("2", ["estimator=straight_through", "optim.lr=1e-3", "seed=0"], 104.0),
    ]
    reinmax, straight_through = group_by_seed(jobs)
    assert [j.name for j in reinmax.jobs] == ["0", "1"] and [j.name for j in straight_through.jobs] == ["2"]
    assert "seed" not in reinmax.overrides and "resume" not in reinmax.overrides


def test_a_seed_trained_twice_is_one_value_the_mean_of_its_runs() -> None:
    jobs = [job("a", ["seed=0"], 100.0), job("b", ["seed=0"], 104.0), job("c", ["seed=1"], 110.0)]
    assert list(per_seed(jobs, final).values()) == [102.0, 110.0]


def test_differences_pair_the_seeds_that_both_sides_have() -> None:
    mine = [job("a", ["seed=0"], 100.0), job("b", ["seed=1"], 103.0), job("c", ["seed=2"], 90.0)]
    theirs = [job("d", ["seed=0"], 101.0), job("e", ["seed=1"], 106.0)]  # no seed 2: c is unpaired
    mean, stderr, n = paired(mine, theirs, final)
    assert (mean, n) == (-2.0, 2) and stderr == pytest.approx(1.0)  # -1 and -3
