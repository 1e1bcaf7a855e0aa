"""A memory-mapped stack whose file changes on disk while it is open (core/tiff_stack.py).

Touching a mapped page past the end of a file cut short kills the process with SIGBUS,
so the reads of a truncated file run in a child process: without the check a test
sees the child die (exit -7 / 135), not the test process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from napari_deepcel0.core import tiff_stack
from napari_deepcel0.core.frames import read_frames
from napari_deepcel0.core.io import StackError, read_stack, write_tiff

#: Windows refuses to truncate or replace a file that is memory-mapped: nothing to guard there
unix_only = pytest.mark.skipif(sys.platform == "win32", reason="Windows cannot cut short a mapped file")

CHANGED = "the file changed on disk while it was open"


def frames(dtype=np.uint16, n: int = 50, offset: int = 0) -> np.ndarray:
    return (np.arange(n * 32 * 32).reshape(n, 32, 32) % 1000 + offset).astype(dtype)


def run_child(code: str, *args) -> subprocess.CompletedProcess:
    """``code`` run by this Python in a child process (``sys.argv[1:]`` = ``args``)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)


def assert_child_ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (f"child exited {result.returncode} (-7 or 135: SIGBUS)\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout


#: in the child: open the stack, read a frame, cut the file short, then read in every way
#: a caller does, printing each error (a SIGBUS ends the child instead)
TRUNCATED_READS = """
    import os, sys
    import numpy as np
    from napari_deepcel0.core.frames import read_frames
    from napari_deepcel0.core.io import StackError, read_stack

    path, keep = sys.argv[1], int(sys.argv[2])
    stack = read_stack(path)
    assert stack._memmap is not None
    first = stack[0]
    os.truncate(path, keep)
    reads = {
        "frame past the end": lambda: stack[40],
        "frame before the cut": lambda: stack[0],
        "negative index": lambda: stack[-1],
        "slice": lambda: stack[30:35],
        "list": lambda: stack[[45, 2]],
        "mask": lambda: stack[np.arange(50) > 47],
        "iteration": lambda: list(stack),
        "np.asarray": lambda: np.asarray(stack),
        "read_frames, a run of frames": lambda: read_frames(stack, np.arange(40, 48)),
        "read_frames, scattered frames": lambda: read_frames(stack, np.array([1, 44, 48])),
        "a dask chunk's key": lambda: stack[(slice(40, 41),)[0]],
    }
    for name, read in reads.items():
        try:
            read()
        except StackError as exc:
            print(f"{name}: StackError: {exc}")
        else:
            print(f"{name}: read without error")
    print("empty list:", stack[[]].shape)  # no frame asked: nothing read, nothing refused
    print("first frame read before:", float(first[0, 1]))
    stack.close()
    try:
        stack[0]
    except ValueError as exc:
        print("closed:", exc)
    print("child done")
"""


@unix_only
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_a_memory_mapped_stack_cut_short_while_open_is_refused_not_a_crash(tmp_path, dtype):
    path = write_tiff(tmp_path / "frames.tif", frames(dtype))
    out = assert_child_ok(run_child(TRUNCATED_READS, path, 20_000))
    lines = out.splitlines()
    for name in ("frame past the end", "frame before the cut", "negative index", "slice", "list", "mask",
                 "iteration", "np.asarray", "read_frames, a run of frames", "read_frames, scattered frames",
                 "a dask chunk's key"):
        line = next(line for line in lines if line.startswith(name + ":"))
        # every read refused: a file shorter than the stack it held is no longer that stack
        assert "StackError" in line and CHANGED in line, line
        assert str(path) in line and "20,000 bytes" in line and "50 frames" in line and "open it again" in line
    assert f"frame past the end: StackError: {path}: frame 41 cannot be read" in out
    assert f"slice: StackError: {path}: frame 31 cannot be read" in out
    assert "empty list: (0, 32, 32)" in out and "first frame read before: 1.0" in out
    assert "closed:" in out and "the stack was closed" in out  # a closed stack says so, as before
    assert lines[-1] == "child done"


@unix_only
def test_the_review_repro_a_stack_cut_to_100000_bytes_raises_a_stack_error(tmp_path):
    """Review 7, finding 1: ``s[0]; os.truncate(path, 100000); s[200]`` died of SIGBUS."""
    path = write_tiff(tmp_path / "x.tif", (np.arange(300 * 64 * 64) % 4000).reshape(300, 64, 64).astype(np.uint16))
    result = run_child("""
        import os, sys
        from napari_deepcel0.core.io import read_stack
        s = read_stack(sys.argv[1]); s[0]; os.truncate(sys.argv[1], 100000); s[200]
    """, path)
    assert result.returncode == 1, f"exit {result.returncode} (-7 or 135: SIGBUS)\n{result.stderr}"
    assert "StackError" in result.stderr and "frame 201 cannot be read" in result.stderr
    assert "now 100,000 bytes, shorter than the stack of 300 frames" in result.stderr


@unix_only
@unix_only
def test_a_stack_cut_short_in_the_middle_of_a_batch_read_is_refused_not_a_crash(tmp_path):
    """The size was checked once per read call: a file cut short while a batch was copied
    from the map (after that check; Fiji truncates, then writes for seconds) still died of
    SIGBUS (diff review). Mapped frames are now read with os.pread: a short read."""
    path = write_tiff(tmp_path / "sb.tif", frames(n=20))
    result = run_child("""
        import os, sys
        from napari_deepcel0.core.tiff_stack import FrameStack
        path = sys.argv[1]
        stack = FrameStack(path)
        read = FrameStack._read
        def cut_at_frame_5(self, i):
            if i == 5:
                os.truncate(path, 4096)
            return read(self, i)
        FrameStack._read = cut_at_frame_5
        try:
            stack[0:20]
        except Exception as exc:
            print(type(exc).__name__, exc)
    """, path)
    out = assert_child_ok(result)
    assert out.startswith("StackError") and "frame 6 cannot be read: the file changed on disk" in out


def test_a_frame_read_before_the_file_was_cut_short_is_a_copy_not_the_map(tmp_path):
    """A float32 frame was returned as a view of the map: using it after the cut read the
    file then (SIGBUS)."""
    path = write_tiff(tmp_path / "frames.tif", frames(np.float32))
    out = assert_child_ok(run_child("""
        import os, sys
        import numpy as np
        from napari_deepcel0.core.frames import read_frames
        from napari_deepcel0.core.io import read_stack

        stack = read_stack(sys.argv[1])
        one, some, scattered = stack[45], stack[40:44], read_frames(stack, np.array([1, 46]))
        os.truncate(sys.argv[1], 2000)
        print("sums", float(one.sum()), float(some.sum()), float(scattered.sum()))
    """, path))
    data = frames(np.float32)
    assert out.split() == ["sums", str(float(data[45].sum())), str(float(data[40:44].sum())),
                           str(float(data[[1, 46]].sum()))]


@unix_only
def test_the_napari_layer_of_a_stack_cut_short_raises_a_stack_error(tmp_path):
    pytest.importorskip("napari")
    path = write_tiff(tmp_path / "frames.tif", frames())
    out = assert_child_ok(run_child("""
        import os, sys
        from napari_deepcel0._napari.reader import frame_source, lazy_frames
        from napari_deepcel0.core.io import StackError, read_stack

        stack = read_stack(sys.argv[1])
        layer = lazy_frames(stack)
        layer[3].compute()
        os.truncate(sys.argv[1], 20000)
        for name, read in (("dask chunk", lambda: layer[44].compute()),
                           ("dask chunks", lambda: layer[10:14].compute()),
                           ("frame source", lambda: frame_source(layer)[44])):
            try:
                read()
            except StackError as exc:
                print(name, "StackError:", exc)
    """, path))
    for name in ("dask chunk", "dask chunks", "frame source"):
        assert f"{name} StackError: {path}: frame" in out and CHANGED in out, out


@unix_only
def test_a_stack_replaced_by_a_new_file_while_open_reads_its_old_frames(tmp_path):
    path = write_tiff(tmp_path / "frames.tif", frames())
    with read_stack(path) as stack:
        assert stack._memmap is not None and np.array_equal(stack[7], frames()[7])
        # a save to a temporary file renamed over it (write_tiff, most editors): the open one stays
        write_tiff(tmp_path / "new.tif", frames(n=3, offset=5000))
        os.replace(tmp_path / "new.tif", path)
        assert np.array_equal(stack[:], frames()) and np.array_equal(stack[49], frames()[49])
        assert np.array_equal(read_frames(stack, np.array([0, 48])), frames()[[0, 48]])
    with read_stack(path) as reopened:
        assert np.array_equal(reopened[:], frames(n=3, offset=5000))


def test_a_stack_whose_file_grew_while_open_reads_as_before(tmp_path):
    path = write_tiff(tmp_path / "frames.tif", frames())
    with read_stack(path) as stack:
        with open(path, "ab") as f:
            f.write(b"\0" * 100_000)
        assert np.array_equal(stack[:], frames()) and np.array_equal(stack[49], frames()[49])


def test_reads_of_an_unchanged_stack_are_unchanged_and_check_the_file_once_a_call(tmp_path, monkeypatch):
    data = frames(np.float32)
    path = write_tiff(tmp_path / "frames.tif", data)
    calls = []
    fstat = os.fstat
    monkeypatch.setattr(tiff_stack.os, "fstat", lambda fd: calls.append(fd) or fstat(fd))
    with read_stack(path) as stack:
        calls.clear()
        assert np.array_equal(stack[3], data[3]) and stack[3].dtype == np.float32
        assert np.array_equal(stack[-1], data[-1]) and np.array_equal(stack[10:26], data[10:26])
        assert np.array_equal(stack[[5, 1]], data[[5, 1]]) and np.array_equal(np.asarray(stack), data)
        assert np.array_equal(np.stack(list(stack)), data)
        assert np.array_equal(read_frames(stack, np.arange(16)), data[:16])
        n_calls = len(calls)
        one = stack[3]
        assert one.flags.writeable and not np.shares_memory(one, stack._memmap)  # a frame of its own
        assert len(calls) == n_calls + 1  # one fstat a read call (a batch of 16 frames: one)
        assert stack[[]].shape == (0, 32, 32) and len(calls) == n_calls + 1
        with pytest.raises(IndexError, match="out of range"):
            stack[50]
    with pytest.raises(ValueError, match="the stack was closed"):
        stack[0]


def test_stacks_read_without_a_map_are_not_checked_and_a_cut_one_is_damaged_as_before(tmp_path):
    data = frames()
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib", photometric="minisblack")
    with read_stack(tmp_path / "z.tif") as stack:
        assert stack._memmap is None and stack._mapped_end is None
        assert np.array_equal(stack[:], data)
        size = os.path.getsize(tmp_path / "z.tif")
        if sys.platform != "win32":
            os.truncate(tmp_path / "z.tif", size // 3)
            with pytest.raises(StackError, match="frame 50 cannot be read .*the file is damaged or truncated"):
                stack[49]


@pytest.mark.parametrize("shape", [(8, 1, 1), (8, 16, 1), (8, 1, 1, 1), (3, 1, 1)])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_frames_one_column_wide_are_read_as_frames_not_as_one_frame(tmp_path, shape, compression):
    """``tifffile.imwrite(path, np.zeros((8, 1, 1)))`` was read as one frame of 8 x 1
    (bad-input review): tifffile stores the array squeezed in one page (8 x 1) and names
    its axes YQX; the description keeps the shape, and its last two axes are rows, columns."""
    data = np.arange(int(np.prod(shape)), dtype=np.uint16).reshape(shape)
    path = tmp_path / "narrow.tif"
    tifffile.imwrite(path, data, photometric="minisblack", compression=compression)
    expected = data.reshape((-1,) + shape[-2:])
    with read_stack(path) as stack:
        assert stack.shape == expected.shape and stack.frame_shape == shape[-2:]
        np.testing.assert_array_equal(stack[:], expected)
        np.testing.assert_array_equal(stack[2], expected[2])


@pytest.mark.parametrize("shape", [(5, 1, 1), (5, 8, 1), (5, 1, 8), (1, 1, 1), (3, 4, 5)])
def test_our_tiffs_of_any_frame_shape_read_back(tmp_path, shape):
    """``write_tiff`` of frames one column wide wrote one ImageJ page (tifffile took the
    last axis of size 1 for samples), which the reader refused as truncated."""
    data = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float32).reshape(shape)
    path = write_tiff(tmp_path / "ours.tif", data, pixel_size_nm=100.0)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == shape[0]
    with read_stack(path) as stack:
        assert stack.shape == shape and stack.pixel_size_nm == pytest.approx(100.0)
        np.testing.assert_array_equal(stack[:], data)


def test_integers_float32_cannot_hold_are_written_with_a_warning(tmp_path):
    """An int64 image with values above 2^24 was exported as float32, rounded, without a
    word (widget review); up to 2^24 float32 holds them exactly and nothing is said."""
    import warnings

    exact = np.array([[0, 2**24]], np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_tiff(tmp_path / "exact.tif", exact)
    with pytest.warns(UserWarning, match=r"integer values up to 16,777,217 are written as float32, which holds "
                                         r"integers exactly up to 2\^24 = 16,777,216 only"):
        write_tiff(tmp_path / "rounded.tif", exact + 1)


def test_a_single_frame_and_stacks_of_wide_frames_read_as_before(tmp_path):
    """The fix for frames one column wide leaves the other layouts alone."""
    cases = {"frame.tif": np.arange(16 * 12).reshape(16, 12), "pixel.tif": np.array([[7]]),
             "row.tif": np.arange(16).reshape(1, 16), "rows.tif": np.arange(8 * 16).reshape(8, 1, 16),
             "stack.tif": np.arange(5 * 16 * 12).reshape(5, 16, 12), "one.tif": np.arange(16 * 12).reshape(1, 16, 12)}
    for name, data in cases.items():
        tifffile.imwrite(tmp_path / name, data.astype(np.uint16), photometric="minisblack")
        with read_stack(tmp_path / name) as stack:
            assert stack.shape == (1,) * (3 - data.ndim) + data.shape, name
            np.testing.assert_array_equal(stack[:], data.reshape(stack.shape))


def test_batches_of_frames_one_column_wide_appended_are_refused_not_misread(tmp_path):
    """Appended batches of 4 frames of 1 x 1 read as 3 frames of 4 x 1: each batch is one
    page. Frames of 1 x 1 appended one at a time are read."""
    for i in range(3):
        tifffile.imwrite(tmp_path / "batches.tif", np.full((4, 1, 1), i, np.uint16), append=True,
                         photometric="minisblack")
        tifffile.imwrite(tmp_path / "frames.tif", np.full((1, 1), i, np.uint16), append=True,
                         photometric="minisblack")
    with pytest.raises(StackError, match=r"batches.tif: the file was written a piece at a time .* frames of "
                                         r"1 x 1 pixels, one column wide"):
        read_stack(tmp_path / "batches.tif")
    with read_stack(tmp_path / "frames.tif") as stack:
        assert stack.shape == (3, 1, 1) and stack[:].ravel().tolist() == [0, 1, 2]
