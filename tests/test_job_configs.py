"""A sweep's job configs: those derived from the first job of their shape are the configs Hydra
composes, and whatever Hydra would refuse, Hydra refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import vae_gumbel.config  # noqa: F401  (registers the schema)
from hydra_plugins.vae_gumbel_launcher.job_configs import JobConfigs


@pytest.fixture
def loader() -> Iterator:
    with initialize_config_module(config_module="vae_gumbel.conf", version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def counting(loader) -> tuple[JobConfigs, list[list[str]]]:
    """Gives JobConfigs over Hydra's own composition, and the jobs Hydra composed."""
    composed: list[list[str]] = []

    def compose(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        composed.append(list(sweep_overrides))
        return loader.load_sweep_config(master_config=master_config, sweep_overrides=sweep_overrides)

    return JobConfigs(compose, loader.repository), composed


def test_jobs_that_differ_in_values_are_derived_and_equal_hydras_configs(loader) -> None:
    master = loader.load_configuration("train", ["hydra/launcher=stacked"], RunMode.MULTIRUN)
    fixed = ["debug=tiny", "hydra.job.config.override_dirname.exclude_keys=[seed]"]
    values = [  # seed, learning rate, hidden widths, compile cache, test images
        ("0", "1e-3", "[16,8]", "cache", "9"),
        ("1", "3e-4", "[32]", "'a b'", "null"),
        ("2", "3e-4", "[]", "'${oc.env:HOME}/cache'", "7"),
    ]
    jobs = [
        [
            *fixed,
            f"estimator={estimator}",
            f"seed={seed}",
            f"optim.lr={lr}",
            f"model.hidden={hidden}",
            f"trainer.compile_cache={cache}",
            f"data.test_limit={images}",
        ]
        for estimator in ("gumbel_softmax", "straight_through")
        for seed, lr, hidden, cache, images in values
    ]
    configs, composed = counting(loader)
    for job in jobs:
        ours = configs(master_config=master, sweep_overrides=job)
        hydras = loader.load_sweep_config(master_config=master, sweep_overrides=job)
        assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras)
        assert OmegaConf.get_type(ours.optim) is OmegaConf.get_type(hydras.optim)  # the schema's types
        assert ours.hydra.overrides.task == job[:1] + job[2:]  # hydra.* overrides are listed apart
    # One composition per shape: each estimator's first job.
    assert composed == [jobs[0], jobs[3]]
    dirname = ours.hydra.job.override_dirname  # the last job's, by the sweep's own exclusions
    assert dirname.startswith("data.test_limit=7,debug=tiny,") and "seed" not in dirname


def test_a_derived_config_is_a_copy_of_its_own(loader) -> None:
    master = loader.load_configuration("train", [], RunMode.MULTIRUN)
    configs, _ = counting(loader)
    first = configs(master_config=master, sweep_overrides=["seed=0"])
    first.seed = 99  # as a launcher sets a job's fields
    second = configs(master_config=master, sweep_overrides=["seed=1"])
    third = configs(master_config=master, sweep_overrides=["trainer.epochs=3"])  # another shape
    assert (second.seed, third.seed, third.trainer.epochs) == (1, 0, 3)


@pytest.mark.parametrize(
    "job",
    [
        ["seed=abc"],  # a value that does not fit its setting
        ["optim.lrr=1"],  # no such setting
        ["optim=1.0"],  # a section, not a value
        ["seed=1", "seed=2"],  # the same key twice
    ],
)
def test_what_hydra_refuses_is_refused_with_hydras_own_error(loader, job: list[str]) -> None:
    master = loader.load_configuration("train", [], RunMode.MULTIRUN)
    configs, composed = counting(loader)
    configs(master_config=master, sweep_overrides=["seed=0", "optim.lr=1e-3"][: len(job)])
    try:
        loader.load_sweep_config(master_config=master, sweep_overrides=job)
    except Exception as err:  # noqa: BLE001  (whatever Hydra raises)
        expected: Exception | None = err
    else:
        expected = None
    if expected is None:
        assert OmegaConf.to_yaml(configs(master_config=master, sweep_overrides=job)) == OmegaConf.to_yaml(
            loader.load_sweep_config(master_config=master, sweep_overrides=job)
        )
        return
    with pytest.raises(type(expected)) as ours:
        configs(master_config=master, sweep_overrides=job)
    assert str(ours.value) == str(expected)
    assert composed[-1] == job  # Hydra composed it


def test_a_setting_is_found_without_resolving_anything_on_the_way() -> None:
    from hydra_plugins.vae_gumbel_launcher.job_configs import is_setting

    config = OmegaConf.create({"a": {"b": 1, "list": [1, 2], "env": "${oc.env:NOT_SET}", "m": "???"}})
    found = {key: is_setting(config, key) for key in ("a.b", "a.list", "a.env", "a.m")}
    assert found == dict.fromkeys(found, True)  # the unresolvable interpolation is never resolved
    assert not any(is_setting(config, key) for key in ("a", "a.x", "a.list.0", "z.y"))
