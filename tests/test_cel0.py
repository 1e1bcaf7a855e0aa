"""CEL0-IRL1: the real solver on small frames (12-16 camera pixels), the MapModel
wrapper, the lambda sweep and the ``cel0`` command line."""

import argparse
import json
import math
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from napari_deepcel0 import cli
from napari_deepcel0.core import cel0
from napari_deepcel0.core import simulate as sim
from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.io import read_localizations, write_thunderstorm_csv, write_tiff
from napari_deepcel0.core.metrics import match, score
from napari_deepcel0.core.optics import AcquisitionOperator
from napari_deepcel0.core.frames import FrameSourceError
from napari_deepcel0.core.predict import NothingFoundWarning, localize

ACQ = Acquisition(offset_adu=100.0, read_noise_adu=2.0)
FAST = dict(max_outer=30, max_inner=100)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny frames: one thread is faster, and it avoids thread contention when a
    training job shares the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def simulated(n_frames=3, size=12, density=3.0, seed=0):
    """Frames in ADU (offset 100, 20 background photons) and their ground truth."""
    return sim.simulate_stack(n_frames=n_frames, shape=(size, size), density_per_um2=density, structure="uniform",
                              acq=ACQ, photons=sim.PhotonModel(2000.0, 3000.0, 0.1),
                              noise=sim.CameraNoise(background_photons=(20.0, 20.0)), seed=seed)


def objectives_per_outer(y, op, lam, **kw):
    history = []
    x, records = cel0.solve(y, op, lam, progress=lambda p: history.append(p.objective), **kw)
    return np.array(history), x, records


# ------------------------------------------------------------------ solver
@pytest.mark.parametrize("kind", ["random", "simulated"])
def test_objective_never_increases_across_outer_iterations(kind):
    op = AcquisitionOperator(ACQ, (12, 12))
    if kind == "random":
        y = np.random.default_rng(3).uniform(0.0, 1.0, (2, 12, 12)).astype(np.float32)
    else:
        y, _ = cel0.prepare_frames(simulated()[0][:2])
    for lam in (0.005, 0.05):
        history, x, records = objectives_per_outer(y, op, lam, **FAST)
        assert len(history) >= 3
        start = 0.5 * np.sum(y.astype(np.float64) ** 2, axis=(1, 2))  # F(0)
        assert np.all(history[0] <= start)
        steps = np.diff(np.vstack([start, history]), axis=0)
        assert np.all(steps <= 1e-6 * np.abs(history).max()), steps.max()
        final = cel0.objective(x, y, op, lam, op.column_norms())
        assert final == pytest.approx([r.objective for r in records])
        assert final == pytest.approx(history[-1])


@pytest.mark.parametrize("lam, max_inner", [(0.1, 200), (0.01, 2000)])
def test_noise_free_separated_spikes_are_recovered_exactly(lam, max_inner):
    """At lambda 0.01 the default 200 FISTA iterations stop too early (docs/cel0.md)."""
    op = AcquisitionOperator(ACQ, (16, 16))
    truth = np.zeros(op.fine_shape, np.float32)
    cells = [(13, 17), (14, 46), (45, 30)]  # > 7 camera pixels apart, one per sub-pixel phase
    for (r, c), v in zip(cells, (1.0, 0.7, 0.85)):
        truth[r, c] = v
    y = op.forward(truth)
    x, records = cel0.solve(y / y.max(), op, lam, max_inner=max_inner)
    x = x[0].numpy() * y.max()
    support = {(int(r), int(c)) for r, c in zip(*np.nonzero(x))}
    assert support == set(cells)
    assert x[tuple(np.array(cells).T)] == pytest.approx([1.0, 0.7, 0.85], rel=5e-3)
    assert records[0].converged


def test_batched_and_one_at_a_time_agree():
    op = AcquisitionOperator(ACQ, (12, 12))
    y, _ = cel0.prepare_frames(simulated(n_frames=3, seed=5)[0])
    xb, rb = cel0.solve(y, op, 0.02, **FAST)
    for i in range(3):
        xi, ri = cel0.solve(y[i], op, 0.02, **FAST)
        np.testing.assert_allclose(xi[0].numpy(), xb[i].numpy(), atol=1e-5)
        assert ri[0].outer_iterations == rb[i].outer_iterations
        assert ri[0].objective == pytest.approx(rb[i].objective, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: CPU/GPU agreement cannot be checked here")
def test_cpu_and_gpu_agree():
    frames, _ = simulated(n_frames=2, seed=7)
    y, _ = cel0.prepare_frames(frames)
    x_cpu, r_cpu = cel0.solve(y, AcquisitionOperator(ACQ, (12, 12)), 0.02, **FAST)
    x_gpu, r_gpu = cel0.solve(y, AcquisitionOperator(ACQ, (12, 12), device="cuda"), 0.02, **FAST)
    assert x_gpu.device.type == "cuda"
    np.testing.assert_allclose(x_gpu.cpu().numpy(), x_cpu.numpy(), atol=1e-3 * float(x_cpu.max()))
    assert [r.objective for r in r_gpu] == pytest.approx([r.objective for r in r_cpu], rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_sweep_solves_its_lambdas_in_one_batch_and_scores_as_one_at_a_time():
    frames, gt = simulated(n_frames=6, size=16, density=2.0, seed=11)
    kw = dict(n_lams=6, lam_range=(1e-3, 1.0), n_frames=3, seed=1, max_outer=10, max_inner=50, device="cuda")
    grouped = cel0.lambda_sweep(frames, gt, ACQ, **kw)  # the GPU's default: all 6 lambdas in one batch
    alone = cel0.lambda_sweep(frames, gt, ACQ, lams_per_solve=1, **kw)
    # equal up to rounding: other batch shapes may take other GPU kernels (at most one
    # molecule's match may flip: a few percent of Jaccard on these small frames)
    assert [s.jaccard for s in grouped.scores["peaks"]] == pytest.approx([s.jaccard for s in alone.scores["peaks"]],
                                                                         abs=5.0)
    assert sum(s.tp for s in grouped.scores["peaks"]) == pytest.approx(sum(s.tp for s in alone.scores["peaks"]), abs=1)


def test_reading_convergence_every_few_iterations_changes_nothing(monkeypatch):
    # on a GPU, which frames have converged is read every few FISTA iterations; converged
    # frames are frozen in between, so the maps and iteration counts are the CPU's
    frames, _ = simulated(n_frames=4, seed=3)
    y, _ = cel0.prepare_frames(frames)
    op = AcquisitionOperator(ACQ, (12, 12))
    x1, r1 = cel0.solve(y, op, 0.02, **FAST)
    monkeypatch.setattr(cel0, "fista_iterations_between_reads", lambda device: 7)
    x7, r7 = cel0.solve(y, op, 0.02, **FAST)
    assert len({r.inner_iterations for r in r1}) > 1  # the frames stop at different iterations
    assert [(r.outer_iterations, r.inner_iterations) for r in r7] == [(r.outer_iterations, r.inner_iterations)
                                                                      for r in r1]
    np.testing.assert_allclose(x7.numpy(), x1.numpy(), rtol=1e-5, atol=1e-6)


def test_large_frames_are_solved_a_few_at_a_time(monkeypatch):
    frames, _ = simulated(n_frames=5, seed=4)
    model = cel0.Cel0Localizer(ACQ, lam=0.02, device="cpu", batch_size=5, **FAST)
    whole, mass = model.maps(frames)
    monkeypatch.setattr(cel0, "FINE_PIXELS_PER_SOLVE", 2 * 48 * 48)  # two 12 x 12 frames at L = 4
    parts, mass_parts = model.maps(frames)
    assert len(model.last_records) == 5
    np.testing.assert_allclose(parts.numpy(), whole.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mass_parts, mass)


@pytest.mark.parametrize("lam", [0.0, -1.0, math.inf, math.nan])
def test_bad_lambda_is_a_clear_error(lam):
    op = AcquisitionOperator(ACQ, (12, 12))
    with pytest.raises(ValueError, match="lambda must be a finite number > 0"):
        cel0.solve(np.ones((12, 12), np.float32), op, lam)
    with pytest.raises(ValueError, match="lambda"):
        cel0.Cel0Localizer(ACQ, lam=lam)


@pytest.mark.parametrize("setting", [dict(max_outer=0), dict(max_inner=1.5), dict(max_outer=math.nan),
                                     dict(max_inner=True), dict(tol=0.0), dict(tol=math.nan)])
def test_bad_iteration_settings(setting):
    # NaN gave NumPy's "cannot convert float NaN to integer" (review)
    with pytest.raises(ValueError, match="must be an integer >= 1|tolerance"):
        cel0.SolverSettings(**setting)


@pytest.mark.parametrize("setting", [dict(n_lams=math.nan), dict(n_lams=2.0), dict(n_frames=0), dict(n_frames=math.inf),
                                     dict(lams_per_solve=1.5)])
def test_bad_sweep_counts_are_refused_before_any_frame_is_read(setting):
    class Unreadable:  # a bad count is refused before the frames are read (lams_per_solve was checked after)
        shape = (3, 16, 16)

        def __len__(self):
            return 3

        def __getitem__(self, key):
            raise AssertionError("frames read")

    _, gt = simulated(n_frames=3)
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        cel0.lambda_sweep(Unreadable(), gt, ACQ, device="cpu", **setting)


def test_background_setting():
    assert cel0.parse_background("auto") == "auto"
    assert cel0.parse_background("None") is None and cel0.parse_background(None) is None
    assert cel0.parse_background("120") == 120.0
    for bad in ("abc", -1.0, math.inf, True):
        with pytest.raises(ValueError, match="background"):
            cel0.parse_background(bad)
    frames = np.stack([np.full((12, 12), 110.0), np.arange(144.0).reshape(12, 12)])
    assert cel0.background_levels(frames, "auto") == pytest.approx([110.0, np.percentile(np.arange(144.0), 25)])
    assert cel0.background_levels(frames, 100) == pytest.approx([100.0, 100.0])
    # a level at or above every pixel of a frame with something in it left nothing, without a word (review)
    with pytest.warns(cel0.BackgroundWarning, match="the background level 1e\\+09 ADU is at or above every pixel"):
        y, scale = cel0.prepare_frames(frames, 1e9)
    assert (scale == 0).all() and (y == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the constant frame at 110 has nothing to lose; 'auto' never warns
        cel0.prepare_frames(frames[:1], 120.0)
        cel0.prepare_frames(frames, "auto")
        cel0.prepare_frames(frames, 100.0)


def test_all_zero_and_constant_frames_give_empty_results():
    frames, _ = simulated(n_frames=1)
    batch = np.stack([np.zeros((12, 12)), np.full((12, 12), 137.0), frames[0]]).astype(np.float32)
    model = cel0.Cel0Localizer(ACQ, lam=0.02, device="cpu", **FAST)
    maps, scale = model.maps(batch)
    assert torch.isfinite(maps).all() and np.isfinite(scale).all()
    assert float(maps[:2].abs().max()) == 0.0 and float(maps[2].max()) > 0
    assert [r.converged for r in model.last_records[:2]] == [True, True]
    assert all(math.isfinite(r.objective) for r in model.last_records)
    with pytest.warns(NothingFoundWarning, match=r"no molecule was found in 2 frames .*: frames without molecules, "
                                                 r"or a localizer"):  # (no "threshold too high" at 0)
        table = localize(model, batch[:2])
    assert len(table) == 0 and list(table.columns) == ["frame", "x [nm]", "y [nm]", "intensity [photon]"]


def test_non_finite_frames_are_refused_with_the_frame_named():
    frames, _ = simulated(n_frames=3)
    frames[1, 4, 5] = np.nan
    op = AcquisitionOperator(ACQ, (12, 12))
    with pytest.raises(FrameSourceError, match="frame 2 of the batch"):
        cel0.solve(frames, op, 0.02)
    with pytest.raises(FrameSourceError, match="frame 2"):
        cel0.prepare_frames(frames)
    localizer = cel0.Cel0Localizer(ACQ, device="cpu", **FAST)
    with pytest.raises(FrameSourceError, match="frame 2 contains 1 NaN or infinite value \\(camera"):
        localize(localizer, frames, fix_outlier_pixels=False)
    # with the outlier fix (the default) an isolated one is replaced like a dead pixel, two side by side are not
    assert len(localize(localizer, frames)) > 0
    frames[1, 4, 6] = np.inf
    with pytest.raises(FrameSourceError, match="frame 2 contains 2 NaN or infinite values beside each other"):
        localize(localizer, frames)


def test_converged_frames_leave_the_active_batch(monkeypatch):
    sizes = []
    real_step = cel0._prox_grad_step

    def counting(op, gamma):
        step = real_step(op, gamma)

        def wrapped(z, b):
            sizes.append(len(z))
            return step(z, b)

        return wrapped

    monkeypatch.setattr(cel0, "_prox_grad_step", counting)
    y, _ = cel0.prepare_frames(simulated(n_frames=1)[0])
    batch = np.concatenate([np.zeros_like(y), y, np.zeros_like(y)])
    _, records = cel0.solve(batch, AcquisitionOperator(ACQ, (12, 12)), 0.02, **FAST)
    # the empty frames converge in the first FISTA step of the first outer iteration
    assert (records[0].outer_iterations, records[0].inner_iterations) == (1, 1)
    assert records[1].outer_iterations > 1
    assert sizes[0] == 3 and set(sizes[1:]) == {1}
    assert sum(sizes) == sum(r.inner_iterations for r in records)


def test_cancel_stops_early_and_keeps_the_iterates():
    y, _ = cel0.prepare_frames(simulated(n_frames=2)[0])
    op = AcquisitionOperator(ACQ, (12, 12))
    event = threading.Event()
    with pytest.raises(cel0.Cel0Cancelled, match="cancelled") as info:
        cel0.solve(y, op, 0.005, progress=lambda p: event.set(), cancel=event)
    assert info.value.x.shape == (2,) + op.fine_shape and float(info.value.x.max()) > 0
    assert [r.outer_iterations for r in info.value.records] == [1, 1]
    assert not any(r.converged for r in info.value.records)
    from napari_deepcel0.core.cancel import Cancelled

    assert isinstance(info.value, Cancelled) and not isinstance(info.value, RuntimeError)  # not an error
    with pytest.raises(cel0.Cel0Cancelled):
        cel0.Cel0Localizer(ACQ, device="cpu", cancel=lambda: True).maps(y)


def test_photon_count_is_recovered_through_localize():
    acq = ACQ.replace(gain_adu_per_photon=2.0)
    emitters = pd.DataFrame({"frame": [1], "x [nm]": [612.5], "y [nm]": [587.5],  # a fine-pixel centre
                             "intensity [photon]": [1000.0]})
    frames = sim.render_frames(emitters, acq, (12, 12), 1, noise=None)
    table = localize(cel0.Cel0Localizer(acq, lam=0.1, background=None, device="cpu"), frames)
    assert len(table) == 1
    assert table.loc[0, "x [nm]"] == pytest.approx(612.5, abs=1.0)
    assert table.loc[0, "y [nm]"] == pytest.approx(587.5, abs=1.0)
    assert table.loc[0, "intensity [photon]"] == pytest.approx(1000.0, rel=0.01)


def test_photon_counts_of_noisy_molecules_gather_their_spread_map():
    """On noisy frames CEL0's map spreads a molecule over more than 3 x 3 fine pixels at
    L = 4: the 3 x 3 sums read 67-97 % of the photons (review); the map values nearest
    to each maximum within 1.5 PSF sigmas read them all."""
    rng = np.random.default_rng(3)
    emitters = pd.DataFrame({"frame": np.repeat([1, 2, 3], 2), "x [nm]": np.tile([700.0, 1700.0], 3) + rng.uniform(
        -50, 50, 6), "y [nm]": np.tile([800.0, 1600.0], 3) + rng.uniform(-50, 50, 6), "intensity [photon]": 3000.0})
    acq = ACQ.replace(gain_adu_per_photon=2.0)
    frames = sim.render_frames(emitters, acq, (24, 24), 3, sim.CameraNoise(background_photons=(10.0, 10.0)), seed=0)
    table = localize(cel0.Cel0Localizer(acq, device="cpu"), frames)
    pairs = match(emitters, table, 50.0)
    assert len(pairs.gt_index) == len(emitters)
    assert table["intensity [photon]"].to_numpy()[pairs.est_index] == pytest.approx(3000.0, rel=0.1)


def test_a_maximums_mass_is_the_map_nearest_to_it_within_the_radius():
    from napari_deepcel0.core.localize import find_peaks

    m = np.zeros((2, 16, 16), np.float32)
    m[0, 4, 4], m[0, 4, 5] = 5.0, 1.0  # a maximum and its neighbour
    m[0, 4, 9:16] = [2.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25]  # a maximum at column 10 and its tail, the last 5 away
    m[1, 4, 6] = 3.0  # another frame's map is not theirs
    assert find_peaks(m[:1], 0.1, mass_radius_px=4.0)["mass"].tolist() == [6.0, 12.5]
    assert find_peaks(m, 0.1, mass_radius_px=4.0)["mass"].tolist() == [6.0, 12.5, 3.0]
    assert find_peaks(m[:1], 0.1)["mass"].tolist() == [6.0, 9.0]  # 3 x 3 sums without a radius


def test_readings_of_a_split_spike():
    """Two adjacent non-zero pixels: one molecule for peaks and components, two for pixels."""
    m = np.zeros((1, 16, 16), np.float32)
    m[0, 5, 5], m[0, 5, 6] = 2.0, 1.0
    counts = {k: len(cel0.read_maps(m, ACQ, 0.0, k)) for k in cel0.READINGS}
    assert counts == {"peaks": 1, "components": 1, "pixels": 2}
    pixels = cel0.read_maps(m, ACQ, 0.0, "pixels", frames=[7], mass_scale=10.0)
    assert pixels["frame"].tolist() == [7, 7] and pixels["intensity [photon]"].tolist() == [20.0, 10.0]
    assert pixels["x [nm]"].tolist() == [137.5, 162.5]
    with pytest.raises(ValueError, match="method"):
        cel0.read_maps(m, ACQ, 0.0, "blobs")


# ------------------------------------------------------------------ sweep
def test_lambda_sweep_returns_the_curve_and_its_best():
    frames, gt = simulated(n_frames=6, size=16, density=2.0, seed=11)
    result = cel0.lambda_sweep(frames, gt, ACQ, n_lams=4, lam_range=(1e-3, 1.0), n_frames=3, seed=1, device="cpu",
                               max_outer=10, max_inner=50)
    assert len(result.lams) == 4 and result.lams == pytest.approx(np.geomspace(1e-3, 1.0, 4))
    assert len(result.frames) == 3 and set(result.frames) <= set(range(1, 7))
    curve = result.curve()
    assert len(curve) == 4 and {"lam", "jaccard", "rmse_nm", "tp", "fp", "fn"} <= set(curve.columns)
    assert result.best_score.jaccard == curve["jaccard"].max()
    assert result.best_lam == curve["lam"][curve["jaccard"].idxmax()]
    jaccards = curve["jaccard"].tolist()
    assert bool(result.edge_note) == ((result.best_index() == 0 and jaccards[0] > jaccards[1])
                                      or (result.best_index() == 3 and jaccards[3] > jaccards[2]))
    # the curve is what one solve per lambda gives on the chosen frames
    lam = result.lams[result.best_index()]
    y, scale = cel0.prepare_frames(frames[result.frames - 1])
    x, _ = cel0.solve(y, AcquisitionOperator(ACQ, (16, 16)), lam, max_outer=10, max_inner=50)
    table = cel0.read_maps(x, ACQ, 0.0, "peaks", frames=result.frames, mass_scale=scale)
    assert score(gt[gt["frame"].isin(result.frames)], table, 50.0).jaccard == result.best_score.jaccard
    d = json.loads(json.dumps(result.to_dict()))
    assert d["best_lam"] == result.best_lam and len(d["curve"]) == 4
    assert set(d["best_lam_by_method"]) == set(cel0.READINGS)


def test_one_lambda_per_frame_solves_as_each_lambda_alone():
    y, _ = cel0.prepare_frames(simulated(n_frames=2, seed=5)[0])
    op = AcquisitionOperator(ACQ, (12, 12))
    lams = np.array([0.003, 0.003, 0.05, 0.05])
    together, records = cel0.solve(np.concatenate([y, y]), op, lams, **FAST)
    for i, lam in ((0, 0.003), (2, 0.05)):
        alone, alone_records = cel0.solve(y, op, lam, **FAST)
        assert torch.allclose(together[i : i + 2], alone, atol=1e-6)
        assert [r.outer_iterations for r in records[i : i + 2]] == [r.outer_iterations for r in alone_records]
        assert [r.objective for r in records[i : i + 2]] == pytest.approx([r.objective for r in alone_records])
    assert (together[2:] > 0).sum() < (together[:2] > 0).sum()  # the larger lambda keeps fewer pixels
    with pytest.raises(ValueError, match="one lambda per frame"):
        cel0.solve(y, op, [0.01, 0.02, 0.03], **FAST)
    with pytest.raises(ValueError, match="lambda"):
        cel0.solve(y, op, [0.01, -1.0], **FAST)
    with pytest.raises(ValueError, match="no frames"):
        cel0.solve(y[:0], op, np.zeros(0), **FAST)
    norms = op.column_norms()
    per_frame = cel0.objective(together[1:3], y[[1, 0]], op, [0.003, 0.05], norms)
    assert per_frame == pytest.approx([cel0.objective(together[1], y[1], op, 0.003, norms)[0],
                                       cel0.objective(together[2], y[0], op, 0.05, norms)[0]])
    with pytest.raises(ValueError, match="one lambda per frame"):
        cel0.objective(together[:2], y, op, [0.003, 0.05, 0.1], norms)


def test_a_sweep_solving_its_lambdas_together_scores_as_one_at_a_time():
    # on a GPU the sweep solves several lambdas in one batch of copies of its frames
    frames, gt = simulated(n_frames=6, size=16, density=2.0, seed=11)
    kw = dict(n_lams=5, lam_range=(1e-3, 1.0), n_frames=3, seed=1, device="cpu", max_outer=10, max_inner=50)
    seen = []
    one = cel0.lambda_sweep(frames, gt, ACQ, **kw)
    grouped = cel0.lambda_sweep(frames, gt, ACQ, lams_per_solve=2, progress=lambda *a: seen.append(a[:3]), **kw)
    assert [s.jaccard for s in grouped.scores["peaks"]] == [s.jaccard for s in one.scores["peaks"]]
    assert grouped.best_lam == one.best_lam
    assert [(d, t) for d, t, _ in seen] == [(i, 5) for i in range(1, 6)]
    assert [lam for *_, lam in seen] == pytest.approx(list(one.lams))
    with pytest.raises(ValueError, match="lams_per_solve"):
        cel0.lambda_sweep(frames, gt, ACQ, lams_per_solve=0, **kw)


def test_lambda_sweep_needs_ground_truth_in_its_frames():
    frames, gt = simulated(n_frames=3)
    with pytest.raises(ValueError, match="no molecules"):
        cel0.lambda_sweep(frames, gt.iloc[:0], ACQ, n_lams=2, device="cpu")
    with pytest.raises(ValueError, match="lambda range"):
        cel0.lambda_sweep(frames, gt, ACQ, lam_range=(0.0, 1.0), device="cpu")
    with pytest.raises(ValueError, match="at least one lambda"):  # an empty sweep crashed best_lam
        cel0.lambda_sweep(frames, gt, ACQ, lams=[], device="cpu")
    assert cel0.sweep_lambdas(None, (0.3, 0.3), 1).tolist() == [0.3]
    assert cel0.sweep_lambdas(None, (0.01, 1.0), 1).tolist() == [0.01]  # one: the lower end
    np.testing.assert_allclose(cel0.sweep_lambdas(None, (0.01, 1.0), 3), [0.01, 0.1, 1.0])


def test_lambda_sweep_draws_its_frames_where_the_ground_truth_is():
    """A ground truth of frames 1-3 of 6: frames 4-6 were drawn too and all their
    detections counted as false (Jaccard 41 % for 67 %, lifecycle review)."""
    frames, gt = simulated(n_frames=6, size=12, density=2.0, seed=4)
    part = gt[gt["frame"] <= 3]
    kw = dict(n_lams=1, n_frames=3, device="cpu", max_outer=2, max_inner=10)
    with pytest.warns(UserWarning, match=r"holds frames 1-3 only: the sweep draws its frames among those \(3 of the 6"):
        result = cel0.lambda_sweep(frames, part, ACQ, **kw)
    assert result.frames.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="holds frames 1-3 only, none of the frames chosen"):
        cel0.lambda_sweep(frames, part, ACQ, frames="4-6", **kw)


def test_lambda_sweep_names_a_bad_frame_by_its_number_in_the_stack():
    """The sweep draws frames from the stack; a NaN in stack frame 8 was reported as
    "frame 3" (its place among the drawn frames)."""
    frames, gt = simulated(n_frames=9, size=12, seed=4)
    frames = frames.astype(np.float32)
    frames[7, 2, 3:5] = np.nan  # two side by side (an isolated one is replaced)
    with pytest.raises(FrameSourceError, match="frame 8 "):
        cel0.lambda_sweep(frames, gt, ACQ, frames="6-9", n_frames=4, n_lams=1, device="cpu")


# ------------------------------------------------------------------ ISBI
def test_isbi_two_frames(isbi_dir):
    from napari_deepcel0.core.io import read_stack

    with read_stack(isbi_dir / "frames.tif") as stack:
        gt = read_localizations(isbi_dir / "ground_truth.csv")
        model = cel0.Cel0Localizer(ISBI2013, max_outer=20, device="cpu")
        table = localize(model, stack, frames="1-2")
        s = score(gt[gt["frame"] <= 2], table, 50.0)
        assert s.jaccard > 30.0 and s.rmse_nm < 35.0
        assert table["intensity [photon]"].between(50, 20000).all()


# ------------------------------------------------------------------ CLI
@pytest.fixture
def stack_files(tmp_path):
    frames, gt = simulated(n_frames=4, size=16, density=2.0, seed=3)
    write_tiff(tmp_path / "frames.tif", np.clip(frames, 0, 65535).astype(np.uint16), pixel_size_nm=100.0)
    write_thunderstorm_csv(tmp_path / "gt.csv", gt)
    return tmp_path


def test_cli_cel0_writes_thunderstorm_csv(stack_files, capsys):
    out = stack_files / "locs.csv"
    assert cli.main(["cel0", str(stack_files / "frames.tif"), "--out", str(out), "--lam", "0.02", "--frames", "1-3",
                     "--max-outer", "20", "--max-inner", "100", "--device", "cpu", "--fwhm", "258.21",
                     "--upsampling", "4"]) == 0
    assert out.read_text().splitlines()[0].startswith('"id","frame","x [nm]","y [nm]","intensity [photon]"')
    table = read_localizations(out)
    assert len(table) > 0 and table["frame"].between(1, 3).all()
    assert table["x [nm]"].between(0, 1600).all() and (table["intensity [photon]"] > 0).all()
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "converged:" in captured.err


def test_cli_cel0_sweep_json(stack_files, capsys):
    assert cli.main(["cel0", str(stack_files / "frames.tif"), "--sweep", str(stack_files / "gt.csv"), "--lams", "3",
                     "--sweep-frames", "2", "--max-outer", "10", "--max-inner", "50", "--device", "cpu", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["curve"]) == 3 and len(d["frames"]) == 2
    assert d["best_jaccard"] == max(c["jaccard"] for c in d["curve"])
    assert "edge_note" in d
    assert cli.main(["cel0", str(stack_files / "frames.tif"), "--sweep", str(stack_files / "gt.csv"), "--lams", "2",
                     "--sweep-frames", "1", "--max-outer", "5", "--max-inner", "20", "--device", "cpu"]) == 0
    out = capsys.readouterr().out  # of two lambdas the best is one at the edge of the range
    assert "best lambda:" in out and "lambda tried: the optimum may lie beyond it" in out and "(--lam-range)" in out


def test_a_best_lambda_at_the_edge_of_the_range_says_so():
    from types import SimpleNamespace

    def sweep(jaccards):
        lams = np.geomspace(1e-3, 1.0, len(jaccards))
        return cel0.LambdaSweep(lams, {"peaks": [SimpleNamespace(jaccard=j) for j in jaccards]}, "peaks",
                                np.array([1]), 50.0, 0.0)

    assert sweep([10.0, 30.0, 20.0]).edge_note == ""
    assert sweep([30.0, 20.0, 10.0]).edge_note.startswith("the best is the smallest lambda tried")
    assert sweep([10.0, 20.0, 30.0]).edge_note.endswith("sweep a range reaching higher")
    assert sweep([30.0]).edge_note == ""  # one lambda: no range to speak of
    assert sweep([50.0, 50.0, 50.0, 40.0]).edge_note == ""  # a plateau: lambdas inside do as well (review)
    assert sweep([0.0, 0.0, 0.0]).edge_note == ""  # flat (a ground truth of another stack): no advice


@pytest.mark.parametrize("bad", [["--lam", "0"], ["--lam", "nan"], ["--background", "dark"]])
def test_cli_cel0_bad_input_exits_2_with_one_line(stack_files, capsys, bad):
    code = cli.main(["cel0", str(stack_files / "frames.tif"), "--out", str(stack_files / "x.csv"), "--device", "cpu",
                     *bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("deepcel0 cel0: error:")
    assert ("lambda" in err[0]) or ("background" in err[0])
    assert not (stack_files / "x.csv").exists()


def test_cli_cel0_missing_stack_exits_2(tmp_path, capsys):
    code = cli.main(["cel0", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.tif" in err[0]


def test_cli_cel0_help_documents_every_option(capsys):
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices["cel0"]
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert undocumented == []
    # the solver's relative tolerance is --rel-tol (--tol, its older name, still works): --tol is nm elsewhere
    for flag in ("--rel-tol", "--tol"):
        assert parser.parse_args(["s.tif", "--out", "o.csv", flag, "3e-4"]).tol == 3e-4
    assert "--rel-tol T, --tol T" in parser.format_help() and "relative" in parser.format_help()


def test_pixel_localizations_number_frames_from_one_and_the_objective_halves_the_residual():
    """Without ``frames`` the pixel reading numbered frames from 0 (which the CSV writer
    refuses); an objective without its 0.5 went unseen (mutation review)."""
    maps = np.zeros((2, 8, 8), np.float32)
    maps[1, 2, 3] = 1.0
    assert cel0.pixel_localizations(maps, ISBI2013)["frame"].tolist() == [2]
    op = AcquisitionOperator(ISBI2013, (8, 8))
    y = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    f = cel0.objective(np.zeros(op.fine_shape, np.float32), y, op, 0.1, op.column_norms())
    assert f[0] == pytest.approx(0.5 * float((y.astype(np.float64) ** 2).sum()), rel=1e-5)


# ------------------------------------------------------ background-only frames
def background_only(n_frames=24, size=32, seed=0):
    """Frames of background and noise alone: camera frames (2, 10 and 100 photons a pixel)
    and the paper's white Gaussian noise on an offset."""
    rng = np.random.default_rng(seed)
    parts = [sim.CameraNoise(background_photons=(b, b), quantize=True).apply(np.zeros((n_frames, size, size)), ACQ, rng)
             for b in (2.0, 10.0, 100.0)]
    return np.concatenate(parts + [100.0 + rng.normal(0.0, 3.0, (n_frames, size, size))]).astype(np.float32)


def at_10_db(n_frames=20, size=32, seed=0):
    """Frames with molecules at the paper's lowest SNR, 10 dB (its Eq. 14), sparse to
    dense, on an offset; only frames that hold a molecule."""
    rng = np.random.default_rng(seed)
    kept = []
    for density in (0.2, 1.0, 6.0, 10.0):
        frames, truth = sim.simulate_stack(n_frames=n_frames, shape=(size, size), density_per_um2=density,
                                           structure="uniform", acq=ACQ, noise=sim.GaussianSNRNoise((10.0, 10.0)),
                                           seed=int(rng.integers(2**31)))
        has = np.isin(np.arange(1, n_frames + 1), truth["frame"].to_numpy())
        kept.append(frames[has] + 100.0)
    return np.concatenate(kept).astype(np.float32)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_frames_of_background_and_noise_alone_are_told_from_frames_with_molecules_at_10_db(size):
    """CEL0 divides each frame by its maximum, so it localized the noise of a frame with no
    molecule (about 400 localizations a 64 x 64 frame) without a word (bad-input review)."""
    quiet = cel0.background_only_frames(background_only(size=size), ACQ.sigma_px)
    assert quiet.mean() >= 0.9  # (measured: 96-99 %; the rest are few-photon frames' outliers)
    molecules = at_10_db(size=size)
    assert len(molecules) > 40 and not cel0.background_only_frames(molecules, ACQ.sigma_px).any()
    # a frame whose noise reads as zero (constant, or noise-free) is not judged
    flat = np.full((2, size, size), 100.0, np.float32)
    assert not cel0.background_only_frames(flat, ACQ.sigma_px).any()


def test_cel0_warns_once_a_run_of_frames_that_show_only_noise():
    frames = background_only(n_frames=2, size=16)  # 8 frames
    model = cel0.Cel0Localizer(ACQ, device="cpu", batch_size=3, max_outer=2, max_inner=5)
    with pytest.warns(cel0.BackgroundOnlyWarning, match=r"frames show nothing brighter than their noise \(3 of the 3 "
                                                         "of this batch.*CEL0 divides each frame by its maximum and "
                                                         "so localizes the noise") as caught:
        localize(model, frames)
    assert len([w for w in caught if w.category is cel0.BackgroundOnlyWarning]) == 1  # 3 batches, one warning
    assert model.background_only_count == 8 and model.last_background_only.tolist() == [True, True]
    model = cel0.Cel0Localizer(ACQ, device="cpu", max_outer=2, max_inner=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cel0.BackgroundOnlyWarning)
        # (their sparsest frames, about half a molecule each, at the default lambda and 2 x 5 iterations:
        # their localizations are mostly faint, which the other warning says)
        warnings.simplefilter("ignore", cel0.FaintLocalizationsWarning)
        localize(model, at_10_db(n_frames=2, size=16))
    assert model.background_only_count == 0


def test_faint_localizations_are_those_under_three_noise_sds_of_a_molecules_photons():
    acq = ACQ.replace(gain_adu_per_photon=2.0)
    frames = 100.0 + np.random.default_rng(0).normal(0.0, 10.0, (2, 128, 128))  # 10 ADU = 5 photons of noise
    sd_photons = 5.0 * math.sqrt(4.0 * math.pi) * acq.sigma_px  # a matched filter's, on white noise
    table = pd.DataFrame({"frame": [1, 1, 2, 2], "x [nm]": 500.0, "y [nm]": 500.0,
                          "intensity [photon]": np.array([2.7, 3.3, 1.0, 10.0]) * 3.0 * sd_photons / 3.0})
    assert cel0.faint_localizations(frames, table, acq).tolist() == [True, False, True, False]
    # the table's frames are the stack's numbers of the frames given
    moved = table.assign(frame=table["frame"] + 10)
    assert cel0.faint_localizations(frames, moved, acq, numbers=[11, 12]).tolist() == [True, False, True, False]
    assert cel0.faint_localizations(frames, table.iloc[:0], acq).tolist() == []


def test_cel0_warns_once_a_run_when_most_localizations_are_fainter_than_the_noise():
    """At its default lambda (ISBI 2013's, high density) CEL0 fitted the noise of sparse
    frames: 0.5 molecules/um^2 gave about 130 localizations a 48 x 48 frame for 11 molecules
    (Jaccard 8 %), without a word (a review). Dense frames, and a lambda that suits the
    sparse ones, do not warn."""
    sparse, _ = sim.simulate_stack(n_frames=4, shape=(48, 48), density_per_um2=0.5, structure="uniform", seed=2)
    model = cel0.Cel0Localizer(ISBI2013, device="cpu", batch_size=2)
    with pytest.warns(cel0.FaintLocalizationsWarning, match=r"of the \d+ localizations of 2 frames \(1-2\) are "
                                                            "fainter than 3 noise standard deviations.*lambda 0.001, "
                                                            "the default, suits dense frames") as caught:
        table = localize(model, sparse)
    assert len([w for w in caught if w.category is cel0.FaintLocalizationsWarning]) == 1  # 2 batches, one warning
    assert model.localization_count == len(table) and model.faint_count > 0.5 * len(table)
    dense = sim.simulate_stack(n_frames=2, shape=(48, 48), density_per_um2=6.0, structure="uniform", seed=2)[0]
    for frames, lam in ((sparse, 0.01), (dense, cel0.DEFAULT_LAM)):
        model = cel0.Cel0Localizer(ISBI2013, lam=lam, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error", cel0.FaintLocalizationsWarning)
            table = localize(model, frames)
        assert len(table) > 20 and model.faint_count < 0.2 * len(table)
    # judged frame by frame: the batch size (4 frames on a CPU, 512 on a GPU) does not decide (dense frames in a
    # batch with sparse ones hid them: a review), and a first batch with a few faint localizations does not use
    # up the warning (it did: a reread)
    mixed = np.concatenate([dense, sparse[:2]])
    for batch_size in (2, 4):
        model = cel0.Cel0Localizer(ISBI2013, device="cpu", batch_size=batch_size)
        with pytest.warns(cel0.FaintLocalizationsWarning, match=r"localizations of 2 frames \(3-4\) are fainter"):
            localize(model, mixed)


def test_the_cel0_command_warns_of_faint_localizations_and_counts_them(tmp_path, capsys):
    sparse, _ = sim.simulate_stack(n_frames=2, shape=(48, 48), density_per_um2=0.5, structure="uniform", seed=2)
    stack = write_tiff(tmp_path / "sparse.tif", np.clip(sparse, 0, 65535).astype(np.uint16), pixel_size_nm=100.0)
    out = tmp_path / "locs.csv"
    assert cli.main(["cel0", str(stack), "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count("are fainter than 3 noise standard deviations of a molecule's photon count") == 1
    # the default lambda says what it suits, at the start (2/um^2 lost half its Jaccard without the warning)
    assert "note: lambda 0.001 is the best of ISBI 2013's high density" in err and "--sweep GT" in err
    assert cli.main(["cel0", str(stack), "--out", str(tmp_path / "other.csv"), "--device", "cpu", "--lam", "0.01"]) == 0
    assert "note: lambda" not in capsys.readouterr().err
    protocol = json.loads((tmp_path / "locs-protocol.json").read_text())
    faint = protocol["settings"]["localizations_faint"]
    assert 0.5 * len(read_localizations(out)) < faint <= len(read_localizations(out))


def test_the_cel0_command_names_the_frames_that_show_only_noise(tmp_path, capsys):
    molecules = at_10_db(n_frames=4, size=16)[:2]
    noise = background_only(n_frames=1, size=16)[:2]
    stack = write_tiff(tmp_path / "mixed.tif", np.round(np.concatenate([molecules[:1], noise, molecules[1:]])).astype(
        np.uint16), pixel_size_nm=100.0)
    out = tmp_path / "locs.csv"
    assert cli.main(["cel0", str(stack), "--out", str(out), "--max-outer", "2", "--max-inner", "5",
                     "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert err.count("frames show nothing brighter than their noise (2 of the 4 of this batch") == 1
    table = read_localizations(out)
    noise_rows = int(table["frame"].isin([2, 3]).sum())
    assert noise_rows > 0 and (f"note: 2 of 4 frames (frames 2-3) showed only background and noise; their {noise_rows} "
                               "localizations fit the noise") in err


def test_cel0_far_above_deepcel0s_count_is_noted_from_the_threshold_on():
    from napari_deepcel0.core.cel0 import (DEFAULT_LAM, EXCESS_MIN_COUNT, EXCESS_OVER_DEEPCEL0,
                                           excess_over_deepcel0_message)

    n = 40
    assert excess_over_deepcel0_message(int(EXCESS_OVER_DEEPCEL0 * n), n, 2, DEFAULT_LAM) == ""  # at it: not above
    note = excess_over_deepcel0_message(int(EXCESS_OVER_DEEPCEL0 * n) + 1, n, 2, DEFAULT_LAM)
    assert note.startswith("CEL0 found 1.5 times as many localizations as DeepCEL0 on these frames (61 against 40 "
                           "(30.5 and 20.0 a frame)): if DeepCEL0's model suits these frames, lambda 0.001 (the "
                           "default, made for dense frames like ISBI 2013's) is likely too small for them")
    assert "the default" not in excess_over_deepcel0_message(100, n, 1, 0.002)
    assert "a frame" not in excess_over_deepcel0_message(100, n, 1, 0.002)  # one frame: the counts say it
    assert excess_over_deepcel0_message(100, EXCESS_MIN_COUNT - 1, 2, DEFAULT_LAM) == ""  # too few to judge by
