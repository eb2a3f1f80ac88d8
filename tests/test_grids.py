"""Image grids: what the trainer draws each epoch and what `sample` draws, from one implementation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from vae_gumbel.grids import (
    GRID_PADDING,
    IMAGE_SHAPE,
    code_usage_image,
    encode_png,
    most_informative_variables,
    prior_grid,
    tile,
    tile_members,
    to_pixels,
    traversal_grid,
)
from vae_gumbel.model import CategoricalVAE
from vae_gumbel.objectives import kl_per_variable


def grid_size(rows: int, cols: int) -> tuple[int, int]:
    """The (height, width) in pixels of a grid of rows x cols tiles."""
    step = IMAGE_SHAPE[-1] + GRID_PADDING
    return rows * step + GRID_PADDING, cols * step + GRID_PADDING


@pytest.fixture(scope="module")
def model() -> CategoricalVAE:
    torch.manual_seed(0)
    return CategoricalVAE(latent_dim=4, categorical_dim=5, hidden=(32,))


def test_prior_images_are_probabilities(model: CategoricalVAE) -> None:
    grid = prior_grid(model, 4, 4, seed=0)
    assert grid.shape[1:] == grid_size(4, 4)
    assert grid.min() >= 0 and grid.max() <= 1
    assert grid.std() > 0.01  # not a flat grey


def test_traversal_rows_differ_from_each_other(model: CategoricalVAE) -> None:
    grid = traversal_grid(model, torch.rand(1, 784), variables=[0, 1, 2, 3])
    assert grid.shape[1:] == grid_size(4, 5)
    height = grid_size(1, 1)[0] - 2
    rows = [grid[:, 2 + i * height : (i + 1) * height] for i in range(4)]
    assert all(not torch.equal(rows[i], rows[j]) for i in range(4) for j in range(i + 1, 4))
    first_row_tiles = [rows[0][:, :, 2 + k * height : (k + 1) * height] for k in range(5)]
    assert not torch.equal(first_row_tiles[0], first_row_tiles[1])  # each category decodes differently


def test_a_traversal_of_a_variable_that_does_not_exist_is_refused(model: CategoricalVAE) -> None:
    with pytest.raises(ValueError, match="latent variable 9 does not exist; choose from 0..3"):
        traversal_grid(model, torch.rand(1, 784), variables=[9])


def test_the_code_usage_map_has_a_cell_per_variable_and_category_brightest_where_most_used() -> None:
    usage = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    image = code_usage_image(usage, cell=4)
    assert image.shape == (3, 2 * 4, 3 * 4) and image.min() >= 0 and image.max() <= 1
    brightness = image.mean(0)[::4, ::4]  # one pixel per cell
    assert brightness.argmax().item() == 0  # the collapsed variable's one cell
    assert brightness[1].argsort().tolist() == [0, 1, 2]


def test_a_stack_of_code_usage_maps_is_each_members_map_scaled_to_its_own_largest_frequency() -> None:
    usage = torch.rand(3, 4, 5)
    usage[1] *= 0.01  # a member that uses every code rarely still gets its full colour range
    maps = code_usage_image(usage, cell=2)
    assert maps.shape == (3, 3, 4 * 2, 5 * 2)
    for m in range(3):
        assert torch.equal(maps[m], code_usage_image(usage[m], cell=2))
        assert np.array_equal(to_pixels(maps)[m], to_pixels(maps[m]))


def test_a_traversal_shows_by_default_the_variables_with_the_highest_kl(model: CategoricalVAE) -> None:
    x = torch.rand(50, 784)
    kl = kl_per_variable(model.encode(x)).mean(dim=0)
    top = most_informative_variables(model, x, 3)
    assert len(top) == 3 and kl[top[0]] >= kl[top[1]] >= kl[top[2]] >= kl.sort().values[-3]
    assert torch.equal(traversal_grid(model, x, rows=3), traversal_grid(model, x, variables=top))


def test_a_grey_grid_is_encoded_as_one_channel_and_decodes_to_its_pixels(model: CategoricalVAE) -> None:
    pixels = to_pixels(prior_grid(model, rows=2, cols=3))
    png = encode_png(pixels)
    assert (png.height, png.width, png.channels) == (*grid_size(2, 3), 1)
    with Image.open(io.BytesIO(png.data)) as image:
        assert image.mode == "L"
        assert np.array_equal(np.asarray(image.convert("RGB")), pixels)


def test_a_colour_picture_is_encoded_as_rgb_and_decodes_to_its_pixels() -> None:
    pixels = to_pixels(code_usage_image(torch.tensor([[1.0, 0.0], [0.3, 0.7]]), cell=3))
    png = encode_png(pixels)
    assert (png.height, png.width, png.channels) == (6, 6, 3)
    with Image.open(io.BytesIO(png.data)) as image:
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), pixels)


def test_tiles_are_laid_out_cols_to_a_row() -> None:
    assert tile(torch.zeros(6, *IMAGE_SHAPE), cols=3).shape == (3, *grid_size(2, 3))


def test_a_stack_is_tiled_in_one_pass_into_the_grid_make_grid_gives_each_member_alone() -> None:
    from torchvision.utils import make_grid

    images = torch.rand(3, 12, *IMAGE_SHAPE)
    grids = tile_members(images, cols=4)
    assert grids.shape == (3, 3, *grid_size(3, 4))
    for m in range(3):
        assert torch.equal(grids[m], make_grid(images[m], nrow=4, padding=2, pad_value=1.0))
        assert torch.equal(grids[m], tile(images[m], cols=4))
        assert np.array_equal(to_pixels(grids)[m], to_pixels(grids[m]))
    with pytest.raises(ValueError, match="do not fill rows of 5"):
        tile_members(images, cols=5)
