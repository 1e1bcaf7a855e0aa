"""napari writer: a Points layer as a ThunderSTORM CSV (quoted header, 1-based frames, nm)."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..core.acquisition import is_whole_number
from ..core.protocol import frame_ranges_text, write_localizations
from .layers import HAND_EDITS, OUTPUT, PROTOCOL, growing_run, table_from_points


def hand_edits_so_far(saved, since_opened) -> dict:
    """The hand edits of a table: those its protocol counted when it was saved (a file
    edited, saved and opened again) plus those since (``metadata[HAND_EDITS]``); {} for none."""
    total = {}
    for counts in (saved, since_opened):
        if isinstance(counts, dict):
            for kind in ("added", "removed", "moved"):
                value = counts.get(kind)
                if is_whole_number(value) and value > 0:
                    total[kind] = total.get(kind, 0) + value
    return total


def write_points(path: str, data, attributes: dict) -> list[str]:
    """Write Points layer data as a ThunderSTORM CSV.

    Coordinates are mapped to world coordinates (nm) with the layer's scale and
    translate; 3D points are ``(frame - 1, y, x)``, 2D points go to frame 1; numeric
    features become extra columns, but for those a ThunderSTORM CSV would not give back as
    they are, which are left out with a warning (see :func:`.layers.table_from_points`).
    A layer that a run is filling is written with every localization so far, not only the
    frame it shows (see :class:`.layers.GrowingPoints`). The layer of a run that has ended
    carries its protocol (``metadata[PROTOCOL]``), which goes beside the CSV
    (``locs.csv`` -> ``locs-protocol.json``; both or neither), with the count written
    and the points added, removed and moved by hand (``results.hand_edits``, see
    :func:`.layers.track_hand_edits`); without one, a protocol of ours left there by an
    earlier save is removed.

    Returns
    -------
    list of str
        The paths written: the CSV, and its protocol when the layer has one.
    """
    if (attributes.get("metadata") or {}).get(OUTPUT) == "match":  # written, it read back as localizations
        raise ValueError(f"{attributes.get('name', 'this layer')} holds the Matching widget's labels (TP and FP "
                         "localizations, FN ground-truth positions), not localizations: save the localization "
                         "layer, or the Matching table (Save table ...)")
    run = growing_run(metadata=attributes.get("metadata"))
    table = run.table() if run is not None else table_from_points(
        data, attributes.get("features"), attributes.get("scale"), attributes.get("translate"))
    metadata = attributes.get("metadata") or {}
    protocol = metadata.get(PROTOCOL) if run is None else None
    if isinstance(protocol, dict):
        results = dict(protocol["results"]) if isinstance(protocol.get("results"), dict) else {}
        results["localizations_saved"] = len(table)
        edits = hand_edits_so_far(results.get("hand_edits"), metadata.get(HAND_EDITS))
        if edits:
            results["hand_edits"] = edits
        protocol = {**protocol, "results": results}
    else:
        protocol = None
    written = [str(p) for p in write_localizations(path, table, protocol)]
    if run is not None:  # (Export said so; File > Save went without a word: a review)
        warnings.warn(f"{attributes.get('name', 'the layer')}: its run was still going, so only the frames done so far "
                      f"({frame_ranges_text(run.frames_done()) or 'none'}) are in {Path(path).name}, without a "
                      "protocol: save again when the run has finished")
    left_out = table.attrs.get("left_out")
    if left_out:  # the file is written: a feature of another plugin must not stop the localizations' export
        warnings.warn(f"{attributes.get('name', 'the layer')}: the feature(s) {', '.join(map(repr, left_out))} were "
                      f"left out of {Path(path).name}, since a ThunderSTORM CSV would not give them back as they are ("
                      + "; ".join(left_out.values()) + ")")
    return written
