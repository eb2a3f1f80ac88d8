"""The configuration schema behind the YAML files in ``vae_gumbel/conf/``.

The dataclasses give every key its type, so Hydra rejects an unknown key or a wrong type
at composition, with the key's full name (and ``validate`` a key added with Hydra's ``+``, which
Hydra lets in). Values live in the YAML files (fields without a default are filled there);
``validate`` builds the dataclasses, whose ``__post_init__`` checks ranges and choices before any
work starts. Each group's ``name`` selects an implementation from the registry in the module that
builds it, and that registry's keys are the allowed values.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf

from vae_gumbel.data import BINARIZATIONS
from vae_gumbel.datasets import DATASETS
from vae_gumbel.device import device_setting
from vae_gumbel.errors import ConfigError, first_line
from vae_gumbel.estimators import ESTIMATORS
from vae_gumbel.model import MODELS
from vae_gumbel.objectives import KL_READS, KL_TERMS, OBJECTIVES
from vae_gumbel.optim import OPTIMIZERS
from vae_gumbel.schedules import SCHEDULES
from vae_gumbel.step import COMPILE_SETTINGS, PRECISIONS

# Where each entry point finds its primary config: inside the installed package, from any
# directory. sample and evaluate take no config groups: theirs live apart from train's groups.
CONFIG_MODULES = {
    "train": "vae_gumbel.conf",
    "sample": "vae_gumbel.conf_checkpoint",
    "evaluate": "vae_gumbel.conf_checkpoint",
}


def config_path(config_name: str) -> str:
    """Gives the config path of entry point ``config_name``, as ``hydra.main`` takes it."""
    return f"pkg://{CONFIG_MODULES[config_name]}"


def require(condition: bool, key: str, allowed: str, value: Any) -> None:
    """Raises ConfigError naming ``key``, what it must be, and the value it got."""
    if not condition:
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def choice(key: str, value: str, choices: Any) -> None:
    require(value in choices, key, f"one of {sorted(choices)}", value)


# Python's, numpy's and torch's generators all take a seed in this range.
SEED_LIMIT = 2**32 - 1


def seed_setting(key: str, value: int) -> None:
    require(0 <= value <= SEED_LIMIT, key, f"a whole number from 0 to 2**32 - 1 ({SEED_LIMIT})", value)


def output_file_setting(key: str, value: str | None, suffix: str) -> None:
    """Refuses an output path that does not end in the suffix of what is written there (a folder's
    name included)."""
    require(
        value is None or value.lower().endswith(suffix),
        key,
        f"null or the path of a file ending in {suffix} (what it writes is {suffix[1:].upper()})",
        value,
    )


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = MISSING
    batch_size: int = MISSING
    binarize: str = MISSING
    train_limit: int | None = None
    test_limit: int | None = None
    validation: int = 0
    download: bool = True
    verify_checksums: bool = True
    binarize_seed: int = 0

    def __post_init__(self) -> None:
        choice("data.name", self.name, DATASETS)
        require(self.batch_size >= 1, "data.batch_size", ">= 1", self.batch_size)
        choice("data.binarize", self.binarize, BINARIZATIONS)
        for key in ("train_limit", "test_limit"):
            limit = getattr(self, key)
            require(limit is None or limit >= 1, f"data.{key}", "null or >= 1", limit)
        require(self.validation >= 0, "data.validation", ">= 0 (training images held out)", self.validation)
        seed_setting("data.binarize_seed", self.binarize_seed)


@dataclass
class ModelConfig:
    name: str = MISSING
    latent_dim: int = MISSING
    categorical_dim: int = MISSING
    hidden: list[int] = field(default_factory=lambda: [512, 256])

    def __post_init__(self) -> None:
        choice("model.name", self.name, MODELS)
        require(self.latent_dim >= 1, "model.latent_dim", ">= 1", self.latent_dim)
        require(self.categorical_dim >= 2, "model.categorical_dim", ">= 2", self.categorical_dim)
        require(all(w >= 1 for w in self.hidden), "model.hidden", "a list of sizes >= 1", self.hidden)


@dataclass
class EstimatorConfig:
    name: str = MISSING
    rao_samples: int = 10  # gumbel_rao, reinmax_rao: conditional Gumbel draws averaged per sample
    forward_temperature: float = 1.0  # decoupled_straight_through: the forward sample's temperature
    gap: float = 1.0  # gapped_straight_through: how far the sampled category leads the others

    def __post_init__(self) -> None:
        choice("estimator.name", self.name, ESTIMATORS)
        require(self.rao_samples >= 1, "estimator.rao_samples", ">= 1", self.rao_samples)
        require(
            self.forward_temperature > 0, "estimator.forward_temperature", "> 0", self.forward_temperature
        )
        require(self.gap > 0, "estimator.gap", "> 0", self.gap)


@dataclass
class ObjectiveConfig:
    name: str = "elbo"
    kl: str = "analytic"  # analytic | relaxed (single-sample ExpConcrete KL; needs a relaxed z)
    prior_temperature: float = 0.5  # the relaxed prior's temperature, with kl=relaxed

    def __post_init__(self) -> None:
        choice("objective.name", self.name, OBJECTIVES)
        choice("objective.kl", self.kl, KL_TERMS)
        require(self.prior_temperature > 0, "objective.prior_temperature", "> 0", self.prior_temperature)


@dataclass
class TemperatureConfig:
    name: str = MISSING
    initial: float = MISSING
    min: float | None = None
    rate: float | None = None
    every: int = 1

    def __post_init__(self) -> None:
        choice("temperature.name", self.name, SCHEDULES)
        require(self.initial > 0, "temperature.initial", "> 0", self.initial)
        needed = SCHEDULES[self.name].fields
        if "min" in needed:
            require(self.min is not None and self.min > 0, "temperature.min", "> 0", self.min)
            # A learned temperature starts above its floor; an annealed one may start on it.
            strictly = self.name == "learned"
            require(
                self.min < self.initial or (self.min == self.initial and not strictly),
                "temperature.min",
                f"{'<' if strictly else '<='} initial ({self.initial})",
                self.min,
            )
        if "rate" in needed:
            require(self.rate is not None and self.rate > 0, "temperature.rate", "> 0", self.rate)
        if "every" in needed:
            require(self.every >= 1, "temperature.every", ">= 1", self.every)


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        choice("optim.name", self.name, OPTIMIZERS)
        require(self.lr > 0, "optim.lr", "> 0", self.lr)
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            "two numbers in [0, 1)",
            self.betas,
        )
        require(self.eps > 0, "optim.eps", "> 0", self.eps)
        require(self.weight_decay >= 0, "optim.weight_decay", ">= 0", self.weight_decay)


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    device: str = "auto"
    log_every_n_steps: int = 50
    checkpoint_every: int = 1
    sample_every: int = 1
    eval_every: int = 1
    eval_batch_size: int = 10_000
    eval_seed: int = 1234
    sample_seed: int = 0
    progress: str = "auto"  # auto (a bar on a terminal; in a file, log lines for long work) | true | false
    num_threads: str | None = (
        "auto"  # auto (the cores others leave free, checked each epoch) | N | null (all)
    )
    compile: str = "auto"  # auto | false | true | default | reduce-overhead | max-autotune
    compile_backend: str = "inductor"
    compile_cache: str | None = (
        "~/.cache/vae-gumbel/compile"  # compiled code kept between runs; null: torch's own
    )
    precision: str = (
        "auto"  # auto (bf16 on a CPU with native bf16) | 32 | bf16 (autocast; losses stay float32)
    )
    tf32: bool = True  # TF32 matmuls on CUDA
    timeline: bool = False  # write timeline.json (wall time of each phase) and log it as a table

    def __post_init__(self) -> None:
        require(self.epochs >= 0, "trainer.epochs", ">= 0", self.epochs)
        if self.num_threads is not None:
            self.num_threads = str(self.num_threads).lower()
        fixed = self.num_threads not in (None, "auto")
        require(
            not fixed or (self.num_threads.isdigit() and int(self.num_threads) >= 1),
            "trainer.num_threads",
            "auto, a number >= 1, or null (all cores)",
            self.num_threads,
        )
        self.compile = str(self.compile).lower()
        choice("trainer.compile", self.compile, COMPILE_SETTINGS)
        self.progress = str(self.progress).lower()
        choice("trainer.progress", self.progress, ("auto", "true", "false"))
        choice("trainer.precision", str(self.precision), PRECISIONS)
        device_setting("trainer.device", self.device)
        for key in ("log_every_n_steps", "checkpoint_every", "sample_every", "eval_every", "eval_batch_size"):
            require(getattr(self, key) >= 1, f"trainer.{key}", ">= 1", getattr(self, key))
        for key in ("eval_seed", "sample_seed"):
            seed_setting(f"trainer.{key}", getattr(self, key))


@dataclass
class EvalConfig:
    # Importance-weighted test NLL at the end of training, e.g. [1, 100, 5000]; null skips it.
    final_iwae_samples: list[int] | None = None
    iwae_max_rows: int = 50_000  # decoded images per chunk: bounds the memory of the estimate
    iwae_seed: int = 0
    final_iwae_on: str = "test"  # test | val: the validation set (data.validation), for searches

    def __post_init__(self) -> None:
        choice("eval.final_iwae_on", self.final_iwae_on, ("test", "val"))
        samples = self.final_iwae_samples
        require(
            samples is None or (samples and min(samples) >= 1),
            "eval.final_iwae_samples",
            "null or a list of numbers >= 1",
            samples,
        )
        require(self.iwae_max_rows >= 1, "eval.iwae_max_rows", ">= 1", self.iwae_max_rows)
        seed_setting("eval.iwae_seed", self.iwae_seed)


@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    estimator: EstimatorConfig = MISSING
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    temperature: TemperatureConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    resume: str | None = None
    resume_weights_only: bool = False  # start a new run from the checkpoint's weights (fine-tuning)

    def __post_init__(self) -> None:
        seed_setting("seed", self.seed)
        require(
            not self.resume_weights_only or self.resume not in (None, "last"),
            "resume_weights_only",
            "false unless resume names another run's checkpoint or folder (a new run starts from it)",
            self.resume_weights_only,
        )
        require(
            self.objective.kl != "relaxed" or ESTIMATORS[self.estimator.name].relaxed,
            "objective.kl",
            "analytic with a straight-through estimator (the relaxed KL needs a relaxed sample: "
            f"estimator={', '.join(name for name, kind in ESTIMATORS.items() if kind.relaxed)})",
            self.objective.kl,
        )
        require(
            self.eval.final_iwae_on != "val" or self.data.validation > 0,
            "eval.final_iwae_on",
            "test unless data.validation holds images out (e.g. data.validation=10000)",
            self.eval.final_iwae_on,
        )


@dataclass
class TestImagesConfig:
    """Where the sample entry point reads test images; default: as the checkpoint's run. (How many
    follows from the grid.)"""

    root: str | None = None


@dataclass
class TestDataConfig(TestImagesConfig):
    """Where the evaluate entry point reads test images, and how many."""

    test_limit: int | None = None

    def __post_init__(self) -> None:
        require(
            self.test_limit is None or self.test_limit >= 1,
            "data.test_limit",
            "null or >= 1",
            self.test_limit,
        )


@dataclass
class SampleConfig:
    checkpoint: str = MISSING
    which: str = "best"
    mode: str = "prior"
    rows: int = 8
    cols: int = 8
    seed: int = 0
    out: str | None = None
    device: str = "auto"
    code: str = "sample"
    variables: list[int] | None = None
    temperatures: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 5.0])
    overwrite: bool = False
    data: TestImagesConfig = field(default_factory=TestImagesConfig)

    def __post_init__(self) -> None:
        from vae_gumbel.grids import MAX_TILES, RECONSTRUCTION_CODES, SAMPLE_MODES

        choice("which", self.which, ("best", "last"))
        choice("mode", self.mode, SAMPLE_MODES)
        choice("code", self.code, RECONSTRUCTION_CODES)
        self.check_read_by_mode(SAMPLE_MODES)
        require(self.rows >= 1, "rows", ">= 1", self.rows)
        require(self.cols >= 1, "cols", ">= 1", self.cols)
        require(
            self.variables is None or len(self.variables) >= 1,
            "variables",
            "null (the rows with the highest KL) or a non-empty list of latent variables",
            self.variables,
        )
        tiles = SAMPLE_MODES[self.mode].tiles(self)
        if tiles > MAX_TILES:
            rows = (
                f"{len(self.temperatures)} temperatures"
                if self.mode == "temperature"
                else f"rows={self.rows}"
            )
            raise ConfigError(
                f"mode={self.mode} with {rows} and cols={self.cols} asks for a grid of {tiles:,} pictures, "
                f"more than the {MAX_TILES:,} one grid may hold (256 x 256, 2.5 GB to draw); draw several "
                "with other seeds"
            )
        seed_setting("seed", self.seed)
        output_file_setting("out", self.out, ".png")
        device_setting("device", self.device)
        require(
            len(self.temperatures) >= 1 and all(t > 0 for t in self.temperatures),
            "temperatures",
            "a non-empty list of numbers > 0",
            self.temperatures,
        )

    def check_read_by_mode(self, modes: dict[str, Any]) -> None:
        """Refuses a setting that only another mode reads (``variables`` without mode=traversal,
        say), or that this mode does not read (``rows`` with mode=temperature), given a value of its
        own: it would be ignored, and the grid would not be the one meant."""
        from vae_gumbel.grids import GRID_SETTINGS

        defaults = {
            item.name: item.default_factory()
            if item.default_factory is not dataclasses.MISSING
            else item.default
            for item in dataclasses.fields(self)
        }

        def given(key: str) -> str | None:  # the value given, as a command line writes it; None: the default
            if (value := getattr(self, key)) == defaults[key]:
                return None
            if isinstance(value, list):
                return f"[{','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)}]"
            return str(value)

        for name, mode in modes.items():
            for key in mode.own if name != self.mode else ():
                if (value := given(key)) is not None:
                    raise ConfigError(
                        f"{key}={value} is read by mode={name} only, and this grid is mode={self.mode}: "
                        f"add mode={name}, or leave {key} out"
                    )
        mode = modes[self.mode]
        for key in GRID_SETTINGS:
            if key not in mode.reads(self) and (value := given(key)) is not None:
                grid = f"mode={self.mode}, whose grid is {mode.layout}"
                raise ConfigError(f"{key}={value} is not read by {grid}: leave {key} out")


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    which: str = "best"
    iwae_samples: list[int] = field(default_factory=lambda: [1, 10, 100, 1000, 5000])
    batch_size: int = 100
    max_rows: int = 50_000
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    progress: str = "auto"
    data: TestDataConfig = field(default_factory=TestDataConfig)
    split: str = "test"

    def __post_init__(self) -> None:
        choice("which", self.which, ("best", "last"))
        choice("split", self.split, ("test", "val"))
        if self.split == "val" and self.data.test_limit is not None:
            raise ConfigError(
                f"data.test_limit={self.data.test_limit} limits the test set, and split=val evaluates "
                "the run's whole validation set; drop data.test_limit (or evaluate split=test)"
            )
        seed_setting("seed", self.seed)
        output_file_setting("out", self.out, ".json")
        self.progress = str(self.progress).lower()
        choice("progress", self.progress, ("auto", "true", "false"))
        require(
            bool(self.iwae_samples) and min(self.iwae_samples) >= 1,
            "iwae_samples",
            "a non-empty list of numbers >= 1",
            self.iwae_samples,
        )
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(self.max_rows >= 1, "max_rows", ">= 1", self.max_rows)
        device_setting("device", self.device)


def flat_settings(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Gives a typed config as dotted key -> value (lists as tuples)."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if dataclasses.is_dataclass(value):
            values.update(flat_settings(value, f"{prefix}{item.name}."))
        else:
            values[f"{prefix}{item.name}"] = tuple(value) if isinstance(value, list) else value
    return values


def nested_schema(schema: type, name: str) -> type | None:
    """Gives the dataclass of ``schema``'s field ``name`` where it holds settings of its own."""
    kind = get_type_hints(schema).get(name)
    return kind if isinstance(kind, type) and dataclasses.is_dataclass(kind) else None


def setting_names(schema: type, prefix: str = "") -> list[str]:
    """Gives the dotted key of every setting of ``schema``."""
    names = []
    for item in dataclasses.fields(schema):
        nested = nested_schema(schema, item.name)
        names += setting_names(nested, f"{prefix}{item.name}.") if nested else [f"{prefix}{item.name}"]
    return names


def setting_holder(key: str, schema: type) -> tuple[str, type | None, str]:
    """Walks a dotted ``key`` down ``schema``: gives the key of the deepest group of settings it
    reaches ("" for the whole schema), that group's dataclass (None past a plain setting), and the
    rest of the key."""
    parts = key.split(".")
    node: type | None = schema
    for depth, part in enumerate(parts[:-1]):
        if node is None or part not in {item.name for item in dataclasses.fields(node)}:
            return ".".join(parts[:depth]), node, ".".join(parts[depth:])
        node = nested_schema(node, part)
    return ".".join(parts[:-1]), node, parts[-1]


def nearest_setting(key: str, names: Sequence[str], holder: str) -> str | None:
    """Gives the setting among ``names`` that a mistyped ``key`` most likely meant: the one whose
    last part is ``key``'s last part, or the closest spelling of it (``lrr``: ``lr``), preferring
    ``holder``'s settings; None where no single one stands out."""
    ends = {name: name.rsplit(".", 1)[-1] for name in names}
    spelled = difflib.get_close_matches(key.rsplit(".", 1)[-1], sorted(set(ends.values())), n=5, cutoff=0.7)
    in_holder = [f"{holder}.{end}" for end in spelled if f"{holder}.{end}" in ends] if holder else []
    if in_holder:
        return in_holder[0]
    anywhere = [name for name, end in ends.items() if spelled and end == spelled[0]]
    return anywhere[0] if len(anywhere) == 1 else None


def unknown_setting(key: str, schema: type, entry: str) -> str | None:
    """Gives the error for a dotted ``key`` that names no setting of ``schema``, the settings of
    ``python -m vae_gumbel.ENTRY``, with the setting it most likely meant; None for a setting or a
    group of them."""
    holder, node, rest = setting_holder(key, schema)
    if node is not None and rest in {item.name for item in dataclasses.fields(node)}:
        return None
    nearest = nearest_setting(key, setting_names(schema), holder)
    guess = f" (did you mean {nearest}?)" if nearest else ""
    if not holder or node is None:  # the key's first part names no group: list the entry's own
        holder, node = entry, schema
    names = [
        item.name + (".*" if nested_schema(node, item.name) else "") for item in dataclasses.fields(node)
    ]
    return f"{key} is not a setting of {entry}{guess}; {holder} has: {', '.join(names)}"


def setting_value_error(key: str, value: Any, schema: type) -> str | None:
    """Gives why setting ``key`` of ``schema`` cannot take ``value`` (its type: Hydra's words, in
    one line), or None where it can, or where ``key`` is a group of settings (Hydra says what a
    group takes)."""
    _, node, rest = setting_holder(key, schema)
    if node is None or nested_schema(node, rest) is not None:
        return None
    try:
        OmegaConf.update(_type_checker(node), rest, value, merge=True)
    except Exception as err:  # OmegaConf's ValidationError
        return first_line(err)
    return None


@functools.cache
def _type_checker(schema: type) -> DictConfig:
    """Gives a typed config of ``schema`` that values are set into only to check their types (its
    values are never read): built once per schema, since building one takes milliseconds."""
    return OmegaConf.structured(schema)


def unknown_keys(cfg: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Gives the dotted keys of a composed config that ``schema`` does not know: keys added with
    Hydra's ``+``, which the typed settings would carry as attributes that nothing reads."""
    known = {item.name for item in dataclasses.fields(schema)}
    found = []
    for key in map(str, cfg):
        if key not in known:
            found.append(f"{prefix}{key}")
            continue
        nested, node = nested_schema(schema, key), cfg._get_node(key)  # the node, unresolved
        if nested is not None and isinstance(node, DictConfig):
            found += unknown_keys(node, nested, f"{prefix}{key}.")
    return found


def entry_name(schema: type) -> str:
    """Gives the entry point whose settings ``schema`` holds (train, sample, evaluate), else its name."""
    return next((name for name, known in SCHEMAS.items() if known is schema), schema.__name__)


def validate(cfg: DictConfig | dict, schema: type = TrainConfig) -> Any:
    """Gives the typed, range-checked settings of a composed config (or of a plain dict, as a
    checkpoint records it), or raises ConfigError."""
    if isinstance(cfg, DictConfig) and (extra := unknown_keys(cfg, schema)):
        raise ConfigError(unknown_setting(extra[0], schema, entry_name(schema)))
    try:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        settings = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except MissingMandatoryValue as err:
        raise ConfigError(missing_setting(str(err.full_key), entry_name(schema))) from None
    except Exception as err:  # OmegaConf's ValidationError, ...
        raise ConfigError(first_line(err)) from None
    if not isinstance(settings, schema):
        raise ConfigError(f"expected a {schema.__name__}, got {type(settings).__name__}")
    require_finite(settings)
    return settings


# The config groups whose settings are read by some choices only: the setting that chooses, and
# the settings each choice reads.
CHOICE_READS: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "temperature": ("name", {name: kind.fields for name, kind in SCHEDULES.items()}),
    "estimator": ("name", {name: kind.reads for name, kind in ESTIMATORS.items()}),
    "objective": ("kl", KL_READS),
}


def check_read(settings: TrainConfig, given: Sequence[str]) -> None:
    """Raises ConfigError for a setting given on the command line (``given``: dotted keys) that the
    choice in its group does not read: ``estimator.rao_samples`` with ``estimator=gumbel_softmax``
    would change nothing, and the run would not be the one meant. Values that an experiment's file
    gives are not checked: ``experiment=jang2017 temperature=constant`` keeps the file's rate."""
    for key in given:
        group, _, name = key.partition(".")
        if group not in CHOICE_READS:
            continue
        selector, reads = CHOICE_READS[group]
        held = getattr(settings, group)
        chosen = getattr(held, selector)
        if name in ("", "name", selector) or name in reads[chosen]:
            continue
        chooser = group if selector == "name" else f"{group}.{selector}"  # estimator, objective.kl
        readers = " or ".join(f"{chooser}={choice}" for choice, read in reads.items() if name in read)
        raise ConfigError(
            f"{key}={getattr(held, name, '')}: {chooser}={chosen} does not read it, so it would change "
            f"nothing; leave it out, or choose {readers}"
        )


# What a setting without a default takes, where no config file gives it a value either.
REQUIRED = {"checkpoint": "a run's folder (its best.pt), a sweep's folder (each of its runs) or a .pt file"}


def missing_setting(key: str, entry: str) -> str:
    """Says which setting entry point ``entry`` cannot do without, and what it takes (OmegaConf would
    say "Structured config of type `SampleConfig` has missing mandatory value")."""
    return f"{entry} needs {key}=..., {REQUIRED.get(key, 'which no config file sets')}"


def require_finite(settings: Any) -> None:
    """Refuses an infinite number anywhere in the settings: it passes every range check (inf > 0) and
    only turns the loss into NaN at the first step."""
    for key, value in flat_settings(settings).items():
        numbers = value if isinstance(value, tuple) else (value,)
        finite = all(math.isfinite(x) for x in numbers if isinstance(x, float))
        if isinstance(value, tuple):
            require(finite, key, "finite numbers", list(value))
        else:
            require(finite, key, "a finite number", value)


def compose_settings(
    overrides: Sequence[str] = (), config_name: str = "train", schema: type = TrainConfig
) -> Any:
    """Gives the typed settings of the packaged config with ``overrides``, composed as the entry
    point composes them: for tools and tests that build runs without a command line."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULES[config_name], version_base="1.3"):
        return validate(compose(config_name, overrides=list(overrides)), schema)


# Each entry point's primary config (NAME.yaml in its CONFIG_MODULES) and the schema it names first
# in its defaults.
SCHEMAS: dict[str, type] = {"train": TrainConfig, "sample": SampleConfig, "evaluate": EvaluateConfig}


def register_configs() -> None:
    """Registers the schemas that the primary configs name first in their defaults."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)


def _register_resolvers() -> None:
    # The process id keeps two runs started in the same second out of each other's folder.
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)


register_configs()
_register_resolvers()
