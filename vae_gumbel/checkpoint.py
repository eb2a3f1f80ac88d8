"""The checkpoint format: a self-describing dict of plain values and tensors.

A checkpoint holds everything needed to rebuild one model (its kind, sizes and the resolved
config) and to continue its training exactly (optimizer, temperature, step, epoch, RNG states).
It contains only dicts, lists, tuples, numbers, strings and tensors, so it loads with
``torch.load(..., weights_only=True)``. Writes go to a temporary file in the same folder and
are moved into place with ``os.replace``, so a crash never leaves a broken file; a load checks
the archive's CRC-32 sums first, so a file damaged since is refused rather than read.

``member_checkpoint`` and ``restore_member`` are an inverse pair: one member of a stacked run
out to a checkpoint, and a checkpoint back into one member.
"""

from __future__ import annotations

import copy
import os
import pickle
import random
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import vae_gumbel
from vae_gumbel import files
from vae_gumbel.data import ImageSet, load_test_set, load_validation_set
from vae_gumbel.datasets import DATASETS, holds_raw_files
from vae_gumbel.errors import CheckpointError, UnreadableCheckpoint, WriteError, first_line
from vae_gumbel.faults import pause
from vae_gumbel.files import CONTINUE_RUN, partial_path, replacing
from vae_gumbel.model import CategoricalVAE, member_state, model_with_weights
from vae_gumbel.provenance import environment
from vae_gumbel.run_folder import CHECKPOINTS, RunFolder, resolve_checkpoint

if TYPE_CHECKING:
    from vae_gumbel.run import Run

# 2: every config group has a name (data, model, optim); the KL choice moved to objective.kl;
# temperature.schedule became temperature.name; the architecture names its model kind.
FORMAT_VERSION = 2
REQUIRED_KEYS = ("format_version", "architecture", "model", "step", "epoch", "config")


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Writes ``checkpoint`` to ``path`` atomically (a temporary file, fsync, then os.replace), its
    tensors in plain memory order whatever order they are in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(path) as handle:
            try:
                torch.save(kept_on_its_own(checkpoint), handle)
                handle.flush()
                os.fsync(handle.fileno())
            except (OSError, RuntimeError) as err:
                # Judged while the partial file still fills the disk: once it is removed, a full
                # disk has room again.
                raise unwritable(path, err) from err
            pause("checkpoint")
    except OSError as err:
        raise unwritable(path, err) from err


def unwritable(path: Path, err: Exception) -> WriteError:
    """Gives the error for a checkpoint that could not be written, saying why in plain words."""
    kept = "the checkpoint written before it is kept"
    return files.unwritable(path, err, "checkpoint", CONTINUE_RUN, kept=kept)


def link_checkpoint(source: str | Path, path: str | Path) -> None:
    """Makes ``path`` the same file as the checkpoint at ``source`` (a hard link, moved into place
    atomically): best.pt and last.pt of the same epoch are written once."""
    path = Path(path)
    temporary = partial_path(path)
    try:
        temporary.unlink(missing_ok=True)
        os.link(source, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _upgrade_from_1(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Gives a format-1 checkpoint in format 2: the same weights and state, the config renamed."""
    upgraded = copy.deepcopy({k: v for k, v in checkpoint.items() if k not in ("model", "optimizer")})
    config = upgraded["config"]
    estimator = config.get("estimator", {})
    kl, prior = estimator.pop("kl", "analytic"), estimator.pop("prior_temperature", 0.5)
    config.setdefault("objective", {"name": "elbo", "kl": kl, "prior_temperature": prior})
    temperature = config.get("temperature", {})
    if "schedule" in temperature:
        temperature["name"] = temperature.pop("schedule")
    config.get("data", {}).setdefault("name", "mnist")
    config.get("model", {}).setdefault("name", "mlp")
    config.get("optim", {}).setdefault("name", "adam")
    upgraded["architecture"].setdefault("name", "mlp")
    return {
        **upgraded,
        "model": checkpoint["model"],
        "optimizer": checkpoint.get("optimizer", {}),
        "format_version": 2,
    }


UPGRADES = {1: _upgrade_from_1}


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", which: str = "last"
) -> dict[str, Any]:
    """Gives the checkpoint at ``path`` (a file, or a run folder's checkpoints/{which}.pt) in the
    current format, or raises CheckpointError."""
    file = resolve_checkpoint(path, which)
    if damage := failed_checksum(file):
        raise UnreadableCheckpoint(file, damage, another_checkpoint(file))
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:
        raise unreadable(file, err) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(f"{file} is not a vae-gumbel checkpoint (expected keys {list(REQUIRED_KEYS)})")
    version = checkpoint["format_version"]
    while version in UPGRADES:
        checkpoint = UPGRADES[version](checkpoint)
        version = checkpoint["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format {checkpoint['format_version']}, and vae-gumbel "
            f"{vae_gumbel.__version__} reads formats {sorted({*UPGRADES, FORMAT_VERSION})}"
            + newer_format_advice(checkpoint)
        )
    if damage := non_finite_weights(checkpoint):
        raise UnreadableCheckpoint(file, damage, another_checkpoint(file))
    return checkpoint


def non_finite_weights(checkpoint: dict[str, Any]) -> str | None:
    """Gives which weight of a checkpoint (the model's, or a learned temperature's) holds NaN or
    infinite values, in a few words; None if every one is finite. The trainer never writes such a
    checkpoint (a member whose weights turn non-finite keeps its last good one), so a file that
    holds one was changed after it was written, and its bounds and pictures would be NaN."""
    temperature = checkpoint.get("temperature")
    named = {**checkpoint["model"], **(temperature if isinstance(temperature, dict) else {})}
    for name, value in named.items():
        if torch.is_tensor(value) and value.is_floating_point():
            count = int((~torch.isfinite(value)).sum())
            if count:
                return f"its weight {name} holds {count:,} NaN or infinite value{'s' if count > 1 else ''}"
    return None


def newer_format_advice(checkpoint: dict[str, Any]) -> str:
    """Gives what to do with a checkpoint of a format newer than this version's: read it with the
    version that wrote it (its environment names it), or a newer one."""
    if not isinstance(version := checkpoint["format_version"], int) or version < FORMAT_VERSION:
        return ""
    wrote = (checkpoint.get("environment") or {}).get("vae_gumbel")
    by = f"vae-gumbel {wrote}" if wrote else "a newer vae-gumbel"
    return f"; it was written by {by}: read it with that version or a later one"


def failed_checksum(file: Path) -> str | None:
    """Gives which file inside a checkpoint's zip archive fails its CRC-32 check, in a few words;
    None for an intact archive, or a file that is no whole archive (torch.load says what it is).

    torch.load does not check the checksums that torch.save writes, so a checkpoint damaged after
    it was written (a bad copy, a failing disk) would load with wrong weights. Checking them costs
    about 6 ms for the default model's 14.7 MB."""
    try:
        with zipfile.ZipFile(file) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None
    if damaged is None:
        return None
    return f"{damaged} inside it fails its CRC-32 check: the file changed after it was written"


def unreadable(file: Path, err: Exception) -> CheckpointError:
    """Gives the error for a checkpoint torch.load refused: unsafe (it would run code), or corrupt.

    torch's own message advises loading again with weights_only=False, which is exactly what must
    not be done with a file one does not trust, so only its reason is quoted.
    """
    text = str(err)
    unsafe = re.search(r"GLOBAL (\S+)", text)
    if isinstance(err, pickle.UnpicklingError) and unsafe:
        return CheckpointError(
            f"{file} holds objects a vae-gumbel checkpoint never holds (a reference to {unsafe.group(1)}), "
            "so it was refused for safety and not loaded; use a checkpoint that vae-gumbel wrote"
        )
    return UnreadableCheckpoint(file, load_failure(file, err), another_checkpoint(file))


def another_checkpoint(file: Path) -> str:
    """Gives the advice for a checkpoint that cannot be read: the run's other checkpoint where it
    is a file of its own (best.pt and last.pt of one epoch are one file, and share its damage)."""
    folder = RunFolder.of_checkpoint(file)
    for which in CHECKPOINTS:
        other = folder.checkpoint(which)
        if other.is_file() and not os.path.samefile(other, file):
            return f"use another checkpoint, such as the run's {other.name} ({other})"
    return UnreadableCheckpoint.ADVICE


ZIP_MAGIC = b"PK\x03\x04"  # how every file torch.save writes begins


def load_failure(file: Path, err: Exception) -> str:
    """Gives the reason torch.load failed on a file, in a few words and without torch's advice.

    An empty file (a copy that never finished) raises a bare EOFError; a file that is not the zip
    archive torch.save writes gets an unpickler's opcode, or is called a "legacy .tar" file with
    the advice to turn the safety check off; an archive cut short gets "Invalid argument" or a
    paragraph about miniz; any other damaged archive gets that paragraph after its reason.
    """
    try:
        with file.open("rb") as handle:
            start = handle.read(len(ZIP_MAGIC))
    except OSError:
        return first_line(err)  # torch could not open it either, and says why
    if not start:
        return "the file is empty"
    if start != ZIP_MAGIC:
        return "it is not the zip archive that torch.save writes"
    if not zipfile.is_zipfile(file):
        size = file.stat().st_size
        return f"the zip archive ends before its directory, after {size:,} bytes: it is cut short"
    lines = [line.strip() for line in str(err).splitlines()]
    marker = next((i for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
    if marker is not None:
        return next((line for line in lines[marker + 1 :] if line), "")
    return first_line(err).split(". This is an internal miniz error")[0]


def model_from_checkpoint(checkpoint: dict[str, Any], source: str = "checkpoint") -> CategoricalVAE:
    """Gives the model a checkpoint describes, with its weights loaded (on the CPU)."""
    architecture = checkpoint["architecture"]
    try:
        model = model_with_weights(architecture, checkpoint["model"])
    except Exception as err:
        raise CheckpointError(
            f"{source}: its weights do not fit the model it describes ({architecture}): {first_line(err)}"
        ) from None
    return model


def test_set_of(
    checkpoint: dict[str, Any],
    device: torch.device,
    root: str | None = None,
    limit: int | None = None,
    split: str = "test",
    file: Path | None = None,
) -> ImageSet:
    """Gives the test set of the run that wrote ``checkpoint`` (from ``file``), binarized as it was:
    from its data root (``recorded_data_root``) unless ``root`` says otherwise, the first ``limit``
    images (default: all); with ``split="val"``, the whole validation set that run held out instead."""
    from vae_gumbel.config import DataConfig, validate  # the schema imports this module's neighbours

    saved = {**checkpoint["config"]["data"], "test_limit": limit}
    if root is not None:
        saved["root"] = root
    elif file is not None:
        saved["root"] = recorded_data_root(checkpoint, file)
    settings = validate(saved, DataConfig)
    return load_validation_set(settings, device) if split == "val" else load_test_set(settings, device)


def recorded_data_root(checkpoint: dict[str, Any], file: Path) -> str:
    """Gives the data root of the run that wrote ``checkpoint`` to ``file``, so that its data is
    found from any directory rather than fetched again into this one: a relative ``data.root`` (the
    default, ``data``) is relative to where that run was launched (``RunFolder.launch_directory``),
    where that is known and still holds the data set; else to this directory, as given."""
    data = checkpoint["config"]["data"]
    root = str(data.get("root", "data"))
    if Path(root).is_absolute():
        return root
    launched = RunFolder.of_checkpoint(Path(file)).launch_directory()
    source = DATASETS.get(data.get("name", "mnist"))
    if launched is None or source is None or not holds_raw_files(source.raw_folder(launched / root), source):
        return root
    return str(launched / root)


def check_compatible(
    checkpoint: dict[str, Any], architecture: dict[str, Any], source: str = "checkpoint"
) -> None:
    """Raises CheckpointError listing every size in which ``checkpoint`` and ``architecture`` differ."""
    saved = checkpoint["architecture"]
    differences = [
        f"{key}: checkpoint {saved.get(key)!r} vs config {architecture[key]!r}"
        for key in architecture
        if saved.get(key) != architecture[key]
    ]
    if differences:
        raise CheckpointError(
            f"{source} does not fit the configured model ({'; '.join(differences)}); "
            "use matching model.* settings or another checkpoint"
        )


def _tensors(value: Any, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Gives ``value`` with ``change`` applied to every tensor in it (in dicts, lists and tuples)."""
    if isinstance(value, torch.Tensor):
        return change(value)
    if isinstance(value, dict):
        return {key: _tensors(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tensors(item, change) for item in value)
    return value


def _copy(value: Any) -> Any:
    """Gives a CPU copy of every tensor in ``value``, so the copy no longer changes with training.
    Each keeps its memory order: a stacked weight's member is stored transposed (``model.stack``),
    and reordering it here would cost the training thread several times the copy itself;
    ``save_checkpoint`` writes it in plain order, off that thread."""
    return _tensors(value, lambda tensor: tensor.detach().to("cpu", copy=True))


def _on_its_own(tensor: torch.Tensor) -> torch.Tensor:
    """Gives ``tensor`` in plain memory order and in memory of its own (itself, if it is so)."""
    if tensor.is_contiguous() and tensor.untyped_storage().nbytes() == tensor.nbytes:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)


def kept_on_its_own(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Gives ``checkpoint`` with every tensor in plain memory order and in memory of its own, as a
    lone model has it: what ``save_checkpoint`` writes (``torch.save`` writes the whole memory a
    tensor is a view of, which for a member's slice of a stack's copy, ``member_checkpoints``,
    holds every member), and what a checkpoint kept past its epoch needs, so that it does not keep
    its whole stack's copy alive."""
    return _tensors(checkpoint, _on_its_own)


def member_checkpoint(run: Run, m: int, record: dict[str, Any]) -> dict[str, Any]:
    """Gives member m of ``run`` as a checkpoint of its own: plain values and CPU copies of tensors."""
    return member_checkpoints(run, {m: record})[m]


def member_checkpoints(run: Run, records: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Gives members of ``run`` as checkpoints of their own, by member: each member m's with its
    epoch's ``records[m]``.

    What the members share at this instant (the random generators' states, the environment) is
    captured once for all of them, not once per member. Each stacked tensor (weights, optimizer
    state, a learned temperature) leaves the device whole, in one copy, and each member's checkpoint
    holds views of its slice of that copy. A copy per member and tensor was 2,000 copies an epoch
    for a stack of 64, each of which gives up the GIL and waits to win it back: beside busy writer
    threads on 2 CPU cores they took 1.4-3.0 s against 0.6-0.8 s now (docs/performance.md).
    ``save_checkpoint`` writes each member's slice alone; ``kept_on_its_own`` gives a checkpoint
    kept past its epoch memory of its own.
    """
    shared = {
        "format_version": FORMAT_VERSION,
        "architecture": run.model.architecture(),
        "step": run.step,
        "epoch": run.epoch,
        "rng": capture_rng_state(),
        "environment": environment(run.device),
    }
    weights = _copy(run.model.state_dict())
    optimizer_state = _copy(run.optimizer.state)
    learned = _copy(run.schedule.state_dict()) if run.schedule.learned else {}
    checkpoints = {}
    for m, record in records.items():
        member = run.members[m]
        checkpoints[m] = {
            **shared,
            "model": member_state(run.model, m, weights),
            "optimizer": run.optimizer.member_state(m, optimizer_state),
            "temperature": {name: value[m] for name, value in learned.items()},
            "best_test_loss": member.best_test_loss,
            "best_val_loss": member.best_val_loss,
            "metrics": {k: v for k, v in record.items() if isinstance(v, int | float)},
            "config": _copy(member.config),
        }
    return checkpoints


# Settings a run cannot change halfway: what its model is, what it optimises, and on what data.
FIXED_SETTINGS = (
    "model.",
    "estimator.",
    "objective.",
    "data.name",
    "data.binarize",
    "data.validation",
    "temperature.name",
)
# Settings that say how a job starts, not what it trains.
START_SETTINGS = ("resume", "resume_weights_only")


def changed_settings(saved_config: dict[str, Any], settings: Any) -> dict[str, tuple[Any, Any]]:
    """Gives every setting (dotted key) whose value differs between a checkpoint's config and the
    current settings, as (checkpoint's value, current value)."""
    from vae_gumbel.config import TrainConfig, flat_settings, validate

    saved = flat_settings(validate(saved_config, TrainConfig))
    current = flat_settings(settings)
    return {
        key: (saved.get(key), value)
        for key, value in current.items()
        if saved.get(key) != value and not key.startswith(START_SETTINGS)
    }


def listed(changes: dict[str, tuple[Any, Any]]) -> str:
    """Gives changed settings as 'key (checkpoint old, now new), ...'."""
    return ", ".join(f"{key} (checkpoint {old!r}, now {new!r})" for key, (old, new) in changes.items())


def check_same_job(checkpoint: dict[str, Any], settings: Any, swept: Iterable[str], folder: Path) -> None:
    """Raises CheckpointError if a job of a sweep that continues the run in its own ``folder`` has
    other values of the settings its sweep varies (``swept``: keys or config groups) than that run.

    Hydra gives a sweep's jobs their folders by number, so a sweep continued into its folder after
    its values changed (another list, another order), or whose sweeper proposed other trials
    (Optuna's proposals follow the objectives it was given), would train one job's run on with
    another job's settings: a learning rate or a temperature that only the log would show.
    """
    swept = tuple(swept)
    changes = changed_settings(checkpoint["config"], settings)
    other = {
        key: values
        for key, values in changes.items()
        if any(key == name or key.startswith(f"{name}.") for name in swept)
    }
    if other:
        raise CheckpointError(
            f"{folder} holds the run of another job of this sweep: {listed(other)}; the sweep's jobs "
            "no longer match its folders (its values changed, or its sweeper proposed other trials); "
            "continue the sweep with the values it started with, or sweep into a new folder "
            "(hydra.sweep.dir=...)"
        )


def restore_member(run: Run, m: int, checkpoint: dict[str, Any], source: str) -> None:
    """Loads a checkpoint into member m of ``run`` to continue its training: weights, optimizer
    state, learned temperature and best test loss. The run's step, epoch and random states are the
    caller's to restore.

    The member's current settings hold: those a run may change halfway (learning rate and the
    optimizer's other settings, epochs, intervals, the temperature schedule's numbers, ...) take
    their new values, and every change is logged; a change of what cannot change (FIXED_SETTINGS)
    is refused, naming the settings.
    """
    member = run.members[m]
    check_compatible(checkpoint, run.model.architecture(), source)
    changes = changed_settings(checkpoint["config"], member.settings)
    fixed = {key: values for key, values in changes.items() if key.startswith(FIXED_SETTINGS)}
    if fixed:
        raise CheckpointError(
            f"{source}: these settings cannot change in the middle of a run: {listed(fixed)}; drop the "
            "change, or start a new run from its weights with resume_weights_only=true"
        )
    load_member_weights(run, m, checkpoint)
    if run.schedule.learned:
        with torch.no_grad():
            for name, value in run.schedule.state_dict().items():
                value[m].copy_(checkpoint["temperature"][name])
    run.optimizer.load_member_state(m, checkpoint["optimizer"])
    member.best_test_loss = checkpoint.get("best_test_loss", float("inf"))
    member.best_val_loss = checkpoint.get("best_val_loss", float("inf"))
    for key, (old, new) in changes.items():
        member.logger.info("resumed with a changed setting: %s %r -> %r", key, old, new)


def load_member_weights(run: Run, m: int, checkpoint: dict[str, Any]) -> None:
    """Copies a checkpoint's model weights into member m of ``run``."""
    with torch.no_grad():
        for name, value in member_state(run.model, m).items():
            value.copy_(checkpoint["model"][name])


def capture_rng_state() -> dict[str, Any]:
    """Gives the states of every random generator a run draws from."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Sets every random generator back to a state from ``capture_rng_state``. The states are
    byte tensors on the CPU, wherever the checkpoint was loaded to."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"][: torch.cuda.device_count()]])
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.cpu().numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
