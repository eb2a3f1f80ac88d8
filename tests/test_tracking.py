"""A run's records: metrics.jsonl, status.json, TensorBoard run names and HParams."""

from __future__ import annotations

import json
from pathlib import Path

from vae_gumbel.config import compose_settings
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.tracking import hyperparameters, read_metrics, short_run_name, write_status


def test_long_override_lists_make_short_unique_tensorboard_run_names() -> None:
    assert short_run_name("optim.lr=0.0006466422717414558,estimator=straight_through") == (
        "optim.lr=0.0006466,estimator=straight_through"
    )
    long_a, long_b = ("x" * 300 + ",seed=1"), ("x" * 300 + ",seed=2")
    assert len(short_run_name(long_a)) == 200
    assert short_run_name(long_a) != short_run_name(long_b)
    assert short_run_name("data.root=/a/b") == "data.root=_a_b"


def test_hyperparameters_cover_every_scalar_setting_of_the_schema() -> None:
    values = hyperparameters(compose_settings(["optim=radam"]))
    assert values["optim.name"] == "radam" and values["optim.lr"] == 1e-3
    assert values["model.hidden"] == "[512, 256]" and values["resume"] == "null"
    assert values["objective.kl"] == "analytic" and values["estimator.rao_samples"] == 10
    assert {"trainer.epochs", "eval.final_iwae_samples", "temperature.every", "data.name"} <= set(values)


def test_a_torn_last_line_of_metrics_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1}) + "\n" + '{"epoch": 2, "te')
    assert read_metrics(path) == [{"epoch": 1}]


def test_a_finished_status_rewritten_with_the_same_content_is_left_untouched(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    write_status(folder, "completed", epoch=2)
    before = folder.status.stat().st_mtime_ns
    write_status(folder, "completed", epoch=2)
    assert folder.status.stat().st_mtime_ns == before
    write_status(folder, "failed", error="x")
    assert json.loads(folder.status.read_text()) == {"status": "failed", "error": "x"}
