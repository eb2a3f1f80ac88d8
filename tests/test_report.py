"""The sweep report: a table of jobs sorted by test loss, with their overrides as columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_module
from vae_gumbel.report import report


def write_job(folder: Path, overrides: list[str], losses: list[float], status: dict | None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    records = [
        {"epoch": i + 1, "step": 10 * (i + 1), "temperature": 1.0, "test/loss": loss}
        for i, loss in enumerate(losses)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))


def test_report_sorts_by_final_or_best_test_loss_with_overrides_as_columns(tmp_path: Path) -> None:
    write_job(
        tmp_path / "0",
        ["optim.lr=0.001", "estimator=gumbel_softmax"],
        [120.0, 110.0],
        {"status": "completed"},
    )
    write_job(
        tmp_path / "1",
        ["optim.lr=0.003", "estimator=gumbel_softmax"],
        [100.0, 115.0],
        {"status": "completed"},
    )
    write_job(
        tmp_path / "2",
        ["optim.lr=0.01", "estimator=gumbel_softmax"],
        [],
        {"status": "failed", "error": "NonFiniteLossError: the loss became non-finite at step 7"},
    )
    lines = report(tmp_path).splitlines()
    assert (
        lines[0]
        == "| job | status | optim.lr | epochs | final test loss | best test loss | best epoch | error |"
    )
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| 0", "| 1", "| 2"]
    assert lines[4].endswith("| NonFiniteLossError: the loss became non-finite at step 7 |")
    by_best = report(tmp_path, sort="best").splitlines()
    assert [line.split(" | ")[0] for line in by_best[2:]] == ["| 1", "| 0", "| 2"]
    for name in ("report.csv", "report.md", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (
        (tmp_path / "report.csv").read_text().splitlines()[1].startswith("1,completed,0.003,2,115.0,100.0,1,")
    )


@pytest.mark.slow
def test_report_cli_works_on_a_folder_of_single_runs(tmp_path: Path) -> None:
    write_job(tmp_path / "2026-11-22" / "10-00-00-1", [], [130.0], {"status": "completed"})
    write_job(tmp_path / "2026-11-22" / "11-00-00-2", ["trainer.epochs=1"], [125.0], None)
    result = run_module("vae_gumbel.report", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| 2026-11-22/10-00-00-1 | completed |" in result.stdout
    assert "| 2026-11-22/11-00-00-2 | incomplete |" in result.stdout
