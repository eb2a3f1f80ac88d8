"""The checkpoint format: a self-describing dict of plain values and tensors.

A checkpoint holds everything needed to rebuild the model (its sizes and the resolved
config) and to continue training exactly (optimizer, schedule, step, epoch, RNG states).
It contains only dicts, lists, tuples, numbers, strings and tensors, so it loads with
``torch.load(..., weights_only=True)``. Writes go to a temporary file in the same folder
and are moved into place with ``os.replace``, so a crash never leaves a broken file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vae_gumbel.errors import CheckpointError, first_line
from vae_gumbel.model import CategoricalVAE

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "architecture", "model", "step", "epoch", "config")


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Writes ``checkpoint`` to ``path`` atomically: a temporary file, fsync, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with temporary.open("wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def resolve_checkpoint(path: str | Path, which: str = "last") -> Path:
    """Gives the checkpoint file for ``path``: the file itself, or RUN_DIR/checkpoints/{which}.pt."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / f"{which}.pt"
        if not candidate.is_file():
            raise CheckpointError(
                f"no checkpoint at {candidate}: {path} is not a run folder with a saved {which}.pt"
            )
        return candidate
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a .pt file or a run folder")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Gives the checkpoint at ``path`` (a file or a run folder), or raises CheckpointError."""
    file = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {file} ({first_line(err)}); the file is corrupt or not a "
            "vae-gumbel checkpoint: use another checkpoint (best.pt or an earlier run)"
        ) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(f"{file} is not a vae-gumbel checkpoint (expected keys {list(REQUIRED_KEYS)})")
    if checkpoint["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format {checkpoint['format_version']}, this version reads "
            f"format {FORMAT_VERSION}"
        )
    return checkpoint


def check_compatible(checkpoint: dict[str, Any], model: CategoricalVAE, source: str = "checkpoint") -> None:
    """Raises CheckpointError listing every size in which ``checkpoint`` and ``model`` differ."""
    saved, wanted = checkpoint["architecture"], model.architecture()
    differences = [
        f"{key}: checkpoint {saved.get(key)!r} vs config {wanted[key]!r}"
        for key in wanted
        if saved.get(key) != wanted[key]
    ]
    if differences:
        raise CheckpointError(
            f"{source} does not fit the configured model ({'; '.join(differences)}); "
            "use matching model.* settings or another checkpoint"
        )


def build_model(checkpoint: dict[str, Any], source: str = "checkpoint") -> CategoricalVAE:
    """Gives the model a checkpoint describes, with its weights loaded (on the CPU)."""
    architecture = checkpoint["architecture"]
    try:
        model = CategoricalVAE(
            latent_dim=architecture["latent_dim"],
            categorical_dim=architecture["categorical_dim"],
            hidden=architecture["hidden"],
            input_dim=architecture["input_dim"],
        )
        model.load_state_dict(checkpoint["model"])
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{source}: its weights do not fit the model it describes ({architecture}): {first_line(err)}"
        ) from None
    return model


# Adam's switches for how its update runs on a device: the resuming run's own, not the checkpoint's.
OPTIMIZER_EXECUTION_OPTIONS = ("fused", "foreach", "capturable")


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Loads an optimizer's state (moments, step counts, hyperparameters) but keeps how it runs.

    A checkpoint written by a CUDA run whose step is one CUDA graph holds ``capturable=True``; one
    written on a CPU holds ``False``, which would make the capture of a CUDA run fail.
    """
    options = [
        {k: group[k] for k in OPTIMIZER_EXECUTION_OPTIONS if k in group} for group in optimizer.param_groups
    ]
    optimizer.load_state_dict(state)
    for group, own in zip(optimizer.param_groups, options, strict=True):
        group.update(own)


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
