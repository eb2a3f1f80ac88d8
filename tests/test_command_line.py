"""The checks of a command line before Hydra reads it: what a config group cannot take, and a
launcher or sweeper whose plugin is missing, each refused with what to write or install instead."""

from __future__ import annotations

import re

import pytest

from vae_gumbel.command_line import check_group_choices, check_plugins
from vae_gumbel.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "config_name", "says"),
    [
        (
            ["temperature=0.5"],
            "train",
            re.escape(
                "temperature=0.5: temperature is a config group, which takes the name of one of its files "
                "(constant, exp_anneal, learned); to set its keys (initial, min, rate, every), write them "
                "one by one, e.g. temperature.initial=0.5"
            ),
        ),
        (["-m", "seed=0,1", "estimator=reinmax,true"], "train", "estimator=true: estimator is a"),
        (["data=range(1,3)"], "train", "data=1: data is a config group"),
        (["debug=null"], "train", r"debug=null: .* files \(smoke, tiny\); ~debug leaves it out"),
        (["temperature=0.5"], "sample", "sample has no setting temperature; .* --help lists them"),
        (["data=1"], "evaluate", r"data holds settings \(root, test_limit\); set them one by one"),
        (
            ["temperature={initial:0.5,min:0.1}"],
            "train",
            "write them one by one, e.g. temperature.initial=0.5 temperature.min=0.1$",
        ),
    ],
)
def test_a_number_or_null_for_a_config_group_is_refused_with_what_to_write_instead(
    overrides: list[str], config_name: str, says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        check_group_choices(overrides, config_name)


def test_group_choices_and_keys_pass_to_hydra_as_they_are() -> None:
    check_group_choices(
        [
            "--cfg",
            "job",
            "temperature=constant",
            "temperature.initial=0.5",
            "estimator=choice(reinmax,gumbel_rao)",
            "temperature=glob(*)",
            "optim.lr=interval(1e-4,1e-2)",
            "~debug",
            "+experiment=jang2017",
            "hydra.run.dir=outputs/run",
            "hydra/launcher=stacked",
            "seed=0,1",
        ],
        "train",
    )


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["hydra/launcher=joblib"], "hydra/launcher=joblib needs Hydra's plugin hydra-joblib-launcher"),
        (["-m", "hparams_search=optuna"], "hparams_search=optuna needs Hydra's plugin hydra-optuna-sweeper"),
        (["hydra/launcher=stacked,stacked_slurm"], "stacked_slurm needs Hydra's plugin hydra-submitit"),
    ],
)
def test_a_launcher_or_sweeper_whose_plugin_is_missing_says_how_to_install_it(
    overrides: list[str], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    installed = importlib.util.find_spec

    def without_hydras_plugins(name: str):
        return None if name.startswith("hydra_plugins.hydra_") else installed(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_hydras_plugins)
    with pytest.raises(ConfigError, match=re.escape(says) + ".*, which is not installed: pip install hydra-"):
        check_plugins(overrides)
    check_plugins(["hydra/launcher=stacked", "hparams_search=best_bound"])  # ours, always there
