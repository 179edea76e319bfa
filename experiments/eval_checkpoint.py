"""Score a checkpoint the way the README reports it: clip level on a split, frame level on whole songs.

Clip level: :meth:`activity.api.Detector.score_split` on ``ROOT/slakh`` (what ``python -m activity.infer``
prints: the course's report, tuned thresholds).
Frame level: every song in ``ROOT/test_track`` run whole through the model, its 75 Hz probabilities
thresholded and scored against the MIDI truth; rolls of all songs are concatenated before scoring
(micro and macro F1 over the nine classes).

    .venv/bin/python experiments/eval_checkpoint.py --ckpt checkpoints/demo --root data/synth-slakh
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--root", type=Path, default=REPO / "data" / "synth-slakh",
                   help="a synthetic set (slakh/ and test_track/) or the course's folder with both")
    p.add_argument("--split", default="test", help="split of ROOT/slakh for the clip-level report")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from activity.api import Detector

    start = time.perf_counter()
    detector = Detector(args.ckpt)
    clips = detector.score_split(args.root / "slakh", args.split)
    songs = detector.score_songs(args.root / "test_track")
    print(clips.report)
    print(f"clip level ({args.split}, {len(clips.index)} clips): macro-F1 {clips.scores['macro_f1']:.4f} "
          f"micro-F1 {clips.scores['micro_f1']:.4f} mAP {clips.scores['mAP']:.4f}")
    print(f"frame level (75 Hz, {songs.songs} whole songs): macro-F1 {songs.scores['macro_f1']:.4f} "
          f"micro-F1 {songs.scores['micro_f1']:.4f}")
    print(f"took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
