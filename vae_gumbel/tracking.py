"""A run's records: one JSON line per epoch in metrics.jsonl, the same scalars in TensorBoard,
lines in its log, how it ended in status.json, and its hyperparameters for the HParams tab."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from vae_gumbel.run_folder import RunFolder

log = logging.getLogger("vae_gumbel.train")

# TensorBoard's Custom Scalars tab: the relaxation gap and the temperature, each on one chart.
CUSTOM_SCALARS = {
    "vae-gumbel": {
        "loss per epoch (nats): train relaxed, train unrelaxed, test": [
            "Multiline",
            ["train/loss_relaxed", "train/loss_unrelaxed", "test/loss"],
        ],
        "loss per log interval (nats): relaxed, unrelaxed": [
            "Multiline",
            ["step/loss_relaxed", "step/loss_unrelaxed"],
        ],
        "temperature": ["Multiline", ["temperature", "step/temperature"]],
    }
}


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Gives the records of a metrics.jsonl file, one dict per epoch, skipping a torn last line."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut off by a crash: everything before it is intact
    return records


def read_status(folder: RunFolder) -> dict[str, Any]:
    """Gives what status.json says about how a run ended ({} if it has none)."""
    try:
        return json.loads(folder.status.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_status(folder: RunFolder, status: str, **details: Any) -> None:
    """Records how the run ended in status.json, for reports over many runs."""
    folder.path.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"status": status, **details}, indent=2) + "\n"
    if (
        not folder.status.is_file() or folder.status.read_text() != text
    ):  # a finished job re-run stays as it was
        folder.status.write_text(text)


def hyperparameters(settings: Any, prefix: str = "") -> dict[str, str | int | float | bool]:
    """Gives every scalar setting of a typed config, flattened to dotted keys, for TensorBoard's
    HParams tab (lists as text, null as "null")."""
    values: dict[str, str | int | float | bool] = {}
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        key = f"{prefix}{item.name}"
        if dataclasses.is_dataclass(value):
            values.update(hyperparameters(value, f"{key}."))
        elif value is None:
            values[key] = "null"
        elif isinstance(value, bool | int | float | str):
            values[key] = value
        else:
            values[key] = str(value)
    return values


def tensorboard_run_name() -> str | None:
    """Gives a multirun job's overrides as its TensorBoard run name: 'estimator=straight_through,seed=1'
    (None for a single run, whose event files sit directly in tensorboard/)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

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


class RunLog:
    """Writes a run's metrics.jsonl, its TensorBoard event files and its log lines.

    On resume from ``start_step``/``start_epoch``, records written after that point (by a
    run that died after its last checkpoint) are dropped, so the files read as if the run
    had never been interrupted. ``logger`` receives the log lines (by default the trainer's,
    which Hydra writes to the console and to train.log).
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
        folder.path.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(folder.metrics) if r.get("epoch", 0) <= start_epoch]
        folder.metrics.write_text("".join(json.dumps(r) + "\n" for r in kept))
        # In a sweep, tensorboard/<overrides>/ so TensorBoard names each job's run by its overrides.
        # Events logged after the checkpoint's step belong to the lost part of the run; the
        # checkpoint's own step (its epoch record) stays.
        self.writer = SummaryWriter(
            str(folder.tensorboard / (tensorboard_name or "")),
            purge_step=start_step + 1 if start_step else None,
        )
        self.writer.add_custom_scalars(CUSTOM_SCALARS)

    def info(self, message: str, *args: Any) -> None:
        self.logger.info(message, *args)

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Appends one epoch's record to metrics.jsonl and its scalars to TensorBoard."""
        with self.folder.metrics.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        scalars = {k: v for k, v in record.items() if k not in ("epoch", "step") and _is_number(v)}
        self.log_scalars(scalars, record["step"])
        self.writer.flush()

    def amend_last_epoch(self, values: dict[str, float]) -> None:
        """Adds ``values`` to the last epoch's record in metrics.jsonl (rewritten atomically) and to
        TensorBoard at that epoch's step."""
        records = read_metrics(self.folder.metrics)
        records[-1].update(values)
        partial = self.folder.metrics.with_name(f".{self.folder.metrics.name}.partial")
        partial.write_text("".join(json.dumps(r) + "\n" for r in records))
        partial.replace(self.folder.metrics)
        self.log_scalars({k: v for k, v in values.items() if _is_number(v)}, records[-1]["step"])
        self.writer.flush()

    def log_image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        """Logs an image given as (H, W, 3) bytes."""
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def log_hparams(self, hparams: dict[str, Any], final: dict[str, Any], best_test_loss: float) -> None:
        """Records the hyperparameters and final metrics for the HParams tab, in this run's own folder."""
        metrics = {
            "hparam/test_loss": final.get("test/loss", math.nan),
            "hparam/best_test_loss": best_test_loss,
            "hparam/train_loss_unrelaxed": final["train/loss_unrelaxed"],
        }
        self.writer.add_hparams(hparams, metrics, run_name=".", global_step=final["step"])

    def close(self) -> None:
        self.writer.close()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
