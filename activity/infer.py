"""``python -m activity.infer``: the course's report on a split, or activity rolls for any audio files.

Without ``--audio`` it runs every clip of ``DATA/{split}`` (the test split by default) and prints
scikit-learn's ``classification_report`` over the nine classes with micro, macro, weighted and samples
averages. With ``--audio`` it writes, per file, the 75 Hz roll (``.npz``: ``probs`` (T, 9), ``times``
(T,) s, ``classes``) and a CSV of 5 s segments with one probability column per class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .constants import DTYPE_CHOICES, DTYPE_HELP

from .api import DEMO_CHECKPOINT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m activity.infer",
        description="Score a trained checkpoint on a split of the course's clip folders (prints the "
        "classification report), or predict instrument activity for audio files (--audio).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--ckpt", type=Path, default=DEMO_CHECKPOINT,
                   help="checkpoint folder (config.json + model.safetensors [+ thresholds.json]), e.g. a run's best/")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with {split}/*.npy and {split}_labels.json (the course's slakh/ folder); "
                   "default: the synthetic set in data/synth-slakh/slakh, built first if missing")
    p.add_argument("--split", default="test", help="which split of --data to score")
    p.add_argument("--threshold", type=float, default=None,
                   help="one decision threshold for every class, overriding the thresholds saved with the checkpoint (0.5 if none)")
    p.add_argument("--audio", nargs="+", type=Path, default=None, metavar="FILE_OR_DIR",
                   help="audio files or folders (wav, flac, ogg, ... anything soundfile reads) to predict instead of a split")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the report JSON (split mode) or for the per-file .npz and .csv (--audio mode, "
                   "default ./predictions)")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help=DTYPE_HELP)
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import run_command

    args = build_parser().parse_args(argv)
    return run_command(run_audio if args.audio is not None else run_split, args)


def run_split(args: argparse.Namespace) -> int:
    from .api import Detector, check_options
    from .constants import CLASSES
    from .datasets import read_split, warn_length_fixed
    from .fileio import write_json

    check_options(args.batch_size, args.threshold)
    if args.data is None:
        from .synth import DEFAULT_DATA_ROOT, ensure_dataset

        args.data = ensure_dataset(DEFAULT_DATA_ROOT) / "slakh"
    index = read_split(args.data, args.split)
    warn_length_fixed(index)
    detector = Detector(args.ckpt, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                        threshold=args.threshold)
    print(f"{len(index)} {args.split} clips from {args.data / args.split}; {detector.describe()}", file=sys.stderr)
    result = detector.score_index(index)
    print(result.report)
    scores = result.scores
    print(f"micro-F1 {scores['micro_f1']:.4f}  macro-F1 {scores['macro_f1']:.4f}  mAP {scores['mAP']:.4f}  "
          f"thresholds: {detector.threshold_source}")
    if args.out is not None:
        write_json(args.out / f"report_{args.split}.json", {
            "checkpoint": str(args.ckpt), "data": str(args.data), "split": args.split, "clips": len(index),
            "thresholds": dict(zip(CLASSES, detector.thresholds.tolist())), "classification_report": result.report_dict,
            "micro_f1": scores["micro_f1"], "macro_f1": scores["macro_f1"], "mAP": scores["mAP"],
        })
        print(f"wrote {args.out / f'report_{args.split}.json'}", file=sys.stderr)
    return 0


def run_audio(args: argparse.Namespace) -> int:
    from .api import Detector, check_options

    check_options(args.batch_size, args.threshold)
    import csv

    import numpy as np

    from .audio import find_audio_files
    from .constants import CLASSES, CLIP_SECONDS
    from .fileio import atomic_path

    files = find_audio_files(args.audio)
    out = args.out or Path("predictions")
    out.mkdir(parents=True, exist_ok=True)
    detector = Detector(args.ckpt, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                        threshold=args.threshold)
    thresholds = detector.thresholds
    stems: dict[str, int] = {}
    for path in files:
        song = detector.predict_file(path)
        # Two inputs with one name (a/x.wav, b/x.flac) must not overwrite each other's outputs.
        count = stems.get(path.stem, 0)
        stems[path.stem] = count + 1
        name = path.stem if count == 0 else f"{path.stem}-{count + 1}"
        with atomic_path(out / f"{name}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, probs=song.frame_probs.T.astype(np.float32),
                                    times=song.frame_times.astype(np.float32), classes=np.array(CLASSES),
                                    thresholds=thresholds.astype(np.float32), source=str(path))
        with atomic_path(out / f"{name}.csv") as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["start_s", "end_s", *CLASSES])
            for s in range(song.segment_probs.shape[1]):
                writer.writerow([s * CLIP_SECONDS, (s + 1) * CLIP_SECONDS,
                                 *(f"{p:.4f}" for p in song.segment_probs[:, s])])
        active = [c for c, on in zip(CLASSES, (song.segment_probs >= thresholds[:, None]).any(1)) if on]
        print(f"{path}: {song.frame_probs.shape[1]} frames, {song.segment_probs.shape[1]} segments -> "
              f"{out / name}.npz/.csv; active: {', '.join(active) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
