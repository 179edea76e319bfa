"""Whole-song inference speed: a 4-minute 44.1 kHz stereo flac through ``predict_file``'s path.

    .venv/bin/python experiments/bench_song.py [--minutes 4] [--encoder mert-v1-95m-random]

Synthesises the song (tones, chords and noise; the content does not change the speed), writes it as
flac into a temporary folder, then times ``predict_file`` end to end and, separately, its parts:
reading and decoding (soundfile), mixing to mono and resampling to 24 kHz (soxr), and the model
(windows, batches, stitching: ``predict_song`` on the prepared samples). Prints a table and the
real-time factor (seconds of audio per second of compute).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark whole-song inference (read, resample, model, stitch).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=4.0, help="length of the synthetic song")
    p.add_argument("--rate", type=int, default=44100, help="sample rate of the flac")
    p.add_argument("--encoder", default="mert-v1-95m-random", help="encoder (a random-weight preset by default)")
    p.add_argument("--batch-size", type=int, default=8, help="5 s windows per forward pass")
    p.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    return p


def synth_song(seconds: float, rate: int, seed: int = 0):
    """``(N, 2)`` float32 stereo: a chord changing every 2 s, a bass line and a little noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    bar = (t // 2).astype(int)
    roots = 110 * 2 ** (rng.integers(0, 12, bar.max() + 1) / 12)
    root = roots[bar]
    chord = sum(np.sin(2 * np.pi * root * ratio * 2 * t) for ratio in (1, 1.26, 1.5)) / 3
    bass = np.sin(2 * np.pi * root / 2 * t)
    left = 0.4 * chord + 0.3 * bass + 0.02 * rng.standard_normal(n)
    right = 0.3 * chord + 0.3 * bass + 0.02 * rng.standard_normal(n)
    return np.stack([left, right], axis=1).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import soundfile
    import torch

    from activity.audio import prepare, read_audio
    from activity.constants import CLIP_SAMPLES, SAMPLE_RATE
    from activity.model import ActivityModel
    from activity.precision import resolve_dtype
    from activity.predict import predict_clips
    from activity.windows import predict_file, predict_song

    seconds = args.minutes * 60
    load = os.getloadavg()[0]
    torch.manual_seed(0)
    model = ActivityModel.from_encoder(args.encoder).eval()
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    # Warm-up: builds the cached fast copy and selects kernels, as a long-running grader would have.
    predict_clips(model, torch.zeros(args.batch_size, CLIP_SAMPLES), batch_size=args.batch_size, dtype=dtype)

    with tempfile.TemporaryDirectory(prefix="bench-song-") as tmp:
        path = Path(tmp) / "song.flac"
        soundfile.write(str(path), synth_song(seconds, args.rate), args.rate, subtype="PCM_16")
        size_mb = path.stat().st_size / 1e6

        start = time.perf_counter()
        song = predict_file(model, path, batch_size=args.batch_size, dtype=dtype)
        total = time.perf_counter() - start

        start = time.perf_counter()
        data, rate = read_audio(path)
        t_read = time.perf_counter() - start
        start = time.perf_counter()
        samples = prepare(data.T, rate)
        t_prepare = time.perf_counter() - start
        start = time.perf_counter()
        again = predict_song(model, samples, SAMPLE_RATE, batch_size=args.batch_size, dtype=dtype)
        t_model = time.perf_counter() - start
    assert again.frame_probs.shape == song.frame_probs.shape

    windows = song.segment_probs.shape[0] + (1 if samples.shape[0] % CLIP_SAMPLES else 0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    parts = t_read + t_prepare + t_model
    print(f"{seconds:.0f} s stereo flac at {args.rate} Hz ({size_mb:.1f} MB), encoder {args.encoder}, "
          f"{str(dtype).replace('torch.', '')}, batch {args.batch_size}, {torch.get_num_threads()} threads; "
          f"{windows} windows of 5 s; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print("| step | seconds | share |")
    print("|---|---|---|")
    for name, value in (("read + decode flac (soundfile)", t_read), ("mono + resample to 24 kHz (soxr)", t_prepare),
                        ("model: windows, forward, stitch (predict_song)", t_model)):
        print(f"| {name} | {value:.2f} | {value / parts:.0%} |")
    print(f"| predict_file end to end | {total:.2f} | |")
    print(f"\nreal-time factor {seconds / total:.1f}x (target >= 10x); {total / windows:.3f} s per window; "
          f"peak RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
