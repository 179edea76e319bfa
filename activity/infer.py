"""``python -m activity.infer``: the course's report on a split, or activity rolls for any audio files.

Without ``--audio`` it runs every clip of ``DATA/{split}`` (the test split by default) and prints
scikit-learn's ``classification_report`` over the nine classes with micro, macro, weighted and samples
averages. With ``--audio`` it writes, per file, the formats of ``--formats`` (default: the 75 Hz roll
``.npz``: ``probs`` (T, 9), ``times`` (T,) s, ``classes``; a CSV of 5 s segments; a JSON of events and
segments; see :mod:`activity.outputs`), reading long files in a stream (:mod:`activity.streaming`),
and with ``--midi`` prints frame, segment-based and event-based scores (:mod:`activity.audio_job`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ActivityError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO_ROOT / "checkpoints" / "demo"


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
    from .audio_job import add_arguments

    add_arguments(p)  # --formats, --min-duration, --min-gap, --midi
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import run_command

    args = build_parser().parse_args(argv)
    return run_command(run_audio if args.audio is not None else run_split, args)


def load_model(ckpt: Path, device_name: str):
    """The checkpoint's model on its device, and that device."""
    from .model import ActivityModel
    from .predict import resolve_device

    if ckpt == DEMO_CHECKPOINT and not ckpt.is_dir():
        raise ActivityError(f"the demo checkpoint {ckpt} is missing; pass --ckpt with a trained model folder")
    device = resolve_device(device_name)
    return ActivityModel.from_pretrained(ckpt, device=device), device


def check_common_flags(args: argparse.Namespace) -> None:
    """``--threshold`` and ``--batch-size``, shared by infer and plot_pianoroll."""
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ActivityError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.batch_size < 1:
        raise ActivityError(f"--batch-size must be at least 1, got {args.batch_size}")


def thresholds_of(model, override: float | None):
    """Per-class thresholds: ``--threshold`` if given, else the checkpoint's, else 0.5."""
    from .evaluate import as_thresholds

    return as_thresholds(override if override is not None else model.thresholds)


def split_clip_probs(model, index, batch_size: int, device) -> "np.ndarray":
    """Clip probabilities ``(M, 9)`` of every clip of a :class:`~activity.datasets.SplitIndex`, in its order.

    Clips are read a few batches at a time, so memory stays bounded for a split of any size.
    """
    import numpy as np

    from .audio import load_clip
    from .predict import predict_clips

    chunk = max(batch_size * 16, 64)
    probs = []
    for start in range(0, len(index), chunk):
        clips = np.stack([load_clip(f)[0] for f in index.files[start : start + chunk]])
        probs.append(predict_clips(model, clips, batch_size=batch_size, device=device).clip_probs)
    return np.concatenate(probs)


def run_split(args: argparse.Namespace) -> int:
    check_common_flags(args)
    from .constants import CLASSES
    from .datasets import read_split, warn_length_fixed
    from .evaluate import binarize, classification_report, clip_scores
    from .fileio import write_json

    if args.data is None:
        from .synth import DEFAULT_DATA_ROOT, ensure_dataset

        args.data = ensure_dataset(DEFAULT_DATA_ROOT) / "slakh"
    index = read_split(args.data, args.split)
    warn_length_fixed(index)
    model, device = load_model(args.ckpt, args.device)
    thresholds = thresholds_of(model, args.threshold)
    print(f"{len(index)} {args.split} clips from {args.data / args.split}; checkpoint {args.ckpt}", file=sys.stderr)

    clip_probs = split_clip_probs(model, index, args.batch_size, device)
    pred = binarize(clip_probs, thresholds)
    print(classification_report(index.labels, pred))
    scores = clip_scores(index.labels, clip_probs, thresholds)
    print(f"micro-F1 {scores['micro_f1']:.4f}  macro-F1 {scores['macro_f1']:.4f}  mAP {scores['mAP']:.4f}  "
          f"thresholds: {'--threshold ' + str(args.threshold) if args.threshold is not None else ('saved' if model.thresholds is not None else '0.5')}")
    if args.out is not None:
        report = classification_report(index.labels, pred, as_dict=True)
        write_json(args.out / f"report_{args.split}.json", {
            "checkpoint": str(args.ckpt), "data": str(args.data), "split": args.split, "clips": len(index),
            "thresholds": dict(zip(CLASSES, thresholds.tolist())), "classification_report": report,
            "micro_f1": scores["micro_f1"], "macro_f1": scores["macro_f1"], "mAP": scores["mAP"],
        })
        print(f"wrote {args.out / f'report_{args.split}.json'}", file=sys.stderr)
    return 0


def run_audio(args: argparse.Namespace) -> int:
    check_common_flags(args)
    from .audio_job import run_files
    from .outputs import parse_formats

    formats = parse_formats(args.formats)

    def load():
        model, device = load_model(args.ckpt, args.device)
        return model, device, thresholds_of(model, args.threshold)

    return run_files(args, formats, load)


if __name__ == "__main__":
    sys.exit(main())
