"""Speed and memory: DeepCEL0 inference, CEL0, training throughput, and a scaling check.

    python benchmarks/speed.py [--device cpu|cuda] [--scaling 100 1000 10000] [--skip-cel0]
    python benchmarks/speed.py --odd-sizes [--device cpu|cuda]
    python benchmarks/speed.py --large-frames [--device cpu|cuda]
    python benchmarks/speed.py --outlier-threads

Measures on 64 x 64 camera frames (256 x 256 fine grid, L = 4):
- the bare network (normalised frames already on the device) in fp32 and bf16;
- end to end: TIFF on disk -> read -> normalise -> network -> peak extraction -> table;
- CEL0-IRL1 seconds per frame with default stopping (iterations actually used);
- training patches/s (26 x 26 patches, batch 16);
- scaling: frames/s and peak memory (RSS) for stacks of 100, 1,000 and 10,000 frames,
  each in a fresh process, streaming from a TIFF file; for the largest also without the
  outlier steps (``--keep-outlier-pixels``) and, on a GPU, with them read ahead by one
  background thread instead of several, and not read ahead (``prefetch``, on by default
  on a GPU, off on a CPU, where those runs would repeat the default): what each costs.
Writes benchmarks/results/speed_<device>.json.

``--odd-sizes``: only the network (``DeepLocalizer.maps``: normalise, upsample, network)
on 32 frames of 64 x 64, 64 x 63 and 63 x 63 camera pixels, printed: a side that is not
a multiple of 8 fine pixels costs a second pass (core/network.py).

``--outlier-threads``: the outlier steps alone on 1, 2 and ``PREFETCH_WORKERS`` threads
(ms a frame, printed): how much the prefetch threads can take on at once.

``--large-frames``: end to end on 16 frames of 256 x 256 camera pixels with the default
batch size (16 frames of 64 x 64 pixels: here one frame a pass), then on 2 frames of
1024 x 1024 (the network runs in tiles of 256 x 256 camera pixels), printed: frames/s and
the rise of the process's peak memory (RSS), which must not grow with the frame size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, command, machine, write_json

from napari_deepcel0.core import predict
from napari_deepcel0.core.acquisition import ISBI2013
from napari_deepcel0.core.devices import autocast, resolve_device
from napari_deepcel0.core.io import read_stack, write_tiff
from napari_deepcel0.core.network import upsample_nearest
from napari_deepcel0.core.predict import DeepLocalizer, localize
from napari_deepcel0.core.simulate import simulate_stack


def timed(fn, repeat=3):
    fn()  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def bare_network(device, precision, batch, frames):
    model = DeepLocalizer(device=device, precision=precision)
    x = upsample_nearest(model.normalise(frames[:batch]), 4).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad(), autocast(model.device, model.precision):
            model.network(x)

    return batch / timed(run)


def end_to_end(device, precision, batch, path, n):
    model = DeepLocalizer(device=device, precision=precision, batch_size=batch)
    stack = read_stack(path)
    t0 = time.perf_counter()
    localize(model, stack, frames=f"1-{n}")
    return n / (time.perf_counter() - t0)


def cel0_speed(device, frames):
    from napari_deepcel0.core.cel0 import DEFAULT_LAM, Cel0Localizer

    out = {"lam": DEFAULT_LAM}
    for n in (1, 4):
        cel0 = Cel0Localizer(ISBI2013, lam=DEFAULT_LAM, device=device, batch_size=n)
        t0 = time.perf_counter()
        cel0.maps(frames[:n])
        dt = time.perf_counter() - t0
        recs = cel0.last_records
        out[f"batch_{n}"] = {
            "seconds_per_frame": round(dt / n, 3), "frames_per_s": round(n / dt, 3),
            "outer_iterations": [r.outer_iterations for r in recs], "inner_iterations": [r.inner_iterations for r in recs],
        }
    return out


def training_speed(device, precision):
    from napari_deepcel0.core.training import TrainingConfig, steps_between_loss_reads, train
    from napari_deepcel0.core.training_data import TrainingDataConfig

    # progress reports come when the loss is read (every step on a CPU, every few on a
    # GPU, where the device has then caught up): time from the first report on
    every = steps_between_loss_reads(torch.device(device))
    steps = 12 if every == 1 else 4 * every
    cfg = TrainingConfig(epochs=1, max_steps_per_epoch=steps, batch_size=16, device=device, precision=precision,
                         val_fraction=0.05, data=TrainingDataConfig(n_patches=16 * steps + 40, n_frames=20))
    reports = []  # (step, time)

    def progress(p):
        if p.stage == "train":
            reports.append((p.step, time.perf_counter()))

    train(ISBI2013, cfg, progress=progress)
    (s0, t0), (s1, t1) = reports[1 if every == 1 else 0], reports[-1]  # skip warm-up
    return 16 * (s1 - s0) / (t1 - t0)


#: the scaling runs: the default, then without the outlier steps, then with them read ahead by one
#: thread instead of predict.PREFETCH_WORKERS, then with them and no reading ahead
SCALING_MODES = {"default": {}, "no outlier steps": {"fix_outlier_pixels": False},
                 "outlier steps, one prefetch thread": {"prefetch_workers": 1},
                 "outlier steps, no prefetch": {"prefetch": False}}


def scaling_child(path: str, n: int, device: str, precision: str, mode: str) -> None:
    """Run in a fresh process: stream n frames from path, print JSON."""
    options = dict(SCALING_MODES[mode])
    predict.PREFETCH_WORKERS = options.pop("prefetch_workers", predict.PREFETCH_WORKERS)
    model = DeepLocalizer(device=device, precision=precision, batch_size=32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    table = localize(model, read_stack(path), frames=f"1-{n}", **options)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prefetching = options.get("prefetch", torch.device(device).type != "cpu")
    print(json.dumps({"frames": n, "mode": mode, "prefetch_workers": predict.PREFETCH_WORKERS if prefetching else 0,
                      "seconds": round(dt, 2), "frames_per_s": round(n / dt, 2),
                      "peak_rss_mb": round(peak / 1024, 1), "rss_before_mb": round(rss0 / 1024, 1),
                      "localizations": len(table)}))


def outlier_threads() -> None:
    """The outlier steps (frames.fix_outliers) on 1, 2, ... threads, as the prefetch
    threads run them: ms per 64 x 64 frame, best of 3 (printed)."""
    from concurrent.futures import ThreadPoolExecutor

    from napari_deepcel0.core.frames import fix_outliers

    rng = np.random.default_rng(0)
    blocks = [rng.poisson(110.0, (32, 64, 64)).astype(np.float32) for _ in range(40)]
    sigma_px = ISBI2013.sigma_px
    for threads in sorted({1, 2, predict.PREFETCH_WORKERS}):
        def run():
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda b: fix_outliers(b, sigma_px), blocks))

        ms = 1e3 * timed(run) / (len(blocks) * len(blocks[0]))
        print(f"outlier steps, {threads} thread{'s' if threads > 1 else ''}: {ms:.3f} ms a frame", flush=True)


def odd_sizes(device) -> None:
    model = DeepLocalizer(device=device)
    rng = np.random.default_rng(0)
    for shape in [(64, 64), (64, 63), (63, 63)]:
        frames = rng.poisson(110.0, (32,) + shape).astype(np.float32)

        def run():
            for i in range(0, len(frames), 16):
                model.maps(frames[i:i + 16])

        print(f"{shape[0]} x {shape[1]}: {len(frames) / timed(run, repeat=2):.1f} frames/s ({model.precision})",
              flush=True)


def large_frames(device) -> None:
    model = DeepLocalizer(device=device)
    for n, side in [(16, 256), (2, 1024)]:
        frames = np.random.default_rng(0).poisson(110.0, (n, side, side)).astype(np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        table = localize(model, frames)
        seconds = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n} frames of {side} x {side} ({model.precision}): {len(frames) / seconds:.3g} frames/s, peak RSS "
              f"{before:.0f} -> {after:.0f} MB (+{after - before:.0f} MB), {len(table)} localizations", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--scaling", type=int, nargs="*", default=[100, 1000, 10000])
    p.add_argument("--skip-cel0", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--out", help="JSON to write (default benchmarks/results/speed_<device>.json)")
    p.add_argument("--odd-sizes", action="store_true", help="only the network on odd-sized frames (printed)")
    p.add_argument("--large-frames", action="store_true", help="only 256 x 256 and 1024 x 1024 frames: speed and memory (printed)")
    p.add_argument("--outlier-threads", action="store_true",
                   help="only the outlier steps on 1, 2, ... threads, as the prefetch threads run them (printed)")
    p.add_argument("--child", nargs=5, metavar=("PATH", "N", "DEVICE", "PRECISION", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        scaling_child(args.child[0], int(args.child[1]), args.child[2], args.child[3], args.child[4])
        return
    device = resolve_device(args.device)
    dev = device.type
    if args.odd_sizes:
        odd_sizes(dev)
        return
    if args.large_frames:
        large_frames(dev)
        return
    if args.outlier_threads:
        outlier_threads()
        return
    frames, _ = simulate_stack(n_frames=64, shape=(64, 64), seed=0)
    res: dict = {"device": dev}
    tmp = Path(tempfile.mkdtemp())
    small = write_tiff(tmp / "small.tif", np.clip(frames, 0, 65535).astype(np.uint16), 100.0)
    for precision in ("fp32", "bf16"):
        batch = 128 if dev == "cuda" else 16
        res[f"network_{precision}_frames_per_s"] = round(bare_network(dev, precision, batch, frames), 2)
        res[f"end_to_end_{precision}_frames_per_s"] = round(end_to_end(dev, precision, batch, small, 64), 2)
        print(f"{precision}: bare network {res[f'network_{precision}_frames_per_s']} frames/s, end to end "
              f"{res[f'end_to_end_{precision}_frames_per_s']} frames/s", flush=True)
    if not args.skip_training:
        for precision in ("fp32", "bf16"):
            res[f"training_{precision}_patches_per_s"] = round(training_speed(dev, precision), 1)
            print(f"training {precision}: {res[f'training_{precision}_patches_per_s']} patches/s", flush=True)
    if not args.skip_cel0:
        res["cel0"] = cel0_speed(dev, frames)
        print("CEL0:", json.dumps(res["cel0"]), flush=True)
    if args.scaling:
        n_max = max(args.scaling)
        big = tmp / "big.tif"
        reps = int(np.ceil(n_max / len(frames)))
        data = np.clip(np.tile(frames, (reps, 1, 1))[:n_max], 0, 65535).astype(np.uint16)
        write_tiff(big, data, 100.0)
        del data
        res["scaling"] = []
        runs = [(n, "default") for n in args.scaling] + [(n_max, mode) for mode in list(SCALING_MODES)[1:]
                                                         if dev != "cpu" or "prefetch" not in mode]
        for n, mode in runs:
            out = subprocess.run([sys.executable, __file__, "--child", str(big), str(n), dev, "auto", mode],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            res["scaling"].append(row)
            print("scaling:", row, flush=True)
    path = write_json(Path(args.out) if args.out else RESULTS / f"speed_{dev}.json", {"machine": machine(), "command": command(), "results": res})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
