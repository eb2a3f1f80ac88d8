"""The configuration: the packaged YAML, the typed schema behind it, and its one-line refusals."""

from __future__ import annotations

import importlib
import math
import pkgutil
import types
from pathlib import Path

import pytest

from tests.conftest import compose_config, documented_command_lines, fixture_data
from vae_gumbel.config import (
    CONFIG_MODULES,
    SCHEMAS,
    EstimatorConfig,
    ModelConfig,
    TemperatureConfig,
    check_read,
    compose_settings,
    validate,
)
from vae_gumbel.data import BINARIZATIONS
from vae_gumbel.datasets import DATASETS
from vae_gumbel.errors import ConfigError
from vae_gumbel.estimators import ESTIMATORS
from vae_gumbel.model import MODELS
from vae_gumbel.objectives import OBJECTIVES
from vae_gumbel.optim import OPTIMIZERS
from vae_gumbel.schedules import SCHEDULES
from vae_gumbel.train import train

CONF = Path(__file__).resolve().parents[1] / "vae_gumbel" / "conf"


def test_defaults_compose_to_the_documented_set_up() -> None:
    settings = compose_settings()
    assert (settings.data.name, settings.model.name, settings.optim.name) == ("mnist", "mlp", "adam")
    assert (settings.model.latent_dim, settings.model.categorical_dim) == (30, 10)
    assert settings.model.hidden == [512, 256]
    assert (settings.data.batch_size, settings.data.binarize) == (100, "dynamic")
    assert settings.estimator.name == "gumbel_softmax"
    assert (settings.objective.name, settings.objective.kl) == ("elbo", "analytic")
    temp = settings.temperature
    assert (temp.name, temp.initial, temp.min, temp.rate, temp.every) == ("exp_anneal", 1.0, 0.5, 3e-5, 1000)
    assert (settings.optim.lr, settings.trainer.epochs, settings.seed, settings.resume) == (1e-3, 10, 0, None)


def test_overrides_and_groups_change_the_config() -> None:
    settings = compose_settings(["estimator=straight_through", "temperature=learned", "optim.lr=3e-4"])
    assert settings.estimator.name == "straight_through"
    assert (settings.temperature.name, settings.temperature.min) == ("learned", 0.1)
    assert settings.optim.lr == 3e-4


@pytest.mark.parametrize(
    "group, registry",
    [
        ("data", DATASETS),
        ("model", MODELS),
        ("estimator", ESTIMATORS),
        ("objective", OBJECTIVES),
        ("temperature", SCHEDULES),
        ("optim", OPTIMIZERS),
    ],
)
def test_every_file_of_a_group_names_a_registered_implementation(group: str, registry: dict) -> None:
    files = sorted(path.stem for path in (CONF / group).glob("*.yaml"))
    assert files, group
    for name in files:
        settings = compose_settings([f"{group}={name}"])
        assert getattr(settings, group).name in registry, (group, name)


def test_seed_notebook_experiment_reproduces_the_tutorial_set_up() -> None:
    settings = compose_settings(["experiment=seed_notebook"])
    assert settings.data.binarize == "none"
    assert (settings.temperature.name, settings.temperature.initial) == ("constant", 1.0)
    assert (settings.model.latent_dim, settings.model.categorical_dim, settings.data.batch_size) == (
        30,
        10,
        100,
    )
    assert settings.trainer.epochs == 10


@pytest.mark.parametrize(
    "overrides", [["experiment=jang2017"], ["experiment=reinmax2023"], ["hparams_search=best_bound"]]
)
def test_the_long_set_ups_write_checkpoints_and_pictures_every_10_epochs(overrides: list[str]) -> None:
    trainer = compose_settings(overrides).trainer
    assert trainer.epochs >= 100 and (trainer.checkpoint_every, trainer.sample_every) == (10, 10)


def test_fashion_mnist_and_radam_are_choices_of_their_groups() -> None:
    settings = compose_settings(["data=fashion_mnist", "optim=radam"])
    assert (settings.data.name, settings.optim.name) == ("fashion_mnist", "radam")


def test_debug_groups_shrink_a_run_for_users_ci_and_tests() -> None:
    smoke = compose_settings(["debug=smoke"])
    assert (smoke.trainer.epochs, smoke.data.train_limit, smoke.trainer.progress) == (1, 2000, "false")
    assert smoke.model.hidden == [512, 256]  # the configured model, smoke-tested
    tiny = compose_settings(["debug=tiny"])
    assert (tiny.trainer.epochs, tiny.data.train_limit, tiny.data.batch_size) == (1, 2000, 20)
    assert (tiny.model.latent_dim, tiny.model.categorical_dim, tiny.model.hidden) == (4, 5, [32])
    # What the tests compare is the same on every machine: one thread, float32 (not the defaults).
    assert (smoke.trainer.num_threads, smoke.trainer.precision) == ("auto", "auto")
    assert (tiny.trainer.num_threads, tiny.trainer.precision) == ("1", "32")


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_trains_briefly(
    experiment: str, mnist_root: Path, tmp_path: Path
) -> None:
    cfg = compose_config("train", [f"experiment={experiment}", "debug=smoke", *fixture_data(mnist_root)])
    metrics = train(cfg, tmp_path)
    assert metrics["epoch"] == 1 and math.isfinite(metrics["test/loss"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("temperature.initial=0", "temperature.initial must be > 0"),
        ("temperature.rate=-1e-4", "temperature.rate must be > 0"),
        ("temperature.min=2.0", "temperature.min must be <= initial"),
        ("model.latent_dim=0", "model.latent_dim must be >= 1"),
        ("model.categorical_dim=1", "model.categorical_dim must be >= 2"),
        ("model.hidden=[0]", "model.hidden must be a list of sizes >= 1"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("trainer.epochs=-1", "trainer.epochs must be >= 0"),
        ("trainer.device=tpu", "trainer.device must be one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
        ("data.binarize=half", r"data.binarize must be one of \['dynamic', 'none', 'static'\]"),
        ("data.name=cifar", r"data.name must be one of \['fashion_mnist', 'mnist'\]"),
        ("estimator.name=reinforce", "estimator.name must be one of"),
        ("estimator.rao_samples=0", "estimator.rao_samples must be >= 1"),
        ("optim.name=sgd", r"optim.name must be one of \['adam', 'radam'\]"),
        ("model.name=transformer", r"model.name must be one of \['mlp'\]"),
        ("objective.kl=exact", "objective.kl must be one of"),
        ("seed=-1", r"seed must be a whole number from 0 to 2\*\*32 - 1 \(4294967295\), got -1"),
        ("seed=4294967296", "seed must be a whole number from 0 to"),
        ("data.binarize_seed=-1", "data.binarize_seed must be a whole number from 0 to"),
        ("eval.iwae_seed=-2", "eval.iwae_seed must be a whole number from 0 to"),
        ("optim.lr=inf", "optim.lr must be a finite number, got inf"),
        ("temperature.rate=inf", "temperature.rate must be a finite number, got inf"),
        ("estimator.gap=inf", "estimator.gap must be a finite number, got inf"),
    ],
)
def test_bad_values_are_refused_naming_the_key(compose_train, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_train(override))


def test_a_key_added_with_hydras_plus_is_refused_not_carried_unread(compose_train) -> None:
    with pytest.raises(
        ConfigError, match=r"^trainer\.epoch is not a setting of train \(did you mean trainer\.epochs\?\)"
    ):
        validate(compose_train("+trainer.epoch=20"))
    with pytest.raises(ConfigError, match="^rowz is not a setting of sample"):
        compose_settings(["checkpoint=x", "+rowz=4"], "sample", SCHEMAS["sample"])


def test_a_setting_that_nothing_gives_a_value_is_named_with_what_it_takes(compose_train) -> None:
    for entry in ("sample", "evaluate"):
        with pytest.raises(
            ConfigError, match=f"^{entry} needs checkpoint=..., a run's folder .* or a .pt file$"
        ):
            compose_settings([], entry, SCHEMAS[entry])
    with pytest.raises(ConfigError, match=r"^train needs trainer\.epochs=\.\.\., which no config file sets$"):
        validate(compose_train("trainer.epochs=???"))


@pytest.mark.parametrize(
    "schedule, values, message",
    [
        ("constant", {"initial": 0.0}, "initial must be > 0"),
        ("exp_anneal", {"initial": 1.0, "min": 2.0, "rate": 1e-4}, "min must be <= initial"),
        ("exp_anneal", {"initial": 1.0, "min": 0.5, "rate": 0.0}, "rate must be > 0"),
        ("exp_anneal", {"initial": 1.0, "min": 0.5, "rate": 1e-4, "every": 0}, "every must be >= 1"),
        ("learned", {"initial": 0.5, "min": 0.5}, r"temperature.min must be < initial \(0.5\)"),
        ("cosine", {"initial": 1.0}, "temperature.name must be one of"),
    ],
)
def test_bad_schedule_values_are_refused(schedule: str, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TemperatureConfig(name=schedule, **values)


@pytest.mark.parametrize("sizes", [{"latent_dim": 0}, {"categorical_dim": 1}, {"hidden": [0]}])
def test_bad_model_sizes_are_refused(sizes: dict) -> None:
    with pytest.raises(ConfigError, match="must be >= 1|must be >= 2|sizes >= 1"):
        ModelConfig(**{"name": "mlp", "latent_dim": 30, "categorical_dim": 10, **sizes})


def test_an_unknown_estimator_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="gumbel_softmax"):
        EstimatorConfig(name="reinforce")


def test_relaxed_kl_with_a_straight_through_estimator_is_refused(compose_train) -> None:
    with pytest.raises(ConfigError, match="objective.kl must be analytic with a straight-through estimator"):
        validate(compose_train("estimator=straight_through", "objective.kl=relaxed"))


def test_every_binarization_is_registered_once() -> None:
    assert sorted(BINARIZATIONS) == ["dynamic", "none", "static"]


@pytest.mark.parametrize("launcher", ["slurm", "submitit_slurm", "submitit_local"])
def test_submitit_launcher_configs_compose(launcher: str) -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="vae_gumbel.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_
    if launcher == "slurm":
        assert (cfg.hydra.launcher.partition, cfg.hydra.launcher.gpus_per_node) == ("gpu", 1)
        assert cfg.hydra.launcher.timeout_min == 240


def test_hydras_plugin_scan_can_check_every_name_in_this_packages_plugins() -> None:
    """Hydra looks at every name in a plugin module and asks issubclass(name, Plugin) of classes. On
    Python 3.10 it takes a list[...] alias for a class, and the scan, with every command, fails."""
    import hydra_plugins.vae_gumbel_launcher as plugins

    for module_info in pkgutil.iter_modules(plugins.__path__, f"{plugins.__name__}."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            assert not isinstance(value, types.GenericAlias), f"{module_info.name}.{name}"


def test_optuna_config_composes_with_its_search_space() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="vae_gumbel.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "minimize" and cfg.hydra.mode.name == "MULTIRUN"
    assert sweeper.params["optim.lr"] == "tag(log, interval(1e-4, 3e-3))"


def test_the_best_bound_search_is_a_grid_selected_on_held_out_training_images() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="vae_gumbel.conf", version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=best_bound"], return_hydra_config=True)
    assert "BasicSweeper" in cfg.hydra.sweeper._target_ and "Stacked" in cfg.hydra.launcher._target_
    assert cfg.hydra.sweeper.params["model.latent_dim"] == "20,30,50"
    settings = validate(compose_config("train", ["hparams_search=best_bound"]))
    assert (settings.data.validation, settings.data.binarize, settings.trainer.epochs) == (
        10000,
        "dynamic",
        100,
    )
    assert (settings.eval.final_iwae_on, settings.eval.final_iwae_samples) == ("val", [1000])
    assert settings.model.hidden == [512, 256]


def test_the_readme_lists_every_option_of_every_config_group() -> None:
    readme = (CONF.parents[1] / "README.md").read_text()
    groups = sorted(
        path for path in CONF.iterdir() if path.is_dir() and path.name not in ("hydra", "__pycache__")
    )
    for group in groups:
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| `{group.name}` |")]
        options = row.split("|")[2]
        for option in sorted(path.stem for path in group.glob("*.yaml")):
            assert f"`{option}`" in options, (group.name, option)


def documented_commands(module: str) -> list[list[str]]:
    """Gives the arguments of every ``python -m vae_gumbel.MODULE`` command in the code blocks of the
    README and docs/."""
    import shlex

    return [
        shlex.split(command, comments=True)[3:]
        for command in documented_command_lines()
        if command.startswith(f"python -m vae_gumbel.{module} ")
    ]


def first_job(arguments: list[str]) -> list[str]:
    """Gives the overrides of a command line's first job: its flags dropped, each sweep at its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, overrides = OverridesParser.create(), []
    for argument in arguments:
        if argument.startswith("-") or "=" not in argument:  # -m, --cfg job
            continue
        override = parser.parse_override(argument)
        if override.is_sweep_override():
            argument = f"{override.get_key_element()}={next(override.sweep_string_iterator())}"
        overrides.append(argument)
    return overrides


@pytest.mark.parametrize("module", sorted(SCHEMAS))
def test_every_documented_command_line_composes_and_passes_its_checks(module: str) -> None:
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    from vae_gumbel.command_line import check_command_line

    commands = documented_commands(module)
    assert commands
    for arguments in commands:
        check_command_line(arguments, module)
        with initialize_config_module(config_module=CONFIG_MODULES[module], version_base="1.3"):
            cfg = compose(module, overrides=first_job(arguments), return_hydra_config=True)
        with open_dict(cfg):  # and its values pass their checks
            del cfg["hydra"]
        validate(cfg, SCHEMAS[module])


@pytest.mark.parametrize(
    ("choice", "given", "readers"),
    [
        (
            "estimator=gumbel_softmax",
            "estimator.rao_samples=100",
            "estimator=gumbel_rao or estimator=reinmax_rao",
        ),
        ("estimator=reinmax", "estimator.gap=2.0", "estimator=gapped_straight_through"),
        ("temperature=constant", "temperature.rate=0.001", "temperature=exp_anneal"),
        ("temperature=learned", "temperature.every=10", "temperature=exp_anneal"),
        ("objective.kl=analytic", "objective.prior_temperature=0.3", "objective.kl=relaxed"),
    ],
)
def test_a_setting_given_that_the_choice_of_its_group_does_not_read_is_refused(
    choice: str, given: str, readers: str
) -> None:
    """It would change nothing: ``estimator.rao_samples=100`` with Gumbel-Softmax is not Gumbel-Rao."""
    with pytest.raises(ConfigError) as refused:
        check_read(compose_settings([choice, given]), [given.split("=")[0]])
    assert str(refused.value) == (
        f"{given}: {choice} does not read it, so it would change nothing; leave it out, or choose {readers}"
    )


def test_settings_that_the_choices_read_or_that_no_command_line_gave_pass() -> None:
    # Read by the choice of their group, or a group whose choices all read the same settings.
    check_read(
        compose_settings(["estimator=gumbel_rao", "estimator.rao_samples=100", "temperature.rate=1e-3"]),
        ["estimator.rao_samples", "estimator.name", "temperature.rate", "optim.lr", "seed"],
    )
    check_read(
        compose_settings(["objective.kl=relaxed", "objective.prior_temperature=0.3"]),
        ["objective.kl", "objective.prior_temperature", "objective.name"],
    )
    # An experiment's file sets the annealing rate; a constant temperature leaves it unread, unasked.
    check_read(compose_settings(["experiment=jang2017", "temperature=constant"]), ["temperature.initial"])
