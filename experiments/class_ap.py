"""Average precision of each class on one split: which classes a checkpoint ranks well, threshold-free.

    .venv/bin/python experiments/class_ap.py --ckpt checkpoints/demo --data data/synth-slakh/slakh --split test

Also prints the clip BCE, and the macro-F1 with the checkpoint's thresholds beside the macro-F1 with
thresholds tuned on this very split: a ceiling of what thresholds alone could give, never a way to
choose them (thresholds are tuned on validation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synth-slakh" / "slakh", help="the course's slakh/ layout")
    p.add_argument("--split", default="test", help="split to score")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from activity.constants import CLASSES
    from activity.datasets import read_split
    from activity.evaluate import average_precisions, clip_loss, clip_scores, tune_thresholds
    from activity.api import Detector

    detector = Detector(args.ckpt)
    index = read_split(args.data, args.split)
    probs = detector.split_probs(index)
    scores = average_precisions(index.labels, probs)
    print(f"{args.ckpt} on {len(index)} {args.split} clips of {args.data}")
    shipped = clip_scores(index.labels, probs, detector.thresholds)
    ceiling = clip_scores(index.labels, probs, tune_thresholds(index.labels, probs))
    print(f"{'class':18s} {'share':>6s} {'AP':>6s} {'F1':>6s} {'F1 at split-tuned thresholds':>29s}")
    for c, (name, share, ap) in enumerate(zip(CLASSES, index.labels.mean(axis=0), scores)):
        print(f"{name:18s} {share:6.3f} {ap:6.3f} {shipped['per_class_f1'][c]:6.3f} {ceiling['per_class_f1'][c]:29.3f}")
    print(f"mAP {shipped['mAP']:.4f}, clip BCE {clip_loss(index.labels, probs):.4f}, macro-F1 "
          f"{shipped['macro_f1']:.4f} (with thresholds tuned on this split: {ceiling['macro_f1']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
