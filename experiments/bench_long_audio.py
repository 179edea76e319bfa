"""Peak memory of long-file prediction: a 4-minute and a 60-minute song through the streaming predictor.

    nice -n 10 .venv/bin/python experiments/bench_long_audio.py [--minutes 4 60] [--whole 4] [--threads 1]

Writes each song (44.1 kHz stereo flac of tones and noise, made in one-minute chunks so this script
itself stays small) to a temporary folder under /tmp, then runs
:func:`activity.windows.predict_file` with the shipped ``checkpoints/demo`` in a fresh
``nice``d subprocess per song and reports that process's peak RSS (``resource.getrusage``), its RSS
after loading the model and warming up (before the song), the seconds taken and the output's size.
``--whole`` also runs the whole-file path (:func:`activity.audio.load_audio`, then :func:`activity.windows.predict_song`) for the named
lengths, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Peak RSS of streaming prediction on long synthetic songs.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[4.0, 60.0], help="song lengths to measure")
    p.add_argument("--whole", type=float, nargs="*", default=[4.0],
                   help="lengths also run through the whole-file path (load_audio + predict_song), for comparison")
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the measured process")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    p.add_argument("--rate", type=int, default=44_100, help="sample rate of the flac (resampled as a stream)")
    p.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    return p


def write_song(path: Path, minutes: float, rate: int, seed: int = 0) -> None:
    """A stereo flac of ``minutes``: a chord changing every 2 s, a bass line and a little noise, one minute at a time."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16", format="FLAC") as out:
        total = int(minutes * 60 * rate)
        for start in range(0, total, 60 * rate):
            n = min(60 * rate, total - start)
            t = (start + np.arange(n)) / rate
            root = 110 * 2 ** (rng.integers(0, 12, 31)[((t - t[0]) // 2).astype(int)] / 12)
            chord = sum(np.sin(2 * np.pi * root * ratio * 2 * t) for ratio in (1, 1.26, 1.5)) / 3
            bass = np.sin(2 * np.pi * root / 2 * t)
            noise = 0.02 * rng.standard_normal((n, 2))
            out.write((np.stack([0.4 * chord + 0.3 * bass, 0.3 * chord + 0.3 * bass], 1) + noise).astype(np.float32))


def child(mode: str, path: Path, args: argparse.Namespace) -> int:
    import resource

    import torch

    torch.set_num_threads(args.threads)
    from activity.audio import load_audio
    from activity.constants import CLIP_SAMPLES, SAMPLE_RATE
    from activity.model import ActivityModel
    from activity.predict import predict_clips
    from activity.windows import predict_file, predict_song

    model = ActivityModel.from_pretrained(args.ckpt)
    predict_clips(model, torch.zeros(args.batch_size, CLIP_SAMPLES), batch_size=args.batch_size)  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if mode == "streaming":
        song = predict_file(model, path, batch_size=args.batch_size, progress=False)
    else:
        song = predict_song(model, load_audio(path), SAMPLE_RATE, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "after_load_mib": before, "seconds": seconds, "duration": song.duration,
                      "frames": song.frame_probs.shape[0], "output_mib": (song.frame_probs.nbytes + song.segment_probs.nbytes
                                                                          + song.frame_times.nbytes) / 2**20}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child(args.child[0], Path(args.child[1]), args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-long-", dir="/tmp") as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"song-{minutes:g}min.flac"
            write_song(path, minutes, args.rate)
            size = path.stat().st_size / 2**20
            modes = ["streaming"] + (["whole"] if minutes in args.whole else [])
            for mode in modes:
                cmd = ["nice", "-n", "10", sys.executable, __file__, "--child", mode, str(path), "--ckpt", str(args.ckpt),
                       "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
                result = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if result.returncode != 0:
                    print(result.stderr[-3000:], file=sys.stderr)
                    return result.returncode
                row = json.loads(result.stdout.strip().splitlines()[-1])
                rows.append((minutes, size, mode, row))
                print(f"{minutes:g} min ({size:.0f} MiB flac), {mode}: peak RSS {row['peak_mib']:.0f} MiB "
                      f"(after model load and warm-up {row['after_load_mib']:.0f} MiB), {row['seconds']:.1f} s, "
                      f"{row['frames']} frames, outputs {row['output_mib']:.1f} MiB", flush=True)
    print()
    print("| song | path | peak RSS (MiB) | RSS after model load (MiB) | growth (MiB) | outputs (MiB) | seconds | x real time |")
    print("|---|---|---|---|---|---|---|---|")
    for minutes, size, mode, row in rows:
        name = "predict_file (streaming)" if mode == "streaming" else "load_audio + predict_song (whole file)"
        print(f"| {minutes:g} min, {args.rate} Hz stereo flac ({size:.0f} MiB) | {name} | {row['peak_mib']:.0f} | "
              f"{row['after_load_mib']:.0f} | {row['peak_mib'] - row['after_load_mib']:.0f} | {row['output_mib']:.1f} | "
              f"{row['seconds']:.1f} | {row['duration'] / row['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
