import json
import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from napari_deepcel0.core import model_io
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.model_io import ModelFileError, load_model, read_model_info, save_model


def test_round_trip_keeps_weights_and_metadata(tiny_model_path, tmp_path):
    loaded = load_model(tiny_model_path)
    info = loaded.info
    assert info.head == "relu" and info.method == "deepcel0" and info.loss == "cel0" and info.lam == 100.0
    assert info.acquisition.fwhm_nm == 258.21 and info.format_version == model_io.FORMAT_VERSION
    assert info.norm_std > 0 and info.target_scale == pytest.approx(85.1, abs=0.05)
    assert info.training["data"]["n_patches"] == 32 and len(info.history) == 1
    assert info.package_version and info.created
    copy = save_model(tmp_path / "copy.safetensors", loaded.network, info)
    again = load_model(copy)
    for (k, a), (_, b) in zip(loaded.network.state_dict().items(), again.network.state_dict().items()):
        assert torch.equal(a, b), k
    assert "deepcel0" in again.info.summary()
    info.notes = "trained for the test"
    assert info.summary().endswith("; trained for the test")
    assert "trained for the test" not in info.summary(with_notes=False)


def test_truncated_and_corrupt_files(tiny_model_path, tmp_path):
    data = tiny_model_path.read_bytes()
    short = tmp_path / "short.safetensors"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="short.safetensors"):
        load_model(short)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ModelFileError, match="not a valid model file"):
        load_model(junk)


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "model.pt"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="not a valid model file"):
        load_model(p)
    assert not marker.exists()


def test_safetensors_from_another_tool(tmp_path):
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(p), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="another tool"):
        load_model(p)


def _rewrite(path, tmp_path, mutate_meta=None, mutate_tensors=None):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    d = json.loads(meta[model_io.METADATA_KEY])
    if mutate_meta:
        mutate_meta(d)
    if mutate_tensors:
        mutate_tensors(tensors)
    out = tmp_path / "mutated.safetensors"
    text = json.dumps(d).replace('"OVERFLOW"', "1e999")  # (a number JSON holds and floats do not)
    save_file(tensors, str(out), metadata={model_io.METADATA_KEY: text})
    return out


def test_future_version_and_wrong_architecture(tiny_model_path, tmp_path):
    p = _rewrite(tiny_model_path, tmp_path, lambda d: d.update(format_version=99))
    with pytest.raises(ModelFileError, match="newer"):
        read_model_info(p)
    p = _rewrite(tiny_model_path, tmp_path, lambda d: d.update(architecture="unet-v7"))
    with pytest.raises(ModelFileError, match="architecture"):
        load_model(p)
    p = _rewrite(tiny_model_path, tmp_path, lambda d: d.update(norm_std=0))
    with pytest.raises(ModelFileError, match="normalisation"):
        load_model(p)


def test_wrong_tensor_shapes_and_names(tiny_model_path, tmp_path):
    def reshape(t):
        t["out.weight"] = torch.zeros(1, 16, 1, 1)

    with pytest.raises(ModelFileError, match="shape"):
        load_model(_rewrite(tiny_model_path, tmp_path, mutate_tensors=reshape))

    def drop(t):
        del t["out.weight"]

    with pytest.raises(ModelFileError, match="missing"):
        load_model(_rewrite(tiny_model_path, tmp_path, mutate_tensors=drop))

    def as_bool(t):  # loaded silently before (bool weights cast to float: 3 localizations instead of 59)
        t["out.weight"] = t["out.weight"] > 0

    with pytest.raises(ModelFileError, match="tensor out.weight is torch.bool, expected torch.float32"):
        load_model(_rewrite(tiny_model_path, tmp_path, mutate_tensors=as_bool))

    def poison(t):
        t["out.weight"] = torch.full_like(t["out.weight"], float("nan"))

    with pytest.raises(ModelFileError, match="NaN"):
        load_model(_rewrite(tiny_model_path, tmp_path, mutate_tensors=poison))


def test_bundled_model_loads():
    loaded = model_io.load_bundled_model()
    assert loaded.info.head == "relu"
    assert loaded.info.acquisition.pixel_size_nm == 100 and loaded.info.acquisition.upsampling == 4
    # it was trained from a checkout (PYTHONPATH=src) and said "unknown" (a review); pyproject said 0.1.0
    assert loaded.info.package_version == "0.1.0"


def test_the_version_recorded_is_the_checkouts_when_run_from_one(monkeypatch):
    """Model files and protocols record the version; a run from a checkout (as on a borrowed
    GPU machine) recorded "unknown" in models and "0.0.0" in protocols, and an installed
    copy of another version would have named the checkout's code (a review)."""
    import importlib.metadata
    import re

    import napari_deepcel0

    root = Path(__file__).resolve().parents[1]
    if Path(napari_deepcel0.__file__).resolve().parents[2] != root:
        pytest.skip("the package imported is not this checkout's src (installed elsewhere)")
    declared = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    assert napari_deepcel0.__version__ == declared

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    for installed in (not_installed, lambda name: "9.9.9"):  # none installed; another version installed
        monkeypatch.setattr(importlib.metadata, "version", installed)
        assert napari_deepcel0._source_version() == declared


def test_an_installed_copy_reports_its_own_version_not_a_pyproject_above_it(tmp_path, monkeypatch):
    """An installed copy (pip install --target vendor, from an older checkout, say) beside
    a pyproject.toml of another version, or of a project that names this one, recorded that
    file's version in models and protocols: only a checkout's src folder is read."""
    import importlib.metadata
    import importlib.util

    import napari_deepcel0

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.1.0")
    for layout in ("vendor", "src"):
        root = tmp_path / layout
        package = root / layout / "napari_deepcel0"
        package.mkdir(parents=True)
        (package / "__init__.py").write_bytes(Path(napari_deepcel0.__file__).read_bytes())
        (root / "pyproject.toml").write_text('[project]\nname = "napari-deepcel0"\nversion = "7.7.7"\n')
        spec = importlib.util.spec_from_file_location(f"copy_in_{layout}", package / "__init__.py")
        copy = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(copy)
        assert copy._source_version() == ("7.7.7" if layout == "src" else "0.1.0"), layout


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(norm_mean=float("nan")), "metadata holds NaN, which is no JSON number"),
    (lambda d: d.update(spike_value=float("inf")), "metadata holds Infinity, which is no JSON number"),
    # loaded, then failed a fine-tune at its first checkpoint: "Out of range float values are not JSON compliant"
    (lambda d: d.update(history=[{"epoch": 1, "loss": float("nan"), "val_loss": float("nan")}]),
     "metadata holds NaN, which is no JSON number"),
    (lambda d: d.update(history=[{"epoch": 1, "loss": "OVERFLOW", "val_loss": 1.0}]),
     "metadata holds 1e999, a number beyond the range of floats"),  # (json.loads made it inf)
    (lambda d: d.update(training=[1, 2]), "'training' should be a dict, not list"),
    (lambda d: d.update(history={"epoch": 1}), "'history' should be a list"),
    (lambda d: d.update(history=[1, 2]), "one record of numbers per epoch"),
    (lambda d: d["training"].update(data=3), "'training.data' should be a dict"),
    # each of these loaded and then crashed summary() or misled the user
    (lambda d: d.update(history=[{"val_loss": "abc"}]), "one record of numbers per epoch"),
    (lambda d: d["training"].update(base_model={"training": "x"}), "'training.base_model.training' should be a dict"),
    (lambda d: d.update(acquisition={}), "the acquisition in the metadata lacks"),  # ISBI defaults stood in
    (lambda d: d.update(head="linear"), "do not belong together"),  # a DeepCEL0 method with a linear head
    (lambda d: d.update(method="bogus"), "do not belong together"),
    (lambda d: d.update(lam=-5.0), "invalid lambda"),
    (lambda d: d.update(notes=[]), "'notes' should be a str"),
    # these raised TypeError or OverflowError tracebacks
    (lambda d: d.update(method=["deepcel0"]), "do not belong together"),
    (lambda d: d.update(norm_std=10**400), "no number where one belongs: norm_std=1000"),
    # these loaded as numbers (float("0.1"), float(True))
    (lambda d: d.update(norm_mean="0.1"), "no number where one belongs: norm_mean='0.1'"),
    (lambda d: d.update(lam=True), "no number where one belongs: lam=True"),
    (lambda d: d["acquisition"].update(pixel_size_nm=10**400), "incomplete or invalid metadata"),
    (lambda d: d.update(history=[{"epoch": 1, "val_loss": 10**400}]), "one record of numbers per epoch"),
    (lambda d: d.update(history=[{"epoch": True}]), "one record of numbers per epoch"),
    (lambda d: d.update(format_version=True), "invalid format version True"),  # read as version 1
    # these loaded, and every map was NaN: no localization, no word (bad-input review)
    (lambda d: d.update(norm_std=1e-300), r"invalid normalisation in metadata \(mean [0-9.]+, std 1e-300\)"),
    (lambda d: d.update(norm_mean=1e300), r"invalid normalisation in metadata \(mean 1e\+300"),
    (lambda d: d.update(norm_std=0.7), "a std of at most 0.5"),
])
def test_hand_edited_metadata_is_checked(mutate, message, tiny_model_path, tmp_path):
    # before: a NaN mean loaded and silently found nothing; a bad history crashed summary()
    with pytest.raises(ModelFileError, match=message):
        load_model(_rewrite(tiny_model_path, tmp_path, mutate))


def test_a_flipped_byte_in_the_weights_is_caught(tiny_model_path, tmp_path):
    """safetensors has no checksum: a changed weight that stays finite loaded unnoticed."""
    data = bytearray(tiny_model_path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes; still a finite float32
    corrupt = tmp_path / "flipped.safetensors"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="do not match their checksum"):
        load_model(corrupt)
    load_model(tiny_model_path)  # the intact file loads


@pytest.mark.parametrize("edit, warned", [
    (lambda d: d["acquisition"].update(upsampling=3), True),  # fed 3x upsampled frames it never saw (a review)
    (lambda d: d.update(spike_value=1e30), True),  # the default threshold 1e29: it found nothing
    (lambda d: d.update(notes="my best model"), False),  # free text, which may be edited
    (lambda d: None, False),  # the same settings written with other spacing
])
def test_edited_settings_warn_when_the_model_is_read(edit, warned, tiny_model_path, tmp_path):
    """The weights' checksum did not cover the metadata: a file whose settings were edited
    loaded with them without a word."""
    import warnings

    from safetensors import safe_open

    from conftest import write_edited_model

    with safe_open(str(tiny_model_path), framework="pt") as f:
        assert set(f.metadata()) == {model_io.METADATA_KEY, model_io.WEIGHTS_SHA256_KEY, model_io.METADATA_SHA256_KEY}
    out = write_edited_model(tiny_model_path, tmp_path / "edited.safetensors", edit, indent=1)
    with safe_open(str(out), framework="pt") as f:
        d = json.loads(f.metadata()[model_io.METADATA_KEY])  # as written, not as loaded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(out)
    said = [str(w.message) for w in caught if issubclass(w.category, model_io.EditedMetadataWarning)]
    assert len(said) == (1 if warned else 0)
    if warned:
        assert said[0].startswith(f"{out}: the model's settings were edited after it was written")
        with warnings.catch_warnings(record=True) as again:  # once per file and edit (a CEL0 comparison read
            warnings.simplefilter("always")  # its model three times, a fine-tune twice: a review)
            read_model_info(out)
            load_model(Path(str(out).replace(str(tmp_path), str(tmp_path) + "/.")))  # another spelling
        assert not [w for w in again if issubclass(w.category, model_io.EditedMetadataWarning)]
    assert loaded.info.notes == d.get("notes", "")


def test_absurdly_nested_metadata_is_a_clear_error(tiny_model_path, tmp_path):
    from safetensors import safe_open

    with safe_open(str(tiny_model_path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    out = tmp_path / "nested.safetensors"
    save_file(tensors, str(out), metadata={model_io.METADATA_KEY: "[" * 100_000 + "]" * 100_000})
    with pytest.raises(ModelFileError, match="corrupt metadata"):  # was an uncaught RecursionError
        read_model_info(out)
    save_file(tensors, str(out), metadata={model_io.METADATA_KEY: "1" * 5000})
    with pytest.raises(ModelFileError, match=r"nested\.safetensors: corrupt metadata"):  # a ValueError without the file
        read_model_info(out)


@pytest.mark.parametrize("field", ["pixel_size_nm", "fwhm_nm", "upsampling"])
def test_a_model_without_one_of_its_acquisition_settings_is_refused(field, tiny_model_path, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_model_path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    d = json.loads(meta[model_io.METADATA_KEY])
    del d["acquisition"][field]
    out = tmp_path / "m.safetensors"
    save_file(tensors, str(out), metadata={model_io.METADATA_KEY: json.dumps(d)})
    with pytest.raises(model_io.ModelFileError, match=re.escape(f"lacks ['{field}']")):
        model_io.load_model(out)


def test_a_failed_model_save_leaves_the_existing_model_untouched(tiny_model_path, tmp_path, monkeypatch):
    loaded = model_io.load_model(tiny_model_path)
    target = tmp_path / "model.safetensors"
    target.write_bytes(tiny_model_path.read_bytes())
    before = target.read_bytes()

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(model_io, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        model_io.save_model(target, loaded.network, loaded.info)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_the_checkpoint_stays_when_the_final_save_fails(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    checkpoint = model_io.checkpoint_path(target)
    checkpoint.write_bytes(b"best so far")

    def broken(path, result, notes=""):
        raise OSError("disk full")

    monkeypatch.setattr(model_io, "save_training_result", broken)
    with pytest.raises(OSError, match="disk full"):
        model_io.save_final(target, None)
    assert checkpoint.read_bytes() == b"best so far"


def test_a_folder_is_no_model_file(tmp_path):
    """A folder was reported as "no such model file" (bad-input review)."""
    folder = tmp_path / "m.safetensors"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="is a folder, not a model file"):
        read_model_info(folder)


# ---- found missing by mutation testing (a second round, 2026-11-28): each fails on the bug it names
@pytest.fixture(scope="module")
def tiny_result():
    from napari_deepcel0.core.training import TrainingConfig, train
    from napari_deepcel0.core.training_data import TrainingDataConfig

    config = TrainingConfig(epochs=1, max_steps_per_epoch=1, batch_size=4, device="cpu", precision="fp32",
                            data=TrainingDataConfig(n_patches=24, n_frames=3, frame_size=32, patch_size=16))
    return train(ISBI2013, config)


def test_the_final_save_removes_the_runs_checkpoint(tiny_result, tmp_path):
    """M11 (model_io.py:213, the unlink in save_final dropped): a finished run left its
    name.partial.safetensors beside the model, and the next run to the same file was
    refused ("exists ... where this run would keep its checkpoints"). Only the Qt widget
    test noticed."""
    from napari_deepcel0.core.model_io import check_training_output, checkpoint_path, save_checkpoint, save_final

    out = tmp_path / "m.safetensors"
    save_checkpoint(out, tiny_result)
    assert checkpoint_path(out).is_file()
    save_final(out, tiny_result)
    assert out.is_file() and not checkpoint_path(out).exists()
    check_training_output(out)  # a second run to the same file may start


def test_a_loaded_model_is_in_evaluation_mode(tiny_model_path):
    """M16 (model_io.py:368, ``net.eval()`` dropped): load_model promises a network in
    eval mode; in train mode its BatchNorm uses each batch's statistics (a Python user
    calling loaded.network(x) gets maps that depend on the batch)."""
    from napari_deepcel0.core.model_io import load_model

    net = load_model(tiny_model_path).network
    assert not net.training and not any(m.training for m in net.modules())


def test_a_saved_training_result_keeps_its_numbers(tiny_result, tmp_path):
    """M13 (model_io.py:169, norm_mean/norm_std swapped in save_training_result): every
    model trained and saved got the other's standardisation (both stay within the
    loader's ranges), so it saw shifted, rescaled frames at inference. No test compared a
    saved model's metadata with the TrainingResult it came from."""
    from napari_deepcel0.core.model_io import load_model, save_training_result

    info = load_model(save_training_result(tmp_path / "m.safetensors", tiny_result)).info
    assert (info.norm_mean, info.norm_std) == (tiny_result.norm_mean, tiny_result.norm_std)
    assert (info.target_scale, info.spike_value) == (tiny_result.target_scale, tiny_result.spike_value)
    assert info.acquisition == tiny_result.acquisition and info.lam == tiny_result.config.lam
    assert info.history == tiny_result.history and info.training["best_epoch"] == tiny_result.best_epoch


def test_a_folder_where_the_checkpoint_goes_is_refused_before_the_run(tmp_path):
    """M18 (model_io.py:197, ``exists()`` -> ``is_file()``): a folder named
    m.partial.safetensors let the run start, simulate its training set and fail at its
    first checkpoint."""
    from napari_deepcel0.core.model_io import check_training_output, checkpoint_path

    out = tmp_path / "m.safetensors"
    checkpoint_path(out).mkdir()
    with pytest.raises(ValueError, match=r"exists \(a folder\)"):
        check_training_output(out)
