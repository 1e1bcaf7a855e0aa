import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_deepcel0.core.render import Renderer, check_render_blur, render_histogram, render_shape, save_render_png


def _table(xs, ys):
    return pd.DataFrame({"frame": np.ones(len(xs), int), "x [nm]": xs, "y [nm]": ys})


def test_pixels_follow_the_camera_frame_convention():
    # pixel (r, c) covers x in [c, c+1) * pixel, y in [r, r+1) * pixel; x = column, y = row
    with pytest.warns(UserWarning, match="2 of 6 localizations lie outside the rendered field"):
        image = render_histogram(_table([15.0, 15.0, 0.0, 99.9, 100.0, -0.1], [35.0, 35.0, 0.0, 59.9, 10.0, 10.0]),
                                 field_nm=(60.0, 100.0), pixel_nm=10.0)
    assert image.shape == (6, 10)
    assert image[3, 1] == 2 and image[0, 0] == 1 and image[5, 9] == 1
    assert image.sum() == 4  # x = 100 nm and x = -0.1 nm fall outside the field


def test_batches_accumulate_and_weights_apply():
    r = Renderer((20.0, 20.0), 10.0)
    r.add(_table([5.0], [5.0]))
    r.add(_table([5.0, 15.0], [5.0, 15.0]), weights=np.array([2.0, 0.5]))
    assert r.image().tolist() == [[3.0, 0.0], [0.0, 0.5]]
    assert r.image(blur_sigma_nm=10.0).sum() == pytest.approx(3.5, rel=1e-5)


@pytest.mark.parametrize("pixel", [0.0, -1.0, math.nan, math.inf])
def test_bad_pixel_sizes_and_huge_renders_are_refused(pixel):
    with pytest.raises(ValueError, match="positive number of nm"):
        render_shape((100.0, 100.0), pixel)
    with pytest.raises(ValueError, match="too large"):
        render_shape((6400.0, 6400.0), 0.01)


def test_png_has_the_image_size_and_leaves_the_plotting_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a caller's non-Agg backend
    image = np.zeros((7, 11), np.float32)
    image[2, 3] = 5.0
    try:
        save_render_png(tmp_path / "r.png", image)
        assert matplotlib.get_backend() == "svg"  # before: switched to Agg for the whole process
    finally:
        matplotlib.use(before)
    with Image.open(tmp_path / "r.png") as png:
        assert png.size == (11, 7)
        pixels = np.asarray(png.convert("RGB"))
    assert pixels[2, 3].sum() > pixels[0, 0].sum()  # the localization is bright, the rest dark


def test_the_png_has_matplotlibs_hot_colours_saturating_at_the_display_percentile(tmp_path):
    """The PNG is written 3 bytes a pixel (matplotlib's imsave took an RGBA float64 copy:
    2.9 GB for a 1024 x 1024 camera at 10 nm, a review), with the colours imsave gave."""
    from matplotlib.image import imsave

    from napari_deepcel0.core.render import display_max

    rng = np.random.default_rng(0)
    image = np.zeros((1100, 70), np.float32)  # (more rows than a block of 1024)
    image.ravel()[rng.integers(0, image.size, 3000)] = rng.random(3000) * 10
    save_render_png(tmp_path / "r.png", image)
    imsave(tmp_path / "m.png", np.clip(image / display_max(image), 0, 1), cmap="hot", vmin=0, vmax=1, format="png")
    with Image.open(tmp_path / "r.png") as ours, Image.open(tmp_path / "m.png") as theirs:
        assert ours.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs.convert("RGB")))


def test_a_field_that_leaves_localizations_out_says_so():
    table = pd.DataFrame({"frame": [1, 1, 1], "x [nm]": [10.0, 900.0, 3000.0], "y [nm]": [10.0, 10.0, 10.0]})
    with pytest.warns(UserWarning, match="2 of 3 localizations lie outside the rendered field of 32 x 32 nm"):
        render_histogram(table, (32.0, 32.0), 10.0)  # the field in camera pixels, not nm
    for field in ((-1.0, 10.0), (float("nan"), 10.0), (10.0, float("inf"))):
        with pytest.raises(ValueError, match="positive"):
            render_histogram(table, field, 10.0)


def test_the_blur_sigma_is_in_nm_and_a_partial_last_pixel_is_kept():
    """A blur taken in render pixels instead of nm (10 times too wide at 10 nm pixels) and
    a render that dropped its partial last row and column both went unnoticed: the
    tests checked the total only and used fields of whole pixels (mutation review)."""
    renderer = Renderer((410.0, 410.0), 10.0)
    renderer.add(pd.DataFrame({"frame": [1], "x [nm]": [205.0], "y [nm]": [205.0]}))
    profile = renderer.image(blur_sigma_nm=30.0).sum(axis=0)
    cols = np.arange(len(profile))
    mean = (profile * cols).sum() / profile.sum()
    assert math.sqrt((profile * (cols - mean) ** 2).sum() / profile.sum()) == pytest.approx(3.0, rel=0.05)
    assert render_shape((65.0, 95.0), 10.0) == (7, 10)


def test_a_blur_wider_than_the_field_is_refused_and_a_wide_one_stays_quick():
    """A 1e9 nm blur of one frame's render ran out of memory (1e5 nm: 43 s) and Ctrl-C
    could not stop it (review): a blur wider than the field, which leaves a flat image,
    is refused before any work; one as wide as the field blurs with a kernel cut at the
    image's size, which keeps the total."""
    table = pd.DataFrame({"frame": [1, 1], "x [nm]": [50.0, 300.0], "y [nm]": [50.0, 200.0]})
    for blur in (320.0001, 1e9, float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="render blur"):
            render_histogram(table, (320.0, 320.0), 10.0, blur_sigma_nm=blur)
        with pytest.raises(ValueError, match="render blur"):
            check_render_blur(blur, (320.0, 160.0))
    check_render_blur(None, (1.0, 1.0))
    check_render_blur(0.0, (1.0, 1.0))
    image = render_histogram(table, (320.0, 320.0), 10.0, blur_sigma_nm=320.0)
    assert image.sum() == pytest.approx(2.0, rel=1e-4) and image.max() < 0.01  # flat, nothing lost
    renderer = Renderer((320.0, 160.0), 10.0)
    with pytest.raises(ValueError, match="wider than the rendered field"):
        renderer.image(blur_sigma_nm=321.0)


def test_a_blur_of_more_than_64_render_pixels_is_refused_with_the_pixel_it_needs(tmp_path):
    """Within the field, a blur still took 15.7 s on a 2,048^2 render (its time grows with
    its width, and Ctrl-C waits for it; diff review)."""
    table = pd.DataFrame({"frame": [1], "x [nm]": [50.0], "y [nm]": [50.0]})
    render_histogram(table, (6400.0, 6400.0), 10.0, blur_sigma_nm=640.0)  # 64 render pixels: allowed
    with pytest.raises(ValueError, match=r"spans 65 render pixels of 10 nm, more than the 64 .* a larger render "
                                         r"pixel \(at least 10.2 nm\)"):
        render_histogram(table, (6400.0, 6400.0), 10.0, blur_sigma_nm=650.0)
    check_render_blur(650.0, (6400.0, 6400.0))  # without a render pixel: the field's bound only
