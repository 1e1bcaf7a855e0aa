"""Plot a model file's training history (loss, validation loss, learning rate).

A fine-tuned model carries its base model's history (and that one its own): every
stage is drawn, each after a dotted line (its validation set differs, so the curve jumps).

    python benchmarks/training_curve.py MODEL.safetensors [--out docs/images/training_curve.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import IMAGES  # noqa: E402

from napari_deepcel0.core.model_io import read_model_info  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--out", default=str(IMAGES / "training_curve.png"))
    args = p.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for path in args.models:
        info = read_model_info(path)
        label = f"{info.method} ({path.split('/')[-1]})"
        stages = [stage["history"] for stage in info.stages()]
        offset = 0
        for i, h in enumerate(stages):
            epochs = [offset + e["epoch"] for e in h]
            tag = f" stage {i + 1}" if len(stages) > 1 else ""
            axes[0].plot(epochs, [e["loss"] for e in h], "-", label=f"{label}{tag} train")
            axes[0].plot(epochs, [e["val_loss"] for e in h], "--", label=f"{label}{tag} validation")
            axes[1].plot(epochs, [e["lr"] for e in h], label=f"{label}{tag}")
            if i:
                for ax in axes:
                    ax.axvline(offset + 0.5, color="grey", ls=":")
            offset = epochs[-1]
            minutes = h[-1].get("seconds", 0) / 60
            print(f"{path}{tag}: {len(h)} epochs, best val {min(e['val_loss'] for e in h):.4f}, {minutes:.0f} min")
        print(f"{path}: best epoch {info.training.get('best_epoch')} of the last stage, on "
              f"{info.training.get('device_used')} ({info.training.get('precision_used')})")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss (blurred L2 + sparsity)")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="epoch", ylabel="learning rate", yscale="log", title="learning rate")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
