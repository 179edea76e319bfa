"""How far a dtype's report on a split is from float32's: the same checkpoint, split and thresholds.

    .venv/bin/python experiments/report_diff.py --data DIR/slakh [--split test] [--dtypes int8 bf16]

Scores the split with ``--dtype fp32`` and with each of ``--dtypes`` (``activity.api.Detector``, in one
process, one model per dtype), each both as the fast path computes it (``recheck=False``) and as
``activity.infer`` reports it (the clips near a threshold scored again in float32), and prints, for
each, micro-F1, macro-F1 and mAP, the largest difference of any number in the classification report
(precision, recall, F1 per class and averages) from float32's, the largest clip-probability
difference, how many clip decisions flip, how many clips were re-checked and the time. ``auto`` may
only pick a path whose report stays within 0.003 of float32's on ``make demo``'s split (issue 31).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=ROOT / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--data", type=Path, required=True, help="the course's slakh/ folder of a split")
    p.add_argument("--split", default="test", help="which split to score")
    p.add_argument("--dtypes", nargs="+", default=["int8"], help="dtypes to compare with fp32")
    return p


def report_numbers(report: dict) -> dict[str, float]:
    return {f"{row}/{key}": float(value) for row, values in report.items() if isinstance(values, dict)
            for key, value in values.items() if key != "support"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np

    from activity.api import Detector
    from activity.datasets import read_split

    index = read_split(args.data, args.split)
    results, seconds = {}, {}  # times include building and checking each fast copy, as a user's run does
    runs = [("fp32", "fp32", False)]
    for dtype in args.dtypes:
        runs += [(f"{dtype}, fast path only", dtype, False), (f"{dtype}, re-checked (as reported)", dtype, True)]
    for label, dtype, recheck in runs:
        detector = Detector(args.ckpt, device="cpu", dtype=dtype, recheck=recheck)
        start = time.perf_counter()
        results[label] = detector.score_index(index)
        seconds[label] = time.perf_counter() - start
        print(f"{label}: {detector.describe()}; {len(index)} clips in {seconds[label]:.0f} s", file=sys.stderr)
    reference = results["fp32"]
    ref_numbers = report_numbers(reference.report_dict)
    print(f"{args.data} ({args.split}, {len(index)} clips), {args.ckpt}")
    print("| dtype | micro-F1 | macro-F1 | mAP | largest report difference | largest clip-probability difference "
          "| decisions flipped | clips re-checked in float32 | time (float32's = 1) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, result in results.items():
        numbers = report_numbers(result.report_dict)
        worst = max(abs(numbers[key] - ref_numbers[key]) for key in ref_numbers)
        prob = float(np.abs(result.probs - reference.probs).max())
        flips = int((result.predictions != reference.predictions).sum())
        s = result.scores
        print(f"| {label} | {s['micro_f1']:.4f} | {s['macro_f1']:.4f} | {s['mAP']:.4f} | {worst:.4f} | {prob:.4f} "
              f"| {flips} | {result.rechecked} ({result.rechecked / len(index):.0%}) "
              f"| {seconds[label]:.0f} s ({seconds[label] / seconds['fp32']:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
