"""The training API as a script uses it: clear errors for the usual slips, and
``train(..., time_limit_s=...)`` (real tiny trainings of a few steps, nothing mocked)."""

import math
import threading
import time

import numpy as np
import pytest

from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.training import RUN_FACTS, TrainingConfig, train
from napari_deepcel0.core.training_data import RANGE_FIELDS, TrainingDataConfig, make_training_set

TINY_DATA = TrainingDataConfig(n_patches=24, n_frames=3, frame_size=32, patch_size=16)


def tiny(**kw):
    base = dict(epochs=1, batch_size=4, device="cpu", precision="fp32", data=TINY_DATA)
    return TrainingConfig(**{**base, **kw})


# ----------------------------------------------------------------- the data's ranges
@pytest.mark.parametrize("name", RANGE_FIELDS)
def test_a_single_number_for_a_range_says_how_to_give_a_fixed_value(name):
    # TrainingDataConfig(photons=2000) failed with "cannot unpack non-iterable int object" (review)
    with pytest.raises(ValueError, match=rf"^{name} takes a \(low, high\) range, got the single number 5: "
                                         rf"{name}=\(5, 5\) for a fixed value$"):
        TrainingDataConfig(**{name: 5})


@pytest.mark.parametrize("name", RANGE_FIELDS)
@pytest.mark.parametrize("value", [(1.0, 2.0, 3.0), (4.0,), "ab", None, (1.0, "2")])
def test_a_range_of_another_length_or_kind_is_refused_by_name(name, value):
    with pytest.raises(ValueError, match=rf"^{name} takes a \(low, high\) range of two numbers \(low == high for a "
                                         r"fixed value\), got "):
        TrainingDataConfig(**{name: value})


def test_a_fixed_range_and_an_array_are_taken_as_pairs_of_floats():
    cfg = TrainingDataConfig(photons=(2000, 2000), background_photons=np.array([5, 10]))
    assert cfg.photons == (2000.0, 2000.0) and cfg.background_photons == (5.0, 10.0)
    assert all(type(v) is float for name in RANGE_FIELDS for v in getattr(cfg, name))
    # a model's metadata holds lists: they come back as the same pairs
    assert TrainingDataConfig.from_dict({k: list(v) if isinstance(v, tuple) else v
                                         for k, v in cfg.to_dict().items()}) == cfg


def test_a_range_for_a_one_number_field_is_refused_by_name():
    # (it failed with "'>' not supported between instances of 'tuple' and 'int'")
    with pytest.raises(ValueError, match=r"^density_per_um2 takes one number, got \(2, 8\)$"):
        TrainingDataConfig(density_per_um2=(2, 8))


def test_every_field_of_both_configs_is_documented():
    import dataclasses

    for cls in (TrainingDataConfig, TrainingConfig):
        doc = cls.__doc__
        assert "Attributes\n    ----------" in doc
        for f in dataclasses.fields(cls):
            assert f"\n    {f.name} : " in doc, f"{cls.__name__}.{f.name} is not documented"


# ------------------------------------------------------------ arguments of the wrong kind
def test_train_without_the_acquisition_says_how_to_call_it():
    # train(TrainingConfig()) failed deep inside: "'TrainingConfig' object has no attribute 'upsampling'"
    t0 = time.perf_counter()
    with pytest.raises(TypeError, match=r"^train takes the acquisition first: train\(Acquisition\(\.\.\.\), "
                                        r"TrainingConfig\(\.\.\.\)\), got a TrainingConfig$"):
        train(TrainingConfig())
    assert time.perf_counter() - t0 < 5  # at once, not after simulating 200 frames


def test_train_with_the_data_config_says_where_it_goes():
    with pytest.raises(TypeError, match=r"train takes a TrainingConfig second: .*TrainingConfig\(data="
                                        r"TrainingDataConfig\(\.\.\.\)\).*got a TrainingDataConfig$"):
        train(ISBI2013, TINY_DATA)
    with pytest.raises(TypeError, match=r"training_set must be a TrainingSet .*got a dict$"):
        train(ISBI2013, tiny(), training_set={})


def test_make_training_set_names_its_arguments():
    with pytest.raises(TypeError, match=r"^make_training_set takes the acquisition first: make_training_set\("
                                        r"Acquisition\(\.\.\.\), TrainingDataConfig\(\.\.\.\)\), got a "
                                        r"TrainingDataConfig$"):
        make_training_set(TINY_DATA)
    with pytest.raises(TypeError, match=r"make_training_set takes a TrainingDataConfig second \(a TrainingConfig's: "
                                        r"make_training_set\(acq, config\.data\)\), got a TrainingConfig$"):
        make_training_set(ISBI2013, tiny())


def test_a_training_config_takes_its_data_as_a_training_data_config():
    with pytest.raises(TypeError, match=r"data must be a TrainingDataConfig: TrainingConfig\(data="
                                        r"TrainingDataConfig\(\.\.\.\)\), got a dict"):
        TrainingConfig(data={"n_patches": 100})


# ------------------------------------------------------------------------- time limit
@pytest.mark.parametrize("limit", [0, -1.0, math.nan, math.inf, "60", True])
def test_a_time_limit_must_be_a_positive_finite_number_of_seconds(limit):
    with pytest.raises(ValueError, match=r"time_limit_s must be a positive finite number of seconds or None"):
        train(ISBI2013, tiny(), time_limit_s=limit)


def test_a_time_limit_already_passed_still_trains_one_step_and_returns_a_model():
    """The limit is checked before every step but the first: a simulation that outlasts
    it leaves a one-step model, as ``deepcel0 train --time-limit`` did, not Cancelled."""
    seen = []
    result = train(ISBI2013, tiny(epochs=50), progress=seen.append, time_limit_s=1e-9)
    assert result.cancelled and result.stopped_at_time_limit
    assert [h["steps"] for h in result.history] == [1] and result.best_epoch == 1
    stages = [p.stage for p in seen]
    assert stages.count("time_limit") == 1
    # reported before the first epoch's stopped report, as the step after the first begins
    stop = seen[stages.index("time_limit")]
    assert (stop.epoch, stop.step) == (1, 1) and stop.elapsed_s > 1e-9
    (epoch,) = [p for p in seen if p.stage == "epoch"]
    assert epoch.stopped and epoch.step == 1 and stages.index("time_limit") < stages.index("epoch")
    assert not result.model.training


def test_a_time_limit_stops_a_later_epoch_and_keeps_the_best_model_so_far():
    """The run waits at the end of epoch 2 until the limit has passed: epoch 3 stops
    before its first step, is neither validated nor kept (as after a cancel), and the
    result is the best of epochs 1-2."""
    limit_s = 3.0
    seen, slow = [], []

    def progress(p):
        seen.append(p)
        if p.stage == "epoch" and p.epoch == 2:
            if p.elapsed_s >= limit_s:  # a machine too busy for two tiny epochs in 3 s
                slow.append(p.elapsed_s)
            time.sleep(max(0.0, limit_s - p.elapsed_s) + 0.05)

    result = train(ISBI2013, tiny(epochs=20, max_steps_per_epoch=2), progress=progress, time_limit_s=limit_s)
    if slow:
        pytest.skip(f"two tiny epochs took {slow[0]:.1f} s here, past the limit")
    assert result.cancelled and result.stopped_at_time_limit
    assert [h["epoch"] for h in result.history] == [1, 2] and result.best_epoch in (1, 2)
    assert result.seconds > limit_s
    stop = [p for p in seen if p.stage == "time_limit"]
    assert [(p.epoch, p.step) for p in stop] == [(3, 0)]
    assert [p.epoch for p in seen if p.stage == "epoch"] == [1, 2]  # no report of the stopped epoch 3
    # the time left shown is at most what the limit leaves (it showed the 20 epochs' time)
    assert all(p.remaining_s <= limit_s for p in seen if p.remaining_s is not None)


def test_a_run_within_its_time_limit_is_not_marked_stopped():
    result = train(ISBI2013, tiny(epochs=2, max_steps_per_epoch=1), time_limit_s=600)
    assert not result.cancelled and not result.stopped_at_time_limit and len(result.history) == 2


def test_a_cancel_before_the_limit_is_a_cancel_not_the_time_limit():
    stop = threading.Event()
    result = train(ISBI2013, tiny(epochs=3), progress=lambda p: stop.set() if p.stage == "train" else None,
                   cancel=stop, time_limit_s=600)
    assert result.cancelled and not result.stopped_at_time_limit
    assert [h["steps"] for h in result.history] == [1]


def test_a_model_stopped_at_the_time_limit_saves_loads_and_localizes(tmp_path):
    from napari_deepcel0.core.model_io import load_model, save_training_result
    from napari_deepcel0.core.predict import DeepLocalizer
    from napari_deepcel0.core.simulate import simulate_stack

    result = train(ISBI2013, tiny(epochs=50), time_limit_s=1e-9)
    assert result.stopped_at_time_limit
    path = save_training_result(tmp_path / "m.safetensors", result, notes="time limit")
    info = load_model(path).info
    assert info.training["cancelled"] and info.history == result.history and info.notes == "time limit"
    # the file's recipe trains again (the facts of the run are left out, this flag too
    # should a model file come to record it)
    again = TrainingConfig.from_dict({**info.training, "stopped_at_time_limit": True})
    assert again == result.config and "stopped_at_time_limit" in RUN_FACTS
    frames, _ = simulate_stack(n_frames=1, shape=(32, 32), acq=ISBI2013, seed=2)
    maps, _ = DeepLocalizer(path, device="cpu", precision="fp32").maps(frames.astype(np.float32))
    assert tuple(maps.shape) == (1, 128, 128) and bool((maps >= 0).all())


def test_the_command_line_says_so_before_the_stopped_epoch(tmp_path, capsys):
    """``deepcel0 train --time-limit`` keeps its messages, now from train()'s report."""
    from napari_deepcel0.cli import main
    from napari_deepcel0.core.model_io import load_model

    out = tmp_path / "m.safetensors"
    code = main(["train", "--out", str(out), "--epochs", "50", "--patches", "64", "--sim-frames", "2",
                 "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "--time-limit", "1e-9"])
    captured = capsys.readouterr()
    assert code == 0 and [h["steps"] for h in load_model(out).info.history] == [1]
    limit = captured.err.index("the time limit of 1e-09 min is reached: stopping and keeping the best model so far")
    assert limit < captured.err.index("epoch 1/50 (stopped at step 1/")
    assert ", stopped at the time limit)" in captured.out
