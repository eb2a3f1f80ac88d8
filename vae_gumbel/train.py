"""Train categorical VAEs: ``python -m vae_gumbel.train [overrides]`` (or ``vae-gumbel-train``).

``train(cfg, run_dir)`` trains one run and gives its final metrics; ``train_members`` trains
jobs that can share a stack and gives each job's result; ``main`` is the thin Hydra entry point
that returns the number sweepers minimise.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: this module's command runs it (see commands.py)
    from vae_gumbel import commands

    commands.train()

import contextlib
import functools
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vae_gumbel.background import BackgroundWriter, writer_threads
from vae_gumbel.checkpoint import (
    kept_on_its_own,
    link_checkpoint,
    member_checkpoints,
    save_checkpoint,
)
from vae_gumbel.config import ModelConfig, check_read, config_path, validate
from vae_gumbel.data import ImageSet
from vae_gumbel.device import flush_denormals, resolve_device
from vae_gumbel.errors import (
    ConfigError,
    FolderBusy,
    Interrupted,
    WriteError,
    describe,
    exit_in_one_line,
    one_line_errors,
)
from vae_gumbel.faults import pause
from vae_gumbel.files import write_failure, writing
from vae_gumbel.grids import (
    code_usage_image,
    encode_png,
    prior_images,
    reconstruction_images,
    tile_members,
    to_pixels,
    write_png,
)
from vae_gumbel.interrupts import (
    StopRequest,
    multirun_resume_command,
    override,
    resume_command,
    shell_command,
    stop_on_signals,
    under_slurm,
)
from vae_gumbel.likelihood import (
    ACTIVE_NATS,
    IMAGES,
    TestScores,
    binarization_of,
    evaluation_report,
    grey_level_caution,
    kept_line,
    score_test_set,
    write_eval_json,
)
from vae_gumbel.loop import EpochResult, Temperatures
from vae_gumbel.model import unstack
from vae_gumbel.resume import finished_metrics, job_start
from vae_gumbel.run import Member, Run, build_run, log, stack_key, stacks_by_key
from vae_gumbel.run_folder import RunFolder, holds_trained_run, trained_by_another, training_into
from vae_gumbel.step import STEP_VALUES
from vae_gumbel.timeline import (
    COPY_STATE,
    DRAW_PICTURES,
    EVALUATE,
    HYDRA_COMPOSES,
    LOG_EPOCH,
    SWEEPER_CHECKS,
    TIMELINE,
)
from vae_gumbel.tracking import (
    JobRecord,
    RunLog,
    hyperparameters,
    iwae_bound,
    job_swept_keys,
    read_metrics,
    record_refusal,
    selection_split,
    tensorboard_run_name,
    write_status,
)

# How many epochs the background writer may fall behind training before training waits for it.
WRITER_EPOCHS_BEHIND = 2
# A stack of up to this many jobs is named in full on its console line; a longer one by its first
# four jobs and its last, the middle elided.
STACK_JOBS_SHOWN = 6


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Trains as ``cfg`` says, writing into ``run_dir`` (Hydra's output dir by default); gives the
    final epoch's metrics."""
    (result,) = train_members([member_of(cfg, run_dir)])
    if isinstance(result, Exception):
        raise result
    return result


def member_of(cfg: DictConfig, run_dir: str | Path | None = None, logger: logging.Logger = log) -> Member:
    """Gives the job a composed config describes, writing into ``run_dir`` (Hydra's output dir by
    default); a config that fails its checks is raised, and recorded as failed in status.json
    unless the folder holds a run that trained or another process trains into it now
    (``record_refusal``)."""
    folder = RunFolder(run_dir if run_dir is not None else HydraConfig.get().runtime.output_dir)
    record = job = JobRecord.of_job(cfg, folder)
    if job is not None and not holds_trained_run(folder) and not trained_by_another(folder):
        job.write(folder)  # as Hydra would; a trained run's record is replaced only once the job is accepted
        job = None  # written: nothing left to write at the acceptance
    swept = frozenset(job_swept_keys() or ())
    try:
        settings = validate(cfg)
        check_read(settings, given_settings(swept) if record is not None else [])
    except Exception as err:
        record_refusal(folder, err)
        raise
    if record is not None:
        record.checked(settings)
    config = OmegaConf.to_container(cfg, resolve=True)
    overrides = tuple(HydraConfig.get().overrides.task) if record is not None else None
    return Member(
        settings, config, folder, tensorboard_run_name(), logger, swept=swept, job=job, overrides=overrides
    )


def given_settings(swept: frozenset[str]) -> list[str]:
    """Gives the settings (dotted keys) that this Hydra job's command line sets, but those of a
    config group whose choice its sweep varies (``estimator.rao_samples`` in a sweep over
    estimators is meant for the ones that read it)."""
    keys = [item.split("=", 1)[0].lstrip("+") for item in HydraConfig.get().overrides.task if item[:1] != "~"]
    return [key for key in keys if "." in key and key.split(".")[0] not in swept]


def train_members(
    members: Sequence[Member], max_members: int | None = None
) -> list[dict[str, Any] | Exception]:
    """Trains jobs, as few stacks as their settings allow; gives each job's final metrics, or the
    error that stopped it. A job that already finished is left as it is.

    Jobs train together when they differ only in settings a member may have of its own
    (``run.stack_key``) and stand at the same point (fresh, or resumed from the same epoch), at
    most ``max_members`` to a stack.
    """
    # Before a checkpoint is read, which starts torch's thread pool (see flush_denormals); a member
    # with a device setting that cannot be had fails below.
    for device in {member.settings.trainer.device for member in members}:
        with contextlib.suppress(ConfigError):
            flush_denormals(resolve_device(device))
    results: dict[int, dict[str, Any] | Exception] = {}
    resume_from: dict[int, Path | None] = {}
    keyed: list[tuple[int, tuple]] = []
    for i, member in enumerate(members):
        try:
            start = job_start(member)
            resume_from[i] = start.file
            finished = finished_metrics(member, start)
            if finished is not None:
                results[i] = finished
            else:
                keyed.append((i, (stack_key(member.settings), start.position)))
        except Exception as err:
            record_refusal(member.folder, err)
            results[i] = err
    for chunk in stacks_by_key(keyed, max_members):
        with contextlib.ExitStack() as held:
            free = [i for i in chunk if claimed(held, members[i])]
            if free:
                train_stack([members[i] for i in free], [resume_from[i] for i in free])
        for i in chunk:
            results[i] = members[i].error if members[i].error is not None else members[i].final
    return [results[i] for i in range(len(members))]


def claimed(held: contextlib.ExitStack, member: Member) -> bool:
    """Takes the lock of the member's folder for as long as ``held`` lasts; says whether it got it.
    A folder that another process trains into is left to it: the member fails with FolderBusy, and
    nothing is written there."""
    try:
        held.enter_context(training_into(member.folder, member.logger))
    except FolderBusy as err:
        member.error = err
        return False
    return True


def train_stack(members: list[Member], resume_from: list[Path | None]) -> None:
    """Trains jobs as one stack and records in each status.json how it ended: completed, or failed
    with the error that stopped it (a member's own, or the one that ended the whole stack). A stack
    that cannot be built (a checkpoint refused, the data missing) trained nothing, so a run already
    in a folder keeps its record (``record_refusal``)."""
    try:
        run = build_run(members, resume_from)
    except Exception as err:
        for member in members:
            member.error = err
            record_refusal(member.folder, err)
        return
    # Accepted: its job's record becomes the run's, and it trains until it says how it ended (a
    # report tells a killed one by its folder's free lock).
    for member in members:
        if member.job is not None:
            member.job.write(member.folder)
        write_status(member.folder, "training", epoch=run.epoch, pid=os.getpid(), host=socket.gethostname())
    try:
        train_run(run)
    except Interrupted:
        raise  # the whole sweep stops; each member's status says where
    except Exception as err:
        for member in members:
            member.error = member.error or err
    finally:
        for member in members:
            if member.run_log is not None:
                try:
                    member.run_log.close()
                except WriteError as err:
                    member.error = member.error or err
    for member in members:
        record_end(member)


def record_end(member: Member) -> None:
    """Records in status.json how a member's run ended. A status that cannot be written fails a run
    that completed (its records are not whole), and only warns for a run that failed, whose own error
    is the one to report."""
    try:
        if member.error is not None:
            write_status(member.folder, "failed", error=describe(member.error))
            return
        final = member.final
        details = {k: final[k] for k in ("epoch", "step", "test/loss") if k in final}
        write_status(member.folder, "completed", **details)
    except WriteError as err:
        if member.error is None:
            member.error = err
        else:
            member.logger.warning("the run failed, and its status.json could not say so: %s", err)
        return
    member.logger.info(end_summary(member))


def train_run(run: Run) -> None:
    """Trains every member of ``run`` to its last epoch, then scores it with the final IWAE: the
    loop of every run, single or stacked. Each member's final metrics end up in ``member.final``.
    Pictures and checkpoints are written by a background thread, all of them before this returns.

    SIGINT or SIGTERM stop the run at the next step boundary: each member's state at the end of
    its last completed epoch is written as last.pt, its status.json says ``interrupted``, and
    Interrupted (exit code 128 + the signal) says how to go on. So does submitit's exit on
    preemption, which arrives as SystemExit.
    """
    # Each member hands the writer at most two pieces of work an epoch (pictures, checkpoint).
    writer = BackgroundWriter(
        max_pending=2 * WRITER_EPOCHS_BEHIND * len(run.members),
        threads=writer_threads(run.device.type, len(run.members)),
    )
    try:
        with stop_on_signals() as stop:
            _train_run(run, writer, stop)
        with TIMELINE.phase("wait for the background writes"):
            writer.drain()
    except (Interrupted, KeyboardInterrupt, SystemExit) as err:
        writer.close()  # what is in flight completes; the snapshots below are never older
        error = interrupted(run, err)
        if isinstance(err, SystemExit) or under_slurm():
            # Under submitit, a job that ends without a result is run again when SLURM requeues it.
            exit_in_one_line(error)
        raise error from None
    finally:
        writer.close()


def _train_run(run: Run, writer: BackgroundWriter, stop: StopRequest) -> None:
    trainer = run.settings.trainer
    with TIMELINE.phase("logs: open (TensorBoard writers)"):
        open_logs(run)
    # What an interrupt in the first epoch keeps.
    start = {m: {"epoch": run.epoch, "step": run.step} for m, _ in run.live()}
    for m, snapshot in member_checkpoints(run, start).items():
        run.members[m].snapshot = snapshot
        run.members[m].saved_epoch = run.epoch if run.epoch else None
    while run.epoch < trainer.epochs:
        # Train one epoch: every live member takes its steps; a member gone non-finite stops (the
        # last one ends the run), and keeps on disk the epochs it completed.
        try:
            result = run.train_epoch(stop)
            run.check_finite_weights()
        finally:
            for m, member in enumerate(run.members):
                if member.error is not None and member.snapshot is not None and member.snapshot["epoch"]:
                    write_checkpoints(member, writer.lane(m))
                    member.snapshot = kept_on_its_own(member.snapshot)  # kept for good
        last = run.epoch == trainer.epochs
        # Score every member on the test set (and the validation set, if held out) in one batched
        # pass each, with exact discrete samples.
        scores = {}
        if run.epoch % trainer.eval_every == 0 or last:
            with TIMELINE.phase(EVALUATE):
                scores = score_held_out_sets(run)
        # Log each live member's epoch: metrics.jsonl, TensorBoard, its log.
        with TIMELINE.phase(LOG_EPOCH):
            records = [epoch_record(run, result, m, scores) for m in range(len(run.members))]
            for m, member in run.live():
                member.run_log.log_epoch(records[m])
                member.run_log.info(epoch_line(records[m], trainer.epochs, member.settings.model.latent_dim))
                watch_code(member, records[m])
                member.final = records[m]
            if len(run.members) > 1 or run.members[0].logger is not log:  # else its epoch line is there
                log.info(stack_line(run, records))
        # Draw the pictures every sample_every epochs: decoded here, encoded in the background.
        if run.epoch % trainer.sample_every == 0 or last:
            with TIMELINE.phase(DRAW_PICTURES):
                draw_pictures(run, scores.get("test"), writer)
        # Keep each live member's state: copied here (what an interrupt would save), written in the
        # background every checkpoint_every epochs as last.pt, and as best.pt if its loss on the
        # selection set (validation if held out, else test) improved since the last write. An epoch
        # between writes that a kill loses is trained again, to the same numbers, on resume.
        with TIMELINE.phase(COPY_STATE):
            improved = {}
            for m, member in run.live():
                split = selection_split(records[m])
                improved[m] = records[m].get(f"{split}/loss", math.inf) < member.best_loss(split)
                member.best_test_loss = min(member.best_test_loss, records[m].get("test/loss", math.inf))
                member.best_val_loss = min(member.best_val_loss, records[m].get("val/loss", math.inf))
            snapshots = member_checkpoints(run, {m: records[m] for m in improved})
            for m, member in run.live():
                member.snapshot = snapshots[m]
                if improved[m]:
                    member.best_snapshot = member.snapshot
                if run.epoch % trainer.checkpoint_every == 0 or last:
                    write_checkpoints(member, writer.lane(m))
                elif improved[m]:  # kept until the next write
                    member.snapshot = member.best_snapshot = kept_on_its_own(member.snapshot)
        pause("epoch")
    # After the last epoch: importance-weighted bounds if asked (an evaluation that may take an
    # hour, so a stop request ends it at once), and the HParams summary.
    held_out = functools.cache(lambda: score_held_out_sets(run))  # scored once, for every member
    for m, member in run.live():
        if not member.final:  # it had no epoch left to train: its metrics are its last ones
            member.final = last_metrics(run, m, held_out)
        if member.settings.eval.final_iwae_samples:
            with TIMELINE.phase("final IWAE"), stop.at_once():
                final_iwae(run, m, member.settings.eval.final_iwae_on)


def last_metrics(run: Run, m: int, held_out: Callable[[], dict[str, list[TestScores]]]) -> dict[str, Any]:
    """Gives the metrics of a member that resumed with no epoch left to train (its last record), or,
    for a run of no epochs, its held-out scores as they stand (``held_out()``: every member's),
    logged as the record of its epoch (so that the report, TensorBoard and a final IWAE find them
    where they find any epoch's)."""
    member = run.members[m]
    records = read_metrics(member.folder.metrics)
    if records and records[-1]["epoch"] == run.epoch:
        return records[-1]
    temperature = Temperatures(run.schedule, run.step, 1, run.device).value(run.step)[m]
    metrics = {"epoch": run.epoch, "step": run.step, "temperature": float(temperature)}
    with TIMELINE.phase(EVALUATE):
        sets = held_out()
    for scores in sets.values():
        metrics.update(scores[m].metrics)
    member.run_log.log_epoch(metrics)
    return metrics


def held_out_sets(run: Run) -> dict[str, ImageSet]:
    """Gives the sets a run scores, by the name of their metrics: test, and val if held out."""
    sets = {"test": run.data.test}
    if run.data.validation is not None:
        sets["val"] = run.data.validation
    return sets


def score_held_out_sets(run: Run) -> dict[str, list[TestScores]]:
    """Gives every member's scores on each of the run's held-out sets, by the name of their metrics."""
    trainer = run.settings.trainer
    return {
        split: score_test_set(run.model, images, trainer.eval_batch_size, trainer.eval_seed, split)
        for split, images in held_out_sets(run).items()
    }


def interrupted(run: Run, err: BaseException) -> Interrupted:
    """Writes each live member's state at its last epoch boundary as last.pt (unless it is there
    already), marks it interrupted in status.json, and gives the error that says how to go on."""
    signum = getattr(err, "signum", signal.SIGTERM if isinstance(err, SystemExit) else signal.SIGINT)
    name = signal.Signals(signum).name
    for _, member in run.live():
        snapshot = member.snapshot
        if snapshot is not None:
            write_checkpoints(member, lambda work, *args: work(*args))
        else:  # stopped before its first step: the folder holds what it held
            snapshot = {"epoch": run.epoch, "step": run.step}
        command = resume_command(member.folder.path, member.overrides)
        write_status(
            member.folder,
            "interrupted",
            signal=name,
            stopped_at_step=getattr(err, "step", None) or run.step,
            epoch=snapshot["epoch"],
            step=snapshot["step"],
            resume=command or "resume=last in the same run folder",
        )
        if member.run_log is not None:
            member.run_log.info("interrupted by %s; continue with: %s", name, command or "resume=last")
    first = run.members[0]
    command = resume_command(first.folder.path, first.overrides) if first.folder is not None else None
    epoch = first.snapshot["epoch"] if first.snapshot else 0
    if epoch < run.settings.trainer.epochs:
        state = "the epoch in progress is lost"
    elif first.settings.eval.final_iwae_samples:
        state = "its last: the training is done, its final IWAE bounds are not"
    else:
        state = "its last: the training is done"
    sweep = multirun_resume_command(first.folder.path) if first.folder is not None else None
    return Interrupted(
        signum,
        f"interrupted by {name}: the last checkpoint holds epoch {epoch} ({state}); "
        f"continue with: {command or 'resume=last in the same run folder'}"
        + (f"; or the whole sweep with: {sweep}" if sweep else ""),
    )


def open_logs(run: Run) -> None:
    """Opens each member's records at the point where the run stands (dropping anything a killed
    run wrote after its checkpoint) and says what is about to be trained."""
    steps = math.ceil(len(run.data.train) / run.settings.data.batch_size)
    for member in run.members:
        member.run_log = RunLog(member.folder, run.epoch, run.step, member.tensorboard_name, member.logger)
        member.run_log.log_hparams(hyperparameters(member.settings))
        if run.epoch:
            member.run_log.info("resumed at epoch %d, step %d", run.epoch, run.step)
            for record in member.run_log.kept:  # a frozen run warned before it stopped
                member.frozen_since = frozen_from(member.frozen_since, record, member.settings.model)
        member.run_log.info(
            "training %s on %s (%s): %d train%s / %d test images, %d step%s per epoch%s, run folder %s",
            member.settings.estimator.name,
            run.device,
            run.step_path,
            len(run.data.train),
            f" / {len(run.data.validation)} validation" if run.data.validation is not None else "",
            len(run.data.test),
            steps,
            "" if steps == 1 else "s",
            f", in a stack of {len(run.members)}" if len(run.members) > 1 else "",
            member.folder.path,
        )


def epoch_record(
    run: Run, result: EpochResult, m: int, scores: dict[str, list[TestScores]]
) -> dict[str, Any]:
    """Gives member m's line of metrics.jsonl for the epoch just trained, with its ``scores`` on the
    held-out sets if they were evaluated."""
    record: dict[str, Any] = {
        "epoch": run.epoch,
        "step": run.step,
        "temperature": float(result.temperature[m]),
    }
    record.update(
        {f"train/{name}": float(value) for name, value in zip(STEP_VALUES, result.means[m], strict=True)}
    )
    for split, split_scores in scores.items():
        record.update(split_scores[m].metrics)
        record[f"{split}/best_loss"] = min(run.members[m].best_loss(split), record[f"{split}/loss"])
    record["time/epoch_s"] = result.seconds
    record["throughput/train_img_s"] = result.images / result.seconds
    if result.setup_seconds:
        record["time/compile_s"] = result.setup_seconds
    return record


def draw_pictures(run: Run, scores: list[TestScores] | None, writer: BackgroundWriter) -> None:
    """Draws every live member's prior and reconstruction grids (decoded in one batched pass) and, after
    an evaluation, its code-usage map, here; hands them as bytes to the background writer: PNGs into
    each member's samples folder, images into its TensorBoard."""
    seed = run.settings.trainer.sample_seed
    test_images = run.data.test.targets(slice(0, 32))
    cols = min(8, len(test_images))  # 4 rows of 8 pairs, or as many as a smaller test set holds
    pairs = min(4, len(test_images) // cols)
    # Each kind of picture is made for the whole stack in a few operations, not a few per member.
    prior = to_pixels(tile_members(prior_images(run.model, 64, seed=seed), 8))
    reconstruction = to_pixels(
        tile_members(reconstruction_images(run.model, test_images, pairs, cols, seed=seed), cols)
    )
    usage = None if scores is None else to_pixels(code_usage_image(torch.stack([s.usage for s in scores])))
    for m, member in run.live():
        pixels = {"prior": prior[m], "reconstruction": reconstruction[m]}
        if usage is not None:
            pixels["code_usage"] = usage[m]
        writer.submit(write_pictures, member, run.epoch, run.step, pixels, lane=m)


def write_pictures(member: Member, epoch: int, step: int, pictures: dict[str, np.ndarray]) -> None:
    """Writes one member's pictures of an epoch, given as bytes: PNGs and TensorBoard images."""
    with TIMELINE.phase("pictures: encode and write (background)"):
        for name, pixels in pictures.items():
            png = encode_png(pixels)
            path = member.folder.epoch_picture(name, epoch)
            try:
                write_png(png, path)
            except OSError as err:
                picture_not_written(member, path, err)
            member.run_log.log_png(name if name == "code_usage" else f"samples/{name}", png, step)


def picture_not_written(member: Member, path: Path, err: OSError) -> None:
    """Warns, the first time for a member, that one of its pictures could not be written. A picture
    is a view of the run, not the run: its training goes on, and its checkpoints, whose writes
    stop the run when they fail, say whether the disk holds what matters."""
    if member.pictures_failed:
        return
    member.pictures_failed = True
    member.logger.warning(
        "could not write picture %s: %s; training goes on, and this run's later pictures that "
        "cannot be written are skipped without another warning",
        path,
        write_failure(path, err)[0],
    )


def write_checkpoints(member: Member, submit: Callable[..., Any]) -> None:
    """Hands ``submit`` what a member's checkpoints on disk lack: its state at the last epoch
    boundary as last.pt (unless last.pt holds that epoch), and its best epoch since the last write
    as best.pt."""
    snapshot = member.snapshot
    last = snapshot if snapshot is not None and snapshot["epoch"] != member.saved_epoch else None
    if last is None and member.best_snapshot is None:
        return
    submit(save_checkpoints, member.folder, last, member.best_snapshot)
    if last is not None:
        member.saved_epoch = last["epoch"]
    member.best_snapshot = None


def save_checkpoints(folder: RunFolder, last: dict[str, Any] | None, best: dict[str, Any] | None) -> None:
    """Writes a member's checkpoints: ``last`` as last.pt, ``best`` as best.pt (the same epoch's
    checkpoint is written once and linked)."""
    with TIMELINE.phase("checkpoints: write (background)"):
        if last is not None:
            save_checkpoint(folder.checkpoint("last"), last)
        if best is not None and best is last:
            link_checkpoint(folder.checkpoint("last"), folder.checkpoint("best"))
        elif best is not None:
            save_checkpoint(folder.checkpoint("best"), best)


def stack_line(run: Run, records: list[dict[str, Any]]) -> str:
    """Gives one console line for a stack's epoch: which jobs it trains (its members' folders, a
    sweep's job numbers, so that a sweep's stacks can be told apart), how many of them are still
    training, their test losses, and those whose code tells nothing about the image (no active
    variable). A sweep's job that trains alone gets the line too, as its job number and its test
    loss: its own epoch lines go to its log file only."""
    live = [records[m] for m, _ in run.live()]
    losses = [r["test/loss"] for r in live if "test/loss" in r]
    jobs = [member.folder.path.name for member in run.members]
    silent = [jobs[m] for m, _ in run.live() if records[m].get("test/active_variables") == 0]
    epoch = f"epoch {run.epoch}/{run.settings.trainer.epochs}"
    if len(jobs) == 1:
        line = f"job {jobs[0]}, {epoch}" + (f": test loss {losses[0]:.2f}" if losses else "")
        return line + ("; no active variable" if silent else "")
    silent_line = ""
    if len(silent) > STACK_JOBS_SHOWN:
        silent_line = f"; {len(silent)} jobs with no active variable"
    elif silent:
        silent_line = f"; no active variable: job{'s' * (len(silent) > 1)} {' '.join(silent)}"
    if len(jobs) > STACK_JOBS_SHOWN:
        jobs = [*jobs[: STACK_JOBS_SHOWN - 2], "...", jobs[-1]]
    line = f"stack of {len(run.members)} (jobs {' '.join(jobs)}), {epoch}: {len(live)} training"
    if losses:
        line += f", test loss {min(losses):.2f} to {max(losses):.2f} (mean {sum(losses) / len(losses):.2f})"
    return line + silent_line


def final_iwae(run: Run, m: int, split: str = "test") -> None:
    """Scores member m with importance-weighted bounds on the test set, or with ``split="val"`` on
    the validation set: eval.json (eval_val.json), and the numbers added to its last metrics record."""
    member = run.members[m]
    settings = member.settings
    report = evaluation_report(
        unstack(run.model, m),
        held_out_sets(run)[split],
        settings.eval.final_iwae_samples,
        binarization=binarization_of(member.config["data"]),
        max_rows=settings.eval.iwae_max_rows,
        seed=settings.eval.iwae_seed,
        context={
            "estimator": settings.estimator.name,
            "latent_dim": settings.model.latent_dim,
            "categorical_dim": settings.model.categorical_dim,
            "epoch": run.epoch,
            "steps": run.step,
            "images": IMAGES[split],
        },
        progress=settings.trainer.progress,
    )
    out = member.folder.eval_json_of(split)
    with writing(out, "the final evaluation"):
        member.logger.info(kept_line(out, write_eval_json(report, out)))
    bounds = {f"{split}/neg_elbo_mean": report["neg_elbo"]}
    bounds.update({f"{split}/iwae_nll_{k}": value for k, value in report["iwae_nll"].items()})
    member.run_log.amend_last_epoch(bounds)
    member.final = {**member.final, **bounds}
    member.run_log.info(
        "final IWAE bounds on %d %s images (nats): %s; negative ELBO over %d draws %.2f (%.0f s)",
        report["test_images"],
        IMAGES[split],
        ", ".join(
            f"k={k}: {value:.2f} +- {report['iwae_nll_stderr'][k]:.2f}"
            for k, value in report["iwae_nll"].items()
        ),
        report["neg_elbo_samples"],
        report["neg_elbo"],
        report["seconds"],
    )
    if caution := grey_level_caution(report):
        member.run_log.info(caution)


def end_summary(member: Member) -> str:
    """Gives the lines that close a completed run: its final and best test loss, where its results
    are, and the commands that show them, draw from it and train it further."""
    final, folder = member.final, member.folder.path.resolve()
    epochs = member.settings.trainer.epochs
    trained = final.get("epoch", 0)
    lines = [f"done: {trained} epoch{'' if trained == 1 else 's'}"]
    for split, best in (("val", member.best_val_loss), ("test", member.best_test_loss)):
        if f"{split}/loss" in final:
            lines[0] += f", final {IMAGES[split]} loss {final[f'{split}/loss']:.2f}"
            # A run of trainer.epochs=0 only scores its starting weights: it has no best epoch.
            lines[0] += f", best {best:.2f}" if math.isfinite(best) else ""
    for split in ("val", "test"):
        if bound := iwae_bound(final, split):
            lines[0] += f", {IMAGES[split]} IWAE NLL (k={bound[0]}) {bound[1]:.2f}"
    lines += [
        f"  run folder:   {folder}",
        f"  TensorBoard:  {shell_command('tensorboard', '--logdir', folder / 'tensorboard')}",
    ]
    if member.folder.checkpoint("last").is_file():
        checkpoint = override("checkpoint", folder)
        lines += [
            f"  samples:      {shell_command('python', '-m', 'vae_gumbel.sample', checkpoint)}",
            f"  likelihoods:  {shell_command('python', '-m', 'vae_gumbel.evaluate', checkpoint)}",
        ]
    further = 2 * max(epochs, trained)
    more = (
        resume_command(member.folder.path, member.overrides, {"trainer.epochs": str(further)})
        if further
        else None
    )
    if more is not None:
        lines.append(f"  train on to {further} epochs: {more}")
    return "\n".join(lines)


def epoch_line(record: dict[str, Any], epochs: int, latent_dim: int) -> str:
    """Gives an epoch's record as one line of the log; its active variables out of ``latent_dim``
    show a run whose code tells nothing about the image (a posterior frozen or at the prior)."""
    line = (
        f"epoch {record['epoch']}/{epochs} step {record['step']} tau {record['temperature']:.3f} | "
        f"train relaxed {record['train/loss_relaxed']:.2f} unrelaxed {record['train/loss_unrelaxed']:.2f}"
    )
    if "val/loss" in record:
        line += f" | validation {record['val/loss']:.2f}"
    if "test/loss" in record:
        line += (
            f" | test {record['test/loss']:.2f} (recon {record['test/recon']:.2f},"
            f" kl {record['test/kl']:.2f}, perplexity {record['test/perplexity']:.2f},"
            f" active {record['test/active_variables']}/{latent_dim})"
        )
    compiling = f" (+{record['time/compile_s']:.1f}s compiling)" if "time/compile_s" in record else ""
    return line + f" | {record['time/epoch_s']:.1f}s{compiling}, {record['throughput/train_img_s']:.0f} img/s"


def frozen_from(since: int | None, record: dict[str, Any], model: ModelConfig) -> int | None:
    """Gives the epoch from which a run's encoder is frozen after the epoch of ``record`` (None: it
    is not), given ``since``, that epoch before it. Frozen: no latent variable tells anything about
    the image, and the code they share lies nearer one category of each variable than the prior (its
    KL to the prior above half of N log K), where a saturated softmax passes the encoder almost no
    gradient; a code near the prior for every image is how training starts, and is not. It stays
    frozen until a variable is active again."""
    active = record.get("test/active_variables")
    if active is None:  # an epoch that was not scored
        return since
    if active:
        return None
    if since is None and record["test/kl"] > largest_kl(model) / 2:
        return record["epoch"]
    return since


def largest_kl(model: ModelConfig) -> float:
    """Gives the largest KL of a code to the uniform prior: N log K, one category of each variable."""
    return model.latent_dim * math.log(model.categorical_dim)


def watch_code(member: Member, record: dict[str, Any]) -> None:
    """Warns in the member's log at the first scored epoch where its encoder is frozen
    (``frozen_from``), and says when its code tells about the image again: the epoch lines' ``active
    0/N`` is easily missed, and a frozen run can stay so for many epochs (docs/results.md, runs that
    start frozen)."""
    since = frozen_from(member.frozen_since, record, member.settings.model)
    if since is not None and member.frozen_since is None:
        member.run_log.warning(
            f"epoch {record['epoch']}: the encoder is frozen: it gives every image much the same code"
            f" (no latent variable above {ACTIVE_NATS} nats of mutual information with the image on the"
            f" test set), far from the prior (test KL {record['test/kl']:.2f} nats of at most"
            f" {largest_kl(member.settings.model):.2f}, code perplexity {record['test/perplexity']:.2f}),"
            " so no reconstruction can follow its image. A run can stay so for many epochs; another"
            " seed starts elsewhere"
        )
    elif since is None and member.frozen_since is not None:
        active = record["test/active_variables"]
        member.run_log.info(
            f"epoch {record['epoch']}: the code tells about the image again: {active} active"
            f" variable{'s' * (active > 1)} (frozen from epoch {member.frozen_since})"
        )
    member.frozen_since = since


def objective(metrics: dict[str, Any]) -> float:
    """Gives the number sweepers minimise, on the validation set when the run holds one out (a
    search then never looks at the test set), else on the test set: the IWAE NLL with the most
    samples if the run computed one there, else the final loss."""
    split = selection_split(metrics)
    bound = iwae_bound(metrics, split)
    return float(bound[1]) if bound else float(metrics.get(f"{split}/loss", math.nan))


@hydra.main(version_base="1.3", config_path=config_path("train"), config_name="train")
def main(cfg: DictConfig) -> float:
    record_start()
    with one_line_errors():
        metrics = train(cfg)
    if cfg.trainer.timeline:
        write_timeline(RunFolder(HydraConfig.get().runtime.output_dir).timeline)
    return objective(metrics)


IMPORTED = time.time()  # this module and all it needs are imported: the process's start-up is over


def record_start(sweep_check_seconds: float = 0.0) -> None:
    """Starts this job's timeline. The process's first job also counts the process's start-up: the
    interpreter and the imports, then Hydra's composition of the config (until the task function
    runs), of which a sweeper spent ``sweep_check_seconds`` composing every job of its batch to check
    it; a later job of a sweep run in the same process starts from nothing."""
    if TIMELINE.start():
        TIMELINE.add("start: interpreter and imports", IMPORTED - TIMELINE.started)
        TIMELINE.add(HYDRA_COMPOSES, time.time() - IMPORTED - sweep_check_seconds)
        if sweep_check_seconds:
            TIMELINE.add(SWEEPER_CHECKS, sweep_check_seconds)


def write_timeline(path: Path, **facts: object) -> None:
    """Writes the job's timeline so far into ``path`` and logs it as a table."""
    total = TIMELINE.total()
    try:
        TIMELINE.write(path, total_seconds=total, **facts)
    except OSError as err:  # a measurement of the run, not the run: the table still goes to the log
        log.warning("could not write the timeline %s: %s", path, write_failure(path, err)[0])
    log.info("where the time went (%s):\n%s", path, TIMELINE.table(total))
