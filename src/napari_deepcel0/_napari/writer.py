"""napari writer: a Points layer as a ThunderSTORM CSV (quoted header, 1-based frames, nm)."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..core.protocol import write_localizations
from .layers import OUTPUT, PROTOCOL, growing_run, table_from_points


def write_points(path: str, data, attributes: dict) -> list[str]:
    """Write Points layer data as a ThunderSTORM CSV.

    Coordinates are mapped to world coordinates (nm) with the layer's scale and
    translate; 3D points are ``(frame - 1, y, x)``, 2D points go to frame 1; numeric
    features become extra columns, but for those a ThunderSTORM CSV would not give back as
    they are, which are left out with a warning (see :func:`.layers.table_from_points`).
    A layer that a run is filling is written with every localization so far, not only the
    frame it shows (see :class:`.layers.GrowingPoints`). The layer of a run that has ended
    carries its protocol (``metadata[PROTOCOL]``), which goes beside the CSV
    (``locs.csv`` -> ``locs-protocol.json``; both or neither), with the count written;
    without one, a protocol of ours left there by an earlier save is removed.

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
    protocol = (attributes.get("metadata") or {}).get(PROTOCOL) if run is None else None
    if isinstance(protocol, dict):
        results = protocol.get("results") if isinstance(protocol.get("results"), dict) else {}
        protocol = {**protocol, "results": {**results, "localizations_saved": len(table)}}
    else:
        protocol = None
    written = [str(p) for p in write_localizations(path, table, protocol)]
    left_out = table.attrs.get("left_out")
    if left_out:  # the file is written: a feature of another plugin must not stop the localizations' export
        warnings.warn(f"{attributes.get('name', 'the layer')}: the feature(s) {', '.join(map(repr, left_out))} were "
                      f"left out of {Path(path).name}, since a ThunderSTORM CSV would not give them back as they are ("
                      + "; ".join(left_out.values()) + ")")
    return written
