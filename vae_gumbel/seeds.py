"""Runs over seeds: the jobs of one setting (the same hyperparameters but for the seed), their
mean and standard error, and each setting's difference to a baseline setting, paired by seed. A
seed trained more than once is one draw of its luck: each seed counts once, with the mean of its
runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from vae_gumbel.errors import ConfigError
from vae_gumbel.jobs import Job, comparable, is_hyperparameter, label, selection_loss, varying_keys


@dataclass
class Setting:
    """Jobs whose overrides differ only in their seed."""

    overrides: dict[str, str]  # the overrides they share (seed left out)
    jobs: list[Job]

    @property
    def completed(self) -> list[Job]:
        """The jobs whose numbers the setting's statistics take: those that trained to their end. A
        run that stopped early would bring an earlier epoch's loss into the mean."""
        return [job for job in self.jobs if job.status == "completed"]


def group_by_seed(jobs: list[Job]) -> list[Setting]:
    """Gives the jobs grouped into settings: the same hyperparameters but for ``seed``, in
    first-seen order. Run-control overrides do not split a setting: the jobs of a sweep continued
    with ``resume=last`` record it, and those that had finished before do not."""
    settings: dict[tuple, Setting] = {}
    for job in jobs:
        shared = {k: v for k, v in job.overrides.items() if k != "seed" and is_hyperparameter(k)}
        key = tuple(sorted((k, comparable(v)) for k, v in shared.items()))
        settings.setdefault(key, Setting(shared, [])).jobs.append(job)
    return list(settings.values())


class Estimate(NamedTuple):
    """A mean over seeds, its standard error (NaN for fewer than two values) and the number of values."""

    mean: float
    stderr: float
    n: int

    def quoted(self, count: bool = True) -> str:
        """Gives it as a table quotes it, "101.00 +- 1.00 (2)": mean +- standard error (count, left
        out without ``count``); the mean alone for one value, nothing for none."""
        if not math.isfinite(self.mean):
            return ""
        text = f"{self.mean:.2f}" + (f" +- {self.stderr:.2f}" if math.isfinite(self.stderr) else "")
        return f"{text} ({self.n})" if count else text


def mean_and_stderr(values: list[float]) -> Estimate:
    """Gives the mean of the finite values, its standard error (NaN for fewer than two) and their count."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = sum(finite) / n
    if n < 2:
        return Estimate(mean, math.nan, n)
    variance = sum((v - mean) ** 2 for v in finite) / (n - 1)
    return Estimate(mean, math.sqrt(variance / n), n)


def baselines_of(settings: list[Setting], key: str, value: str) -> list[Setting | None]:
    """Gives each setting's baseline (``baseline_matches``); None where no setting, or more than one,
    could be its baseline."""
    return [found[0] if len(found) == 1 else None for found in baseline_matches(settings, key, value)]


def ambiguous_baselines(settings: list[Setting], key: str, value: str) -> list[str]:
    """Gives a line for each setting that more than one setting could be the baseline of, and so
    is paired with none (its cells and its curve stay empty)."""
    keys = varying_keys(settings)
    return [
        f"{label(setting.overrides, keys) or 'all runs'}: {len(found)} settings could be its baseline "
        f"({'; '.join(label(baseline.overrides, keys) for baseline in found)}), so it is paired with "
        "none; keep set-ups that should not be compared in separate folders"
        for setting, found in zip(settings, baseline_matches(settings, key, value), strict=True)
        if len(found) > 1
    ]


def baseline_matches(settings: list[Setting], key: str, value: str) -> list[list[Setting]]:
    """Gives, for each setting, the settings that could be its baseline: those with ``key`` =
    ``value`` whose other overrides agree with the setting's wherever both set a hyperparameter (so
    that a ReinMax sweep that also chose ``temperature=constant`` still finds its straight-through
    baseline in another sweep). Raises ConfigError if no setting has ``key`` = ``value``."""
    if key == "seed":
        raise ConfigError(f"--against seed={value}: the seed is what pairs the runs; compare another key")
    candidates = [
        setting for setting in settings if comparable(setting.overrides.get(key, "")) == comparable(value)
    ]
    if not candidates:
        values = sorted({setting.overrides[key] for setting in settings if key in setting.overrides})
        keys = sorted({other for setting in settings for other in setting.overrides if other != "seed"})
        found = (
            f"its values here: {', '.join(values)}"
            if values
            else f"no run sets {key} on its command line; they set {', '.join(keys) or 'only the seed'}"
        )
        raise ConfigError(f"--against {key}={value}: no run has {key}={value} among its overrides ({found})")

    def agree(setting: Setting, baseline: Setting) -> bool:
        shared = setting.overrides.keys() & baseline.overrides.keys() - {key}
        return all(
            comparable(setting.overrides[k]) == comparable(baseline.overrides[k])
            for k in shared
            if is_hyperparameter(k)
        )

    return [[baseline for baseline in candidates if agree(setting, baseline)] for setting in settings]


def paired_difference(setting: Setting, baseline: Setting | None, value: Any) -> Estimate:
    """Gives the mean, standard error and count of ``value``(job) minus ``value`` of the baseline's
    job with the same seed, over the seeds that both completed (none without a baseline; a seed run
    more than once gives the mean of its runs, ``per_seed``). The same seed starts both from the
    same weights, so the pairs may share part of their luck, which the differences then take out."""
    return paired(setting.completed, baseline.completed if baseline else [], value)


def paired(jobs: list[Job], baseline_jobs: list[Job], value: Any) -> Estimate:
    """Gives the mean, standard error and count of ``value`` of ``jobs`` minus that of
    ``baseline_jobs``, paired by seed (each seed's mean over its runs, ``per_seed``)."""
    mine, theirs = per_seed(jobs, value), per_seed(baseline_jobs, value)
    return mean_and_stderr([mine[seed] - theirs[seed] for seed in mine if seed in theirs])


def loss_at(epoch: int) -> Any:
    """Gives a job's test loss at ``epoch`` (NaN if its run did not reach it)."""
    return lambda job: job.test_loss_by_epoch.get(epoch, math.nan)


def by_seed(jobs: list[Job]) -> dict[tuple[str, Any], list[Job]]:
    """Gives the jobs by seed (``comparable``), in first-seen order."""
    seeds: dict[tuple[str, Any], list[Job]] = {}
    for job in jobs:
        seeds.setdefault(comparable(job.overrides.get("seed", "")), []).append(job)
    return seeds


def per_seed(jobs: list[Job], value: Any) -> dict[tuple[str, Any], float]:
    """Gives each seed's ``value``: the mean over its jobs that have a finite one (NaN if none). A seed
    trained twice (a rerun, or the same setting in two sweeps) is one draw of the seed's luck, not
    two: counted apart, its runs would shrink the standard error."""
    return {seed: mean_and_stderr([value(job) for job in runs])[0] for seed, runs in by_seed(jobs).items()}


def ranked_settings(settings: list[Setting], sort: str = "final") -> list[Setting]:
    """Gives the settings best first by the mean over their completed seeds of the number that ranks
    a job (``selection_loss``), those without one last: the order of the seed table and its figure."""

    def mean(setting: Setting) -> float:
        ranking = per_seed(setting.completed, lambda job: selection_loss(job, sort))
        estimate = mean_and_stderr(list(ranking.values()))
        return estimate.mean if math.isfinite(estimate.mean) else math.inf

    return sorted(settings, key=mean)


def repeated_seeds(settings: list[Setting]) -> list[str]:
    """Gives a line for each setting that trained a seed more than once, saying how the table counts it."""
    keys = varying_keys(settings)
    lines = []
    for setting in settings:
        repeated = [runs for runs in by_seed(setting.jobs).values() if len(runs) > 1]
        if repeated:
            seeds = ", ".join(runs[0].overrides.get("seed", "(default)") for runs in repeated)
            runs = ", ".join(job.name for seed_runs in repeated for job in seed_runs)
            lines.append(
                f"{label(setting.overrides, keys) or 'all runs'}: seed{'s' if len(repeated) > 1 else ''} "
                f"{seeds} trained more than once ({runs}); the table counts each seed once, with the "
                "mean of its runs"
            )
    return lines


def suggested_against(settings: list[Setting]) -> tuple[str, str] | None:
    """Gives a (key, value) for ``--against`` that pairs ``settings`` by seed: the first
    hyperparameter besides the seed in which they differ, at its value in the first setting that
    sets it (in a sweep, the first value its command line lists); None where no setting has two
    seeds or nothing but the seed differs."""
    if len(settings) < 2 or max(len(setting.jobs) for setting in settings) < 2:
        return None
    for key in varying_keys(settings):
        return key, next(setting.overrides[key] for setting in settings if key in setting.overrides)
    return None
