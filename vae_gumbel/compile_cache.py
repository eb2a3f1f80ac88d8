"""Where compiled code is kept between runs, so that only a machine's first run pays for compiling.

``trainer.compile_cache`` names a folder (by default ``~/.cache/vae-gumbel/compile``, not the
temporary folder that torch uses and that clusters wipe). Inductor keeps its on-disk cache in its
``inductor/`` subfolder, unless TORCHINDUCTOR_CACHE_DIR was set before the run (inductor reads the
variable when it first needs its cache, and the run points it there before anything compiles);
and the portable cache artifacts of ``torch.compiler`` (what a run compiled, in one file per torch
version and device kind) are saved after the first epoch and loaded before the next run compiles,
so that a fresh machine that shares the folder but not inductor's cache skips much of the work.

The cache only saves time: a folder that cannot be made, or a save that fails (a full disk, a home
folder over its quota), is a warning in the log, and the run goes on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from hydra.utils import to_absolute_path

from vae_gumbel.errors import describe
from vae_gumbel.files import replacing

log = logging.getLogger("vae_gumbel.train")


class CompileCache:
    """The portable artifacts file of one torch version and device kind, in the cache folder."""

    def __init__(self, folder: str, device: torch.device) -> None:
        """Points inductor at the folder: call it before anything is compiled. A folder that
        cannot be made leaves torch's own cache in use, with a warning."""
        self.folder = Path(to_absolute_path(os.path.expanduser(folder)))
        self.artifacts = self.folder / f"artifacts-torch{torch.__version__}-{device.type}.bin"
        self.saved = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            log.warning(
                "cannot use the compile cache %s (%s); compiled code is kept in torch's own cache "
                "this run (set trainer.compile_cache to a folder you can write, or null)",
                self.folder,
                describe(err),
            )
            self.saved = True  # nothing to save into
            return
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.folder / "inductor"))

    def load(self) -> None:
        """Loads the portable artifacts of earlier runs, if there are any (a damaged file is skipped)."""
        if not self.artifacts.is_file():
            return
        quiet = logging.getLogger("torch.compiler._cache")  # which logs a damaged file's traceback
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            loaded = torch.compiler.load_cache_artifacts(self.artifacts.read_bytes())
        except Exception:  # the cache only saves time: a broken one costs a recompile
            loaded = None
        finally:
            quiet.setLevel(level)
        if loaded is None:
            log.warning("could not read the compile cache %s (damaged?); compiling anew", self.artifacts)
        else:
            log.info("loaded compiled code from %s", self.artifacts)

    def save(self) -> None:
        """Saves what this process has compiled (once, atomically), for the next run to load."""
        if self.saved:
            return
        self.saved = True
        artifacts = torch.compiler.save_cache_artifacts()
        if artifacts is None:
            return
        try:
            with replacing(self.artifacts) as handle:
                handle.write(artifacts[0])
        except OSError as err:
            log.warning(
                "could not save the compile cache %s (%s); training goes on, and the next run compiles anew",
                self.artifacts,
                describe(err),
            )
