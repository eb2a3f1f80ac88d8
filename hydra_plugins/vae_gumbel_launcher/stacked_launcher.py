"""``hydra/launcher=stacked``: trains the jobs of a sweep in this process, as stacks of models.

Every sweeper works with it unchanged: it receives a batch of jobs (all of a grid, or one
batch of Optuna's trials), composes and prepares each job as Hydra's own launchers do (its
folder, its ``.hydra/`` files, its log), trains the jobs that can share a stack as one model with
a leading member axis (``vae_gumbel.train.train_members``), and returns one ``JobReturn`` per job
with the number the job's run would return. A job whose settings fail their checks fails alone,
before any training. With ``trainer.timeline=true``, the wall time of each phase of the whole batch
(all its stacks) goes into the sweep folder as ``timeline_jobs_FIRST-LAST.json``.

Hydra's sweepers compose every job of a batch before they launch it, to catch a bad override
early (``Sweeper.validate_batch_is_legal``), and a launcher composes each job again, since it may
run in another process. This one runs in the sweeper's process, so it takes the configs the
sweeper composed (``ComposedJobs``): each job is composed once. And Hydra composes each job from
its files (about 0.2 s a job on a 2-core CPU), where the jobs of a grid differ only in values: the
first job of each shape is composed by Hydra and the others are derived from it (``JobConfigs``).

Hydra imports this module whenever it looks for plugins, so it imports vae_gumbel only in ``launch``.
"""

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_loader import ConfigLoader
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from hydra_plugins.vae_gumbel_launcher.job_configs import JobConfigs

log = logging.getLogger(__name__)


# The most models trained as one stack, unless hydra.launcher.max_members says otherwise.
DEFAULT_MAX_MEMBERS = 64


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.vae_gumbel_launcher.stacked_launcher.StackedLauncher"
    # The most models trained as one stack; more compatible jobs form further stacks, one after another.
    max_members: int = DEFAULT_MAX_MEMBERS


ConfigStore.instance().store(
    group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="vae_gumbel"
)


def job_logger(path: Path) -> logging.Logger:
    """Gives a logger that writes to one job's log file, formatted as Hydra formats job logs."""
    logger = logging.Logger("vae_gumbel.train")  # its own, not the shared one: one file per job
    handler = logging.FileHandler(path)
    formats = HydraConfig.get().job_logging.get("formatters", {})
    handler.setFormatter(logging.Formatter(formats.get("simple", {}).get("format", "%(message)s")))
    logger.addHandler(handler)
    return logger


class ComposedJobs:
    """The job configs a config loader composes for the sweeper, kept for the launcher to take.

    ``watch`` wraps the loader's ``load_sweep_config``: every config composed through it (the
    sweeper's check of a batch) is kept under its master config and overrides. ``take`` gives the
    kept config for a job once, and composes a fresh one when none is kept (a sweeper that does
    not check its batches, or a job asked for twice), so no config is handed out twice.
    """

    def __init__(self) -> None:
        self.kept: dict[tuple[int, tuple[str, ...]], DictConfig] = {}
        self.compose: Callable[..., DictConfig] | None = None
        self.seconds = 0.0  # spent composing the configs kept since the last ``forget``

    def watch(self, loader: ConfigLoader) -> None:
        """Keeps every job config ``loader`` composes from now on, until the job is taken; composes
        them as ``JobConfigs`` do, each shape of job once."""
        own = getattr(loader, "unwatched_load_sweep_config", loader.load_sweep_config)
        compose = JobConfigs(own, getattr(loader, "repository", None))

        def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
            started = time.perf_counter()
            config = compose(master_config=master_config, sweep_overrides=sweep_overrides)
            self.kept[(id(master_config), tuple(sweep_overrides))] = config
            self.seconds += time.perf_counter() - started
            return config

        self.compose = compose
        loader.unwatched_load_sweep_config = own  # a second watcher wraps Hydra's own, not this one
        loader.load_sweep_config = load_sweep_config

    def unwatch(self, loader: ConfigLoader) -> None:
        """Gives ``loader`` back its own ``load_sweep_config``, as before ``watch``."""
        if hasattr(loader, "unwatched_load_sweep_config"):
            del loader.load_sweep_config, loader.unwatched_load_sweep_config

    def take(self, master_config: DictConfig, overrides: Sequence[str]) -> DictConfig:
        """Gives a job's config: the one kept for it, else a freshly composed one."""
        assert self.compose is not None, "watch a config loader first"
        kept = self.kept.pop((id(master_config), tuple(overrides)), None)
        if kept is not None:
            return kept
        return self.compose(master_config=master_config, sweep_overrides=list(overrides))

    def forget(self) -> None:
        """Drops the configs no job took (jobs of a batch the sweeper checked but did not launch)."""
        self.kept.clear()
        self.seconds = 0.0


def checked_max_members(max_members: int) -> int:
    """Gives ``hydra.launcher.max_members`` if it can cap a stack (at least one model), else ends the
    process with one line and exit code 2. It runs as Hydra builds the launcher, which would wrap an
    error raised here in its own three lines and exit with 1."""
    from vae_gumbel.errors import ConfigError, exit_in_one_line

    if not isinstance(max_members, int) or max_members < 1:
        error = ConfigError(f"hydra.launcher.max_members must be an integer >= 1, got {max_members!r}")
        exit_in_one_line(error)
    return max_members


class StackedLauncher(Launcher):
    def __init__(self, max_members: int = DEFAULT_MAX_MEMBERS) -> None:
        super().__init__()
        self.max_members = checked_max_members(max_members)
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.composed = ComposedJobs()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.composed.watch(hydra_context.config_loader)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from vae_gumbel.train import record_start

        assert self.config is not None and self.hydra_context is not None
        record_start(sweep_check_seconds=self.composed.seconds)
        config = self.config
        jobs = list(enumerate(job_overrides, start=initial_job_idx))

        def compose(overrides: Sequence[str]) -> DictConfig:
            return self.composed.take(config, overrides)

        try:
            return train_jobs(config, self.hydra_context, jobs, compose, self.max_members)
        finally:
            self.composed.forget()


def train_jobs(
    config: DictConfig,
    hydra_context: HydraContext,
    jobs: Sequence[tuple[int, Sequence[str]]],
    compose: Callable[[Sequence[str]], DictConfig],
    max_members: int,
    job_id: str | None = None,
) -> list[JobReturn]:
    """Trains a sweep's jobs (index, overrides) in this process as stacks of at most
    ``max_members``; gives one ``JobReturn`` per job, in their order.

    Each job is composed by ``compose`` and prepared as Hydra's launchers prepare it (its folder,
    its ``.hydra/`` files, its log, ``hydra.job.id``: ``job_id``, else its index).
    """
    from vae_gumbel.errors import Interrupted, RunFailed, one_line, one_line_errors
    from vae_gumbel.interrupts import sweep_resume_command
    from vae_gumbel.run_folder import sweep_timeline
    from vae_gumbel.timeline import PREPARE_JOBS, TIMELINE
    from vae_gumbel.train import member_of, objective, train_members, write_timeline

    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"Launching {len(jobs)} jobs as stacks of at most {max_members} models")

    def prepare(cfg: DictConfig):  # runs inside Hydra's job context: its config, folder and log
        folder = Path(HydraConfig.get().runtime.output_dir)
        with one_line_errors():  # a bad value fails this job with one line; the sweep goes on
            return member_of(cfg, folder, job_logger(folder / f"{HydraConfig.get().job.name}.log"))

    returns = []
    with TIMELINE.phase(PREPARE_JOBS):
        for idx, overrides in jobs:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = compose(overrides)
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx if job_id is None else job_id
                sweep_config.hydra.job.num = idx
            returns.append(
                run_job(
                    hydra_context=hydra_context,
                    task_function=prepare,
                    config=sweep_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            )
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)  # not the job's log

    prepared = [ret for ret in returns if ret.status == JobStatus.COMPLETED]
    members = [ret.return_value for ret in prepared]
    with one_line_errors():  # only an interrupt gets out of train_members: it stops the sweep
        try:
            results = train_members(members, max_members)
        except Interrupted as err:  # what continues is the sweep, not one of its jobs
            raise Interrupted(
                err.signum,
                f"interrupted by {err.signal_name}: each job's status.json says where it stopped; "
                f"continue the sweep with: {sweep_resume_command(config.hydra.overrides, sweep_dir)}",
                err.step,
            ) from None
    for ret, member, result in zip(prepared, members, results, strict=True):
        for handler in member.logger.handlers:
            handler.close()
        if isinstance(result, Exception):
            ret.status, ret.return_value = JobStatus.FAILED, RunFailed(one_line(result))
        else:
            ret.status, ret.return_value = JobStatus.COMPLETED, objective(result)
    if any(member.settings.trainer.timeline for member in members):
        indices = [idx for idx, _ in jobs]
        write_timeline(sweep_timeline(sweep_dir, min(indices), max(indices)), jobs=len(members))
    return returns
