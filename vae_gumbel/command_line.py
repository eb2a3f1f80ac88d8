"""Checks of a command line before Hydra reads it, for the mistakes that Hydra would answer with a
Python trace, with a screenful, or not at all: a number, null or dict given to a config group
(``temperature=0.5``), a group's choice that has no file, a key that names no setting
(``optim.lrr=1``, or ``+data.dataset=x``, which Hydra adds and nothing reads), a value of the wrong
type, a launcher or sweeper whose plugin is not installed or that no config provides (or a
setting it does not have, ``hydra.launcher.max_memebers``), a path
without its key, an override Hydra's grammar cannot read (``hydra.run.dir=~/runs``), a sweep
without ``--multirun``, and two of Hydra's modes at once. Each is one
line that says what to write instead. Hydra's shell completion (``-sc``) takes its own
arguments, which are not settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import importlib.util
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, NoReturn

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import OverrideParseException

from vae_gumbel import config
from vae_gumbel.errors import ConfigError


def check_command_line(arguments: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for the first argument of entry point ``config_name`` (train, sample,
    evaluate) that these checks refuse."""
    parsed = hydra_flags(arguments)
    flags = None
    if parsed is not None:
        flags, unknown = parsed
        check_modes(flags)
        if flags.shell_completion:
            return  # its arguments are install=SHELL, uninstall=SHELL or query=SHELL, not settings
        check_unknown_flags(unknown, arguments, config_name)
        check_bare_words(flags.overrides, config_name)
        check_grammar(flags.overrides)
    check_group_choices(arguments, config_name)
    check_plugins(arguments)
    check_launcher_and_sweeper(arguments)
    if flags is not None and not (flags.multirun or flags.cfg or flags.info) and own_configs_only(arguments):
        check_sweeps_need_multirun(flags.overrides)
    if flags is not None and not (flags.cfg or flags.info) and own_configs_only(arguments):
        check_resume_has_a_folder(flags.overrides, multirun=flags.multirun)
    check_settings(arguments, config_name)
    check_plugin_settings(arguments, config_name)


def hydra_flags(arguments: Sequence[str]) -> tuple[argparse.Namespace, list[str]] | None:
    """Gives the command line as Hydra's own argument parser reads it (its flags, and the overrides
    in ``overrides``) and the flags it does not know, or None for a flag of its own that it cannot
    read, which is left to Hydra to say."""
    from hydra._internal.utils import get_args_parser

    def refuse(message: str) -> NoReturn:
        raise argparse.ArgumentError(None, message)

    # A flag argparse cannot read raises here, instead of printing the usage and exiting.
    parser = get_args_parser()
    parser.exit_on_error, parser.error = False, refuse  # type: ignore[method-assign]
    try:
        return parser.parse_known_args(list(arguments))
    except argparse.ArgumentError:
        return None


def check_unknown_flags(unknown: Sequence[str], arguments: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for a flag that no command here takes (``--epochs 10``, as scripts that
    read their settings with argparse are called), with the KEY=VALUE it was most likely meant as.
    Hydra would print its usage for it, and take a value given after it (``10``) for an override."""
    flag = next((word for word in unknown if word.startswith("-")), None)
    if flag is None:
        return
    name, given, value = flag.lstrip("-").partition("=")
    following = list(arguments)[list(arguments).index(flag) + 1 :]
    if not given and following and not following[0].startswith("-") and "=" not in following[0]:
        value = following[0]
    key, schema = name.replace("-", "_"), config.SCHEMAS[config_name]
    names = config.setting_names(schema)
    meant = key if key in names else config.nearest_setting(key, names, "")
    if meant and value and config.setting_value_error(meant, value, schema) is not None:
        if config.setting_value_error(meant, [value], schema) is None:
            value = f"[{value}]"  # a list setting: iwae_samples=[100]
    write = f"; write {meant}={value or 'VALUE'}" if meant else ""
    raise ConfigError(
        f"{flag}: {config_name} takes its settings as KEY=VALUE, not as flags{write} (--help lists "
        f"{config_name}'s settings)"
    )


# Hydra's subcommands of --shell-completion, given as SUBCOMMAND=SHELL.
SHELL_COMPLETION = ("install", "uninstall", "query")


def check_modes(flags: argparse.Namespace) -> None:
    """Raises ConfigError for a command line that asks Hydra for two of its modes at once (``-m``
    with ``--cfg job``, to see a sweep's config), for ``--resolve`` without ``--cfg``, or for
    ``--shell-completion`` without its one subcommand or with a shell it has no completion for, at
    each of which Hydra stops with a Python trace; and for ``--experimental-rerun``, which needs a
    pickle that no run writes and would skip the run folder's set-up."""
    modes = {
        "--run": flags.run,
        "--multirun": flags.multirun,
        "--cfg": flags.cfg is not None,
        "--info": flags.info is not None,
        "--shell-completion": flags.shell_completion,
    }
    given = [flag for flag, asked in modes.items() if asked]
    if len(given) > 1:
        hint = (
            "; leave out --multirun to see one job's config" if {"--multirun", "--cfg"} <= set(given) else ""
        )
        raise ConfigError(
            f"{' and '.join(given)} do not go together: Hydra does one of --run, --multirun, --cfg, "
            f"--info and --shell-completion at a time{hint}"
        )
    if flags.resolve and flags.cfg is None and not flags.help:
        raise ConfigError(
            "--resolve goes with --cfg (or --help): --cfg job --resolve prints the config resolved"
        )
    if flags.shell_completion:
        check_shell_completion(flags.overrides)
    if flags.experimental_rerun is not None:
        raise ConfigError(
            "--experimental-rerun is not supported: Hydra then calls the task without setting up its run "
            "folder; to train a run again, give the overrides in its .hydra/overrides.yaml, and to "
            "continue it, resume=last"
        )


def check_shell_completion(arguments: Sequence[str]) -> None:
    """Raises ConfigError for ``--shell-completion`` without its one subcommand, or for a shell that
    none of Hydra's completion plugins provides, at which Hydra stops with a Python trace."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.completion_plugin import CompletionPlugin

    given = dict(word.partition("=")[::2] for word in arguments if "=" in word)
    subcommands = [name for name in SHELL_COMPLETION if name in given]
    if len(subcommands) != 1:
        raise ConfigError(
            f"--shell-completion takes one of {', '.join(f'{name}=SHELL' for name in SHELL_COMPLETION)}, "
            f"got {' and '.join(subcommands) or 'none'}: -sc install=bash prints what to add to ~/.bashrc"
        )
    shells = sorted(plugin.provides() for plugin in Plugins.instance().discover(CompletionPlugin))
    if given[subcommands[0]] not in shells:
        raise ConfigError(
            f"{subcommands[0]}={given[subcommands[0]]}: Hydra completes the command line in "
            f"{', '.join(shells)}"
        )


# The setting that a bare path on the command line most likely names, for each entry point.
PATH_SETTING = {"train": "resume", "sample": "checkpoint", "evaluate": "checkpoint"}


def check_bare_words(overrides: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for an argument that is neither a flag nor KEY=VALUE (nor ~KEY, which
    deletes a key): a path given alone (``vae-gumbel-sample outputs/RUN``), which Hydra's grammar
    answers with "extraneous input '/'", gets the setting it was most likely meant for."""
    for word in overrides:
        if "=" in word or word.startswith("~"):
            continue
        setting = PATH_SETTING.get(config_name)
        if setting and ("/" in word or word.endswith(".pt") or Path(word).exists()):
            raise ConfigError(f"{word}: settings are written KEY=VALUE; for this path write {setting}={word}")
        raise ConfigError(
            f"{word}: settings are written KEY=VALUE (seed=1), or ~KEY to remove one; "
            f"--help lists {config_name}'s settings"
        )


# Where Hydra's override grammar is written down.
GRAMMAR = "https://hydra.cc/docs/1.3/advanced/override_grammar/basic/"
LEXER_FAILED = "LexerNoViableAltException: "


def check_grammar(overrides: Sequence[str]) -> None:
    """Raises ConfigError for an override that Hydra's grammar cannot read, which Hydra answers
    with a paragraph and exit status 1. A ``~`` inside a value (``hydra.run.dir=~/runs``: the shell
    expands it only after a plain variable's name, as in ``resume=~/runs``) gets the path written
    with ``$HOME``, which the shell expands."""
    parser = OverridesParser.create()
    for line in overrides:
        try:
            parser.parse_overrides([line])
        except OverrideParseException as err:
            key, _, value = line.partition("=")
            if value == "~" or value.startswith("~/"):
                raise ConfigError(
                    f"{line}: Hydra reads ~ only before a key (~KEY removes it) and does not expand "
                    f"it to your home folder; write {key}={value.replace('~', '$HOME', 1)}"
                ) from None
            raise ConfigError(
                f"{line}: Hydra cannot read this override ({grammar_failure(line, str(err))}); quote "
                "a value that holds anything but ASCII letters, digits, spaces and _ - / \\ + . : $ % * @ "
                f"? | (brackets, commas, = and quotes included), KEY='VALUE', and see {GRAMMAR}"
            ) from None


def grammar_failure(line: str, message: str) -> str:
    """Gives what Hydra's parser says is wrong with override ``line``, in a few words: the character
    its lexer stopped at, or the parser's complaint without its list of expected tokens."""
    lines = message.splitlines()
    if lines[0].startswith(LEXER_FAILED) and len(lines) > 1:  # the next line's caret points at it
        at = lines[1].find("^") - len(LEXER_FAILED)
        if 0 <= at < len(line):
            return f"{line[at]!r} at character {at + 1} stops it"
    complaint = lines[1] if lines[0].startswith("Error parsing override") and len(lines) > 1 else lines[0]
    return complaint.split(" expecting ")[0]


def check_resume_has_a_folder(overrides: Sequence[str], multirun: bool) -> None:
    """Raises ConfigError for ``resume=last`` without the folder of the run it would continue:
    it continues the run in the command's own folder, and without ``hydra.run.dir`` (in a sweep,
    ``hydra.sweep.dir``) that folder is a new one, named by the date and time, which holds no run.
    The run would start afresh while its user thinks it continued."""
    given = {
        override.key_or_group: override.value()
        for override in parsed_overrides(overrides)
        if not override.is_sweep_override()
    }
    if given.get("resume") != "last":
        return
    # A search's files set hydra.mode to MULTIRUN; a trial continued alone sets it back to RUN.
    mode = given.get("hydra.mode", "MULTIRUN" if "hparams_search" in given else None)
    multirun = multirun or mode == "MULTIRUN"
    folder = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if folder in given:
        return
    runs = "each job's run in the sweep's folder" if multirun else "the run in this command's folder"
    raise ConfigError(
        f"resume=last continues {runs}, and without {folder} that folder is a new one, named by the "
        f"date and time, which holds no run: add {folder}=FOLDER, the folder of the "
        f"{'sweep' if multirun else 'run'} to continue"
        + ("" if multirun else " (or give resume=FOLDER to train on from its checkpoint in a new folder)")
    )


def check_sweeps_need_multirun(overrides: Sequence[str]) -> None:
    """Raises ConfigError for a sweep (``seed=0,1``, ``range(...)``) on a command line without
    ``--multirun`` that no packaged config turns into a multirun (``hparams_search`` does): Hydra
    answers it with a paragraph and exit status 1. A comma-separated value was most likely meant
    as a sweep in ``train`` and as a list in ``sample`` and ``evaluate``; the line names both."""
    parsed = list(parsed_overrides(overrides))
    if any(override.key_or_group in ("hparams_search", "hydra.mode") for override in parsed):
        return  # Hydra decides; hparams_search's files set hydra.mode to MULTIRUN
    for override in parsed:
        if not override.is_sweep_override():
            continue
        as_list = ""
        if (
            override.value_type == ValueType.SIMPLE_CHOICE_SWEEP
            and not _conf_files().joinpath(override.key_or_group).is_dir()
        ):  # a list of a group's choices composes them all: not what a user means here
            values = ",".join(override.sweep_string_iterator())
            as_list = f", or write {override.key_or_group}=[{values}] for a list"
        raise ConfigError(
            f"{override.input_line}: a sweep needs -m (--multirun), which runs one job per value{as_list}"
        )


def check_group_choices(overrides: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for a command-line value that a config group cannot take: a number, a
    boolean, null or a dict (``temperature=0.5``, ``debug=null``), at which Hydra stops with a
    Python trace, or the name of a file the group does not have (``estimator=reinforce``), which
    Hydra answers with a screenful. The message says what to write instead. Other overrides are
    left to Hydra, and so are names where the command line adds config folders of the user's own."""
    for override in parsed_overrides(overrides):
        group = override.key_or_group
        if override.is_delete() or override.is_hydra_override() or not _conf_files().joinpath(group).is_dir():
            continue
        if override.is_add() and group in _groups_of(config_name) and own_configs_only(overrides):
            typed, default = override.input_line, _defaults_of(config_name)[group]
            raise ConfigError(
                f"{typed}: {group} is already in {config_name}'s defaults ({default or 'none'} by default); "
                f"write {typed.removeprefix('+')} to choose"
            )
        if override.value_type in (ValueType.GLOB_CHOICE_SWEEP, ValueType.INTERVAL_SWEEP):
            continue  # a glob names files; an interval is Optuna's, for a key
        for value in values_of(override):
            if value is None or not isinstance(value, (str, list)):
                raise ConfigError(_not_a_choice(group, value, config_name))
            named = [value] if isinstance(value, str) else value
            missing = [name for name in named if not _conf_files().joinpath(group, f"{name}.yaml").is_file()]
            if missing and group in _groups_of(config_name) and own_configs_only(overrides):
                choices = ", ".join(_options(group))
                raise ConfigError(
                    f"{group}={missing[0]}: {group} has no config {missing[0]}; choose one of: {choices}"
                )


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
                "stacked_submitit_slurm",
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
    choice). Installing ``vae-gumbel[sweep]`` over an installed vae-gumbel adds the extra's plugins
    and keeps the install as it is (editable or not, from a checkout or a wheel)."""
    for override in parsed_overrides(overrides):
        group = override.key_or_group
        choices = PLUGINS.get(group.removeprefix("/"), {})
        if not choices or override.is_delete():
            continue
        for value in names_of(override):
            package = choices.get(value)
            if package and importlib.util.find_spec(f"hydra_plugins.{package.replace('-', '_')}") is None:
                raise ConfigError(
                    f"{group}={value} needs Hydra's plugin {package}, which is not installed: pip install "
                    f"'vae-gumbel[sweep]' adds it with the other plugins of the sweep extra to the "
                    f"installed vae-gumbel (or only it: pip install {package})"
                )


def check_settings(overrides: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for an override whose key names no setting of entry point ``config_name``,
    with the setting it most likely meant, or whose value the setting cannot take. Hydra would
    suggest ``+`` for the first, and then add a key that the run never reads."""
    schema = config.SCHEMAS[config_name]
    for override in parsed_overrides(overrides):
        key = override.key_or_group
        if override.is_hydra_override() or override.package is not None or "/" in key:
            continue
        if "." not in key and (key in _groups_of(config_name) or not own_configs_only(overrides)):
            continue  # a config group, ours or one in the user's own config folders
        message = config.unknown_setting(key, schema, config_name)
        if message is not None:
            raise ConfigError(message)
        if override.is_delete() or override.value_type in (
            ValueType.GLOB_CHOICE_SWEEP,
            ValueType.INTERVAL_SWEEP,
        ):
            continue
        for value in values_of(override):
            if (why := config.setting_value_error(key, value, schema)) is None:
                continue
            if not isinstance(value, list) and config.setting_value_error(key, [value], schema) is None:
                why = f"{key} takes a list, in brackets, e.g. {key}=[{_as_text(value)}]"
            raise ConfigError(f"{key}={_as_text(value)}: {why}")


# Hydra's plugins whose settings a command line may set, as hydra.KIND.KEY=VALUE.
PLUGIN_KINDS = ("launcher", "sweeper")
# Where a sweeper takes the settings it sweeps (Hydra's basic sweeper and Optuna's).
SWEPT_SETTINGS = "hydra.sweeper.params."


def check_plugin_settings(overrides: Sequence[str], config_name: str) -> None:
    """Raises ConfigError for ``hydra.launcher.KEY`` or ``hydra.sweeper.KEY`` where the chosen
    launcher or sweeper has no setting KEY, with the one it most likely meant: Hydra answers with
    a paragraph and exit status 1; and for a swept parameter, ``hydra.sweeper.params.KEY``, that
    names no setting, which would fail every job. Only such a command line pays for composing
    Hydra's config."""
    prefixes = tuple(f"hydra.{kind}." for kind in PLUGIN_KINDS)
    parsed = list(parsed_overrides(overrides))
    keyed = [o for o in parsed if o.key_or_group.startswith(prefixes) and not (o.is_add() or o.is_delete())]
    if not keyed or not own_configs_only(overrides):
        return
    groups = _groups_of(config_name)
    for override in keyed:  # a sweeper's parameters are the run's settings, or its groups
        swept = override.key_or_group.removeprefix(SWEPT_SETTINGS)
        if swept == override.key_or_group or swept in groups:
            continue
        if (message := config.unknown_setting(swept, config.SCHEMAS[config_name], config_name)) is not None:
            raise ConfigError(f"{override.key_or_group}: {message}")
    keyed = [o for o in keyed if not o.key_or_group.startswith(SWEPT_SETTINGS)]
    if not keyed:
        return  # only swept parameters, checked above: nothing to compose Hydra's config for
    from hydra import compose, initialize_config_module

    chosen = [o for o in parsed if "/" in o.key_or_group or o.key_or_group in groups]
    if any(o.is_sweep_override() for o in chosen):
        return  # the jobs' launchers or sweepers may differ: Hydra checks each
    choices = [o.input_line for o in chosen]
    try:
        with initialize_config_module(config_module=config.CONFIG_MODULES[config_name], version_base="1.3"):
            chosen_config = compose(config_name, overrides=choices, return_hydra_config=True).hydra
    except Exception:  # whatever stops the composition, Hydra says it as it composes the run
        return
    for override in keyed:
        _, kind, key = override.key_or_group.split(".", 2)
        first = key.split(".")[0]
        known = list(chosen_config[kind].keys())
        if first in known:
            continue
        name = chosen_config.runtime.choices.get(f"hydra/{kind}", kind)
        close = difflib.get_close_matches(first, known, n=1, cutoff=0.6)
        guess = f" (did you mean hydra.{kind}.{close[0]}?)" if close else ""
        settings = [k for k in known if k != "_target_"]
        if not settings:
            options = ", ".join(_hydra_options(f"hydra/{kind}"))
            raise ConfigError(
                f"{override.key_or_group}: the {name} {kind} has no settings; choose the {kind} "
                f"that has it with hydra/{kind}=NAME ({options})"
            )
        raise ConfigError(
            f"{override.key_or_group} is not a setting of the {name} {kind}{guess}; "
            f"it has: {', '.join(settings)}"
        )


def own_configs_only(arguments: Sequence[str]) -> bool:
    """Says whether a command line reads only the packaged configs: it names no config folder
    (``--config-dir``, ``--config-path``, their short forms, ``hydra.searchpath``), whose groups and
    choices are the user's own, and no other primary config (``--config-name``, ``-cn``)."""
    flags = ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn")
    return not any(
        argument in flags
        or argument.startswith(tuple(f"{flag}=" for flag in flags))
        or argument.lstrip("+").startswith("hydra.searchpath=")
        for argument in arguments
    )


def check_launcher_and_sweeper(overrides: Sequence[str]) -> None:
    """Raises ConfigError for a launcher or sweeper that no installed config provides
    (``hydra/launcher=stacke``), with the ones that are there: Hydra would answer with a screenful
    and exit code 1. Only a name that is neither packaged nor one of the known plugins' asks Hydra
    for its list (which imports every installed plugin), and a command line with config folders of
    the user's own is left to Hydra."""
    if not own_configs_only(overrides):
        return
    for override in parsed_overrides(overrides):
        group = override.key_or_group.removeprefix("/")
        if group not in ("hydra/launcher", "hydra/sweeper") or override.is_delete():
            continue
        known = {"basic", "stacked", *PLUGINS[group]}
        if _conf_files().joinpath(group).is_dir():
            known.update(_options(group))
        for value in names_of(override):
            if value not in known and value not in (options := _hydra_options(group)):
                raise ConfigError(
                    f"{group}={value}: {group} has no config {value}; choose one of: {', '.join(options)}"
                )


def _hydra_options(group: str) -> list[str]:
    """Gives the choices that Hydra finds for one of its own groups, from its configs, the packaged
    ones and those of every installed plugin."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.object_type import ObjectType

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path("pkg://vae_gumbel.conf"))
    return loader.get_group_options(group, results_filter=ObjectType.CONFIG)


def values_of(override: Any) -> list[Any]:
    """Gives the values of an override: each value of a sweep, or its one value."""
    return list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]


def names_of(override: Any) -> list[str]:
    """Gives the values of an override as the text of each, as a choice of a Hydra group names it."""
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [str(override.value())]


def parsed_overrides(lines: Sequence[str]) -> Iterator[Any]:
    """Gives Hydra's parse of each override on a command line; flags and their values are skipped,
    and so are overrides Hydra cannot parse (it says what is wrong with them)."""
    parser = OverridesParser.create()
    for line in lines:
        if line.startswith("-") or "=" not in line and not line.startswith("~"):  # ~key deletes a key
            continue
        try:
            yield from parser.parse_overrides([line])
        except OverrideParseException:
            continue


def _conf_files() -> Any:
    """Gives the folder of the packaged config groups (train's)."""
    return files(config.CONFIG_MODULES["train"])


@functools.cache
def _defaults_of(config_name: str) -> dict[str, str | None]:
    """Gives the config groups that entry point ``config_name`` chooses from, those its primary
    config's defaults list names, each with its default choice (None: the group is optional)."""
    primary = files(config.CONFIG_MODULES[config_name]).joinpath(f"{config_name}.yaml")
    defaults = yaml.safe_load(primary.read_text())["defaults"]
    return {
        key.removeprefix("override "): choice
        for entry in defaults
        if isinstance(entry, dict)
        for key, choice in entry.items()
    }


def _groups_of(config_name: str) -> frozenset[str]:
    """Gives the config groups that entry point ``config_name`` chooses from."""
    return frozenset(_defaults_of(config_name))


def _options(group: str) -> list[str]:
    """Gives the choices of a packaged config group: its files' names."""
    folder = _conf_files().joinpath(group)
    return sorted(path.name.removesuffix(".yaml") for path in folder.iterdir() if path.name.endswith(".yaml"))


def _as_text(value: Any) -> str:
    """Gives a parsed command-line value as the user typed it."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_as_text(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_as_text(item) for item in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _not_a_choice(group: str, value: Any, config_name: str) -> str:
    """Gives the error for ``group=value``: what the group takes, and how to set a key inside it (the
    keys of a dict one by one)."""
    chosen = _groups_of(config_name)
    options = _options(group)
    nested = config.nested_schema(config.SCHEMAS[config_name], group)
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
