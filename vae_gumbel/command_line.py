"""Checks of a command line before Hydra reads it, for the mistakes that Hydra would answer with a
Python trace, or with less than a user needs to know: a number, null or dict given to a config group
(``temperature=0.5``), and a launcher or sweeper whose plugin is not installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator, Sequence
from importlib.resources import files
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import OverrideParseException

from vae_gumbel import config
from vae_gumbel.errors import ConfigError


def check_command_line(overrides: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for the first override of entry point ``config_name`` (train, sample,
    evaluate) that these checks refuse."""
    check_group_choices(overrides, config_name)
    check_plugins(overrides)


def check_group_choices(overrides: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for a command-line value that a config group cannot take: a number, a
    boolean, null or a dict (``temperature=0.5``, ``debug=null``), at which Hydra stops with a
    Python trace.
    The message says what to write instead. Other overrides are left to Hydra."""
    for override in parsed_overrides(overrides):
        group = override.key_or_group
        if override.is_delete() or override.is_hydra_override() or not _conf_files().joinpath(group).is_dir():
            continue
        if override.value_type in (ValueType.GLOB_CHOICE_SWEEP, ValueType.INTERVAL_SWEEP):
            continue  # a glob names files; an interval is Optuna's, for a key
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is None or not isinstance(value, (str, list)):
                raise ConfigError(_not_a_choice(group, value, config_name))


# The Hydra plugins (the package's ``sweep`` extra) that a launcher or sweeper choice needs.
PLUGINS: dict[str, dict[str, str]] = {
    "hydra/launcher": {
        "joblib": "hydra-joblib-launcher",
        **dict.fromkeys(
            (
                "submitit_local",
                "submitit_slurm",
                "slurm",
                "submitit_slurm_jobs",
                "stacked_submitit_local",
                "stacked_slurm",
            ),
            "hydra-submitit-launcher",
        ),
    },
    "hydra/sweeper": {"optuna": "hydra-optuna-sweeper"},
    "hparams_search": {"optuna": "hydra-optuna-sweeper"},
}


def check_plugins(overrides: Sequence[str]) -> None:
    """Raises ConfigError for a launcher or sweeper chosen on the command line whose Hydra plugin is
    not installed, with the command that installs it (Hydra would say only that it cannot find the
    choice)."""
    for override in parsed_overrides(overrides):
        group = override.key_or_group
        choices = PLUGINS.get(group.removeprefix("/"), {})
        if not choices or override.is_delete():
            continue
        sweep = override.is_sweep_override()
        for value in override.sweep_string_iterator() if sweep else [override.value()]:
            package = choices.get(str(value))
            if package and importlib.util.find_spec(f"hydra_plugins.{package.replace('-', '_')}") is None:
                raise ConfigError(
                    f"{group}={value} needs Hydra's plugin {package}, which is not installed: pip install "
                    f"{package} (or install vae-gumbel with its sweep extra: pip install -e '.[sweep]')"
                )


def parsed_overrides(lines: Sequence[str]) -> Iterator[Any]:
    """Gives Hydra's parse of each override on a command line; flags and their values are skipped,
    and so are overrides Hydra cannot parse (it says what is wrong with them)."""
    parser = OverridesParser.create()
    for line in lines:
        if line.startswith("-") or "=" not in line:
            continue
        try:
            yield from parser.parse_overrides([line])
        except OverrideParseException:
            continue


def _conf_files() -> Any:
    return files("vae_gumbel.conf")


def _as_text(value: Any) -> str:
    """Gives a parsed command-line value as the user typed it."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_as_text(item)}" for key, item in value.items()) + "}"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _not_a_choice(group: str, value: Any, config_name: str) -> str:
    """Gives the error for ``group=value``: what the group takes, and how to set a key inside it (the
    keys of a dict one by one)."""
    conf = _conf_files()
    defaults = yaml.safe_load(conf.joinpath(f"{config_name}.yaml").read_text())["defaults"]
    chosen = {key.removeprefix("override ") for entry in defaults if isinstance(entry, dict) for key in entry}
    options = sorted(path.name.removesuffix(".yaml") for path in conf.joinpath(group).iterdir())
    kinds = {item.name: item.type for item in dataclasses.fields(config.SCHEMAS[config_name])}
    nested = _schema_of(kinds.get(group))
    keys = [item.name for item in dataclasses.fields(nested) if item.name != "name"] if nested else []
    listed = ", ".join(keys[:5]) + (
        f" and {len(keys) - 5} more: --cfg job shows them" if len(keys) > 5 else ""
    )
    said = f"{group}={_as_text(value)}: "
    if isinstance(value, dict):
        example = " ".join(f"{group}.{key}={_as_text(item)}" for key, item in value.items())
    else:
        example = f"{group}.{keys[0]}={_as_text(value)}" if keys else ""
    if group not in chosen:
        if keys:
            shown = example if isinstance(value, dict) else f"{group}.{keys[0]}=..."
            return f"{said}{group} holds settings ({listed}); set them one by one, e.g. {shown}"
        help_command = f"python -m vae_gumbel.{config_name} --help"
        return f"{said}{config_name} has no setting {group}; {help_command} lists them"
    said += f"{group} is a config group, which takes the name of one of its files ({', '.join(options)})"
    if value is None:
        return f"{said}; ~{group} leaves it out"
    if keys:
        return f"{said}; to set its keys ({listed}), write them one by one, e.g. {example}"
    return said


def _schema_of(kind: Any) -> type | None:
    """Gives the dataclass of a schema field's type (which ``from __future__ import annotations``
    leaves as its name), or None for a plain value."""
    found = getattr(config, kind, None) if isinstance(kind, str) else kind
    return found if isinstance(found, type) and dataclasses.is_dataclass(found) else None
