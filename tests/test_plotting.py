"""``pyrogen.plotting``: where every image lands in a grid, grey and colour, and what the PNG
holds."""

import numpy as np
import pytest
import torch

from pyrogen.plotting import image_grid, save_image_grid


def test_grey_grid_places_each_image_with_blank_padding():
    images = torch.arange(1, 6).float().div(10).repeat_interleave(6).reshape(5, 6)  # 2 x 3
    grid = image_grid(images, (2, 3), nrow=3, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1)  # 2 rows of 3 images
    for i in range(5):
        r, c = divmod(i, 3)
        block = grid[1 + 3 * r : 3 + 3 * r, 1 + 4 * c : 4 + 4 * c]
        assert np.allclose(block, (i + 1) / 10)
    assert grid[0].sum() == 0 and grid[:, 0].sum() == 0  # padding is blank
    assert grid[4:6, 9:12].sum() == 0  # the sixth slot is empty


def test_colour_grid_keeps_channels_first_images_as_rgb():
    x = torch.zeros(2, 3, 4, 5)
    x[0, 0] = 1.0  # a red image
    x[1, 2] = 0.5  # a half-blue image
    grid = image_grid(x.reshape(2, -1), (3, 4, 5), nrow=2, pad=1)
    assert grid.shape == (6, 13, 3)
    assert np.allclose(grid[1:5, 1:6], [1.0, 0.0, 0.0])
    assert np.allclose(grid[1:5, 7:12], [0.0, 0.0, 0.5])
    assert np.array_equal(image_grid(x, (3, 4, 5), nrow=2), grid)  # (N, C, H, W) too


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="images: each must hold 3x4x5=60"):
        image_grid(torch.zeros(2, 59), (3, 4, 5))
    with pytest.raises(ValueError, match="image_shape"):
        image_grid(torch.zeros(2, 8), (2, 2, 2, 1))


def test_saved_png_shows_grey_as_ink_and_colour_as_colour(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    ink = torch.ones(4, 64)  # all-ink 8 x 8 images
    path = save_image_grid(ink, tmp_path / "grey.png", (8, 8), scale=2.0)
    pixels = plt.imread(path)[..., :3]
    assert pixels.min() < 0.05 and pixels.max() > 0.95  # black ink, white margin
    red = torch.zeros(4, 3, 8, 8)
    red[:, 0] = 1.0
    path = save_image_grid(red, tmp_path / "red.png", (3, 8, 8), scale=2.0)
    pixels = plt.imread(path)[..., :3].reshape(-1, 3)
    assert (np.abs(pixels - [1.0, 0.0, 0.0]).sum(1) < 0.05).any()  # pure red is drawn
