"""The training entry point: its run folder, logs, resume, failures, and the command line."""

from __future__ import annotations

import errno
import json
import logging
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import (
    REPO,
    assert_one_line_error,
    poison_training_loss,
    requires_cuda,
    run_module,
    run_module_noting_imports,
    run_module_then,
    run_python,
    tiny_run,
)
from vae_gumbel.checkpoint import load_checkpoint
from vae_gumbel.config import validate
from vae_gumbel.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    FolderBusy,
    Interrupted,
    NonFiniteLossError,
    WriteError,
)
from vae_gumbel.estimators import ESTIMATORS
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.step import GRAPH_WARMUP_STEPS
from vae_gumbel.tracking import HPARAMS_METRICS, read_metrics
from vae_gumbel.train import epoch_line, frozen_from, objective, stack_line, train, watch_code

EPOCH_KEYS = {
    "epoch",
    "step",
    "temperature",
    "train/loss_relaxed",
    "train/loss_unrelaxed",
    "train/recon",
    "train/kl",
    "test/loss",
    "test/recon",
    "test/kl",
    "test/perplexity",
    "test/active_variables",
    "time/epoch_s",
    "throughput/train_img_s",
}
TIMING_KEYS = {"time/epoch_s", "throughput/train_img_s", "time/compile_s"}
ANNEAL_EVERY_STEP = ("temperature.every=1", "temperature.rate=0.05")


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


# --- the run folder and its records ------------------------------------------------------------


def test_a_run_writes_the_documented_run_folder(compose_train, tmp_path: Path) -> None:
    metrics = train(compose_train("trainer.epochs=2"), tmp_path)
    folder = RunFolder(tmp_path)
    records = read_metrics(folder.metrics)
    assert [r["epoch"] for r in records] == [1, 2] and records[-1] == metrics
    assert EPOCH_KEYS <= set(records[-1])
    assert records[-1]["step"] == 2 * 6  # 120 images in batches of 20
    for epoch in (1, 2):
        for name in ("prior", "reconstruction", "code_usage"):
            assert folder.epoch_picture(name, epoch).is_file(), (name, epoch)
    assert folder.checkpoint("last").is_file() and folder.checkpoint("best").is_file()
    assert json.loads(folder.status.read_text()) == {
        "status": "completed",
        "epoch": 2,
        "step": 12,
        "test/loss": metrics["test/loss"],
    }


@pytest.mark.parametrize(("test_images", "size"), [(1, (32, 62)), (12, (242, 62))])
def test_a_test_set_smaller_than_the_reconstruction_grid_shows_the_images_it_has(
    compose_train, tmp_path: Path, test_images: int, size: tuple[int, int]
) -> None:
    from PIL import Image

    train(compose_train(f"data.test_limit={test_images}"), tmp_path)
    # One row of min(8, n) test images above their reconstructions, 28 pixels and a 2-pixel border each.
    with Image.open(RunFolder(tmp_path).epoch_picture("reconstruction", 1)) as picture:
        assert picture.size == size


def test_tensorboard_has_the_metric_tags_the_temperature_and_the_pictures(
    compose_train, tmp_path: Path
) -> None:
    train(compose_train("trainer.epochs=2"), tmp_path)
    events = EventAccumulator(str(RunFolder(tmp_path).tensorboard)).Reload()
    scalars = set(events.Tags()["scalars"])
    assert EPOCH_KEYS - {"epoch", "step"} <= scalars
    assert {"step/loss_relaxed", "step/loss_unrelaxed", "step/temperature"} <= scalars
    assert [e.step for e in events.Scalars("step/temperature")] == [2, 4, 6, 8, 10, 12]
    assert {"samples/prior", "samples/reconstruction", "code_usage"} <= set(events.Tags()["images"])
    # The HParams tab: the run's session, whose metrics are its own scalars (HPARAMS_METRICS).
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert set(HPARAMS_METRICS) <= scalars


def test_the_final_iwae_evaluation_follows_the_last_epoch(compose_train, tmp_path: Path) -> None:
    metrics = train(compose_train("trainer.epochs=2", "eval.final_iwae_samples=[1,10]"), tmp_path)
    folder = RunFolder(tmp_path)
    last = read_metrics(folder.metrics)[-1]
    assert {"test/iwae_nll_1", "test/iwae_nll_10", "test/neg_elbo_mean"} <= set(last)
    assert last == metrics and objective(metrics) == metrics["test/iwae_nll_10"]
    assert json.loads(folder.eval_json.read_text())["iwae_nll"]["10"] == metrics["test/iwae_nll_10"]
    assert objective({"test/loss": 99.0}) == 99.0


def test_final_bounds_on_grey_levels_are_logged_as_cross_entropies(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for binarize in ("none", "dynamic"):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            train(
                compose_train(f"data.binarize={binarize}", "eval.final_iwae_samples=[1,2]"),
                tmp_path / binarize,
            )
        assert ("not a log-likelihood" in caplog.text) is (binarize == "none")


def test_a_validation_set_selects_best_pt_and_what_sweepers_minimise(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validation losses that are lowest after epoch 2, while the test loss keeps falling.
    from vae_gumbel import train as training

    real, validation_losses = training.score_test_set, iter([30.0, 10.0, 20.0])

    def scores(model, images, batch_size, seed, split="test"):
        result = real(model, images, batch_size, seed, split)
        if split == "val":
            result[0].metrics["val/loss"] = next(validation_losses)
        return result

    monkeypatch.setattr(training, "score_test_set", scores)
    metrics = train(compose_train("trainer.epochs=3", "data.validation=40"), tmp_path)
    records = read_metrics(RunFolder(tmp_path).metrics)
    assert [r["val/loss"] for r in records] == [30.0, 10.0, 20.0]
    assert [r["val/best_loss"] for r in records] == [30.0, 10.0, 10.0]
    assert records[-1]["test/loss"] < records[1]["test/loss"]  # the test set would have picked epoch 3
    assert load_checkpoint(RunFolder(tmp_path).checkpoint("best"))["epoch"] == 2
    assert objective(metrics) == 20.0  # the final validation loss, not the test loss


def test_a_search_scores_the_final_iwae_on_the_validation_set(compose_train, tmp_path: Path) -> None:
    overrides = ("trainer.epochs=1", "data.validation=40", "eval.final_iwae_samples=[1,10]")
    metrics = train(compose_train(*overrides, "eval.final_iwae_on=val"), tmp_path)
    folder = RunFolder(tmp_path)
    report = json.loads(folder.eval_json_of("val").read_text())
    assert report["images"] == "validation" and report["test_images"] == 40
    assert report["iwae_nll"]["10"] == metrics["val/iwae_nll_10"] == objective(metrics)
    assert not folder.eval_json.exists() and not any(key.startswith("test/iwae") for key in metrics)
    # Without eval.final_iwae_on=val the bounds are the test set's, and the objective stays on validation.
    tested = train(compose_train(*overrides), tmp_path / "test")
    assert "test/iwae_nll_10" in tested and objective(tested) == tested["val/loss"]


def test_the_final_iwae_on_the_validation_set_needs_one(compose_train) -> None:
    with pytest.raises(ConfigError, match="eval.final_iwae_on must be test unless data.validation"):
        validate(compose_train("eval.final_iwae_on=val"))


def test_a_run_of_no_epochs_scores_its_weights_and_offers_no_checkpoint(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        metrics = train(compose_train("trainer.epochs=0"), tmp_path)
    assert (metrics["epoch"], metrics["step"]) == (0, 0)
    assert not RunFolder(tmp_path).checkpoint("last").exists()
    summary = caplog.text.split("done: ", 1)[1]
    assert summary.startswith(f"0 epochs, final test loss {metrics['test/loss']:.2f}\n")
    assert "inf" not in summary
    assert "vae_gumbel.sample" not in summary and "vae_gumbel.evaluate" not in summary
    # Its scores are the record of epoch 0, where the report and TensorBoard look for any epoch's.
    assert read_metrics(RunFolder(tmp_path).metrics) == [metrics]
    assert metrics["temperature"] == 1.0


def test_a_run_of_no_epochs_gets_its_final_iwae_bounds(compose_train, tmp_path: Path) -> None:
    metrics = train(compose_train("trainer.epochs=0", "eval.final_iwae_samples=[1,10]"), tmp_path)
    (record,) = read_metrics(RunFolder(tmp_path).metrics)
    assert record["epoch"] == 0 and record["test/iwae_nll_10"] == metrics["test/iwae_nll_10"]
    assert json.loads((tmp_path / "eval.json").read_text())["epoch"] == 0


def test_a_fresh_start_drops_the_records_of_a_run_that_wrote_no_checkpoint(
    compose_train, tmp_path: Path
) -> None:
    train(compose_train("trainer.epochs=0", "temperature.initial=2.0"), tmp_path)
    metrics = train(compose_train("trainer.epochs=1"), tmp_path)
    assert [r["epoch"] for r in read_metrics(RunFolder(tmp_path).metrics)] == [1]
    assert metrics["temperature"] == 1.0


def test_training_lowers_the_test_loss(compose_train, tmp_path: Path) -> None:
    records = [train(compose_train(f"trainer.epochs={n}"), tmp_path / str(n)) for n in (1, 8)]
    assert records[1]["test/loss"] < records[0]["test/loss"] - 5


@pytest.mark.parametrize(
    "overrides",
    [
        ["estimator=gumbel_rao", "estimator.rao_samples=4"],
        ["estimator=reinmax", "temperature=constant"],
        ["estimator=reinmax_rao", "estimator.rao_samples=8", "temperature=constant"],
        ["estimator=gumbel_softmax", "objective.kl=relaxed", "objective.prior_temperature=0.5"],
        ["optim=radam"],
    ],
    ids=["gumbel_rao", "reinmax", "reinmax_rao", "relaxed_kl", "radam"],
)
def test_every_estimator_and_optimizer_trains_the_model(
    compose_train, tmp_path: Path, overrides: list[str]
) -> None:
    records = [train(compose_train(*overrides, f"trainer.epochs={n}"), tmp_path / str(n)) for n in (1, 6)]
    assert all(math.isfinite(r["train/loss_relaxed"]) for r in records)
    assert records[1]["test/loss"] < records[0]["test/loss"] - 3


# --- resume --------------------------------------------------------------------------------------


@pytest.mark.parametrize("held_out", [[], ["data.validation=40"]], ids=["plain", "validation"])
def test_resume_continues_exactly_like_an_uninterrupted_run(
    compose_train, tmp_path: Path, held_out: list[str]
) -> None:
    straight = tmp_path / "straight"
    train(compose_train("trainer.epochs=3", *ANNEAL_EVERY_STEP, *held_out), straight)
    interrupted = tmp_path / "interrupted"
    train(compose_train("trainer.epochs=1", *ANNEAL_EVERY_STEP, *held_out), interrupted)
    train(compose_train("trainer.epochs=3", *ANNEAL_EVERY_STEP, *held_out, "resume=last"), interrupted)
    expected = without_timing(read_metrics(RunFolder(straight).metrics))
    assert without_timing(read_metrics(RunFolder(interrupted).metrics)) == expected
    assert expected[-1]["temperature"] < expected[0]["temperature"]  # annealing carried across the resume
    best = [load_checkpoint(RunFolder(run).checkpoint("best"))["epoch"] for run in (straight, interrupted)]
    assert best[0] == best[1]


def stop_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int, error: type[BaseException]) -> None:
    """Makes the next run raise ``error`` at the end of its ``epoch``-th epoch (where
    VAE_GUMBEL_PAUSE=epoch=S would pause it)."""
    import vae_gumbel.train as trainer

    ends = []

    def pause(where: str) -> None:
        ends.append(where)
        if ends.count("epoch") == epoch:
            raise error

    monkeypatch.setattr(trainer, "pause", pause)


def test_checkpoints_are_written_every_checkpoint_every_epochs_best_pt_with_the_best_epoch_since(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.train as trainer

    test_losses = {1: 5.0, 2: 4.0, 3: 3.0, 4: 6.0, 5: 7.0}  # the best epoch, 3, is between two writes
    real_record, writes = trainer.epoch_record, []

    def scripted_record(run, result, m, scores):
        record = real_record(run, result, m, scores)
        return {**record, "test/loss": test_losses[run.epoch]}

    def recorded(write, target: int):
        """Wraps a checkpoint writer: notes the file its argument ``target`` names and the epoch
        that file then holds."""

        def wrapper(*args):
            write(*args)
            writes.append((Path(args[target]).name, load_checkpoint(args[target])["epoch"]))

        return wrapper

    monkeypatch.setattr(trainer, "epoch_record", scripted_record)
    monkeypatch.setattr(trainer, "save_checkpoint", recorded(trainer.save_checkpoint, target=0))
    monkeypatch.setattr(trainer, "link_checkpoint", recorded(trainer.link_checkpoint, target=1))
    train(compose_train("trainer.epochs=5", "trainer.checkpoint_every=2"), tmp_path)
    # After epoch 2: last.pt, and best.pt as the same file; after epoch 4: last.pt and epoch 3 as
    # best.pt; the last epoch always writes last.pt.
    assert writes == [("last.pt", 2), ("best.pt", 2), ("last.pt", 4), ("best.pt", 3), ("last.pt", 5)]


def test_a_run_killed_between_checkpoints_trains_the_lost_epochs_again_to_the_same_numbers(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ["trainer.epochs=4", "trainer.checkpoint_every=2", *ANNEAL_EVERY_STEP]
    train(compose_train(*settings), tmp_path / "straight")

    class Killed(BaseException):
        """Ends the process at once, as SIGKILL would: no handler writes anything."""

    stop_after_epoch(monkeypatch, 3, Killed)
    with pytest.raises(Killed):
        train(compose_train(*settings), tmp_path / "killed")
    killed = RunFolder(tmp_path / "killed")
    assert len(read_metrics(killed.metrics)) == 3 and load_checkpoint(killed.checkpoint("last"))["epoch"] == 2
    monkeypatch.undo()
    train(compose_train(*settings, "resume=last"), killed.path)
    expected = without_timing(read_metrics(RunFolder(tmp_path / "straight").metrics))
    assert without_timing(read_metrics(killed.metrics)) == expected


def test_an_interrupt_or_a_failure_between_checkpoints_writes_the_epochs_not_yet_on_disk(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ["trainer.epochs=5", "trainer.checkpoint_every=5"]
    stop_after_epoch(monkeypatch, 3, KeyboardInterrupt)  # Ctrl-C
    with pytest.raises(Interrupted):
        train(compose_train(*settings), tmp_path / "interrupted")
    monkeypatch.undo()
    poison_training_loss(monkeypatch, at_call=3 * 6 + 2)  # a step of epoch 4 (6 steps an epoch)
    with pytest.raises(NonFiniteLossError):
        train(compose_train(*settings), tmp_path / "failed")
    for run in ("interrupted", "failed"):
        folder = RunFolder(tmp_path / run)
        losses = {r["epoch"]: r["test/loss"] for r in read_metrics(folder.metrics)}
        assert load_checkpoint(folder.checkpoint("last"))["epoch"] == 3
        assert load_checkpoint(folder.checkpoint("best"))["epoch"] == min(losses, key=losses.get)


def test_resume_from_another_run_folder_keeps_step_and_temperature(compose_train, tmp_path: Path) -> None:
    train(compose_train("trainer.epochs=1", *ANNEAL_EVERY_STEP), tmp_path / "a")
    train(compose_train("trainer.epochs=2", *ANNEAL_EVERY_STEP, f"resume={tmp_path / 'a'}"), tmp_path / "b")
    (record,) = read_metrics(RunFolder(tmp_path / "b").metrics)
    assert record["epoch"] == 2 and record["step"] == 12
    assert record["temperature"] == pytest.approx(max(0.5, torch.exp(torch.tensor(-0.05 * 11)).item()))


def test_a_leftover_temporary_file_does_not_break_resuming(compose_train, tmp_path: Path) -> None:
    train(compose_train(), tmp_path)
    (tmp_path / "checkpoints" / ".last.99999.partial.pt").write_bytes(b"half a checkpoint")
    assert train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)["epoch"] == 2


def test_a_corrupt_checkpoint_is_a_clear_error(compose_train, tmp_path: Path) -> None:
    train(compose_train(), tmp_path)
    RunFolder(tmp_path).checkpoint("last").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*last.pt.*corrupt"):
        train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)


def test_an_incompatible_checkpoint_says_what_differs(compose_train, tmp_path: Path) -> None:
    train(compose_train(), tmp_path / "a")
    with pytest.raises(
        CheckpointError, match=r"latent_dim: checkpoint 4 vs config 6; hidden: checkpoint \[32\]"
    ):
        train(
            compose_train(
                "model.latent_dim=6", "model.hidden=[16]", "trainer.epochs=2", f"resume={tmp_path / 'a'}"
            ),
            tmp_path / "b",
        )


# --- failures ---------------------------------------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(compose_train(), tmp_path)
    good = RunFolder(tmp_path).checkpoint("last").read_bytes()
    poison_training_loss(monkeypatch, at_call=3)  # the third step of the resumed epoch: global step 9
    with pytest.raises(NonFiniteLossError, match="non-finite at step 9"):
        train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)
    assert RunFolder(tmp_path).checkpoint("last").read_bytes() == good
    status = json.loads(RunFolder(tmp_path).status.read_text())
    assert status["status"] == "failed" and "step 9" in status["error"]


def test_a_picture_that_cannot_be_written_warns_once_and_the_run_goes_on(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "samples").write_text("a file where the samples folder belongs")
    caplog.set_level(logging.INFO, logger="vae_gumbel.train")
    train(compose_train("trainer.epochs=2"), tmp_path)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("could not write picture ")
    assert "samples/epoch_001.png: file exists" in warnings[0] and "training goes on" in warnings[0]
    assert json.loads(RunFolder(tmp_path).status.read_text())["status"] == "completed"
    assert load_checkpoint(RunFolder(tmp_path).checkpoint("last"))["epoch"] == 2


def test_a_full_disk_under_the_tensorboard_log_fails_the_run_in_one_clear_line(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    from tensorboard.summary.writer.record_writer import RecordWriter

    def full(self, data: bytes) -> None:  # runs in TensorBoard's writer thread
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RecordWriter, "write", full)
    with pytest.raises(WriteError) as caught:
        train(compose_train(), tmp_path)
    assert str(caught.value) == (
        f"could not write the run's TensorBoard log {tmp_path / 'tensorboard'}: no space left on device. "
        "Free some space, then continue with resume=last"
    )
    status = json.loads(RunFolder(tmp_path).status.read_text())
    assert status["status"] == "failed" and "TensorBoard log" in status["error"]
    assert "Exception in thread" not in capfd.readouterr().err  # the writer thread's own traceback


def test_missing_data_with_download_off_is_a_clear_error(compose_train, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.download=false"):
        train(compose_train(f"data.root={tmp_path / 'empty'}"), tmp_path / "run")


def test_fixture_data_fails_the_real_checksums(compose_train, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="SHA-256"):
        train(compose_train("data.verify_checksums=true"), tmp_path)


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_run_writes_the_run_folder_and_its_log(tmp_path: Path, mnist_root: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_module(
        "vae_gumbel.train",
        *tiny_run(mnist_root),
        "trainer.epochs=2",
        "eval.final_iwae_samples=[1,4]",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    folder = RunFolder(run_dir)
    assert [r["epoch"] for r in read_metrics(folder.metrics)] == [1, 2]
    assert folder.config.is_file() and folder.overrides.is_file()
    log = folder.log.read_text()
    # What the auto settings chose for a run this short: no compiling, float32 (debug=tiny pins it).
    assert re.search(r"training gumbel_softmax on (cpu|cuda\S*) \(eager(, one CUDA graph)?, float32\): ", log)
    assert "epoch 2/2" in log and "final IWAE bounds on 60 test images (nats): k=1: " in log
    assert re.search(r"epoch 2/2 .* perplexity [\d.]+, active \d+/\d+\)", log)
    assert "frozen" not in log  # its code starts near the prior, as training does
    # The run ends by saying where its results are and how to go on; the command it prints works.
    assert "done: 2 epochs, final test loss" in log and f"tensorboard --logdir {folder.tensorboard}" in log
    command = log.split("train on to 4 epochs: ")[1].splitlines()[0]
    assert command.startswith("python -m vae_gumbel.train ") and "trainer.epochs=2" not in command
    result = run_python(*shlex.split(command)[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [r["epoch"] for r in read_metrics(folder.metrics)] == [1, 2, 3, 4]
    # .hydra/ records the command of the run in the folder; a refused start leaves it so.
    assert "trainer.epochs=4" in folder.overrides.read_text()
    records = [folder.config, folder.overrides, folder.hydra_file("hydra.yaml"), folder.status]
    before = {path: path.read_bytes() for path in records}
    refused = ["optim.lr=0.005", f"hydra.run.dir={run_dir}"]
    result = run_module("vae_gumbel.train", *tiny_run(mnist_root), *refused, cwd=tmp_path)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert {path: path.read_bytes() for path in records} == before


def test_a_run_that_does_not_compile_never_imports_torchvision_nor_torch_dynamo(
    tmp_path: Path, mnist_root: Path
) -> None:
    # The pictures are laid out without torchvision, and Adam's fused kernel is called without
    # torch.optim, whose every method imports torch._dynamo.
    result, imported = run_module_noting_imports(
        "vae_gumbel.train", *tiny_run(mnist_root), f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "samples" / "epoch_001.png").is_file()  # it drew its pictures
    assert imported == []


# Counts the denormal numbers that survive a multiplication by one, on every thread of torch's pool.
# The numbers are made from their bits: 1e-39 written on a thread that flushes is zero already.
DENORMAL_PROBE = (
    "import torch; d = torch.full((1 << 20,), 1 << 20, dtype=torch.int32).view(torch.float32); "
    "print('denormals left:', int((d * 1.0).count_nonzero()))"
)


def test_a_cpu_run_flushes_denormals_to_zero_on_every_thread(tmp_path: Path, mnist_root: Path) -> None:
    # Adam's moments decay into the denormal range, where each operation takes the CPU's slow path.
    assert (
        "denormals left: 1048576" in run_python("-c", DENORMAL_PROBE, cwd=tmp_path).stdout
    )  # not by default
    # Two threads, and a first layer large enough (784 x 64) that the resumed run's check of its
    # checkpoint runs on both: that starts torch's pool before the run is built.
    two_threads = [
        *tiny_run(mnist_root),
        "model.hidden=[64]",
        "trainer.num_threads=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    for more in ([], ["trainer.epochs=2", "resume=last"]):
        result = run_module_then(
            "vae_gumbel.train", *two_threads, *more, cwd=tmp_path, at_exit=DENORMAL_PROBE
        )
        assert result.returncode == 0, result.stderr
        assert "denormals left: 0" in result.stdout
        assert "not on all of torch's CPU threads" not in result.stderr


@pytest.mark.slow
def test_cli_starts_into_a_folder_another_process_trains_into_leave_its_records_alone(
    tmp_path: Path, mnist_root: Path
) -> None:
    from vae_gumbel.run_folder import training_into
    from vae_gumbel.tracking import write_status

    folder = RunFolder(tmp_path / "run")
    with training_into(folder):  # as the process that trains it, in its first epoch (no checkpoint yet)
        folder.overrides.parent.mkdir()
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            folder.hydra_file(name).write_text(f"the training run's {name}\n")
        write_status(folder, "training", epoch=0, pid=1)
        records = [folder.config, folder.overrides, folder.hydra_file("hydra.yaml"), folder.status]
        before = {path: path.read_bytes() for path in records}
        starts = [("trainer.epochs=3", "is being trained by another process"), ("optim.lr=-1", "must be > 0")]
        for start, says in starts:
            result = run_module(
                "vae_gumbel.train", *tiny_run(mnist_root), start, f"hydra.run.dir={folder.path}", cwd=tmp_path
            )
            assert_one_line_error(result, 2, says)
            assert {path: path.read_bytes() for path in records} == before, start


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, code, expected",
    [
        (["temperature.initial=-1"], 2, "error: temperature.initial must be > 0, got -1.0"),
        (["trainer.device=cuda:7"], 2, "trainer.device=cuda:7 but"),
        (["optim.lr=1e38", "trainer.epochs=3"], 1, "error: the loss became non-finite at step 2"),
    ],
    ids=["bad-value", "missing-device", "training-failure"],
)
def test_cli_reports_an_error_in_one_line_with_its_exit_code(
    tmp_path: Path, mnist_root: Path, overrides: list[str], code: int, expected: str
) -> None:
    result = run_module(
        "vae_gumbel.train", *tiny_run(mnist_root), *overrides, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path
    )
    assert_one_line_error(result, code, expected)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("folder", "says"),
    [
        (["hydra.run.dir=taken"], "taken is a file, not a folder; give hydra.run.dir= a place"),
        (["-m", "hydra.sweep.dir=taken/sweep"], "cannot write into taken/sweep (Not a directory)"),
    ],
    ids=["run", "sweep"],
)
def test_cli_refuses_a_run_or_sweep_folder_it_cannot_make_in_one_line(
    tmp_path: Path, mnist_root: Path, folder: list[str], says: str
) -> None:
    (tmp_path / "taken").write_text("a file where a folder would go")
    result = run_module("vae_gumbel.train", *folder, *tiny_run(mnist_root), cwd=tmp_path)
    assert_one_line_error(result, 2, says)


@pytest.mark.slow
@pytest.mark.parametrize("override", ["data.nope=1", "+data.nope=1"])
def test_cli_refuses_a_key_that_names_no_setting_in_one_line_before_anything_runs(
    tmp_path: Path, mnist_root: Path, override: str
) -> None:
    result = run_module("vae_gumbel.train", "-m", *tiny_run(mnist_root), "seed=0,1", override, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: data.nope is not a setting of train; data has: name, root, batch_size, binarize, "
        "train_limit, test_limit, validation, download, verify_checksums, binarize_seed"
    ]
    assert not (tmp_path / "outputs").exists()  # no sweep folder, no run


def test_hydra_refuses_a_wrong_type_naming_the_key(compose_train) -> None:
    with pytest.raises(Exception, match="data.batch_size"):
        compose_train("data.batch_size=many")


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [[], ["-m", "seed=0,1"]], ids=["runs", "sweeps"])
def test_runs_started_together_get_their_own_folders(
    tmp_path: Path, mnist_root: Path, sweep: list[str]
) -> None:
    command = [sys.executable, "-m", "vae_gumbel.train", *sweep, *tiny_run(mnist_root), "trainer.epochs=0"]
    procs = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    folders = (tmp_path / "outputs").glob("multirun/*/*" if sweep else "*/*")
    assert len([folder for folder in folders if folder.name != "multirun"]) == 2


# --- on a CUDA device --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        *[(f"estimator={name}",) for name in sorted(ESTIMATORS) if name != "gumbel_softmax"],
        ("temperature=learned",),
        ("optim=radam",),
        ("trainer.precision=bf16", "estimator=gumbel_rao"),
        ("trainer.precision=bf16", "estimator=reinmax_rao"),
    ],
    ids=lambda o: ",".join(o),
)
@requires_cuda
def test_every_estimator_and_the_learned_temperature_train_with_the_default_cuda_graphs(
    compose_train, tmp_path, overrides: tuple[str, ...]
) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    metrics = train(compose_train("trainer.device=cuda", "trainer.epochs=2", *overrides), tmp_path)
    assert math.isfinite(metrics["test/loss"]) and math.isfinite(metrics["train/loss_relaxed"])
    assert torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] == 0


@requires_cuda
def test_compile_true_replays_one_cuda_graph_per_step_and_anneals_through_it(
    compose_train, tmp_path, monkeypatch
) -> None:
    import torch._dynamo

    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: replays.append(1) or replay(graph))
    torch._dynamo.reset()
    cfg = compose_train("trainer.device=cuda", "trainer.compile=true", *ANNEAL_EVERY_STEP, "trainer.epochs=2")
    metrics = train(cfg, tmp_path)
    assert math.isfinite(metrics["test/loss"]) and metrics["temperature"] < 0.6
    assert len(replays) == 2 * 6 - GRAPH_WARMUP_STEPS  # every step after the warm-up


@requires_cuda
def test_cuda_graphs_and_bf16_train_like_the_eager_float32_step(compose_train, tmp_path) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    eager = train(
        compose_train("trainer.device=cuda", "trainer.epochs=3", "trainer.compile=false"), tmp_path / "eager"
    )
    fast = train(
        compose_train(
            "trainer.device=cuda", "trainer.epochs=3", "trainer.compile=true", "trainer.precision=bf16"
        ),
        tmp_path / "fast",
    )
    # Compiled kernels draw other random numbers than eager ones, so only the distribution agrees.
    assert fast["test/loss"] == pytest.approx(eager["test/loss"], rel=0.05)


@requires_cuda
def test_resume_with_the_default_cuda_graphs_continues_exactly(compose_train, tmp_path) -> None:
    import torch._dynamo

    anneal = ("trainer.device=cuda", *ANNEAL_EVERY_STEP)
    torch._dynamo.reset()
    train(compose_train(*anneal, "trainer.epochs=3"), tmp_path / "straight")
    torch._dynamo.reset()
    train(compose_train(*anneal, "trainer.epochs=1"), tmp_path / "interrupted")
    torch._dynamo.reset()
    train(compose_train(*anneal, "trainer.epochs=3", "resume=last"), tmp_path / "interrupted")
    straight, interrupted = (
        without_timing(read_metrics(RunFolder(tmp_path / run).metrics)) for run in ("straight", "interrupted")
    )
    assert interrupted == straight


@requires_cuda
def test_a_checkpoint_written_on_a_cpu_resumes_with_the_default_cuda_graphs(compose_train, tmp_path) -> None:
    import torch._dynamo

    train(compose_train("trainer.device=cpu", "trainer.epochs=1"), tmp_path)
    torch._dynamo.reset()
    metrics = train(compose_train("trainer.device=cuda", "trainer.epochs=2", "resume=last"), tmp_path)
    assert metrics["epoch"] == 2 and math.isfinite(metrics["test/loss"])


# --- stacks: many jobs trained as one ---------------------------------------------------------------


def jobs(compose_train, root: Path, *per_job: list[str]) -> list:
    from vae_gumbel.train import member_of

    return [member_of(compose_train(*overrides), root / str(i)) for i, overrides in enumerate(per_job)]


def test_a_stack_writes_a_normal_run_folder_for_every_job(compose_train, tmp_path: Path) -> None:
    from vae_gumbel.train import train_members

    results = train_members(
        jobs(compose_train, tmp_path, ["seed=0"], ["seed=1", "optim.lr=3e-3"], ["seed=2"])
    )
    for i, result in enumerate(results):
        folder = RunFolder(tmp_path / str(i))
        assert read_metrics(folder.metrics)[-1] == result and EPOCH_KEYS <= set(result)
        assert json.loads(folder.status.read_text())["status"] == "completed"
        assert folder.checkpoint("last").is_file() and folder.epoch_picture("code_usage", 1).is_file()
    assert len({r["test/loss"] for r in results}) == 3


def test_a_stack_of_no_epochs_scores_all_its_members_in_one_pass(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.train as trainer

    passes = []
    score = trainer.score_held_out_sets
    monkeypatch.setattr(trainer, "score_held_out_sets", lambda run: passes.append(1) or score(run))
    per_job = [[f"seed={i}", "trainer.epochs=0"] for i in range(3)]
    results = trainer.train_members(jobs(compose_train, tmp_path, *per_job))
    assert len(passes) == 1  # not one pass over the whole stack per member
    for i, result in enumerate(results):
        assert read_metrics(RunFolder(tmp_path / str(i)).metrics) == [result]
        lone = train(compose_train(f"seed={i}", "trainer.epochs=0"), tmp_path / f"lone{i}")
        assert result["test/loss"] == pytest.approx(lone["test/loss"], abs=1e-4)


def test_a_job_whose_folder_another_process_trains_into_fails_alone_and_writes_nothing_there(
    compose_train, tmp_path: Path
) -> None:
    from vae_gumbel.run_folder import training_into
    from vae_gumbel.train import train_members

    busy = RunFolder(tmp_path / "1")
    with training_into(busy):  # as another process would hold it
        results = train_members(jobs(compose_train, tmp_path, ["seed=0"], ["seed=1"]))
    assert isinstance(results[1], FolderBusy) and "is being trained by another process" in str(results[1])
    assert [path.name for path in busy.path.iterdir()] == [".lock"]
    assert json.loads(RunFolder(tmp_path / "0").status.read_text())["status"] == "completed"
    with training_into(busy), pytest.raises(FolderBusy):
        train(compose_train("resume=last"), busy.path)


def test_a_stack_written_by_several_threads_leaves_the_same_files_as_by_one(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vae_gumbel.train as trainer

    per_job = [[f"seed={i}", "trainer.epochs=3"] for i in range(4)]
    trainer.train_members(jobs(compose_train, tmp_path / "one", *per_job))
    monkeypatch.setattr(trainer, "writer_threads", lambda device_type, members: 3)  # as on a GPU
    trainer.train_members(jobs(compose_train, tmp_path / "three", *per_job))
    for i in range(4):
        one, three = RunFolder(tmp_path / "one" / str(i)), RunFolder(tmp_path / "three" / str(i))
        for which in ("last", "best"):
            assert (
                load_checkpoint(three.checkpoint(which))["epoch"]
                == load_checkpoint(one.checkpoint(which))["epoch"]
            )
        pictures = sorted(path.name for path in three.samples.iterdir())
        assert pictures == sorted(path.name for path in one.samples.iterdir()) and len(pictures) == 9
        for name in pictures:
            assert (three.samples / name).read_bytes() == (one.samples / name).read_bytes()


def test_a_stack_scores_each_member_on_the_validation_set_as_its_checkpoint_scores_alone(
    compose_train, tmp_path: Path
) -> None:
    from vae_gumbel.checkpoint import model_from_checkpoint
    from vae_gumbel.data import load_data
    from vae_gumbel.likelihood import score_test_set
    from vae_gumbel.train import train_members

    settings = [[f"seed={i}", "data.validation=40"] for i in (0, 1)]
    stacked = train_members(jobs(compose_train, tmp_path, *settings))
    validation = load_data(validate(compose_train(*settings[0])).data).validation
    trainer = validate(compose_train()).trainer
    for m, result in enumerate(stacked):
        model = model_from_checkpoint(load_checkpoint(RunFolder(tmp_path / str(m)).checkpoint("last")))
        (alone,) = score_test_set(model, validation, trainer.eval_batch_size, trainer.eval_seed, split="val")
        assert result["val/loss"] == pytest.approx(alone.metrics["val/loss"], rel=1e-6)
    assert stacked[0]["val/loss"] != stacked[1]["val/loss"]


def test_a_member_gone_non_finite_fails_alone_and_keeps_its_last_good_checkpoint(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vae_gumbel.train import train_members

    caplog.set_level(logging.INFO, logger="vae_gumbel.train")
    first = jobs(compose_train, tmp_path, ["trainer.epochs=1", "seed=0"], ["trainer.epochs=1", "seed=1"])
    train_members(first)
    good = RunFolder(tmp_path / "1").checkpoint("last").read_bytes()
    poison_training_loss(
        monkeypatch, at_call=3, factor=torch.tensor([[1.0], [float("nan")]])
    )  # job 1, step 9
    again = jobs(
        compose_train,
        tmp_path,
        ["trainer.epochs=3", "resume=last", "seed=0"],
        ["trainer.epochs=3", "resume=last", "seed=1"],
    )
    healthy, failed = train_members(again)
    assert healthy["epoch"] == 3 and math.isfinite(healthy["test/loss"])
    assert isinstance(failed, NonFiniteLossError) and "step 9" in str(failed)
    status = json.loads(RunFolder(tmp_path / "1").status.read_text())
    assert status["status"] == "failed" and "non-finite at step 9" in status["error"]
    assert RunFolder(tmp_path / "1").checkpoint("last").read_bytes() == good
    assert "stopped: the loss became non-finite at step 9" in caplog.text


def test_a_killed_stack_rerun_with_resume_last_ends_as_an_uninterrupted_one(
    compose_train, tmp_path: Path
) -> None:
    from vae_gumbel.train import train_members

    settings = [["seed=0", *ANNEAL_EVERY_STEP], ["seed=1", "optim.lr=3e-3", *ANNEAL_EVERY_STEP]]
    train_members(jobs(compose_train, tmp_path / "straight", *[[*s, "trainer.epochs=3"] for s in settings]))
    train_members(jobs(compose_train, tmp_path / "killed", *[[*s, "trainer.epochs=1"] for s in settings]))
    train_members(
        jobs(compose_train, tmp_path / "killed", *[[*s, "trainer.epochs=3", "resume=last"] for s in settings])
    )
    for i in range(2):
        straight, resumed = (
            without_timing(read_metrics(RunFolder(tmp_path / run / str(i)).metrics))
            for run in ("straight", "killed")
        )
        assert resumed == straight and len(straight) == 3


def test_jobs_train_together_only_when_they_can_and_at_most_max_members_at_a_time(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from vae_gumbel.train import train_members

    caplog.set_level(logging.INFO, logger="vae_gumbel.train")
    per_job = [["seed=0"], ["seed=1"], ["seed=2"], ["estimator=straight_through"]]
    results = train_members(jobs(compose_train, tmp_path, *per_job), max_members=2)
    assert all(isinstance(result, dict) for result in results)
    starts = [record.getMessage() for record in caplog.records if record.getMessage().startswith("training ")]
    stacked = {line.rsplit("run folder ", 1)[1]: "in a stack of 2" in line for line in starts}
    assert stacked == {
        str(tmp_path / "0"): True,
        str(tmp_path / "1"): True,
        str(tmp_path / "2"): False,
        str(tmp_path / "3"): False,
    }


def test_stacked_seeds_train_like_separate_runs(compose_train, tmp_path: Path) -> None:
    """Eight seeds in one stack and the same eight as lone runs: the means of their final test losses
    agree within two standard errors of their difference."""
    from vae_gumbel.train import train_members

    seeds = [[f"seed={seed}", "trainer.epochs=2"] for seed in range(8)]
    stacked = [r["test/loss"] for r in train_members(jobs(compose_train, tmp_path / "stack", *seeds))]
    alone = [train(compose_train(*s), tmp_path / "alone" / s[0])["test/loss"] for s in seeds]
    difference = abs(sum(stacked) / 8 - sum(alone) / 8)
    standard_error = math.sqrt(torch.tensor(stacked).var().item() / 8 + torch.tensor(alone).var().item() / 8)
    assert difference <= 2 * standard_error
    assert len(set(stacked)) == 8  # every member its own model


# --- resume that says what changed --------------------------------------------------------------------


def test_resume_takes_new_values_of_settings_that_may_change_and_logs_them(
    compose_train, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:

    caplog.set_level(logging.INFO, logger="vae_gumbel.train")
    train(compose_train("trainer.epochs=1"), tmp_path)
    train(
        compose_train("trainer.epochs=2", "optim.lr=3e-4", "temperature.rate=0.05", "resume=last"), tmp_path
    )
    assert "resumed with a changed setting: optim.lr 0.001 -> 0.0003" in caplog.text
    assert "resumed with a changed setting: temperature.rate 3e-05 -> 0.05" in caplog.text
    assert "trainer.epochs 1 -> 2" in caplog.text
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 3e-4 and checkpoint["epoch"] == 2


@pytest.mark.parametrize(
    "change, named",
    [
        ("estimator=straight_through", "estimator.name"),
        ("data.binarize=static", "data.binarize"),
        ("objective.kl=relaxed", "objective.kl"),
        ("data.validation=40", "data.validation"),
    ],
)
def test_resume_refuses_a_change_a_run_cannot_make_halfway(
    compose_train, tmp_path: Path, change: str, named: str
) -> None:
    train(compose_train("trainer.epochs=1"), tmp_path)
    with pytest.raises(
        CheckpointError, match=f"cannot change in the middle of a run: {named} .*resume_weights_only=true"
    ):
        train(compose_train("trainer.epochs=2", change, "resume=last"), tmp_path)


def test_resume_weights_only_starts_a_new_run_from_the_weights(compose_train, tmp_path: Path) -> None:

    train(compose_train("trainer.epochs=2"), tmp_path / "a")
    weights = load_checkpoint(tmp_path / "a")["model"]
    metrics = train(
        compose_train(
            "estimator=straight_through",
            "trainer.epochs=0",
            "resume_weights_only=true",
            f"resume={tmp_path / 'a'}",
        ),
        tmp_path / "b",
    )
    assert (metrics["epoch"], metrics["step"]) == (0, 0)
    finetuned = train(
        compose_train("estimator=straight_through", "resume_weights_only=true", f"resume={tmp_path / 'a'}"),
        tmp_path / "c",
    )
    assert (finetuned["epoch"], finetuned["step"]) == (1, 6)
    fresh = train(compose_train("estimator=straight_through"), tmp_path / "d")
    assert finetuned["test/loss"] < fresh["test/loss"]  # it started from trained weights
    assert load_checkpoint(tmp_path / "c")["config"]["estimator"]["name"] == "straight_through"
    assert list(weights) == list(load_checkpoint(tmp_path / "c")["model"])


def test_resume_weights_only_needs_another_runs_checkpoint(compose_train) -> None:
    from vae_gumbel.errors import ConfigError

    with pytest.raises(
        ConfigError, match="resume_weights_only must be false unless resume names another run"
    ):
        validate(compose_train("resume_weights_only=true", "resume=last"))


@pytest.mark.parametrize(
    "refused",
    [
        [],  # no resume=last: the folder is not trained over
        ["resume=last", "trainer.epochs=2", "optim.lr=-1"],  # a bad value
        ["resume=last", "trainer.epochs=2", "estimator=straight_through"],  # a change the run cannot make
    ],
    ids=["no-resume", "bad-value", "fixed-setting"],
)
def test_a_refused_start_leaves_the_record_of_the_run_in_its_folder(
    compose_train, tmp_path: Path, refused: list[str]
) -> None:
    train(compose_train(), tmp_path)
    folder = RunFolder(tmp_path)
    before = {path: path.read_bytes() for path in (folder.status, folder.metrics, folder.checkpoint("last"))}
    with pytest.raises((ConfigError, CheckpointError)):
        train(compose_train(*refused), tmp_path)
    assert {path: path.read_bytes() for path in before} == before
    assert json.loads(folder.status.read_text())["status"] == "completed"


def test_a_long_stacks_console_line_names_its_first_and_last_jobs(tmp_path: Path) -> None:
    members = [SimpleNamespace(folder=RunFolder(tmp_path / str(job))) for job in range(64)]
    run = SimpleNamespace(
        members=members,
        live=lambda: [(m, member) for m, member in enumerate(members) if m != 5],
        epoch=3,
        settings=SimpleNamespace(trainer=SimpleNamespace(epochs=10)),
    )
    records = [{"test/loss": 100.0 + m} for m in range(64)]
    assert stack_line(run, records) == (
        "stack of 64 (jobs 0 1 2 3 ... 63), epoch 3/10: 63 training, test loss 100.00 to 163.00 (mean 131.92)"
    )
    # A sweep's job that trains alone: its number and its loss.
    run.members, run.live = members[7:8], lambda: [(0, members[7])]
    assert stack_line(run, records[7:8]) == "job 7, epoch 3/10: test loss 107.00"


def test_a_stacks_console_line_names_the_jobs_whose_code_tells_nothing_of_the_image(tmp_path: Path) -> None:
    members = [SimpleNamespace(folder=RunFolder(tmp_path / str(job))) for job in range(10)]
    run = SimpleNamespace(
        members=members,
        live=lambda: [(m, member) for m, member in enumerate(members)],
        epoch=2,
        settings=SimpleNamespace(trainer=SimpleNamespace(epochs=160)),
    )
    records = [{"test/loss": 170.0, "test/active_variables": 4} for _ in range(10)]
    records[9] = {"test/loss": 214.5, "test/active_variables": 0}  # frozen on one code
    line = stack_line(run, records)
    assert line.endswith("test loss 170.00 to 214.50 (mean 174.45); no active variable: job 9")
    records[3] = {"test/loss": 206.0, "test/active_variables": 0}
    assert stack_line(run, records).endswith("; no active variable: jobs 3 9")
    # Many such jobs are counted, not named; an epoch that was not scored names none.
    assert stack_line(run, [{"test/loss": 215.0, "test/active_variables": 0}] * 10).endswith(
        "; 10 jobs with no active variable"
    )
    assert "active" not in stack_line(run, [{}] * 10)
    run.members, run.live = members[9:], lambda: [(0, members[9])]
    assert stack_line(run, records[9:]) == "job 9, epoch 2/160: test loss 214.50; no active variable"


def test_a_run_warns_once_when_its_encoder_freezes_and_says_when_its_code_tells_again() -> None:
    said: list[tuple[str, str]] = []
    member = SimpleNamespace(
        settings=SimpleNamespace(model=SimpleNamespace(latent_dim=4, categorical_dim=8)),
        frozen_since=None,
        run_log=SimpleNamespace(
            info=lambda message: said.append(("info", message)),
            warning=lambda message: said.append(("warning", message)),
        ),
    )
    frozen = {"test/kl": 8.32, "test/perplexity": 1.0, "test/active_variables": 0}
    for record in (
        # Near the prior for every image: how training starts, no warning.
        {"epoch": 1, "test/kl": 0.05, "test/perplexity": 7.9, "test/active_variables": 0},
        {"epoch": 2} | frozen,
        {"epoch": 3},  # not scored
        {"epoch": 4} | frozen,
        {"epoch": 75, "test/kl": 8.0, "test/perplexity": 1.8, "test/active_variables": 1},
        {"epoch": 76, "test/kl": 7.9, "test/perplexity": 2.0, "test/active_variables": 2},
    ):
        watch_code(member, record)
    assert [level for level, _ in said] == ["warning", "info"]
    assert said[0][1].startswith("epoch 2: the encoder is frozen: it gives every image much the same code")
    assert "test KL 8.32 nats of at most 8.32, code perplexity 1.00" in said[0][1]
    again = "epoch 75: the code tells about the image again: 1 active variable (frozen from epoch 2)"
    assert said[1][1] == again
    assert member.frozen_since is None


def test_a_resumed_run_knows_since_when_its_encoder_is_frozen_and_does_not_warn_again() -> None:
    model = SimpleNamespace(latent_dim=4, categorical_dim=8)
    kept = [
        {"epoch": 1, "test/kl": 8.18, "test/perplexity": 1.0, "test/active_variables": 0},
        {"epoch": 2},
        {"epoch": 3, "test/kl": 8.32, "test/perplexity": 1.0, "test/active_variables": 0},
    ]
    since = None
    for record in kept:  # what a resumed run reads back from its metrics.jsonl
        since = frozen_from(since, record, model)
    assert since == 1
    said: list[str] = []
    member = SimpleNamespace(
        settings=SimpleNamespace(model=model),
        frozen_since=since,
        run_log=SimpleNamespace(info=said.append, warning=said.append),
    )
    watch_code(member, {"epoch": 4, "test/kl": 8.32, "test/perplexity": 1.0, "test/active_variables": 0})
    watch_code(member, {"epoch": 7, "test/kl": 6.1, "test/perplexity": 7.6, "test/active_variables": 4})
    assert said == ["epoch 7: the code tells about the image again: 4 active variables (frozen from epoch 1)"]


def test_an_epochs_line_says_how_many_latent_variables_tell_something_about_the_image() -> None:
    record = {
        "epoch": 3,
        "step": 1800,
        "temperature": 1.3,
        "train/loss_relaxed": 214.7,
        "train/loss_unrelaxed": 214.7,
        "test/loss": 214.3,
        "test/recon": 206.0,
        "test/kl": 8.32,
        "test/perplexity": 1.0,
        "test/active_variables": 0,
        "time/epoch_s": 30.0,
        "throughput/train_img_s": 2000.0,
    }
    line = epoch_line(record, 160, latent_dim=4)
    assert "test 214.30 (recon 206.00, kl 8.32, perplexity 1.00, active 0/4)" in line  # a frozen code
