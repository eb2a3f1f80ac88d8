"""``hydra/launcher=joblib``: Hydra's joblib launcher, with a worker that dies said in one line.

When a worker process ends abruptly (killed for its memory, or from outside), joblib stops every
other worker with it and raises ``TerminatedWorkerError`` in the sweep's process, which Hydra
prints as a trace of joblib's internals. This launcher ends instead with one line that says how
the worker ended, that the other jobs were stopped with it, and the command that continues the
sweep from the runs' checkpoints (exit code 1; the sweep's closing lines then name each run's
state). Everything else is Hydra's joblib launcher, with the same settings, under its own name.

Hydra runs every plugin module as it scans them, in the order of the folders on ``sys.path``, so
the joblib plugin's ``joblib`` entry would replace one registered here whenever this package's
folder came first (``python -m`` from the checkout, say). The entry is therefore put in place once
the scan is over: Hydra then asks each search-path plugin for its config folders before it
composes anything, and ``JoblibUnderItsName``, which adds no folder, registers it there.

Hydra imports this module whenever it looks for plugins. It registers nothing where Hydra's joblib
launcher is not installed (``pip install -e '.[sweep]'``).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.search_path_plugin import SearchPathPlugin

from hydra_plugins.vae_gumbel_launcher.submitit_launcher import end

try:
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:  # the optional sweep extra is not installed: nothing to register
    JobLibLauncherConf = None

# joblib's words for how its workers ended: "The exit codes of the workers are {SIGKILL(-9)}".
EXIT_CODES = re.compile(r"exit codes of the workers are \{(?P<codes>[^}]*)\}")


def worker_ended(message: str) -> str:
    """Gives how joblib says its workers ended, in a few words: a SIGKILL is most often the system's
    answer to a lack of memory, which fewer parallel jobs avoid."""
    said = EXIT_CODES.search(message)
    if said is None:
        return "a joblib worker process ended abruptly"
    codes = said["codes"]
    if "SIGKILL" in codes:
        codes += ": killed, most often by the system for lack of memory; fewer parallel jobs "
        codes += "(hydra.launcher.n_jobs=N) need less"
    return f"a joblib worker process ended abruptly (exit code {codes})"


if JobLibLauncherConf is not None:

    class JoblibJobsLauncher(JoblibLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            from joblib.externals.loky.process_executor import TerminatedWorkerError

            from vae_gumbel.interrupts import sweep_resume_command

            try:
                return super().launch(job_overrides, initial_job_idx)
            except TerminatedWorkerError as err:
                assert self.config is not None  # setup() came first
                sweep = Path(str(self.config.hydra.sweep.dir))
                go_on = sweep_resume_command(self.config.hydra.overrides, sweep)
                end(
                    1,
                    f"{worker_ended(str(err))}, and joblib stopped the sweep's other jobs with it; each "
                    f"run keeps its last checkpoint: continue the sweep with: {go_on}",
                )

    @dataclass
    class JoblibJobsConf(JobLibLauncherConf):
        _target_: str = "hydra_plugins.vae_gumbel_launcher.joblib_launcher.JoblibJobsLauncher"

    class JoblibUnderItsName(SearchPathPlugin):
        """Registers this launcher as ``hydra/launcher=joblib`` once Hydra has run every plugin module
        (module docstring); it adds no config folder."""

        def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
            ConfigStore.instance().store(
                group="hydra/launcher", name="joblib", node=JoblibJobsConf, provider="vae_gumbel"
            )
