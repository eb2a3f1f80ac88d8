"""The training application: config, run folder, logs, checkpoints, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import run_module, small_overrides
from vae_gumbel import training
from vae_gumbel.checkpoint import load_checkpoint, restore_optimizer, save_checkpoint
from vae_gumbel.config import validate
from vae_gumbel.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from vae_gumbel.tracking import read_metrics
from vae_gumbel.train import train

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
    "time/epoch_s",
    "throughput/train_img_s",
}
TIMING_KEYS = {"time/epoch_s", "throughput/train_img_s"}


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


# --- configuration -------------------------------------------------------------------------


def test_defaults_compose_to_the_documented_set_up(compose_train) -> None:
    settings = validate(compose_train(small=False))
    assert (settings.model.latent_dim, settings.model.categorical_dim) == (30, 10)
    assert settings.model.hidden == [512, 256]
    assert (settings.data.batch_size, settings.data.binarize) == (100, "dynamic")
    assert settings.estimator.name == "gumbel_softmax"
    temp = settings.temperature
    assert (temp.schedule, temp.initial, temp.min, temp.rate, temp.every) == (
        "exp_anneal",
        1.0,
        0.5,
        3e-5,
        1000,
    )
    assert (settings.optim.lr, settings.trainer.epochs, settings.seed, settings.resume) == (1e-3, 10, 0, None)


def test_overrides_and_groups_change_the_config(compose_train) -> None:
    cfg = compose_train("estimator=straight_through", "temperature=learned", "optim.lr=3e-4", small=False)
    settings = validate(cfg)
    assert settings.estimator.name == "straight_through"
    assert (settings.temperature.schedule, settings.temperature.min) == ("learned", 0.1)
    assert settings.optim.lr == 3e-4


def test_seed_notebook_experiment_reproduces_the_tutorial_set_up(compose_train) -> None:
    settings = validate(compose_train("experiment=seed_notebook", small=False))
    assert settings.data.binarize == "none"
    assert (settings.temperature.schedule, settings.temperature.initial) == ("constant", 1.0)
    assert (settings.model.latent_dim, settings.model.categorical_dim, settings.data.batch_size) == (
        30,
        10,
        100,
    )
    assert settings.trainer.epochs == 10


@pytest.mark.parametrize(
    "override, message",
    [
        ("temperature.initial=0", "temperature.initial must be > 0"),
        ("temperature.rate=-1e-4", "temperature.rate must be > 0"),
        ("temperature.min=2.0", "temperature.min must be <= initial"),
        ("model.latent_dim=0", "model.latent_dim must be >= 1"),
        ("model.categorical_dim=1", "model.categorical_dim must be >= 2"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("trainer.epochs=-1", "trainer.epochs must be >= 0"),
        ("trainer.device=tpu", "trainer.device must be one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
        ("data.binarize=half", "data.binarize must be one of \\['dynamic', 'static', 'none'\\]"),
        ("estimator.name=reinforce", "estimator.name must be one of"),
    ],
)
def test_bad_values_are_refused_naming_the_key(compose_train, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_train(override))


@pytest.mark.parametrize(
    "override, expected",
    [
        ("temperature.initial=-1", "error: temperature.initial must be > 0, got -1.0"),
        ("data.nope=1", "Could not override 'data.nope'"),
        ("data.batch_size=many", "data.batch_size"),
    ],
)
def test_cli_reports_a_bad_config_in_one_line_without_traceback(
    tmp_path: Path, mnist_root: Path, override: str, expected: str
) -> None:
    result = run_module(
        "vae_gumbel.train",
        *small_overrides(mnist_root),
        override,
        f"hydra.run.dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


# --- a real run through the command line ---------------------------------------------------------


def test_cli_run_writes_the_documented_run_folder(tmp_path: Path, mnist_root: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_module(
        "vae_gumbel.train",
        *small_overrides(mnist_root),
        "trainer.epochs=2",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert EPOCH_KEYS <= set(records[-1])
    assert records[-1]["step"] == 2 * 6  # 120 images in batches of 20
    for path in (
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "samples/epoch_001.png",
        "samples/epoch_002.png",
        ".hydra/config.yaml",
        "train.log",
        "status.json",
    ):
        assert (run_dir / path).is_file(), path
    assert "epoch 2/2" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"


def test_runs_started_together_get_their_own_folders(tmp_path: Path, mnist_root: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    command = [sys.executable, "-m", "vae_gumbel.train", *small_overrides(mnist_root), "trainer.epochs=0"]
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
    assert len(list((tmp_path / "outputs").glob("*/*"))) == 2


# --- logs ------------------------------------------------------------------------------------------


def test_tensorboard_has_the_metric_tags_the_temperature_and_the_sample_grid(
    compose_train, tmp_path: Path
) -> None:
    train(compose_train("trainer.epochs=2"), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert EPOCH_KEYS - {"epoch", "step"} <= scalars
    assert {"step/loss_relaxed", "step/loss_unrelaxed", "step/temperature"} <= scalars
    assert [e.step for e in events.Scalars("step/temperature")] == [2, 4, 6, 8, 10, 12]
    assert {"samples/prior", "samples/reconstruction", "code_usage"} <= set(events.Tags()["images"])
    # The HParams tab: the session summary and its final metrics, in the run's own folder.
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert "hparam/test_loss" in scalars


def test_sample_grid_is_an_8_by_8_png_of_digits(compose_train, tmp_path: Path) -> None:
    from PIL import Image

    train(compose_train(), tmp_path)
    with Image.open(tmp_path / "samples" / "epoch_001.png") as image:
        assert image.size == (8 * 30 + 2, 8 * 30 + 2)


# --- checkpoints and resume ------------------------------------------------------------------------


def test_resume_continues_exactly_like_an_uninterrupted_run(compose_train, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    train(compose_train("trainer.epochs=3", "temperature.every=1", "temperature.rate=0.05"), straight)
    interrupted = tmp_path / "interrupted"
    train(compose_train("trainer.epochs=1", "temperature.every=1", "temperature.rate=0.05"), interrupted)
    train(
        compose_train("trainer.epochs=3", "temperature.every=1", "temperature.rate=0.05", "resume=last"),
        interrupted,
    )
    expected = without_timing(read_metrics(straight / "metrics.jsonl"))
    assert without_timing(read_metrics(interrupted / "metrics.jsonl")) == expected
    assert expected[-1]["temperature"] < expected[0]["temperature"]  # annealing carried across the resume


def test_resume_from_another_run_folder_keeps_step_and_temperature(compose_train, tmp_path: Path) -> None:
    train(compose_train("trainer.epochs=1", "temperature.every=1", "temperature.rate=0.05"), tmp_path / "a")
    train(
        compose_train(
            "trainer.epochs=2", "temperature.every=1", "temperature.rate=0.05", f"resume={tmp_path / 'a'}"
        ),
        tmp_path / "b",
    )
    (record,) = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert record["epoch"] == 2 and record["step"] == 12
    assert record["temperature"] == pytest.approx(max(0.5, torch.exp(torch.tensor(-0.05 * 11)).item()))


def test_resuming_keeps_how_this_runs_adam_updates_and_loads_what_it_learned() -> None:
    """A checkpoint of a one-graph CUDA run holds capturable=True, one of a CPU run False; the
    resuming run keeps its own, or its updates would fail (here: capturable Adam on a CPU)."""
    saved = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.5)
    saved.param_groups[0]["params"][0].grad = torch.ones(3)
    saved.step()
    state = saved.state_dict()
    state["param_groups"][0]["capturable"] = True  # as a CUDA run with trainer.compile=auto saves it
    weight = torch.nn.Parameter(torch.ones(3))
    resumed = torch.optim.Adam([weight], lr=1e-3)
    restore_optimizer(resumed, state)
    assert resumed.param_groups[0]["capturable"] is False and resumed.param_groups[0]["lr"] == 0.5
    weight.grad = torch.ones(3)
    resumed.step()
    assert float(resumed.state[weight]["step"]) == 2


def test_resume_last_without_a_checkpoint_starts_fresh(compose_train, tmp_path: Path) -> None:
    metrics = train(compose_train("resume=last"), tmp_path)
    assert metrics["epoch"] == 1 and metrics["step"] == 6


def test_checkpoint_is_self_describing_and_loads_weights_only(compose_train, tmp_path: Path) -> None:
    train(compose_train("temperature=learned"), tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["architecture"] == {
        "input_dim": 784,
        "latent_dim": 4,
        "categorical_dim": 5,
        "hidden": [32],
    }
    assert {"model", "optimizer", "temperature", "rng", "config", "step", "epoch"} <= set(checkpoint)
    assert set(checkpoint["rng"]) == {"torch", "cuda", "python", "numpy"}
    assert checkpoint["config"]["model"]["latent_dim"] == 4
    assert "raw" in checkpoint["temperature"]


def test_a_leftover_temporary_file_does_not_break_loading_or_resuming(compose_train, tmp_path: Path) -> None:
    train(compose_train(), tmp_path)
    (tmp_path / "checkpoints" / ".last.pt.tmp-99999").write_bytes(b"half a checkpoint")
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)["epoch"] == 2


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"format_version": 1, "value": torch.ones(3)})
    before = path.read_bytes()

    def crash(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format_version": 1, "value": torch.zeros(3)})
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_a_corrupt_checkpoint_is_a_clear_error(compose_train, tmp_path: Path) -> None:
    train(compose_train(), tmp_path)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*last.pt.*corrupt"):
        train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)


def test_an_incompatible_checkpoint_says_what_differs(compose_train, tmp_path: Path) -> None:
    train(compose_train(), tmp_path / "a")
    with pytest.raises(
        CheckpointError, match=r"latent_dim: checkpoint 4 vs config 6; hidden: checkpoint \[32\]"
    ):
        train(
            compose_train("model.latent_dim=6", "model.hidden=[16]", f"resume={tmp_path / 'a'}"),
            tmp_path / "b",
        )


def test_a_missing_resume_path_is_a_clear_error(compose_train, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train(compose_train(f"resume={tmp_path / 'nowhere.pt'}"), tmp_path / "run")


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    compose_train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(compose_train(), tmp_path)
    good = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    real = training.relaxed_and_unrelaxed
    calls = []

    def poisoned(model, x, tau, estimator, generator=None, prior_tau=None):
        losses = real(model, x, tau, estimator, generator, prior_tau)
        calls.append(1)
        if len(calls) == 3:  # the third step of the resumed epoch: global step 9
            return losses._replace(loss_relaxed=losses.loss_relaxed * float("nan"))
        return losses

    monkeypatch.setattr(training, "relaxed_and_unrelaxed", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite at step 9"):
        train(compose_train("trainer.epochs=2", "resume=last"), tmp_path)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == good
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "failed" and "step 9" in status["error"]


def test_missing_data_with_download_off_is_a_clear_error(compose_train, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.download=false"):
        train(compose_train(f"data.root={tmp_path / 'empty'}"), tmp_path / "run")


def test_fixture_data_fails_the_real_checksums(compose_train, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="SHA-256"):
        train(compose_train("data.verify_checksums=true"), tmp_path)


def test_training_lowers_the_test_loss(compose_train, tmp_path: Path) -> None:
    records = [train(compose_train(f"trainer.epochs={n}"), tmp_path / str(n)) for n in (1, 8)]
    assert records[1]["test/loss"] < records[0]["test/loss"] - 5
