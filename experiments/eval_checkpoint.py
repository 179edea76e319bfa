"""Score a checkpoint the way the README reports it: clip level on a split, frame level on whole songs.

Clip level: ``python -m activity.infer`` on ``ROOT/slakh`` (the course's report, tuned thresholds).
Frame level: every song in ``ROOT/test_track`` run whole through the model, its 75 Hz probabilities
thresholded and scored against the MIDI truth; rolls of all songs are concatenated before scoring
(micro and macro F1 over the nine classes).

    .venv/bin/python experiments/eval_checkpoint.py --ckpt checkpoints/demo --root data/synth-slakh
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
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
    import numpy as np

    from activity import infer
    from activity.evaluate import frame_scores
    from activity.plotting import available_tracks, predict_track

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        code = infer.main(["--ckpt", str(args.ckpt), "--data", str(args.root / "slakh"), "--split", args.split,
                           "--out", tmp])
        if code:
            return code
        report = json.loads((Path(tmp) / f"report_{args.split}.json").read_text())
    model, device = infer.load_model(args.ckpt, "auto")
    thresholds = infer.thresholds_of(model, None)
    track_dir = args.root / "test_track"
    truths, probs = [], []
    for track in available_tracks(track_dir):
        result = predict_track(model, track_dir, track, thresholds, device=device)
        if result.frame_truth is not None:
            truths.append(result.frame_truth)
            probs.append(result.frame_probs)
    frames = frame_scores(np.concatenate(truths, axis=1), np.concatenate(probs, axis=1), thresholds)
    print(f"\nclip level ({args.split}, {report['clips']} clips): macro-F1 {report['macro_f1']:.4f} "
          f"micro-F1 {report['micro_f1']:.4f} mAP {report['mAP']:.4f}")
    print(f"frame level (75 Hz, {len(truths)} whole songs): macro-F1 {frames['macro_f1']:.4f} "
          f"micro-F1 {frames['micro_f1']:.4f}")
    print(f"took {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
