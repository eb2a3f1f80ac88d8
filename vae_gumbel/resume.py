"""Where a job starts from: the checkpoint that ``resume`` names (never another run's over the run
in the job's folder), the epoch and step it holds, and whether the job has anything left to do.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, NamedTuple

from hydra.utils import to_absolute_path

from vae_gumbel.checkpoint import (
    changed_settings,
    check_same_job,
    listed,
    load_checkpoint,
    recorded_data_root,
)
from vae_gumbel.datasets import DATASETS, holds_raw_files
from vae_gumbel.errors import CheckpointError, ConfigError, UnreadableCheckpoint
from vae_gumbel.interrupts import restarted_by_slurm, resume_command
from vae_gumbel.jobs import RUN_CONTROL_KEYS
from vae_gumbel.run import Member, log
from vae_gumbel.run_folder import RunFolder, read_status, resolve_checkpoint
from vae_gumbel.tracking import read_metrics


class Start(NamedTuple):
    """Where a job starts: the checkpoint (None: from nothing), the epoch and step it starts at (0, 0
    for a new run, also one from another run's weights) and, when it continues a run, that run's config."""

    file: Path | None
    position: tuple[int, int] = (0, 0)
    config: dict[str, Any] | None = None


def job_start(member: Member) -> Start:
    """Gives where a job starts: from nothing, from another run's weights, or where a run stopped."""
    settings = member.settings
    file = find_resume_checkpoint(settings.resume, member.folder, member.logger, settings.resume_weights_only)
    if file == member.folder.checkpoint("last") and settings.resume_weights_only:
        # A requeued job continues its own run, not the weights it started from.
        member.settings = dataclasses.replace(settings, resume_weights_only=False)
    if file is None or member.settings.resume_weights_only:
        return Start(file)
    return checkpoint_start(member, file)


def find_resume_checkpoint(
    resume: str | None, folder: RunFolder, logger: logging.Logger = log, weights_only: bool = False
) -> Path | None:
    """Gives the checkpoint that ``resume`` names, or None to start fresh.

    A folder that already holds a run is never trained over: only resume=last (or ``resume``
    naming that run, without ``weights_only``) continues it, and any other start there is
    refused, except for a SLURM job started again after a requeue, which continues from its own
    checkpoint (and says so in the job's log, ``logger``).
    """
    own = folder.checkpoint("last")
    if resume == "last":
        return own if own.is_file() else None
    named = None
    if resume is not None:
        try:
            named = resolve_checkpoint(to_absolute_path(resume), "last")
        except CheckpointError as err:
            raise CheckpointError(
                f"resume={resume}: {err} (resume=last continues the run in this folder)"
            ) from None
    if not own.is_file():
        return named
    if restarted_by_slurm():
        logger.info("a requeued SLURM job: continuing from %s", own)
        return own
    if named is not None and named.resolve() == own.resolve() and not weights_only:
        return own
    if resume is None:
        over = ""
    elif weights_only:
        over = f"; resume={resume} resume_weights_only=true would start a new run over it"
    else:
        over = f"; resume={resume} would replace it with a run from another checkpoint"
    raise ConfigError(
        f"{folder.path} already holds a run ({own.relative_to(folder.path)}){over}; continue it with "
        "resume=last, or train into another folder (hydra.run.dir=... or hydra.sweep.dir=...)"
    )


def checkpoint_start(member: Member, file: Path) -> Start:
    """Gives the start of a job that continues from ``file``: its epoch, step and config; a job of a
    sweep that continues its own folder must be the job that folder's run was (``check_same_job``)."""
    try:
        checkpoint = load_checkpoint(file)
    except UnreadableCheckpoint as err:
        if file != member.folder.checkpoint("last"):
            raise
        raise err.advising(way_past_broken_last(member)) from None
    own = file == member.folder.checkpoint("last")
    if member.swept and own:
        check_same_job(checkpoint, member.settings, member.swept, member.folder.path)
    epoch, epochs = checkpoint["epoch"], member.settings.trainer.epochs
    if not own and epoch >= epochs:  # its own run, finished, is left as it is (finished_metrics)
        raise ConfigError(
            f"resume={member.settings.resume}: its checkpoint ({file.name}) stands at epoch {epoch}, and "
            f"trainer.epochs={epochs} leaves nothing to train from it; give trainer.epochs above {epoch} "
            "(it counts from the run's first epoch), or evaluate it as it is (python -m vae_gumbel.evaluate)"
        )
    find_the_runs_data(member, checkpoint, file)
    return Start(file, (epoch, checkpoint["step"]), checkpoint["config"])


def find_the_runs_data(member: Member, checkpoint: dict[str, Any], file: Path) -> None:
    """Points a job that continues a run at that run's data, where its relative ``data.root``
    holds no data set in this directory but the run's own data root does (``recorded_data_root``:
    the one it was launched with, a relative one from where it was launched). Otherwise a run
    continued from another directory would fetch its data set again, which takes the internet
    that a cluster's nodes may not have."""
    data = member.settings.data
    source = DATASETS[data.name]
    here = source.raw_folder(to_absolute_path(data.root))
    if Path(data.root).is_absolute() or holds_raw_files(here, source):
        return
    root = recorded_data_root(checkpoint, file)
    if Path(root).is_absolute() and holds_raw_files(source.raw_folder(root), source):
        member.settings = dataclasses.replace(member.settings, data=dataclasses.replace(data, root=root))
        member.config["data"]["root"] = root  # as its checkpoints record it, for the next to find
        member.logger.info("no data set under %s here: reading the run's own, in %s", data.root, root)


def way_past_broken_last(member: Member) -> str:
    """Gives how a run goes on when its own last.pt cannot be read: from its best.pt, into a folder
    of its own, so that nothing in the run's folder is trained over (a copy of last.pt from a
    backup, put back, continues it with resume=last)."""
    folder = member.folder
    best = folder.checkpoint("best")
    try:
        epoch = load_checkpoint(best)["epoch"]
    except CheckpointError:
        return "nor can its best.pt be read; put back a copy of last.pt, or train afresh in another folder"
    branch = folder.path.with_name(f"{folder.path.name}-from-best")
    command = resume_command(branch, member.overrides, start=best.resolve())
    command = command or f"resume={best} hydra.run.dir={branch}"
    return f"its best.pt (epoch {epoch}) is whole: train on from it into another folder with {command}"


def finished_metrics(member: Member, start: Start) -> dict[str, Any] | None:
    """Gives the last metrics of a job that already trained all its epochs and completed (so it is
    left as it is), or None if it has work to do: epochs to train, or its final IWAE evaluation
    (which an interrupt or a kill after its last epoch leaves to do)."""
    epoch = start.position[0]
    if epoch == 0 or start.config is None or read_status(member.folder).get("status") != "completed":
        return None
    records = read_metrics(member.folder.metrics)
    if epoch >= member.settings.trainer.epochs and records and records[-1]["epoch"] == epoch:
        epochs = f"{epoch} epoch{'s' if epoch != 1 else ''}"
        note = unapplied(member, start.config)
        log.info("%s already finished its %s; nothing to do%s", member.folder.path, epochs, note)
        return records[-1]
    return None


def unapplied(member: Member, saved: dict[str, Any]) -> str:
    """Gives what a finished run, whose config is ``saved``, says of the settings of this command
    that differ from its own and that nothing applies, since nothing trains (none: an empty
    string): a run asked again with a new learning rate, say, which was meant for a new run."""
    changes = {
        key: values
        for key, values in changed_settings(saved, member.settings).items()
        if key not in RUN_CONTROL_KEYS and key != "trainer.epochs"
    }
    if not changes:
        return ""
    return (
        f"; it keeps its own settings, not this command's {listed(changes)}: train those in another "
        "folder (hydra.run.dir=...)"
    )
