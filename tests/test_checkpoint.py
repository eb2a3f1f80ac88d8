"""The checkpoint format: self-describing, weights-only loadable, atomic, upgraded from format 1,
and one member of a run out and back in again."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import CUDA_MARKS, tiny_run
from vae_gumbel.checkpoint import (
    FORMAT_VERSION,
    check_same_job,
    kept_on_its_own,
    load_checkpoint,
    member_checkpoint,
    member_checkpoints,
    model_from_checkpoint,
    recorded_data_root,
    restore_member,
    save_checkpoint,
)
from vae_gumbel.config import compose_settings
from vae_gumbel.errors import CheckpointError, WriteError
from vae_gumbel.model import member_state
from vae_gumbel.provenance import environment
from vae_gumbel.run import Member, build_run
from vae_gumbel.run_folder import RunFolder
from vae_gumbel.train import train


@pytest.fixture(scope="module")
def learned_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of one epoch with a learned temperature (so every part of a checkpoint is filled)."""
    from tests.conftest import compose_config

    folder = tmp_path_factory.mktemp("run")
    train(compose_config("train", [*tiny_run(mnist_root), "temperature=learned"]), folder)
    return folder


def test_checkpoint_is_self_describing_and_loads_weights_only(learned_run: Path) -> None:
    checkpoint = torch.load(RunFolder(learned_run).checkpoint("last"), weights_only=True)
    assert checkpoint["format_version"] == FORMAT_VERSION
    assert checkpoint["architecture"] == {
        "name": "mlp",
        "input_dim": 784,
        "latent_dim": 4,
        "categorical_dim": 5,
        "hidden": [32],
    }
    assert {"model", "optimizer", "temperature", "rng", "config", "step", "epoch"} <= set(checkpoint)
    assert set(checkpoint["rng"]) == {"torch", "cuda", "python", "numpy"}
    assert checkpoint["config"]["model"]["latent_dim"] == 4
    assert checkpoint["temperature"]["raw"].shape == ()  # one model's temperature
    assert checkpoint["model"]["encoder.0.weight"].shape == (32, 784)  # as a plain model's state_dict
    assert list(checkpoint["optimizer"]["state"]) == list(range(9))  # 8 weights and the temperature
    assert checkpoint["environment"] == environment(torch.device("cpu"))  # what it was trained with


def test_a_checkpoint_loads_into_the_model_it_describes(learned_run: Path) -> None:
    checkpoint = load_checkpoint(learned_run)
    model = model_from_checkpoint(checkpoint)
    assert torch.equal(model.state_dict()["decoder.2.bias"], checkpoint["model"]["decoder.2.bias"])


def test_a_checkpoint_whose_weights_do_not_fit_its_model_is_refused(learned_run: Path) -> None:
    checkpoint = load_checkpoint(learned_run)
    checkpoint["architecture"]["latent_dim"] = 5
    with pytest.raises(CheckpointError, match="weights do not fit"):
        model_from_checkpoint(checkpoint, source="bad.pt")


def test_a_format_1_checkpoint_is_upgraded_on_load(learned_run: Path, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(learned_run)
    old = {**checkpoint, "format_version": 1, "architecture": dict(checkpoint["architecture"])}
    del old["architecture"]["name"]
    config = {
        key: dict(value) if isinstance(value, dict) else value for key, value in checkpoint["config"].items()
    }
    for group in ("data", "model", "optim"):
        del config[group]["name"]
    config["estimator"].update(kl="relaxed", prior_temperature=0.3)
    config["temperature"]["schedule"] = config["temperature"].pop("name")
    del config["objective"]
    old["config"] = config
    save_checkpoint(tmp_path / "v1.pt", old)
    upgraded = load_checkpoint(tmp_path / "v1.pt")
    assert upgraded["format_version"] == FORMAT_VERSION and upgraded["architecture"]["name"] == "mlp"
    assert upgraded["config"]["objective"] == {"name": "elbo", "kl": "relaxed", "prior_temperature": 0.3}
    assert upgraded["config"]["temperature"]["name"] == "learned"
    assert (upgraded["config"]["data"]["name"], upgraded["config"]["optim"]["name"]) == ("mnist", "adam")
    assert torch.equal(upgraded["model"]["encoder.0.weight"], checkpoint["model"]["encoder.0.weight"])


def test_a_newer_format_is_refused_naming_the_version_that_wrote_it(
    learned_run: Path, tmp_path: Path
) -> None:
    import vae_gumbel

    checkpoint = load_checkpoint(learned_run)
    future = {
        **checkpoint,
        "format_version": 99,
        "environment": {**checkpoint["environment"], "vae_gumbel": "9.1"},
    }
    save_checkpoint(tmp_path / "future.pt", future)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(tmp_path / "future.pt")
    assert str(refused.value) == (
        f"{tmp_path / 'future.pt'} has checkpoint format 99, and vae-gumbel {vae_gumbel.__version__} reads "
        f"formats [1, {FORMAT_VERSION}]; it was written by vae-gumbel 9.1: read it with that version or a "
        "later one"
    )


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("empty", "the file is empty"),
        ("cut short", "the zip archive ends before its directory, after "),
        ("changed", "fails its CRC-32 check: the file changed after it was written"),
        ("zeros", "not the zip archive that torch.save writes"),
        ("text", "not the zip archive that torch.save writes"),
    ],
)
def test_a_damaged_checkpoint_says_what_is_wrong_without_torchs_unsafe_advice(
    learned_run: Path, tmp_path: Path, damage: str, reason: str
) -> None:
    good = RunFolder(learned_run).checkpoint("last").read_bytes()
    damaged = {
        "empty": b"",
        "cut short": good[: len(good) // 2],
        "changed": good[: len(good) // 2] + bytes(100) + good[len(good) // 2 + 100 :],
        "zeros": bytes(100_000),
        "text": b"\n",
    }[damage]
    (tmp_path / "last.pt").write_bytes(damaged)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path / "last.pt")
    message = str(caught.value)
    assert reason in message and "corrupt" in message
    assert "weights_only" not in message and "miniz" not in message and "\n" not in message


def test_a_damaged_checkpoint_of_a_run_points_to_the_runs_other_one_unless_they_are_one_file(
    learned_run: Path, tmp_path: Path
) -> None:
    good = RunFolder(learned_run).checkpoint("last").read_bytes()
    run = RunFolder(tmp_path)
    best, last = run.checkpoint("best"), run.checkpoint("last")
    best.parent.mkdir()
    best.write_bytes(good[:-1000])
    last.write_bytes(good)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path, which="best")
    assert str(caught.value).endswith(f": use another checkpoint, such as the run's last.pt ({last})")
    last.unlink()
    os.link(best, last)  # best.pt and last.pt of one epoch are one file
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(tmp_path, which="best")
    assert str(caught.value).endswith(": use another checkpoint (best.pt or an earlier run)")


@pytest.mark.parametrize(
    ("part", "name", "values", "says"),
    [
        (
            "model",
            "decoder.2.bias",
            [float("nan")],
            "its weight decoder.2.bias holds 1 NaN or infinite value",
        ),
        (
            "model",
            "encoder.0.weight",
            [float("inf")] * 3,
            "its weight encoder.0.weight holds 3 NaN or infinite values",
        ),
        ("temperature", "raw", float("nan"), "its weight raw holds 1 NaN or infinite value"),
    ],
)
def test_a_checkpoint_with_non_finite_weights_is_refused_for_the_bounds_and_pictures_it_would_spoil(
    learned_run: Path, tmp_path: Path, part: str, name: str, values, says: str
) -> None:
    checkpoint = torch.load(RunFolder(learned_run).checkpoint("last"), weights_only=True)
    weight = checkpoint[part][name]
    if weight.dim():
        weight.view(-1)[: len(values)] = torch.tensor(values)
    else:
        weight.fill_(values)
    torch.save(checkpoint, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=f"^cannot read checkpoint .*edited.pt \\({says}"):
        load_checkpoint(tmp_path / "edited.pt")
    load_checkpoint(RunFolder(learned_run).checkpoint("last"))  # the file it came from is whole


def test_a_member_saved_and_restored_is_the_same_member(
    mnist_root: Path, learned_run: Path, tmp_path: Path
) -> None:
    settings = compose_settings([*tiny_run(mnist_root), "temperature=learned"])
    saved = load_checkpoint(learned_run)
    run = build_run([Member(settings, {}, None)] * 2)
    restore_member(run, 1, saved, source="last.pt")
    again = member_checkpoint(run, 1, {"epoch": 1})
    for name, value in saved["model"].items():
        assert torch.equal(again["model"][name], value), name
    assert torch.equal(again["temperature"]["raw"], saved["temperature"]["raw"])
    for index, state in saved["optimizer"]["state"].items():
        assert torch.equal(again["optimizer"]["state"][index]["exp_avg"], state["exp_avg"])
    # Member 0 was left alone.
    assert not torch.equal(member_state(run.model, 0)["encoder.0.weight"], saved["model"]["encoder.0.weight"])
    # Copied in the stack's memory order, and written in a lone model's.
    assert not again["model"]["encoder.0.weight"].is_contiguous()
    save_checkpoint(tmp_path / "member.pt", again)
    written = load_checkpoint(tmp_path / "member.pt")
    moments = [value for state in written["optimizer"]["state"].values() for value in state.values()]
    assert all(value.is_contiguous() for value in [*written["model"].values(), *moments])
    for name, value in again["model"].items():
        assert torch.equal(written["model"][name], value), name


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA_MARKS)])
def test_a_checkpoint_is_a_copy_that_training_does_not_change(
    mnist_root: Path, tmp_path: Path, device: str
) -> None:
    settings = compose_settings([*tiny_run(mnist_root), f"trainer.device={device}"])
    run = build_run([Member(settings, {}, None)] * 3)
    checkpoints = member_checkpoints(run, {1: {"epoch": 0}, 2: {"epoch": 0}})
    before = {m: member_state(run.model, m)["encoder.0.weight"].cpu().clone() for m in (1, 2)}
    assert checkpoints[1]["model"]["encoder.0.weight"].device.type == "cpu"  # what the writers write
    run.train_epoch()
    assert not torch.equal(member_state(run.model, 1)["encoder.0.weight"].cpu(), before[1])
    for m in (1, 2):
        assert torch.equal(checkpoints[m]["model"]["encoder.0.weight"].cpu(), before[m])
        save_checkpoint(tmp_path / f"{m}.pt", checkpoints[m])
        written = torch.load(tmp_path / f"{m}.pt", weights_only=True)  # where the file puts them
        assert torch.equal(written["model"]["encoder.0.weight"], before[m])
        weights = written["model"].values()
        assert all(value.device.type == "cpu" and value.is_contiguous() for value in weights)
    assert checkpoints[1]["rng"] is checkpoints[2]["rng"]  # captured once for the stack


def test_a_members_file_holds_that_member_alone_though_its_stack_left_the_device_whole(
    mnist_root: Path, tmp_path: Path
) -> None:
    settings = compose_settings(tiny_run(mnist_root))
    lone, stack = build_run([Member(settings, {}, None)]), build_run([Member(settings, {}, None)] * 4)
    for run in (lone, stack):
        run.train_epoch()  # so that the optimizer has moments to save
    save_checkpoint(tmp_path / "lone.pt", member_checkpoint(lone, 0, {"epoch": 1}))
    save_checkpoint(tmp_path / "member.pt", member_checkpoint(stack, 3, {"epoch": 1}))
    lone_size = (tmp_path / "lone.pt").stat().st_size
    assert (tmp_path / "member.pt").stat().st_size == pytest.approx(lone_size, rel=0.01)
    # Kept past its epoch, a member's checkpoint no longer keeps the whole stack's copy alive.
    kept = kept_on_its_own(member_checkpoint(stack, 3, {"epoch": 1}))
    moments = [value for state in kept["optimizer"]["state"].values() for value in state.values()]
    assert all(
        value.untyped_storage().nbytes() == value.nbytes for value in [*kept["model"].values(), *moments]
    )


@pytest.mark.parametrize(
    "failure, free, reason, remedy",
    [
        # What torch.save says when the disk fills up under its zip writer.
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 3 vs 1"),
            0,
            "no space left on device",
            "Free some space",
        ),
        (OSError(errno.EIO, "Input/output error"), 10**9, "input/output error", "Put that right"),
    ],
    ids=["disk-full", "io-error"],
)
def test_a_failed_save_says_why_and_leaves_the_previous_checkpoint_intact(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    free: int,
    reason: str,
    remedy: str,
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"format_version": 1, "value": torch.ones(3)})
    before = path.read_bytes()

    def crash(obj, handle):
        handle.write(b"partial")
        raise failure

    def disk_usage(folder):  # a full disk has room again once the partial file is removed
        left = free if any(".partial." in name.name for name in Path(folder).iterdir()) else 10**9
        return shutil._ntuple_diskusage(10**12, 10**12 - left, left)

    monkeypatch.setattr(torch, "save", crash)
    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    with pytest.raises(
        WriteError, match=rf"could not write checkpoint {path}: {reason}; .* is kept\. {remedy}.*resume=last"
    ):
        save_checkpoint(path, {"format_version": 1, "value": torch.zeros(3)})
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_a_leftover_temporary_file_does_not_break_loading(learned_run: Path) -> None:
    leftover = RunFolder(learned_run).checkpoint("last").with_name(".last.99999.partial.pt")
    leftover.write_bytes(b"half a checkpoint")
    try:
        assert load_checkpoint(learned_run)["epoch"] == 1
    finally:
        leftover.unlink()


def test_a_sweep_job_continues_its_folder_only_with_the_swept_values_its_run_had(
    mnist_root: Path, learned_run: Path
) -> None:
    checkpoint = load_checkpoint(learned_run)
    settings = compose_settings([*tiny_run(mnist_root), "temperature=learned", "optim.lr=0.002", "seed=7"])
    # What the sweep varies must be what the run had: folder 0 holds job 0's run, not another's.
    with pytest.raises(
        CheckpointError, match=r"another job of this sweep: optim.lr \(checkpoint 0.001, now 0.002\)"
    ):
        check_same_job(checkpoint, settings, {"optim.lr"}, learned_run)
    with pytest.raises(CheckpointError, match=r"seed \(checkpoint 0, now 7\).*hydra.sweep.dir"):
        check_same_job(checkpoint, settings, {"seed", "estimator"}, learned_run)
    # A config group swept stands for every setting in it.
    other = compose_settings([*tiny_run(mnist_root), "temperature=learned", "estimator=straight_through"])
    with pytest.raises(CheckpointError, match="estimator.name"):
        check_same_job(checkpoint, other, {"estimator"}, learned_run)
    # What the whole sweep changes (not swept) is a change of the run's own, taken as a resume takes it.
    check_same_job(checkpoint, settings, {"temperature.initial"}, learned_run)
    check_same_job(checkpoint, settings, set(), learned_run)


@pytest.mark.parametrize(
    ("root", "launched", "data_there", "found"),
    [
        ("data", "project", True, "project/data"),
        ("data", "project", False, "data"),  # moved or deleted since: as given, from here
        ("data", None, True, "data"),  # a run started from Python records no launch directory
        ("/abs/data", "project", True, "/abs/data"),
    ],
    ids=["launched there", "gone from there", "not recorded", "absolute"],
)
def test_a_relative_data_root_is_where_the_run_was_launched_while_the_data_is_there(
    tmp_path: Path, mnist_root: Path, root: str, launched: str | None, data_there: bool, found: str
) -> None:
    run = tmp_path / "outputs" / "run"
    (run / "checkpoints").mkdir(parents=True)
    if launched is not None:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {tmp_path / launched}\n")
    if data_there:
        shutil.copytree(mnist_root / "MNIST", tmp_path / "project" / "data" / "MNIST")
    checkpoint = {"config": {"data": {"name": "mnist", "root": root}}}
    expected = str(tmp_path / found) if found.startswith("project") else found
    assert recorded_data_root(checkpoint, run / "checkpoints" / "best.pt") == expected
