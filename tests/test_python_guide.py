"""docs/python.md runs as written: its ```python blocks, in order, in one namespace, in an
empty folder, as a reader runs them; then a few of its outcomes are checked, so that a
guide whose numbers stopped meaning anything fails. The ISBI 2013 block runs on the data
when they are there (``isbi_dir``) and says it skipped when they are not."""

import os
import re
import time
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, checkout_only

pytestmark = checkout_only  # docs/ is not in the source distribution

GUIDE = REPO / "docs" / "python.md"
#: what marks the ISBI 2013 block: the variable that points it at the data
ISBI_MARK = "DEEPCEL0_ISBI_DIR"


def _guide_blocks() -> list[tuple[int, str]]:
    """Each ```python block of the guide as (line of its first line of code, 1-based; code)."""
    text = GUIDE.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]


def _run_block(line: int, code: str, namespace: dict) -> None:
    """Run one block; a traceback names docs/python.md and the line in it."""
    exec(compile("\n" * (line - 1) + code, str(GUIDE), "exec"), namespace)


def _isbi_block() -> tuple[int, str]:
    (block,) = [b for b in _guide_blocks() if ISBI_MARK in b[1]]
    return block


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """Every block but the ISBI one, run in order in an empty folder: (namespace, folder,
    the UserWarnings that reached the reader, seconds)."""
    blocks = [b for b in _guide_blocks() if ISBI_MARK not in b[1]]
    folder = tmp_path_factory.mktemp("python-guide")
    namespace: dict = {}
    here = os.getcwd()
    os.chdir(folder)
    try:
        with warnings.catch_warnings(record=True) as caught:  # (and the guide's filters stay in the guide)
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            for line, code in blocks:
                _run_block(line, code, namespace)
            seconds = time.perf_counter() - t0
    finally:
        os.chdir(here)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, UserWarning)]
    return namespace, folder, shown, seconds


def test_the_guide_has_its_blocks_in_place():
    blocks = _guide_blocks()
    assert len(blocks) >= 15
    assert ISBI_MARK in blocks[-1][1], "the ISBI 2013 block comes last: the others must not depend on it"
    assert "from napari_deepcel0.api import" in blocks[0][1]


def test_the_guide_runs_top_to_bottom_without_a_stray_warning(guide):
    """Every block runs; no warning reaches the reader that the guide does not show on
    purpose (it catches its own NothingFoundWarning and turns the batch job's into errors)."""
    namespace, folder, shown, seconds = guide
    assert shown == []
    print(f"the guide's blocks ran in {seconds:.1f} s")


def test_the_guides_numbers_mean_something(guide):
    """The outcomes the guide's prose relies on: scores above a floor, exact frames in the
    CSV round trip, a selection that keeps the stack's frame numbers, the same table
    streamed, the files it says it writes."""
    ns, folder, _, _ = guide
    table, truth = ns["table"], ns["truth"]
    jaccard_50 = ns["scores_df"].set_index("tol_nm").loc[50.0, "jaccard"]
    assert jaccard_50 > 50.0  # (62.9 % when written)
    assert [s.tol_nm for s in ns["scores"]] == [50.0, 100.0, 150.0, 250.0]
    assert np.all(np.diff(ns["scores_df"]["jaccard"]) >= 0)  # a wider tolerance matches at least as many
    pd.testing.assert_frame_equal(ns["streamed"], table)  # localize_stream = localize, batch size aside

    back = ns["back"]
    assert np.array_equal(back["frame"].to_numpy(), table["frame"].to_numpy())
    np.testing.assert_allclose(back[["x [nm]", "y [nm]"]].to_numpy(), table[["x [nm]", "y [nm]"]].to_numpy(),
                               rtol=0, atol=1e-3)
    protocol = ns["protocol"]
    assert protocol["method"] == "DeepCEL0" and protocol["results"]["localizations"] == len(table)

    part = ns["part"]
    assert part["frame"].min() == 11 and part["frame"].max() == 20
    assert len(part) == (table["frame"] >= 11).sum()  # the same frames as in the whole run

    for name in ("frames.tif", "locs.csv", "locs-protocol.json", "locs.png", "locs-render.tif", "smoke.safetensors",
                 "batch/run1.csv", "batch/run1-protocol.json", "batch/run2.csv"):
        assert (folder / name).is_file(), name
    assert not (folder / "batch" / "scope2.csv").exists()
    assert np.array_equal(ns["renderer"].image(), ns["counts"]) and ns["counts"].sum() == len(table)

    cel0_50 = ns["evaluate"](truth, ns["cel0_table"], 50, frames="1-2")[0]
    assert cel0_50.jaccard > 35.0  # (54.6 % when written)
    sweep = ns["sweep"]  # the best lambda is the one of the highest Jaccard, and the guide's edge note holds
    assert sweep.best_score.jaccard == max(s.jaccard for s in sweep.scores[sweep.method])
    assert bool(sweep.edge_note) == (sweep.best_lam in (3e-4, 3e-3))

    result = ns["result"]  # the smoke run trained its two epochs within its time limit
    assert [h["epoch"] for h in result.history] == [1, 2] and not result.stopped_at_time_limit
    assert ns["loaded"].info.history == result.history
    assert abs(ns["estimate"].fwhm_nm / 258.21 - 1) < 0.1  # (250.5 nm when written)
    assert list(ns["failed"]) == ["scope2.tif"]
    assert type(ns["failed"]["scope2.tif"]).__name__ == "AcquisitionMismatchWarning"


def test_the_isbi_block_says_it_skipped_without_the_data(guide, tmp_path, monkeypatch, capsys):
    namespace = dict(guide[0])
    monkeypatch.setenv(ISBI_MARK, str(tmp_path / "nothing-here"))
    _run_block(*_isbi_block(), namespace)
    assert "skipped" in capsys.readouterr().out
    assert "isbi_scores" not in namespace


def test_the_isbi_block_on_the_isbi_data(guide, isbi_dir, monkeypatch):
    """The last block on ISBI 2013 frames 1-50 (skips without the data)."""
    namespace = dict(guide[0])
    monkeypatch.setenv(ISBI_MARK, str(isbi_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _run_block(*_isbi_block(), namespace)
    scores = namespace["isbi_scores"]
    assert scores[0].tol_nm == 50.0 and scores[0].jaccard > 58.0  # (63.4 % when written)
    assert namespace["isbi_table"]["frame"].between(1, 50).all()
