import contextlib
import gc
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import loc_table
from napari_deepcel0.cli import build_parser, main
from napari_deepcel0.core.acquisition import Acquisition
from napari_deepcel0.core.io import FrameStack, read_localizations, read_stack, write_thunderstorm_csv
from napari_deepcel0.core.model_io import bundled_model_path
from napari_deepcel0.core.predict import DeepLocalizer, localize

SUBCOMMANDS = ["simulate", "evaluate", "train", "localize", "demo", "cel0"]


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: deepcel0 " + cmd in capsys.readouterr().out


def test_train_help_states_the_training_defaults():
    """The help wrote its defaults by hand (the parser must not import torch to read them):
    they must be the configurations' own."""
    from napari_deepcel0.core.training import TrainingConfig
    from napari_deepcel0.core.training_data import TrainingDataConfig

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    helps = {a.dest: a.help for a in train._actions}
    data, config = TrainingDataConfig(), TrainingConfig()

    def pair(values):
        return " ".join(f"{v:g}" for v in values)

    assert f"(default {pair(data.photons)})" in helps["photons"]
    assert f"(default {pair(data.background_photons)})" in helps["background"]
    assert f"(default {data.snr_fraction:g})" in helps["snr_fraction"]
    assert f"(default {pair(data.snr_db)})" in helps["snr"]
    assert f"{config.lr_schedule} (the paper's ReduceLROnPlateau; default)" in helps["lr_schedule"]
    assert f"(default {data.fwhm_jitter:g})" in helps["fwhm_jitter"]
    assert f"(default {data.n_patches})" in helps["patches"] and f"(default {config.epochs})" in helps["epochs"]
    from napari_deepcel0.core.training import TRAINING_LAM_AT_L4, default_training_lam

    assert config.lam is None and f"(default {TRAINING_LAM_AT_L4:g} (L / 4)^2: {default_training_lam(4):g} at L = 4, " \
        f"{default_training_lam(2):g} at L = 2;" in helps["lam"]
    for dest, value in (("batch_size", config.batch_size), ("lr", config.lr),
                        ("val_fraction", config.val_fraction), ("sim_frames", data.n_frames),
                        ("density", data.density_per_um2), ("structure_fraction", data.structure_fraction),
                        ("sparse_fraction", data.sparse_fraction), ("seed", config.seed),
                        ("min_lr", config.min_lr)):
        stated = re.search(r"\(default ([^),]+)", helps[dest])
        assert stated and float(stated.group(1)) == value, dest
    assert f"(default {pair(data.sparse_density)})" in helps["sparse_density"]
    assert f"CEL0 a_i from S_L K ({config.column_norms}, default)" in helps["column_norms"]


def test_the_help_names_debug_and_the_read_outs_and_evaluate_no_unused_fwhm():
    parser = build_parser()
    assert "--debug" in parser.format_help()
    localize = {a.dest: a.help for a in parser._subparsers._group_actions[0].choices["localize"]._actions}
    assert "peaks (local maxima" in localize["method"] and "components (connected" in localize["method"]
    assert "; default)" in localize["method"]  # it said only "map -> molecules"
    assert "--fwhm" not in main_help("evaluate") and "--fwhm" in main_help("localize")  # it changed no score


def test_a_bad_seed_names_its_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(tmp_path / "s"), "--seed", "-1"])
    assert "argument --seed: must be a whole number from 0 to 4294967295, got -1" in capsys.readouterr().err


def test_version(capsys):
    import napari_deepcel0

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"napari-deepcel0 {napari_deepcel0.__version__}"


def test_help_and_evaluate_start_without_torch():
    """The parser and what evaluate needs do not import torch (2.6 s of every command's
    start on a 2-core machine, --help included, when cli_cel0 imported core.cel0)."""
    code = ("import sys; from napari_deepcel0.cli import build_parser; build_parser(); "
            "import napari_deepcel0.core.frames, napari_deepcel0.core.metrics, napari_deepcel0.core.io; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_core_and_the_command_line_import_no_napari_or_qt():
    """The core runs in scripts and on clusters without a display: no module of it, nor
    the command line, nor the scripts' api module, may import napari, Qt or magicgui."""
    import pkgutil

    import napari_deepcel0.core

    modules = [f"napari_deepcel0.core.{m.name}" for m in pkgutil.iter_modules(napari_deepcel0.core.__path__)]
    modules += ["napari_deepcel0.cli", "napari_deepcel0.api"]
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', "
            "'PySide6', 'magicgui', 'superqt', 'vispy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert len(modules) > 17 and out.strip() == "[]"


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "napari_deepcel0", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "simulate" in out.stdout


@pytest.fixture
def simulated(tmp_path):
    assert main(["simulate", "--out", str(tmp_path / "sim"), "--frames", "6", "--size", "24", "--seed", "2"]) == 0
    return tmp_path / "sim"


def test_simulate_writes_stack_and_ground_truth(simulated):
    with read_stack(simulated / "frames.tif") as stack:
        assert stack.shape == (6, 24, 24) and stack.dtype == np.uint16 and stack.pixel_size_nm == pytest.approx(100)
        gt = read_localizations(simulated / "ground_truth.csv")
        assert gt["frame"].between(1, 6).all() and len(gt) > 6 * 20
        assert gt["x [nm]"].between(0, 2400).all()


def test_simulate_says_in_its_own_terms_when_its_density_places_nothing(tmp_path, capsys):
    """The library's NoEmittersWarning named Python's density_per_um2 on the command line."""
    assert main(["simulate", "--out", str(tmp_path / "s"), "--frames", "2", "--size", "16", "--density", "0.01"]) == 0
    out, err = capsys.readouterr()
    # what was written goes to stdout, notes to stderr (N13 of the mutation testing of 2026-11-29)
    assert [line.split(" (")[0] for line in out.splitlines()] == [
        f"wrote {tmp_path / 's' / 'frames.tif'}", f"wrote {tmp_path / 's' / 'ground_truth.csv'}"]
    assert "note: --density 0.01 per um^2 expects 0.051 molecules in all on 2 frame(s) of 16 x 16 pixels" in err
    assert "density_per_um2" not in err and "warning" not in err


def test_evaluate_self_and_jittered(simulated, tmp_path, capsys):
    gt_path = simulated / "ground_truth.csv"
    capsys.readouterr()
    assert main(["evaluate", str(gt_path), "--gt", str(gt_path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["tol_nm"] for r in rows] == [50, 100, 150, 250]
    assert all(r["jaccard"] == 100.0 and r["rmse_nm"] == 0.0 for r in rows)
    assert set(rows[0]) >= {"tol_nm", "tp", "fp", "fn", "jaccard", "sensitivity", "precision", "rmse_nm", "efficiency"}
    assert "specificity" not in rows[0]  # not computed without --frame-shape: left out, not null (N01, 2026-11-29)
    gt = read_localizations(gt_path)
    rng = np.random.default_rng(0)
    jit = gt.copy()
    jit["x [nm]"] += rng.normal(0, 20, len(gt))
    jit["y [nm]"] += rng.normal(0, 20, len(gt))
    write_thunderstorm_csv(tmp_path / "jit.csv", jit)
    assert main(["evaluate", str(tmp_path / "jit.csv"), "--gt", str(gt_path), "--tol", "50", "250", "--json"]) == 0
    r50, r250 = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert r250["jaccard"] == 100.0 and r250["rmse_nm"] == pytest.approx(20 * np.sqrt(2), rel=0.1)
    assert 50 < r50["jaccard"] < 100
    assert main(["evaluate", str(tmp_path / "jit.csv"), "--gt", str(gt_path)]) == 0
    assert "Jaccard%" in capsys.readouterr().out


def test_evaluate_shows_its_progress_on_large_tables_only(simulated, capsys, monkeypatch):
    """2 million against 2 million took about a minute without a word (a review)."""
    from napari_deepcel0 import cli

    gt_path = str(simulated / "ground_truth.csv")
    capsys.readouterr()
    assert main(["evaluate", gt_path, "--gt", gt_path, "--tol", "50", "100"]) == 0
    assert "scoring" not in capsys.readouterr().err
    monkeypatch.setattr(cli, "EVALUATE_PROGRESS_ROWS", 10)
    assert main(["evaluate", gt_path, "--gt", gt_path, "--tol", "50", "100"]) == 0
    captured = capsys.readouterr()
    n = f"{len(read_localizations(gt_path)):,}"
    lines = [line for line in captured.err.splitlines() if line.startswith("scoring")]
    assert [line.split("] ")[1] for line in lines] == ["0/2 at 50 nm", "1/2 at 100 nm", "2/2 done"]
    assert lines[0].startswith(f"scoring {n} localizations against {n} molecules [")
    assert "Jaccard%" in captured.out and "scoring" not in captured.out


@pytest.mark.parametrize("command", [["localize"], ["cel0", "--lam", "0.01"]])
def test_a_frame_selection_typo_is_said_first(command, tmp_path, capsys):
    """``--frames 1:10`` was refused after the model's and the data's lines (docs review)."""
    from napari_deepcel0.core.io import write_tiff

    write_tiff(tmp_path / "s.tif", np.full((3, 16, 16), 100, np.uint16), pixel_size_nm=100.0)
    assert main([command[0], str(tmp_path / "s.tif"), "--out", str(tmp_path / "l.csv"), "--frames", "1:10",
                 *command[1:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deepcel0 {command[0]}: error: cannot read frame selection '1:10'; use e.g. '1-20' or "
                   "'1,5,10-12'"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


@pytest.mark.parametrize("command", [["evaluate", "gt.csv", "--gt", "gt.csv", "--tol"],
                                     ["localize", "s.tif", "--out", "l.csv", "--gt", "gt.csv", "--tol"],
                                     ["cel0", "s.tif", "--sweep", "gt.csv", "--match-tol"]])
def test_a_tolerance_under_one_nm_is_refused_as_a_unit_mistake(command, capsys):
    """``--tol 0.05`` (50 nm typed in um) scored 0 % without a word (docs review)."""
    with pytest.raises(SystemExit):
        main(command + ["0.05"])
    assert "tolerances are distances in nm, at least 1, got 0.05 (in um? 0.05 um is 50 nm)" in capsys.readouterr().err
    assert build_parser().parse_args(command + ["1"]) is not None  # 1 nm is a distance
    if command[-1] == "--tol":  # (several numbers: the argparse trap of a file after them)
        with pytest.raises(SystemExit):
            main(command + ["50", "locs.csv"])
        assert "must be a distance in nm, got 'locs.csv' (a file? name it before the tolerances" in \
            capsys.readouterr().err
    with pytest.raises(SystemExit):  # a word that is no file is not called one, nor after an option of one value
        main(command[:-1] + [command[-1], "50nm"])
    err = capsys.readouterr().err
    assert "must be a distance in nm, got '50nm'" in err and "a file?" not in err


def test_evaluate_scores_a_frame_selection_and_says_when_frames_differ(simulated, tmp_path, capsys):
    gt_path = simulated / "ground_truth.csv"
    gt = read_localizations(gt_path)
    write_thunderstorm_csv(tmp_path / "first2.csv", gt[gt["frame"] <= 2])  # as after localize --frames 1-2
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "first2.csv"), "--gt", str(gt_path), "--tol", "50", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["jaccard"] < 100
    assert "warning: the ground truth runs over frames 1-6, the localizations over frames 1-2" in out.err
    assert "--frames 1-2 on the command line" in out.err
    assert main(["evaluate", str(tmp_path / "first2.csv"), "--gt", str(gt_path), "--tol", "50", "--json",
                 "--frames", "1-2"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["jaccard"] == 100.0 and out.err == ""
    # a selection past both files' last frame is valid, and specificity counts the
    # fine pixels of the selected frames (it counted up to the last frame present)
    shifted = gt[gt["frame"] <= 2].assign(**{"x [nm]": lambda t: t["x [nm]"] + 80.0})  # all FP at 50 nm
    write_thunderstorm_csv(tmp_path / "shifted.csv", shifted)
    specificity = {}
    for selection in ("1-2", "1-10"):
        assert main(["evaluate", str(tmp_path / "shifted.csv"), "--gt", str(tmp_path / "first2.csv"), "--tol", "50",
                     "--json", "--frames", selection, "--frame-shape", "24", "24"]) == 0
        specificity[selection] = json.loads(capsys.readouterr().out)["specificity"]
    from napari_deepcel0.core.metrics import score

    truth = gt[gt["frame"] <= 2]
    for selection, n in (("1-2", 2), ("1-10", 10)):
        expected = score(truth, shifted, 50.0, grid=(25.0, (96, 96)), n_frames=n).specificity
        assert specificity[selection] == pytest.approx(expected, abs=1e-3)
    assert specificity["1-10"] > specificity["1-2"]
    # the printed table shows it too (the help promises it; it was in --json only)
    assert main(["evaluate", str(tmp_path / "shifted.csv"), "--gt", str(tmp_path / "first2.csv"), "--tol", "50",
                 "--frames", "1-10", "--frame-shape", "24", "24"]) == 0
    head, row = capsys.readouterr().out.strip().splitlines()[-2:]
    assert head.split()[-1] == "spec%" and float(row.split()[-1]) == pytest.approx(specificity["1-10"], abs=1e-3)


def test_gpu_out_of_memory_says_what_to_do(monkeypatch, capsys):
    import torch

    import napari_deepcel0.cli as cli

    def out_of_memory(args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cli, "cmd_localize", out_of_memory)
    assert main(["localize", "s.tif", "--out", "x.csv"]) == 2
    assert "out of GPU memory; lower --batch-size or use --device cpu" in capsys.readouterr().err


def test_debug_prints_the_traceback_of_an_error(simulated, capsys, monkeypatch):
    """Every ValueError was one line with no traceback, so that a bug (here numpy's
    broadcast error) looked like an input error and said nowhere where it arose (review)."""
    from napari_deepcel0.core import metrics

    def buggy_evaluate(*args, **kwargs):
        return np.ones(3) + np.ones(4)

    monkeypatch.setattr(metrics, "evaluate", buggy_evaluate)
    gt = str(simulated / "ground_truth.csv")
    assert main(["evaluate", gt, "--gt", gt]) == 2
    err = capsys.readouterr().err
    assert err == "deepcel0 evaluate: error: operands could not be broadcast together with shapes (3,) (4,) \n"
    assert main(["--debug", "evaluate", gt, "--gt", gt]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in buggy_evaluate" in err
    assert err.endswith("deepcel0 evaluate: error: operands could not be broadcast together with shapes (3,) (4,) \n")
    assert main(["evaluate", gt, "--gt", gt, "--debug"]) == 2  # after the command too (it was refused)
    assert capsys.readouterr().err.startswith("Traceback (most recent call last):")


def test_localize_writes_csv_and_render(simulated, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "locs.csv"
    png = tmp_path / "render.png"
    code = main(["localize", str(simulated / "frames.tif"), "--out", str(out), "--model", str(tiny_model_path),
                 "--frames", "1-3", "--device", "cpu", "--render", str(png), "--threshold", "0",
                 "--gt", str(simulated / "ground_truth.csv")])
    assert code == 0
    t = read_localizations(out)
    assert t["frame"].between(1, 3).all()
    assert png.stat().st_size > 0
    assert "Jaccard%" in capsys.readouterr().out
    tif = tmp_path / "render.tif"
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(out), "--model", str(tiny_model_path),
                 "--frames", "1", "--device", "cpu", "--render", str(tif), "--render-pixel", "20"]) == 0
    with FrameStack(tif) as render:  # marked as a render: napari will not take 20 nm for the camera pixel
        assert render.output == "render" and render.pixel_size_nm == pytest.approx(20.0)


def test_whole_frame_scaling_is_the_old_scaling_of_large_frames(tmp_path):
    """By default a large frame is scaled region by region, so that one bright molecule does
    not hide faint ones far from it; --whole-frame-scaling keeps the old scaling; the
    protocol says which."""
    from napari_deepcel0.core.acquisition import ISBI2013
    from napari_deepcel0.core.simulate import CameraNoise, render_frames
    from napari_deepcel0.core.outputs import write_tiff

    rng = np.random.default_rng(6)
    faint = pd.DataFrame({"frame": np.repeat([1, 2], 10), "x [nm]": rng.uniform(8000, 15000, 20),
                          "y [nm]": rng.uniform(8000, 15000, 20), "intensity [photon]": 400.0})
    bright = pd.DataFrame({"frame": [1, 2], "x [nm]": 1500.0, "y [nm]": 1500.0, "intensity [photon]": 15000.0})
    frames = render_frames(pd.concat([faint, bright]), ISBI2013, (160, 160), 2, CameraNoise((10.0, 10.0)), rng)
    stack = write_tiff(tmp_path / "large.tif", (frames + 100).astype(np.uint16), pixel_size_nm=100.0)
    found = {}
    for flags in ([], ["--whole-frame-scaling"]):
        out = tmp_path / f"locs{len(flags)}.csv"
        assert main(["localize", str(stack), "--out", str(out), "--device", "cpu", "--keep-outlier-pixels",
                     *flags]) == 0
        protocol = json.loads(out.with_name(out.stem + "-protocol.json").read_text())
        found[protocol["settings"]["scaling_tile_px"]] = len(read_localizations(out))
    assert set(found) == {64, None} and found[64] >= 18 and found[64] > found[None] + 10


def test_range_floor_keeps_frames_of_noise_alone_from_false_molecules(tmp_path):
    """Frames without molecules (the end of a stack, dark frames) gave ~1.5 false molecules
    each; --range-floor 0 scales each frame by its own range however faint, as before."""
    from napari_deepcel0.core.acquisition import ISBI2013
    from napari_deepcel0.core.simulate import CameraNoise, render_frames
    from napari_deepcel0.core.outputs import write_tiff

    nothing = pd.DataFrame({"frame": [], "x [nm]": [], "y [nm]": [], "intensity [photon]": []})
    frames = render_frames(nothing, ISBI2013, (64, 64), 16, CameraNoise((10.0, 10.0)), np.random.default_rng(9))
    stack = write_tiff(tmp_path / "dark.tif", (frames + 100).astype(np.uint16), pixel_size_nm=100.0)
    found = {}
    for flags in ([], ["--range-floor", "0"]):
        out = tmp_path / f"locs{len(flags)}.csv"
        assert main(["localize", str(stack), "--out", str(out), "--device", "cpu", *flags]) == 0
        protocol = json.loads(out.with_name(out.stem + "-protocol.json").read_text())
        found[protocol["settings"]["range_floor_sd"]] = len(read_localizations(out))
    assert set(found) == {18.0, None} and found[18.0] <= 12 < 18 <= found[None]  # measured: 6 and 27
    with pytest.raises(SystemExit):
        main(["localize", str(stack), "--out", str(tmp_path / "x.csv"), "--range-floor", "-1"])
    assert not (tmp_path / "x.csv").exists()


def test_localize_and_cel0_write_the_protocol_of_their_run_beside_the_csv(simulated, tiny_model_path, tmp_path,
                                                                        capsys):
    """A CSV says nothing of the model, acquisition or threshold that made it: each run
    writes ``<name>-protocol.json`` (ThunderSTORM writes a protocol beside its results too)."""
    import hashlib
    import json

    out = tmp_path / "locs.csv"
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(out), "--model", str(tiny_model_path),
                 "--frames", "1-2,4", "--device", "cpu", "--threshold", "0", "--fwhm", "250",
                 "--gt", str(simulated / "ground_truth.csv"), "--tol", "50", "100"]) == 0
    protocol = json.loads((tmp_path / "locs-protocol.json").read_text())
    printed = capsys.readouterr().out
    assert protocol["results"]["ground_truth"] == str((simulated / "ground_truth.csv").resolve())
    assert [s["tol_nm"] for s in protocol["results"]["scores"]] == [50.0, 100.0]
    assert f"{protocol['results']['scores'][0]['jaccard']:.2f}" in printed  # the scores printed
    assert protocol["protocol_version"] == 1 and protocol["method"] == "DeepCEL0"
    assert protocol["command"].startswith("deepcel0 localize ") and "--frames 1-2,4" in protocol["command"]
    assert protocol["input"] == {"stack": str((simulated / "frames.tif").resolve()), "frames": "1-2,4",
                                 "n_frames": 3, "frame_shape": [24, 24]}
    assert protocol["acquisition"]["fwhm_nm"] == 250.0 and protocol["acquisition"]["pixel_size_nm"] == 100.0
    assert protocol["status"] == "finished" and protocol["settings"]["acquisition_differs_from_model"] == []
    assert protocol["model"]["sha256"] == hashlib.sha256(tiny_model_path.read_bytes()).hexdigest()
    assert protocol["model"]["bundled"] is False and protocol["model"]["file"] == str(tiny_model_path.resolve())
    assert protocol["settings"]["threshold"] == 0 and protocol["settings"]["threshold_is_default"] is False
    assert protocol["settings"]["scaling_tile_px"] == 64 and protocol["settings"]["range_floor_sd"] == 18.0
    assert protocol["results"]["localizations"] == len(read_localizations(out)) > 0
    assert "its protocol locs-protocol.json" in printed

    assert main(["cel0", str(simulated / "frames.tif"), "--out", str(tmp_path / "c.csv"), "--frames", "2",
                 "--lam", "0.01", "--max-outer", "5", "--max-inner", "20"]) == 0
    protocol = json.loads((tmp_path / "c-protocol.json").read_text())
    assert protocol["method"] == "CEL0-IRL1" and "model" not in protocol
    assert protocol["input"]["frames"] == "2" and protocol["settings"]["lambda"] == 0.01
    assert protocol["settings"]["max_outer"] == 5 and protocol["settings"]["background"] == "auto"
    assert protocol["results"]["localizations"] == len(read_localizations(tmp_path / "c.csv"))
    assert protocol["settings"]["threshold_is_default"] is True
    # DeepCEL0 works at its model's L, whatever --upsampling asks: the protocol gives the L used
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l8.csv"), "--model",
                 str(tiny_model_path), "--frames", "1", "--device", "cpu", "--upsampling", "8"]) == 0
    protocol = json.loads((tmp_path / "l8-protocol.json").read_text())
    assert protocol["acquisition"]["upsampling"] == 4 and protocol["settings"]["acquisition_differs_from_model"]


def test_a_protocol_that_cannot_be_written_is_refused_before_the_run_and_no_csv_is_left(simulated, tmp_path, capsys):
    """The protocol's place is checked with the CSV's before any work, and the two are
    written together: a folder where the protocol goes, or the protocol's name being the
    ground truth's, leaves no CSV without its protocol and no input replaced."""
    (tmp_path / "locs-protocol.json").mkdir()
    base = ["localize", str(simulated / "frames.tif"), "--frames", "1", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "locs.csv")]) == 2
    assert "locs-protocol.json" in capsys.readouterr().err and not (tmp_path / "locs.csv").exists()
    gt = tmp_path / "gt-protocol.json"
    gt.write_bytes((simulated / "ground_truth.csv").read_bytes())
    before = gt.read_bytes()
    assert main([*base, "--out", str(tmp_path / "gt.csv"), "--gt", str(gt)]) == 2
    assert "where the protocol of --out goes" in capsys.readouterr().err
    assert gt.read_bytes() == before and not (tmp_path / "gt.csv").exists()


def test_a_png_render_is_blurred_by_20_nm_and_a_tiff_holds_counts_unless_asked(simulated, tiny_model_path, tmp_path,
                                                                              capsys, monkeypatch):
    """The PNG blurred by one 10 nm render pixel showed the 25 nm fine grid, which the
    positions favour, as beads along the filaments (review): 20 nm hides it. A TIFF
    holds counts of localizations unless --render-blur says otherwise."""
    from napari_deepcel0.core import render
    from napari_deepcel0.core.render import render_histogram

    saved = {}
    monkeypatch.setattr(render, "save_render_png", lambda path, image: saved.update({path.name: image}))
    base = ["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"), "--model",
            str(tiny_model_path), "--frames", "1", "--device", "cpu", "--threshold", "0"]
    images = {}
    for name, extra in (("default.png", []), ("sharp.png", ["--render-blur", "0"]), ("counts.tif", []),
                        ("blurred.tif", ["--render-blur", "15"])):
        assert main(base + ["--render", str(tmp_path / name), *extra]) == 0
        if name.endswith(".png"):
            images[name] = saved[name]
        else:
            with FrameStack(tmp_path / name) as tif:
                images[name] = tif[0]
    out = capsys.readouterr().out
    assert "px of 10 nm, Gaussian blur of sigma 20 nm)" in out and "sigma 15 nm" in out
    table = read_localizations(tmp_path / "l.csv")
    assert len(table) > 10
    field = (24 * 100.0, 24 * 100.0)
    for name, blur in (("default.png", 20.0), ("sharp.png", None), ("counts.tif", None), ("blurred.tif", 15.0)):
        np.testing.assert_allclose(images[name], render_histogram(table, field, 10.0, blur_sigma_nm=blur),
                                   rtol=1e-5, atol=1e-7, err_msg=name)
    assert images["counts.tif"].sum() == len(table)


def test_a_render_blur_wider_than_the_field_is_refused_before_any_work(simulated, tiny_model_path, tmp_path,
                                                                        capsys):
    """--render-blur 1e9 localized every frame, wrote the CSV, then blurred for minutes
    until memory ran out, deaf to Ctrl-C (review)."""
    out = tmp_path / "out"
    out.mkdir()
    code = main(["localize", str(simulated / "frames.tif"), "--out", str(out / "l.csv"), "--model",
                 str(tiny_model_path), "--device", "cpu", "--render", str(out / "r.png"), "--render-blur", "1e9"])
    captured = capsys.readouterr()
    assert code == 2 and "wider than the rendered field (2400 x 2400 nm)" in captured.err
    assert "frames/s" not in captured.err + captured.out and list(out.iterdir()) == []
    # a PNG's default 20 nm blur at 0.25 nm render pixels: 80 pixels wide, refused before the work too
    code = main(["localize", str(simulated / "frames.tif"), "--out", str(out / "l.csv"), "--model",
                 str(tiny_model_path), "--device", "cpu", "--render", str(out / "r.png"), "--render-pixel", "0.25"])
    captured = capsys.readouterr()
    assert code == 2 and "a render blur of sigma 20 nm spans 80 render pixels of 0.25 nm" in captured.err
    assert "frames/s" not in captured.err + captured.out and list(out.iterdir()) == []


def test_the_thresholds_named_for_the_bundled_model_are_its_own():
    """The help and the widget's tooltips name the bundled model's default threshold and
    spike value as numbers; retraining it must not leave them stale."""
    from napari_deepcel0.core.model_io import bundled_model_path, read_model_info

    info = read_model_info(bundled_model_path())
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["localize"].format_help().split())
    widget_source = (Path(__file__).parents[1] / "src/napari_deepcel0/_napari/localize_widget.py").read_text()
    for text in (help_text, widget_source):
        named = re.findall(r"([\d.]+) for the bundled model", text)  # its threshold, or its spike value
        assert named
        for value in named:
            assert float(value) in (round(info.default_threshold, 1), round(info.spike_value))


def test_localize_prints_its_threshold_in_map_units_and_says_when_it_found_nothing(simulated, tmp_path, capsys):
    """--threshold is in map units (8.5 by default for the bundled model) but no run said
    so: 0.2, meant as a fraction, found more molecules; 1000 wrote an empty file silently."""
    args = ["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"), "--frames", "1",
            "--device", "cpu"]
    assert main(args) == 0
    assert "threshold: 8.51 in map units (0.1 x the model's spike value 85.1; --threshold sets it)" in \
        capsys.readouterr().err
    assert main(args + ["--threshold", "1000"]) == 0
    err = capsys.readouterr().err
    assert "threshold: 1000 in map units (11.8 x the model's spike value 85.1)" in err
    assert "note: no molecule was found above the threshold of 1000 (map units)" in err
    assert len(read_localizations(tmp_path / "l.csv")) == 0


def test_localize_says_when_pixel_size_overrides_the_files(simulated, tiny_model_path, tmp_path, capsys):
    """--pixel-size over a file that states another: one note in command-line terms, not
    also the library's warning meant for Python users; the coordinates follow the flag."""
    outs = {}
    for flag in ([], ["--pixel-size", "200"]):
        outs[bool(flag)] = tmp_path / f"locs{len(flag)}.csv"
        assert main(["localize", str(simulated / "frames.tif"), "--out", str(outs[bool(flag)]), "--model",
                     str(tiny_model_path), "--frames", "1", "--device", "cpu", "--threshold", "0", *flag]) == 0
    err = capsys.readouterr().err
    assert "states 100 nm pixels; using --pixel-size 200 nm" in err and "camera pixels, but" not in err
    # the data line named the file's pixel size, not the one used (review)
    assert "frames.tif, 6 frames of 24x24 uint16, pixel 100 nm; cpu" in err
    assert "frames.tif, 6 frames of 24x24 uint16, pixel 200 nm (file: 100 nm); cpu" in err
    plain, doubled = (read_localizations(outs[k]) for k in (False, True))
    np.testing.assert_allclose(doubled["x [nm]"], plain["x [nm]"] * 2, rtol=1e-5)


def test_cel0s_data_line_names_the_pixel_size_used_too(simulated, tmp_path, capsys):
    assert main(["cel0", str(simulated / "frames.tif"), "--out", str(tmp_path / "c.csv"), "--frames", "1",
                 "--max-outer", "1", "--max-inner", "2", "--device", "cpu", "--pixel-size", "200"]) == 0
    assert "data: " + str(simulated / "frames.tif") + ", 6 frames of 24x24 uint16, pixel 200 nm (file: 100 nm)\n" in \
        capsys.readouterr().err


def test_a_pixel_size_from_the_files_metadata_is_named_when_it_differs_or_fails(simulated, tiny_model_path,
                                                                                  tmp_path, capsys):
    """A wrong calibration in the file (ImageJ's 1 um placeholder, 10 nm) showed only as a
    PSF mismatch with coordinates 10 times too large, or as an error about numbers the
    user never typed (review): the note and the error now say where the pixel size came from."""
    from napari_deepcel0.core.io import read_stack, write_tiff

    with read_stack(simulated / "frames.tif") as stack:
        frames = stack[0:1]
    for size, ok in ((1000.0, True), (10.0, False)):
        path = write_tiff(tmp_path / f"cal{size:g}.tif", frames.astype(np.uint16), pixel_size_nm=size)
        code = main(["localize", str(path), "--out", str(tmp_path / "l.csv"), "--model", str(tiny_model_path),
                     "--device", "cpu"])
        err = capsys.readouterr().err
        assert (code == 0) == ok
        if ok:
            assert (f"note: {path} states 1000 nm pixels in its metadata (the model's: 100 nm); using them: if that "
                    "is wrong, set --pixel-size") in err
            # what to do about the PSF mismatch that follows (docs review)
            assert ("note: if these settings are right, a model trained for them localizes better: deepcel0 train "
                    "--out MODEL.safetensors --pixel-size 1000 --fwhm 258.21 (docs/training.md)") in err
        else:
            assert "more than 20 camera pixels" in err and (f"(the pixel size, 10 nm, is the one {path} states in its "
                                                            "metadata: if that is wrong, set --pixel-size)") in err
    assert main(["localize", str(tmp_path / "cal10.tif"), "--out", str(tmp_path / "l.csv"), "--model",
                 str(tiny_model_path), "--device", "cpu", "--pixel-size", "100"]) == 0  # the way out works
    capsys.readouterr()
    # not blamed for an error of a flag, nor noted where no model sets the expected size (review of the first version)
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"), "--model",
                 str(tiny_model_path), "--device", "cpu", "--upsampling", "17"]) == 2
    err = capsys.readouterr().err
    assert "unreasonably large" in err and "metadata" not in err
    path = write_tiff(tmp_path / "cal160.tif", frames.astype(np.uint16), pixel_size_nm=160.0)
    assert main(["cel0", str(path), "--out", str(tmp_path / "c.csv"), "--max-outer", "1", "--max-inner", "2",
                 "--device", "cpu"]) == 0
    assert "in its metadata" not in capsys.readouterr().err


def test_the_advice_on_a_psf_mismatch_trains_the_models_kind(tmp_path, capsys):
    """The suggested train command trained a DeepCEL0 model at L = 4 for a Deep-STORM
    model at L = 2 (review)."""
    from napari_deepcel0.core.io import write_tiff

    model = tmp_path / "ds.safetensors"
    assert main(["train", "--out", str(model), "--method", "deepstorm", "--upsampling", "2", "--patches", "32",
                 "--sim-frames", "4", "--epochs", "1", "--max-steps-per-epoch", "2", "--batch-size", "4",
                 "--device", "cpu"]) == 0
    stack = write_tiff(tmp_path / "s.tif", np.full((1, 16, 16), 100, np.uint16), pixel_size_nm=160.0)
    assert main(["localize", str(stack), "--out", str(tmp_path / "l.csv"), "--model", str(model),
                 "--device", "cpu"]) == 0
    assert ("deepcel0 train --out MODEL.safetensors --pixel-size 160 --fwhm 258.21 --upsampling 2 --method "
            "deepstorm (docs/training.md)") in capsys.readouterr().err


def test_localize_warns_of_a_ground_truth_outside_the_field_or_the_frames(simulated, tiny_model_path, tmp_path,
                                                                          capsys):
    """Coordinates of another stack (or in other units) scored 0 %, and a ground truth of
    other frames 'TP 0 FP n FN 0', without a word (review)."""
    gt = read_localizations(simulated / "ground_truth.csv")
    shifted = write_thunderstorm_csv(tmp_path / "shifted.csv", gt.assign(**{"x [nm]": gt["x [nm]"] + 5000.0}))
    later = write_thunderstorm_csv(tmp_path / "later.csv", gt.assign(frame=gt["frame"] + 6))
    for truth, says in ((shifted, f"warning: {shifted}: {len(gt)} of {len(gt)} ground-truth molecules lie outside "
                                  "the stack's field of 2400 x 2400 nm"),
                        (later, "the ground truth holds no molecule in frames 1-2: all")):
        assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"), "--model",
                     str(tiny_model_path), "--frames", "1-2", "--device", "cpu", "--threshold", "0", "--gt",
                     str(truth)]) == 0
        assert says in capsys.readouterr().err


def test_localize_with_photometry_writes_photons(simulated, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "locs.csv"
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(out), "--model", str(tiny_model_path),
                 "--frames", "1-2", "--device", "cpu", "--threshold", "0", "--photometry", "--gain", "2",
                 "--offset", "100"]) == 0
    table = read_localizations(out)
    assert {"intensity [photon]", "offset [photon]", "confidence"} <= set(table.columns)
    assert (table["intensity [photon]"] >= 0).all() and table["offset [photon]"].notna().all()
    assert "camera gain 2 ADU/photon, offset 100 ADU" in capsys.readouterr().err


def test_localize_with_fit_positions_moves_positions_and_writes_uncertainty(simulated, tiny_model_path, tmp_path,
                                                                           capsys):
    plain, fitted = tmp_path / "plain.csv", tmp_path / "fitted.csv"
    common = [str(simulated / "frames.tif"), "--model", str(tiny_model_path), "--frames", "1-2", "--device", "cpu",
              "--threshold", "0"]
    assert main(["localize", *common, "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["localize", *common, "--out", str(fitted), "--fit-positions", "--read-noise", "3"]) == 0
    err = capsys.readouterr().err
    assert "position fit: camera gain" in err and "read noise 3 ADU" in err
    a, b = read_localizations(plain), read_localizations(fitted)
    assert len(a) == len(b) > 0 and {"intensity [photon]", "offset [photon]", "uncertainty [nm]"} <= set(b.columns)
    shift = np.hypot(b["x [nm]"] - a["x [nm]"], b["y [nm]"] - a["y [nm]"])
    assert shift.max() > 0.1 and (shift <= 12.5 * np.sqrt(2) + 1e-6).all()  # within half a fine pixel in x and y
    # NaN uncertainties were written without a word (review); the note counts them
    n_nan = int(b["uncertainty [nm]"].isna().sum())
    assert (f"note: {n_nan} of {len(b)} molecules have no uncertainty [nm] (NaN)" in err) == (n_nan > 0)
    n_edge = int((b["at_box_edge"] == 1).sum())  # (a threshold of 0 on a tiny model: many)
    assert (f"note: {n_edge} of {len(b)} position fits" in err) == (n_edge > 0)


def test_localize_with_orientation_averaging(simulated, tiny_model_path, tmp_path, capsys):
    plain, averaged = tmp_path / "plain.csv", tmp_path / "averaged.csv"
    common = [str(simulated / "frames.tif"), "--model", str(tiny_model_path), "--frames", "1-2", "--device", "cpu",
              "--threshold", "0"]
    assert main(["localize", *common, "--out", str(plain)]) == 0
    assert main(["localize", *common, "--out", str(averaged), "--orientations", "4"]) == 0
    assert "positions averaged over 4 orientations" in capsys.readouterr().err
    a, b = read_localizations(plain), read_localizations(averaged)
    assert len(a) == len(b) > 0  # the same detections ...
    assert not np.allclose(a[["x [nm]", "y [nm]"]], b[["x [nm]", "y [nm]"]])  # ... placed differently
    # ... and placed as the library places them with 4 orientations
    model = DeepLocalizer(tiny_model_path, device="cpu", orientations=4)
    with FrameStack(simulated / "frames.tif") as stack:
        expected = localize(model, stack, frames="1-2", threshold=0.0)
    np.testing.assert_allclose(b[["x [nm]", "y [nm]"]], expected[["x [nm]", "y [nm]"]], atol=1e-3)
    capsys.readouterr()
    assert main(["localize", *common, "--out", str(tmp_path / "c.csv"), "--orientations", "8",
                 "--method", "components"]) == 2
    assert "does not work with method 'components'" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()


def test_demo_writes_its_files_and_scores(tmp_path, capsys, monkeypatch):
    """The README's main command, small: simulate, localize with the bundled model, score."""
    from napari_deepcel0.core import render

    saved, save = [], render.save_render_png
    monkeypatch.setattr(render, "save_render_png", lambda path, image: (saved.append(image), save(path, image)))
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "3", "--device", "cpu", "--orientations", "4"]) == 0
    text = capsys.readouterr().out
    assert "positions averaged over 4 orientations" in text
    jaccard = float(text.split("Jaccard at 50 nm: ")[1].split(" %")[0])
    assert 40.0 < jaccard <= 100.0  # the bundled model on its own kind of data (about 60 %)
    # the summary line is the table's 50 nm row (the 250 nm row's passed too; mutation testing, 2026-11-29)
    rows = {line.split()[0]: line.split() for line in text.splitlines() if re.match(r"\s*\d+ +\d+ ", line)}
    assert list(rows) == ["50", "100", "150", "250"] and float(rows["250"][4]) > float(rows["50"][4])
    assert jaccard == pytest.approx(float(rows["50"][4]), abs=0.051)
    rmse = float(text.split("Jaccard at 50 nm: ")[1].split("RMSE ")[1].split(" nm")[0])
    assert rmse == pytest.approx(float(rows["50"][7]), abs=0.051)
    t = read_localizations(out / "demo_localizations.csv")
    assert t["frame"].between(1, 3).all() and len(t) > 100
    assert len(read_localizations(out / "demo_ground_truth.csv")) > len(t) / 2
    assert (out / "demo_render.png").stat().st_size > 0 and (out / "demo_frames.tif").stat().st_size > 0
    protocol = json.loads((out / "demo_localizations-protocol.json").read_text())
    assert protocol["input"]["stack"] == str((out / "demo_frames.tif").resolve())
    assert protocol["input"]["frames"] == "1-3"
    assert protocol["model"]["bundled"] and protocol["settings"]["orientations"] == 4
    assert protocol["settings"]["scaling_tile_px"] == 64
    assert protocol["results"]["localizations"] == len(t)
    # blurred by 20 nm: at 10 nm the 25 nm fine grid showed as beads along the filaments (review)
    field = (64 * 100.0, 64 * 100.0)
    np.testing.assert_allclose(saved[0], render.render_histogram(t, field, 10.0, blur_sigma_nm=20.0), atol=1e-6)


def test_demo_refuses_an_output_it_cannot_write_before_the_work(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "demo_render.png").mkdir(parents=True)  # failed only after simulating and localizing (review)
    assert main(["demo", "--out", str(out), "--frames", "3", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "demo_render.png is a folder; give a file name" in captured.err and "simulating" not in captured.out
    assert [p.name for p in out.iterdir()] == ["demo_render.png"]


def test_demo_and_simulate_refuse_what_cannot_fit_before_any_work(tmp_path, capsys):
    """demo --density 1e5 aborted the process in the scoring (std::bad_alloc, exit 134; here
    the OOM killer) and 1e300 gave numpy's "lam value too large"; simulate checked its
    memory, demo did not (review)."""
    for command in ("demo", "simulate"):
        for density in ("1e5", "1e300", "100.5"):
            with pytest.raises(SystemExit) as exit_:
                main([command, "--out", str(tmp_path / "out"), "--frames", "2", "--density", density])
            assert exit_.value.code == 2
            assert f"must be at most 100 emitters per um^2 (one per 100 x 100 nm), got {density}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a demo scores its localizations: 0 emitters gave NaN scores (diff review)
        main(["demo", "--out", str(tmp_path / "out"), "--density", "0"])
    assert "argument --density: must be a positive number, got 0" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "out"), "--frames", "100000000", "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "100000000 frame(s) of 64 x 64 pixels at 5.5 emitters/um^2 need about" in captured.err
    assert "use fewer frames (--frames) or a lower --density" in captured.err and "simulating" not in captured.out
    assert list(tmp_path.iterdir()) == []


def test_evaluate_warns_of_a_frame_shape_smaller_than_the_data_and_advises_on_memory(tmp_path, capsys, monkeypatch):
    """--frame-shape 2 2 on 32 x 32 frames gave spec% 83 without a word, and evaluate's
    out-of-memory advice named frames and a density it has no flags for (review)."""
    gt = loc_table([1, 1, 2], [150.0, 2500.0, 3000.0], [150.0, 900.0, 3100.0])
    write_thunderstorm_csv(tmp_path / "gt.csv", gt)
    base = ["evaluate", str(tmp_path / "gt.csv"), "--gt", str(tmp_path / "gt.csv"), "--tol", "12.5", "50"]
    assert main(base + ["--frame-shape", "2", "2"]) == 0
    captured = capsys.readouterr()
    assert "warning: --frame-shape 2 2 (rows, columns) at 100 nm: 2 of 3 ground-truth molecules lie outside" in captured.err
    assert "    12.5 " in captured.out  # the tolerance as given, not rounded to "12"
    assert main(base + ["--frame-shape", "32", "32"]) == 0
    assert "outside" not in capsys.readouterr().err

    from napari_deepcel0.core import metrics

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.0 GiB")

    monkeypatch.setattr(metrics, "match_points", no_memory)
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "too many molecules within the tolerance of each other in one frame" in err and "density" not in err


def test_train_writes_a_loadable_model(tmp_path):
    from napari_deepcel0.core.model_io import load_model

    out = tmp_path / "m.safetensors"
    code = main(["train", "--out", str(out), "--epochs", "1", "--patches", "16", "--sim-frames", "2",
                 "--max-steps-per-epoch", "1", "--batch-size", "4", "--device", "cpu", "--precision", "fp32",
                 "--sparse-fraction", "0.25", "--sparse-density", "0.2", "1"])
    training = load_model(out).info.training
    assert code == 0 and training["epochs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # the run's checkpoint is gone
    assert training["data"]["sparse_fraction"] == 0.25 and training["data"]["sparse_density"] == [0.2, 1.0]


def test_a_fine_tune_simulates_the_base_models_camera(tmp_path, capsys):
    from napari_deepcel0.core.model_io import load_model

    small = ["--epochs", "1", "--patches", "16", "--sim-frames", "2", "--max-steps-per-epoch", "1",
             "--batch-size", "4", "--device", "cpu", "--precision", "fp32"]
    base, tuned = tmp_path / "base.safetensors", tmp_path / "tuned.safetensors"
    assert main(["train", "--out", str(base), "--pixel-size", "160", "--fwhm", "300", "--gain", "3",
                 "--offset", "400", "--read-noise", "2.5", "--lam", "50", "--column-norms", "notebook"] + small) == 0
    # before: the package's 100 nm / 258.21 nm were refused, and gain 1, offset 100, read
    # noise 1 simulated another camera without a word; the loss went back to lambda 100 (review)
    assert main(["train", "--out", str(tuned), "--init-from", str(base)] + small) == 0
    assert load_model(tuned).info.acquisition == load_model(base).info.acquisition
    assert load_model(tuned).info.lam == 50.0 and load_model(tuned).info.training["column_norms"] == "notebook"
    assert main(["train", "--out", str(tuned), "--init-from", str(base), "--gain", "2"] + small) == 0
    assert load_model(tuned).info.acquisition.gain_adu_per_photon == 2.0  # a flag still wins
    assert main(["train", "--out", str(tuned), "--init-from", str(base), "--lam", "80"] + small) == 0
    assert load_model(tuned).info.lam == 80.0
    assert "(default: the --init-from model's, else 1)" in main_help("train")


def test_a_fine_tune_takes_its_base_models_method_and_records_its_full_path(tmp_path, monkeypatch):
    """A Deep-STORM base needed --method deepstorm typed out (refused otherwise), and a base
    given by a relative path was recorded so, so that the recipe trained again from the
    same folder only (a review)."""
    from napari_deepcel0.core.model_io import load_model

    small = ["--epochs", "1", "--patches", "16", "--sim-frames", "2", "--max-steps-per-epoch", "1",
             "--batch-size", "4", "--device", "cpu", "--precision", "fp32"]
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "ds.safetensors", "--method", "deepstorm"] + small) == 0
    assert main(["train", "--out", "tuned.safetensors", "--init-from", "ds.safetensors"] + small) == 0
    tuned = load_model(tmp_path / "tuned.safetensors").info
    assert tuned.method == "deepstorm" and tuned.head == "linear"
    assert tuned.training["init_from"] == str((tmp_path / "ds.safetensors").resolve())
    assert main(["train", "--out", "other.safetensors", "--init-from", "ds.safetensors", "--method", "deepcel0"]
                + small) == 2  # said, not changed


def test_a_diverged_training_names_the_checkpoint_it_leaves(tmp_path, capsys, monkeypatch):
    from napari_deepcel0.core import training

    real_train = training.train

    def diverges_in_epoch_2(acq, config, progress=None, cancel=None, on_best=None, time_limit_s=None):
        on_best(real_train(acq, config))  # epoch 1 improved and was checkpointed
        raise training.TrainingDivergedError("the training loss became nan at epoch 2; training stopped. Try a "
                                             "lower learning rate or lambda", api_hint=", or precision='fp32'")

    monkeypatch.setattr(training, "train", diverges_in_epoch_2)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--out", str(out), "--epochs", "1", "--patches", "16", "--sim-frames", "2",
                 "--max-steps-per-epoch", "1", "--batch-size", "4", "--device", "cpu", "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    # the command line has --precision: it keeps the core's advice (the widget leaves it out)
    assert (f"training stopped. Try a lower learning rate or lambda, or precision='fp32'; the best model before "
            f"that is in {tmp_path / 'm.partial.safetensors'}") in err
    assert not out.exists() and (tmp_path / "m.partial.safetensors").is_file()

    def diverges_in_epoch_1(acq, config, progress=None, cancel=None, on_best=None, time_limit_s=None):
        raise training.TrainingDivergedError("the training loss became nan at epoch 1; training stopped")

    monkeypatch.setattr(training, "train", diverges_in_epoch_1)  # the checkpoint on disk is the last run's
    assert main(["train", "--out", str(out), "--epochs", "1", "--device", "cpu"]) == 2
    assert "best model before that" not in capsys.readouterr().err


def main_help(command: str) -> str:
    parser = build_parser()
    return next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == command)[1].format_help()


def test_train_says_how_long_is_left(tmp_path, capsys):
    # enough steps that the epoch still to run takes well over the half second below
    # which no time left is printed (16 patches made this flaky)
    code = main(["train", "--out", str(tmp_path / "m.safetensors"), "--epochs", "2", "--patches", "48",
                 "--sim-frames", "4", "--batch-size", "4", "--device", "cpu", "--precision", "fp32"])
    err = capsys.readouterr().err.splitlines()
    epoch_lines = [line for line in err if line.startswith("epoch ") and ": loss" in line]
    assert code == 0 and len(epoch_lines) == 2
    assert "left" in epoch_lines[0] and "left" not in epoch_lines[1]  # nothing is left after the last epoch


def test_a_stopped_train_says_at_which_step_and_no_time_left(tmp_path, capsys, monkeypatch):
    """After Ctrl-C it printed "epoch 1/30: loss ..., 91 s, about 39 min left", the partial
    epoch as a whole one and the time of a run that was stopping (review)."""
    import contextlib
    import threading

    from napari_deepcel0 import cli
    from napari_deepcel0.core import training

    stop = threading.Event()
    stop.signum = None

    @contextlib.contextmanager
    def interruptible(stopping):
        yield stop

    real_loss_for = training.loss_for

    def loss_for(config, acq):  # Ctrl-C during the third step
        criterion = real_loss_for(config, acq)
        forward, calls = criterion.forward, []

        def interrupted(pred, target):
            calls.append(1)
            if len(calls) == 3:
                stop.signum = signal.SIGINT
                stop.set()
            return forward(pred, target)

        criterion.forward = interrupted
        return criterion

    monkeypatch.setattr(cli, "stop_on_first_interrupt", interruptible)
    monkeypatch.setattr(training, "loss_for", loss_for)
    code = main(["train", "--out", str(tmp_path / "m.safetensors"), "--epochs", "30", "--patches", "48",
                 "--sim-frames", "4", "--batch-size", "4", "--device", "cpu", "--precision", "fp32"])
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("epoch ") and ": loss" in line]
    assert code == 130 and re.match(r"epoch 1/30 \(stopped at step 3/\d+\): loss", line) and "left" not in line


def test_train_stopped_before_the_first_step_saves_nothing(tmp_path, capsys, monkeypatch):
    import contextlib
    import threading

    from napari_deepcel0 import cli

    @contextlib.contextmanager
    def stopped_at_once(stopping):  # Ctrl-C during the simulation of the training set
        stop = threading.Event()
        stop.signum = signal.SIGINT
        stop.set()
        yield stop

    monkeypatch.setattr(cli, "stop_on_first_interrupt", stopped_at_once)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--out", str(out), "--patches", "16", "--sim-frames", "2", "--epochs", "1",
                 "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert "no model was saved" in err and not out.exists()
    assert "; 1 epoch, batch" in err  # (was "1 epochs")


def _run_until(argv, marker: str, send: int, cwd) -> tuple[int, str]:
    """Start ``deepcel0 argv``, send signal ``send`` once its stderr shows ``marker``;
    (exit code, stderr). The child takes Ctrl-C as a terminal's program does even when
    the tests run in the background of a shell, which starts them with SIGINT ignored."""
    proc = subprocess.Popen([sys.executable, "-m", "napari_deepcel0", *argv], stderr=subprocess.PIPE, text=True,
                            cwd=cwd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.send_signal(send)
            break
    err = "".join(seen) + proc.stderr.read()
    return proc.wait(timeout=120), err


def test_sigterm_leaves_no_output_and_says_so(tmp_path):
    """Batch schedulers stop jobs with SIGTERM: the process died at once (143, no word),
    leaving the CSV writer's temporary file behind."""
    frames = np.random.default_rng(0).poisson(110.0, (3000, 32, 32)).astype(np.uint16)
    from napari_deepcel0.core.io import write_tiff

    write_tiff(tmp_path / "long.tif", frames, pixel_size_nm=100.0)
    code, err = _run_until(["localize", "long.tif", "--out", "l.csv", "--device", "cpu"], "data:", signal.SIGTERM,
                           tmp_path)
    assert code == 143 and "deepcel0 localize: terminated; no output was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.tif"]  # no CSV, no temporary file


def test_ctrl_c_stops_a_shell_loop_over_files_too(tmp_path):
    """Ctrl-C ended with exit status 130: bash took it for the command's own failure and
    went on with the next file of a `for f in *.tif; do deepcel0 localize ...; done` loop.
    The program now dies of SIGINT after saying so (as Python does), which stops the loop."""
    frames = np.random.default_rng(0).poisson(110.0, (3000, 32, 32)).astype(np.uint16)
    from napari_deepcel0.core.io import write_tiff

    write_tiff(tmp_path / "long.tif", frames, pixel_size_nm=100.0)
    code, err = _run_until(["localize", "long.tif", "--out", "l.csv", "--device", "cpu"], "data:", signal.SIGINT,
                           tmp_path)
    assert code == -signal.SIGINT and "deepcel0 localize: interrupted; no output was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.tif"]


def test_sigterm_during_training_saves_the_best_model_and_says_it_was_stopped(tmp_path):
    # it exited 0, so a scheduler's time limit looked like a finished run
    from napari_deepcel0.core.model_io import read_model_info

    code, err = _run_until(["train", "--out", "m.safetensors", "--patches", "400", "--sim-frames", "8",
                            "--epochs", "50", "--max-steps-per-epoch", "3", "--device", "cpu"], "epoch 1/50:",
                           signal.SIGTERM, tmp_path)
    assert code == 143 and "keeping the best model so far" in err
    assert read_model_info(tmp_path / "m.safetensors").training["cancelled"] is True


def test_a_killed_training_run_leaves_the_existing_model_alone(tmp_path):
    """Checkpoints went to --out itself: a run killed after its first epoch replaced a
    good model of an earlier run with a 1-epoch one that did not say it was unfinished."""
    from napari_deepcel0.core.model_io import bundled_model_path, load_model

    good = tmp_path / "m.safetensors"
    good.write_bytes(bundled_model_path().read_bytes())
    code, err = _run_until(["train", "--out", "m.safetensors", "--patches", "400", "--sim-frames", "8",
                            "--epochs", "50", "--max-steps-per-epoch", "3", "--device", "cpu"], "epoch 2/50:",
                           signal.SIGKILL, tmp_path)
    assert code == -signal.SIGKILL
    assert good.read_bytes() == bundled_model_path().read_bytes()
    checkpoint = load_model(tmp_path / "m.partial.safetensors")  # the best model so far, beside it
    assert "had not finished" in checkpoint.info.notes and len(checkpoint.info.history) >= 1
    # a new run to the same file replaced that checkpoint at its first epoch and deleted it at its end without a
    # word (review): refused before any work, the checkpoint named
    kept = (tmp_path / "m.partial.safetensors").read_bytes()
    assert main(["train", "--out", str(good), "--patches", "16", "--epochs", "1", "--device", "cpu"]) == 2
    assert (tmp_path / "m.partial.safetensors").read_bytes() == kept


@pytest.mark.parametrize("flag, value", [("--lr", "1e39"), ("--lam", "1e39")])
def test_rates_beyond_float32_are_refused_before_the_simulation(tmp_path, capsys, flag, value):
    """Accepted, they failed after the whole simulation with a float overflow naming no flag (review)."""
    assert main(["train", "--out", str(tmp_path / "m.safetensors"), flag, value, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "must be a positive number up to 3.4e+38" in err and "simulating" not in err


@pytest.mark.parametrize("flags, message", [
    (["--density", "1e6"], "--density: must be at most 100 emitters per um^2"),
    (["--sparse-fraction", "0.5", "--sparse-density", "1", "1e5"], "--sparse-density: must be at most 100 emitters"),
    (["--photons", "1e30", "1e30"], "photon range must satisfy 0 < low <= high <= 1e+12 photons per molecule"),
    (["--background", "1e19", "1e19"], "background range must satisfy 0 <= low <= high <= 1e+12 photons per pixel"),
])
def test_train_refuses_simulations_out_of_reach_before_simulating(tmp_path, capsys, flags, message):
    """``--density 1e6`` trained for minutes on data of no use and saved it with rc 0;
    ``--photons 1e30`` failed after the simulation began with NumPy's "lam value too
    large" (bad-input review)."""
    with contextlib.suppress(SystemExit):  # (argparse's refusals exit)
        assert main(["train", "--out", str(tmp_path / "m.safetensors"), *flags, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "simulating" not in err and list(tmp_path.iterdir()) == []


def test_a_training_data_config_refuses_densities_beyond_simulations():
    from napari_deepcel0.core.training_data import TrainingDataConfig

    with pytest.raises(ValueError, match=r"structure density must be at most 100 emitters per um\^2"):
        TrainingDataConfig(structure_density=(2.0, 1000.0))
    assert TrainingDataConfig(density_per_um2=100.0, sparse_density=(0.1, 100.0)).density_per_um2 == 100.0


def test_a_training_config_takes_a_path_to_fine_tune_from(tmp_path):
    """A Path trained, then failed to go into the model's metadata at the first checkpoint (review)."""
    from napari_deepcel0.core.training import TrainingConfig

    assert TrainingConfig(init_from=tmp_path / "base.safetensors").init_from == str(tmp_path / "base.safetensors")


def test_sigterm_stops_the_training_set_simulation_at_once(tmp_path):
    # Ctrl-C (and now SIGTERM) during the simulation used to wait for all of it (107 s here)
    code, err = _run_until(["train", "--out", "m.safetensors", "--patches", "20000", "--sim-frames", "400",
                            "--epochs", "5", "--device", "cpu"], "simulating the training set", signal.SIGTERM,
                           tmp_path)
    assert code == 143 and "stopped before the first training step: no model was saved" in err
    assert list(tmp_path.iterdir()) == []
    # its first line promised "keeping the best model so far" (docs review)
    assert "stopping before the first training step: no model will be saved" in err and "keeping" not in err


def test_bundled_preset_is_the_bundled_models_recipe():
    # `deepcel0 train --preset bundled` must reproduce the recipe recorded in the bundled model
    # (all but the seed and the device of that run), and explicit flags must override it
    import dataclasses

    from napari_deepcel0.cli import _training_config
    from napari_deepcel0.core.model_io import load_bundled_model
    from napari_deepcel0.core.training import default_training_lam

    recorded = load_bundled_model().info.training
    config = _training_config(build_parser().parse_args(["train", "--out", "m.safetensors", "--preset", "bundled"]))
    produced = json.loads(json.dumps(dataclasses.asdict(config)))  # tuples -> lists, as in the file
    assert produced["lam"] is None  # resolved as training starts, for the acquisition's L (4: 100)
    produced["lam"] = default_training_lam(load_bundled_model().info.acquisition.upsampling)
    for d in (recorded, produced):
        for key in ("seed", "device", "device_used", "precision_used", "seconds", "best_epoch", "cancelled"):
            d.pop(key, None)
        d["data"].pop("seed")
    assert produced == recorded
    small = _training_config(build_parser().parse_args(
        ["train", "--out", "m.safetensors", "--preset", "bundled", "--epochs", "2", "--patches", "500"]))
    assert (small.epochs, small.data.n_patches, small.batch_size, small.data.sparse_fraction) == (2, 500, 64, 0.25)


def test_train_time_limit_stops_cleanly_and_keeps_the_model(tmp_path, capsys):
    from napari_deepcel0.core.model_io import load_model

    out = tmp_path / "m.safetensors"
    # a limit far below one epoch: the run stops during epoch 1 and still writes a model
    code = main(["train", "--out", str(out), "--epochs", "50", "--patches", "64", "--sim-frames", "2",
                 "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "--time-limit", "1e-6"])
    info = load_model(out).info
    assert code == 0 and info.training["cancelled"] and len(info.history) == 1
    assert info.history[0]["steps"] < 64 // 4
    captured = capsys.readouterr()
    assert "time limit of 1e-06 min is reached" in captured.err
    assert ", stopped at the time limit)" in captured.out and "cancelled" not in captured.out


def test_train_time_limit_is_in_minutes(tmp_path, capsys):
    """A limit of 1 minute on a run of a few seconds lets it finish: a limit read as
    seconds stopped it after the first (``--time-limit 60``, an hour, stopped after a
    minute; mutation testing). The run is made to last over a second."""
    import time

    out = tmp_path / "m.safetensors"
    t0 = time.perf_counter()
    code = main(["train", "--out", str(out), "--epochs", "2", "--patches", "48", "--sim-frames", "2",
                 "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "--time-limit", "1"])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    from napari_deepcel0.core.model_io import load_model

    assert code == 0 and len(load_model(out).info.history) == 2
    if seconds < 55:  # (a machine so slow that 2 tiny epochs took a minute tells nothing)
        assert "time limit" not in err and not load_model(out).info.training["cancelled"]


#: a training of seconds: should a check below stop working, its test fails in seconds
#: instead of training the default model for hours
_TINY_TRAINING = ["--patches", "32", "--sim-frames", "2", "--epochs", "1", "--max-steps-per-epoch", "1",
                  "--batch-size", "4", "--device", "cpu"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["localize", "missing.tif", "--out", "x.csv"], "no such file"),
        (["evaluate", "missing.csv", "--gt", "missing.csv"], "no such file"),
        (["train", "--out", "model.pt", *_TINY_TRAINING], "must end in .safetensors"),
        (["train", "--out", "model.safetensors", "--time-limit", "0", *_TINY_TRAINING],
         "--time-limit must be a positive"),
        (["train", "--out", "model.safetensors", "--time-limit", "nan", *_TINY_TRAINING],
         "--time-limit must be a positive"),
        (["train", "--out", str(bundled_model_path()), "--device", "cpu"], "is the model bundled with"),
        (["cel0", "missing.tif", "--sweep", "gt.csv", "--render", "r.png"], "--render goes with --out"),
        # the sweep's options were ignored by --out without a word (--json printed no JSON; docs review)
        (["cel0", "missing.tif", "--out", "c.csv", "--json"], "--json goes with --sweep; --out localizes with one"),
        (["cel0", "missing.tif", "--out", "c.csv", "--lams", "5", "--lam-range", "1", "2"],
         "--lams, --lam-range go with --sweep"),
        (["train", "--out", "model.safetensors", "--sparse-fraction", "1", *_TINY_TRAINING],
         "sparse_fraction must be in"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("deepcel0 ")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("extra, message", [
    (["--photons", "900", "600"], "photon range must satisfy 0 < low <= high"),
    (["--background", "10", "5"], "background range must satisfy 0 <= low <= high"),
    # NumPy's "lam value too large", naming no setting (bad-input review)
    (["--photons", "1e30", "1e30"], "photon range must satisfy 0 < low <= high <= 1e+12 photons per molecule"),
    (["--background", "1e19", "1e19"], "background range must satisfy 0 <= low <= high <= 1e+12 photons per pixel"),
    (["--snr", "1000"], "SNR range"),
])
def test_simulate_checks_its_ranges_before_making_its_folder(extra, message, tmp_path, capsys, monkeypatch):
    """A bad range failed after --out was made, leaving an empty folder (bad-input review)."""
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--out", "OUT"] + extra) == 2
    assert message in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_simulate_refuses_a_stack_beyond_the_machines_memory_before_making_its_folder(tmp_path, capsys,
                                                                                      monkeypatch):
    """100 frames of 4096 x 4096 ran for minutes before memory ran out (or the kernel killed
    it), leaving an empty --out folder: refused at once, with the numbers."""
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--out", "OUT/sub", "--frames", "100", "--size", "40960"]) == 2
    err = capsys.readouterr().err
    assert "100 frame(s) of 40960 x 40960 pixels at 6 emitters/um^2 need about" in err
    assert "GiB of memory; this machine (or container) has" in err and "use fewer or smaller frames" in err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_simulation_leaves_no_folder_it_made(tmp_path, capsys, monkeypatch):
    """A run that failed after making --out (out of memory, Ctrl-C) left the empty folder."""
    from napari_deepcel0.core import simulate as sim

    def no_memory(**kwargs):  # numpy's own words: they said nothing of the flags to change (a review)
        raise MemoryError("Unable to allocate 894. GiB for an array with shape (1, 10000, 10000)")

    monkeypatch.setattr(sim, "simulate_stack", no_memory)
    (tmp_path / "kept").mkdir()
    assert main(["simulate", "--out", str(tmp_path / "new" / "deeper"), "--frames", "2", "--size", "16"]) == 2
    assert main(["simulate", "--out", str(tmp_path / "kept"), "--frames", "2", "--size", "16"]) == 2
    err = capsys.readouterr().err
    assert "not enough memory for what was asked (Unable to allocate 894. GiB" in err
    assert "use fewer or smaller frames or a lower density" in err
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]  # the folder that was there stays


def test_the_memory_check_reads_a_containers_limit_and_works_without_sysconf(monkeypatch):
    """It compared with the host's memory in a container, and did nothing on Windows,
    which has no os.sysconf (a review)."""
    from napari_deepcel0.core import memory

    real_read_text = Path.read_text

    def limited(path, *args, **kwargs):
        if str(path) == "/sys/fs/cgroup/memory.max":
            return "1073741824\n"  # 1 GiB
        return real_read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", limited)
    assert memory.available_memory_bytes() == 2**30
    monkeypatch.delattr(os, "sysconf")
    monkeypatch.setattr(Path, "read_text", real_read_text)
    import psutil

    assert memory.available_memory_bytes() <= psutil.virtual_memory().total


def test_a_min_lr_above_the_learning_rate_is_refused(tmp_path, capsys):
    """It was lowered to the learning rate without a word (bad-input review)."""
    assert main(["train", "--out", str(tmp_path / "m.safetensors"), "--lr", "1e-4", "--min-lr", "1e-3", "--epochs", "1",
                 "--patches", "8", "--sim-frames", "1", "--max-steps-per-epoch", "1", "--device", "cpu"]) == 2
    assert "--min-lr 0.001 is above the learning rate 0.0001 (--lr)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "--out", "OUT", "--fwhm", "-3"], "argument --fwhm: must be a positive number, got -3"),
        (["simulate", "--out", "OUT", "--frames", "0"], "argument --frames: must be a whole number >= 1"),
        (["simulate", "--out", "OUT", "--snr", "nan"], "argument --snr: must be a finite number"),
        (["simulate", "--out", "OUT", "--density", "-1"], "argument --density: must be a number >= 0"),
        (["localize", "s.tif", "--out", "x.csv", "--pixel-size", "0"], "argument --pixel-size: must be a positive"),
        (["localize", "s.tif", "--out", "x.csv", "--render-pixel", "nan"], "argument --render-pixel: must be"),
        (["cel0", "s.tif", "--out", "x.csv", "--render-pixel", "0"], "argument --render-pixel: must be"),
        (["cel0", "s.tif", "--out", "x.csv", "--gain", "nan"], "argument --gain: must be a positive"),
        (["evaluate", "a.csv", "--gt", "b.csv", "--tol", "-5"], "argument --tol: must be a positive number"),
        (["localize", "s.tif", "--out", "x.csv", "--threshold", "-1"], "argument --threshold: must be a number >= 0"),
        (["cel0", "s.tif", "--out", "x.csv", "--threshold", "nan"], "argument --threshold: must be a number >= 0"),
    ],
)
def test_bad_values_are_refused_before_anything_runs(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (["localize", "{stack}", "--out", "x.csv", "--offset", "-5"],
         "--offset: camera offset must be >= 0 ADU, got -5"),
        (["localize", "{stack}", "--out", "x.csv", "--fwhm", "10"], "--fwhm: PSF FWHM (10 nm) is smaller than a fine"),
        (["localize", "{stack}", "--out", "x.csv", "--fwhm", "20", "--upsampling", "2"],
         "--fwhm, --upsampling: PSF FWHM (20 nm) is smaller than a fine-grid pixel (50 nm"),
        (["localize", "{stack}", "--out", "x.csv", "--pixel-size", "1e6"], "--pixel-size: PSF FWHM (258.21 nm)"),
        (["cel0", "{stack}", "--out", "x.csv", "--upsampling", "40"], "--upsampling: upsampling factor L = 40 is"),
        (["simulate", "--out", "OUT", "--offset", "-5"], "--offset: camera offset must be >= 0 ADU, got -5"),
        (["train", "--out", "m.safetensors", "--offset", "-1"], "--offset: camera offset must be >= 0 ADU, got -1"),
    ],
)
def test_an_acquisition_setting_out_of_range_names_its_flag(argv, message, simulated, tmp_path, capsys, monkeypatch):
    """``localize STACK --offset -5`` said "camera offset must be >= 0, got -5.0 ADU", naming
    no flag (bad-input review): the Acquisition's check now names the flags that set it."""
    monkeypatch.chdir(tmp_path)
    gc.collect()  # (the files other tests left open are not this one's)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([a.format(stack=simulated / "frames.tif") for a in argv]) == 2
        gc.collect()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"deepcel0 {argv[0]}: error: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]  # nothing written
    # and the stack the refused setting was checked against is closed (it was left open)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning) and str(simulated) in str(w.message)]
    assert "unclosed" not in " ".join(err)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--render", "r.jpg"], "--render must end in .png or .tif"),
        (["--render", "missing/r.png"], "folder missing does not exist"),
        (["--render", "r.png", "--render-pixel", "0.001"], "render is too large"),
    ],
)
@pytest.mark.parametrize("command", ["localize", "cel0"])
def test_outputs_are_checked_before_the_run(command, extra, message, simulated, tmp_path, capsys, monkeypatch):
    # before: these failed only after every frame was localized, with the CSV already written
    monkeypatch.chdir(tmp_path)
    argv = [command, str(simulated / "frames.tif"), "--out", "x.csv", "--frames", "1"] + extra
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]  # no CSV, no render


@pytest.mark.parametrize("command", ["localize", "cel0"])
def test_out_must_be_a_csv_so_a_slip_replaces_no_other_file(command, simulated, tmp_path, capsys, monkeypatch):
    # `--out other_stack.tif` replaced that stack with CSV text (exit 0)
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "other_stack.tif"
    other.write_bytes((simulated / "frames.tif").read_bytes())
    assert main([command, str(simulated / "frames.tif"), "--out", "other_stack.tif", "--frames", "1"]) == 2
    assert "--out must end in .csv" in capsys.readouterr().err
    assert other.read_bytes() == (simulated / "frames.tif").read_bytes()
    assert main([command, str(simulated / "frames.tif"), "--out", "upper.CSV", "--frames", "1"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["localize", "{stack}", "--out", "{stack}"], "--out must end in .csv"),  # only a CSV is written
        (["localize", "{stack}", "--out", "l.csv", "--render", "{stack}"], "--render and STACK are the same file"),
        (["localize", "{stack}", "--out", "{gt}", "--gt", "{gt}"], "--out and --gt are the same file"),
        (["localize", "{stack}", "--out", "same.png", "--render", "./same.png"], "--out must end in .csv"),
        (["cel0", "{stack}", "--out", "{stack}"], "--out must end in .csv"),
    ],
)
def test_an_output_never_replaces_an_input(argv, message, simulated, tmp_path, capsys, monkeypatch):
    # before: each of these exited 0, replacing the stack (or the ground truth, then scored 100 %)
    monkeypatch.chdir(tmp_path)
    paths = {"stack": str(simulated / "frames.tif"), "gt": str(simulated / "ground_truth.csv")}
    before = {name: Path(path).read_bytes() for name, path in paths.items()}
    assert main([a.format(**paths) for a in argv] + ["--frames", "1"]) == 2
    assert message in capsys.readouterr().err
    assert {name: Path(path).read_bytes() for name, path in paths.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("command", ["localize", "cel0"])
def test_a_command_run_in_a_script_closes_its_stack(command, simulated, tmp_path):
    """main() called from Python (a batch script, the tests) left the stack's file open
    until the garbage collector found it (a ResourceWarning in whatever ran next)."""
    stack = simulated / "frames.tif"

    def open_files():
        return {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}

    assert main([command, str(stack), "--out", str(tmp_path / "l.csv"), "--frames", "1", "--device", "cpu"]
                + (["--max-outer", "2"] if command == "cel0" else [])) == 0
    assert str(stack.resolve()) not in open_files()


def test_train_does_not_replace_the_model_it_starts_from(tmp_path, capsys):
    model = tmp_path / "start.safetensors"
    model.write_bytes(b"not read: refused before")
    assert main(["train", "--out", str(model), "--init-from", str(model)]) == 2
    assert "--out and --init-from are the same file" in capsys.readouterr().err
    assert model.read_bytes() == b"not read: refused before"


def test_a_missing_ground_truth_is_reported_before_the_work(simulated, tmp_path, capsys, monkeypatch):
    from napari_deepcel0 import cli

    monkeypatch.setattr(cli, "_run_stream", lambda *a: pytest.fail("localized before reading --gt"))
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"),
                 "--gt", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err
    assert not (tmp_path / "l.csv").exists()


def test_warnings_are_one_line_and_a_table_of_wrong_rows_is_an_error(simulated, tmp_path, capsys):
    gt_path = simulated / "ground_truth.csv"
    lines = gt_path.read_text().splitlines()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join(lines[:2] + [lines[2] + ",9"] + lines[3:]) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(ragged), "--gt", str(gt_path), "--tol", "50"]) == 0
    err = capsys.readouterr().err
    assert f"deepcel0 evaluate: warning: {ragged}: skipped 1 row(s)" in err
    assert "UserWarning" not in err and "warnings.warn" not in err  # Python's file, line and source code
    # a comma at the end of every row: every row skipped, then scored as an empty table (Jaccard 0, exit 0)
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("\n".join(lines[:1] + [line + "," for line in lines[1:]]) + "\n")
    assert main(["evaluate", str(trailing), "--gt", str(gt_path), "--tol", "50"]) == 2
    assert "has the header's 5 fields (the first has 6; a comma at the end of every row" in capsys.readouterr().err


def test_simulate_writes_its_files_together_or_not_at_all(tmp_path, capsys):
    # frames.tif was replaced before ground_truth.csv failed: a new stack beside the old truth
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--frames", "2", "--size", "16", "--seed", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "ground_truth.csv").unlink()
    (out / "ground_truth.csv").mkdir()  # the second file cannot be written
    assert main(["simulate", "--out", str(out), "--frames", "3", "--size", "16", "--seed", "2"]) == 2
    assert "ground_truth.csv is a folder; give a file name" in capsys.readouterr().err  # before simulating
    assert (out / "frames.tif").read_bytes() == before["frames.tif"]
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temporary files


def test_simulate_says_when_the_camera_clips(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s"), "--frames", "1", "--size", "16", "--offset", "70000"]) == 0
    assert "256 pixel(s) (100 %) fell outside a 16-bit camera's 0..65535 ADU" in capsys.readouterr().err


def test_a_render_is_not_taken_for_camera_frames(simulated, tmp_path, capsys):
    # its 10 nm pixels failed the PSF check with a puzzling message about 20 camera pixels
    render = tmp_path / "r.tif"
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"), "--frames", "1",
                 "--render", str(render)]) == 0
    capsys.readouterr()
    assert main(["localize", str(render), "--out", str(tmp_path / "again.csv")]) == 2
    assert f"{render} is a render image written by napari-deepcel0, not camera frames" in capsys.readouterr().err


def test_a_size_beyond_memory_is_one_line(tmp_path, capsys):
    # a MemoryError traceback (894 GiB for the frames)
    assert main(["simulate", "--out", str(tmp_path / "s"), "--frames", "1", "--size", "1000000"]) == 2
    err = capsys.readouterr().err
    # refused before numpy tries (the check of the memory needed, with the numbers)
    assert err.startswith("deepcel0 simulate: error: 1 frame(s) of 1000000 x 1000000 pixels") and "GiB of memory" in err
    assert "or a lower --density" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_evaluate_warns_of_frames_selected_past_both_files(simulated, tmp_path, capsys):
    """--frames 1-50 on files of 20 frames went without a word (localize refuses frames
    past its stack); they stay valid, scored as frames where nothing was found."""
    gt = read_localizations(simulated / "ground_truth.csv")
    write_thunderstorm_csv(tmp_path / "first2.csv", gt[gt["frame"] <= 2])
    first2 = str(tmp_path / "first2.csv")
    for selection in ("1-2", "2-", "1,2"):
        assert main(["evaluate", first2, "--gt", first2, "--tol", "50", "--frames", selection]) == 0
        assert capsys.readouterr().err == ""
    assert main(["evaluate", first2, "--gt", first2, "--tol", "50", "--frames", "1,4,6-50"]) == 0
    assert capsys.readouterr().err == (
        "deepcel0 evaluate: warning: --frames 1,4,6-50 goes past the last frame of either file (2): the frames "
        "selected after it (4, 6-50) are scored as frames where nothing was found (only spec% counts them); if "
        "they were not localized, select the frames that were\n")


def test_evaluate_does_not_expand_a_huge_frame_range(simulated, capsys):
    # before: 1-10000000000 tried to allocate 75 GiB; the frames past the files count as empty frames
    gt = str(simulated / "ground_truth.csv")
    assert main(["evaluate", gt, "--gt", gt, "--tol", "50", "--json", "--frames", "1-10000000000",
                 "--frame-shape", "24", "24"]) == 0
    assert json.loads(capsys.readouterr().out)["jaccard"] == 100.0


def test_a_closed_pipe_ends_quietly(simulated, capsys, monkeypatch):
    # as in `deepcel0 evaluate ... | head -1`; before: "error: [Errno 32] Broken pipe"
    gt = str(simulated / "ground_truth.csv")
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w", buffering=1) as closed:  # line-buffered: the first print meets the pipe
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["evaluate", gt, "--gt", gt]) == 2
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_a_folder_that_cannot_be_written_is_found_before_the_work(simulated, tmp_path, capsys):
    # before: localize ran every frame, then failed to write (root's permissions cannot be
    # taken away in a test; /proc takes no files)
    assert main(["localize", str(simulated / "frames.tif"), "--out", "/proc/l.csv", "--frames", "1"]) == 2
    assert "cannot write in folder /proc" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["simulate", "--frames", "2", "--out", str(tmp_path / "afile")]) == 2  # was "[Errno 17] File exists"
    assert "afile is a file, not a folder" in capsys.readouterr().err


def test_an_existing_folder_is_not_an_output_file(simulated, tmp_path, capsys):
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path), "--frames", "1"]) == 2
    assert f"{tmp_path} is a folder; give a file name" in capsys.readouterr().err


def test_model_from_another_tool_is_refused(simulated, tmp_path, capsys):
    bogus = tmp_path / "keras.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(tmp_path / "o.csv"),
                 "--model", str(bogus)]) == 2
    assert "not a valid model file" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_first_ctrl_c_stops_cleanly_second_aborts():
    import os
    import signal

    from napari_deepcel0.cli import stop_on_first_interrupt

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the tests run in a shell's background
    with stop_on_first_interrupt(lambda: "stopping for the test") as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_the_same_new_file_named_relative_and_absolute_is_caught(tmp_path, monkeypatch):
    # neither file exists yet: the paths are compared resolved, not as typed
    import argparse

    from napari_deepcel0.cli import check_distinct_files

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(out="same.png", render=str(tmp_path / "sub" / ".." / "same.png"))
    with pytest.raises(ValueError, match="--out and --render are the same file"):
        check_distinct_files(args, inputs=(), outputs=("out", "render"))
    check_distinct_files(argparse.Namespace(out="a.png", render=str(tmp_path / "b.png")), (), ("out", "render"))


@pytest.mark.parametrize("selection, localized", [("3-4", [3, 4]), ("3-", [3, 4]), ("all", [1, 2, 3, 4])])
def test_localize_scores_the_ground_truth_of_the_selected_frames(tiny_model_path, tmp_path, capsys, selection,
                                                                 localized):
    """Also when the ground truth runs past the stack: "all" and "3-" end at the stack's
    last frame, not the ground truth's."""
    from napari_deepcel0.core.io import write_tiff
    from napari_deepcel0.core.simulate import simulate_stack

    frames, gt = simulate_stack(n_frames=4, shape=(16, 16), density_per_um2=3.0, seed=2)
    write_tiff(tmp_path / "s.tif", np.clip(frames, 0, 65535).astype(np.uint16), pixel_size_nm=100.0)
    longer = pd.concat([gt, gt.assign(frame=gt["frame"] + 4)], ignore_index=True)  # frames 5-8: another stack's
    write_thunderstorm_csv(tmp_path / "gt.csv", longer)
    assert main(["localize", str(tmp_path / "s.tif"), "--out", str(tmp_path / "l.csv"), "--model",
                 str(tiny_model_path), "--device", "cpu", "--frames", selection, "--threshold", "0",
                 "--gt", str(tmp_path / "gt.csv"), "--tol", "50"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    row = out[[i for i, line in enumerate(out) if line.lstrip().startswith("tol [nm]")][0] + 1].split()
    tp, fp, fn = int(row[1]), int(row[2]), int(row[3])
    assert tp + fn == int(gt["frame"].isin(localized).sum())
    assert tp + fp == len(read_localizations(tmp_path / "l.csv"))
    assert "FrameCoverage" not in captured.err and "runs over frames" not in captured.err


def test_localize_replaces_a_hot_pixel_unless_asked_to_keep_it(simulated, tmp_path, capsys):
    from napari_deepcel0.core.io import write_tiff

    with read_stack(simulated / "frames.tif") as stack:
        frames = stack[0:2]
    hot = frames.copy()
    hot[:, 5, 5] = 65535.0
    write_tiff(tmp_path / "hot.tif", hot.astype(np.uint16), pixel_size_nm=100.0)
    write_tiff(tmp_path / "clean.tif", frames.astype(np.uint16), pixel_size_nm=100.0)
    tables = {}
    for name, flags in (("clean", []), ("hot", []), ("kept", ["--keep-outlier-pixels"])):
        out = tmp_path / f"{name}.csv"
        source = tmp_path / ("clean.tif" if name == "clean" else "hot.tif")
        assert main(["localize", str(source), "--out", str(out), "--device", "cpu", *flags]) == 0
        tables[name] = read_localizations(out)
    assert len(tables["hot"]) == len(tables["clean"]) > 0
    assert "replaced 2 hot, dead or NaN pixels" in capsys.readouterr().err  # one a frame, said once
    assert main(["cel0", str(tmp_path / "hot.tif"), "--out", str(tmp_path / "cel0.csv"), "--device", "cpu",
                 "--max-outer", "2", "--max-inner", "5"]) == 0
    assert "replaced 2 hot, dead or NaN pixels" in capsys.readouterr().err  # CEL0 says it too
    assert len(tables["kept"]) != len(tables["clean"])  # the hot pixel spoils the frames' scaling


def test_localize_says_in_how_many_frames_it_dimmed_a_bead(simulated, tmp_path, capsys):
    from napari_deepcel0.core.io import write_tiff

    with read_stack(simulated / "frames.tif") as stack:
        frames = stack[0:3].astype(np.float32)
    frames[:, 18:23, 18:23] += 60000.0 * np.exp(-((np.arange(5) - 2.0)[:, None] ** 2 + (np.arange(5) - 2.0) ** 2) / 2.4)
    write_tiff(tmp_path / "bead.tif", frames.astype(np.uint16), pixel_size_nm=100.0)
    assert main(["localize", str(tmp_path / "bead.tif"), "--out", str(tmp_path / "l.csv"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "warning: frame 1 (and 2 more in this batch): an object" in err  # once
    assert "dimmed an object far brighter than the molecules (a bead?) in 3 frames" in err


def test_localize_runs_without_a_stderr(simulated, tiny_model_path, tmp_path, monkeypatch, capsys):
    """Started with 2>&- (sys.stderr None) localize exited 1 with no message and no CSV:
    the progress bar's first update raised AttributeError (review)."""
    monkeypatch.setattr(sys, "stderr", None)
    out = tmp_path / "l.csv"
    assert main(["localize", str(simulated / "frames.tif"), "--out", str(out), "--model", str(tiny_model_path),
                 "--frames", "1-2", "--device", "cpu", "--threshold", "0"]) == 0
    assert len(read_localizations(out)) > 0
    monkeypatch.setattr(sys, "stderr", None)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--gt", str(simulated / "ground_truth.csv"), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()  # only JSON, one line a tolerance: the coverage warning went
    assert len(lines) == 4 and all(json.loads(line) for line in lines)  # nowhere, not to stdout


# ---- found missing by mutation testing (a second round, 2026-11-28): each fails on the bug it names
def test_simulated_counts_are_clipped_to_the_16_bit_range_not_wrapped():
    """C19 (cli.py, ``np.clip(frames, 0, 65535).astype(np.uint16)`` -> ``astype`` alone):
    a saturated pixel of 70,000 ADU was written as 4,464 (wrapped), a dark one of -5 as
    65,531; the warning said "clipped". The test only read the warning."""
    import warnings

    from napari_deepcel0.cli import _camera_counts

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _camera_counts(np.array([[-5.0, 100.0, 70000.0]]))
    assert out.dtype == np.uint16 and out.tolist() == [[0, 100, 65535]]


def test_evaluate_frame_shape_is_rows_then_columns(tmp_path, capsys):
    """C26 (cli.py, the fine grid of --frame-shape built as (cols, rows)): on frames of
    2 x 8 camera pixels (8 x 32 fine pixels at 100 nm, L 4) a molecule at x 600 nm lies
    inside; with the sides swapped it fell outside and spec% counted one pixel too many.
    Every test used square frames."""
    from conftest import loc_table
    from napari_deepcel0.cli import main
    from napari_deepcel0.core.outputs import write_thunderstorm_csv

    gt = write_thunderstorm_csv(tmp_path / "gt.csv", loc_table([1], [600.0], [100.0]))
    est = write_thunderstorm_csv(tmp_path / "est.csv", loc_table([1, 1], [600.0, 50.0], [100.0, 150.0]))
    assert main(["evaluate", str(est), "--gt", str(gt), "--tol", "50", "--frame-shape", "2", "8", "--json"]) == 0
    score = json.loads(capsys.readouterr().out.splitlines()[0])
    assert score["specificity"] == pytest.approx(100 * 255 / 256, abs=1e-9)


def test_a_ground_truth_in_camera_pixels_is_read_with_the_stacks_pixel_size(tmp_path):
    """C27 (cli.py, ``read_localizations(path, pixel_size_nm=acq.pixel_size_nm)`` ->
    ``read_localizations(path)``): localize/cel0 --gt with x [px] columns then failed
    ("give the pixel size"), though the stack's pixel size is known."""
    import argparse

    from napari_deepcel0.cli import _read_ground_truth

    path = tmp_path / "gt.csv"
    path.write_text('"frame","x [px]","y [px]"\n1,2.5,4\n')
    gt = _read_ground_truth(argparse.Namespace(gt=str(path)), Acquisition(pixel_size_nm=160.0), (8, 8))
    assert gt["x [nm]"].tolist() == [400.0] and gt["y [nm]"].tolist() == [640.0]


def test_the_cel0_sweep_takes_the_threshold_and_frames_given(simulated, capsys):
    """CC2 (cli_cel0.py, the sweep always at the default threshold) and CC7 (the sweep
    drawing from every frame, not --frames): real sweeps of 2 lambdas on tiny frames.
    (Frames 1-2: the seed's draw of 2 of all 6 frames is 4 and 5, so --frames 4-5 let
    CC7 pass; mutation testing, 2026-11-29.)"""
    base = ["cel0", str(simulated / "frames.tif"), "--sweep", str(simulated / "ground_truth.csv"), "--lams", "2",
            "--max-outer", "3", "--max-inner", "20", "--json"]
    assert main([*base, "--frames", "1-2", "--sweep-frames", "2"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert sorted(sweep["frames"]) == [1, 2] and max(p["tp"] for p in sweep["curve"]) > 0
    assert main([*base, "--frames", "4-5", "--sweep-frames", "2", "--threshold", "1e9"]) == 0
    assert all(p["tp"] == p["fp"] == 0 for p in json.loads(capsys.readouterr().out)["curve"])  # nothing above 1e9


def test_the_cel0_solver_settings_reach_the_solver(simulated, tmp_path, capsys):
    """CC4 (cli_cel0.py, --max-outer and --max-inner swapped), CC5 (--lam dropped) and
    CC6 (--background dropped): the protocol gives the real solver's settings, and the
    run's outer iterations stay within --max-outer."""
    assert main(["cel0", str(simulated / "frames.tif"), "--out", str(tmp_path / "l.csv"), "--frames", "1",
                 "--lam", "0.05", "--max-outer", "3", "--max-inner", "40", "--background", "none", "--rel-tol",
                 "0.01"]) == 0
    settings = json.loads((tmp_path / "l-protocol.json").read_text())["settings"]
    # (--rel-tol dropped, C03 of the mutation testing of 2026-11-29, passed too)
    assert (settings["lambda"], settings["max_outer"], settings["max_inner"], settings["background"],
            settings["tol"]) == (0.05, 3, 40, None, 0.01)
    assert "outer iterations median" in capsys.readouterr().err


def test_cel0_names_its_flags_says_when_nothing_is_found_and_sweeps_distinct_lambdas(simulated, tmp_path, capsys):
    """Bad-input review: ``--max-outer 0`` named the Python parameter ``max_outer``; a
    threshold above every value wrote an empty CSV without localize's note; ``--lam-range
    1 1 --lams 2`` swept the same lambda twice."""
    stack = str(simulated / "frames.tif")
    with pytest.raises(SystemExit):
        main(["cel0", stack, "--out", str(tmp_path / "l.csv"), "--max-outer", "0"])
    assert "argument --max-outer: must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["cel0", stack, "--out", str(tmp_path / "l.csv"), "--frames", "1", "--max-outer", "2",
                 "--threshold", "2"]) == 0
    assert "note: no molecule was found above the threshold of 2 (the normalised map)" in capsys.readouterr().err
    assert main(["cel0", stack, "--sweep", str(simulated / "ground_truth.csv"), "--lam-range", "1", "1", "--lams",
                 "2"]) == 2
    assert "a lambda range of one value (1 to 1) holds one lambda, not 2" in capsys.readouterr().err


def test_simulate_snr_frames_are_written_as_floats_with_their_negative_noise(tmp_path):
    """C20 (cli.py:268, the --snr frames also clipped to 0..65535 and made uint16): the
    white Gaussian noise of the paper's model (around a background of 0) lost its
    negative half and its fraction, and the log still said float32."""
    from napari_deepcel0.cli import main
    from napari_deepcel0.core.tiff_stack import read_stack

    assert main(["simulate", "--out", str(tmp_path / "sim"), "--frames", "2", "--size", "16", "--snr", "10"]) == 0
    with read_stack(tmp_path / "sim" / "frames.tif") as stack:
        assert stack.dtype == np.float32 and stack[:].min() < 0


# ---- found missing by mutation testing (a third round, 2026-11-29): each fails on the bug it names
def test_the_limits_the_help_names_are_accepted():
    """M04, M05 (cli.py, ``value > MAX_DENSITY_PER_UM2`` -> ``>=`` and ``value < 2**32`` ->
    ``<=``): --density 100 ("at most 100") and --seed 4294967295 ("from 0 to 4294967295")
    are the limits the help and the messages name; only values past them were tested."""
    args = build_parser().parse_args(["simulate", "--out", "o", "--density", "100", "--seed", "4294967295"])
    assert args.density == 100.0 and args.seed == 2**32 - 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--out", "o", "--seed", "4294967296"])


def test_simulate_writes_the_pixel_size_it_simulated(tmp_path):
    """M11 (cli.py, the stack written with the default 100 nm whatever --pixel-size said):
    localize reads the pixel size from the TIFF (the help of simulate says so), so a
    --pixel-size 160 simulation was localized at 100 nm and its ground truth missed by
    a factor 1.6. Every test simulated at 100 nm."""
    assert main(["simulate", "--out", str(tmp_path / "s"), "--frames", "1", "--size", "8", "--pixel-size", "160",
                 "--fwhm", "300"]) == 0
    with read_stack(tmp_path / "s" / "frames.tif") as stack:
        assert stack.pixel_size_nm == pytest.approx(160.0)
    assert json.loads((tmp_path / "s" / "acquisition.json").read_text())["pixel_size_nm"] == 160.0


def test_evaluate_reads_a_ground_truth_in_camera_pixels_with_pixel_size(tmp_path, capsys):
    """M13 (cli.py, the ground truth read without --pixel-size): an ISBI-style ground
    truth in camera pixels (x [px]) was refused as if no --pixel-size had been given
    (x [px] 2.5, the centre of pixel 2, is 400 nm at 160 nm pixels)."""
    (tmp_path / "gt.csv").write_text('"frame","x [px]","y [px]"\n1,2.5,4.0\n')
    est = write_thunderstorm_csv(tmp_path / "est.csv", loc_table([1], [2.5 * 160.0], [4.0 * 160.0]))
    assert main(["evaluate", str(est), "--gt", str(tmp_path / "gt.csv"), "--pixel-size", "160", "--tol", "50",
                 "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["tp"] == 1 and score["rmse_nm"] == pytest.approx(0.0, abs=1e-9)


def test_the_progress_bar_counts_the_selected_frames(simulated, tmp_path, capsys):
    """M07 (cli.py, StreamProgress's total the stack's length): --frames 2-3 of 6 frames
    ended its bar at 2/6, as if the run had stopped a third of the way."""
    assert main(["cel0", str(simulated / "frames.tif"), "--out", str(tmp_path / "c.csv"), "--frames", "2-3",
                 "--max-outer", "1", "--max-inner", "2", "--device", "cpu"]) == 0
    bars = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cel0 [")]
    assert bars and bars[-1].split("] ")[1].startswith("2/2 ")


def test_a_pixel_size_of_the_file_a_tenth_off_the_models_is_noted(simulated, tiny_model_path, tmp_path, capsys):
    """M24 (cli.py, the note on the file's pixel size given past 20 % of the model's, not
    2 %): a stack calibrated at 110 nm was localized with a 100 nm model without a word;
    the test knew only ImageJ's 1 um placeholder, ten times off."""
    from napari_deepcel0.core.io import write_tiff

    with read_stack(simulated / "frames.tif") as stack:
        frames = stack[0:1]
    for size, noted in ((110.0, True), (101.0, False)):
        path = write_tiff(tmp_path / f"cal{size:g}.tif", frames.astype(np.uint16), pixel_size_nm=size)
        assert main(["localize", str(path), "--out", str(tmp_path / "l.csv"), "--model", str(tiny_model_path),
                     "--device", "cpu"]) == 0
        err = capsys.readouterr().err
        assert (f"note: {path} states {size:g} nm pixels in its metadata (the model's: 100 nm)" in err) == noted


def test_a_protocol_that_cannot_be_written_stops_the_run_before_the_model_is_loaded(simulated, tmp_path, capsys):
    """M26 (cli.py, check_outputs without ``check_output_path(protocol_path(args.out))``):
    a folder where the protocol goes was found only after every frame was localized; the
    CSV was then removed with it (all or nothing), so only the lost time showed."""
    (tmp_path / "locs-protocol.json").mkdir()
    assert main(["localize", str(simulated / "frames.tif"), "--frames", "1", "--device", "cpu", "--out",
                 str(tmp_path / "locs.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("deepcel0 localize: error: ") and "locs-protocol.json" in err[0]


def test_the_render_of_an_oblong_stack_has_its_rows_and_columns(simulated, tiny_model_path, tmp_path, capsys):
    """M31 (cli.py, the render's field built from (columns, rows)): a stack of 16 rows of
    24 columns was rendered 24 x 16, its localizations (x = column) cut off or squeezed.
    Every render test used square frames."""
    from napari_deepcel0.core.io import FrameStack, write_tiff
    from napari_deepcel0.core.render import render_histogram

    with read_stack(simulated / "frames.tif") as stack:
        frames = stack[0:1][:, :16, :]
    path = write_tiff(tmp_path / "oblong.tif", frames.astype(np.uint16), pixel_size_nm=100.0)
    assert main(["localize", str(path), "--out", str(tmp_path / "l.csv"), "--model", str(tiny_model_path),
                 "--device", "cpu", "--threshold", "0", "--render", str(tmp_path / "r.tif")]) == 0
    table = read_localizations(tmp_path / "l.csv")
    assert len(table) > 0 and table["x [nm]"].max() > 1600  # x runs along the 24 columns
    with FrameStack(tmp_path / "r.tif") as tif:
        image = tif[0]
    assert image.shape == (160, 240) and image.sum() == len(table)
    np.testing.assert_allclose(image, render_histogram(table, (1600.0, 2400.0), 10.0))
    assert "(240x160 px of 10 nm)" in capsys.readouterr().out


def test_the_protocol_says_whether_outlier_pixels_were_replaced(simulated, tiny_model_path, tmp_path):
    """M33 (cli.py, run_protocol's ``fix_outlier_pixels`` always True): a run with
    --keep-outlier-pixels was recorded as one that replaced them, for localize and cel0."""
    runs = (["localize", "--model", str(tiny_model_path)], ["cel0", "--max-outer", "1", "--max-inner", "2"])
    for command in runs:
        for flags, fixed in (([], True), (["--keep-outlier-pixels"], False)):
            out = tmp_path / f"{command[0]}{len(flags)}.csv"
            assert main([command[0], str(simulated / "frames.tif"), "--out", str(out), "--frames", "1", "--device",
                         "cpu", *command[1:], *flags]) == 0
            protocol = json.loads(out.with_name(out.stem + "-protocol.json").read_text())
            assert protocol["settings"]["fix_outlier_pixels"] is fixed, (command[0], flags)


def test_the_cel0_sweep_table_marks_the_best_lambda_and_takes_the_background_given(simulated, capsys):
    """C09 (cli_cel0.py, the sweep table's ``*`` on the first row, not the best) and C07
    (the sweep's background always auto, --background ignored): on these frames the
    best of 2 lambdas is the first with the background subtracted (auto) and the second
    without (none)."""
    base = ["cel0", str(simulated / "frames.tif"), "--sweep", str(simulated / "ground_truth.csv"), "--lams", "2",
            "--max-outer", "3", "--max-inner", "20", "--device", "cpu"]
    best = {}
    for background in ("auto", "none"):
        assert main([*base, "--background", background]) == 0
        lines = capsys.readouterr().out.splitlines()
        rows = [line for line in lines if re.match(r"[* ] +\d", line)]
        assert len(rows) == 2 and sum(row.startswith("*") for row in rows) == 1
        marked = next(row for row in rows if row.startswith("*")).split()
        jaccards = [float(row.split()[-9]) for row in rows]
        assert float(marked[2]) == max(jaccards)
        best[background] = float(lines[-1].split("best lambda: ")[1].split()[0])
        assert float(marked[1]) == pytest.approx(best[background], rel=1e-3)
    assert best == {"auto": pytest.approx(0.001), "none": pytest.approx(1.0)}


def test_a_single_replaced_pixel_is_noted_too_and_both_tables_count_for_the_scoring_progress(capsys, monkeypatch):
    """N07 (cli.py, the note on replaced pixels given from 2 on, ``if n:`` -> ``if n > 1:``):
    one hot pixel went without a word, where the note's singular was written for it; N09
    (the scoring's progress shown by the ground truth's rows alone): 150,000 localizations
    against 60,000 molecules scored without a bar."""
    from conftest import loc_table
    from napari_deepcel0 import cli

    cli.note_replaced_pixels(1)
    assert "note: replaced 1 hot, dead or NaN pixel (isolated ones" in capsys.readouterr().err
    small, large = loc_table([1] * 4, [0.0] * 4, [0.0] * 4), loc_table([1] * 8, [0.0] * 8, [0.0] * 8)
    monkeypatch.setattr(cli, "EVALUATE_PROGRESS_ROWS", 10)
    assert cli._scoring_progress(small, large) is not None and cli._scoring_progress(small, small) is None
