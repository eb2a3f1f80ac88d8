"""Honest test log-likelihoods: ``python -m vae_gumbel.evaluate checkpoint=PATH`` (``vae-gumbel-evaluate``).

Prints and writes ``eval.json`` into the run folder: the test ELBO of the discrete model
averaged over many exact draws, the importance-weighted bounds for each k, per-variable KL,
active variables and code usage, next to the test-set binarization they were measured on. Given a
folder of runs (a sweep), it evaluates each run that has a checkpoint, one after another in this
process, so that ``report`` can then compare their bounds.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m: this module's command runs it (see commands.py)
    from vae_gumbel import commands

    commands.evaluate()

import logging
import math
import signal
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from vae_gumbel.checkpoint import load_checkpoint, model_from_checkpoint, test_set_of
from vae_gumbel.config import EvaluateConfig, config_path, validate
from vae_gumbel.device import resolve_device
from vae_gumbel.each_run import Work, each_run, runs_in, summary_line
from vae_gumbel.errors import Interrupted, one_line_errors
from vae_gumbel.files import check_writable, unwritable
from vae_gumbel.likelihood import (
    IMAGES,
    binarization_of,
    evaluation_report,
    grey_level_caution,
    kept_line,
    write_eval_json,
)
from vae_gumbel.run_folder import RunFolder, resolve_checkpoint
from vae_gumbel.tracking import report_command

log = logging.getLogger(__name__)


def checkpoint_context(checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """Gives what eval.json says about the model behind the numbers."""
    return {
        "checkpoint": source,
        "estimator": checkpoint["config"]["estimator"]["name"],
        "latent_dim": checkpoint["architecture"]["latent_dim"],
        "categorical_dim": checkpoint["architecture"]["categorical_dim"],
        "hidden": checkpoint["architecture"]["hidden"],
        "epoch": checkpoint["epoch"],
        "steps": checkpoint["step"],
        "trained_with": checkpoint.get("environment"),  # None in checkpoints from before it was recorded
    }


def run_evaluation(cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """Evaluates the checkpoint ``cfg`` names; writes eval.json and gives its path and contents."""
    settings: EvaluateConfig = validate(cfg, EvaluateConfig)
    file = resolve_checkpoint(to_absolute_path(settings.checkpoint), settings.which)
    return evaluate_checkpoint(settings, file)


def evaluate_checkpoint(settings: EvaluateConfig, file: Path) -> tuple[Path, dict[str, Any]]:
    """Evaluates checkpoint ``file`` as ``settings`` say; writes eval.json and gives its path and
    contents."""
    device = resolve_device(settings.device, key="device")
    if settings.out:
        out = Path(to_absolute_path(settings.out))
    else:
        out = RunFolder.of_checkpoint(file).eval_json_of(settings.split)
    check_writable(out.parent, "out=")  # before the work, which may take an hour
    checkpoint = load_checkpoint(file)
    model = model_from_checkpoint(checkpoint, source=str(file)).to(device).eval()
    try:
        report = evaluation_report(
            model,
            test_set_of(
                checkpoint, device, settings.data.root, settings.data.test_limit, settings.split, file
            ),
            settings.iwae_samples,
            binarization=binarization_of(checkpoint["config"]["data"]),
            batch_size=settings.batch_size,
            max_rows=settings.max_rows,
            seed=settings.seed,
            context={**checkpoint_context(checkpoint, str(file)), "images": IMAGES[settings.split]},
            progress=settings.progress,
        )
    except KeyboardInterrupt:
        raise Interrupted(
            signal.SIGINT,
            f"interrupted by SIGINT: nothing was written, {out} is as it was; the same command evaluates "
            "again from the start (fewer images, data.test_limit=N, or smaller iwae_samples take less time)",
        ) from None
    try:
        kept = write_eval_json(report, out)
    except OSError as err:
        print(summary(report))  # an hour's work is not lost with the file
        then = "evaluate again (or give out= another place)"
        raise unwritable(out, err, "the evaluation", then, kept="its results are printed above") from err
    log.info(kept_line(out, kept))
    return out, report


EVALUATING = Work(
    does="evaluates", doing="evaluating", done="evaluated", output="eval.json", one="evaluation"
)


def evaluate_runs(settings: EvaluateConfig, runs: list[Path], folder: Path) -> list[dict[str, Any]]:
    """Evaluates each run of a folder of runs that has the checkpoint, printing its bounds as it
    ends (``each_run``); gives the reports."""
    reports = each_run(
        folder, runs, settings, lambda file: evaluate_checkpoint(settings, file)[1], summary, EVALUATING
    )
    compare = report_command(folder, bounds=bool(reports))  # their bounds rank them where no run has its own
    log.info("%s; compare them: %s", summary_line(EVALUATING, reports, runs, folder), compare)
    return reports


def summary(report: dict[str, Any]) -> str:
    """Gives the report as a few readable lines."""
    model = f"{report.get('estimator', '?')} {report.get('latent_dim')}x{report.get('categorical_dim')}"
    data = f"{report['test_images']} {report.get('images', 'test')} images, {report['binarization']['mode']}"
    draws = f"{report['neg_elbo_samples']} exact draw{'' if report['neg_elbo_samples'] == 1 else 's'}"
    lines = [
        f"{model}, {report.get('steps')} steps, {data}",
        f"  negative ELBO (mean of {draws}): {report['neg_elbo']:.2f} nats",
    ]
    for k, value in report["iwae_nll"].items():
        lines.append(f"  IWAE NLL, k = {k:>5}: {value:.2f} +- {report['iwae_nll_stderr'][k]:.2f} nats")
    if caution := grey_level_caution(report):
        lines.append(f"  {caution}")
    active = f"{report['active_variables']}/{report.get('latent_dim')}"
    lines.append(
        f"  KL {report['kl']:.2f} nats, active variables {active},"
        f" code perplexity {report['perplexity']:.2f}; {report['seconds']:.1f}s on {report['device']}"
    )
    return "\n".join(lines)


def best_bound(report: dict[str, Any]) -> float:
    """Gives the report's IWAE NLL with the most samples: its tightest bound."""
    return report["iwae_nll"][max(report["iwae_nll"], key=int)]


def evaluate_command(cfg: DictConfig) -> float:
    """Evaluates the checkpoint or run that ``cfg`` names, or each run of a folder of runs, and
    prints the bounds; gives the tightest bound (its mean over the runs evaluated)."""
    settings: EvaluateConfig = validate(cfg, EvaluateConfig)
    path = to_absolute_path(settings.checkpoint)
    runs = runs_in(path)
    if runs is not None:
        reports = evaluate_runs(settings, runs, Path(path))
        return sum(map(best_bound, reports)) / len(reports) if reports else math.nan
    _, report = evaluate_checkpoint(settings, resolve_checkpoint(path, settings.which))
    print(summary(report))
    return best_bound(report)


@hydra.main(version_base="1.3", config_path=config_path("evaluate"), config_name="evaluate")
def main(cfg: DictConfig) -> float:
    with one_line_errors():
        return evaluate_command(cfg)
