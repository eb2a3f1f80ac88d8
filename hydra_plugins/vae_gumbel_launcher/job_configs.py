"""A sweep's job configs, composed once per shape: the jobs of a grid differ only in values.

Hydra composes every job of a sweep from scratch (``ConfigLoader.load_sweep_config``): it reads
and merges every YAML file of the defaults list again, about 0.2 s a job on a 2-core CPU, which a
sweep of 64 short jobs pays about 13 s for. Most jobs of a grid differ from each other only in the
values of existing settings (``seed=3 optim.lr=3e-4``). ``JobConfigs`` composes the first job of
each shape through Hydra (the same overrides but for those values) and derives the others from
it, as Hydra itself would finish them: each value set with ``OmegaConf.update`` (which checks it
against the schema), the job's overrides recorded in ``hydra.overrides.task`` and its
``hydra.job.override_dirname``, the master config's resolver cache copied. Anything else (a
config group's choice, ``+``, ``~``, a dict value, ``hydra.*``, a key that names no single value)
is part of the shape, so that job is composed by Hydra; so is a job whose value does not fit its
setting, so that the error is Hydra's own. A test holds derived configs against Hydra's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class JobConfigs:
    """Gives job configs as ``compose`` (a config loader's ``load_sweep_config``, called with
    ``master_config`` and ``sweep_overrides``) would, deriving a job that differs from one composed
    before only in values; ``repository`` (the loader's) says which keys are config groups."""

    def __init__(self, compose: Callable[..., DictConfig], repository: Any = None) -> None:
        self.compose = compose
        self.repository = repository
        self.parser = OverridesParser.create()
        # shape -> (master config, the first job's config); the master is held so its id stays its own
        self.bases: dict[tuple, tuple[DictConfig, DictConfig]] = {}

    def __call__(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> DictConfig:
        overrides = list(sweep_overrides)
        if self.repository is None:
            return self.compose(master_config=master_config, sweep_overrides=overrides)
        parsed = self.parser.parse_overrides(overrides)
        is_value = [self.is_value(override) for override in parsed]
        values = [override for override, value in zip(parsed, is_value, strict=True) if value]
        keys = [override.key_or_group for override in values]
        others = [override.input_line for override, value in zip(parsed, is_value, strict=True) if not value]
        shape = (id(master_config), tuple(others), tuple(keys))
        if shape in self.bases and len(set(keys)) == len(keys):
            derived = self.derive(self.bases[shape][1], master_config, parsed, values)
            if derived is not None:
                return derived
        config = self.compose(master_config=master_config, sweep_overrides=overrides)
        if shape not in self.bases:  # a copy: the launcher sets fields of the job's own config
            self.bases[shape] = (master_config, copy.deepcopy(config))
        return config

    def is_value(self, override: Override) -> bool:
        """Says whether ``override`` sets the value of a setting (no group, no ``+``/``~``, no dict)."""
        key = override.key_or_group
        return (
            override.type == OverrideType.CHANGE
            and override.package is None
            and not override.is_hydra_override()
            and not override.is_sweep_override()
            and "/" not in key
            and not isinstance(override.value(), dict)
            and not self.repository.group_exists(key)
        )

    @staticmethod
    def derive(
        base: DictConfig, master_config: DictConfig, parsed: list[Override], values: list[Override]
    ) -> DictConfig | None:
        """Gives the base config with these values, as Hydra finishes a composed config; None where a
        value does not fit (Hydra then composes the job and says why)."""
        config = copy.deepcopy(base)
        for override in values:
            if not is_setting(base, override.key_or_group):
                return None  # no such setting, or a section: Hydra's error, or Hydra's merge
            try:
                OmegaConf.update(config, override.key_or_group, override.value(), merge=True)
            except OmegaConfBaseException:
                return None
        app = [override for override in parsed if not override.is_hydra_override()]
        config.hydra.overrides.task = [override.input_line for override in app]
        names = config.hydra.job.config.override_dirname
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app, kv_sep=names.kv_sep, item_sep=names.item_sep, exclude_keys=list(names.exclude_keys)
        )
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config


def is_setting(config: DictConfig, key: str) -> bool:
    """Says whether dotted ``key`` names one value of ``config`` (a scalar or a list), looked up
    without resolving any interpolation on the way."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return False
        node = node._get_node(part, throw_on_missing_key=False)
    return node is not None and not isinstance(node, DictConfig)
