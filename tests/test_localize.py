import numpy as np
import pytest
import torch

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.localize import extract_localizations, find_components, find_peaks, local_maxima


def test_isolated_spikes_are_found_at_pixel_centres():
    m = np.zeros((2, 40, 40), np.float32)
    m[0, 5, 7] = 80
    m[0, 30, 20] = 60
    m[1, 12, 33] = 90
    t = extract_localizations(m, ISBI2013, threshold=8.5, first_frame=11, mass_scale=1 / 85.0)
    t = t.sort_values(["frame", "y [nm]"]).reset_index(drop=True)
    assert t["frame"].tolist() == [11, 11, 12]
    assert t["x [nm]"].tolist() == pytest.approx([(7 + 0.5) * 25, (20 + 0.5) * 25, (33 + 0.5) * 25])
    assert t["y [nm]"].tolist() == pytest.approx([(5 + 0.5) * 25, (30 + 0.5) * 25, (12 + 0.5) * 25])
    assert t["confidence"].tolist() == pytest.approx([80 / 85, 60 / 85, 90 / 85])


def test_centre_of_mass_refinement():
    m = np.zeros((1, 10, 10), np.float32)
    m[0, 4, 4] = 3.0
    m[0, 4, 5] = 1.0
    p = find_peaks(m, 0.5)
    assert len(p["row"]) == 1
    assert p["col"][0] == pytest.approx(4.25) and p["row"][0] == pytest.approx(4.0)
    assert p["mass"][0] == pytest.approx(4.0) and p["peak"][0] == pytest.approx(3.0)


def test_plateau_gives_one_maximum_and_threshold_is_strict():
    m = np.zeros((1, 8, 8), np.float32)
    m[0, 3:5, 3:5] = 5.0
    assert local_maxima(m, 1.0).sum() == 1
    assert local_maxima(m, 5.0).sum() == 0


def test_neighbours_two_pixels_apart_stay_separate_one_pixel_apart_merge():
    m = np.zeros((1, 12, 12), np.float32)
    m[0, 5, 3] = 10
    m[0, 5, 5] = 10  # 2 px apart: not neighbours, two peaks
    assert len(find_peaks(m, 1)["row"]) == 2
    m2 = np.zeros((1, 12, 12), np.float32)
    m2[0, 5, 3] = 10
    m2[0, 5, 4] = 9
    assert len(find_peaks(m2, 1)["row"]) == 1


def test_components_merge_touching_pixels_with_weighted_centroid():
    m = np.zeros((1, 10, 10), np.float32)
    m[0, 2, 2], m[0, 2, 3], m[0, 3, 3] = 1.0, 1.0, 2.0
    m[0, 7, 7] = 4.0
    c = find_components(m, 0.5)
    order = np.argsort(c["row"])
    assert len(c["row"]) == 2
    assert c["row"][order[0]] == pytest.approx((2 + 2 + 6) / 4) and c["col"][order[0]] == pytest.approx((2 + 3 + 6) / 4)
    assert c["mass"][order].tolist() == pytest.approx([4.0, 4.0])


def test_works_on_torch_tensors_and_empty_maps():
    t = extract_localizations(torch.zeros(3, 16, 16), ISBI2013, threshold=1.0)
    assert len(t) == 0 and list(t.columns) == ["frame", "x [nm]", "y [nm]", "confidence"]
    with pytest.raises(ValueError, match="method"):
        extract_localizations(torch.zeros(1, 4, 4), ISBI2013, 1.0, method="magic")


def test_refinement_on_other_maps_keeps_detection_and_mass():
    m = torch.zeros(1, 9, 9)
    m[0, 4, 4] = 10.0  # a lone spike: the 3 x 3 centre of mass cannot move it
    other = torch.zeros(1, 9, 9)
    other[0, 4, 4], other[0, 4, 5], other[0, 3, 4] = 6.0, 3.0, 1.0  # its average leans right and up
    p = find_peaks(m, 1.0, refine_maps=other)
    assert np.allclose(p["row"], [4 - 0.1]) and np.allclose(p["col"], [4 + 0.3])
    assert p["peak"].tolist() == [10.0] and p["mass"].tolist() == [10.0]
    assert find_peaks(m, 1.0)["col"].tolist() == [4.0]
    with pytest.raises(ValueError, match="shape"):
        find_peaks(m, 1.0, refine_maps=other[:, :8])
    with pytest.raises(ValueError, match="only work with method 'peaks'"):
        extract_localizations(m, ISBI2013, 1.0, method="components", refine_maps=other)


def test_the_parabola_places_a_lone_spike_by_the_output_before_the_relu():
    """A lone spike of the ReLU map stays on its pixel centre with the centre of mass;
    the values before the ReLU around it (here sampled from a paraboloid with its vertex
    at +0.3 row, -0.2 column) place it within the pixel."""
    rows, cols = np.mgrid[0:9, 0:9].astype(np.float32)
    before = torch.as_tensor(10.0 - 20.0 * ((rows - 4.3) ** 2 + (cols - 3.8) ** 2))[None]
    maps = before.clamp_min(0)  # only the spike survives the ReLU
    assert int((maps > 0).sum()) == 1
    p = find_peaks(maps, 1.0, refine_maps=before, subpixel="parabola")
    np.testing.assert_allclose([p["row"][0], p["col"][0]], [4.3, 3.8], atol=1e-5)
    assert p["mass"].tolist() == pytest.approx([float(maps.sum())])  # mass and peak from the ReLU map
    assert find_peaks(maps, 1.0, refine_maps=before)["row"].tolist() == [4.0]  # the centre of mass: no offset
    # a flat or upward neighbourhood, and a maximum at the map's edge, get no offset (never NaN)
    edge = torch.zeros(1, 5, 5)
    edge[0, 0, 2], edge[0, 1, 2] = 5.0, 1.0
    p = find_peaks(edge, 1.0, subpixel="parabola")
    assert p["row"].tolist() == [0.0] and p["col"].tolist() == [2.0]
    far = torch.as_tensor(10.0 - 20.0 * ((rows - 4.0) ** 2 + (cols - 4.0) ** 2))[None]
    # a neighbour almost as high as the maximum: the vertex lies near the pixel's edge, not
    # beyond it (through a maximum and its neighbours the vertex is within half a pixel;
    # the clip to 0.5 is a guard that such maps never reach)
    far[0, 4, 5] = 9.9
    assert 4.45 < find_peaks(far.clamp_min(0), 1.0, refine_maps=far, subpixel="parabola")["col"][0] <= 4.5
    with pytest.raises(ValueError, match="subpixel must be one of"):
        find_peaks(maps, 1.0, subpixel="gauss")
    with pytest.raises(ValueError, match="only work with method 'peaks'"):
        extract_localizations(maps, ISBI2013, 1.0, method="components", subpixel="parabola")


def test_diagonal_neighbours_are_one_component():
    m = np.zeros((1, 8, 8), np.float32)
    m[0, 2, 2], m[0, 3, 3] = 1.0, 1.0
    c = find_components(m, 0.5)
    assert len(c["row"]) == 1 and c["row"][0] == pytest.approx(2.5) and c["col"][0] == pytest.approx(2.5)


def test_maxima_and_window_sums_of_candidate_pixels_are_those_of_whole_maps():
    """find_peaks compares only the pixels above the threshold with their neighbours and
    sums their 3 x 3 windows there (2.7 -> 0.2 ms a frame: a speed review): the same
    maxima in the same order, and the sums of the 3 x 3 convolution of the whole maps."""
    import torch.nn.functional as F

    from napari_deepcel0.core import localize as loc

    rng = np.random.default_rng(3)
    maps = rng.random((4, 40, 48)).astype(np.float32)
    maps[0, 10:13, 10:13] = 0.9  # a plateau
    maps[1, 0, :] = 0.95  # maxima on the edge
    maps[2, 5, 5], maps[2, 20, 20], maps[3, 7, 7] = np.nan, np.inf, -np.inf
    maps[3] = np.round(maps[3] * 4) / 4  # many ties
    t = torch.from_numpy(maps)
    for threshold in (0.0, 0.5, 0.9):
        expected = torch.nonzero(loc.local_maxima(t, threshold), as_tuple=True)
        got = loc._maxima_indices(t, threshold)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
    b, r, c = torch.nonzero(torch.isfinite(t), as_tuple=True)
    finite = torch.nan_to_num(t, posinf=0.0, neginf=0.0)
    kernels = torch.ones((3, 1, 3, 3))
    kernels[1] *= torch.tensor([-1.0, 0.0, 1.0])[:, None]
    kernels[2] *= torch.tensor([-1.0, 0.0, 1.0])[None, :]
    sums = F.conv2d(finite.clamp_min(0)[:, None], kernels, padding=1)
    for k, got in enumerate(loc._window_sums(finite, b, r, c, 3)):
        np.testing.assert_allclose(got.numpy(), sums[b, k, r, c].numpy(), rtol=1e-6, atol=1e-6)
