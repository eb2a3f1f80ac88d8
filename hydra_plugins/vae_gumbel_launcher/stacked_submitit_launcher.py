"""``hydra/launcher=stacked_slurm`` (and ``stacked_submitit_local``): a sweep's stacks, one SLURM job each.

The stacked launcher trains a whole sweep in the launching process. On a cluster that is one
GPU for every stack, one after another. These launchers group the jobs of a batch into stacks in
the launching process, as ``hydra/launcher=stacked`` would (jobs that differ only in settings a
member may have of its own, at most ``max_members`` to a stack). They then submit each stack
through submitit as one job of a SLURM array (or one local process), which trains it as
``hydra/launcher=stacked`` does. Everything else is Hydra's submitit launcher: the same
settings (partition, GPUs, time limit, ``setup``, ...), the same ``.submitit/`` folder, and the
same return of one ``JobReturn`` per job of the sweep; SLURM's errors are one line, as for
``hydra/launcher=slurm`` (``SubmititErrors``).

A stack that SLURM preempts or requeues gets SIGTERM, and every member writes its checkpoint.
When SLURM starts the stack again, each unfinished member continues from its own ``last.pt``,
and finished members are left as they are.

Hydra imports this module whenever it looks for plugins. It registers nothing where Hydra's
submitit launcher is not installed (``pip install -e '.[sweep]'``), and imports vae_gumbel only
in ``launch``.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from hydra_plugins.vae_gumbel_launcher.job_configs import JobConfigs
from hydra_plugins.vae_gumbel_launcher.stacked_launcher import (
    DEFAULT_MAX_MEMBERS,
    ComposedJobs,
    checked_max_members,
    train_jobs,
)
from hydra_plugins.vae_gumbel_launcher.submitit_launcher import SubmititErrors

try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # the optional sweep extra is not installed: nothing to register
    SlurmQueueConf = LocalQueueConf = None

log = logging.getLogger(__name__)

# One stack: its jobs, each (index in the sweep, overrides). A string: Hydra's plugin scan looks at
# every name in this module, and on Python 3.10 it takes list[...] for a class and fails.
Stack: TypeAlias = "list[tuple[int, list[str]]]"


def group_into_stacks(jobs: Sequence[tuple[int, DictConfig]], max_members: int) -> list[list[int]]:
    """Gives the indices of composed jobs grouped as ``hydra/launcher=stacked`` would train them:
    jobs that differ only in per-member settings, at most ``max_members`` to a stack. Jobs whose
    settings fail their checks go together into one group, where each fails alone with its error."""
    from vae_gumbel.config import validate
    from vae_gumbel.run import stack_key, stacks_by_key

    keyed = []
    for idx, config in jobs:
        task = config.copy()
        with open_dict(task):
            task.pop("hydra", None)  # the job's own settings, as its task function gets them
        try:
            keyed.append((idx, stack_key(validate(task))))
        except Exception:
            keyed.append((idx, ("fails its checks",)))
    return stacks_by_key(keyed, max_members)


class StackedSubmitit:
    """Trains each stack of a batch as one submitit job; mixed into Hydra's submitit launchers."""

    def __init__(self, max_members: int = DEFAULT_MAX_MEMBERS, **params: Any) -> None:
        super().__init__(**params)
        self.max_members = checked_max_members(max_members)
        self.stacks: list[Stack] = []
        self.composed = ComposedJobs()

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.composed.watch(hydra_context.config_loader)

    def __getstate__(self) -> dict[str, Any]:
        # What a submitted job needs: not the configs kept for this process's grouping.
        return {key: value for key, value in self.__dict__.items() if key != "composed"}

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Groups the batch into stacks, submits one job per stack and waits for them; gives one
        ``JobReturn`` per job of the batch, in its order."""
        assert self.config is not None and self.hydra_context is not None
        jobs = {idx: list(overrides) for idx, overrides in enumerate(job_overrides, start=initial_job_idx)}
        composed = [(idx, self.composed.take(self.config, overrides)) for idx, overrides in jobs.items()]
        self.composed.forget()
        groups = group_into_stacks(composed, self.max_members)
        self.stacks = [[(idx, jobs[idx]) for idx in group] for group in groups]
        stacks = f"{len(groups)} stack" + ("s" if len(groups) != 1 else "")
        log.info(f"{len(jobs)} jobs as {stacks} of at most {self.max_members} models, a submitted job each")
        # Hydra's submitit launcher submits a job per entry, numbered from 0: the stack's number.
        titles = [[f"stack of {len(group)}: jobs {' '.join(map(str, group))}"] for group in groups]
        loader = self.hydra_context.config_loader
        self.composed.unwatch(loader)  # the submitted jobs carry the loader: Hydra's own
        try:
            returns = super().launch(titles, initial_job_idx=0)
        finally:
            self.composed.watch(loader)
        by_index: dict[int, JobReturn] = {}
        for group, stack_returns in zip(groups, returns, strict=True):
            by_index.update(zip(group, stack_returns, strict=True))
        return [by_index[idx] for idx in jobs]

    def __call__(
        self,
        sweep_overrides: list[str],
        job_dir_key: str,
        job_num: int,
        job_id: str,
        singleton_state: dict[type, Singleton],
    ) -> list[JobReturn]:
        """Trains stack ``job_num`` in the submitted job; gives one ``JobReturn`` per member."""
        import submitit

        from vae_gumbel.train import record_start

        assert self.config is not None and self.hydra_context is not None
        record_start()
        Singleton.set_state(singleton_state)
        setup_globals()
        config, loader = self.config, self.hydra_context.config_loader
        job_configs = JobConfigs(loader.load_sweep_config, getattr(loader, "repository", None))

        def compose(overrides: Sequence[str]) -> DictConfig:
            return job_configs(master_config=config, sweep_overrides=overrides)

        return train_jobs(
            config,
            self.hydra_context,
            self.stacks[job_num],
            compose,
            self.max_members,
            job_id=submitit.JobEnvironment().job_id,
        )


if SlurmQueueConf is not None:

    class StackedSlurmLauncher(StackedSubmitit, SubmititErrors, SlurmLauncher):
        pass

    class StackedLocalLauncher(StackedSubmitit, SubmititErrors, LocalLauncher):
        pass

    @dataclass
    class StackedSlurmConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.vae_gumbel_launcher.stacked_submitit_launcher.StackedSlurmLauncher"
        # The most models trained as one stack, in one SLURM job; more compatible jobs form more stacks.
        max_members: int = DEFAULT_MAX_MEMBERS

    @dataclass
    class StackedLocalConf(LocalQueueConf):
        _target_: str = "hydra_plugins.vae_gumbel_launcher.stacked_submitit_launcher.StackedLocalLauncher"
        max_members: int = DEFAULT_MAX_MEMBERS

    store = ConfigStore.instance()
    store.store(
        group="hydra/launcher", name="stacked_submitit_slurm", node=StackedSlurmConf, provider="vae_gumbel"
    )
    store.store(
        group="hydra/launcher", name="stacked_submitit_local", node=StackedLocalConf, provider="vae_gumbel"
    )
