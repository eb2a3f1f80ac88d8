"""What a run folder says about its run, read for comparison with other runs: its overrides,
metrics, status and evaluations (``Job``), how two spellings of one value compare, and the number
that ranks a run (its final or best loss, or its IWAE bound, on the set that selects)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vae_gumbel.errors import ConfigError, RecordsError, first_line
from vae_gumbel.interrupts import shell_command
from vae_gumbel.run_folder import RunFolder, status_now
from vae_gumbel.tracking import iwae_bound, read_metrics, selection_split

if TYPE_CHECKING:
    from vae_gumbel.seeds import Setting


@dataclass
class Job:
    name: str  # the folder, relative to the report's root
    overrides: dict[str, str]
    records: list[dict[str, Any]]
    status: str  # completed, failed, interrupted, training, killed (it trained, and ended unsaid), incomplete
    error: str = ""
    final_test_loss: float = math.nan
    best_test_loss: float = math.nan
    best_epoch: int | None = None
    epochs: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)
    iwae: tuple[int, float] | None = None  # (k, bound) of the final IWAE with the most samples
    final_val_loss: float = math.nan  # on the validation set, if the run held one out
    best_val_loss: float = math.nan
    evaluations: dict[str, Any] = field(default_factory=dict)  # its eval.json numbers, flattened
    val_iwae: tuple[int, float] | None = None  # (k, bound) on the validation set
    # ((k, what was evaluated), bound) of the test set's eval.json (``evaluate``) with the most samples
    evaluated: tuple[tuple[int, str], float] | None = None
    stale: str = ""  # why that eval.json no longer speaks of the checkpoint it names, if it does not
    again: list[str] = field(default_factory=list)  # then the evaluate overrides that measure it anew

    @cached_property
    def test_loss_by_epoch(self) -> dict[int, float]:
        return dict(self.curve)


def parse_overrides(path: Path) -> dict[str, str]:
    """Gives Hydra's recorded command-line overrides as key -> value; raises RecordsError if the file
    is not the list of them that Hydra writes."""
    if not path.is_file():
        return {}
    try:
        items = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as err:
        raise RecordsError(f"{path} is not YAML ({first_line(err)}); mend or delete it") from None
    if not isinstance(items, list):
        raise RecordsError(f"{path} is not a list of overrides; mend or delete it")
    overrides = {}
    for item in items:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides


def read_job(path: Path, root: Path) -> Job:
    """Gives what a job folder says about its run."""
    folder = RunFolder(path)
    status = status_now(folder)
    # A damaged record is listed with the run; the other runs are still worth a report.
    try:
        records = read_metrics(folder.metrics)
    except RecordsError as err:
        records, status = [], {**status, "error": str(err)}
    try:
        overrides = parse_overrides(folder.overrides)
    except RecordsError as err:
        overrides, status = {}, {**status, "error": str(err)}
    job = Job(
        name=str(path.relative_to(root)) if path != root else ".",
        overrides=overrides,
        records=records,
        status=status.get("status", "incomplete"),
        error=status.get("error", ""),
        epochs=records[-1]["epoch"] if records else 0,
    )
    job.curve = [(r["epoch"], r["test/loss"]) for r in records if "test/loss" in r]
    last = records[-1] if records else {}
    job.iwae, job.val_iwae = iwae_bound(last, "test"), iwae_bound(last, "val")
    validation = [r["val/loss"] for r in records if "val/loss" in r]
    if validation:
        job.final_val_loss, job.best_val_loss = validation[-1], min(validation)
    for split in ("test", "val"):
        path = folder.eval_json_of(split)
        evaluation = read_evaluation_file(path)  # read once, for its columns and its bound
        job.evaluations.update(evaluation_columns(evaluation, path.stem))
        if split == "test":
            job.evaluated, job.stale = evaluated_bound(evaluation), stale_evaluation(evaluation, records)
            if job.stale:  # its bound would stand beside the numbers of a later epoch
                job.evaluated, job.again = None, evaluate_again(evaluation)
    if job.curve:
        job.final_test_loss = job.curve[-1][1]
        job.best_epoch, job.best_test_loss = min(job.curve, key=lambda point: point[1])
    return job


def read_evaluation_file(path: Path) -> dict[str, Any]:
    """Gives an importance-weighted evaluation (eval.json) as it was written; nothing if the file is
    missing or unreadable."""
    try:
        evaluation = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return evaluation if isinstance(evaluation, dict) else {}


def evaluation_columns(evaluation: dict[str, Any], name: str) -> dict[str, Any]:
    """Gives the numbers of an evaluation flattened into columns named NAME/...; nothing for none."""
    if not evaluation:
        return {}
    columns = {f"{name}/{key}": evaluation.get(key) for key in EVALUATION_FIELDS}
    for key in ("iwae_nll", "iwae_nll_stderr"):
        columns.update({f"{name}/{key}_{k}": value for k, value in evaluation.get(key, {}).items()})
    columns[f"{name}/targets_sha256"] = evaluation.get("binarization", {}).get("targets_sha256")
    computed_with = evaluation.get("environment") or {}
    columns.update({f"{name}/{key}": computed_with.get(key) for key in ENVIRONMENT_FIELDS})
    return columns


def evaluated_bound(evaluation: dict[str, Any]) -> tuple[tuple[int, str], float] | None:
    """Gives the IWAE bound with the most samples of an evaluation by ``evaluate`` (eval.json), with
    what it was measured on (k, the checkpoint's file name and the number of images: only bounds
    that agree in all three go into one column); None if there is none, it holds no bound, or it is
    the trainer's final evaluation (which names no checkpoint: its bounds are in the metrics)."""
    try:
        k, bound = max(((int(k), float(v)) for k, v in evaluation["iwae_nll"].items()), key=lambda kv: kv[0])
        basis = f"{Path(str(evaluation['checkpoint'])).name}, {int(evaluation['test_images'])} images"
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (k, basis), bound


def stale_evaluation(evaluation: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """Gives why an evaluation by ``evaluate`` no longer speaks of the checkpoint it names, in a few
    words: the run trained on after it, so that its best.pt or last.pt now holds another epoch
    (by the run's metrics: last.pt its last epoch, best.pt the epoch of its lowest loss on the set
    that selects). Empty if it still does, or if that cannot be told."""
    name, epoch = Path(str(evaluation.get("checkpoint", ""))).name, evaluation.get("epoch")
    if name not in ("best.pt", "last.pt") or not isinstance(epoch, int) or not records:
        return ""
    if name == "last.pt":
        now = records[-1]["epoch"]
    else:
        split = selection_split(records[-1])
        losses = [(r[f"{split}/loss"], r["epoch"]) for r in records if f"{split}/loss" in r]
        if not losses:
            return ""
        now = min(losses, key=lambda loss_epoch: loss_epoch[0])[1]  # the first of equal losses
    if now == epoch:
        return ""
    return f"its eval.json evaluated {name} at epoch {epoch}, and {name} now holds epoch {now}"


def evaluate_again(evaluation: dict[str, Any]) -> list[str]:
    """Gives the ``evaluate`` overrides (but the checkpoint) that measure what ``evaluation`` measured
    on its run's checkpoint as it is now: the same checkpoint name, k, images and seed."""
    again = [f"which={Path(str(evaluation['checkpoint'])).stem}"]
    try:
        again.append(f"iwae_samples=[{','.join(str(int(k)) for k in evaluation['iwae_nll'])}]")
        again.append(f"data.test_limit={int(evaluation['test_images'])}")
        again.append(f"seed={int(evaluation['seed'])}")
    except (KeyError, TypeError, ValueError, AttributeError):
        pass  # the defaults then
    return again


def stale_notes(jobs: list[Job], root: Path) -> list[str]:
    """Gives a line for each job whose eval.json is stale, with the command that evaluates it anew."""
    return [
        f"{root if job.name == '.' else job.name}: {job.stale}, so the table leaves its bound out; evaluate "
        "it anew with "
        + shell_command("python", "-m", "vae_gumbel.evaluate", f"checkpoint={root / job.name}", *job.again)
        for job in jobs
        if job.stale
    ]


# What a row of runs.csv keeps of an eval.json, besides its bounds and the test targets' digest.
EVALUATION_FIELDS = (
    "epoch",
    "test_images",
    "neg_elbo",
    "neg_elbo_samples",
    "kl",
    "active_variables",
    "seed",
    "seconds",
)


# What a row of runs.csv keeps of the environment that computed an eval.json.
ENVIRONMENT_FIELDS = ("vae_gumbel", "source", "torch", "device")


# Settings that say where a job's files go and how it runs, not what it computes: jobs that differ
# only in them train in one stack, and reports do not show them as hyperparameters. They are kept
# here, not in config (which imports torch for its registries), so that reading runs needs no torch.
RUN_CONTROL_KEYS = (
    "resume",
    "resume_weights_only",
    "data.root",
    "data.download",
    "data.verify_checksums",
    "trainer.progress",
    "trainer.num_threads",
    "trainer.timeline",
    "trainer.compile_cache",
)


def is_hyperparameter(key: str) -> bool:
    """Says whether an override can change what a run computes (not where it writes or how it runs)."""
    return key not in RUN_CONTROL_KEYS and not key.startswith("hydra.")


def comparable(value: str) -> tuple[str, Any]:
    """Gives an override's value in a form in which the spellings of one value compare equal: a
    run started with ``optim.lr=1e-3`` and a sweep's job, which Hydra records as ``optim.lr=0.001``,
    trained the same setting (so do ``1`` and ``1.0``, ``true`` and ``True``, ``null`` and ``NULL``,
    ``'adam'`` and ``adam``)."""
    text = value.strip()
    if text.lower() in ("true", "false"):
        return "bool", text.lower() == "true"
    if text.lower() == "null":  # Hydra's grammar reads it in any case, as it does true and false
        return "null", None
    try:
        number = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return "text", text[1:-1] if len(text) > 1 and text[0] == text[-1] in "'\"" else text
    return ("number", number) if number == number else ("text", text)  # NaN equals nothing


def varying_keys(jobs: list[Job] | list[Setting]) -> list[str]:
    """Gives the hyperparameter override keys whose values differ between jobs, or settings (all of
    them for a single one); run-control keys such as ``resume`` or ``trainer.num_threads`` are left
    out."""
    keys = sorted({key for job in jobs for key in job.overrides if is_hyperparameter(key)})
    if len(jobs) > 1:
        keys = [k for k in keys if len({comparable(job.overrides.get(k, "")) for job in jobs}) > 1]
    return keys


def short(value: str) -> str:
    """Gives an override's value as a reader wants it: a float with more than 4 significant digits
    rounded to 4 (as an Optuna sweep writes them), anything else as it was given."""
    try:
        rounded = f"{float(value):.4g}"
    except ValueError:
        return value
    return rounded if len(rounded) < len(value) else value


def label(overrides: dict[str, str], keys: list[str]) -> str:
    """Gives 'key=value, ...' of the given keys, values shortened."""
    return ", ".join(f"{k}={short(overrides[k])}" for k in keys if k in overrides)


# What a report can rank by: the final or best loss, or the IWAE bound with the most samples: the one
# training computed at its end, which is what a sweep minimises (train.objective), or, where no run
# computed one, that of ``evaluate`` (``bound_sort``).
SORTS = ("final", "best", "bound")
# The two kinds of bound that rank by ``--sort bound``: the final one of training, and evaluate's.
BOUND_SORTS = ("bound", "evaluated")


def selection_loss(job: Job, sort: str = "final") -> float:
    """Gives the final loss, best loss or IWAE bound (``sort``, with ``bound_sort``'s two kinds of
    bound) that ranks a job: on the validation set if it held one out, so that choosing the top row
    never selects by the test set; else on the test set. NaN if the job has none."""
    if sort in BOUND_SORTS:
        bound = selection_bound(job, sort)
        return bound[1] if bound else math.nan
    if math.isfinite(job.final_val_loss):
        return job.final_val_loss if sort == "final" else job.best_val_loss
    return job.final_test_loss if sort == "final" else job.best_test_loss


def selection_bound(job: Job, sort: str = "bound") -> tuple[int, float] | None:
    """Gives (k, bound) of the job's IWAE bound with the most samples: with ``bound``, training's
    final one on the set that selects (validation if it held one out, else test); with
    ``evaluated``, that of ``evaluate``'s eval.json (of the test set). None if it has none."""
    if sort == "evaluated":
        return (job.evaluated[0][0], job.evaluated[1]) if job.evaluated else None
    return job.val_iwae if math.isfinite(job.final_val_loss) else job.iwae


def bound_sort(jobs: list[Job]) -> str:
    """Gives the bounds that rank the jobs for ``--sort bound``: ``bound``, the final IWAE bounds
    that training computed, where any job has one; else ``evaluated``, those of ``evaluate``, if
    they were all measured alike (k, checkpoint, images) and no job held out a validation set (its
    runs are selected on that, never on the test set). Raises ConfigError where the bounds cannot
    rank the jobs, saying why."""
    ks = sorted({bound[0] for job in jobs if (bound := selection_bound(job))})
    if len(ks) > 1:
        raise ConfigError(
            f"--sort bound: these runs computed their bounds with different numbers of samples "
            f"(k = {', '.join(map(str, ks))}), which do not compare; sort by final or best loss"
        )
    if ks:
        return "bound"
    bases = sorted({job.evaluated[0] for job in jobs if job.evaluated})
    if not bases:
        raise ConfigError(
            "--sort bound: these runs have no IWAE bound: none computed one at its end "
            "(eval.final_iwae_samples) and none was evaluated (python -m vae_gumbel.evaluate "
            "checkpoint=FOLDER); sort by final or best loss"
        )
    if any(math.isfinite(job.final_val_loss) for job in jobs):
        raise ConfigError(
            "--sort bound: these runs held out a validation set, which selects them, and computed no "
            "final IWAE bound of it (eval.final_iwae_samples with eval.final_iwae_on=val); evaluate's "
            "bounds are of the test set; sort by final or best loss"
        )
    if len(bases) > 1:
        measured = "; ".join(f"k={k}, {basis}" for k, basis in bases)
        raise ConfigError(
            f"--sort bound: evaluate measured these runs' bounds in different ways ({measured}), which "
            "do not compare; evaluate them all alike, or sort by final or best loss"
        )
    return "evaluated"


def shown_loss(job: Job, sort: str) -> tuple[str, float]:
    """Gives the name and value of the number a figure's legend shows for a job: its final or best
    test loss, or the bound it is ranked by."""
    if sort in BOUND_SORTS:
        bound = selection_bound(job, sort)
        return (f"IWAE-{bound[0]}", bound[1]) if bound else ("IWAE", math.nan)
    return sort, job.final_test_loss if sort == "final" else job.best_test_loss


def ranked(jobs: list[Job], sort: str = "final") -> list[Job]:
    """Gives the jobs best first: completed ones by their final (or best) ``selection_loss``, then
    unfinished ones that have one, then those without one."""

    def order(job: Job) -> tuple[int, float]:
        loss = selection_loss(job, sort)
        finite = math.isfinite(loss)
        return (0 if job.status == "completed" and finite else 1 if finite else 2, loss if finite else 0.0)

    return sorted(jobs, key=order)
