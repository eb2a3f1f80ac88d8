"""``hydra/launcher=slurm``: Hydra's submitit SLURM launcher, with what goes wrong on the cluster's
side said in one line.

When SLURM refuses the sweep's jobs (``sbatch: error: invalid partition specified: gpu``, a
cluster that cannot be reached from here) or a job ends without a result (cancelled, killed for
its memory or time), Hydra's submitit launcher stops with a Python trace. These launchers end
instead with one line that says what SLURM said and what to do: exit code 2 for a refused
submission (the launcher's settings), 1 for a job that ended without a result. A Ctrl-C while
the launcher waits for the jobs says that they go on on the cluster, and a machine without SLURM's
commands is told so before anything is submitted. The launcher waits for the
jobs in the order they end, so that a job cancelled (or killed) behind a long one ends the sweep
at once, and on a cluster that keeps no accounting the jobs' states come from squeue, so that a
cancelled job ends the sweep there too instead of leaving it waiting (``vae_gumbel.slurm_queue``).
Everything else is Hydra's submitit launcher. The stacked submitit launchers get the same
(``SubmititErrors``; ``stacked_submitit_local`` names its jobs local ones), and so do Hydra's
``submitit_local`` and ``submitit_slurm`` under their own names (registered once Hydra has scanned
its plugins, as ``joblib_launcher`` explains), so that a sweep tried on one's own machine first
ends as it would on the cluster, and one started as Hydra's documentation shows ends as
``hydra/launcher=slurm`` does.

Hydra imports this module whenever it looks for plugins. It registers nothing where Hydra's
submitit launcher is not installed (``pip install -e '.[sweep]'``).
"""

import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.search_path_plugin import SearchPathPlugin

try:
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher
except ImportError:  # the optional sweep extra is not installed: nothing to register
    SlurmQueueConf = None

# Where the SLURM resources of both SLURM launchers are set.
RESOURCES = "vae_gumbel/conf/hydra/launcher/resources/slurm.yaml"


def submission_refused(stderr: str) -> str:
    """Gives the line that says why sbatch refused a submission: its fatal error, else its first."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("sbatch: fatal")]
    errors = [line for line in lines if line.startswith("sbatch: error")]
    return (fatal or errors or lines or ["sbatch gave no reason"])[0]


# submitit's words for a job that ended without a result.
NO_OUTPUT = re.compile(
    r"Job (?P<job>\S+) \(task: \d+\).*has not produced any output \(state: (?P<state>[^)]*)\)", re.S
)


def job_without_result(message: str, kind: str = "SLURM") -> str:
    """Gives submitit's account of a job that ended without a result in one line: which job (a
    ``kind`` job: SLURM, local), and its state (cancelled, out of memory, out of time)."""
    said = NO_OUTPUT.search(message)
    if said is not None:
        return f"{kind} job {said['job']} ended without a result (state: {said['state']})"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else f"a {kind} job ended without a result"


def end(code: int, message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)  # Hydra would print a trace for any other exception


class SubmititErrors:
    """Mixed into Hydra's submitit launchers: the cluster's errors in one line (module docstring)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        from vae_gumbel.slurm_queue import told_as_they_end, watched_without_accounting

        on_slurm = getattr(self, "_EXECUTOR", None) == "slurm"
        if on_slurm and shutil.which("srun") is None:  # submitit would stop with a trace
            launcher = self.config.hydra.runtime.choices.get("hydra/launcher")
            local = "stacked_submitit_local" if "stacked" in str(launcher) else "submitit_local"
            end(
                2,
                f"hydra/launcher={launcher} submits the jobs to SLURM, and SLURM's commands are not on "
                "this machine's PATH (no srun): start the sweep on a machine of the cluster (its login "
                f"node), or try it here with hydra/launcher={local}",
            )
        try:
            with watched_without_accounting() if on_slurm else nullcontext(), told_as_they_end():
                return super().launch(job_overrides, initial_job_idx)  # type: ignore[misc]
        except FailedJobError as err:
            if not isinstance(err.__cause__, subprocess.CalledProcessError):
                raise  # a job's own failure: its trace is what there is to read
            launcher = self.config.hydra.runtime.choices.get("hydra/launcher")
            kept = f": {RESOURCES}" if launcher in ("slurm", "stacked_slurm") else ""  # theirs: Hydra's
            end(
                2,
                f"SLURM refused the sweep's jobs ({submission_refused(str(err))}); check the "
                f"hydra.launcher settings (partition, gpus_per_node, ...{kept}) and that SLURM answers "
                "from this machine (sinfo)",
            )
        except UncompletedJobError as err:
            from vae_gumbel.interrupts import sweep_resume_command

            go_on = sweep_resume_command(self.config.hydra.overrides, Path(str(self.config.hydra.sweep.dir)))
            kind, others = ("SLURM", "squeue") if on_slurm else ("local", "their processes go on")
            end(
                1,
                f"{job_without_result(str(err), kind)}; the sweep's other jobs are left to run ({others}): "
                f"once they end, continue the sweep with: {go_on}",
            )
        except KeyboardInterrupt:
            if not on_slurm:
                raise  # local jobs got the Ctrl-C too, and stop as runs do
            end(
                128 + signal.SIGINT,
                "interrupted by SIGINT while waiting for the sweep's SLURM jobs, which go on (squeue; "
                f"scancel stops them); {shlex.join(['vae-gumbel-report', str(self.config.hydra.sweep.dir)])} "
                "shows their runs",
            )


if SlurmQueueConf is not None:

    class SlurmJobsLauncher(SubmititErrors, SlurmLauncher):
        pass

    @dataclass
    class SlurmJobsConf(SlurmQueueConf):
        _target_: str = "hydra_plugins.vae_gumbel_launcher.submitit_launcher.SlurmJobsLauncher"

    ConfigStore.instance().store(
        group="hydra/launcher", name="submitit_slurm_jobs", node=SlurmJobsConf, provider="vae_gumbel"
    )

    class LocalJobsLauncher(SubmititErrors, LocalLauncher):
        pass

    @dataclass
    class LocalJobsConf(LocalQueueConf):
        _target_: str = "hydra_plugins.vae_gumbel_launcher.submitit_launcher.LocalJobsLauncher"

    class SubmititUnderTheirNames(SearchPathPlugin):
        """Registers these launchers as ``hydra/launcher=submitit_local`` and ``submitit_slurm`` once
        Hydra has run every plugin module (module docstring); it adds no config folder."""

        def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
            store = ConfigStore.instance()
            for name, node in (("submitit_local", LocalJobsConf), ("submitit_slurm", SlurmJobsConf)):
                store.store(group="hydra/launcher", name=name, node=node, provider="vae_gumbel")
