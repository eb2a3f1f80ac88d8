"""The evaluate entry point: eval.json from a checkpoint, on the same test bits every time."""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import vae_gumbel.evaluate as evaluate_module
from tests.conftest import assert_one_line_error, compose_config, run_module, sweep_of, tiny_run
from vae_gumbel.errors import ConfigError, Interrupted, WriteError
from vae_gumbel.evaluate import run_evaluation
from vae_gumbel.provenance import environment
from vae_gumbel.train import train


@pytest.fixture(scope="module")
def run_dir(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    train(compose_config("train", tiny_run(mnist_root)), folder)
    return folder


def evaluate(*overrides: str) -> tuple[Path, dict]:
    return run_evaluation(compose_config("evaluate", list(overrides)))


def test_evaluate_writes_eval_json_with_bounds_and_what_they_were_measured_on(
    run_dir: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run")  # the run's own eval.json stays for other tests
    out, _ = evaluate(f"checkpoint={copy}", "iwae_samples=[1,5,50]")
    assert out == copy / "eval.json"
    saved = json.loads(out.read_text())
    assert set(saved["iwae_nll"]) == {"1", "5", "50"}
    assert saved["iwae_nll"]["50"] <= saved["iwae_nll"]["1"] + 0.5
    assert saved["neg_elbo"] > 0 and saved["neg_elbo_samples"] == 50
    assert (saved["estimator"], saved["latent_dim"], saved["categorical_dim"], saved["steps"]) == (
        "gumbel_softmax",
        4,
        5,
        6,
    )
    assert saved["binarization"]["seed"] == 0 and len(saved["binarization"]["targets_sha256"]) == 64
    assert len(saved["kl_per_variable"]) == 4 and 0 <= saved["active_variables"] <= 4
    assert saved["test_images"] == 60
    trained_with = torch.load(copy / "checkpoints" / "best.pt", weights_only=True)["environment"]
    assert saved["trained_with"] == trained_with
    assert saved["environment"] == environment(torch.device("cpu"))  # what it was evaluated with


def test_an_evaluation_that_cannot_be_written_prints_its_bounds_first(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def full_disk(report: dict, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evaluate_module, "write_eval_json", full_disk)
    out = tmp_path / "eval.json"
    with pytest.raises(WriteError, match=f"could not write the evaluation {out}: no space left on device; "):
        evaluate(f"checkpoint={run_dir}", "iwae_samples=[1,5]", f"out={out}")
    assert "IWAE NLL, k =     5:" in capsys.readouterr().out and not out.exists()


def test_test_binarization_is_the_same_bits_every_time(run_dir: Path, tmp_path: Path) -> None:
    digests = [
        evaluate(f"checkpoint={run_dir}", "iwae_samples=[1]", f"out={tmp_path / name}")[1]["binarization"]
        for name in ("a.json", "b.json")
    ]
    assert digests[0] == digests[1]


def test_data_test_limit_and_data_root_choose_the_test_images(
    run_dir: Path, mnist_root: Path, tmp_path: Path
) -> None:
    _, report = evaluate(
        f"checkpoint={run_dir}",
        "iwae_samples=[1]",
        "data.test_limit=25",
        f"data.root={mnist_root}",
        f"out={tmp_path / 'e.json'}",
    )
    assert report["test_images"] == 25


@pytest.mark.slow
def test_evaluate_cli_prints_the_bounds(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    result = run_module(
        "vae_gumbel.evaluate",
        f"checkpoint={run_dir}",
        "iwae_samples=[1,10]",
        f"out={out}",
        "data.test_limit=30",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "IWAE NLL, k =    10:" in result.stdout
    assert json.loads(out.read_text())["test_images"] == 30


def test_bounds_on_grey_levels_are_printed_as_cross_entropies_not_comparable_with_binarized_mnist(
    mnist_root: Path, tmp_path: Path
) -> None:
    for binarize, says in (("none", True), ("dynamic", False)):
        folder = tmp_path / binarize
        train(compose_config("train", [*tiny_run(mnist_root), f"data.binarize={binarize}"]), folder)
        _, report = evaluate(f"checkpoint={folder}", "iwae_samples=[1,2]", "data.test_limit=10")
        assert ("not a log-likelihood" in evaluate_module.summary(report)) is says


@pytest.mark.slow
def test_evaluate_cli_reports_a_missing_checkpoint_in_one_line(tmp_path: Path) -> None:
    result = run_module("vae_gumbel.evaluate", f"checkpoint={tmp_path / 'nope'}", cwd=tmp_path)
    assert_one_line_error(result, 2, "does not exist")


def test_evaluate_on_a_missing_gpu_names_its_own_setting(run_dir: Path) -> None:
    import torch

    from vae_gumbel.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConfigError, match="^device=cuda but no CUDA device is available"):
        evaluate(f"checkpoint={run_dir}", "device=cuda")


def test_split_val_evaluates_the_validation_set_the_run_held_out(mnist_root: Path, tmp_path: Path) -> None:
    overrides = [*tiny_run(mnist_root), "data.validation=40", "eval.final_iwae_samples=[1,10]"]
    train(compose_config("train", [*overrides, "eval.final_iwae_on=val"]), tmp_path)
    trained = json.loads((tmp_path / "eval_val.json").read_text())
    (tmp_path / "eval_val.json").unlink()
    out, report = evaluate(f"checkpoint={tmp_path}", "which=last", "split=val", "iwae_samples=[1,10]")
    assert out == tmp_path / "eval_val.json" and not (tmp_path / "eval.json").exists()
    assert (report["images"], report["test_images"]) == ("validation", 40)
    # The same images, bits and draws as the trainer's own final evaluation on them.
    assert report["binarization"] == trained["binarization"] and report["iwae_nll"] == trained["iwae_nll"]


def test_split_val_of_a_run_without_a_validation_set_is_a_clear_error(run_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"held no validation set out \(data.validation=0\)"):
        evaluate(f"checkpoint={run_dir}", "split=val", "iwae_samples=[1]")


def test_a_test_limit_with_split_val_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ConfigError, match=r"^data.test_limit=10 limits the test set, and split=val"):
        evaluate("checkpoint=anywhere", "split=val", "data.test_limit=10")


def test_a_different_evaluation_already_there_is_kept_and_the_same_one_replaced(
    run_dir: Path, tmp_path: Path
) -> None:
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "eval.json").unlink(missing_ok=True)
    _, careful = evaluate(f"checkpoint={copy}", "iwae_samples=[1,50]")
    evaluate(f"checkpoint={copy}", "iwae_samples=[1,50]")  # the same evaluation again: replaced
    assert not (copy / "eval_2.json").exists()
    _, quick = evaluate(f"checkpoint={copy}", "iwae_samples=[1]", "data.test_limit=10")
    # eval.json holds the latest evaluation; the careful one it replaced is still there.
    assert json.loads((copy / "eval.json").read_text())["iwae_nll"] == quick["iwae_nll"]
    assert json.loads((copy / "eval_2.json").read_text())["iwae_nll"] == careful["iwae_nll"]
    assert sorted(path.name for path in copy.iterdir() if "eval" in path.name) == ["eval.json", "eval_2.json"]


def test_two_evaluations_that_end_at_once_each_keep_the_others_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first has read that there is no eval.json yet and is about to write its own when the
    # second ends: the second waits for its turn, finds the first's report and keeps it.
    import vae_gumbel.likelihood as likelihood

    about_to_write, go_on = threading.Event(), threading.Event()
    replacing = likelihood.replacing

    @contextlib.contextmanager
    def slow_replacing(path: Path) -> Iterator[object]:
        if threading.current_thread().name == "first":
            about_to_write.set()
            go_on.wait(10)
        with replacing(path) as handle:
            yield handle

    monkeypatch.setattr(likelihood, "replacing", slow_replacing)
    path = tmp_path / "eval.json"
    first_report = {"iwae_nll": {"1": 100.0}, "epoch": 1}
    second_report = {"iwae_nll": {"1": 90.0}, "epoch": 2}
    first = threading.Thread(target=likelihood.write_eval_json, args=(first_report, path), name="first")
    first.start()
    assert about_to_write.wait(10)
    second = threading.Thread(target=likelihood.write_eval_json, args=(second_report, path))
    second.start()
    second.join(0.5)  # without turns, the second would be done by now, and then overwritten
    go_on.set()
    first.join(10)
    second.join(10)
    written = sorted(json.loads(file.read_text())["epoch"] for file in tmp_path.glob("eval*.json"))
    assert written == [1, 2]


def test_an_output_place_that_cannot_be_written_is_refused_before_the_work(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.evaluate

    def never(*args, **kwargs):
        raise AssertionError("evaluated before checking where the result goes")

    monkeypatch.setattr(vae_gumbel.evaluate, "evaluation_report", never)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match=r"a-file is a file, not a folder; give out= a place you can write"):
        evaluate(f"checkpoint={run_dir}", f"out={blocked / 'eval.json'}")
    # A folder is no place for the file either, whatever it holds.
    with pytest.raises(ConfigError, match="out must be null or the path of a file ending in .json"):
        evaluate(f"checkpoint={run_dir}", f"out={run_dir}")


def test_ctrl_c_stops_an_evaluation_in_one_line_and_leaves_the_last_one_as_it_was(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.evaluate

    copy = shutil.copytree(run_dir, tmp_path / "run")
    evaluate(f"checkpoint={copy}", "iwae_samples=[1,5]")
    before = (copy / "eval.json").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vae_gumbel.evaluate, "evaluation_report", interrupted)
    with pytest.raises(
        Interrupted, match=r"^interrupted by SIGINT: nothing was written, .*eval.json is as it was"
    ) as err:
        evaluate(f"checkpoint={copy}", "iwae_samples=[1000]")
    assert err.value.exit_code == 130
    assert (copy / "eval.json").read_bytes() == before and not (copy / "eval_2.json").exists()


def evaluate_folder(*overrides: str) -> float:
    return evaluate_module.evaluate_command(compose_config("evaluate", list(overrides)))


def test_a_folder_of_runs_gets_each_runs_evaluation_and_the_command_to_compare_them(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from vae_gumbel.jobs import read_job

    sweep = sweep_of(run_dir, tmp_path / "sweep", 2, waiting=True)
    caplog.set_level(logging.INFO, logger="vae_gumbel.evaluate")
    mean = evaluate_folder(f"checkpoint={sweep}", "iwae_samples=[1,5]", "data.test_limit=20")
    printed = capsys.readouterr().out
    bounds = [json.loads((sweep / job / "eval.json").read_text())["iwae_nll"]["5"] for job in ("0", "1")]
    assert mean == pytest.approx(sum(bounds) / 2)
    assert bounds[0] == bounds[1]  # the same model on the same bits and draws
    assert printed.count("IWAE NLL, k =     5:") == 2
    assert f"[3/3] {sweep / '2'}\n  passed over: the run in {sweep / '2'} has not started" in printed
    compare = f"compare them: python -m vae_gumbel.report {sweep} [--sort bound]"  # not a sweep of seeds
    assert caplog.records[-1].getMessage() == f"evaluated 2 of 3 runs in {sweep}; {compare}"
    assert read_job(sweep / "0", sweep).evaluations["eval/iwae_nll_5"] == bounds[0]  # what report reads


def test_a_run_that_fails_its_evaluation_is_named_and_the_others_are_evaluated(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from vae_gumbel.errors import RunsFailed

    sweep = sweep_of(run_dir, tmp_path / "sweep", 3)
    (sweep / "1" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(
        RunsFailed, match=r"^evaluated 2 of 3 runs in .*; 1 failed \(1\), each says why above$"
    ):
        evaluate_folder(f"checkpoint={sweep}", "iwae_samples=[1]", "data.test_limit=20")
    assert "  error: cannot read checkpoint" in capsys.readouterr().out
    assert (sweep / "2" / "eval.json").is_file() and not (sweep / "1" / "eval.json").exists()
    with pytest.raises(
        ConfigError, match=r"^out= names one file, and .* is a folder of 3 runs: leave out= unset"
    ):
        evaluate_folder(f"checkpoint={sweep}", f"out={tmp_path / 'all.json'}")


def test_ctrl_c_in_a_folder_of_runs_keeps_the_evaluations_before_it(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = sweep_of(run_dir, tmp_path / "sweep", 2)
    evaluated = evaluate_module.evaluation_report

    def interrupted_at_the_second(*args, **kwargs):
        if (sweep / "0" / "eval.json").exists():
            raise KeyboardInterrupt
        return evaluated(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluation_report", interrupted_at_the_second)
    says = (
        rf"^interrupted by SIGINT while evaluating {sweep / '1'}: .* the runs evaluated before it \(1\) keep"
    )
    with pytest.raises(Interrupted, match=says) as err:
        evaluate_folder(f"checkpoint={sweep}", "iwae_samples=[1]", "data.test_limit=20")
    assert err.value.exit_code == 130
    assert (sweep / "0" / "eval.json").is_file() and not (sweep / "1" / "eval.json").exists()


def test_a_folder_of_runs_on_a_missing_gpu_is_refused_once_before_any_run(
    run_dir: Path, tmp_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    sweep = sweep_of(run_dir, tmp_path / "sweep", 2)
    with pytest.raises(ConfigError, match="^device=cuda but no CUDA device is available"):
        evaluate_folder(f"checkpoint={sweep}", "device=cuda")


def test_a_run_with_a_relative_data_root_is_evaluated_and_sampled_from_any_directory(
    mnist_root: Path, tmp_path: Path
) -> None:
    """data.root=data is relative to where the run was launched, which its .hydra/hydra.yaml
    records: evaluate and sample read that copy from another directory rather than look for one
    there (and, with downloads on, fetch a second copy into it)."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    shutil.copytree(mnist_root / "MNIST", project / "data" / "MNIST")
    elsewhere.mkdir()
    overrides = [item for item in tiny_run(mnist_root) if not item.startswith("data.root=")]
    trained = run_module("vae_gumbel.train", *overrides, "data.root=data", "hydra.run.dir=run", cwd=project)
    assert trained.returncode == 0, trained.stderr
    for module, *settings in (
        ("vae_gumbel.evaluate", "iwae_samples=[1]", "data.test_limit=20"),
        ("vae_gumbel.sample", "mode=reconstruction"),
    ):
        result = run_module(module, f"checkpoint={project / 'run'}", *settings, cwd=elsewhere)
        assert result.returncode == 0, result.stderr
    assert list(elsewhere.iterdir()) == []
