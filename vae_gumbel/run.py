"""A training run: one model, or a stack of models trained as one, built from typed settings.

Every run is a stack of M >= 1 members. Each member is a job of its own, with its settings, its
run folder and its log; the members share one model with a leading member axis on its weights,
one optimizer, one step and one pass over the data, each in its own random order. A single run
is a stack of one, and computes exactly what a lone model would.

Members may differ in what a tensor can carry: seed (initial weights), the optimizer's
settings, the temperature schedule's numbers. Everything else (sizes, data, estimator,
precision, epochs, ...) must agree: ``stack_key`` says what, and a launcher puts jobs that
differ there into separate runs.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vae_gumbel.checkpoint import (
    check_compatible,
    load_checkpoint,
    load_member_weights,
    restore_member,
    restore_rng_state,
)
from vae_gumbel.compile_cache import CompileCache
from vae_gumbel.config import TrainConfig, flat_settings
from vae_gumbel.data import Data, load_data
from vae_gumbel.device import (
    allow_tf32,
    flush_denormals,
    quiet_cuda_warnings,
    resolve_device,
    resolve_precision,
    slow_precision,
)
from vae_gumbel.errors import CheckpointError, ConfigError, NonFiniteLossError, describe
from vae_gumbel.estimators import build_estimator
from vae_gumbel.interrupts import StopRequest
from vae_gumbel.jobs import RUN_CONTROL_KEYS
from vae_gumbel.loop import EpochResult, StepFunction, Temperatures, train_epoch
from vae_gumbel.model import CategoricalVAE, build_model, stack
from vae_gumbel.objectives import build_objective
from vae_gumbel.optim import StackOptimizer
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.schedules import Schedule, build_schedule
from vae_gumbel.step import STEP_VALUES, StepPlan, build_step, plan_step
from vae_gumbel.threads import ThreadCount
from vae_gumbel.timeline import TIMELINE
from vae_gumbel.tracking import JobRecord, RunLog, write_status

log = logging.getLogger("vae_gumbel.train")

# Settings each member of a stack may have of its own.
PER_MEMBER_KEYS = ("seed", "optim.lr", "optim.betas", "optim.eps", "optim.weight_decay") + tuple(
    f"temperature.{key}" for key in ("initial", "min", "rate", "every")
)


def stack_key(settings: TrainConfig) -> tuple:
    """Gives what jobs must share to train in one stack: every setting but the per-member ones."""
    return tuple(
        (key, value)
        for key, value in flat_settings(settings).items()
        if key not in PER_MEMBER_KEYS and key not in RUN_CONTROL_KEYS
    )


def stacks_by_key(keyed: Sequence[tuple[int, Hashable]], max_members: int | None = None) -> list[list[int]]:
    """Gives the jobs (index, key) that train as one stack: those of equal key (``stack_key``, and
    where they stand), in order of first appearance, at most ``max_members`` to a stack."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in keyed:
        groups.setdefault(key, []).append(index)
    stacks = []
    for indices in groups.values():
        size = max_members or len(indices)
        stacks += [indices[start : start + size] for start in range(0, len(indices), size)]
    return stacks


@dataclass
class Member:
    """One job of a run: its settings and resolved config (as checkpoints record it), its run
    folder, and where it stands."""

    settings: TrainConfig
    config: dict[str, Any]
    folder: RunFolder | None  # None for a run that is stepped but never written (benchmarks)
    tensorboard_name: str | None = None
    logger: logging.Logger = log
    swept: frozenset[str] = frozenset()  # the settings its sweep varies from job to job, if in one
    job: JobRecord | None = None  # Hydra's record of its job, to write into .hydra/ at acceptance (JobRecord)
    overrides: tuple[str, ...] | None = None  # its job's command line; None for a run started from Python
    best_test_loss: float = math.inf
    best_val_loss: float = math.inf  # on the validation set, if the run holds one out: best.pt's
    error: Exception | None = None  # what stopped it, if it failed
    run_log: RunLog | None = None
    final: dict[str, Any] = field(default_factory=dict)  # its last epoch's metrics
    snapshot: dict[str, Any] | None = None  # its checkpoint at the last epoch boundary, in memory
    saved_epoch: int | None = None  # the epoch of its last.pt on disk
    best_snapshot: dict[str, Any] | None = None  # its best epoch's checkpoint, until best.pt holds it
    pictures_failed: bool = False  # whether a picture of its could not be written (said once)
    frozen_since: int | None = None  # the epoch since which its encoder is frozen (watch_code)

    def best_loss(self, split: str) -> float:
        """Gives its lowest loss so far on ``split``: test, or val (the validation set)."""
        return self.best_val_loss if split == "val" else self.best_test_loss


@dataclass
class Run:
    """A stack of members trained as one, and where the stack stands."""

    members: list[Member]
    device: torch.device
    data: Data
    model: CategoricalVAE  # every weight (M, ...)
    schedule: Schedule
    optimizer: StackOptimizer
    step_fn: StepFunction
    mask: torch.Tensor  # (M,) on the device: which members the step still trains
    epoch: int = 0
    step: int = 0
    active: list[bool] = field(default_factory=list)
    compile_cache: CompileCache | None = None  # where compiled code is kept, if the step compiles
    step_path: str = ""  # how the step runs (StepPlan.describe), for the log
    threads: ThreadCount | None = None  # torch's CPU threads, adjusted to a busy machine under auto

    @property
    def settings(self) -> TrainConfig:
        """The settings the members share (those of the first)."""
        return self.members[0].settings

    def live(self) -> list[tuple[int, Member]]:
        """Gives the members still training, with their index in the stack."""
        return [(m, member) for m, member in enumerate(self.members) if self.active[m]]

    def train_epoch(self, stop: StopRequest | None = None) -> EpochResult:
        """Trains every live member for one epoch; a member whose loss turns non-finite is stopped.
        ``stop`` ends the epoch at a step boundary with Interrupted."""
        trainer, batch_size = self.settings.trainer, self.settings.data.batch_size
        num_batches = math.ceil(len(self.data.train) / batch_size)
        if self.threads is not None:
            self.threads.adjust()
        result = train_epoch(
            self.step_fn,
            self.data.train.batches(batch_size, members=len(self.members)),
            Temperatures(self.schedule, self.step, num_batches, self.device),
            num_batches=num_batches,
            log_every=trainer.log_every_n_steps,
            on_log=self._log_interval,
            on_failure=lambda m, step: self.fail(m, NonFiniteLossError.at_step(step)),
            description=f"epoch {self.epoch + 1}/{trainer.epochs}",
            progress=trainer.progress,
            stop=stop,
        )
        self.epoch, self.step = self.epoch + 1, result.step
        TIMELINE.add("train: steps", result.seconds)
        if self.compile_cache is not None:  # after the first epoch, everything is compiled
            with TIMELINE.phase("compile: save the cache"):
                self.compile_cache.save()
        return result

    def _log_interval(self, means: np.ndarray, temperatures: np.ndarray, step: int) -> None:
        if self.threads is not None:
            self.threads.first_look()
        for m, member in self.live():
            if member.run_log is None:  # a run stepped without records (benchmarks, tests)
                continue
            scalars = {
                f"step/{name}": float(value) for name, value in zip(STEP_VALUES, means[m], strict=True)
            }
            member.run_log.log_scalars({**scalars, "step/temperature": float(temperatures[m])}, step)

    def check_finite_weights(self) -> None:
        """Stops every live member whose weights have become non-finite (one read-back for all)."""
        finite = torch.stack([torch.isfinite(p).flatten(1).all(dim=1) for p in self.model.parameters()])
        for m, ok in enumerate(finite.all(dim=0).tolist()):
            if self.active[m] and not ok:
                self.fail(m, NonFiniteLossError.in_weights(self.step))

    def fail(self, m: int, error: Exception) -> None:
        """Stops member m: it adds nothing to the loss from now on and its weights and moments are
        zeroed, so it stays put without touching the others. Its last good checkpoint stays. When no
        member is left, the error ends the run."""
        member = self.members[m]
        member.error = error
        self.active[m] = False
        self.mask[m] = False
        if member.folder is not None:
            write_status(member.folder, "failed", error=describe(error))
            if member.run_log is not None:
                member.run_log.info("stopped: %s", error)
        with torch.no_grad():
            for parameter in self.optimizer.stacked:
                parameter[m].zero_()
        self.optimizer.reset_member(m)
        if not any(self.active):
            raise error


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_run(members: Sequence[Member], resume_from: Sequence[Any] = (), data: Data | None = None) -> Run:
    """Gives the run that trains ``members`` as one stack, each resumed from its checkpoint if
    ``resume_from`` names one (a path or None per member), on ``data`` if given, else on the data
    set its settings name.

    Each member's initial weights are drawn from its own seed, exactly as a lone run with that
    seed draws them; the stack's batches and noise then come from one random stream. On a CPU it
    makes the process flush denormal numbers to zero (``flush_denormals``), for what it computes
    afterwards too, and warns if torch's threads started too early to take the setting.
    """
    members = list(members)
    first = members[0].settings
    if any(stack_key(member.settings) != stack_key(first) for member in members[1:]):
        raise ConfigError(
            "these jobs differ in more than the settings a stack's members may have of their own"
        )
    device = resolve_device(first.trainer.device)
    flush_denormals(device)
    threads = ThreadCount(first.trainer.num_threads, device)
    allow_tf32(device, first.trainer.tf32)
    quiet_cuda_warnings(device)
    seed_everything(first.seed)
    if data is None:
        with TIMELINE.phase("data: read, verify, put on the device"):
            data = load_data(first.data, device)
    steps = first.trainer.epochs * math.ceil(len(data.train) / first.data.batch_size)
    learned = first.temperature.name == "learned"
    plan = plan_step(
        first.trainer.compile, device, learned_temperature=learned, steps=steps, members=len(members)
    )
    cache = (
        CompileCache(first.trainer.compile_cache, device)
        if plan.compile and first.trainer.compile_cache
        else None
    )
    with TIMELINE.phase("model, optimizer and step: build"):
        run = _assemble(members, device, data, plan, cache)
    with TIMELINE.phase("resume: read checkpoints"):
        _resume(run, list(resume_from) or [None] * len(members))
    with TIMELINE.phase("CPU threads: the first look at the machine"):
        threads.first_look()
    run.threads = threads
    return run


def _assemble(
    members: list[Member], device: torch.device, data: Data, plan: StepPlan, cache: CompileCache | None
) -> Run:
    """Builds the stack's model (each member from its seed), schedule, optimizer, objective and step."""
    first = members[0].settings
    models = []
    for member in members:
        seed_everything(member.settings.seed)
        models.append(build_model(member.settings.model, data.train.pixels.shape[1]))
    model = stack(models).to(device)
    schedule = build_schedule([member.settings.temperature for member in members])
    if schedule.learned:
        schedule.to(device)
    if cache is not None:
        cache.load()
    parameters = [*model.parameters(), *(schedule.parameters() if schedule.learned else ())]
    optimizer = StackOptimizer(
        parameters, [member.settings.optim for member in members], device, plan.cuda_graph
    )
    objective = build_objective(first.objective, build_estimator(first.estimator))
    precision = resolve_precision(first.trainer.precision, device)
    if (slow := slow_precision(precision, device)) is not None:
        log.warning("%s", slow)
    step_fn = build_step(
        model, optimizer, objective, plan, backend=first.trainer.compile_backend, precision=precision
    )
    mask = getattr(step_fn, "step", step_fn).active  # a CudaGraphStep wraps the TrainStep
    run = Run(members, device, data, model, schedule, optimizer, step_fn, mask, active=[True] * len(members))
    run.compile_cache, run.step_path = cache, plan.describe(precision)
    return run


def _resume(run: Run, files: list[Any]) -> None:
    """Loads each member's checkpoint; the stack continues from their common epoch and step. A member
    with resume_weights_only starts from the checkpoint's weights alone, as a new run."""
    positions, rng = set(), None
    for m, file in enumerate(files):
        member = run.members[m]
        if file is None:
            positions.add((0, 0))
            continue
        checkpoint = load_checkpoint(file, map_location=run.device)
        if member.settings.resume_weights_only:
            check_compatible(checkpoint, run.model.architecture(), str(file))
            load_member_weights(run, m, checkpoint)
            member.logger.info(
                "a new run from the weights of %s (epoch %d, step %d); optimizer and step start afresh",
                file,
                checkpoint["epoch"],
                checkpoint["step"],
            )
            positions.add((0, 0))
            continue
        restore_member(run, m, checkpoint, source=str(file))
        positions.add((checkpoint["epoch"], checkpoint["step"]))
        rng = checkpoint["rng"]
    if len(positions) > 1:
        raise CheckpointError(f"the members' checkpoints stand at different points {sorted(positions)}")
    run.epoch, run.step = positions.pop()
    if rng is not None:
        restore_rng_state(rng)
