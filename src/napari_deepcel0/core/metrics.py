"""Scoring localizations against ground truth.

Matching is per frame and one-to-one: among all pairings that only join a ground-truth
molecule and a localization closer than the tolerance, it takes one with the largest
number of pairs and, among those, the smallest total distance (the Hungarian matching of
the SMLM challenges). A pair exactly at the tolerance is not matched: the paper pairs
molecules "when the distance between their localizations is lower than" it (Sec. 4.1).
It matters where both tables sit on one grid (the paper's Table 1 protocol scores
pixel-centred ground truth, and a lone network spike is pixel-centred too: distances of
exactly 2 fine pixels are common there); against continuous coordinates it does not. The
distance is Euclidean; ``distance="chebyshev"`` (a square window) is there for
sensitivity analyses of papers that do not say which distance they use.

Definitions (paper Eqs. 11-13, Sage et al. 2019), percentages in %:

- Jaccard = TP / (TP + FP + FN); sensitivity (recall) = TP / (TP + FN);
  precision = TP / (TP + FP);
- specificity = TN / (TN + FP), TN = fine-grid pixels that hold no ground-truth
  molecule (needs the grid);
- RMSE = sqrt(mean(dx^2 + dy^2)) over matched pairs (lateral), nm; bias = mean(est - gt);
- efficiency = 100 - sqrt((100 (1 - JI))^2 + alpha^2 RMSE^2), alpha = 1 nm^-1.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .defaults import TOLERANCES_NM as DEFAULT_TOLERANCES_NM  # noqa: F401 (exported)
from .columns import FRAME, POSITION_RULE, X_NM, Y_NM, unusable_positions
from .progress import counted


def match_points(gt_xy: np.ndarray, est_xy: np.ndarray, tol_nm: float,
                 distance: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of two point sets within ``tol_nm``.

    Parameters
    ----------
    gt_xy, est_xy
        (n, 2) and (m, 2) arrays of positions in nm.
    tol_nm
        A matched pair is closer than this (strictly: a pair exactly ``tol_nm`` apart
        is not matched, as the paper's "lower than").
    distance
        ``"euclidean"`` (the default, the SMLM challenges' and ours) or
        ``"chebyshev"``: ``max(|dx|, |dy|)``, a square window, for sensitivity
        analyses of papers that do not say which distance they use.

    Returns
    -------
    gt_index, est_index : int arrays of equal length, the matched pairs.
    """
    gt_xy, est_xy = _points(gt_xy, "gt_xy"), _points(est_xy, "est_xy")
    check_tolerance(tol_nm)
    p = minkowski_p(distance)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(gt_xy) == 0 or len(est_xy) == 0:
        return empty
    dist = cKDTree(gt_xy).sparse_distance_matrix(cKDTree(est_xy), tol_nm, p=p, output_type="coo_matrix")
    gi, ei = dist.row, dist.col
    d = np.linalg.norm(gt_xy[gi] - est_xy[ei], ord=p, axis=1)
    keep = d < tol_nm  # sparse_distance_matrix keeps d <= tol_nm
    gi, ei, d = gi[keep], ei[keep], d[keep]
    n_g, n_e = len(gt_xy), len(est_xy)
    # coincident points: some scipy versions leave zero distances out of the sparse matrix
    zero_g, zero_e = _coincident(gt_xy, est_xy)
    missing = ~np.isin(zero_g * n_e + zero_e, gi * n_e + ei)
    if missing.any():
        gi, ei = np.r_[gi, zero_g[missing]], np.r_[ei, zero_e[missing]]
        d = np.r_[d, np.zeros(int(missing.sum()))]
    if len(gi) == 0:  # (after the coincident pairs: all of them were left out above when all were such)
        return empty
    graph = coo_matrix((np.ones(len(gi)), (gi, n_g + ei)), shape=(n_g + n_e, n_g + n_e))
    _, label = connected_components(graph, directed=False)
    comp_of_edge = label[gi]
    # a group of one molecule and one localization is their pair, taken all at once (most of
    # them: one at a time in Python, 2 million against 2 million took 6 minutes; a review)
    single = np.bincount(comp_of_edge)[comp_of_edge] == 1
    out_g, out_e = [gi[single]], [ei[single]]
    rest = np.flatnonzero(~single)
    order = rest[np.argsort(comp_of_edge[rest], kind="stable")]
    bounds = np.flatnonzero(np.diff(comp_of_edge[order])) + 1
    for edges in np.split(order, bounds) if len(order) else []:
        g_nodes, g_loc = np.unique(gi[edges], return_inverse=True)
        e_nodes, e_loc = np.unique(ei[edges], return_inverse=True)
        # Infeasible pairs cost more than any full set of feasible ones, so the
        # assignment maximises the number of feasible pairs, then minimises distance.
        big = (min(len(g_nodes), len(e_nodes)) + 1) * (tol_nm + 1.0)
        cost = np.full((len(g_nodes), len(e_nodes)), big)
        cost[g_loc, e_loc] = d[edges]
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < big
        out_g.append(g_nodes[r[ok]])
        out_e.append(e_nodes[c[ok]])
    return np.concatenate(out_g).astype(np.int64), np.concatenate(out_e).astype(np.int64)


def _points(xy, name: str) -> np.ndarray:
    """``xy`` as an (n, 2) float array; ValueError for other shapes (an (n, 3) array of
    x, y, z was read as pairs of numbers: 6 "matches" of 4 points)."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.size == 0:
        return xy.reshape(0, 2)
    if xy.shape == (2,):  # one point
        return xy.reshape(1, 2)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"{name} must be an (n, 2) array of x, y positions in nm, got shape {xy.shape}")
    return xy


def _coincident(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = cKDTree(a).query_ball_tree(cKDTree(b), 0.0)
    gi = [i for i, js in enumerate(pairs) for _ in js]
    ei = [j for js in pairs for j in js]
    return np.asarray(gi, np.int64), np.asarray(ei, np.int64)


@dataclass
class Matching:
    """All matched pairs of a ground truth and an estimate, for one tolerance."""

    tol_nm: float
    gt_index: np.ndarray  # row positions in the ground-truth table
    est_index: np.ndarray  # row positions in the estimate table
    n_gt: int
    n_est: int

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean arrays: which ground-truth rows were found (TP, else FN) and which
        estimate rows are true positives (else FP)."""
        gt_found = np.zeros(self.n_gt, bool)
        est_true = np.zeros(self.n_est, bool)
        gt_found[self.gt_index] = True
        est_true[self.est_index] = True
        return gt_found, est_true


DISTANCES = {"euclidean": 2.0, "chebyshev": np.inf}  # name -> Minkowski p
#: how pairs are matched, for result files: benchmark JSON without it (written before
#: 2026-11-28) counted pairs exactly at the tolerance
MATCHING_RULE = "strict: pairs closer than the tolerance"
#: how the networks' maxima are placed, for result files (written before 2026-11-28
#: without it: the 3 x 3 centre of mass)
NETWORK_READ_OUT = "parabola through the output before the ReLU (orientation averaging: centre of mass)"


def minkowski_p(distance: str) -> float:
    """The Minkowski p of a distance name (:data:`DISTANCES`); ValueError for another name."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
    return DISTANCES[distance]


def check_tolerance(tol_nm: float) -> None:
    """ValueError unless ``tol_nm`` is a positive, finite number (of nm)."""
    number = isinstance(tol_nm, numbers.Real) or (isinstance(tol_nm, np.ndarray) and tol_nm.ndim == 0)
    if (not number or isinstance(tol_nm, bool) or np.asarray(tol_nm).dtype.kind not in "iuf"
            or not (math.isfinite(tol_nm) and tol_nm > 0)):
        raise ValueError(f"tolerance must be a positive number of nm, got {tol_nm!r}")


#: the smallest tolerance the command line and the Matching widget take (nm): 0.05, 50 nm
#: typed in um, scored 0 % without a word (the library takes any positive tolerance, with a
#: :class:`SmallToleranceWarning` under it)
MIN_USER_TOLERANCE_NM = 1.0


class SmallToleranceWarning(UserWarning):
    """A tolerance under :data:`MIN_USER_TOLERANCE_NM`: a distance in um given as nm?"""


def warn_if_small_tolerance(tol_nm: float, stacklevel: int = 2) -> None:
    """Warn (:class:`SmallToleranceWarning`) of a tolerance under
    :data:`MIN_USER_TOLERANCE_NM` nm, which matches next to nothing: 50 nm given in um
    (0.05) scored 0 % without a word. ``stacklevel`` as :func:`warnings.warn`'s, counted
    from the caller of this function."""
    if tol_nm < MIN_USER_TOLERANCE_NM:
        hint = (f"in um? {tol_nm:g} um is {tol_nm * 1e3:g} nm" if tol_nm * 1e3 >= MIN_USER_TOLERANCE_NM
                else "in nm?")
        warnings.warn(f"a tolerance of {tol_nm:g} nm matches next to nothing: tolerances are distances in nm "
                      f"({hint})", SmallToleranceWarning, stacklevel=stacklevel + 1)


def small_tolerance_message(tol_nm: float) -> str:
    """What to say of a tolerance a user gave under :data:`MIN_USER_TOLERANCE_NM`, else ""."""
    if tol_nm >= MIN_USER_TOLERANCE_NM:
        return ""
    return f"tolerances are distances in nm, at least {MIN_USER_TOLERANCE_NM:g}, got {tol_nm:g} (in um? " + (
        f"{tol_nm:g} um is {tol_nm * 1e3:g} nm)" if tol_nm * 1e3 >= MIN_USER_TOLERANCE_NM else "in nm?)")


def match(gt: pd.DataFrame, est: pd.DataFrame, tol_nm: float, distance: str = "euclidean", *,
          warn_small: bool = True) -> Matching:
    """Match two localization tables frame by frame (see :func:`match_points`); a
    tolerance under 1 nm warns (``warn_small``: :func:`warn_if_small_tolerance`)."""
    check_tolerance(tol_nm)
    if warn_small:
        warn_if_small_tolerance(tol_nm)
    for *_, matching in iter_match(gt, est, tol_nm, distance):
        pass
    return matching


def check_tables(gt: pd.DataFrame, est: pd.DataFrame) -> None:
    """:func:`check_table` of the ground truth and of the estimate."""
    check_table(gt, "ground truth")
    check_table(est, "estimate")


def check_table(table: pd.DataFrame, name: str) -> None:
    """ValueError unless ``table`` has numeric ``frame``, ``x [nm]`` and ``y [nm]`` columns
    (a table without ``frame`` raised KeyError, frame numbers as text TypeError, from deep
    inside the scoring); TypeError for what is no DataFrame (a CSV's path, an array).
    ``name`` says which table it is ("ground truth")."""
    if not isinstance(table, pd.DataFrame):
        hint = (f": read the file with read_localizations({str(table)!r})" if isinstance(table, (str, os.PathLike))
                else "")
        raise TypeError(f"the {name} must be a table (a pandas DataFrame with frame, x [nm] and y [nm] columns), "
                        f"got {type(table).__name__}{hint}")
    missing = [c for c in (FRAME, X_NM, Y_NM) if c not in table.columns]
    if missing:
        raise ValueError(f"{name} table lacks column(s) {missing}")
    text = [c for c in (FRAME, X_NM, Y_NM) if not pd.api.types.is_numeric_dtype(table[c].dtype)
            or pd.api.types.is_bool_dtype(table[c].dtype)]
    if text:
        raise ValueError(f"{name} table: column(s) {text} must hold numbers, not {table[text[0]].dtype}")


#: :func:`iter_match` reports progress after this many frames
MATCH_CHUNK_FRAMES = 500


def iter_match(gt: pd.DataFrame, est: pd.DataFrame, tol_nm: float, distance: str = "euclidean"
               ) -> Iterator[tuple[int, int, Matching | None]]:
    """:func:`match` a few hundred frames at a time (:data:`MATCH_CHUNK_FRAMES`), for
    progress bars and Cancel on large tables: yields ``(frames done, frames to match,
    None)`` after each piece, and last ``(n, n, Matching)``. Frames found in only one
    table need no matching and are not counted."""
    check_tolerance(tol_nm)
    minkowski_p(distance)
    check_tables(gt, est)
    g_frames = gt[FRAME].to_numpy()
    e_frames = est[FRAME].to_numpy()
    g_xy = gt[[X_NM, Y_NM]].to_numpy(np.float64)
    e_xy = est[[X_NM, Y_NM]].to_numpy(np.float64)
    for name, xy in (("ground truth", g_xy), ("estimate", e_xy)):
        bad = unusable_positions(xy)
        if bad.any():
            raise ValueError(f"{name} table has {bad.sum()} row(s) whose x or y is not {POSITION_RULE} "
                             f"(the first: row {int(np.flatnonzero(bad)[0])})")
    g_order = np.argsort(g_frames, kind="stable")
    e_order = np.argsort(e_frames, kind="stable")
    frames = np.intersect1d(g_frames, e_frames)
    g_lo = np.searchsorted(g_frames[g_order], frames, "left")
    g_hi = np.searchsorted(g_frames[g_order], frames, "right")
    e_lo = np.searchsorted(e_frames[e_order], frames, "left")
    e_hi = np.searchsorted(e_frames[e_order], frames, "right")
    all_g, all_e = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for k in range(len(frames)):
        gsel = g_order[g_lo[k] : g_hi[k]]
        esel = e_order[e_lo[k] : e_hi[k]]
        gi, ei = match_points(g_xy[gsel], e_xy[esel], tol_nm, distance)
        all_g.append(gsel[gi])
        all_e.append(esel[ei])
        if (k + 1) % MATCH_CHUNK_FRAMES == 0 and k + 1 < len(frames):
            yield k + 1, len(frames), None
    yield len(frames), len(frames), Matching(float(tol_nm), np.concatenate(all_g), np.concatenate(all_e), len(gt),
                                             len(est))


@dataclass
class Score:
    """Detection and accuracy figures for one tolerance (percentages in %)."""

    tol_nm: float
    tp: int
    fp: int
    fn: int
    jaccard: float
    sensitivity: float
    precision: float
    rmse_nm: float
    efficiency: float
    bias_x_nm: float
    bias_y_nm: float
    specificity: float | None = None

    def to_dict(self) -> dict:
        """Plain dict for JSON (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else math.nan


def efficiency(jaccard_pct: float, rmse_nm: float, alpha: float = 1.0) -> float:
    """Sage et al. 2019 efficiency: ``100 - sqrt((100 - JI%)^2 + alpha^2 RMSE^2)``."""
    if not math.isfinite(jaccard_pct):
        return math.nan
    rmse = rmse_nm if math.isfinite(rmse_nm) else 0.0
    return 100.0 - math.sqrt((100.0 - jaccard_pct) ** 2 + (alpha * rmse) ** 2)


def score(
    gt: pd.DataFrame,
    est: pd.DataFrame,
    tol_nm: float,
    *,
    grid: tuple[float, tuple[int, int]] | None = None,
    n_frames: int | None = None,
    distance: str = "euclidean",
    matching: Matching | None = None,
    warn_small: bool = True,
) -> Score:
    """Score an estimate against ground truth at one tolerance.

    Parameters
    ----------
    gt, est
        Tables with ``frame``, ``x [nm]``, ``y [nm]``.
    tol_nm
        Matching tolerance in nm.
    grid
        ``(fine_pixel_nm, (rows, cols))`` of the fine grid, needed for specificity.
    n_frames
        Number of frames for specificity (default: the largest frame number seen).
    distance
        How ``tol_nm`` is measured (see :func:`match_points`); the RMSE is always
        the Euclidean error of the matched pairs.
    matching
        ``match(gt, est, tol_nm, distance)`` when the caller has it already (it is the
        costly part), else it is computed.
    warn_small
        Warn of a tolerance under 1 nm (:func:`warn_if_small_tolerance`); False where
        the caller has warned already.
    """
    check_tables(gt, est)
    check_tolerance(tol_nm)
    if warn_small:
        warn_if_small_tolerance(tol_nm)
    if matching is not None and (matching.tol_nm != tol_nm or (matching.n_gt, matching.n_est) != (len(gt), len(est))):
        raise ValueError(f"the matching given was made at {matching.tol_nm:g} nm for {matching.n_gt} ground-truth and "
                         f"{matching.n_est} estimated rows; scoring at {tol_nm:g} nm for {len(gt)} and {len(est)} "
                         "needs its own match()")
    m = match(gt, est, tol_nm, distance, warn_small=False) if matching is None else matching
    tp = len(m.gt_index)
    fp = len(est) - tp
    fn = len(gt) - tp
    if tp:
        d = est[[X_NM, Y_NM]].to_numpy(np.float64)[m.est_index] - gt[[X_NM, Y_NM]].to_numpy(np.float64)[m.gt_index]
        rmse = float(np.sqrt(np.mean(np.sum(d**2, axis=1))))
        bias_x, bias_y = (float(v) for v in d.mean(axis=0))
    else:
        rmse = bias_x = bias_y = math.nan
    jac = _pct(tp, tp + fp + fn)
    spec = None
    if grid is not None:
        try:
            fine_pixel_nm, (rows, cols) = grid
        except (TypeError, ValueError):
            raise ValueError(f"grid must be (fine pixel in nm, (rows, cols)) of the fine grid, e.g. (25.0, (256, 256)), "
                             f"got {grid!r}") from None
        if not (math.isfinite(fine_pixel_nm) and fine_pixel_nm > 0 and int(rows) == rows >= 1 and int(cols) == cols >= 1):
            raise ValueError(f"grid must be (fine pixel in nm > 0, (rows, cols) >= 1), got {grid}")
        if n_frames is not None and not n_frames >= 0:
            raise ValueError(f"n_frames must be a number of frames >= 0, got {n_frames}")
        frames = n_frames or int(max(gt[FRAME].max() if len(gt) else 0, est[FRAME].max() if len(est) else 0))
        col = np.floor(gt[X_NM].to_numpy() / fine_pixel_nm).astype(np.int64)
        row = np.floor(gt[Y_NM].to_numpy() / fine_pixel_nm).astype(np.int64)
        inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        keys = (gt[FRAME].to_numpy()[inside] * rows + row[inside]) * cols + col[inside]
        tn = frames * rows * cols - len(np.unique(keys))
        spec = _pct(tn, tn + fp)
    return Score(
        tol_nm=float(tol_nm),
        tp=tp,
        fp=fp,
        fn=fn,
        jaccard=jac,
        sensitivity=_pct(tp, tp + fn),
        precision=_pct(tp, tp + fp),
        rmse_nm=rmse,
        efficiency=efficiency(jac, rmse),
        bias_x_nm=bias_x,
        bias_y_nm=bias_y,
        specificity=spec,
    )


def select_frames(gt: pd.DataFrame, est: pd.DataFrame, frames) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The rows of both tables in the 1-based frame selection ``frames`` (``"1-20"``,
    ``"1,5,10-"``, a number or a list, as :func:`~.frames.parse_frame_selection`), and
    how many frames it selects. Frames past the last one in either table are valid,
    empty frames of the selection (they count for specificity); ranges are not
    expanded."""
    ranges, _ = _selection_ranges(gt, est, frames)
    first, last = (np.array(ends, dtype=np.float64) for ends in zip(*ranges))  # sorted, disjoint

    def selected(table: pd.DataFrame) -> pd.DataFrame:
        # the range that starts last at or before each frame (a mask per range took 40 GB for the odd
        # frames of 20,000 over 2 million rows: a review)
        frame = table[FRAME].to_numpy()
        at = np.searchsorted(first, frame, side="right") - 1
        return table[(at >= 0) & (frame <= last[np.maximum(at, 0)])]

    return selected(gt), selected(est), sum(hi - lo + 1 for lo, hi in ranges)


def _selection_ranges(gt: pd.DataFrame, est: pd.DataFrame, frames) -> tuple[list[tuple[int, int]], int]:
    """The (first, last) ranges of the 1-based selection ``frames`` (as
    :func:`select_frames` reads it: open ranges end at the tables' last frame, or at a
    higher one the selection names), and the tables' last frame (0 for empty tables)."""
    from .frames import frame_ranges

    named = re.findall(r"\d+", frames) if isinstance(frames, str) else np.ravel(frames).tolist()
    tables_last = int(max(est[FRAME].max() if len(est) else 0, gt[FRAME].max() if len(gt) else 0))
    return frame_ranges(frames, int(max([tables_last, 1] + [int(v) for v in named]))), tables_last


def frames_past_the_tables(gt: pd.DataFrame, est: pd.DataFrame, frames) -> tuple[int, list[tuple[int, int]]]:
    """The tables' last frame and the ranges of the selection ``frames`` after it:
    :func:`select_frames` scores them as frames where nothing was found (valid, empty
    frames of the selection), which a caller may want to say."""
    ranges, last = _selection_ranges(gt, est, frames)
    return last, [(max(lo, last + 1), hi) for lo, hi in ranges if hi > last]


def frame_span(first: int, last: int) -> str:
    """``"frame 3"`` or ``"frames 3-7"``."""
    return f"frame {first}" if first == last else f"frames {first}-{last}"


class FrameCoverageWarning(UserWarning):
    """The ground truth holds molecules in frames outside those of the localizations."""


def uncovered_frames_message(gt: pd.DataFrame, est: pd.DataFrame,
                             restrict: str = 'frames="{first}-{last}" in Python, --frames {first}-{last} on '
                                             'the command line', localized_known: bool = False) -> str:
    """What :func:`warn_if_frames_uncovered` says, or "" when there is nothing to say;
    ``restrict`` tells how to score frames ``{first}``-``{last}`` only, where the
    caller is used (a format string). ``localized_known``: the ground truth is of the
    frames a run localized already, so only localizations beyond its frames are named."""
    if len(gt) == 0 or len(est) == 0:
        return ""
    parts = []
    sides = (
        (gt, est, "ground-truth molecules outside count as missed", "If those frames were not localized, "
         "score the localized ones only", "if they were and nothing was found there"),
        (est, gt, "localizations outside count as false positives", "If the ground truth is of part of the "
         "stack only, score its frames only", "if it is of the whole stack"))
    for table, other, counted_as, restricted, otherwise in sides[1:] if localized_known else sides:
        first, last = int(other[FRAME].min()), int(other[FRAME].max())
        frames = table[FRAME].to_numpy()
        outside = int(((frames < first) | (frames > last)).sum())
        if outside > 0.01 * len(table):
            parts.append(f"the {outside} {counted_as}. {restricted} ({restrict.format(first=first, last=last)}); "
                         f"{otherwise}, the score is right as it is")
    if not parts:
        return ""
    return (f"the ground truth runs over {frame_span(int(gt[FRAME].min()), int(gt[FRAME].max()))}, the "
            f"localizations over {frame_span(int(est[FRAME].min()), int(est[FRAME].max()))}: " + "; ".join(parts))


def empty_selection_message(gt: pd.DataFrame, est: pd.DataFrame, frames) -> str:
    """What to say when the frames scored hold localizations but no ground-truth
    molecule (every localization counts as a false positive: the ground truth of
    another stack?) or neither, else ""."""
    if len(gt):
        return ""
    which = f"frames {frames}" if frames is not None else "the frames scored"
    if len(est):
        return (f"the ground truth holds no molecule in {which}: all {len(est)} localizations count as false "
                "positives; is it the ground truth of this stack?")
    return f"neither the ground truth nor the localizations hold a molecule in {which}: there is nothing to score"


def renumbered_slice_message(gt: pd.DataFrame, est: pd.DataFrame, frames, first: Score,
                             distance: str = "euclidean") -> str:
    """What to say when the localizations ``est`` are those of a slice of the stack,
    numbered from 1, scored over the stack's frame numbers ``frames`` (``localize(model,
    stack[100:110])`` scored with ``frames="101-110"`` counted everything as missed, and
    ``frames="3-6"`` for ``stack[2:6]`` 0.8 % for 77 %), else "". ``first`` is the score of
    the selection at its first tolerance. Decided by the score: numbered as the slice's
    frames would be (shifted to start at the selection's first frame), do the
    localizations match far better? Only tried where every localization lies within the
    first as many frames as the selection holds (cheap to check; a table of the whole
    stack does not)."""
    if len(est) == 0:
        return ""
    ranges, _ = _selection_ranges(gt, est, frames)
    start = min(lo for lo, _ in ranges)
    n_selected = sum(hi - lo + 1 for lo, hi in ranges)
    if start <= 1 or int(est[FRAME].max()) > n_selected:
        return ""
    shifted = est.assign(**{FRAME: est[FRAME].to_numpy() + (start - 1)})
    some_gt, some_est, _ = select_frames(gt, shifted, frames)
    if len(some_est) == 0:
        return ""
    renumbered = score(some_gt, some_est, first.tol_nm, distance=distance, warn_small=False)
    if not renumbered.jaccard >= 2.0 * first.jaccard + 10.0:
        return ""
    return (f"numbered from frame {start}, not 1, the localizations score {renumbered.jaccard:.1f} % at "
            f"{first.tol_nm:g} nm instead of {first.jaccard:.1f} %: are they those of a slice of the stack, whose "
            "frames restart at 1? Localize the whole stack with a frame selection (frames= in Python, --frames on "
            "the command line) to keep the stack's frame numbers")


def outside_field_message(table: pd.DataFrame, field_nm: tuple[float, float]) -> str:
    """What to say when more than 1 % of a ground truth's positions lie outside a stack's
    field (``field_nm`` = (height, width) in nm, from 0), else "": coordinates in other
    units or of another stack score 0 % without a word."""
    if len(table) == 0:
        return ""
    x, y = table[X_NM].to_numpy(), table[Y_NM].to_numpy()
    outside = ~((x >= 0) & (x <= field_nm[1]) & (y >= 0) & (y <= field_nm[0]))
    if outside.sum() <= 0.01 * len(table):
        return ""
    return (f"{int(outside.sum())} of {len(table)} ground-truth molecules lie outside the stack's field of "
            f"{field_nm[1]:g} x {field_nm[0]:g} nm (x over y; x from {np.nanmin(x):.4g} to {np.nanmax(x):.4g} nm, y from "
            f"{np.nanmin(y):.4g} to {np.nanmax(y):.4g} nm): are the coordinates in nm, and of this stack?")


def no_common_frame_message(gt_frames, est_frames) -> str:
    """What to say when the frames of the ground truth and those of the localizations (or
    of their run) are not empty and none is common (matching is frame by frame:
    everything is then FP or FN), else ""."""
    gt_frames, est_frames = np.asarray(gt_frames), np.asarray(est_frames)
    if len(gt_frames) == 0 or len(est_frames) == 0 or np.isin(gt_frames, est_frames).any():
        return ""

    def span(frames):
        return frame_span(int(frames.min()), int(frames.max()))

    return (f"the ground truth ({span(gt_frames)}) and the localizations ({span(est_frames)}) share no frame: "
            "choose layers of the same stack")


@dataclass
class ScoringInputs:
    """The tables to score and what to say of them (:func:`scoring_inputs`): ``note``
    says how the frames were restricted (" (12 frames chosen)"), ``hint`` what may make
    the score misleading ("; ..."); both empty or ready to append to a status line."""

    gt: pd.DataFrame
    est: pd.DataFrame
    note: str = ""
    hint: str = ""


def scoring_inputs(gt: pd.DataFrame, est: pd.DataFrame, frames: str | None = None,
                   localized=None) -> ScoringInputs:
    """The ground truth and localizations to score, frame by frame: the 1-based frame
    selection ``frames`` of both ("all", "" or None: every frame), and, when the
    localizations come from a run that says which frames it ``localized`` (1-based), the
    ground truth of those frames only (a run over part of a stack scored the rest as
    missed). ValueError for a selection that cannot be read. The hint names what makes a
    score misleading: no frame in common, ground truth beyond the localizations' frames
    (for a table that does not say which were localized), chosen frames without a
    ground-truth molecule. (The Matching widget's rules; here, where scripts and tests
    reach them.)"""
    chosen = frames is not None and str(frames).strip().lower() not in ("", "all")
    run = localized is not None and len(localized) > 0
    n_chosen = 0
    if chosen:
        gt, est, n_chosen = select_frames(gt, est, frames)
        gt, est = gt.reset_index(drop=True), est.reset_index(drop=True)
        if run:
            localized = select_frames(gt, pd.DataFrame({FRAME: localized}), frames)[1][FRAME]
    note, hint = "", no_common_frame_message(gt[FRAME], localized if run else est[FRAME])
    hint = f"; {hint}" if hint else ""
    if run:
        gt = gt[gt[FRAME].isin(localized)].reset_index(drop=True)
        note = f" (ground truth restricted to the {counted(len(localized), 'frame')} localized"
        note += f" of the {counted(n_chosen, 'frame')} chosen)" if chosen else ")"
        if not hint:  # a ground truth of part of the run's frames: the others' localizations all FP (a review)
            uncovered = uncovered_frames_message(gt, est, restrict="frames {first}-{last} here", localized_known=True)
            hint = f"; {uncovered}" if uncovered else ""
    elif chosen:
        note = f" ({counted(n_chosen, 'frame')} chosen)"
    elif not hint:  # a table that does not say which frames were localized
        uncovered = uncovered_frames_message(gt, est, restrict="frames {first}-{last} here")
        hint = f"; {uncovered}" if uncovered else ""
    if not hint and len(est):  # chosen frames without a ground-truth molecule: all FP (a review)
        empty = empty_selection_message(gt, est, str(frames).strip() if chosen else None)
        hint = f"; {empty}" if empty else ""
    return ScoringInputs(gt, est, note, hint)


#: the share of positions left out at each end when extents are compared (stray points)
_EXTENT_QUANTILE = 0.02
#: extents wider (or narrower) by more than this factor along both x and y, or whose
#: centres lie more than this share of the larger extent apart, differ (see
#: :func:`extent_mismatch_message`)
EXTENT_RATIO = 1.25
EXTENT_SHIFT = 0.2
#: extents wider (or narrower) by more than this factor (their geometric mean over x and
#: y) are tried scaled back: 107 nm pixels read as 100 nm (6.5 um / 60x, rounded) scored
#: 3 % at 50 nm on a 64-pixel field without a word, and 1.5 % already lose most pairs
#: there (the extents of 1,000 molecules differ by about 1 % between x and y by chance)
SCALE_RATIO = 1.005
#: the scale is fitted (with a shift) on the pairs closer than this, on the frames of at
#: most :data:`SCALE_FIT_ROWS` ground-truth molecules (a fit on all of a million took 30 s)
SCALE_PAIRING_NM = 150.0
SCALE_FIT_ROWS = 20_000
#: fewer positions than this in either table: no extent is compared
EXTENT_MIN_POINTS = 50
#: below this Jaccard index (%) at the first tolerance, a poor score is checked for
#: localizations scaled against the ground truth (another pixel size): rescaled, do they
#: match? Below :data:`EXTENT_AREA_BELOW_JACCARD`, tables covering different areas are
#: named even when no rescaling helps (a ground truth of another stack scored about 1 %)
EXTENT_CHECK_BELOW_JACCARD = 20.0
EXTENT_AREA_BELOW_JACCARD = 5.0


def _extent(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    q = [_EXTENT_QUANTILE, 1.0 - _EXTENT_QUANTILE]
    lo, hi = np.nanquantile(table[[X_NM, Y_NM]].to_numpy(np.float64), q, axis=0)
    return lo, hi


def _scaled_back(est: pd.DataFrame, factor: float, shift_nm=(0.0, 0.0)) -> pd.DataFrame:
    return est.assign(**{X_NM: (est[X_NM] - shift_nm[0]) / factor, Y_NM: (est[Y_NM] - shift_nm[1]) / factor})


def _fit_scale(gt: pd.DataFrame, est: pd.DataFrame, factor: float) -> tuple[float, np.ndarray]:
    """The estimate's scale factor and shift (nm, x and y) against the ground truth,
    ``est = factor * gt + shift``: from the extents' ``factor``, fitted (least squares,
    three times) on the pairs closer than :data:`SCALE_PAIRING_NM` once scaled back (the
    extents alone are off by about 1 %, 64 nm at the far side of a 64-pixel field). The
    shift tells a scale from a shifted table, which a scale about the origin partly
    absorbs (a one-pixel shift was taken for a factor of 1.02)."""
    shift = np.zeros(2)
    gt_xy, est_xy = gt[[X_NM, Y_NM]].to_numpy(np.float64), est[[X_NM, Y_NM]].to_numpy(np.float64)
    for _ in range(3):
        pairs = match(gt, _scaled_back(est, factor, shift), SCALE_PAIRING_NM)
        if len(pairs.gt_index) < EXTENT_MIN_POINTS:
            break
        g, e = gt_xy[pairs.gt_index], est_xy[pairs.est_index]
        g_c, e_c = g - g.mean(axis=0), e - e.mean(axis=0)
        factor = float(np.sum(g_c * e_c) / np.sum(g_c * g_c))
        shift = e.mean(axis=0) - factor * g.mean(axis=0)
    return factor, shift


def _some_frames(gt: pd.DataFrame, est: pd.DataFrame, rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tables on evenly spaced frames of at most about ``rows`` ground-truth rows."""
    if len(gt) <= rows:
        return gt, est
    frames = np.unique(gt[FRAME].to_numpy())
    chosen = frames[:: int(np.ceil(len(gt) / rows))]
    return gt[gt[FRAME].isin(chosen)], est[est[FRAME].isin(chosen)]


def _pixel_size_factor(gt: pd.DataFrame, est: pd.DataFrame, factor: float, first: Score
                       ) -> tuple[float, Score] | None:
    """``(factor, score)`` when the estimate is the ground truth scaled by ``factor`` about
    the origin (as another pixel size makes it), with no shift of its own, and scores far
    better scaled back (``score``, at the first tolerance); else None. ``factor``: the
    extents' ratio, refined on some frames (:func:`_fit_scale`), which also judge the
    better score before all frames are scored again."""
    def far_better(rescaled: Score, before: Score) -> bool:
        return rescaled.jaccard >= 2.0 * before.jaccard + 10.0

    some_gt, some_est = _some_frames(gt, est, SCALE_FIT_ROWS)
    factor, shift_nm = _fit_scale(some_gt, some_est, factor)
    if abs(math.log(factor)) <= math.log(SCALE_RATIO) or np.hypot(*shift_nm) >= first.tol_nm / 2:
        return None
    sampled = len(some_gt) < len(gt)
    rescaled = score(some_gt, _scaled_back(some_est, factor), first.tol_nm, warn_small=False)
    if not far_better(rescaled, score(some_gt, some_est, first.tol_nm, warn_small=False) if sampled else first):
        return None
    rescaled = score(gt, _scaled_back(est, factor), first.tol_nm, warn_small=False) if sampled else rescaled
    return (factor, rescaled) if far_better(rescaled, first) else None


def extent_mismatch_message(gt: pd.DataFrame, est: pd.DataFrame, first: Score) -> str:
    """What to say of a poor score (``first``, the score at the first tolerance) whose
    tables cover clearly different areas (the middle 96 % of their x and of their y),
    else "": localizations made at another pixel size, or a ground truth of another
    stack, scored about 1 % without a word (a review: 0.6 % for a 160 nm stack analysed
    at 100 nm). Localizations wider or narrower than the ground truth by the same factor
    along x and y are named as scaled only when, scaled back (about the origin: pixel
    sizes scale coordinates from the field's corner), they match far better; other
    differences of extent only when the score is below :data:`EXTENT_AREA_BELOW_JACCARD`
    (false positives all over the field, or a thin structure, widen the localizations'
    extent along one axis or both, and they score poorly for reasons of their own)."""
    if (first.jaccard >= EXTENT_CHECK_BELOW_JACCARD or len(gt) < EXTENT_MIN_POINTS
            or len(est) < EXTENT_MIN_POINTS):
        return ""
    (g_lo, g_hi), (e_lo, e_hi) = _extent(gt), _extent(est)
    g_span, e_span = np.maximum(g_hi - g_lo, 1e-9), np.maximum(e_hi - e_lo, 1e-9)
    ratio = e_span / g_span  # (x, y): the localizations' extent over the ground truth's

    def area(lo, hi):
        return f"x {lo[0]:.0f} to {hi[0]:.0f} nm, y {lo[1]:.0f} to {hi[1]:.0f} nm"

    covers = f"the ground truth covers {area(g_lo, g_hi)} and the localizations {area(e_lo, e_hi)} (the middle 96 %)"
    factor = float(np.sqrt(ratio.prod()))
    scaled = abs(math.log(factor)) > math.log(SCALE_RATIO) and (
        max(ratio) / min(ratio) < EXTENT_RATIO)  # one factor for x and y, as a pixel size gives
    rescaled = _pixel_size_factor(gt, est, factor, first) if scaled else None
    if rescaled:
        factor, better = rescaled
        return (f"{covers}: scaled by 1/{factor:.4g}, the localizations would score Jaccard {better.jaccard:.1f} %: "
                f"were they made at another pixel size than the ground truth's coordinates (by a factor of "
                f"{factor:.4g})?")
    if first.jaccard >= EXTENT_AREA_BELOW_JACCARD:
        return ""
    differs = (ratio > EXTENT_RATIO).all() or (ratio < 1.0 / EXTENT_RATIO).all()
    shifted = (np.abs((g_lo + g_hi) - (e_lo + e_hi)) / 2 > EXTENT_SHIFT * max(g_span.max(), e_span.max())).any()
    if differs or shifted:
        return f"{covers}: are both of the same stack, in nm, at the same pixel size?"
    return ""


def warn_if_frames_uncovered(gt: pd.DataFrame, est: pd.DataFrame) -> None:
    """Warn when more than 1 % of the ground-truth molecules lie in frames before the
    first or after the last frame of the localizations: the localizations of part of a
    stack (``localize(frames="1-20")``) scored against the whole ground truth gave a low
    Jaccard index without a word. The table cannot tell frames not localized from frames
    localized where nothing was found (the dim first or last frames of a sparse stack),
    so the warning says both."""
    message = uncovered_frames_message(gt, est)
    if message:
        warnings.warn(message, FrameCoverageWarning, stacklevel=3)


def evaluate(
    gt: pd.DataFrame,
    est: pd.DataFrame,
    tolerances_nm=DEFAULT_TOLERANCES_NM,
    *,
    grid: tuple[float, tuple[int, int]] | None = None,
    n_frames: int | None = None,
    distance: str = "euclidean",
    frames=None,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[Score]:
    """:func:`score` at each tolerance (one number or several), on the 1-based frame
    selection ``frames`` of both tables when it is given (:func:`select_frames`; it also
    sets ``n_frames``): without it every ground-truth frame is scored, and localizations
    of part of a stack score as if the rest had been missed (a
    :class:`FrameCoverageWarning` says so, :func:`warn_if_frames_uncovered`). A poor
    score of tables covering different areas warns too (:func:`extent_mismatch_message`).
    ``progress(done, total, tol_nm)`` is called before each tolerance is scored (millions
    of rows take seconds each) and once at the end (``tol_nm`` then the last one's)."""
    check_tables(gt, est)
    if np.ndim(tolerances_nm) == 0:  # one tolerance given as a number
        tolerances_nm = [tolerances_nm]
    for tol in tolerances_nm:
        check_tolerance(tol)
        warn_if_small_tolerance(tol)
    all_gt, all_est = gt, est
    if frames is not None:
        gt, est, n_selected = select_frames(gt, est, frames)
        n_frames = n_selected if n_frames is None else n_frames
    else:
        warn_if_frames_uncovered(gt, est)
    empty = empty_selection_message(gt, est, frames)
    if empty:
        warnings.warn(empty, FrameCoverageWarning, stacklevel=2)
    scores = []
    for i, tol in enumerate(tolerances_nm):
        if progress is not None:
            progress(i, len(tolerances_nm), tol)
        scores.append(score(gt, est, tol, grid=grid, n_frames=n_frames, distance=distance, warn_small=False))
    if progress is not None and scores:
        progress(len(scores), len(scores), scores[-1].tol_nm)
    renumbered = renumbered_slice_message(all_gt, all_est, frames, scores[0], distance) if (
        frames is not None and scores) else ""
    if renumbered:
        warnings.warn(renumbered, FrameCoverageWarning, stacklevel=2)
    mismatch = extent_mismatch_message(gt, est, scores[0]) if scores else ""
    if mismatch:
        warnings.warn(f"Jaccard {scores[0].jaccard:.1f} % at {scores[0].tol_nm:g} nm: {mismatch}", stacklevel=2)
    return scores


def scores_table(scores: list[Score]) -> pd.DataFrame:
    """The scores (of :func:`evaluate`) as a table, one row per tolerance, a column per
    field of :class:`Score` (``tol_nm``, ``jaccard``, ``rmse_nm``, ...; percentages in %)."""
    return pd.DataFrame([s.to_dict() for s in scores], columns=[f.name for f in fields(Score)])


def format_scores(scores: list[Score]) -> str:
    """A plain-text table of scores, one row per tolerance; with a ``spec%`` column
    (3 decimals: on the fine grid it is 99.9-something) when the scores have one."""
    with_spec = any(s.specificity is not None for s in scores)
    head = f"{'tol [nm]':>8} {'TP':>7} {'FP':>7} {'FN':>7} {'Jaccard%':>8} {'sens%':>6} {'prec%':>6} {'RMSE nm':>7} {'eff%':>6}"
    lines = [head + (f" {'spec%':>7}" if with_spec else "")]
    for s in scores:
        line = (f"{s.tol_nm:8g} {s.tp:7d} {s.fp:7d} {s.fn:7d} {s.jaccard:8.2f} {s.sensitivity:6.2f} "
                f"{s.precision:6.2f} {s.rmse_nm:7.2f} {s.efficiency:6.2f}")
        if with_spec:
            line += f" {s.specificity:7.3f}" if s.specificity is not None else f" {'n/a':>7}"
        lines.append(line)
    return "\n".join(lines)
