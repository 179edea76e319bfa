"""A checkpoint on two course-sized test splits of the same songs: the in-domain font and a held-out one.

    .venv/bin/python experiments/cross_font.py --ckpt checkpoints/demo

Builds (or reuses) ``python -m activity.synth --size full --seed 0 --splits test`` twice: once with
pretty_midi's TimGM6mb (in ``data/synth-full-test``, the split ``make demo`` scores) and once with
``activity.synth.fonts.HELD_OUT_FONT`` (OPL3_FM, a family no training set may use; in
``data/synth-full-test-OPL3_FM``). Same seed, so the same 225 songs, notes and stem levels: only the
font differs. On each: clip-level macro-F1, micro-F1 and mAP over the 5 s clips (``activity.infer``'s
path, the checkpoint's thresholds), frame-level macro-F1 over the whole songs (75 Hz, as
experiments/eval_checkpoint.py), and the "present everywhere" baseline at both levels. Prints a
Markdown table and writes the figures to ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    from activity.constants import DTYPE_CHOICES, DTYPE_HELP
    from activity.synth.fonts import HELD_OUT_FONT

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--data", type=Path, default=REPO / "data", help="folder the two test splits are built in (or found)")
    p.add_argument("--in-domain-font", default="TimGM6mb", help="registered font (or path) of the in-domain split")
    p.add_argument("--held-out-font", default=HELD_OUT_FONT, help="registered font (or path) of the held-out split")
    p.add_argument("--size", default="full", help="build size whose test split is scored (full: 225 songs)")
    p.add_argument("--seed", type=int, default=0, help="seed of both splits")
    p.add_argument("--workers", type=int, default=None, help="songs rendered in parallel (default: number of CPUs)")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    p.add_argument("--levels", nargs="+", choices=("clip", "frame"), default=["clip", "frame"],
                   help="what to score: the 5 s clips, the whole songs at 75 Hz (the slower), or both")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help=DTYPE_HELP)
    p.add_argument("--json", type=Path, default=REPO / "reports" / "cross_font.json", help="where the figures go")
    return p


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(_run, build_parser().parse_args(argv))


def split_folder(data: Path, font: str, size: str, seed: int) -> Path:
    """``data/synth-full-test`` for TimGM6mb at seed 0 (``make demo``'s), else one named by font and seed."""
    name = f"synth-{size}-test"
    if font != "TimGM6mb":
        name += f"-{Path(font).stem}"
    if seed:
        name += f"-s{seed}"
    return data / name


def score_split(detector, root: Path, frames: bool, report: bool = True, clips: bool = True) -> dict:
    """Clip and/or frame scores of an :class:`activity.api.Detector` on ``root`` (slakh/test + test_track),
    with the "present everywhere" baselines; ``report`` prints the course's classification report of the clips."""
    import numpy as np

    from activity.evaluate import average_precisions, clip_scores

    result: dict = {"root": str(root)}
    if clips:
        split = detector.score_split(root / "slakh", "test")
        if report:
            print(f"{root / 'slakh'} test, {len(split.index)} clips:\n{split.report}", flush=True)
        present = clip_scores(split.index.labels, np.ones_like(split.probs), 0.5)
        result.update(clips=len(split.index), macro_f1=split.scores["macro_f1"], micro_f1=split.scores["micro_f1"],
                      mAP=split.scores["mAP"], per_class_f1=split.scores["per_class_f1"],
                      per_class_ap=[float(v) for v in average_precisions(split.index.labels, split.probs)],
                      present_macro_f1=present["macro_f1"])
    if frames:
        songs = detector.score_songs(root / "test_track")
        result.update(songs=songs.songs, frame_macro_f1=songs.scores["macro_f1"], frame_micro_f1=songs.scores["micro_f1"],
                      frame_present_macro_f1=songs.present_scores["macro_f1"])
    return result


def _table(results: dict[str, dict]) -> str:
    from activity.constants import CLASSES

    rows = ["| split | clips | macro-F1 | \"present\" macro-F1 | micro-F1 | mAP | frame macro-F1 | \"present\" frame macro-F1 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, r in results.items():
        frame = f"{r['frame_macro_f1']:.4f} | {r['frame_present_macro_f1']:.4f}" if "frame_macro_f1" in r else "- | -"
        clip = (f"{r['clips']} | {r['macro_f1']:.4f} | {r['present_macro_f1']:.4f} | {r['micro_f1']:.4f} | {r['mAP']:.4f}"
                if "clips" in r else "- | - | - | - | -")
        rows.append(f"| {label} | {clip} | {frame} |")
    if not any("clips" in r for r in results.values()):
        return "\n".join(rows)
    rows += ["", "| per class F1 / AP | " + " | ".join(CLASSES) + " |", "| --- |" + " ---: |" * len(CLASSES)]
    for label, r in results.items():
        if "clips" in r:
                rows.append(f"| {label} | " + " | ".join(f"{f:.3f} / {a:.3f}" for f, a in zip(r["per_class_f1"], r["per_class_ap"])) + " |")
    return "\n".join(rows)


def _run(args: argparse.Namespace) -> int:
    from activity.errors import ActivityError
    from activity.fileio import write_json
    from activity.synth import build_dataset
    from activity.synth.fonts import FONTS, resolve_font

    if args.in_domain_font == args.held_out_font:
        raise ActivityError(f"--held-out-font {args.held_out_font} is the in-domain font too: a held-out font must differ")
    both = {}
    for role, font in (("in-domain", args.in_domain_font), ("held-out", args.held_out_font)):
        resolve_font(font)  # a missing font fails here, naming its Debian package, before any work
        both[role] = (font, split_folder(args.data, font, args.size, args.seed))
    in_family, out_family = (FONTS[f].family if f in FONTS else None for f, _ in both.values())
    if in_family is not None and in_family == out_family:
        raise ActivityError(f"--held-out-font {args.held_out_font} shares samples with {args.in_domain_font} "
                            f"(family {in_family}); choose a font of another family")
    start = time.perf_counter()
    for role, (font, root) in both.items():
        print(f"{role} split: {font} in {root}", flush=True)
        build_dataset(root, size=args.size, seed=args.seed, soundfonts=[font], splits=("test",), resume=True,
                      workers=args.workers, progress=False)
    built = time.perf_counter() - start
    from activity.api import Detector

    detector = Detector(args.ckpt, dtype=args.dtype, batch_size=args.batch_size)
    results: dict[str, dict] = {}
    for role, (font, root) in both.items():
        t0 = time.perf_counter()
        results[f"{role} ({Path(font).stem})"] = score_split(detector, root, "frame" in args.levels,
                                                             clips="clip" in args.levels)
        print(f"scored {role} in {time.perf_counter() - t0:.0f} s", flush=True)
    write_json(args.json, {"ckpt": str(args.ckpt), "size": args.size, "seed": args.seed, "dtype": args.dtype, "splits": results,
                           "build_seconds": round(built, 1), "seconds": round(time.perf_counter() - start, 1)})
    print(f"\n{args.ckpt}, {args.size} test split (seed {args.seed}), checkpoint thresholds:\n")
    print(_table(results))
    print(f"\nbuilt (or found) in {built:.0f} s, all in {time.perf_counter() - start:.0f} s; figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
