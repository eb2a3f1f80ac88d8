"""The configuration schema behind the YAML files in ``conf/``.

The dataclasses give every key its type, so Hydra rejects an unknown key or a wrong type
at composition, with the key's full name. Values live in the YAML files (fields without a
default are filled there); ``validate`` builds the dataclasses, whose ``__post_init__``
checks ranges and choices before any work starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from vae_gumbel.errors import ConfigError
from vae_gumbel.estimators import ESTIMATORS

# The YAML files, as an absolute path: entry points may run as __main__ or as imported modules.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
BINARIZE_MODES = ("dynamic", "static", "none")
SCHEDULES = ("constant", "exp_anneal", "learned")
COMPILE_MODES = ("auto", "false", "true", "default", "reduce-overhead", "max-autotune")
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _require(condition: bool, key: str, allowed: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{key} must be {allowed}, got {value!r}")


def _choice(key: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    _require(value in choices, key, f"one of {list(choices)}", value)


def _device(key: str, value: str) -> None:
    _require(
        DEVICE_PATTERN.fullmatch(value) is not None, key, "one of 'auto', 'cpu', 'cuda', 'cuda:N'", value
    )


@dataclass
class DataConfig:
    root: str = MISSING
    batch_size: int = MISSING
    binarize: str = MISSING
    train_limit: int | None = None
    test_limit: int | None = None
    download: bool = True
    verify_checksums: bool = True
    binarize_seed: int = 0

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "data.batch_size", ">= 1", self.batch_size)
        _choice("data.binarize", self.binarize, BINARIZE_MODES)
        for key in ("train_limit", "test_limit"):
            limit = getattr(self, key)
            _require(limit is None or limit >= 1, f"data.{key}", "null or >= 1", limit)


@dataclass
class ModelConfig:
    latent_dim: int = MISSING
    categorical_dim: int = MISSING
    hidden: list[int] = field(default_factory=lambda: [512, 256])

    def __post_init__(self) -> None:
        _require(self.latent_dim >= 1, "model.latent_dim", ">= 1", self.latent_dim)
        _require(self.categorical_dim >= 2, "model.categorical_dim", ">= 2", self.categorical_dim)
        _require(all(w >= 1 for w in self.hidden), "model.hidden", "a list of sizes >= 1", self.hidden)


@dataclass
class EstimatorConfig:
    name: str = MISSING
    rao_samples: int = 10  # gumbel_rao: conditional Gumbel draws averaged per sample
    kl: str = "analytic"  # analytic | relaxed (single-sample ExpConcrete KL, gumbel_softmax only)
    prior_temperature: float = 0.5  # the relaxed prior's temperature, with kl=relaxed

    def __post_init__(self) -> None:
        _choice("estimator.name", self.name, sorted(ESTIMATORS))
        _require(self.rao_samples >= 1, "estimator.rao_samples", ">= 1", self.rao_samples)
        _choice("estimator.kl", self.kl, ("analytic", "relaxed"))
        _require(
            self.kl == "analytic" or self.name == "gumbel_softmax",
            "estimator.kl",
            "analytic unless estimator.name=gumbel_softmax (the relaxed KL needs a relaxed sample)",
            self.kl,
        )
        _require(self.prior_temperature > 0, "estimator.prior_temperature", "> 0", self.prior_temperature)


@dataclass
class TemperatureConfig:
    schedule: str = MISSING
    initial: float = MISSING
    min: float | None = None
    rate: float | None = None
    every: int = 1

    def __post_init__(self) -> None:
        _choice("temperature.schedule", self.schedule, SCHEDULES)
        _require(self.initial > 0, "temperature.initial", "> 0", self.initial)
        if self.schedule in ("exp_anneal", "learned"):
            _require(self.min is not None and self.min > 0, "temperature.min", "> 0", self.min)
        if self.schedule == "exp_anneal":
            _require(self.min <= self.initial, "temperature.min", f"<= initial ({self.initial})", self.min)
            _require(self.rate is not None and self.rate > 0, "temperature.rate", "> 0", self.rate)
            _require(self.every >= 1, "temperature.every", ">= 1", self.every)
        if self.schedule == "learned":
            _require(self.min < self.initial, "temperature.min", f"< initial ({self.initial})", self.min)


@dataclass
class OptimConfig:
    lr: float = MISSING
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", "> 0", self.lr)
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            "two numbers in [0, 1)",
            self.betas,
        )
        _require(self.eps > 0, "optim.eps", "> 0", self.eps)
        _require(self.weight_decay >= 0, "optim.weight_decay", ">= 0", self.weight_decay)


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
    progress: bool = True
    num_threads: int | None = None
    compile: str = "auto"  # auto | false | true | default | reduce-overhead | max-autotune
    compile_backend: str = "inductor"
    precision: str = "32"  # 32 | bf16 (autocast; losses stay float32)
    tf32: bool = True  # TF32 matmuls on CUDA

    def __post_init__(self) -> None:
        _require(self.epochs >= 0, "trainer.epochs", ">= 0", self.epochs)
        _require(
            self.num_threads is None or self.num_threads >= 1,
            "trainer.num_threads",
            "null or >= 1",
            self.num_threads,
        )
        self.compile = str(self.compile).lower()
        _choice("trainer.compile", self.compile, COMPILE_MODES)
        _choice("trainer.precision", str(self.precision), ("32", "bf16"))
        _device("trainer.device", self.device)
        for key in ("log_every_n_steps", "checkpoint_every", "sample_every", "eval_every", "eval_batch_size"):
            _require(getattr(self, key) >= 1, f"trainer.{key}", ">= 1", getattr(self, key))


@dataclass
class EvalConfig:
    # Importance-weighted test NLL at the end of training, e.g. [1, 100, 5000]; null skips it.
    final_iwae_samples: list[int] | None = None
    iwae_max_rows: int = 50_000  # decoded images per chunk: bounds the memory of the estimate
    iwae_seed: int = 0

    def __post_init__(self) -> None:
        samples = self.final_iwae_samples
        _require(
            samples is None or (samples and min(samples) >= 1),
            "eval.final_iwae_samples",
            "null or a list of numbers >= 1",
            samples,
        )
        _require(self.iwae_max_rows >= 1, "eval.iwae_max_rows", ">= 1", self.iwae_max_rows)


@dataclass
class TrainConfig:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    estimator: EstimatorConfig = MISSING
    temperature: TemperatureConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    resume: str | None = None


SAMPLE_MODES = ("prior", "reconstruction", "traversal", "temperature")


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
    data_root: str | None = None

    def __post_init__(self) -> None:
        _choice("which", self.which, ("best", "last"))
        _choice("mode", self.mode, SAMPLE_MODES)
        _choice("code", self.code, ("sample", "argmax"))
        _require(self.rows >= 1, "rows", ">= 1", self.rows)
        _require(self.cols >= 1, "cols", ">= 1", self.cols)
        _device("device", self.device)
        _require(
            len(self.temperatures) >= 1 and all(t > 0 for t in self.temperatures),
            "temperatures",
            "a non-empty list of numbers > 0",
            self.temperatures,
        )


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    which: str = "best"
    iwae_samples: list[int] = field(default_factory=lambda: [1, 10, 100, 1000, 5000])
    batch_size: int = 100
    max_rows: int = 50_000
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    test_limit: int | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        _choice("which", self.which, ("best", "last"))
        _require(
            bool(self.iwae_samples) and min(self.iwae_samples) >= 1,
            "iwae_samples",
            "a non-empty list of numbers >= 1",
            self.iwae_samples,
        )
        _require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        _require(self.max_rows >= 1, "max_rows", ">= 1", self.max_rows)
        _device("device", self.device)
        _require(
            self.test_limit is None or self.test_limit >= 1, "test_limit", "null or >= 1", self.test_limit
        )


def validate(cfg: DictConfig, schema: type = TrainConfig) -> Any:
    """Gives the typed, range-checked settings of a composed config, or raises ConfigError."""
    try:
        settings = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as err:  # OmegaConf's MissingMandatoryValue, ValidationError, ...
        raise ConfigError(str(err).splitlines()[0]) from None
    if not isinstance(settings, schema):
        raise ConfigError(f"expected a {schema.__name__}, got {type(settings).__name__}")
    return settings


def register_configs() -> None:
    """Registers the schemas that the primary configs in ``conf/`` name first in their defaults."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(name="sample_schema", node=SampleConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)


def _register_resolvers() -> None:
    # The process id keeps two runs started in the same second out of each other's folder.
    if not OmegaConf.has_resolver("pid"):
        OmegaConf.register_new_resolver("pid", lambda: os.getpid(), use_cache=True)


register_configs()
_register_resolvers()
