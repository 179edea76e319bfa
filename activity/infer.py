"""``python -m activity.infer``: the course's report on a split, or activity rolls for any audio files.

Without ``--audio`` it runs every clip of ``DATA/{split}`` (the test split by default) and prints
scikit-learn's ``classification_report`` over the nine classes with micro, macro, weighted and samples
averages. With ``--audio`` it writes, per file, the formats of ``--formats`` (default: the 75 Hz roll
``.npz``: ``probs`` (T, 9), ``times`` (T,) s, ``classes``; a CSV of 5 s segments; a JSON of events and
segments; see :mod:`activity.outputs`), reading long files in a stream (:mod:`activity.windows`),
and with ``--midi`` prints frame, segment-based and event-based scores (:mod:`activity.audio_job`).
"""

from __future__ import annotations

# A command line: torch, the model and the data are imported inside the functions, after the arguments are
# parsed, so `--help` and a bad flag answer at once (start-up time).

import argparse
import sys
from pathlib import Path

from .constants import DEMO_CHECKPOINT, INFER_DTYPE_CHOICES, INFER_DTYPE_HELP
from .events import DEFAULT_MIN_DURATION, DEFAULT_MIN_GAP
from .outputs import DEFAULT_FORMATS, FORMATS


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
                   help="folder for the report JSON (split mode) or for the per-file outputs of --formats (--audio mode, "
                   "default ./predictions; created, and checked to be writable before any prediction)")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=INFER_DTYPE_CHOICES, default="auto", help=INFER_DTYPE_HELP)
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                   help=f"--audio mode: comma-separated outputs per song, from {', '.join(FORMATS)}: npz (75 Hz "
                   "roll), csv (5 s segments), json (events + segments), audacity (label track NAME.labels.txt: "
                   "start<TAB>end<TAB>class per event), sv (NAME.sv.csv, 75 Hz probabilities for Sonic "
                   "Visualiser's annotation import), html (one self-contained page with player and rolls)")
    p.add_argument("--min-duration", type=float, default=DEFAULT_MIN_DURATION, metavar="SECONDS",
                   help="events (json, audacity, event scores): a class's active run shorter than this is "
                   "dropped, after the --min-gap joins")
    p.add_argument("--min-gap", type=float, default=DEFAULT_MIN_GAP, metavar="SECONDS",
                   help="events: two active runs of a class closer than this are joined into one")
    p.add_argument("--midi", nargs="+", type=Path, default=None, metavar="FILE_OR_DIR",
                   help="--audio mode: the songs' MIDI (a file for one song, or files/folders matched to the audio "
                   "by name: song.flac <-> song.mid); prints frame, segment-based (1 s) and event-based F1 per song")
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
    from .precision import RECHECK_MARGIN

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
    if result.rechecked:
        print(f"{result.rechecked} of {len(index)} clips had a class within {RECHECK_MARGIN} of its threshold: "
              "scored again in float32, so the report is float32's", file=sys.stderr)
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
    from .audio_job import run_files
    from .outputs import parse_formats

    check_options(args.batch_size, args.threshold)
    formats = parse_formats(args.formats)
    return run_files(args, formats, lambda: Detector(args.ckpt, device=args.device, dtype=args.dtype,
                                                     batch_size=args.batch_size, threshold=args.threshold))


if __name__ == "__main__":
    sys.exit(main())
