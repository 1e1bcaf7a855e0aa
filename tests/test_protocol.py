"""The protocol written beside a localization CSV (core/protocol.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_deepcel0.core.acquisition import Acquisition
from napari_deepcel0.core.frames import parse_frame_selection
from napari_deepcel0.core.protocol import (frame_ranges_text, localization_protocol, protocol_path,
                                           write_protocol)


@pytest.mark.parametrize("numbers, text", [([1, 2, 3, 7], "1-3,7"), ([5], "5"), ([9, 2, 3, 2], "2-3,9"), ([], "")])
def test_frame_ranges_read_back_as_the_same_frames(numbers, text):
    assert frame_ranges_text(numbers) == text
    if numbers:
        assert (parse_frame_selection(text, 10) + 1).tolist() == sorted(set(numbers))


def test_the_protocol_goes_beside_the_csv_and_is_plain_json(tmp_path):
    assert protocol_path(tmp_path / "run.1.csv") == tmp_path / "run.1-protocol.json"
    acq = Acquisition(pixel_size_nm=160.0)
    protocol = localization_protocol("CEL0-IRL1", acq, {"lambda": np.float32(0.5), "bad": math.nan},
                                     np.array([3, 4, 5]), (32, 48), np.int64(12), stack=tmp_path / "s.tif",
                                     seconds=1.23456)
    path = write_protocol(protocol_path(tmp_path / "run.csv"), protocol)
    text = path.read_text()
    assert "NaN" not in text  # json.dumps would write a token other JSON readers refuse
    back = json.loads(text)
    assert back["settings"] == {"lambda": 0.5, "bad": None}
    assert back["input"] == {"stack": str((tmp_path / "s.tif").resolve()), "frames": "3-5", "n_frames": 3,
                             "frame_shape": [32, 48]}
    assert Acquisition(**back["acquisition"]) == acq
    assert back["results"] == {"localizations": 12, "seconds": 1.235}


def test_a_protocol_reads_back_and_what_is_not_one_is_refused_by_name(tmp_path):
    from napari_deepcel0.core.protocol import PROTOCOL_VERSION, read_protocol

    csv = tmp_path / "locs.csv"
    assert read_protocol(csv) is None  # none beside it
    written = localization_protocol("DeepCEL0", Acquisition(), {"threshold": 8.5}, [1, 2], (8, 8), 3)
    write_protocol(protocol_path(csv), written)
    assert read_protocol(csv) == json.loads(json.dumps(written))
    for text, said in [("{not json", "not JSON"), ('{"protocol": "ThunderSTORM"}', "not a napari-deepcel0"),
                       (json.dumps({**written, "protocol_version": PROTOCOL_VERSION + 1}), "protocol version"),
                       # a NaN read, then failed the next save of the table (our writer refuses it)
                       (json.dumps({**written, "seconds": float("nan")}), r"not JSON \(NaN, which is no JSON number"),
                       (json.dumps(written).replace('"pixel_size_nm": 100.0', '"pixel_size_nm": 1e999'),
                        "1e999, a number beyond"),
                       ("[" * 100_000 + "]" * 100_000, "not JSON")]:  # (RecursionError: the CSV did not open)
        protocol_path(csv).write_text(text)
        with pytest.raises(ValueError, match=said) as info:
            read_protocol(csv)
        assert "locs-protocol.json" in str(info.value)


def test_a_stale_protocol_of_ours_is_removed_and_another_programs_file_stays(tmp_path):
    from napari_deepcel0.core.protocol import remove_stale_protocol

    csv = tmp_path / "locs.csv"
    assert remove_stale_protocol(csv) is False  # none there
    write_protocol(protocol_path(csv), localization_protocol("DeepCEL0", Acquisition(), {}, [1], (8, 8), 0))
    assert remove_stale_protocol(csv) is True and not protocol_path(csv).exists()
    protocol_path(csv).write_text('{"protocol": "someone else\'s"}')
    assert remove_stale_protocol(csv) is False and protocol_path(csv).exists()


# ---- found missing by mutation testing (a third round, 2026-11-29): each fails on the bug it names
def test_a_run_that_stopped_early_names_the_frames_it_was_asked_for():
    """P05 (``frames_asked`` written when it equals the frames done, not when it differs):
    a cancelled run over frames 1-4 that did 1-2 read as a run asked for 1-2 (only the
    napari tests covered it)."""
    stopped = localization_protocol("DeepCEL0", Acquisition(), {}, [1, 2], (8, 8), 5, frames_asked=[1, 2, 3, 4],
                                    status="cancelled")
    assert stopped["input"]["frames"] == "1-2" and stopped["input"]["frames_asked"] == "1-4"
    assert stopped["status"] == "cancelled"
    finished = localization_protocol("DeepCEL0", Acquisition(), {}, [1, 2], (8, 8), 5, frames_asked=[2, 1])
    assert "frames_asked" not in finished["input"]


def test_a_table_written_without_a_protocol_takes_the_old_one_away(tmp_path):
    """P07 (write_localizations without its ``remove_stale_protocol``): a CSV replaced by a
    table with no protocol kept the protocol of the table it replaced beside it, which
    then described settings and counts of another run."""
    from conftest import loc_table
    from napari_deepcel0.core.protocol import read_protocol, write_localizations

    csv = tmp_path / "locs.csv"
    old = localization_protocol("DeepCEL0", Acquisition(), {"threshold": 8.5}, [1], (8, 8), 1)
    write_localizations(csv, loc_table([1], [10.0], [20.0]), old)
    assert read_protocol(csv)["results"]["localizations"] == 1
    assert write_localizations(csv, loc_table([1, 2], [10.0, 30.0], [20.0, 40.0]), None) == [csv]
    assert read_protocol(csv) is None and len(csv.read_text().splitlines()) == 3


def test_a_protocol_version_of_true_is_refused(tmp_path):
    """P10 (read_protocol without its bool check): ``"protocol_version": true`` was read as
    version 1 (True == 1 in Python), a file no version of ours wrote."""
    from napari_deepcel0.core.protocol import read_protocol

    csv = tmp_path / "locs.csv"
    written = localization_protocol("DeepCEL0", Acquisition(), {}, [1], (8, 8), 0)
    protocol_path(csv).write_text(json.dumps({**written, "protocol_version": True}))
    with pytest.raises(ValueError, match="protocol version True"):
        read_protocol(csv)


def test_a_networks_protocol_gives_the_models_upsampling_and_what_differs():
    """P11 (network_protocol with the acquisition asked for): a run of a model of L = 4
    with upsampling 8 asked was recorded at L = 8, which the network never used (napari's
    Localize panel writes its protocols so; only its tests covered it)."""
    from napari_deepcel0.core.model_io import bundled_model_path, read_model_info
    from napari_deepcel0.core.protocol import network_protocol

    info = read_model_info(bundled_model_path())
    asked = info.acquisition.replace(upsampling=8)
    protocol = network_protocol(info, None, asked, {"threshold": 8.5})([1, 2], (16, 16), 3)
    assert protocol["acquisition"]["upsampling"] == info.acquisition.upsampling == 4
    assert protocol["settings"]["acquisition_differs_from_model"] and protocol["model"]["bundled"] is True
    assert protocol["input"]["frames"] == "1-2" and protocol["results"]["localizations"] == 3
