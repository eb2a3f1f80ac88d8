"""A run's records: one JSON line per epoch in metrics.jsonl and the same scalars in TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter


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


class RunLog:
    """Writes metrics.jsonl and TensorBoard event files into a run folder.

    On resume from ``start_step``/``start_epoch``, records written after that point (by a
    run that died after its last checkpoint) are dropped, so the files read as if the run
    had never been interrupted.
    """

    def __init__(
        self,
        run_dir: str | Path,
        start_epoch: int = 0,
        start_step: int = 0,
        tensorboard_name: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        kept = [r for r in read_metrics(self.metrics_path) if r.get("epoch", 0) <= start_epoch]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        # In a sweep, tensorboard/<overrides>/ so TensorBoard names each job's run by its overrides.
        self.tensorboard_dir = self.run_dir / "tensorboard" / (tensorboard_name or "")
        # Events logged after the checkpoint's step belong to the lost part of the run; the
        # checkpoint's own step (its epoch record) stays.
        self.writer = SummaryWriter(
            str(self.tensorboard_dir), purge_step=start_step + 1 if start_step else None
        )

    def log_scalars(self, scalars: dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Appends one epoch's record to metrics.jsonl and its scalars to TensorBoard."""
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        scalars = {k: v for k, v in record.items() if k not in ("epoch", "step") and _is_number(v)}
        self.log_scalars(scalars, record["step"])
        self.writer.flush()

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """Logs a (3, H, W) image in [0, 1]."""
        self.writer.add_image(tag, image, step)

    def log_figure(self, tag: str, figure: Figure, step: int) -> None:
        """Logs a matplotlib figure as an image."""
        self.writer.add_figure(tag, figure, step, close=False)

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
