"""24 kHz -> 16 kHz inside the model: the torch resampler of ``activity.backbones.grid`` against soxr.

    nice -n 10 .venv/bin/python experiments/bench_resample.py [--clips 8] [--threads 1]

Times ``Resampler(24000, 16000)`` on a ``(clips, 120000)`` batch against ``soxr.resample(..., "HQ")`` clip
by clip (best of 5 each), and prints how far apart they are (away from the clip edges), what is left of
a 10 kHz tone (above the 8 kHz Nyquist frequency: must vanish, not fold to 6 kHz) and where an impulse
lands (the delay must be zero).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark the in-model resampler against soxr.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clips", type=int, default=8, help="5 s clips per batch")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import soxr
    import torch

    from activity.backbones.grid import Resampler
    from activity.constants import CLIP_SAMPLES, SAMPLE_RATE

    torch.set_num_threads(args.threads)
    target = 16_000
    resampler = Resampler(SAMPLE_RATE, target)
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    clips = np.stack([0.5 * np.sin(2 * np.pi * rng.uniform(100, 7000) * t) + 0.05 * rng.standard_normal(CLIP_SAMPLES)
                      for _ in range(args.clips)]).astype(np.float32)
    batch = torch.from_numpy(clips)

    def best(fn, repeats: int = 5) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.inference_mode():
        ours_s = best(lambda: resampler(batch))
        soxr_s = best(lambda: [soxr.resample(c, SAMPLE_RATE, target, quality="HQ") for c in clips])
        ours = resampler(batch).numpy()
        theirs = np.stack([soxr.resample(c, SAMPLE_RATE, target, quality="HQ") for c in clips])
        inner = slice(2000, -2000)
        tone = torch.from_numpy(np.sin(2 * np.pi * 10_000 * t).astype(np.float32))[None]
        impulse = torch.zeros(1, CLIP_SAMPLES)
        impulse[0, 60_000] = 1.0
        left = float(resampler(tone)[:, inner].pow(2).mean().sqrt())
        soxr_left = float(np.sqrt((soxr.resample(tone.numpy()[0], SAMPLE_RATE, target, quality="HQ")[inner] ** 2).mean()))
        peak = int(resampler(impulse).abs().argmax())
    print(f"load average {os.getloadavg()[0]:.2f}; {args.clips} clips of 5 s, {args.threads} torch thread(s)")
    print("| resampler | ms per 5 s clip | rms of a 10 kHz tone after (input 0.707) |")
    print("|---|---|---|")
    print(f"| torch (activity.backbones.grid.Resampler, batched) | {ours_s / args.clips * 1e3:.2f} | {left:.1e} |")
    print(f"| soxr HQ (numpy, clip by clip) | {soxr_s / args.clips * 1e3:.2f} | {soxr_left:.1e} |")
    print(f"largest |torch - soxr| {np.abs(ours[:, inner] - theirs[:, inner]).max():.4f} "
          f"(rms {np.sqrt(((ours[:, inner] - theirs[:, inner]) ** 2).mean()):.4f}); impulse at 2.5 s -> sample {peak} "
          f"(expected 40000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
