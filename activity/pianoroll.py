"""``python plot_pianoroll.py --track Track01950`` (``activity-plot``): predicted versus true activity of one test song.

Finds ``<test-track-dir>/<track>.flac`` and ``<track>.mid``, runs the model over the whole song, saves
``<save-dir>/<track>.png`` (the course's 5 s view and the 75 Hz view; with ``--html`` also a
self-contained ``<track>.html`` page with the audio, see :mod:`activity.html_view`) and prints the song's 5 s
classification report and its frame-level micro and macro F1. ``--track all`` draws every song.
"""

from __future__ import annotations

# A command line: torch, the model and the data are imported inside the functions, after the arguments are
# parsed, so `--help` and a bad flag answer at once (start-up time).

import argparse
import sys
from pathlib import Path

def build_parser() -> argparse.ArgumentParser:
    from .constants import DEMO_CHECKPOINT
    from .constants import INFER_DTYPE_CHOICES, INFER_DTYPE_HELP

    p = argparse.ArgumentParser(
        prog="python plot_pianoroll.py",
        description="Plot predicted vs true instrument activity of a whole test song (5 s and 75 Hz views).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--track", default="Track01950", help="song name (TrackNNNNN), or 'all' for every song")
    p.add_argument("--test-track-dir", type=Path, default=None,
                   help="folder with TrackNNNNN.flac + TrackNNNNN.mid (default: the synthetic set's data/synth-slakh/test_track, built first if missing)")
    p.add_argument("--ckpt", type=Path, default=DEMO_CHECKPOINT, help="checkpoint folder")
    p.add_argument("--save-dir", type=Path, default=Path("plots"), help="where <track>.png is written")
    p.add_argument("--threshold", type=float, default=None,
                   help="one threshold for every class, overriding the checkpoint's saved thresholds (0.5 if none)")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=INFER_DTYPE_CHOICES, default="auto", help=INFER_DTYPE_HELP)
    p.add_argument("--html", action="store_true",
                   help="also write <save-dir>/<track>.html: one self-contained page with the song's audio, a cursor "
                   "that follows playback over the 75 Hz and 5 s rolls and the truth; click a roll to seek")
    return p


def main(argv: list[str] | None = None) -> int:
    from .errors import run_command

    return run_command(run, build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from .api import Detector, check_options
    from .constants import FRAME_RATE
    from .errors import ActivityError
    from .evaluate import binarize, classification_report, frame_scores
    from .outputs import write_outputs
    from .plotting import available_tracks, find_track, plot_track

    check_options(args.batch_size, args.threshold)
    track_dir = args.test_track_dir
    if track_dir is None:
        from .synth import DEFAULT_DATA_ROOT, ensure_dataset

        track_dir = ensure_dataset(DEFAULT_DATA_ROOT) / "test_track"
    if not track_dir.is_dir():
        raise ActivityError(f"--test-track-dir {track_dir} does not exist")
    tracks = available_tracks(track_dir) if args.track == "all" else [args.track]
    if not tracks:
        raise ActivityError(f"--test-track-dir {track_dir} holds no songs (.flac/.wav)")
    detector = Detector(args.ckpt, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                        threshold=args.threshold)
    print(f"model: {detector.describe()}", file=sys.stderr)
    thresholds = detector.thresholds
    for track in tracks:
        audio, midi = find_track(track_dir, track)
        result = detector.analyse_file(audio, midi, name=track, keep_audio=args.html)
        png = plot_track(result, args.save_dir / f"{track}.png")
        print(f"== {track} ({audio}): {result.segment_probs.shape[0]} segments of 5 s, "
              f"{result.frame_probs.shape[0]} frames at {FRAME_RATE} Hz")
        if result.segment_truth is None:
            print(f"no MIDI ({track_dir / (track + '.mid')} missing): predicted only, no truth rows or scores")
        else:
            pred = binarize(result.segment_probs, thresholds)
            print(classification_report(result.segment_truth, pred))
            frames = frame_scores(result.frame_truth, result.frame_probs, thresholds)
            print(f"frame-level ({FRAME_RATE} Hz): micro-F1 {frames['micro_f1']:.4f}  macro-F1 {frames['macro_f1']:.4f}")
        print(f"wrote {png}")
        if args.html:
            print(f"wrote {write_outputs(result, args.save_dir, ('html',))['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
