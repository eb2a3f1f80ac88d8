"""Train a categorical VAE on MNIST: ``python -m vae_gumbel.train [overrides]``.

``train(cfg, run_dir)`` does the work and returns the final metrics; ``main`` is the thin
Hydra entry point that returns the final test loss for sweepers to minimise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from vae_gumbel.checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    check_compatible,
    load_checkpoint,
    restore_optimizer,
    restore_rng_state,
    save_checkpoint,
)
from vae_gumbel.config import CONF_DIR, TrainConfig, validate
from vae_gumbel.data import ImageSet, load_mnist
from vae_gumbel.errors import CheckpointError, NonFiniteLossError, RunFailed, VaeGumbelError
from vae_gumbel.estimators import get_estimator
from vae_gumbel.figures import code_usage_figure, save_figure
from vae_gumbel.grids import prior_grid, reconstruction_grid, save_grid
from vae_gumbel.likelihood import binarization_of, evaluation_report, write_eval_json
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.schedules import Schedule, build_schedule
from vae_gumbel.tracking import RunLog, read_metrics
from vae_gumbel.training import (
    FUSED_ADAM_DEVICES,
    Evaluation,
    allow_tf32,
    build_step,
    evaluate,
    plan_step,
    resolve_device,
    train_epoch,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(
    settings: TrainConfig,
    model: CategoricalVAE,
    schedule: Schedule,
    device: torch.device,
    capturable: bool = False,
) -> torch.optim.Adam:
    parameters = list(model.parameters())
    if schedule.learned:
        parameters += list(schedule.parameters())
    optim = settings.optim
    return torch.optim.Adam(
        parameters,
        lr=optim.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=device.type in FUSED_ADAM_DEVICES,
        capturable=capturable,  # its step count on the device, for a CUDA graph of the step
    )


def find_resume_checkpoint(resume: str | None, run_dir: Path) -> Path | None:
    """Gives the checkpoint that ``resume`` names, or None to start fresh."""
    if resume is None:
        return None
    if resume == "last":
        own = run_dir / "checkpoints" / "last.pt"
        return own if own.is_file() else None
    path = Path(to_absolute_path(resume))
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(
            f"resume={resume}: no checkpoint at {path}; give a checkpoint file, a run folder, or resume=last"
        )
    return path


def tensorboard_run_name() -> str | None:
    """Gives a multirun job's overrides as its TensorBoard run name: 'estimator=straight_through,seed=1'."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return short_run_name(HydraConfig.get().job.override_dirname)


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


def hyperparameters(settings: TrainConfig) -> dict[str, str | int | float | bool]:
    """Gives the settings that tell runs apart, for TensorBoard's HParams tab."""
    values = {
        "estimator": settings.estimator.name,
        "temperature.schedule": settings.temperature.schedule,
        "temperature.initial": settings.temperature.initial,
        "temperature.min": settings.temperature.min,
        "temperature.rate": settings.temperature.rate,
        "model.latent_dim": settings.model.latent_dim,
        "model.categorical_dim": settings.model.categorical_dim,
        "model.hidden": str(settings.model.hidden),
        "data.batch_size": settings.data.batch_size,
        "data.binarize": settings.data.binarize,
        "optim.lr": settings.optim.lr,
        "seed": settings.seed,
    }
    return {key: "null" if value is None else value for key, value in values.items()}


def write_status(run_dir: Path, status: str, **details: Any) -> None:
    """Records how the run ended in status.json, for reports over many runs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path, text = run_dir / "status.json", json.dumps({"status": status, **details}, indent=2) + "\n"
    if not path.is_file() or path.read_text() != text:  # a finished job re-run stays as it was
        path.write_text(text)


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, float]:
    """Trains as ``cfg`` says, writing into ``run_dir`` (Hydra's output dir by default); gives the
    final epoch's metrics."""
    run_dir = Path(run_dir) if run_dir is not None else Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = _train(cfg, run_dir)
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        write_status(run_dir, "failed", error=f"{type(err).__name__}: {first_line}")
        raise
    write_status(
        run_dir, "completed", **{k: metrics[k] for k in ("epoch", "step", "test/loss") if k in metrics}
    )
    return metrics


def _train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    settings = validate(cfg)
    device = resolve_device(settings.trainer.device)
    if settings.trainer.num_threads is not None:
        torch.set_num_threads(settings.trainer.num_threads)
    allow_tf32(device, settings.trainer.tf32)
    seed_everything(settings.seed)
    # The checkpoint's file name is known before any work, so a bad path fails fast.
    resume_from = find_resume_checkpoint(settings.resume, run_dir)

    data_cfg = settings.data
    data = load_mnist(
        to_absolute_path(data_cfg.root),
        data_cfg.binarize,
        device=device,
        train_limit=data_cfg.train_limit,
        test_limit=data_cfg.test_limit,
        download=data_cfg.download,
        verify_checksums=data_cfg.verify_checksums,
        binarize_seed=data_cfg.binarize_seed,
    )
    model_cfg = settings.model
    model = CategoricalVAE(model_cfg.latent_dim, model_cfg.categorical_dim, model_cfg.hidden).to(device)
    temp = settings.temperature
    schedule = build_schedule(temp.schedule, temp.initial, temp.min, temp.rate, temp.every)
    if schedule.learned:
        schedule.to(device)
    plan = plan_step(settings.trainer.compile, device, learned_temperature=schedule.learned)
    optimizer = build_optimizer(settings, model, schedule, device, capturable=plan.cuda_graph)
    estimator_cfg = settings.estimator
    step_fn = build_step(
        model,
        optimizer,
        get_estimator(estimator_cfg.name, estimator_cfg.rao_samples),
        plan,
        prior_tau=estimator_cfg.prior_temperature if estimator_cfg.kl == "relaxed" else None,
        backend=settings.trainer.compile_backend,
        precision=settings.trainer.precision,
    )

    epoch, step, best_test_loss = 0, 0, math.inf
    if resume_from is not None:
        checkpoint = load_checkpoint(resume_from, map_location=device)
        check_compatible(checkpoint, model, source=str(resume_from))
        model.load_state_dict(checkpoint["model"])
        restore_optimizer(optimizer, checkpoint["optimizer"])
        if schedule.learned:
            schedule.load_state_dict(checkpoint["temperature"])
        epoch, step, best_test_loss = checkpoint["epoch"], checkpoint["step"], checkpoint["best_test_loss"]
        restore_rng_state(checkpoint["rng"])
        log.info("resumed from %s at epoch %d, step %d", resume_from, epoch, step)

    trainer = settings.trainer
    records = read_metrics(run_dir / "metrics.jsonl")
    if resume_from is not None and epoch >= trainer.epochs and records and records[-1]["epoch"] == epoch:
        log.info("the run already finished its %d epochs; nothing to do", trainer.epochs)
        return records[-1]
    run_log = RunLog(run_dir, start_epoch=epoch, start_step=step, tensorboard_name=tensorboard_run_name())
    num_batches = math.ceil(len(data.train) / data_cfg.batch_size)
    log.info(
        "training %s on %s: %d train / %d test images, %d steps per epoch, run folder %s",
        settings.estimator.name,
        device,
        len(data.train),
        len(data.test),
        num_batches,
        run_dir,
    )
    try:
        while epoch < trainer.epochs:
            epoch += 1
            result = train_epoch(
                step_fn,
                data.train.batches(data_cfg.batch_size),
                schedule,
                start_step=step,
                num_batches=num_batches,
                log_every=trainer.log_every_n_steps,
                on_log=run_log.log_scalars,
                description=f"epoch {epoch}/{trainer.epochs}",
                progress=trainer.progress,
            )
            step = result.step
            record: dict[str, Any] = {"epoch": epoch, "step": step, "temperature": result.temperature}
            record.update(result.means)
            last_epoch = epoch == trainer.epochs
            evaluation = None
            if epoch % trainer.eval_every == 0 or last_epoch:
                evaluation = evaluate(model, data.test, trainer.eval_batch_size, trainer.eval_seed)
                record.update(evaluation.metrics)
            record["time/epoch_s"] = result.seconds
            record["throughput/train_img_s"] = result.images / result.seconds
            _check_finite_parameters(model, step)
            if last_epoch and settings.eval.final_iwae_samples:
                report = evaluation_report(
                    model,
                    data.test,
                    settings.eval.final_iwae_samples,
                    binarization=binarization_of(OmegaConf.to_container(cfg.data, resolve=True)),
                    max_rows=settings.eval.iwae_max_rows,
                    seed=settings.eval.iwae_seed,
                    context={
                        "estimator": settings.estimator.name,
                        "latent_dim": model.latent_dim,
                        "categorical_dim": model.categorical_dim,
                        "epoch": epoch,
                        "steps": step,
                    },
                )
                write_eval_json(report, run_dir / "eval.json")
                record["test/neg_elbo_mean"] = report["neg_elbo"]
                record.update({f"test/iwae_nll_{k}": v for k, v in report["iwae_nll"].items()})
            run_log.log_epoch(record)
            log.info(_epoch_line(record, trainer.epochs))

            if epoch % trainer.sample_every == 0 or last_epoch:
                write_pictures(
                    model,
                    data.test,
                    evaluation,
                    run_dir / "samples",
                    run_log,
                    epoch,
                    step,
                    trainer.sample_seed,
                )

            improved = record.get("test/loss", math.inf) < best_test_loss
            if improved:
                best_test_loss = record["test/loss"]
            if last_epoch:
                run_log.log_hparams(hyperparameters(settings), record, best_test_loss)
            if epoch % trainer.checkpoint_every == 0 or last_epoch or improved:
                checkpoint = checkpoint_state(cfg, model, optimizer, schedule, record, best_test_loss)
                if epoch % trainer.checkpoint_every == 0 or last_epoch:
                    save_checkpoint(run_dir / "checkpoints" / "last.pt", checkpoint)
                if improved:
                    save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint)
    finally:
        run_log.close()

    records = read_metrics(run_dir / "metrics.jsonl")
    if records:
        return records[-1]
    evaluation = evaluate(model, data.test, trainer.eval_batch_size, trainer.eval_seed)
    return {"epoch": epoch, "step": step, **evaluation.metrics}


def checkpoint_state(
    cfg: DictConfig,
    model: CategoricalVAE,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    record: dict[str, Any],
    best_test_loss: float,
) -> dict[str, Any]:
    """Gives everything needed to rebuild the model and continue training exactly, as plain values."""
    return {
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "temperature": schedule.state_dict() if schedule.learned else {},
        "step": record["step"],
        "epoch": record["epoch"],
        "best_test_loss": best_test_loss,
        "metrics": {k: v for k, v in record.items() if isinstance(v, int | float)},
        "rng": capture_rng_state(),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def write_pictures(
    model: CategoricalVAE,
    test_set: ImageSet,
    evaluation: Evaluation | None,
    folder: Path,
    run_log: RunLog,
    epoch: int,
    step: int,
    seed: int,
) -> None:
    """Writes the epoch's prior and reconstruction grids and the code-usage heat map, as PNGs
    into ``folder`` and as images into TensorBoard."""
    grids = {
        "prior": prior_grid(model, 8, 8, seed=seed),
        "reconstruction": reconstruction_grid(model, test_set.targets(slice(0, 32)), 8, 8, seed=seed),
    }
    for name, grid in grids.items():
        filename = f"epoch_{epoch:03d}.png" if name == "prior" else f"{name}_epoch_{epoch:03d}.png"
        save_grid(grid, folder / filename)
        run_log.log_image(f"samples/{name}", grid, step)
    if evaluation is not None:
        figure = code_usage_figure(evaluation.usage, title=f"code usage on the test set, epoch {epoch}")
        save_figure(figure, folder / f"code_usage_epoch_{epoch:03d}.png")
        run_log.log_figure("code_usage", figure, step)


def _check_finite_parameters(model: CategoricalVAE, step: int) -> None:
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteLossError(
            f"the model's weights became non-finite by step {step}; training stopped and the last "
            "good checkpoint was kept. Lower optim.lr, or raise temperature.min"
        )


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    line = (
        f"epoch {record['epoch']}/{epochs} step {record['step']} tau {record['temperature']:.3f} | "
        f"train relaxed {record['train/loss_relaxed']:.2f} unrelaxed {record['train/loss_unrelaxed']:.2f}"
    )
    if "test/loss" in record:
        line += (
            f" | test {record['test/loss']:.2f} (recon {record['test/recon']:.2f},"
            f" kl {record['test/kl']:.2f}, perplexity {record['test/perplexity']:.2f})"
        )
    return line + f" | {record['time/epoch_s']:.1f}s, {record['throughput/train_img_s']:.0f} img/s"


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except VaeGumbelError as err:
        log.error("%s", err)
        raise RunFailed(f"error: {err}") from None
    return objective(metrics)


def objective(metrics: dict[str, Any]) -> float:
    """Gives the number sweepers minimise: the IWAE NLL with the most samples if the run
    computed one, else the final test loss."""
    iwae = {
        int(key.rsplit("_", 1)[1]): value
        for key, value in metrics.items()
        if key.startswith("test/iwae_nll_")
    }
    return float(iwae[max(iwae)]) if iwae else float(metrics.get("test/loss", math.nan))


if __name__ == "__main__":
    # Call the importable module's function, not __main__'s: launchers that pickle the task
    # (joblib, submitit) then pickle it by reference instead of by value with all it touches.
    from vae_gumbel.train import main as entry_point

    entry_point()
