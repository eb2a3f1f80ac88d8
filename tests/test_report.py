"""The sweep report: a table of jobs sorted by test loss, with their overrides as columns."""

from __future__ import annotations

import csv
import errno
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

import vae_gumbel.report as report_module
from tests.conftest import run_module, run_module_noting_imports
from vae_gumbel.device import hardware_name
from vae_gumbel.errors import ConfigError, WriteError
from vae_gumbel.jobs import read_job
from vae_gumbel.report import HIGHLIGHTED, curves_figure, legend_label, report, seed_curves_figure
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.seeds import group_by_seed
from vae_gumbel.tracking import read_metrics


def write_overrides(folder: Path, overrides: list[str]) -> None:
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def write_job(folder: Path, overrides: list[str], losses: list[float], status: dict | None) -> None:
    write_overrides(folder, overrides)
    records = [
        {"epoch": i + 1, "step": 10 * (i + 1), "temperature": 1.0, "test/loss": loss}
        for i, loss in enumerate(losses)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))


def table_rows(table: str) -> list[dict[str, str]]:
    """Gives the rows of a Markdown table, each as column -> cell."""
    header, _, *lines = ([cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines())
    return [dict(zip(header, cells, strict=True)) for cells in lines]


def seed_rows(root: Path, against: tuple[str, str] | None = None) -> list[dict[str, str]]:
    """Writes the report over seeds into ``root`` and gives the rows of its CSV, each as column -> cell."""
    report(root, by_seed=True, against=against)
    with (root / "report_seeds.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_shows_the_validation_loss_and_bounds_of_runs_that_held_one_out(tmp_path: Path) -> None:
    for job, (validation, bound) in enumerate(((95.0, 90.0), (97.0, 92.0))):
        write_job(
            tmp_path / str(job), [f"optim.lr={job + 1}e-3"], [100.0, 99.0 - job], {"status": "completed"}
        )
        with (tmp_path / str(job) / "metrics.jsonl").open("a") as metrics:
            metrics.write(json.dumps({"epoch": 3, "val/loss": validation, "val/iwae_nll_100": bound}) + "\n")
    # Ranked by validation loss, although job 1 has the lower test loss: the test set is only reported.
    header, _, first, second = report(tmp_path).splitlines()
    assert (
        "| final validation loss | best validation loss | validation IWAE NLL k=100 | final test loss |"
        in header
    )
    assert first.startswith("| 0 |") and "| 3 | 95.000 | 95.000 | 90.000 | 99.000 |" in first
    assert second.startswith("| 1 |") and "| 3 | 97.000 | 97.000 | 92.000 | 98.000 |" in second


def write_searched_jobs(root: Path, ks: tuple[int, int] = (100, 100)) -> None:
    """Two seeds of two settings that held a validation set out; the lower validation loss has the
    higher validation bound, as can happen after the few epochs of a search."""
    for job, (lr, seed, validation, bound) in enumerate(
        (("1e-3", 0, 95.0, 92.0), ("1e-3", 1, 96.0, 93.0), ("3e-3", 0, 97.0, 90.0), ("3e-3", 1, 98.0, 91.0))
    ):
        write_job(root / str(job), [f"optim.lr={lr}", f"seed={seed}"], [100.0], {"status": "completed"})
        k = ks[job % 2]
        record = {"epoch": 2, "val/loss": validation, f"val/iwae_nll_{k}": bound, "test/loss": 99.0}
        with (root / str(job) / "metrics.jsonl").open("a") as metrics:
            metrics.write(json.dumps(record) + "\n")


def test_a_report_that_cannot_be_written_names_the_file_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_job(tmp_path / "0", ["seed=0"], [100.0], {"status": "completed"})

    def full_disk(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_module, "replace_text", full_disk)
    with pytest.raises(WriteError) as caught:
        report(tmp_path)
    assert str(caught.value) == (
        f"could not write the table {tmp_path / 'runs.csv'}: no space left on device. "
        "Free some space, then run the report again"
    )


def test_sort_bound_ranks_by_the_final_iwae_bound_on_the_validation_set_as_a_search_does(
    tmp_path: Path,
) -> None:
    write_searched_jobs(tmp_path)
    by_loss = [line.split(" | ")[0] for line in report(tmp_path).splitlines()[2:]]
    by_bound = [line.split(" | ")[0] for line in report(tmp_path, sort="bound").splitlines()[2:]]
    assert (by_loss, by_bound) == (["| 0", "| 1", "| 2", "| 3"], ["| 2", "| 3", "| 0", "| 1"])
    seeds = report(tmp_path, sort="bound", by_seed=True).splitlines()
    assert seeds[2].startswith("| 3e-3 | 2 | 2 |") and seeds[3].startswith("| 1e-3 | 2 | 2 |")


@pytest.mark.parametrize(
    ("ks", "says"),
    [
        ((100, 1000), "computed their bounds with different numbers of samples \\(k = 100, 1000\\)"),
        (None, "have no IWAE bound: none computed one at its end .* and none was evaluated"),
    ],
)
def test_sort_bound_needs_bounds_that_compare(tmp_path: Path, ks: tuple[int, int] | None, says: str) -> None:
    from vae_gumbel.errors import ConfigError

    if ks is None:
        write_job(tmp_path / "0", ["seed=0"], [100.0], {"status": "completed"})
    else:
        write_searched_jobs(tmp_path, ks)
    for by_seed in (False, True):
        with pytest.raises(ConfigError, match=f"--sort bound: these runs {says}.*; sort by final or best"):
            report(tmp_path, sort="bound", by_seed=by_seed)


def test_sort_bound_ranks_by_the_bounds_of_evaluate_where_no_run_computed_a_final_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The lower final loss has the higher bound; job 2 was not evaluated and ranks last.
    for job, (lr, seed, loss, bound) in enumerate(
        (("1e-3", 0, 95.0, 92.0), ("1e-3", 1, 96.0, 93.0), ("3e-3", 0, 97.0, None), ("3e-3", 1, 98.0, 90.0))
    ):
        write_job(tmp_path / str(job), [f"optim.lr={lr}", f"seed={seed}"], [loss], {"status": "completed"})
        if bound is not None:
            write_evaluation(tmp_path / str(job), {"1": bound + 10, "100": bound})
    by_bound = [line.split(" | ")[0] for line in report(tmp_path, sort="bound").splitlines()[2:]]
    assert by_bound == ["| 3", "| 0", "| 1", "| 2"]
    seeds = report(tmp_path, sort="bound", by_seed=True).splitlines()
    assert seeds[2].startswith("| 3e-3 | 2 | 2 |") and seeds[3].startswith("| 1e-3 | 2 | 2 |")
    report_module.main([str(tmp_path), "--sort", "bound"])
    lines = capsys.readouterr().out.splitlines()
    assert "ranked by the bound of evaluate (eval.json): no run computed a final IWAE bound" in lines
    # The figure's legend quotes the bounds, named by their k although 3e-3's first job has none.
    settings = group_by_seed([read_job(tmp_path / str(job), tmp_path) for job in range(4)])
    axis = seed_curves_figure(settings, "bounds", sort="evaluated").axes[0]
    assert [line.get_label() for line in axis.lines if not line.get_label().startswith("_")] == [
        "optim.lr=3e-3: IWAE-100 90.00 (2 seeds, 1 without a bound)",
        "optim.lr=1e-3: IWAE-100 92.50 +- 0.50 (2 seeds)",
    ]


def test_sort_bound_takes_the_bounds_of_evaluate_only_where_they_compare_and_do_not_select_by_test(
    tmp_path: Path,
) -> None:
    for job in ("0", "1"):
        write_job(tmp_path / job, [f"seed={job}"], [100.0], {"status": "completed"})
    write_evaluation(tmp_path / "0", {"100": 90.0})
    write_evaluation(tmp_path / "1", {"100": 91.0}, images=1000)
    with pytest.raises(
        ConfigError, match=r"evaluate measured these runs' bounds in different ways \(k=100, "
    ):
        report(tmp_path, sort="bound")
    write_evaluation(tmp_path / "1", {"100": 91.0})
    assert report(tmp_path, sort="bound").splitlines()[2].startswith("| 0 |")
    # A run that held out a validation set is selected on it: a test bound must not rank it.
    with (tmp_path / "1" / "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"epoch": 2, "val/loss": 95.0, "test/loss": 99.0}) + "\n")
    with pytest.raises(ConfigError, match=r"held out a validation set, which selects them, and computed no"):
        report(tmp_path, sort="bound")


def test_runs_csv_keeps_everything_each_run_recorded(compose_train, tmp_path: Path) -> None:
    from vae_gumbel.train import train

    for job, seed in enumerate((0, 1)):
        overrides = [f"seed={seed}", "temperature=constant"]
        train(
            compose_train(*overrides, "trainer.epochs=2", "eval.final_iwae_samples=[1,10]"),
            tmp_path / str(job),
        )
        write_overrides(tmp_path / str(job), overrides)
    write_job(tmp_path / "2", ["seed=2"], [], {"status": "failed", "error": "NonFiniteLossError: x"})
    report(tmp_path, by_seed=True)
    with (tmp_path / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["job"], row["seed"], row["status"]) for row in rows] == [
        ("0", "0", "completed"),
        ("1", "1", "completed"),
        ("2", "2", "failed"),
    ]
    for job, row in enumerate(rows[:2]):
        last = read_metrics(RunFolder(tmp_path / str(job)).metrics)[-1]
        evaluation = json.loads(RunFolder(tmp_path / str(job)).eval_json.read_text())
        assert float(row["test/loss"]) == last["test/loss"] and row["epoch"] == "2"
        # The schedule an override chose, and the temperature the last epoch ended at.
        assert (row["temperature"], float(row["train/temperature"])) == ("constant", last["temperature"])
        assert float(row["eval/iwae_nll_10"]) == evaluation["iwae_nll"]["10"]
        assert float(row["eval/iwae_nll_stderr_10"]) == evaluation["iwae_nll_stderr"]["10"]
        assert row["eval/targets_sha256"] == evaluation["binarization"]["targets_sha256"]
        assert row["eval/torch"] == torch.__version__  # what computed the bounds
        assert row["eval/device"] == hardware_name(torch.device("cpu"))
        assert float(row["time/train_s"]) > 0
    assert rows[2]["error"] == "NonFiniteLossError: x" and rows[2]["test/loss"] == ""


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
    assert lines[2].startswith("| 0 | completed | 0.001 | 2 | 110.000 | 110.000 | 2 |")  # decimals line up
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


def test_grouped_by_seed_each_setting_gets_the_mean_stderr_and_count_over_its_seeds(tmp_path: Path) -> None:
    finals = {
        ("1e-3", 0): 100.0,
        ("1e-3", 1): 104.0,
        ("1e-3", 2): 102.0,
        ("3e-3", 0): 90.0,
        ("3e-3", 1): 96.0,
    }
    for job, ((lr, seed), final) in enumerate(finals.items()):
        write_job(
            tmp_path / str(job),
            [f"optim.lr={lr}", f"seed={seed}"],
            [final + 10, final],
            {"status": "completed"},
        )
        if lr == "3e-3":  # these runs also computed the final IWAE bound
            path = tmp_path / str(job) / "metrics.jsonl"
            records = [json.loads(line) for line in path.read_text().splitlines()]
            records[-1]["test/iwae_nll_100"] = final - 5
            path.write_text("".join(json.dumps(r) + "\n" for r in records))
    write_job(
        tmp_path / "5",
        ["optim.lr=1e-2", "seed=0"],
        [],
        {"status": "failed", "error": "NonFiniteLossError: x"},
    )
    rows = seed_rows(tmp_path)
    assert [row["optim.lr"] for row in rows] == ["3e-3", "1e-3", "1e-2"]  # best mean first, nothing last
    fast, slow, failed = rows
    assert (fast["seeds"], fast["completed"], fast["final test loss n"]) == ("2", "2", "2")
    assert float(fast["final test loss mean"]) == 93.0 and float(fast["final test loss stderr"]) == 3.0
    assert float(slow["final test loss mean"]) == 102.0
    assert float(slow["final test loss stderr"]) == pytest.approx(
        2 / math.sqrt(3), abs=1e-3
    )  # std 2 over 3 seeds
    assert float(slow["best test loss mean"]) == 102.0
    assert float(fast["test IWAE NLL k=100 mean"]) == 88.0 and slow["test IWAE NLL k=100 n"] == "0"
    assert (failed["completed"], failed["final test loss n"], failed["final test loss mean"]) == (
        "0",
        "0",
        "",
    )
    # The Markdown, printed and in report_seeds.md, quotes each number as a paper would, in one cell.
    quoted = table_rows((tmp_path / "report_seeds.md").read_text())
    column = "final test loss, mean +- stderr (n)"
    assert [row[column] for row in quoted] == ["93.00 +- 3.00 (2)", "102.00 +- 1.15 (3)", ""]
    assert quoted[0]["test IWAE NLL k=100, mean +- stderr (n)"] == "88.00 +- 3.00 (2)"
    assert (tmp_path / "report_seeds.png").stat().st_size > 0
    assert not (tmp_path / "report.csv").exists()  # the per-job report is another file


def write_evaluation(
    folder: Path,
    bounds: dict[str, float],
    checkpoint: str = "best.pt",
    images: int = 10000,
    epoch: int | None = None,
):
    """Writes an eval.json as ``evaluate`` writes it, with the bounds given (k -> nats)."""
    evaluation = {
        "checkpoint": str(folder / "checkpoints" / checkpoint),
        **({"epoch": epoch} if epoch is not None else {}),
        "test_images": images,
        "seed": 0,
        "iwae_nll": bounds,
        "iwae_nll_stderr": dict.fromkeys(bounds, 0.5),
    }
    (folder / "eval.json").write_text(json.dumps(evaluation))


def test_bounds_of_evaluate_get_a_column_named_for_what_they_were_measured_on(tmp_path: Path) -> None:
    for job, (seed, bound) in enumerate(((0, 90.0), (1, 94.0), (2, None))):
        write_job(tmp_path / str(job), [f"seed={seed}"], [100.0], {"status": "completed"})
        if bound is not None:
            write_evaluation(tmp_path / str(job), {"1": bound + 10, "100": bound})
    column = "evaluate: test IWAE NLL k=100 (best.pt, 10000 images)"
    rows = table_rows(report(tmp_path))
    assert [row[column] for row in rows] == ["90.000", "94.000", ""]
    (setting,) = seed_rows(tmp_path)
    assert (float(setting[f"{column} mean"]), float(setting[f"{column} stderr"])) == (92.0, 2.0)
    assert setting[f"{column} n"] == "2"
    # Bounds measured differently (other weights, other images, another k) share no column.
    for checkpoint, images, k in (
        ("last.pt", 10000, "100"),
        ("best.pt", 1000, "100"),
        ("best.pt", 10000, "10"),
    ):
        write_evaluation(tmp_path / "2", {k: 91.0}, checkpoint, images)
        assert not any(key.startswith("evaluate:") for key in table_rows(report(tmp_path))[0])


def test_a_bound_evaluated_before_the_run_trained_on_is_left_out_with_the_command_that_renews_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Both runs evaluated at epoch 2; run 1 then trained on, and its best epoch is now the third.
    write_job(tmp_path / "0", ["seed=0"], [120.0, 100.0], {"status": "completed"})
    write_job(tmp_path / "1", ["seed=1"], [120.0, 100.0, 95.0], {"status": "completed"})
    for job in ("0", "1"):
        write_evaluation(tmp_path / job, {"1": 99.0, "100": 90.0}, epoch=2, images=1000)
    column = "evaluate: test IWAE NLL k=100 (best.pt, 1000 images)"
    assert [row[column] for row in table_rows(report(tmp_path))] == ["", "90.000"]  # run 1 ranks first
    report_module.main([str(tmp_path)])
    assert (
        f"1: its eval.json evaluated best.pt at epoch 2, and best.pt now holds epoch 3, so the table "
        f"leaves its bound out; evaluate it anew with python -m vae_gumbel.evaluate "
        f"checkpoint={tmp_path / '1'} which=best 'iwae_samples=[1,100]' data.test_limit=1000 seed=0"
    ) in capsys.readouterr().out.splitlines()
    # last.pt is stale as soon as the run trains another epoch; an unchanged best.pt is not.
    write_job(tmp_path / "1", ["seed=1"], [120.0, 100.0, 95.0, 96.0], {"status": "completed"})
    write_evaluation(tmp_path / "1", {"100": 89.0}, epoch=3)
    write_evaluation(tmp_path / "0", {"100": 91.0}, "last.pt", epoch=1)
    assert read_job(tmp_path / "1", tmp_path).stale == ""
    assert read_job(tmp_path / "0", tmp_path).stale == (
        "its eval.json evaluated last.pt at epoch 1, and last.pt now holds epoch 2"
    )


@pytest.mark.slow
def test_grouped_by_seed_a_setting_averages_only_its_completed_seeds(tmp_path: Path) -> None:
    # Seed 2 stopped after its first epoch: its loss is the first epoch's, not the tenth's.
    for seed, (losses, status) in enumerate(
        (([120.0, 100.0], "completed"), ([120.0, 102.0], "completed"), ([150.0], "interrupted"))
    ):
        write_job(tmp_path / str(seed), [f"seed={seed}"], losses, {"status": status})
    (cells,) = seed_rows(tmp_path)
    assert (cells["seeds"], cells["completed"], cells["final test loss n"]) == ("3", "2", "2")
    assert float(cells["final test loss mean"]) == 101.0 and float(cells["final test loss stderr"]) == 1.0
    assert float(cells["best test loss mean"]) == 101.0


def test_grouped_by_seed_a_setting_is_one_group_whatever_its_runs_were_continued_with(
    tmp_path: Path,
) -> None:
    # Seed 1 was continued (resume=last, on fewer threads); the others had finished before.
    for seed, run_control in ((0, []), (1, ["resume=last", "trainer.num_threads=1"]), (2, [])):
        overrides = ["optim.lr=1e-3", f"seed={seed}", *run_control]
        write_job(tmp_path / str(seed), overrides, [100.0 + seed], {"status": "completed"})
    (cells,) = seed_rows(tmp_path)
    assert (cells["seeds"], cells["final test loss n"], float(cells["final test loss mean"])) == (
        "3",
        "3",
        101.0,
    )


def test_report_cli_groups_by_seed(tmp_path: Path) -> None:
    for job, seed in enumerate((0, 1)):
        write_job(
            tmp_path / str(job),
            ["estimator=reinmax", f"seed={seed}"],
            [110.0 + seed],
            {"status": "completed"},
        )
    result, imported = run_module_noting_imports(
        "vae_gumbel.report", str(tmp_path), "--group-by-seed", cwd=tmp_path, watched=("torch",)
    )
    assert result.returncode == 0, result.stderr
    assert "| 2 | 2 | 110.50 +- 0.50 (2) |" in result.stdout and "report_seeds.csv" in result.stdout
    assert imported == []  # reading runs needs no torch, whose import is most of a second


def write_estimator_jobs(root: Path) -> None:
    """Two estimators at two learning rates: straight-through's seeds end at 100, 110 and 120 (and
    seed 3 failed), Gumbel-Softmax's 2, 1 and 3 nats below them at seeds 0, 1 and 2, and at seed 3."""
    losses = {
        "straight_through": [100.0, 110.0, 120.0, math.nan],
        "gumbel_softmax": [98.0, 109.0, 117.0, 90.0],
    }
    job = 0
    for lr in ("1e-3", "3e-3"):
        for estimator, finals in losses.items():
            for seed, final in enumerate(finals):
                status = {"status": "completed" if math.isfinite(final) else "failed"}
                shift = 0.0 if lr == "1e-3" else 50.0  # the other learning rate: another baseline
                overrides = [f"estimator={estimator}", f"optim.lr={lr}", f"seed={seed}"]
                write_job(root / str(job), overrides, [final + shift] if math.isfinite(final) else [], status)
                job += 1


def test_a_seed_grouped_report_ends_with_the_command_that_pairs_its_settings_by_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_estimator_jobs(tmp_path)
    assert report_module.main([str(tmp_path), "--group-by-seed"]) == 0
    *_, wrote, hint = capsys.readouterr().out.splitlines()
    assert wrote.startswith("wrote ") and hint == (  # the first varying key, at the first run's value
        "each setting's difference to one of them, paired by seed: "
        f"python -m vae_gumbel.report {tmp_path} --against estimator=straight_through"
    )
    report_module.main([str(tmp_path), "--against", "estimator=gumbel_softmax"])
    assert capsys.readouterr().out.splitlines()[-1].startswith("wrote ")  # asked for already
    report_module.main([str(tmp_path), "--group-by-seed", "--sort", "best"])  # the same order, paired
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint.endswith(f"report {tmp_path} --sort best --against estimator=straight_through")


def test_no_pairing_is_suggested_where_only_the_seed_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed in range(3):
        write_job(
            tmp_path / str(seed), ["estimator=reinmax", f"seed={seed}"], [110.0], {"status": "completed"}
        )
    report_module.main([str(tmp_path), "--group-by-seed"])
    assert capsys.readouterr().out.splitlines()[-1].startswith("wrote ")


def test_against_a_baseline_each_setting_gets_its_differences_paired_by_seed(tmp_path: Path) -> None:
    write_estimator_jobs(tmp_path)
    rows = seed_rows(tmp_path, against=("estimator", "straight_through"))
    by_setting = {(row["estimator"], row["optim.lr"]): row for row in rows}
    difference = "final test loss minus estimator=straight_through"
    for lr in ("1e-3", "3e-3"):  # each learning rate against straight-through at the same rate
        gumbel, baseline = by_setting["gumbel_softmax", lr], by_setting["straight_through", lr]
        # Seeds 0-2 pair up (seed 3 failed in the baseline): -2, -1, -3 nats.
        assert (float(gumbel[f"{difference} mean"]), gumbel[f"{difference} n"]) == (-2.0, "3")
        assert float(gumbel[f"{difference} stderr"]) == pytest.approx(1 / math.sqrt(3), abs=1e-3)
        # Unpaired, the seeds' spread hides the difference: its standard error is ten times larger.
        assert float(gumbel["final test loss stderr"]) > 10 * float(gumbel[f"{difference} stderr"])
        assert (float(baseline[f"{difference} mean"]), baseline[f"{difference} n"]) == (0.0, "3")
        assert gumbel["paired with"] == f"estimator=straight_through, optim.lr={lr}"
    assert (tmp_path / "report_seeds.csv").stat().st_size > 0  # the seed grouping, with the differences


def test_against_a_baseline_the_figure_adds_the_paired_difference_per_epoch(tmp_path: Path) -> None:
    for seed in range(3):  # Gumbel-Softmax 3 nats below straight-through after epoch 1, 1-3 after epoch 2
        losses = [120.0 + 10 * seed, 100.0 + 10 * seed]
        write_job(
            tmp_path / f"st{seed}",
            ["estimator=straight_through", f"seed={seed}"],
            losses,
            {"status": "completed"},
        )
        better = [losses[0] - 3.0, losses[1] - 1.0 - seed]
        write_job(
            tmp_path / f"gs{seed}",
            ["estimator=gumbel_softmax", f"seed={seed}"],
            better,
            {"status": "completed"},
        )
    settings = group_by_seed([read_job(folder, tmp_path) for folder in sorted(tmp_path.iterdir())])
    figure = seed_curves_figure(settings, "two estimators", against=("estimator", "straight_through"))
    above, below = figure.axes
    # Above, the legend quotes the final loss as the table does, mean +- stderr over the seeds.
    assert [line.get_label() for line in above.lines if not line.get_label().startswith("_")] == [
        "estimator=gumbel_softmax: final 108.00 +- 5.20 (3 seeds)",  # 99, 108, 117: 9 / sqrt(3)
        "estimator=straight_through: final 110.00 +- 5.77 (3 seeds)",
    ]
    (curve,) = [line for line in below.lines if line.get_label().startswith("estimator=gumbel_softmax")]
    assert list(curve.get_xdata()) == [1, 2] and list(curve.get_ydata()) == [-3.0, -2.0]
    assert curve.get_label() == "estimator=gumbel_softmax: -2.00 +- 0.58 (3 pairs)"
    assert below.get_title() == "minus estimator=straight_through, paired by seed: mean +- stderr"
    assert len(seed_curves_figure(settings, "no baseline").axes) == 1  # without --against, one panel


def test_a_one_epoch_curve_shows_its_spread_over_seeds_as_an_error_bar(tmp_path: Path) -> None:
    for seed, loss in enumerate([100.0, 102.0, 104.0]):
        write_job(tmp_path / str(seed), [f"seed={seed}"], [loss], {"status": "completed"})
    settings = group_by_seed([read_job(folder, tmp_path) for folder in sorted(tmp_path.iterdir())])
    (axis,) = seed_curves_figure(settings, "one epoch").axes
    (bar,) = [c for c in axis.collections if c.get_segments()]  # a band one epoch wide would be empty
    ((low, high),) = [(a[1], b[1]) for a, b in bar.get_segments()]
    assert (low, high) == pytest.approx((102.0 - 2 / 3**0.5, 102.0 + 2 / 3**0.5))  # mean +- stderr


def test_a_seed_a_setting_trained_twice_counts_once_with_the_mean_of_its_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_estimator_jobs(tmp_path)
    again = ["estimator=gumbel_softmax", "optim.lr=1e-3", "seed=0"]  # seed 0 once more, in another sweep
    write_job(tmp_path / "again" / "0", again, [96.0], {"status": "completed"})
    rows = seed_rows(tmp_path, against=("estimator", "straight_through"))
    (gumbel,) = [row for row in rows if (row["estimator"], row["optim.lr"]) == ("gumbel_softmax", "1e-3")]
    # Seed 0 is one draw, (98 + 96) / 2 = 97, not two: four seeds, not five runs, make the mean.
    assert (gumbel["seeds"], gumbel["completed"], gumbel["final test loss n"]) == ("4", "4", "4")
    assert float(gumbel["final test loss mean"]) == (97.0 + 109.0 + 117.0 + 90.0) / 4
    difference = "final test loss minus estimator=straight_through"
    assert (float(gumbel[f"{difference} mean"]), gumbel[f"{difference} n"]) == (
        pytest.approx((-3.0 - 1.0 - 3.0) / 3, abs=1e-3),
        "3",
    )
    report_module.main([str(tmp_path), "--group-by-seed"])
    assert (
        "estimator=gumbel_softmax, optim.lr=1e-3: seed 0 trained more than once (4, again/0); the table "
        "counts each seed once, with the mean of its runs"
    ) in capsys.readouterr().out.splitlines()


def test_one_value_spelled_two_ways_is_one_setting_and_finds_its_baseline(tmp_path: Path) -> None:
    # Single runs started with optim.lr=1e-3, and a sweep's jobs, which Hydra records as 0.001.
    for seed, (final, baseline) in enumerate([(100.0, 104.0), (110.0, 111.0)]):
        write_job(
            tmp_path / f"run{seed}",
            ["optim.lr=1e-3", "estimator=reinmax", f"seed={seed}"],
            [final],
            {"status": "completed"},
        )
        overrides = ["optim.lr=0.001", "estimator=straight_through", f"seed={seed}"]
        write_job(tmp_path / "sweep" / str(seed), overrides, [baseline], {"status": "completed"})
    write_job(
        tmp_path / "run2",
        ["optim.lr=0.0010", "estimator=reinmax", "seed=2"],
        [105.0],
        {"status": "completed"},
    )
    rows = seed_rows(tmp_path, against=("estimator", "straight_through"))
    assert [row["estimator"] for row in rows] == ["reinmax", "straight_through"]  # no optim.lr column
    reinmax = rows[0]
    assert (reinmax["seeds"], float(reinmax["final test loss mean"])) == ("3", 105.0)
    difference = "final test loss minus estimator=straight_through"
    assert (float(reinmax[f"{difference} mean"]), reinmax[f"{difference} n"]) == (-2.5, "2")
    for seed in range(2):  # the sweep at another rate: --against optim.lr as it was typed finds 0.001
        overrides = ["optim.lr=0.003", "estimator=straight_through", f"seed={seed}"]
        write_job(tmp_path / "sweep" / str(seed + 2), overrides, [90.0 + seed], {"status": "completed"})
    rows = seed_rows(tmp_path, against=("optim.lr", "1e-3"))
    (faster,) = [row for row in rows if row["optim.lr"] == "0.003"]
    assert faster["paired with"] == "estimator=straight_through, optim.lr=0.001"
    assert (
        float(faster["final test loss minus optim.lr=1e-3 mean"]),
        faster["final test loss minus optim.lr=1e-3 n"],
    ) == (-17.0, "2")  # 90 - 104, 91 - 111


def test_a_setting_that_two_settings_could_be_the_baseline_of_is_named_with_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for seed in range(2):  # straight-through twice, once also with more epochs: either could pair
        write_job(
            tmp_path / f"gs{seed}",
            ["estimator=gumbel_softmax", f"seed={seed}"],
            [99.0],
            {"status": "completed"},
        )
        write_job(
            tmp_path / f"st{seed}",
            ["estimator=straight_through", f"seed={seed}"],
            [100.0],
            {"status": "completed"},
        )
        longer = ["estimator=straight_through", "trainer.epochs=20", f"seed={seed}"]
        write_job(tmp_path / f"long{seed}", longer, [98.0], {"status": "completed"})
    report_module.main([str(tmp_path), "--against", "estimator=straight_through"])
    assert (
        "estimator=gumbel_softmax: 2 settings could be its baseline (estimator=straight_through, "
        "trainer.epochs=20; estimator=straight_through), so it is paired with none; keep set-ups that "
        "should not be compared in separate folders"
    ) in capsys.readouterr().out.splitlines()


def test_a_setting_without_its_baseline_has_no_difference(tmp_path: Path) -> None:
    write_estimator_jobs(tmp_path)
    write_job(
        tmp_path / "99", ["estimator=reinmax", "optim.lr=1e-2", "seed=0"], [95.0], {"status": "completed"}
    )
    rows = seed_rows(tmp_path, against=("estimator", "straight_through"))
    (alone,) = [row for row in rows if row["estimator"] == "reinmax"]
    difference = "final test loss minus estimator=straight_through"
    assert (alone[f"{difference} mean"], alone[f"{difference} n"]) == ("", "0")


def test_a_baseline_in_another_sweep_pairs_up_when_the_overrides_both_set_agree(tmp_path: Path) -> None:
    # Straight-through annealed in one sweep; ReinMax in another, with a constant temperature, another
    # data folder and one thread (which say how a run runs, not what it computes).
    for seed, final in enumerate((100.0, 110.0, 120.0)):
        write_job(
            tmp_path / "st" / str(seed),
            ["estimator=straight_through", f"seed={seed}"],
            [final],
            {"status": "completed"},
        )
        overrides = [
            "estimator=reinmax",
            "temperature=constant",
            f"seed={seed}",
            "data.root=/d",
            "trainer.num_threads=1",
        ]
        write_job(tmp_path / "reinmax" / str(seed), overrides, [final - 1.0 - seed], {"status": "completed"})
    difference = "final test loss minus estimator=straight_through"
    rows = seed_rows(tmp_path, against=("estimator", "straight_through"))
    (reinmax,) = [row for row in rows if row["estimator"] == "reinmax"]
    assert (float(reinmax[f"{difference} mean"]), reinmax[f"{difference} n"]) == (-2.0, "3")
    assert reinmax["paired with"] == "estimator=straight_through"  # shown, to be checked
    # With straight-through also at chosen learning rates, and ReinMax at none, its baseline is ambiguous.
    write_job(
        tmp_path / "st" / "lr",
        ["estimator=straight_through", "optim.lr=3e-3", "seed=0"],
        [90.0],
        {"status": "completed"},
    )
    write_overrides(tmp_path / "st" / "0", ["estimator=straight_through", "optim.lr=1e-3", "seed=0"])
    rows = seed_rows(tmp_path, against=("estimator", "straight_through"))
    (reinmax,) = [row for row in rows if row["estimator"] == "reinmax"]
    assert (reinmax[f"{difference} mean"], reinmax[f"{difference} n"], reinmax["paired with"]) == (
        "",
        "0",
        "",
    )


def test_a_baseline_that_no_run_has_is_refused_with_the_values_there_are(tmp_path: Path) -> None:
    write_estimator_jobs(tmp_path)
    says = (
        "--against estimator=reinmax: no run has estimator=reinmax among its overrides "
        "(its values here: gumbel_softmax, straight_through)"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(says)}$"):
        report(tmp_path, against=("estimator", "reinmax"))
    with pytest.raises(
        ConfigError, match=r"no run sets lr on its command line; they set estimator, optim.lr\)$"
    ):
        report(tmp_path, against=("lr", "1e-3"))
    with pytest.raises(ConfigError, match="the seed is what pairs the runs; compare another key$"):
        report(tmp_path, against=("seed", "0"))


@pytest.mark.slow
def test_report_cli_compares_against_a_baseline_and_refuses_a_baseline_without_a_value(
    tmp_path: Path,
) -> None:
    write_estimator_jobs(tmp_path)
    result = run_module(
        "vae_gumbel.report", str(tmp_path), "--against", "estimator=straight_through", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (
        "| final test loss minus estimator=straight_through, mean +- stderr (n) |" in result.stdout
        and "report_seeds.csv" in result.stdout
    )
    result = run_module("vae_gumbel.report", str(tmp_path), "--against", "estimator", cwd=tmp_path)
    assert (
        result.returncode == 2 and "expected KEY=VALUE, such as estimator=straight_through" in result.stderr
    )


@pytest.mark.slow
def test_report_cli_reports_a_folder_without_runs_in_one_line(tmp_path: Path) -> None:
    from tests.conftest import assert_one_line_error

    result = run_module("vae_gumbel.report", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert_one_line_error(result, 2, "is not a folder")


def test_a_report_of_fifty_runs_stays_readable(tmp_path: Path) -> None:
    for job in range(50):
        finished = job != 7
        write_job(
            tmp_path / str(job),
            [f"optim.lr={0.0001 + job * 1.2345678e-5}", "trainer.num_threads=1", f"resume={job}", "seed=0"],
            [200.0 - job, 150.0 - job] if finished else [10.0],  # job 7 looks best but is unfinished
            {"status": "completed"} if finished else None,
        )
    lines = report(tmp_path).splitlines()
    # Only the key that differs and changes the result is a column, rounded to 4 significant digits.
    assert lines[0].startswith("| job | status | optim.lr | epochs |")
    assert lines[2].startswith("| 49 | completed | 0.0007049 | 2 | 101.000 |")
    assert lines[-1].startswith("| 7 | incomplete | 0.0001864 | 1 | 10.000 |")  # unfinished: last
    jobs = [read_job(tmp_path / str(job), tmp_path) for job in range(50)]
    legend = curves_figure(jobs, "fifty").axes[0].get_legend()
    texts = [text.get_text() for text in legend.get_texts()]
    assert texts[0] == "49: optim.lr=0.0007049, final 101.00"
    assert len(texts) == HIGHLIGHTED + 1 and texts[-1] == f"{50 - HIGHLIGHTED} others"
    assert legend.get_bbox_to_anchor().x0 > curves_figure(jobs, "").axes[0].bbox.x1  # beside the plot


def test_a_long_legend_label_breaks_between_its_parts_never_inside_one() -> None:
    trial = (  # an Optuna trial's five values
        "3: estimator=straight_through, optim.lr=0.001411, temperature.initial=1.87, temperature.min=0.8829, "
        "temperature.rate=0.0001515, final 218.54"
    )
    assert legend_label(trial).split("\n") == [
        "3: estimator=straight_through, optim.lr=0.001411,",
        "  temperature.initial=1.87, temperature.min=0.8829,",
        "  temperature.rate=0.0001515, final 218.54",
    ]
    setting = "estimator=reinmax, optim.lr=3e-3, temperature.rate=1e-4: final 111.22 +- 0.64 (5 seeds)"
    assert legend_label(setting) == (
        "estimator=reinmax, optim.lr=3e-3, temperature.rate=1e-4:\n  final 111.22 +- 0.64 (5 seeds)"
    )
    assert legend_label("49: optim.lr=0.0007049, final 101.00") == "49: optim.lr=0.0007049, final 101.00"


def test_every_curve_of_a_one_epoch_run_shows_its_point(tmp_path: Path) -> None:
    write_job(tmp_path, ["debug=smoke"], [215.8], {"status": "completed"})
    record = {"epoch": 1, "step": 10, "temperature": 1.0, "test/loss": 215.8}
    record.update({"train/loss_relaxed": 352.0, "train/loss_unrelaxed": 348.8})
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    figure = curves_figure([read_job(tmp_path, tmp_path)], "one epoch")
    lines = [line for axis in figure.axes for line in axis.lines]
    assert len(lines) == 4  # train relaxed and unrelaxed, test, temperature
    assert all(len(line.get_xdata()) == 1 and line.get_marker() not in ("None", "", None) for line in lines)


def test_a_run_with_damaged_records_is_listed_with_the_damage_and_the_others_are_reported(
    tmp_path: Path,
) -> None:
    write_job(tmp_path / "0", ["seed=0"], [150.0, 140.0], {"status": "completed"})
    write_job(tmp_path / "1", ["seed=1"], [151.0, 141.0], {"status": "completed"})
    metrics = tmp_path / "1" / "metrics.jsonl"
    metrics.write_text("{garbage\n" + metrics.read_text())
    lines = report(tmp_path).splitlines()
    assert lines[2].startswith("| 0 | completed | 0 | 2 | 140.000 |")
    assert lines[3].startswith("| 1 | completed | 1 |") and "line 1 of 3, is not a JSON record" in lines[3]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [("{{{: [", "overrides.yaml is not YAML"), ("seed: 1", "overrides.yaml is not a list of overrides")],
)
def test_a_run_with_damaged_overrides_or_status_is_listed_with_the_damage(
    tmp_path: Path, overrides: str, says: str
) -> None:
    write_job(tmp_path / "0", ["seed=0"], [150.0, 140.0], {"status": "completed"})
    write_job(tmp_path / "1", ["seed=1"], [151.0, 141.0], {"status": "completed"})
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text(overrides)
    (tmp_path / "0" / "status.json").write_text("[]")  # JSON, but not what a run writes
    lines = report(tmp_path).splitlines()  # completed runs first
    assert lines[2].startswith("| 1 | completed |  | 2 | 141.000 |") and says in lines[2]
    assert lines[3].startswith("| 0 | incomplete | 0 | 2 | 140.000 |")


def test_a_report_cut_short_leaves_the_one_before_it_whole(tmp_path: Path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    write_job(tmp_path / "0", ["seed=0"], [150.0, 140.0], {"status": "completed"})
    write_job(tmp_path / "1", ["seed=1"], [151.0, 141.0], {"status": "completed"})
    report(tmp_path)
    before = (tmp_path / "report.png").read_bytes()

    def disk_full(figure, handle, **kwargs):
        handle.write(b"\x89PNG half a picture")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    (tmp_path / "1" / "metrics.jsonl").write_text("")  # a different table this time
    with pytest.raises(WriteError, match="could not write the figure .*report.png: no space left on device"):
        report(tmp_path)
    assert (tmp_path / "report.png").read_bytes() == before
    assert not [path for path in tmp_path.iterdir() if "partial" in path.name]
