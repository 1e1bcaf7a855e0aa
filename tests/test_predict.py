import threading

import numpy as np
import pandas as pd
import pytest
import torch

from napari_deepcel0.core.acquisition import ISBI2013, Acquisition
from napari_deepcel0.core.columns import INTENSITY
from napari_deepcel0.core.localize import find_peaks
from napari_deepcel0.core.frames import FrameSourceError, frame_ranges, parse_frame_selection
from napari_deepcel0.core import predict
from napari_deepcel0.core.predict import (
    ORIENTATIONS,
    BatchResult,
    DeepLocalizer,
    NothingFoundWarning,
    localize,
    localize_stream,
)
from napari_deepcel0.core.metrics import score
from napari_deepcel0.core.simulate import CameraNoise, render_frames, simulate_stack


@pytest.fixture(scope="module")
def stack():
    frames, gt = simulate_stack(n_frames=5, shape=(20, 28), seed=3)
    return frames, gt


@pytest.fixture
def model(tiny_model_path):
    return DeepLocalizer(tiny_model_path, device="cpu", precision="fp32", batch_size=2)


def test_frame_ranges_are_merged_not_expanded():
    assert frame_ranges("9,1-3,2-5", 10) == [(1, 5), (9, 9)]
    assert frame_ranges("4-5,1-3", 10) == [(1, 5)]  # adjacent ranges are one
    assert frame_ranges("1-", 10**12) == [(1, 10**12)]  # no array of 10^12 frames


def test_parse_frame_selection():
    assert parse_frame_selection(None, 4).tolist() == [0, 1, 2, 3]
    assert parse_frame_selection(" ALL ", 4).tolist() == parse_frame_selection("All", 4).tolist() == [0, 1, 2, 3]
    assert parse_frame_selection("2-3", 4).tolist() == [1, 2]
    assert parse_frame_selection("1,3-", 4).tolist() == [0, 2, 3]
    assert parse_frame_selection((2, 4), 4).tolist() == [1, 3]  # numbers, not a range
    assert parse_frame_selection(np.array([3, 1, 3]), 4).tolist() == [0, 2]
    assert parse_frame_selection(3, 4).tolist() == [2] == parse_frame_selection(np.int64(3), 4).tolist()
    for bad in ("0-2", "3-9", "2-5", "x", "3-2,1", [1.5], [float("nan")], []):  # (5: one past the end)
        with pytest.raises(ValueError):
            parse_frame_selection(bad, 4)
    # a typo'd huge range is refused from its bounds, without building it
    with pytest.raises(ValueError, match="outside 1..4"):
        parse_frame_selection("1-100000000000000", 4)
    with pytest.raises(ValueError, match="runs backwards"):
        parse_frame_selection("1,3-2", 4)
    for bad in (True, 1.5, slice(1, 3), ["1-3"]):  # "object is not iterable", "could not convert" (review)
        with pytest.raises(ValueError, match="cannot read frame selection"):
            parse_frame_selection(bad, 4)


def test_streaming_equals_one_shot_and_any_frame_size(model, stack):
    frames, _ = stack
    whole = localize(model, frames, threshold=0.0)
    parts = list(localize_stream(model, frames, threshold=0.0, batch_size=2))
    assert [p.frames.tolist() for p in parts] == [[1, 2], [3, 4], [5]]
    assert parts[-1].done == 5 == parts[-1].total
    joined = np.concatenate([p.table[["x [nm]", "y [nm]"]].to_numpy() for p in parts])
    assert np.allclose(np.sort(joined, axis=0), np.sort(whole[["x [nm]", "y [nm]"]].to_numpy(), axis=0), atol=1e-3)
    odd = frames[:, :13, :15]  # fine grid 52 x 60: not a multiple of 8
    maps, _ = model.maps(odd)
    assert maps.shape == (5, 52, 60) and torch.isfinite(maps).all()


@pytest.mark.parametrize("axis", ["x", "y"])
def test_molecules_near_the_far_edge_of_an_odd_sized_frame_are_not_pulled_inward(axis):
    # an odd number of camera pixels (a fine side that is not a multiple of 8) once meant
    # padding, which moved molecules 70-110 nm from the right or bottom edge 13-20 nm inward
    # (now 1-4 nm, as in frames of even sides)
    import pandas as pd

    from napari_deepcel0.core import simulate as sim
    from napari_deepcel0.core.metrics import match_points

    bundled = DeepLocalizer(None, device="cpu", precision="fp32")
    acq = bundled.acquisition
    long_px, edge_px = 48, 35
    along = np.arange(300.0, long_px * 100 - 300, 450.0)
    edge = edge_px * acq.pixel_size_nm - np.resize([70.0, 110.0], len(along))
    x, y = (edge, along) if axis == "x" else (along, edge)
    emitters = pd.DataFrame({"frame": 1, "x [nm]": x, "y [nm]": y, "intensity [photon]": 3000.0})
    shape = (long_px, edge_px) if axis == "x" else (edge_px, long_px)
    frame = sim.render_frames(emitters, acq, shape, 1, noise=None) + acq.offset_adu + 10
    table = localize(bundled, frame)
    truth = emitters[["x [nm]", "y [nm]"]].to_numpy()
    gi, ei = match_points(truth, table[["x [nm]", "y [nm]"]].to_numpy(), 100.0)
    assert len(gi) == len(truth)
    column = 0 if axis == "x" else 1
    bias = (table[["x [nm]", "y [nm]"]].to_numpy()[ei, column] - truth[gi, column]).mean()
    assert abs(bias) < 8.0, f"molecules near the edge moved {bias:.1f} nm along {axis}"


def test_a_cuda_device_that_is_not_there_is_named_as_asked():
    from napari_deepcel0.core.devices import resolve_device

    if torch.cuda.is_available():
        missing = f"cuda:{torch.cuda.device_count()}"
        with pytest.raises(RuntimeError, match=f"'{missing}' was requested but this machine has"):
            resolve_device(missing)
    else:
        with pytest.raises(RuntimeError, match="device 'cuda:7' was requested but no CUDA GPU"):  # said 'cuda'
            resolve_device("cuda:7")


def test_a_batch_counts_frames_of_64_by_64_pixels():
    # 16 frames of 256 x 256 pixels in one pass took 5 GB on the CPU (300 MB a frame)
    from napari_deepcel0.core.frames import frames_per_batch

    assert frames_per_batch(16, (64, 64)) == 16 == frames_per_batch(16, (20, 28))  # never more than asked
    assert frames_per_batch(16, (128, 128)) == 4 and frames_per_batch(16, (256, 256)) == 1
    assert frames_per_batch(16, (63, 65)) == 16 and frames_per_batch(128, (512, 512)) == 2
    assert frames_per_batch(1, (2048, 2048)) == 1


def test_large_frames_stream_in_smaller_batches(model):
    frames = np.random.default_rng(0).poisson(110.0, (5, 80, 96)).astype(np.float32)  # 1.9 times 64 x 64
    parts = list(localize_stream(model, frames, batch_size=4))
    assert [len(p.frames) for p in parts] == [2, 2, 1]
    one = list(localize_stream(model, frames[0], batch_size=4))  # a single 2-D frame
    assert [len(p.frames) for p in one] == [1]


def test_batch_result_says_how_long_is_left(model, stack):
    frames, _ = stack
    parts = list(localize_stream(model, frames, batch_size=2))
    assert parts[0].remaining_s > 0 and parts[-1].remaining_s == 0 and parts[-1].time_left() == ""
    table = parts[0].table
    assert BatchResult(np.arange(10), table, None, 10, 40, 20.0).time_left() == ", about 60 s left"
    assert BatchResult(np.arange(10), table, None, 10, 400, 20.0).time_left() == ", about 13 min left"
    assert BatchResult(np.arange(0), table, None, 0, 40, 0.0).remaining_s is None
    assert BatchResult(np.arange(10), table, None, 99, 100, 10.0).time_left() == ""  # not "about 0 s left"


def test_batch_equals_single_frame(model, stack):
    frames, _ = stack
    maps_batch, _ = model.maps(frames[:3])
    single = torch.cat([model.maps(frames[i : i + 1])[0] for i in range(3)])
    assert torch.allclose(maps_batch, single, atol=1e-4)


def test_orientation_averaging_turns_each_map_back(tiny_model_path, stack):
    frames, _ = stack  # 20 x 28: not square, so quarter turns change the shape
    plain = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32")
    assert plain.read_out(frames)[3] == "parabola"  # one orientation: no mean
    averaged = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32", orientations=8)
    maps, _, mean, subpixel = averaged.read_out(frames)
    assert subpixel == "com"
    assert torch.allclose(maps, plain.maps(frames)[0])  # detection uses the plain map
    # the same mean by hand: each orientation of the frames in numpy, its maps turned back
    expected = []
    for transpose, turns in ORIENTATIONS[8]:
        turned = np.rot90(np.swapaxes(frames, 1, 2) if transpose else frames, turns, axes=(1, 2)).copy()
        back = np.rot90(plain.maps(turned)[0].numpy(), -turns, axes=(1, 2))
        expected.append(np.swapaxes(back, 1, 2) if transpose else back)
    assert mean.shape == maps.shape
    assert np.allclose(mean.numpy(), np.mean(expected, axis=0), atol=1e-5)
    assert not torch.allclose(mean, maps)  # the tiny network is not symmetric: the average differs
    table = localize(averaged, frames, threshold=0.0)
    assert len(table) == len(localize(plain, frames, threshold=0.0))
    with pytest.raises(ValueError, match="orientations must be one of"):
        DeepLocalizer(tiny_model_path, device="cpu", orientations=3)
    with pytest.raises(ValueError, match="does not work with method 'components'"):
        localize(averaged, frames, method="components")


def test_constant_and_one_frame_stacks(model):
    const = np.full((2, 16, 16), 100.0, np.float32)
    maps, _ = model.maps(const)
    assert torch.isfinite(maps).all()
    with pytest.warns(NothingFoundWarning, match="no molecule was found in 1 frame "):  # (a constant frame)
        out = localize(model, np.ones((16, 16), np.float32) * 3)  # a single 2D frame
    assert set(out["frame"]) <= {1}


def test_bad_frames_give_clear_errors(model):
    with pytest.raises(FrameSourceError, match="empty"):
        localize(model, np.zeros((0, 8, 8), np.float32))
    bad = np.ones((3, 8, 8), np.float32)
    bad[1, 2, 2:4] = np.nan  # two side by side: an isolated one is replaced like a dead pixel
    with pytest.raises(FrameSourceError, match="frame 2 contains 2 NaN or infinite values beside each other"):
        localize(model, bad)
    with pytest.raises(ValueError, match="threshold"):
        localize(model, np.ones((1, 8, 8), np.float32), threshold=float("nan"))
    # library sources that gave numpy's or Python's errors, or were read silently (review)
    with pytest.raises(FrameSourceError, match=r"frames 1-2 have different sizes \(\(8, 8\), \(8, 9\)\)"):
        localize(model, [np.ones((8, 8), np.float32), np.ones((8, 9), np.float32)])
    with pytest.raises(FrameSourceError, match=r"frames 1-2 have different sizes \(\(8, 9\), \(8, 8\)\)"):
        localize(model, [np.ones((8, 9), np.float32), np.ones((8, 8), np.float32)])  # in the frames' order
    with pytest.raises(FrameSourceError, match=r"frames must be \(rows, cols\) images"):
        localize(model, [[1.0, 2.0], [3.0, 4.0]])  # one frame as a list of lists: its rows read as frames
    for dtype in (bool, np.complex64):
        with pytest.raises(FrameSourceError, match="frames must hold integer or float numbers"):
            localize(model, np.ones((2, 8, 8), dtype))
    with pytest.warns(NothingFoundWarning, match="above the threshold of 1e"):
        assert len(localize(model, [np.ones((8, 8)), np.ones((8, 8))], threshold=1e9)) == 0  # a list of frames works

    class Damaged:  # a source's own error passes unchanged (it was relabelled "frames of different sizes?")
        shape = (3, 8, 8)

        def __len__(self):
            return 3

        def __getitem__(self, key):
            raise FrameSourceError("frame 2: damaged page")

    with pytest.raises(FrameSourceError, match="^frame 2: damaged page$"):
        localize(model, Damaged())


def test_mismatch_warning_names_both_values(tiny_model_path):
    with pytest.warns(UserWarning, match=r"PSF FWHM: model 2.58 camera pixels \(258.21 nm at 100 nm\), "
                                         r"data 1.88 \(300 nm at 160 nm\)"):
        m = DeepLocalizer(tiny_model_path, acquisition=Acquisition(pixel_size_nm=160, fwhm_nm=300), device="cpu")
    assert m.acquisition.pixel_size_nm == 160  # coordinates use the data's pixel size


def test_the_network_sees_pixels_so_the_psf_is_compared_in_pixels(tiny_model_path):
    # before: 160 nm pixels with the model's PSF in pixels (413 nm) warned of both pixel
    # size and FWHM, and 160 nm pixels with the model's 258 nm (1.6 instead of 2.6
    # pixels, the harmful case) of the pixel size only
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = DeepLocalizer(tiny_model_path, acquisition=Acquisition(pixel_size_nm=160, fwhm_nm=413.1), device="cpu")
    assert same.mismatch == []
    with pytest.warns(UserWarning, match=r"PSF FWHM: model 2.58 camera pixels .*, data 1.61 \(258.21 nm at 160 nm\)"):
        DeepLocalizer(tiny_model_path, acquisition=Acquisition(pixel_size_nm=160), device="cpu")


def test_a_psf_within_the_training_jitter_is_no_mismatch(tiny_model_path):
    # Estimate reads ISBI 2013's PSF as 273 nm (the model's: 258.21): the bundled model
    # warned on the data it was trained for, with the same localizations either way
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DeepLocalizer(tiny_model_path, acquisition=Acquisition(fwhm_nm=273.2), device="cpu").mismatch == []


def test_cancel_stops_after_the_current_batch(model, stack):
    frames, _ = stack
    stop = threading.Event()
    got = []
    for r in localize_stream(model, frames, batch_size=2, cancel=stop):
        got.append(r)
        stop.set()
    assert len(got) == 1 and got[0].done == 2


@pytest.mark.parametrize("prefetch", [False, True])
def test_cancel_stops_after_the_current_batch_with_or_without_prefetch(model, stack, prefetch):
    frames, _ = stack
    stop = threading.Event()
    got = [r for r in localize_stream(model, frames, batch_size=2, cancel=stop.is_set, prefetch=prefetch)
           if not stop.set()]
    assert [r.done for r in got] == [2]


@pytest.mark.parametrize("workers", [1, 3])
def test_prefetching_batches_gives_the_same_localizations(model, stack, workers, monkeypatch):
    # on a GPU the frames of the next batches are read and fixed in background threads
    monkeypatch.setattr(predict, "PREFETCH_WORKERS", workers)
    frames, _ = stack
    hot = frames.copy()
    hot[3, 5, 9] = 60000.0  # a hot pixel for the outlier step to replace
    serial = list(localize_stream(model, hot, batch_size=2, prefetch=False))
    ahead = list(localize_stream(model, hot, batch_size=2, prefetch=True))
    assert [r.frames.tolist() for r in ahead] == [[1, 2], [3, 4], [5]]
    assert ahead[-1].pixels_replaced == serial[-1].pixels_replaced == 1
    assert [r.pixels_replaced for r in serial] == [0, 1, 1]  # counted with the batch of frame 4
    for a, b in zip(serial, ahead):
        pd.testing.assert_frame_equal(a.table, b.table)


class OneReaderAtATime:
    """A frame source that fails when two threads read it at once (a TIFF file handle)."""

    def __init__(self, frames):
        self.frames, self.shape, self.reading, self.reads = frames, frames.shape, threading.Lock(), 0

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, key):
        if not self.reading.acquire(blocking=False):
            raise RuntimeError("two threads read the source at once")
        try:
            threading.Event().wait(0.002)  # long enough for another reader to come in
            self.reads += 1
            return self.frames[key]
        finally:
            self.reading.release()


@pytest.mark.filterwarnings("ignore::napari_deepcel0.core.predict.NothingFoundWarning")  # the tiny model's empty maps
def test_prefetch_threads_read_the_source_one_at_a_time(model, monkeypatch):
    monkeypatch.setattr(predict, "PREFETCH_WORKERS", 4)
    frames = np.random.default_rng(2).poisson(100.0, (48, 16, 16)).astype(np.float32)
    source = OneReaderAtATime(frames)
    ahead = localize(model, source, batch_size=1, prefetch=True)
    assert source.reads == 3  # 48 frames read once, in pieces of 16 (iter_read_batches), two at a time
    pd.testing.assert_frame_equal(ahead, localize(model, frames, batch_size=1, prefetch=False))


class CancelWhileRead:
    """Frames whose second piece (frames 17-32) is read while Cancel is pressed: its read
    waits until the consumer has had frames 15-16 (``consumed``), then presses Cancel."""

    def __init__(self, frames, cancel: threading.Event):
        self.frames, self.shape, self.cancel, self.reads = frames, frames.shape, cancel, 0
        self.consumed = threading.Event()

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, key):
        self.reads += 1
        if key.start == 16:  # frames 17-32, read together
            self.consumed.wait(10.0)
            self.cancel.set()
        return self.frames[key]


def test_cancel_pressed_while_a_batch_is_read_ahead_drops_that_batch(model, monkeypatch):
    monkeypatch.setattr(predict, "PREFETCH_WORKERS", 1)
    frames = np.random.default_rng(3).poisson(100.0, (40, 16, 16)).astype(np.float32)
    stop = threading.Event()
    source = CancelWhileRead(frames, stop)
    got = []
    for r in localize_stream(model, source, batch_size=2, cancel=stop, prefetch=True):
        got.append(r.frames.tolist())
        if got[-1] == [15, 16]:
            source.consumed.set()
    assert got == [[f, f + 1] for f in range(1, 16, 2)]  # frames 1-16 were read together; 17-32 after Cancel
    stop.set()  # pressed before the start: nothing is read
    source = CancelWhileRead(frames, stop)
    assert list(localize_stream(model, source, batch_size=2, cancel=stop, prefetch=True)) == []
    assert source.reads == 0


def test_read_ahead_is_bounded_in_pixels_not_pieces(monkeypatch):
    """Pieces of large frames hold 4 frames where batches held 1: reading ahead as many of
    them as of small ones held 4 times the memory (review); as many as the threads while
    they fit in PREFETCH_WORKERS + 1 pieces of PIECE_PIXELS, at least two."""
    monkeypatch.setattr(predict, "PREFETCH_WORKERS", 4)
    ahead = {side: predict.read_ahead_pieces(predict.frames_per_batch(16, (side, side)), (side, side))
             for side in (64, 256, 512, 1024, 2048, 4096)}
    assert ahead == {64: 5, 256: 5, 512: 5, 1024: 5, 2048: 2, 4096: 2}


def test_prefetch_is_on_where_the_model_runs_on_a_gpu(model):
    from types import SimpleNamespace

    assert not predict._runs_on_gpu(model)  # on the CPU the network's 30-50 ms a frame leave nothing to gain
    assert predict._runs_on_gpu(SimpleNamespace(device=torch.device("cuda", 0)))
    assert not predict._runs_on_gpu(SimpleNamespace(device="auto"))  # not a resolved device: off
    assert not predict._runs_on_gpu(object())


def test_a_bad_frame_read_ahead_raises_after_the_batches_before_it(model):
    frames = np.random.default_rng(0).poisson(100.0, (6, 16, 16)).astype(np.float32)
    frames[4, 3, 3:5] = np.inf  # in the piece of frames 1-6 (its last two join the first four)
    got = []
    with pytest.raises(FrameSourceError, match="frame 5"):
        for r in localize_stream(model, frames, batch_size=2, prefetch=True):
            got.append(r.frames.tolist())
    assert got == [[1, 2], [3, 4]]
    # the batches of a piece before its bad frame are localized first (review: they were lost)
    for n, batch_size, bad, before in ((17, 16, 17, [list(range(1, 17))]), (4, 1, 3, [[1], [2]]),
                                       (7, 3, 7, [[1, 2, 3], [4, 5, 6]])):
        frames = np.random.default_rng(0).poisson(100.0, (n, 16, 16)).astype(np.float32)
        frames[bad - 1, 3, 3:5] = np.nan
        for prefetch in (False, True):
            got = []
            with pytest.raises(FrameSourceError, match=f"frame {bad} contains 2 NaN"):
                for r in localize_stream(model, frames, batch_size=batch_size, prefetch=prefetch):
                    got.append(r.frames.tolist())
            assert got == before, (n, batch_size, prefetch)


def _prefetch_threads() -> set:
    return {t for t in threading.enumerate() if t.name.startswith("deepcel0-prefetch")}


def test_a_stream_left_early_stops_its_prefetch_thread(model, monkeypatch):
    frames = np.random.default_rng(1).poisson(100.0, (12, 16, 16)).astype(np.float32)
    before = _prefetch_threads()
    stream = localize_stream(model, frames, batch_size=2, prefetch=True)
    next(stream)
    assert _prefetch_threads() - before  # it reads ahead
    stream.close()
    assert _prefetch_threads() == before
    # and when the model fails after the first batch (the stream is not closed by anyone)
    calls = []

    def failing(block):
        if calls:
            raise RuntimeError("CUDA out of memory")
        calls.append(1)
        return DeepLocalizer.read_out(model, block)

    monkeypatch.setattr(model, "read_out", failing)
    results = []
    with pytest.raises(RuntimeError) as error:  # its traceback holds the stream's frame
        for r in localize_stream(model, frames, batch_size=2, prefetch=True):
            results.append(r)
    assert "out of memory" in str(error.value)
    assert len(results) == 1 and _prefetch_threads() == before


def test_cuda_requested_without_gpu(tiny_model_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        DeepLocalizer(tiny_model_path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_gpu_agree(tiny_model_path, stack):
    frames, _ = stack
    cpu = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32").maps(frames)[0]
    gpu = DeepLocalizer(tiny_model_path, device="cuda", precision="fp32").maps(frames)[0].cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3 * max(1.0, float(cpu.max())))
    # orientation averaging too (turns and flips of CUDA tensors)
    mean_cpu = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32", orientations=8)
    mean_gpu = DeepLocalizer(tiny_model_path, device="cuda", precision="fp32", orientations=8)
    a = mean_cpu.read_out(frames)[2]
    b = mean_gpu.read_out(frames)[2].cpu()
    assert torch.allclose(a, b, atol=1e-3 * max(1.0, float(a.max())))
    # one LoadedModel, two localizers on two devices: each keeps its network where it put it
    from napari_deepcel0.core.model_io import load_model

    loaded = load_model(tiny_model_path)
    on_cpu = DeepLocalizer(loaded, device="cpu", precision="fp32")
    DeepLocalizer(loaded, device="cuda", precision="fp32")
    assert next(on_cpu.network.parameters()).device.type == "cpu"
    assert torch.allclose(on_cpu.maps(frames)[0], cpu, atol=1e-5)


def test_inference_normalises_frames_exactly_as_training_did(model):
    """Two implementations of one step (numpy in training_data, torch at inference):
    they must agree, constant frames included."""
    from napari_deepcel0.core.training_data import minmax_scale

    rng = np.random.default_rng(3)
    frames = np.concatenate([rng.gamma(2.0, 50.0, (3, 12, 10)), np.full((1, 12, 10), 7.0)]).astype(np.float32)
    frames[:3, 4, 5] += 5000.0  # a molecule each: ranges above the floor of FRAME_RANGE_FLOOR noise sd
    expected = (minmax_scale(frames) - model.info.norm_mean) / model.info.norm_std
    np.testing.assert_allclose(model.normalise(frames).cpu().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_frames_of_noise_alone_are_not_stretched_into_molecules():
    """Scaled by its own range, a frame without a molecule had its noise fill [0, 1], and the
    bundled model reported 1.55 false molecules a 64 x 64 frame (0.38 now); its range is
    now taken as at least FRAME_RANGE_FLOOR noise standard deviations (range_floor=None:
    as before)."""
    rng = np.random.default_rng(8)
    empty = render_frames(pd.DataFrame({"frame": [], "x [nm]": [], "y [nm]": [], "intensity [photon]": []}),
                          ISBI2013, (64, 64), 24, CameraNoise((10.0, 10.0), quantize=True), rng)
    x = torch.from_numpy(empty.astype(np.float32))
    noise = predict.frame_noise_sd(x).numpy()
    span = (x.amax((-2, -1)) - x.amin((-2, -1))).numpy()
    assert np.all(span < 10 * noise)  # noise alone spans well under the floor
    scaled = predict.scale_to_unit_range(x).numpy()
    assert np.allclose(scaled.max((-2, -1)), span / (predict.FRAME_RANGE_FLOOR * noise), rtol=1e-4)
    assert np.allclose(predict.scale_to_unit_range(x, range_floor=None).numpy().max((-2, -1)), 1.0)
    found = {floor: len(localize(DeepLocalizer(device="cpu", range_floor=floor), empty))
             for floor in (predict.FRAME_RANGE_FLOOR, None)}
    assert found[predict.FRAME_RANGE_FLOOR] <= 10 < 20 <= found[None]  # measured: 5 and 46 in these 24 frames
    # frames of 96 pixels or more, scaled region by region: their regions get the floor too
    large = render_frames(pd.DataFrame({"frame": [], "x [nm]": [], "y [nm]": [], "intensity [photon]": []}),
                          ISBI2013, (128, 128), 4, CameraNoise((10.0, 10.0), quantize=True), rng)
    x = torch.from_numpy(large.astype(np.float32))
    assert predict.scale_to_unit_range(x).max() < 0.6 < 0.9 < predict.scale_to_unit_range(x, range_floor=None).max()
    found = {floor: len(localize(DeepLocalizer(device="cpu", range_floor=floor), large))
             for floor in (predict.FRAME_RANGE_FLOOR, None)}
    assert 3 * found[predict.FRAME_RANGE_FLOOR] < found[None]  # measured: 8 and 40 in these 4 frames
    # a molecule of 600 photons spans more than the floor: found as before
    one = pd.DataFrame({"frame": np.arange(1, 25), "x [nm]": rng.uniform(1500, 5000, 24),
                        "y [nm]": rng.uniform(1500, 5000, 24), "intensity [photon]": 600.0})
    frames = render_frames(one, ISBI2013, (64, 64), 24, CameraNoise((10.0, 10.0), quantize=True), rng)
    assert score(one, localize(DeepLocalizer(device="cpu"), frames), 50.0).sensitivity > 90.0
    single = torch.from_numpy(empty[0].astype(np.float32))  # one frame (rows, cols) works as before
    np.testing.assert_allclose(predict.scale_to_unit_range(single).numpy(),
                               predict.scale_to_unit_range(single[None])[0].numpy())
    for bad in (-1.0, float("inf"), float("nan"), "20", True):
        with pytest.raises(ValueError, match="range_floor must be None"):
            DeepLocalizer(device="cpu", range_floor=bad)


def test_the_network_sees_a_few_frames_at_a_time_on_a_cpu_with_the_same_maps(monkeypatch):
    """A batch of 16 frames went through the network in one pass, whose activations
    streamed from memory; passes of 2 keep them in the caches (44 -> 33 ms a frame on a
    2-core CPU: a speed review) and give the same maps, to the bit."""
    localizer = DeepLocalizer(device="cpu")
    frames = torch.rand(5, 64, 64)  # passes of 2, 2 and 1
    calls = []
    network = localizer.network

    def counting(x, **kwargs):
        calls.append(len(x))
        return network(x, **kwargs)

    monkeypatch.setattr(localizer, "network", counting)
    in_passes = localizer.network_outputs(frames)
    assert calls == [2, 2, 1]
    monkeypatch.setattr(predict, "CPU_PASS_FINE_PIXELS", 10**9)
    calls.clear()
    assert torch.equal(localizer.network_outputs(frames), in_passes) and calls == [5]


def test_frames_up_to_the_scaling_region_are_scaled_as_a_whole():
    """ISBI 2013, the paper's tests and the training frames are 64 x 64: their scaling must not change."""
    from napari_deepcel0.core.training_data import minmax_scale

    frames = np.random.default_rng(4).gamma(2.0, 50.0, (3, 95, 70)).astype(np.float32)  # round(95 / 64) = 1
    frames[:, 40, 30] += 5000.0  # a molecule each: ranges above the floor of FRAME_RANGE_FLOOR noise sd
    for tile in (predict.SCALING_TILE_PX, None):
        np.testing.assert_allclose(predict.scale_to_unit_range(torch.from_numpy(frames), tile).numpy(),
                                   minmax_scale(frames), rtol=1e-6, atol=1e-6)


def test_large_frames_are_scaled_region_by_region_without_seams_or_stretched_noise():
    rng = np.random.default_rng(5)
    frames = (100.0 + rng.normal(0.0, 3.0, (1, 256, 256))).astype(np.float32)
    frames[0, 30, 30] += 1000.0  # a bright molecule in one corner
    frames[0, 220, 220] += 400.0  # a fainter one in the opposite corner
    frames[0, 128:, :96] = 100.0  # a region with nothing but a constant camera
    scaled = predict.scale_to_unit_range(torch.from_numpy(frames)).numpy()[0]
    whole = predict.scale_to_unit_range(torch.from_numpy(frames), None).numpy()[0]
    assert scaled.shape == frames.shape[1:]
    assert scaled[30, 30] == pytest.approx(1.0, abs=0.02) and whole[30, 30] == pytest.approx(1.0, abs=1e-6)
    # far from the bright one, the fainter molecule is scaled by its own region: about 1 instead of 0.4
    assert scaled[220, 220] > 0.8 > 0.5 > whole[220, 220]
    # a region's range is at least 70 noise standard deviations: noise (sd 3) is not stretched to [0, 1]
    assert scaled[:100, 150:].max() < 0.15
    assert np.all(scaled[140:, :80] == pytest.approx(scaled[140, 0], abs=0.1))  # the constant camera stays flat
    sparse = (100.0 + rng.normal(0.0, 3.0, (1, 256, 256))).astype(np.float32)
    sparse[0, 30, 30] += 100.0  # one faint molecule in a frame of noise
    assert predict.frame_noise_sd(torch.from_numpy(sparse)).item() == pytest.approx(3.0, rel=0.05)
    sparse_scaled = predict.scale_to_unit_range(torch.from_numpy(sparse)).numpy()[0]
    sparse_whole = predict.scale_to_unit_range(torch.from_numpy(sparse), None).numpy()[0]
    # 70 noise sd is more than this frame's range: its empty regions are scaled as by the whole frame (their own: 1)
    assert sparse_scaled[30, 30] > 0.9
    assert sparse_scaled[:, 128:].max() < min(0.3, sparse_whole[:, 128:].max() + 0.02)
    # no seams: neighbouring pixels of a smooth frame differ as little as the frame does
    ramp = np.add.outer(np.linspace(0, 50, 256), np.linspace(0, 80, 256))[None].astype(np.float32)
    steps = predict.scale_to_unit_range(torch.from_numpy(ramp)).numpy()[0]
    assert np.abs(np.diff(steps, axis=0)).max() < 0.05 and np.abs(np.diff(steps, axis=1)).max() < 0.05


@pytest.mark.parametrize("wide", [True, False])
def test_wide_and_tall_frames_get_regions_along_their_long_side(wide):
    """The tests above use square frames: the regions' columns counted from the rows (a
    mutation review) scaled a 64 x 320 frame as one region, a faint molecule 250 pixels
    from a bright one then read 0.15 instead of about 1."""
    rng = np.random.default_rng(7)
    frame = (100.0 + rng.normal(0.0, 1.0, (64, 320))).astype(np.float32)
    frame[30, 20] += 2000.0  # in the first of 5 regions of 64 columns
    frame[30, 280] += 300.0  # in the last, above its floor of 70 noise sd
    x = torch.from_numpy(frame if wide else np.ascontiguousarray(frame.T))[None]
    scaled = predict.scale_to_unit_range(x).numpy()[0]
    scaled = scaled if wide else scaled.T
    assert scaled[30, 20] == pytest.approx(1.0, abs=0.02) and scaled[30, 280] > 0.8
    assert predict.scale_to_unit_range(x, None).numpy()[0].max(axis=0 if wide else 1)[280] < 0.2  # whole frame


def test_a_bright_molecule_no_longer_hides_faint_ones_across_a_large_frame():
    """The whole-frame scaling let one bright molecule push faint molecules 150 camera pixels
    away under the threshold (review finding, ``benchmarks/frame_scaling.py``)."""
    rng = np.random.default_rng(6)
    faint = pd.DataFrame({"frame": np.repeat(np.arange(1, 4), 12), "x [nm]": rng.uniform(9000, 18000, 36),
                          "y [nm]": rng.uniform(9000, 18000, 36), "intensity [photon]": 400.0})
    bright = pd.DataFrame({"frame": np.arange(1, 4), "x [nm]": 1500.0, "y [nm]": 1500.0,
                           "intensity [photon]": 15000.0})
    frames = render_frames(pd.concat([faint, bright]), ISBI2013, (192, 192), 3, CameraNoise((10.0, 10.0)), rng)
    found = {}
    for tile in (predict.SCALING_TILE_PX, None):
        localizer = DeepLocalizer(device="cpu", scaling_tile_px=tile)
        assert localizer.scaling_tile_px == tile
        found[tile] = score(faint, localize(localizer, frames, fix_outlier_pixels=False), 50.0).sensitivity
    assert found[predict.SCALING_TILE_PX] > 90.0 and found[predict.SCALING_TILE_PX] > found[None] + 20.0
    for bad in (0, 4, 2.5, "64"):
        with pytest.raises(ValueError, match="scaling_tile_px must be None"):
            DeepLocalizer(device="cpu", scaling_tile_px=bad)


def test_unusual_frames_and_settings_get_clear_errors():
    """Review findings: each of these ran silently or failed with a message about something else."""
    model = DeepLocalizer()
    frames = simulate_stack(n_frames=2, shape=(16, 16), density_per_um2=1.0, seed=2)[0]
    assert len(localize(model, frames, batch_size=1)) > 0
    for bad in (-1, 0, 1.5):  # -1 returned no localizations at all, 0 meant the default
        with pytest.raises(ValueError, match="batch size must be a whole number"):
            localize(model, frames, batch_size=bad)
    with pytest.raises(FrameSourceError, match="beyond the float32 range"):  # was "contains NaN or infinite"
        localize(model, frames.astype(np.float64) * 1e37)
    with pytest.raises(FrameSourceError, match="no pixels"):  # was torch's IndexError
        localize(model, np.zeros((3, 0, 5), np.float32))


@pytest.mark.filterwarnings("ignore::napari_deepcel0.core.predict.NothingFoundWarning")  # the tiny model's empty maps
def test_default_threshold_is_a_tenth_of_one_molecule(model, stack):
    """The reference's rule: without a threshold, keep maxima above 0.1 x the map
    value of one isolated molecule."""
    assert model.default_threshold() == pytest.approx(0.1 * model.info.spike_value)
    frames, _ = stack
    default = localize(model, frames)
    explicit = localize(model, frames, threshold=0.1 * model.info.spike_value)
    assert len(default) == len(explicit)
    np.testing.assert_array_equal(default["x [nm]"].to_numpy(), explicit["x [nm]"].to_numpy())


def test_a_stack_that_states_another_pixel_size_warns_and_can_be_followed(tmp_path, tiny_model_path):
    """A 160 nm stack localized with a 100 nm model's acquisition came out shrunk by
    100/160 without a word; now it warns, and ``pixel_size_nm=`` uses the file's."""
    import warnings

    from napari_deepcel0.core.io import read_stack, write_tiff
    from napari_deepcel0.core.predict import PixelSizeWarning

    frames, _ = simulate_stack(n_frames=2, shape=(24, 24), seed=5)
    write_tiff(tmp_path / "frames.tif", frames, pixel_size_nm=160.0)
    stack = read_stack(tmp_path / "frames.tif")
    default = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32")
    with pytest.warns(PixelSizeWarning, match="160 nm camera pixels.*100 nm"):
        shrunk = localize(default, stack, threshold=0.0)
    with pytest.warns(UserWarning, match="PSF FWHM: model 2.58 camera pixels"):
        following = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32", pixel_size_nm=stack.pixel_size_nm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelSizeWarning)
        right = localize(following, stack, threshold=0.0)
    assert len(right) == len(shrunk) > 0
    np.testing.assert_allclose(right["x [nm]"], shrunk["x [nm]"] * 1.6, rtol=1e-5)
    np.testing.assert_allclose(right["y [nm]"], shrunk["y [nm]"] * 1.6, rtol=1e-5)
    stack.close()


def test_the_models_upsampling_sets_the_coordinates_whatever_the_data_settings(tiny_model_path):
    from napari_deepcel0.core.predict import DeepLocalizer, localize
    from napari_deepcel0.core.simulate import simulate_stack

    frames, _ = simulate_stack(n_frames=2, shape=(16, 16), density_per_um2=2.0, seed=1)
    same = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match=r"upsampling L: model 4, data settings 2 \(the model's L is used: its fine "
                                         r"grid, nothing else changes\)$"):  # (not "finds fewer": a review)
        other = DeepLocalizer(tiny_model_path, acquisition=Acquisition(upsampling=2), device="cpu", precision="fp32")
    assert other.acquisition.upsampling == 4 and other.acquisition.fine_pixel_nm == 25.0
    a, b = localize(same, frames, threshold=0.0), localize(other, frames, threshold=0.0)
    assert len(a) > 0
    np.testing.assert_allclose(b[["x [nm]", "y [nm]"]].to_numpy(), a[["x [nm]", "y [nm]"]].to_numpy())


def test_confidence_is_the_3x3_map_sum_over_the_spike_value(tiny_model_path):
    from napari_deepcel0.core.predict import DeepLocalizer, localize_stream
    from napari_deepcel0.core.simulate import simulate_stack

    frames, _ = simulate_stack(n_frames=2, shape=(16, 16), density_per_um2=2.0, seed=1)
    model = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32")
    (result,) = list(localize_stream(model, frames, threshold=0.0, keep_maps=True))
    peaks = find_peaks(result.maps, 0.0)
    assert len(result.table) == len(peaks["mass"]) > 0
    np.testing.assert_allclose(result.table["confidence"].to_numpy(), peaks["mass"] / model.info.spike_value,
                               rtol=1e-6)


def test_the_localizers_refuse_what_they_cannot_use(tiny_model_path, tmp_path):
    from napari_deepcel0.core.cel0 import Cel0Localizer
    from napari_deepcel0.core.io import read_stack, write_tiff
    from napari_deepcel0.core.model_io import load_model

    with pytest.raises(TypeError, match="a network alone lacks the normalisation .* give the TrainingResult"):
        DeepLocalizer(load_model(tiny_model_path).network)  # e.g. a training result's network
    for batch_size in (2.5, 0, -1):
        with pytest.raises(ValueError, match="whole number"):
            DeepLocalizer(tiny_model_path, device="cpu", batch_size=batch_size)
        with pytest.raises(ValueError, match="whole number"):
            Cel0Localizer(Acquisition(), device="cpu", batch_size=batch_size)
    with pytest.raises(ValueError, match="orientations"):
        DeepLocalizer(tiny_model_path, device="cpu", orientations=True)
    with pytest.raises(TypeError, match="Acquisition"):
        Cel0Localizer(None)
    # a render written by this package is no stack of camera frames (the CLI refused it already)
    write_tiff(tmp_path / "render.tif", np.ones((1, 16, 16), np.float32), pixel_size_nm=10.0, output="render")
    with read_stack(tmp_path / "render.tif") as render, pytest.raises(FrameSourceError, match="render image"):
        localize(DeepLocalizer(tiny_model_path, device="cpu"), render)


@pytest.mark.filterwarnings("ignore::napari_deepcel0.core.predict.NothingFoundWarning")  # a spoilt frame finds nothing: the point
def test_one_hot_or_dead_pixel_no_longer_spoils_its_frame():
    """Each frame is scaled by its minimum and maximum, so one pixel at 65,535 ADU left no
    localization in its frame and one at 0 gave five times too many; isolated outliers are
    now replaced by their neighbours' mean first, and clean frames are left alone."""
    from napari_deepcel0.core.frames import replace_isolated_outliers
    from napari_deepcel0.core.metrics import score
    from napari_deepcel0.core.simulate import GaussianSNRNoise, PhotonModel

    frames, gt = simulate_stack(n_frames=2, shape=(48, 48), density_per_um2=2.0, structure="uniform", seed=3)
    model = DeepLocalizer(device="cpu")
    clean = score(gt, localize(model, frames), 50.0)
    assert clean.jaccard > 70
    for value in (65535.0, 2000.0, 0.0, 60.0):  # hot (saturated, moderate), dead, 40 ADU below the offset
        spoilt = frames.astype(np.float32)
        spoilt[:, 10, 10] = value
        assert score(gt, localize(model, spoilt, fix_outlier_pixels=False), 50.0).jaccard < 0.6 * clean.jaccard
        fixed = score(gt, localize(model, spoilt), 50.0)  # the pixel takes its neighbours' mean, not its value
        assert list(localize_stream(model, spoilt))[-1].pixels_replaced == 2  # one a frame, counted
        assert (fixed.tp, fixed.fp) == (clean.tp, clean.fp) and fixed.rmse_nm == pytest.approx(clean.rmse_nm, abs=0.5)
    # nothing replaced in clean scenes: crowded or sparse, bright, sharp PSFs, Gaussian noise
    scenes = [simulate_stack(n_frames=10, shape=(64, 64), density_per_um2=d, structure="uniform", seed=1,
                             photons=PhotonModel(*p, 0.15))[0] for d in (0.3, 6.0) for p in ((200, 300), (20000, 30000))]
    scenes.append(simulate_stack(n_frames=10, shape=(64, 64), seed=2, noise=GaussianSNRNoise((10.0, 10.0)))[0])
    for scene in scenes:
        assert replace_isolated_outliers(scene, ISBI2013.sigma_px)[1] == 0
    sharp = Acquisition(pixel_size_nm=160, fwhm_nm=150)
    scene = simulate_stack(n_frames=10, shape=(64, 64), density_per_um2=2.0, structure="uniform", seed=2, acq=sharp,
                           photons=PhotonModel(3000, 5000, 0.15))[0]
    assert replace_isolated_outliers(scene, sharp.sigma_px)[1] == 0
    # a replaced pixel takes the mean of its neighbours inside the frame
    flat = np.full((1, 20, 20), 100.0, np.float32)
    flat[0, 0, 0], flat[0, 2, 2] = 0.0, 9000.0
    fixed, count = replace_isolated_outliers(flat, ISBI2013.sigma_px)
    assert count == 2 and np.all(fixed == 100.0)


def test_an_isolated_nan_or_infinite_pixel_is_replaced_like_a_dead_one():
    """One NaN pixel stopped a whole run (and lost the other frames of its batch, review);
    an isolated one is now replaced by its neighbours' mean and counted, groups of them
    are still refused with the frame named (a NaN border is no pixel error)."""
    from napari_deepcel0.core.frames import replace_isolated_nonfinite
    from napari_deepcel0.core.metrics import score

    frames, gt = simulate_stack(n_frames=2, shape=(48, 48), density_per_um2=2.0, structure="uniform", seed=3)
    model = DeepLocalizer(device="cpu")
    clean = score(gt, localize(model, frames), 50.0)
    for value in (np.nan, np.inf, -np.inf):
        spoilt = frames.astype(np.float32)
        spoilt[:, 10, 10] = value
        with pytest.raises(FrameSourceError, match="frame 1 contains 1 NaN or infinite value "):
            localize(model, spoilt, fix_outlier_pixels=False)
        fixed = score(gt, localize(model, spoilt), 50.0)
        assert list(localize_stream(model, spoilt))[-1].pixels_replaced == 2  # one a frame, counted
        assert (fixed.tp, fixed.fp) == (clean.tp, clean.fp) and fixed.rmse_nm == pytest.approx(clean.rmse_nm, abs=0.5)
    flat = np.full((2, 5, 5), 100.0, np.float32)
    flat[0, 0, 0], flat[0, 2, 2], flat[1, 1:3, 1] = np.nan, np.inf, np.nan  # two apart, two side by side
    fixed, count = replace_isolated_nonfinite(flat)
    assert count == 2 and np.all(fixed[0] == 100.0)  # the corner from its 3 neighbours inside the frame
    assert np.isnan(fixed[1, 1:3, 1]).all() and np.isnan(flat[0, 0, 0])  # the group left; the input untouched
    assert replace_isolated_nonfinite(np.full((1, 1, 1), np.nan, np.float32))[1] == 0  # no neighbour to take
    assert replace_isolated_nonfinite(flat.astype(np.float64))[0].dtype == np.float64  # the estimate's precision


def test_zero_padded_borders_and_dead_columns_no_longer_spoil_their_frames():
    """A registered or drift-corrected stack padded with zeros, or a dead column, set each
    frame's minimum far below the background: 89 % Jaccard fell to 11-13 %."""
    from napari_deepcel0.core.frames import fill_dark_pixels
    from napari_deepcel0.core.metrics import score

    frames, gt = simulate_stack(n_frames=4, shape=(64, 64), density_per_um2=2.0, structure="uniform", seed=3)
    frames = frames.astype(np.float32)
    inner = (gt["x [nm]"].between(500, 5900)) & (gt["y [nm]"].between(500, 5900))

    def jaccard(table):
        return score(gt[inner], table[table["x [nm]"].between(500, 5900) & table["y [nm]"].between(500, 5900)],
                     50.0).jaccard

    model = DeepLocalizer(device="cpu")
    clean = jaccard(localize(model, frames))
    padded, dead = frames.copy(), frames.copy()
    padded[:, :4, :] = padded[:, :, -4:] = 0.0
    dead[:, :, 20] = 0.0
    for spoilt in (padded, dead):
        assert jaccard(localize(model, spoilt, fix_outlier_pixels=False)) < 0.3 * clean
        assert jaccard(localize(model, spoilt)) > clean - 7
    filled, count = fill_dark_pixels(padded)
    assert count == 4 * (4 * 64 + 60 * 4) and np.all(filled[:, :4, :] == filled[:, :4, :1])  # the median
    assert fill_dark_pixels(frames)[1] == 0  # nothing in clean frames
    from napari_deepcel0.core.frames import fix_outliers

    for shape in ((1, 5, 1), (2, 1, 1), (1, 2, 2)):  # frames one pixel wide raised IndexError
        narrow = np.random.default_rng(0).uniform(90, 110, shape).astype(np.float32)
        fixed, replaced, dimmed, _ = fix_outliers(narrow, ISBI2013.sigma_px)
        assert np.array_equal(fixed, narrow) and not replaced.any() and len(dimmed) == 0
    # nor under uneven illumination: a dim side is no fill
    ramp = frames + np.linspace(0.0, 300.0, 64, dtype=np.float32)[None, None, :]
    assert fill_dark_pixels(np.round(ramp))[1] == 0
    ramp[:, :, -4:] = 0.0
    assert fill_dark_pixels(ramp)[1] == 4 * 64 * 4


def _with_bead(frames: np.ndarray, photons: float, saturate_at: float | None = None) -> np.ndarray:
    """``frames`` plus a static bead of ``photons`` near the corner (6 um, 6 um)."""
    import pandas as pd

    from napari_deepcel0.core.simulate import render_frames

    n, rows, cols = frames.shape
    bead = pd.DataFrame({"frame": np.arange(1, n + 1), "x [nm]": 6000.0, "y [nm]": 6000.0,
                         "intensity [photon]": photons})
    light = render_frames(bead, ISBI2013, (rows, cols), n, None, 0)
    out = frames.astype(np.float32) + (light - light.min())
    return out if saturate_at is None else np.minimum(out, saturate_at)


def test_a_bright_bead_no_longer_hides_the_molecules_of_its_frame():
    """Each frame is scaled by its maximum: a bead of 100,000 photons among molecules of
    600-900 left no localization away from it."""
    from napari_deepcel0.core.frames import BrightObjectWarning
    from napari_deepcel0.core.metrics import score

    frames, gt = simulate_stack(n_frames=4, shape=(64, 64), density_per_um2=2.0, structure="uniform", seed=5)
    away = (gt["x [nm]"] < 5500) | (gt["y [nm]"] < 5500)

    def jaccard(table):
        return score(gt[away], table[(table["x [nm]"] < 5500) | (table["y [nm]"] < 5500)], 50.0).jaccard

    model = DeepLocalizer(device="cpu")
    clean = jaccard(localize(model, frames))
    assert clean > 80
    beaded = _with_bead(frames, 1e5)
    assert jaccard(localize(model, beaded, fix_outlier_pixels=False)) < 10
    with pytest.warns(BrightObjectWarning, match=r"frame 1 \(and 3 more in this batch\): an object \d+ times as bright"):
        results = list(localize_stream(model, beaded))
    assert jaccard(pd.concat([r.table for r in results])) > clean - 3
    assert results[-1].frames_dimmed == 4
    # frames that go to the network one at a time (large ones) are judged together: still a bead
    with pytest.warns(BrightObjectWarning):
        one_by_one = list(localize_stream(model, beaded, batch_size=1))
    assert [r.frames_dimmed for r in one_by_one] == [1, 2, 3, 4]  # counted as the frames are localized
    pd.testing.assert_frame_equal(pd.concat([r.table for r in one_by_one], ignore_index=True),
                                  pd.concat([r.table for r in results], ignore_index=True))


def _scene(rng, n_frames: int, photons_of_frame, acq=ISBI2013, background=10.0):
    """Frames and truth with the molecules' photons of each frame from ``photons_of_frame(rng)``."""
    from napari_deepcel0.core.simulate import CameraNoise, render_frames

    gt = pd.concat([pd.DataFrame({"frame": f + 1, "x [nm]": rng.uniform(500, 5900, len(p)),
                                  "y [nm]": rng.uniform(500, 5900, len(p)), "intensity [photon]": p})
                    for f, p in ((f, np.asarray(photons_of_frame(rng), float)) for f in range(n_frames))],
                   ignore_index=True)
    noise = CameraNoise(background_photons=(background, background), quantize=True)
    return render_frames(gt, acq, (64, 64), n_frames, noise, rng), gt


def test_bright_objects_are_dimmed_to_the_brightest_molecule_keeping_their_shape():
    from napari_deepcel0.core.frames import dim_bright_objects

    frames, _ = simulate_stack(n_frames=4, shape=(64, 64), density_per_um2=6.0, seed=4)
    beaded = frames.astype(np.float32)
    beaded[1] = _with_bead(frames[1:2], 2e5)[0]
    beaded[2] = _with_bead(frames[2:3], 2e5, saturate_at=float(frames[2].max()) * 10)[0]  # a flat top
    sparse, truth = simulate_stack(n_frames=1, shape=(64, 64), density_per_um2=0.1, structure="uniform", seed=6)
    assert 2 <= len(truth) <= 6
    beaded[3] = _with_bead(sparse, 2e5)[0]  # the bead among a few molecules
    dimmed, which, ratios = dim_bright_objects(beaded, ISBI2013.sigma_px)
    assert which.tolist() == [1, 2, 3] and np.all(ratios > 10)
    assert np.array_equal(dimmed[0], beaded[0])
    median = np.median(beaded[1])
    for i in (1, 2):  # the bead as bright as the brightest molecule, the rest of the frame untouched
        assert dimmed[i].max() < 1.5 * frames[i].max()
        assert np.array_equal(dimmed[i][:, :40], beaded[i][:, :40])
    lit = beaded[1] > median + 200  # the bead's light, scaled by one factor: its shape is kept
    lit[:, :57] = lit[:57, :] = False
    peak = np.unravel_index(np.argmax(beaded[1]), beaded[1].shape)
    lit[peak] = False
    factor = (dimmed[1][peak] - dimmed[1][lit]) / (beaded[1][peak] - beaded[1][lit])
    assert lit.sum() > 8 and factor.max() < 0.2 and np.ptp(factor) < 1e-3 * factor.max()


def test_real_bright_molecules_and_photon_counting_frames_are_left_alone():
    """A molecule over 5 times as bright as the others is no bead: it blinks, so in a batch
    of frames it is left alone; in batches too short to tell, it is dimmed, keeps its shape
    and gives one localization (clipped flat, it gave three); frames of photon counts
    without read noise on 0.3 background photons (whose noise read zero until the median of
    whole-number differences was interpolated, 2026-11-29) are not touched."""
    import warnings

    from napari_deepcel0.core.frames import PERSISTENCE_MIN_FRAMES, BrightObjectWarning, dim_bright_objects
    from napari_deepcel0.core.metrics import score

    rng = np.random.default_rng(1)
    model = DeepLocalizer(device="cpu")
    frames, gt = _scene(rng, 8, lambda r: np.r_[5000.0, np.full(5, 700.0)])
    plain = localize(model, frames, fix_outlier_pixels=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BrightObjectWarning)
        results = list(localize_stream(model, frames))
    assert results[-1].frames_dimmed == 0 and pd.concat([r.table for r in results]).equals(plain)
    # read in pieces of at least PERSISTENCE_MIN_FRAMES frames: also large frames, which go
    # to the network one at a time, and the end of a stack are judged
    for batch_size in (1, PERSISTENCE_MIN_FRAMES - 1):
        assert pd.concat([r.table for r in localize_stream(model, frames, batch_size=batch_size)],
                         ignore_index=True).equals(plain)
    # and so are the frames before a bad one (read again together when their piece failed)
    broken = frames.copy()
    broken[7, 10, 10:12] = np.nan  # frame 8 is not finite
    got = []
    with pytest.raises(FrameSourceError, match="frame 8"):
        for r in localize_stream(model, broken, batch_size=1):
            got.append(r.table)
    assert pd.concat(got, ignore_index=True).equals(plain[plain["frame"] < 8].reset_index(drop=True))
    short = f"1-{PERSISTENCE_MIN_FRAMES - 1}"  # a selection too short to tell a bead from a molecule
    gt, plain = gt[gt["frame"] < PERSISTENCE_MIN_FRAMES], plain[plain["frame"] < PERSISTENCE_MIN_FRAMES]
    with pytest.warns(BrightObjectWarning):
        fixed = score(gt, localize(model, frames, frames=short), 50.0)
    plain = score(gt, plain, 50.0)
    assert fixed.tp >= plain.tp - 2 and fixed.fp <= plain.fp + 2  # of 18 molecules (measured: 17 and 1 for 18 and 0)
    frames, gt = _scene(rng, 60, lambda r: r.exponential(1500.0, r.integers(3, 16)))  # heavy-tailed brightness
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BrightObjectWarning)  # a few frames hold a molecule 5x the others
        fixed = score(gt, localize(model, frames), 50.0)
    assert fixed.jaccard > score(gt, localize(model, frames, fix_outlier_pixels=False), 50.0).jaccard - 1
    photon_counts = Acquisition(offset_adu=0.0, read_noise_adu=0.0)
    for k in (1, 2, 6):
        frames, _ = _scene(rng, 20, lambda r: r.uniform(600, 900, k), acq=photon_counts, background=0.3)
        assert len(dim_bright_objects(frames, ISBI2013.sigma_px)[1]) == 0
    # clean scenes: crowded, sparse, along filaments, Gaussian noise
    from napari_deepcel0.core.simulate import GaussianSNRNoise, PhotonModel

    scenes = [simulate_stack(n_frames=10, shape=(64, 64), density_per_um2=d, structure=st, seed=1,
                             photons=PhotonModel(300, 3000, 0.9))[0] for d in (0.5, 2.0, 11.0) for st in ("uniform", "tubes")]
    scenes.append(simulate_stack(n_frames=10, shape=(64, 64), seed=2, noise=GaussianSNRNoise((10.0, 10.0)))[0])
    for scene in scenes:
        assert len(dim_bright_objects(scene, ISBI2013.sigma_px)[1]) == 0


@pytest.mark.filterwarnings("ignore::napari_deepcel0.core.predict.NothingFoundWarning")  # the tiny model's empty maps
def test_frames_on_the_last_axis_are_suspected(tiny_model_path):
    """A (rows, cols, frames) array from MATLAB was localized as 32 frames of 32 x 4
    pixels without a word."""
    frames, _ = simulate_stack(n_frames=4, shape=(32, 32), seed=1)
    model = DeepLocalizer(tiny_model_path, device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match="np.moveaxis"):
        localize(model, np.moveaxis(frames, 0, -1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", NothingFoundWarning)  # (a model of 2 training steps)
        localize(model, frames)


def test_deepcel0_places_its_lone_spikes_off_the_pixel_centres():
    """70 % of the bundled model's maxima are lone spikes; the centre of mass left them
    on fine-pixel centres (quantised positions: RMSE 15.8 nm on sparse frames where the
    parabola through the output before the ReLU gives 13.9)."""
    from napari_deepcel0.core.metrics import score
    from napari_deepcel0.core.simulate import simulate_stack

    from napari_deepcel0.core.localize import extract_localizations

    frames, gt = simulate_stack(n_frames=16, shape=(32, 32), density_per_um2=0.5, acq=ISBI2013, seed=3)
    model = DeepLocalizer(acquisition=ISBI2013, device="cpu")
    table = localize(model, frames)
    fine = ISBI2013.fine_pixel_nm
    on_centre = np.isclose((table["x [nm]"] / fine - 0.5) % 1.0, 0.0, atol=1e-4)
    assert len(table) > 40 and on_centre.mean() < 0.2
    maps, _, outputs, subpixel = model.read_out(frames)
    assert subpixel == "parabola" and torch.equal(maps, outputs.clamp_min(0))
    assert torch.equal(maps, model.maps(frames)[0])  # the same maps as before, one network pass
    by_com = extract_localizations(maps, ISBI2013, model.default_threshold())
    assert len(by_com) == len(table)  # the same molecules, placed otherwise
    assert score(gt, table, 50.0).rmse_nm < score(gt, by_com, 50.0).rmse_nm - 1.0


def test_a_bead_stays_put_and_a_bright_molecule_blinks():
    """Only an object bright at the same place in half the batch's frames is dimmed: a
    bead in every frame is, a molecule as bright in one frame is not, nor its neighbour."""
    from napari_deepcel0.core.frames import dim_bright_objects
    from napari_deepcel0.core.simulate import expected_photons

    rng = np.random.default_rng(2)
    n = 8
    molecules = pd.DataFrame({"frame": np.repeat(np.arange(1, n + 1), 8), "x [nm]": rng.uniform(600, 5800, 8 * n),
                              "y [nm]": rng.uniform(600, 2800, 8 * n), "intensity [photon]": 800.0})
    bead = pd.DataFrame({"frame": np.arange(1, n + 1), "x [nm]": 5000.0, "y [nm]": 5000.0, "intensity [photon]": 3e4})
    bright = pd.DataFrame({"frame": [4, 4], "x [nm]": [1500.0, 1900.0], "y [nm]": [5000.0, 5000.0],
                           "intensity [photon]": [3e4, 800.0]})  # a bright molecule and its neighbour
    frames = expected_photons(pd.concat([molecules, bead, bright]), ISBI2013, (64, 64), n) + 110.0
    frames = (frames + rng.normal(0, 2.0, frames.shape)).astype(np.float32)
    dimmed, which, _ = dim_bright_objects(frames, ISBI2013.sigma_px)
    assert which.tolist() == list(range(n))
    assert np.all(dimmed[:, 50, 50] < 0.3 * frames[:, 50, 50])  # the bead, in every frame
    np.testing.assert_array_equal(dimmed[3, 40:60, 5:30], frames[3, 40:60, 5:30])  # the molecule and its neighbour
    dimmed, which, _ = dim_bright_objects(frames[3:5], ISBI2013.sigma_px)  # two frames cannot tell: both dimmed
    assert which.tolist() == [0, 1] and dimmed[0, 50, 15] < 0.3 * frames[3, 50, 15]


def test_two_beads_in_one_frame_are_both_dimmed():
    """The reference was the brightest peak but one: with two fiducial beads (the usual
    drift-correction set-up) neither was dimmed, and the frame's molecules were lost
    to its scale (mutation review)."""
    from napari_deepcel0.core.frames import dim_bright_objects
    from napari_deepcel0.core.simulate import expected_photons

    molecules = pd.DataFrame({"frame": 1, "x [nm]": [800.0, 1600.0, 2400.0, 4000.0, 4800.0, 5600.0, 1200.0, 5000.0],
                              "y [nm]": [800.0, 1600.0, 4800.0, 1200.0, 5200.0, 3000.0, 5600.0, 600.0],
                              "intensity [photon]": 800.0})
    beads = pd.DataFrame({"frame": 1, "x [nm]": [3200.0, 1000.0], "y [nm]": [3200.0, 3000.0],
                          "intensity [photon]": 50000.0})
    frame = expected_photons(pd.concat([molecules, beads]), ISBI2013, (64, 64), 1) + 110.0
    frame = frame + np.random.default_rng(0).normal(0, 2.0, frame.shape)
    _, changed, ratios = dim_bright_objects(frame.astype(np.float32), ISBI2013.sigma_px)
    assert changed.tolist() == [0] and ratios[0] > 20


# ---- found missing by mutation testing (a second round, 2026-11-28): each fails on the bug it names
@pytest.fixture(scope="module")
def bundled():
    from napari_deepcel0.core.predict import DeepLocalizer

    return DeepLocalizer(None, acquisition=Acquisition(), device="cpu", precision="fp32", batch_size=2)


@pytest.fixture(scope="module")
def six_frames():
    frames, _ = simulate_stack(n_frames=6, shape=(64, 64), density_per_um2=1.5, seed=7)
    return frames


def test_photometry_keeps_the_localizations_of_every_batch(bundled, six_frames):
    """P21 (predict.py:481, rows picked by ``frame == i + 1`` instead of the frame
    number): with photometry, frames after the first batch (and any --frames not
    starting at 1) lost all their localizations."""
    from napari_deepcel0.core.predict import localize

    plain = localize(bundled, six_frames, frames="2-6")
    with_photons = localize(bundled, six_frames, frames="2-6", photometry=True)
    assert len(plain) > 10 and plain["frame"].nunique() == 5
    assert len(with_photons) == len(plain)
    np.testing.assert_array_equal(with_photons["frame"], plain["frame"])
    np.testing.assert_allclose(with_photons["x [nm]"], plain["x [nm]"])
    assert with_photons[INTENSITY].notna().all()


def test_a_photometry_run_cancelled_before_its_first_batch_has_the_photometry_columns(bundled, six_frames):
    """P22 (predict.py:500, ``if photometry or fit_positions`` -> ``if fit_positions``)."""
    from napari_deepcel0.core.photometry import BACKGROUND
    from napari_deepcel0.core.predict import localize

    out = localize(bundled, six_frames, cancel=lambda: True, photometry=True)
    assert len(out) == 0 and {INTENSITY, BACKGROUND} <= set(out.columns)


def test_a_negative_threshold_is_refused(bundled, six_frames):
    """P14 (predict.py:459, ``threshold < 0`` accepted): a negative threshold counted
    every fine pixel's local maximum, noise included, as a molecule."""
    from napari_deepcel0.core.predict import localize

    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        localize(bundled, six_frames[:1], threshold=-1.0)


def test_photometry_warns_of_an_offset_above_the_frames(six_frames):
    """P18 (predict.py:431, the camera check of the first batch dropped): photometry with
    a camera offset above the frames' median (photon counts then meaningless) said
    nothing in a stream; add_photometry alone warns."""
    from napari_deepcel0.core.predict import DeepLocalizer, localize

    model = DeepLocalizer(None, acquisition=Acquisition(offset_adu=5000.0), device="cpu", precision="fp32")
    with pytest.warns(UserWarning, match="lies below the camera offset"):
        localize(model, six_frames[:2], photometry=True)


def test_the_confidence_of_a_deep_storm_model_is_over_its_own_spike_value(tmp_path):
    """P7 (predict.py:222, mass scale 1 / target_scale instead of 1 / spike_value): the
    same for DeepCEL0 (spike = s), but a Deep-STORM model's spike is s / 2, so its
    confidences came out halved; the test of the confidence used a DeepCEL0 model."""
    from napari_deepcel0.core.localize import find_peaks
    from napari_deepcel0.core.model_io import save_training_result
    from napari_deepcel0.core.predict import DeepLocalizer, localize_stream
    from napari_deepcel0.core.training import TrainingConfig, train
    from napari_deepcel0.core.training_data import TrainingDataConfig

    data = TrainingDataConfig(n_patches=24, n_frames=3, frame_size=32, patch_size=16)
    result = train(ISBI2013, TrainingConfig(method="deepstorm", epochs=1, max_steps_per_epoch=1, batch_size=4,
                                            device="cpu", precision="fp32", data=data))
    model = DeepLocalizer(save_training_result(tmp_path / "ds.safetensors", result), device="cpu", precision="fp32")
    assert model.info.spike_value == model.info.target_scale / 2
    frames, _ = simulate_stack(n_frames=2, shape=(16, 16), density_per_um2=2.0, seed=1)
    (out,) = list(localize_stream(model, frames, threshold=0.0, keep_maps=True))
    peaks = find_peaks(out.maps, 0.0)
    assert len(out.table) == len(peaks["mass"]) > 0
    np.testing.assert_allclose(out.table["confidence"].to_numpy(), peaks["mass"] / model.info.spike_value, rtol=1e-6)


@pytest.mark.parametrize("name", ["gpu", "mps", "cuda0x", ""])
def test_an_unknown_device_is_refused_not_run_on_the_cpu(name):
    """D1 (devices.py:572, any unknown name taken as the CPU): ``--device gpu`` ran on
    the CPU without a word (hours instead of minutes for training)."""
    from napari_deepcel0.core.devices import resolve_device

    with pytest.raises((ValueError, RuntimeError)):
        resolve_device(name)


def test_auto_precision_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    """D3 (devices.py:596, bf16 chosen on any CPU): emulated bf16 is several times slower
    than fp32 and less exact; only CPUs that compute it natively take it."""
    from napari_deepcel0.core import devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_precision("auto", torch.device("cpu")) == "bf16"


def test_a_torch_without_the_onednn_bf16_probe_gets_fp32_not_an_error(monkeypatch):
    """cpu_has_native_bf16 asks torch's private torch.ops.mkldnn._is_mkldnn_bf16_supported
    on CPUs whose flags show AVX512-BF16 or AMX; a torch build without it made every
    precision="auto" CPU run raise (a packaging review). The CPU's flags and torch's
    oneDNN namespace are stand-ins here, so that the test means the same on any machine."""
    import types

    from napari_deepcel0.core import devices

    class CpuInfo:
        def __init__(self, path):
            pass

        def read_text(self):
            return "flags\t\t: fpu sse2 avx512f avx512_bf16\n"

    monkeypatch.setattr(devices, "Path", CpuInfo)
    answers = {"probe says yes": (types.SimpleNamespace(_is_mkldnn_bf16_supported=lambda: True), True),
               "probe says no": (types.SimpleNamespace(_is_mkldnn_bf16_supported=lambda: False), False),
               "no probe": (types.SimpleNamespace(), False)}
    for name, (namespace, expected) in answers.items():
        monkeypatch.setattr(torch.ops, "mkldnn", namespace)
        devices.cpu_has_native_bf16.cache_clear()
        assert devices.cpu_has_native_bf16() is expected, name
    devices.cpu_has_native_bf16.cache_clear()
