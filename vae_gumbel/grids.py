"""Image grids of what the model generates: one implementation for the trainer and ``sample``.

Every grid is a (3, H, W) tensor in [0, 1] laid out as torchvision's ``make_grid`` lays them out
from 28 x 28 tiles with 2 pixels of white padding; a stack's grids, one per member, in one pass
by ``tile_members``, and a lone model's by the same function (so neither training nor ``sample``
imports torchvision, whose import pulls in torch._dynamo's). All randomness comes from CPU
generators seeded by the caller, so the same seed gives the same picture on every device.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vae_gumbel.errors import ConfigError
from vae_gumbel.files import replacing, same_bytes
from vae_gumbel.gumbel import gumbel_max, sample_gumbel
from vae_gumbel.model import CategoricalVAE, stack_size
from vae_gumbel.objectives import kl_per_variable

if TYPE_CHECKING:
    from vae_gumbel.config import SampleConfig

IMAGE_SHAPE = (1, 28, 28)
GRID_PADDING = 2
RECONSTRUCTION_CODES = ("sample", "argmax")
CELL_PIXELS = 12  # the side of one (variable, category) cell in a code-usage map


def _device(model: CategoricalVAE) -> torch.device:
    return next(model.parameters()).device


def pixel_probabilities(model: CategoricalVAE, codes: torch.Tensor) -> torch.Tensor:
    """Gives decoded images (batch, 1, 28, 28) as Bernoulli means in [0, 1] for codes (batch, N, K)."""
    return torch.sigmoid(model.decode(codes).float()).view(-1, *IMAGE_SHAPE)


def tile(images: torch.Tensor, cols: int) -> torch.Tensor:
    """Gives images (n, 1, 28, 28) laid out ``cols`` to a row as one (3, H, W) CPU tensor; n a
    multiple of ``cols``."""
    return tile_members(images[None], cols)[0].cpu()


def tile_members(images: torch.Tensor, cols: int) -> torch.Tensor:
    """Gives each member's images (members, n, 1, 28, 28) laid out ``cols`` to a row as
    torchvision's ``make_grid`` lays them out, as (members, 3, H, W) on their device; n a multiple
    of ``cols``.

    ``make_grid``'s layout (each tile framed by the padding above and to its left, the grid by a
    last strip below and to its right) made by padding and reshaping the whole stack at once:
    ``make_grid`` copies tile by tile, 128 copies per member for an epoch's two grids, which were
    most of the time a 2-core CPU spent drawing a stack of 64 (docs/performance.md).
    ``tests/test_grids.py`` checks the two agree.
    """
    members, count = images.shape[:2]
    if count % cols:
        raise ValueError(f"{count} images per member do not fill rows of {cols}")
    rows, (height, width) = count // cols, IMAGE_SHAPE[1:]
    framed = torch.nn.functional.pad(images.detach().float(), (GRID_PADDING, 0, GRID_PADDING, 0), value=1.0)
    framed = framed.view(members, rows, cols, height + GRID_PADDING, width + GRID_PADDING)
    grids = framed.permute(0, 1, 3, 2, 4).reshape(
        members, 1, rows * (height + GRID_PADDING), cols * (width + GRID_PADDING)
    )
    grids = torch.nn.functional.pad(grids, (0, GRID_PADDING, 0, GRID_PADDING), value=1.0)
    return grids.expand(members, 3, *grids.shape[2:])


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """Gives a (..., 3, H, W) image in [0, 1] as (..., H, W, 3) bytes, rounded as torchvision's
    ``save_image`` rounds them: what a PNG holds."""
    channels_last = (*range(image.dim() - 3), -2, -1, -3)
    # Rounded to bytes where the image lies, so a stack's pictures leave a GPU as a quarter of the bytes.
    return image.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(channels_last).cpu().numpy()


@dataclass(frozen=True)
class Png:
    """A picture encoded once, for both the samples folder and TensorBoard: a PNG file's contents."""

    data: bytes
    height: int
    width: int
    channels: int  # 1: grey, 3: colour


def encode_png(pixels: np.ndarray) -> Png:
    """Gives (H, W, 3) bytes encoded as a PNG; a grey picture (every grid of digits) as one channel,
    which looks the same and takes a quarter of the time to compress. Pure numpy and PIL, so it can
    run off the training thread without starting a second team of torch's CPU threads, which on a
    small CPU slows every later training step."""
    from PIL import Image

    if (pixels[..., :1] == pixels).all():
        pixels = np.ascontiguousarray(pixels[..., 0])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    height, width = pixels.shape[:2]
    return Png(buffer.getvalue(), height, width, 1 if pixels.ndim == 2 else pixels.shape[2])


def write_png(png: Png, path: str | Path) -> Path:
    """Writes a PNG to ``path`` (whole or not at all), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as handle:
        handle.write(png.data)
    return path


def same_picture(a: Path, b: Path) -> bool:
    """Says whether two PNG files show the same pixels, however they were encoded: a grey grid that
    an earlier version stored in three channels is the same picture as its one-channel PNG. A
    file that is not a picture is the same only byte for byte."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(a) as first, Image.open(b) as second:
            same_size = first.size == second.size
            return same_size and first.convert("RGB").tobytes() == second.convert("RGB").tobytes()
    except (UnidentifiedImageError, OSError):
        return same_bytes(a, b)


def save_grid(grid: torch.Tensor, path: str | Path) -> Path:
    """Writes a (3, H, W) image in [0, 1] as a PNG, creating its folder."""
    return write_png(encode_png(to_pixels(grid)), path)


@torch.inference_mode()
def prior_images(model: CategoricalVAE, count: int, seed: int = 0) -> torch.Tensor:
    """Gives images (members, count, 1, 28, 28) decoded from the same ``count`` one-hot codes drawn
    from the uniform prior with ``seed``, by each member of a stack (one for a plain model)."""
    generator = torch.Generator().manual_seed(seed)
    codes = model.sample_prior(count, generator=generator, device="cpu").to(_device(model))
    decoded = model.decode(codes.expand(stack_size(model), *codes.shape))
    return torch.sigmoid(decoded.float()).view(stack_size(model), count, *IMAGE_SHAPE)


@torch.inference_mode()
def reconstruction_images(
    model: CategoricalVAE, x: torch.Tensor, pairs: int, cols: int, seed: int = 0, code: str = "sample"
) -> torch.Tensor:
    """Gives, for each member of a stack, rows of test images each followed by a row of their
    reconstructions, (members, 2 * pairs * cols, 1, 28, 28).

    x: (at least pairs * cols, 784) images. ``code`` is ``sample`` (an exact one-hot draw from
    q(z|x), with ``seed``, the same noise for every member) or ``argmax`` (the most likely
    category of each variable).
    """
    members = stack_size(model)
    x = x[: pairs * cols].to(_device(model))
    logits = model.encode(x.expand(members, *x.shape))
    if code == "sample":  # drawn on the CPU, so the same seed gives the same picture on every device
        noise = sample_gumbel(logits.shape[1:], generator=torch.Generator().manual_seed(seed))
        codes = gumbel_max(logits.float().cpu(), one_hot=True, noise=noise).to(logits.device)
    else:
        codes = torch.nn.functional.one_hot(logits.argmax(-1), model.categorical_dim).float()
    decoded = torch.sigmoid(model.decode(codes).float()).view(members, pairs, cols, *IMAGE_SHAPE)
    originals = x.detach().float().view(1, pairs, cols, *IMAGE_SHAPE).expand_as(decoded)
    return torch.stack([originals, decoded], dim=2).reshape(members, 2 * pairs * cols, *IMAGE_SHAPE)


def prior_grid(model: CategoricalVAE, rows: int = 8, cols: int = 8, seed: int = 0) -> torch.Tensor:
    """Gives rows x cols images decoded from one-hot codes drawn from the uniform prior with ``seed``."""
    return tile(prior_images(model, rows * cols, seed)[0], cols)


def reconstruction_grid(
    model: CategoricalVAE, x: torch.Tensor, rows: int = 8, cols: int = 8, seed: int = 0, code: str = "sample"
) -> torch.Tensor:
    """Gives test images on odd rows with their reconstructions on the row below (see
    ``reconstruction_images``)."""
    return tile(reconstruction_images(model, x, max(1, rows // 2), cols, seed, code)[0], cols)


def _images(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().view(-1, *IMAGE_SHAPE)


@torch.inference_mode()
def most_informative_variables(model: CategoricalVAE, x: torch.Tensor, count: int) -> list[int]:
    """Gives the ``count`` latent variables with the highest mean KL to the prior on images x, most
    informative first: the ones whose value the decoder's output depends on most."""
    kl = kl_per_variable(model.encode(x.to(_device(model)))).mean(dim=0)
    return kl.argsort(descending=True)[:count].tolist()


@torch.inference_mode()
def traversal_grid(
    model: CategoricalVAE, x: torch.Tensor, variables: Sequence[int] | None = None, rows: int = 8
) -> torch.Tensor:
    """Gives, for each chosen latent variable, a row of K images: the code of image x[0]
    (its argmax code) with that variable set to category 0, 1, ..., K - 1.

    ``variables`` defaults to the ``rows`` variables with the highest KL on the images x (a
    variable the encoder ignores changes nothing in the picture).
    """
    if variables is None:
        variables = most_informative_variables(model, x, min(rows, model.latent_dim))
    for v in variables:
        if not 0 <= v < model.latent_dim:
            raise ConfigError(
                f"variables: latent variable {v} does not exist; choose from 0..{model.latent_dim - 1}"
            )
    logits = model.encode(x[:1].to(_device(model)))
    base = torch.nn.functional.one_hot(logits.argmax(-1), model.categorical_dim).float()[0]  # (N, K)
    k = model.categorical_dim
    codes = base.repeat(len(variables) * k, 1, 1)  # (V * K, N, K)
    for row, variable in enumerate(variables):
        codes[row * k : (row + 1) * k, variable] = torch.eye(k, device=codes.device)
    return tile(pixel_probabilities(model, codes), k)


@torch.inference_mode()
def temperature_grid(
    model: CategoricalVAE,
    x: torch.Tensor,
    temperatures: Sequence[float] = (0.1, 0.5, 1.0, 2.0, 5.0),
    cols: int = 8,
    seed: int = 0,
) -> torch.Tensor:
    """Gives the inputs on the first row, then one row per temperature: the same inputs decoded
    through Gumbel-Softmax samples at that temperature, all from the same noise."""
    x = x[:cols].to(_device(model))
    logits = model.encode(x).float()
    noise = sample_gumbel(logits.shape, generator=torch.Generator().manual_seed(seed)).to(logits.device)
    rows = [_images(x)]
    for tau in temperatures:
        relaxed = torch.softmax((logits + noise) / tau, dim=-1)
        rows.append(pixel_probabilities(model, relaxed))
    return tile(torch.cat(rows), len(x))


def code_usage_image(usage: torch.Tensor, cell: int = CELL_PIXELS) -> torch.Tensor:
    """Gives a heat map of how often each category (column) of each latent variable (row) is chosen,
    as a (3, N * cell, K * cell) image in [0, 1] coloured with viridis, scaled to the largest frequency.

    usage: (N, K) frequencies, or (members, N, K) for a map per member, each scaled to its own
    largest frequency (members, 3, N * cell, K * cell), in one pass. A variable that always picks
    one category (a bright cell in a dark row) has collapsed.
    """
    from matplotlib import colormaps

    scaled = (usage / usage.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-9)).numpy()
    colours = torch.from_numpy(colormaps["viridis"](scaled)[..., :3]).float()  # (..., N, K, 3)
    return colours.movedim(-1, -3).repeat_interleave(cell, dim=-2).repeat_interleave(cell, dim=-1)


# Test images that rank the latent variables of a traversal by their KL.
TRAVERSAL_RANKING_IMAGES = 1000


@dataclass(frozen=True)
class SampleMode:
    """A kind of grid ``sample`` draws: how many test images it needs, how it draws them, the
    settings that change its picture, with the values the picture shows (its default file name
    carries them, so that one picture has one name), and how many small pictures the settings ask
    for (0 where the model bounds them)."""

    images: Callable[[SampleConfig], int]
    draw: Callable[[CategoricalVAE, torch.Tensor, SampleConfig], torch.Tensor]
    shown: Callable[[SampleConfig, CategoricalVAE], dict[str, Any]]
    tiles: Callable[[SampleConfig], int]
    fewer_images_do: bool = False  # images is a most: fewer test images draw the same kind of grid
    own: tuple[str, ...] = ()  # the settings that only this mode reads
    # Which of the grid's shared settings (GRID_SETTINGS) it reads, and how its grid is laid out
    # without the others.
    reads: Callable[[SampleConfig], tuple[str, ...]] = lambda s: GRID_SETTINGS
    layout: str = ""


# Settings that most modes read: a mode that does not read one says so (SampleMode.reads).
GRID_SETTINGS = ("rows", "cols", "seed")


# The most small pictures one grid may hold: 256 x 256 of them took 2.5 GB of memory to draw on the
# CPU, and a million took all 24 GB of the machine and were killed.
MAX_TILES = 256 * 256


def settings_of(settings: SampleConfig, *keys: str) -> dict[str, Any]:
    return {key: getattr(settings, key) for key in keys}


SAMPLE_MODES: dict[str, SampleMode] = {
    "prior": SampleMode(
        images=lambda s: 0,
        draw=lambda model, x, s: prior_grid(model, s.rows, s.cols, s.seed),
        shown=lambda s, model: settings_of(s, "rows", "cols", "seed"),
        tiles=lambda s: s.rows * s.cols,
    ),
    "reconstruction": SampleMode(
        images=lambda s: max(1, s.rows // 2) * s.cols,
        draw=lambda model, x, s: reconstruction_grid(model, x, s.rows, s.cols, s.seed, s.code),
        # Rows come in pairs, an image above its reconstruction.
        shown=lambda s, model: {
            "code": s.code,
            "rows": 2 * max(1, s.rows // 2),
            "cols": s.cols,
            "seed": s.seed,
        },
        tiles=lambda s: s.rows * s.cols,
        own=("code",),
    ),
    "traversal": SampleMode(
        images=lambda s: 1 if s.variables else TRAVERSAL_RANKING_IMAGES,
        draw=lambda model, x, s: traversal_grid(model, x, s.variables, s.rows),
        # Chosen variables make the rows; else the top-KL ones, as many as rows and the model allow.
        shown=lambda s, model: (
            settings_of(s, "variables")
            if s.variables
            else {"variables": None, "rows": min(s.rows, model.latent_dim)}
        ),
        tiles=lambda s: 0,  # at most N x K
        fewer_images_do=True,  # they rank the variables by KL
        own=("variables",),
        reads=lambda s: () if s.variables else ("rows",),
        layout="a row of K categories per latent variable (those of variables, else the rows with the "
        "highest KL), from the first test image's code",
    ),
    "temperature": SampleMode(
        images=lambda s: s.cols,
        draw=lambda model, x, s: temperature_grid(model, x, s.temperatures, s.cols, s.seed),
        shown=lambda s, model: settings_of(s, "temperatures", "cols", "seed"),
        tiles=lambda s: (len(s.temperatures) + 1) * s.cols,
        own=("temperatures",),
        reads=lambda s: ("cols", "seed"),
        layout="a row of test images, then a row per temperature",
    ),
}


def picture_name(settings: SampleConfig, model: CategoricalVAE, epoch: int) -> str:
    """Gives the default file name of a ``sample`` grid: its mode, every setting that changes its
    picture, and the checkpoint's epoch, as ``reconstruction_code-argmax_rows8_cols8_seed0_epoch010.png``."""
    parts = [settings.mode]
    for key, value in SAMPLE_MODES[settings.mode].shown(settings, model).items():
        if value is None:
            value = "top-kl" if key == "variables" else "none"
        elif isinstance(value, list | tuple):
            value = "-".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        parts.append(f"{key}{value}" if isinstance(value, int) else f"{key}-{value}")
    return "_".join(parts) + f"_epoch{epoch:03d}.png"
