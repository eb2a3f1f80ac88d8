"""A run's records: one JSON line per epoch in metrics.jsonl, the same scalars in TensorBoard,
lines in its log, how it ended in status.json, and its hyperparameters for the HParams tab."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from vae_gumbel.errors import RecordsError, describe
from vae_gumbel.files import replace_text, write_failure, writing
from vae_gumbel.interrupts import shell_command, sweep_resume_command
from vae_gumbel.run_folder import (
    RunFolder,
    find_runs,
    holds_trained_run,
    status_now,
    sweep_record,
    sweep_tensorboard,
    trained_by_another,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vae_gumbel.grids import Png

log = logging.getLogger("vae_gumbel.train")

# The HParams tab's metrics: scalars every run logs (their last values), so no single-point charts.
HPARAMS_METRICS = ("test/loss", "test/best_loss", "train/loss_unrelaxed")
# ... and those only some runs log: the validation losses and the IWAE bounds.
OPTIONAL_METRICS = ("val/loss", "val/best_loss", "val/iwae_nll_", "test/iwae_nll_")

# TensorBoard's Custom Scalars tab: the relaxation gap and the temperature, each on one chart.
CUSTOM_SCALARS = {
    "vae-gumbel": {
        "loss per epoch (nats): train relaxed, train unrelaxed, validation, test": [
            "Multiline",
            ["train/loss_relaxed", "train/loss_unrelaxed", "val/loss", "test/loss"],
        ],
        "loss per log interval (nats): relaxed, unrelaxed": [
            "Multiline",
            ["step/loss_relaxed", "step/loss_unrelaxed"],
        ],
        "temperature": ["Multiline", ["temperature", "step/temperature"]],
    }
}


def selection_split(metrics: dict[str, Any]) -> str:
    """Gives the set that selects among epochs and runs (best.pt, the sweepers' objective): the
    validation set when the run holds one out, so that the test set is only ever reported."""
    return "val" if "val/loss" in metrics else "test"


def iwae_bound(metrics: dict[str, Any], split: str = "test") -> tuple[int, float] | None:
    """Gives (k, bound) of the IWAE NLL bound with the most samples among a record's ``metrics`` on
    ``split`` (test or val), or None if the record has none."""
    prefix = f"{split}/iwae_nll_"
    bounds = {int(key[len(prefix) :]): value for key, value in metrics.items() if key.startswith(prefix)}
    return (max(bounds), bounds[max(bounds)]) if bounds else None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Gives the records of a metrics.jsonl file, one dict per epoch, skipping a torn last line.

    A crash can only cut off the last line; a damaged line before it raises RecordsError, so that
    nothing reads past it as if the records ended there (a resume would write that over the file).
    """
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break  # cut off by a crash: everything before it is intact
            raise RecordsError(
                f"{path}, line {number} of {len(lines)}, is not a JSON record ({err.msg}); the file is left "
                "as it is: mend or delete that line, then run again"
            ) from None
    return records


def write_status(folder: RunFolder, status: str, **details: Any) -> None:
    """Records how the run ended in status.json, for reports over many runs."""
    text = json.dumps({"status": status, **details}, indent=2) + "\n"
    with writing(folder.status, "the run's status"):
        folder.path.mkdir(parents=True, exist_ok=True)
        if (
            not folder.status.is_file() or folder.status.read_text() != text
        ):  # a finished job re-run stays as it was
            replace_text(folder.status, text)


@dataclass(frozen=True)
class JobRecord:
    """Hydra's record of a job for RUN/.hydra/ (config.yaml, hydra.yaml, overrides.yaml), written
    by the trainer rather than by Hydra before the job runs (train.yaml sets ``hydra.output_subdir``
    to null): at once into a folder that holds no trained run, as Hydra would, but into one that
    does, or that another process trains into, only once the job is accepted, so that a start
    that is refused (a bad value, a folder that holds a run or is being trained, a checkpoint that
    does not fit) leaves the record of the run there."""

    files: dict[str, str]  # file name -> its text: the config as Hydra writes it, taken at the start

    @classmethod
    def of_job(cls, cfg: DictConfig, folder: RunFolder) -> JobRecord | None:
        """Gives the record of the Hydra job whose config is ``cfg`` and whose folder is ``folder``;
        None for a run started from Python, or into another folder."""
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        if not HydraConfig.initialized():
            return None
        hydra = HydraConfig.instance().cfg
        if Path(hydra.hydra.runtime.output_dir).resolve() != folder.path.resolve():
            return None
        files = {"config.yaml": cfg, "hydra.yaml": hydra, "overrides.yaml": hydra.hydra.overrides.task}
        return cls({name: OmegaConf.to_yaml(content) for name, content in files.items()})

    def write(self, folder: RunFolder) -> None:
        for name, text in self.files.items():
            with writing(folder.hydra_file(name), "the run's record"):
                folder.hydra_file(name).parent.mkdir(parents=True, exist_ok=True)
                replace_text(folder.hydra_file(name), text)

    def checked(self, settings: Any) -> None:
        """Notes that this record's config passed its checks as ``settings`` (``recorded_settings``)."""
        _CHECKED_RECORDS[self.files["config.yaml"]] = settings


# The settings of the job records this process checked, by the text of their config.yaml: a
# sweep's HParams summary takes them from here instead of parsing and checking each file again
# (about 24 ms a job on two CPU cores). Keyed by the text, so a file changed since is read anew.
_CHECKED_RECORDS: dict[str, Any] = {}


def recorded_settings(text: str) -> Any:
    """Gives the typed settings of a job's ``.hydra/config.yaml`` text, or raises ConfigError."""
    from omegaconf import OmegaConf

    from vae_gumbel.config import TrainConfig, validate

    if (settings := _CHECKED_RECORDS.get(text)) is not None:
        return settings
    return validate(OmegaConf.to_container(OmegaConf.create(text)), TrainConfig)


def record_refusal(folder: RunFolder, err: BaseException) -> None:
    """Records in status.json that a job failed before it trained, unless its folder holds a run
    that trained (a checkpoint) or another process trains into it now: a refused start changed
    nothing in that run, so the run's own records stay, and the error goes to the log and the
    console only."""
    if not holds_trained_run(folder) and not trained_by_another(folder):
        write_status(folder, "failed", error=describe(err))


def hyperparameters(settings: Any) -> dict[str, str | int | float | bool]:
    """Gives every scalar setting of a typed config, flattened to dotted keys, for TensorBoard's
    HParams tab (lists as text, null as "null")."""
    from vae_gumbel.config import flat_settings

    return {key: hparam_value(value) for key, value in flat_settings(settings).items()}


def hparam_value(value: Any) -> str | int | float | bool:
    """Gives a setting as the HParams tab shows it: scalars as they are, null and lists as text."""
    if value is None:
        return "null"
    if isinstance(value, bool | int | float | str):
        return value
    return str(list(value) if isinstance(value, tuple) else value)


def tensorboard_run_name() -> str | None:
    """Gives a multirun job's TensorBoard run name: the values of the keys its sweep varies, as
    'optim.lr=0.0003,seed=1' (all its overrides if the sweep's own record is not found); None for a
    single run, whose event files sit directly in tensorboard/."""
    from hydra.core.hydra_config import HydraConfig

    swept = job_swept_keys()
    if swept is None:
        return None
    config = HydraConfig.get()
    own = [item for item in config.overrides.task if item.split("=", 1)[0].lstrip("+~") in swept]
    return short_run_name(",".join(own) if own else config.job.override_dirname)


def job_swept_keys() -> set[str] | None:
    """Gives the keys that the sweep of this multirun job varies from job to job (``swept_keys``);
    None outside a multirun job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return swept_keys(Path(HydraConfig.get().sweep.dir))


def swept_keys(sweep_dir: Path) -> set[str]:
    """Gives the keys a sweep varies: those swept on its command line (a list of values or a sweep
    function) and those its sweeper searches (e.g. Optuna's params), from its multirun.yaml."""
    record = sweep_record(sweep_dir)
    if not record.is_file():
        return set()
    stat = record.stat()  # read once per version of the file, not once per job of the sweep
    return set(_swept_keys_in(record, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _swept_keys_in(record: Path, mtime_ns: int, size: int) -> frozenset[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    hydra = OmegaConf.load(record).hydra
    keys = {
        override.get_key_element().lstrip("+~")
        for override in OverridesParser.create().parse_overrides(list(hydra.overrides.task))
        if override.is_sweep_override()
    }
    return frozenset(keys | set(OmegaConf.select(hydra, "sweeper.params") or {}))


def short_run_name(overrides: str, limit: int = 200) -> str:
    """Gives ``overrides`` as a file name: long floats to 4 digits, '/' replaced, cut to ``limit``
    characters with a hash of the whole so that names stay unique."""
    items = []
    for item in overrides.split(","):
        key, sep, value = item.partition("=")
        try:
            number = float(value)
            value = f"{number:.4g}" if len(value) > 8 else value
        except ValueError:
            pass
        items.append(f"{key}{sep}{value}".replace("/", "_"))
    name = ",".join(items) or "defaults"
    if len(name) > limit:
        name = name[: limit - 9] + "~" + hashlib.sha1(overrides.encode()).hexdigest()[:8]
    return name


def records_text(records: list[dict[str, Any]]) -> str:
    """Gives records as metrics.jsonl holds them: one JSON object per line."""
    return "".join(json.dumps(record) + "\n" for record in records)


class RunLog:
    """Writes a run's metrics.jsonl, its TensorBoard event files and its log lines.

    On resume from ``start_step``/``start_epoch``, records written after that point (by a
    run that died after its last checkpoint) are dropped, so the files read as if the run
    had never been interrupted; a fresh start drops them all. ``logger`` receives the log lines
    (by default the trainer's, which Hydra writes to the console and to train.log).
    """

    def __init__(
        self,
        folder: RunFolder,
        start_epoch: int = 0,
        start_step: int = 0,
        tensorboard_name: str | None = None,
        logger: logging.Logger = log,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.logger = folder, logger
        # In a sweep, tensorboard/<overrides>/ so TensorBoard names each job's run by its overrides.
        self.events = folder.tensorboard / (tensorboard_name or "")
        with self._writing_metrics():
            folder.path.mkdir(parents=True, exist_ok=True)
            # A fresh start keeps nothing: what is there is from a run that never wrote a checkpoint.
            records = read_metrics(folder.metrics) if start_step else []
            kept = [r for r in records if r.get("epoch", 0) <= start_epoch]
            replace_text(folder.metrics, records_text(kept))  # a crash now leaves all, never a part
        self.kept = kept  # the records of the epochs before the start, which a resumed run goes on from
        # Events logged after the checkpoint's step belong to the lost part of the run; the
        # checkpoint's own step (its epoch record) stays. TensorBoard drops them when it reads the
        # purge mark (and, on a fresh start, every earlier event); the files stay as they are.
        quiet_tensorboard_writer_threads()
        with self._writing_events():
            self.writer = SummaryWriter(str(self.events), purge_step=start_step + 1 if start_step else 0)
            self.writer.add_custom_scalars(CUSTOM_SCALARS)

    def _writing_metrics(self) -> contextlib.AbstractContextManager[None]:
        return writing(self.folder.metrics, "the run's metrics")

    def _writing_events(self) -> contextlib.AbstractContextManager[None]:
        """A full disk stops TensorBoard's writer thread; its error comes back at the next call."""
        return writing(self.events, "the run's TensorBoard log")

    def info(self, message: str, *args: Any) -> None:
        self.logger.info(message, *args)

    def warning(self, message: str, *args: Any) -> None:
        self.logger.warning(message, *args)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        with self._writing_events():
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Appends one epoch's record to metrics.jsonl and its scalars to TensorBoard."""
        with self._writing_metrics(), self.folder.metrics.open("a") as handle:
            handle.write(records_text([record]))
        scalars = {k: v for k, v in record.items() if k not in ("epoch", "step") and _is_number(v)}
        self.log_scalars(scalars, record["step"])
        with self._writing_events():
            self.writer.flush()

    def amend_last_epoch(self, values: dict[str, float]) -> None:
        """Adds ``values`` to the last epoch's record in metrics.jsonl (rewritten atomically) and to
        TensorBoard at that epoch's step."""
        records = read_metrics(self.folder.metrics)
        records[-1].update(values)
        with self._writing_metrics():
            replace_text(self.folder.metrics, records_text(records))
        self.log_scalars({k: v for k, v in values.items() if _is_number(v)}, records[-1]["step"])
        with self._writing_events():
            self.writer.flush()

    def log_png(self, tag: str, png: Png, step: int) -> None:
        """Logs an encoded picture: the summary ``add_image`` writes, without the float round trip
        and the second encoding that ``add_image`` would spend on it."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        image = Summary.Image(
            height=png.height, width=png.width, colorspace=png.channels, encoded_image_string=png.data
        )
        with self._writing_events():
            self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def log_hparams(self, hparams: dict[str, Any]) -> None:
        """Records the run as a session of the HParams tab, in its own folder: its settings, no
        experiment summary (one per sweep says what the sweep varies, see SweepSummary). Its metrics
        are the run's own last values of HPARAMS_METRICS."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        _, session_start, session_end = hparams_summaries(hparams, {})
        with self._writing_events():
            self.writer.file_writer.add_summary(session_start)
            self.writer.file_writer.add_summary(session_end)
            self.writer.flush()

    def close(self) -> None:
        with self._writing_events():
            self.writer.close()


def quiet_tensorboard_writer_threads() -> None:
    """Keeps the traceback of a failed write in TensorBoard's writer thread off the console: the
    thread keeps the error, and the writer raises it at its next call, where it is reported in one
    line (``RunLog._writing_events``). Any other thread's error is shown as before."""
    shown = threading.excepthook
    if getattr(shown, "quiets_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError):
            return
        shown(args)

    hook.quiets_tensorboard = True
    threading.excepthook = hook


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def write_sweep_summary(sweep_dir: Path) -> Path | None:
    """Writes the sweep's one experiment summary for TensorBoard's HParams tab into
    SWEEP/tensorboard/: every scalar setting of its jobs' composed configs, each marked as differing
    when its jobs disagree on it (so the swept keys are shown by default), and the metrics
    HPARAMS_METRICS plus the OPTIONAL_METRICS its runs logged. Gives the folder, or None without runs."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from torch.utils.tensorboard import SummaryWriter

    values: dict[str, list] = {}
    metrics = list(HPARAMS_METRICS)
    for path in find_runs(sweep_dir):
        folder = RunFolder(path)
        if not folder.config.is_file():
            continue
        try:
            settings = recorded_settings(folder.config.read_text())
            last = (read_metrics(folder.metrics) or [{}])[-1]
        except Exception:  # a job whose config failed its checks, or whose records are damaged
            continue  # (the report lists it with the damage), has no session to show
        for key, value in hyperparameters(settings).items():
            values.setdefault(key, []).append(value)
        metrics += [key for key in last if key.startswith(OPTIONAL_METRICS) and key not in metrics]
    if not values:
        return None
    kinds = {bool: api_pb2.DATA_TYPE_BOOL, int: api_pb2.DATA_TYPE_FLOAT64, float: api_pb2.DATA_TYPE_FLOAT64}
    infos = [
        api_pb2.HParamInfo(
            name=key, type=kinds.get(type(seen[0]), api_pb2.DATA_TYPE_STRING), differs=len(set(seen)) > 1
        )
        for key, seen in values.items()
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
    )
    content = plugin_data_pb2.HParamsPluginData(experiment=experiment, version=metadata.PLUGIN_DATA_VERSION)
    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString())
    summary = Summary(
        value=[
            Summary.Value(
                tag=metadata.EXPERIMENT_TAG,
                metadata=SummaryMetadata(plugin_data=plugin),
                tensor=metadata.NULL_TENSOR,
            )
        ]
    )
    folder = sweep_tensorboard(sweep_dir)
    for old in folder.glob("events.out.tfevents.*"):  # one summary per sweep: the latest
        old.unlink()
    quiet_tensorboard_writer_threads()
    writer = SummaryWriter(str(folder))
    writer.file_writer.add_summary(summary)
    writer.flush()  # raises what the writer thread met; close would keep it to itself
    writer.close()
    return folder


# The config of the sweep this process has started and not yet ended (SweepSummary, end_failed_sweep).
_open_sweeps: list[Any] = []


class SweepSummary(Callback):
    """A Hydra callback (``hydra.callbacks`` in train.yaml): at the start of a multirun it records
    the sweep's config and command line (multirun.yaml, which not every sweeper writes; a sweep
    continued into its folder records its own) and makes a Ctrl-C say how to continue the sweep, at
    its end it writes the sweep's experiment summary for the HParams tab."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        from vae_gumbel.commands import on_interrupt_say

        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        replace_text(sweep_record(sweep_dir), OmegaConf.to_yaml(config))
        on_interrupt_say(
            "error: interrupted by SIGINT: the sweep stopped, and its runs keep their last checkpoints; "
            "continue the sweep with: " + sweep_resume_command(config.hydra.overrides, sweep_dir)
        )
        _open_sweeps[:] = [config]

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        _open_sweeps.clear()
        end_sweep(config)


def end_failed_sweep() -> None:
    """Ends the sweep this process started, if it has not ended: Hydra's sweepers stop at the first
    failed job of a batch, after the batch has run and before the callbacks' end, so its other runs
    would get no HParams summary and the user no commands to compare them. A sweep that failed
    before any job wrote a run folder (a value Hydra refused as it composed the jobs) has nothing to
    compare: its error is the last word."""
    if _open_sweeps:
        config = _open_sweeps.pop()
        if find_runs(Path(str(config.hydra.sweep.dir))):
            end_sweep(config, failed=True)


# The most unfinished runs a sweep's closing line names; it counts the rest.
UNFINISHED_RUNS_NAMED = 10


def how_runs_ended(sweep_dir: Path) -> str:
    """Gives the line that says which runs of a sweep with a failed job did not complete, and how
    each ended (failed, interrupted: a cancelled SLURM job, training: still running on a cluster,
    killed, not started), as the report tells them; then a line for each error the failed runs
    recorded, with the runs that failed with it. Hydra shows the first failed job's error alone."""
    runs = find_runs(sweep_dir)
    if not runs:
        return "no runs: none of its jobs wrote a run folder"
    ended = {run.relative_to(sweep_dir): status_now(RunFolder(run)) for run in runs}
    unfinished = [
        f"{run}: {status.get('status', 'not started')}"
        for run, status in ended.items()
        if status.get("status") != "completed"
    ]
    if not unfinished:  # a job refused at its start, for one, leaves its run as it was
        return (
            f"every run says completed ({len(runs)}): each job that failed was refused at its start (above, "
            "the first one's error) and left the run in its folder as it stood"
        )
    errors: dict[str, list[str]] = {}  # each error the failed runs recorded: the runs, in order
    for run, status in ended.items():
        if status.get("status") == "failed" and status.get("error"):
            errors.setdefault(status["error"], []).append(str(run))
    lines = [
        f"not completed: {len(unfinished)} of {len(runs)} runs ({', '.join(named_few(unfinished))}), "
        "each says why in its status.json"
    ]
    shown = list(errors.items())[:UNFINISHED_RUNS_NAMED]
    lines += [f"  {', '.join(named_few(failed))}: {error}" for error, failed in shown]
    if len(errors) > len(shown):
        lines.append(f"  and {len(errors) - len(shown)} more errors")
    return "\n".join(lines)


def named_few(items: list[str]) -> list[str]:
    """Gives the first UNFINISHED_RUNS_NAMED of ``items``, and a count of the rest."""
    named = items[:UNFINISHED_RUNS_NAMED]
    return named + [f"and {len(items) - len(named)} more"] if len(items) > len(named) else named


def end_sweep(config: Any, failed: bool = False) -> None:
    """Writes the sweep's HParams summary and logs the commands that compare its runs; after a
    failed job (``failed``), which of its runs did not complete and how each ended."""
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    try:
        write_sweep_summary(sweep_dir)
    except OSError as err:  # the runs are whole: only the HParams tab's overview is missing
        reason, _ = write_failure(sweep_tensorboard(sweep_dir), err)
        logging.getLogger("hydra").warning(
            "could not write the sweep's HParams summary into %s: %s; its runs are whole, and "
            "python -m vae_gumbel.report compares them",
            sweep_tensorboard(sweep_dir),
            reason,
        )
    failures = "".join(f"\n  {line}" for line in how_runs_ended(sweep_dir).splitlines()) if failed else ""
    logging.getLogger("hydra").info(
        "sweep done: %s%s\n  compare its runs: %s\n  TensorBoard (HParams tab): %s",
        sweep_dir,
        failures,
        report_command(sweep_dir, bounds=bool(config.eval.final_iwae_samples)),
        shell_command("tensorboard", "--logdir", sweep_dir),
    )


def report_command(sweep_dir: Path, bounds: bool = False) -> str:
    """Gives the report command that compares a sweep's runs (or any folder of runs): grouped by
    seed where the sweep, or a sweep in the folder, varies the seed (mean and standard error per
    setting), with the ranking by IWAE bound offered where its runs have bounds (a search such as
    hparams_search=best_bound, or runs that ``evaluate`` measured)."""
    records = Path(sweep_dir).rglob(sweep_record(sweep_dir).name)
    seeds = ["--group-by-seed"] if any("seed" in swept_keys(record.parent) for record in records) else []
    command = shell_command("python", "-m", "vae_gumbel.report", sweep_dir, *seeds)
    return command + (" [--sort bound]" if bounds else "")
