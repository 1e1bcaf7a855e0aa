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
