"""Inference speed of 5 s clips: the usual course pipeline against ``activity.predict``, and the roofline.

    .venv/bin/python experiments/bench_infer.py [--clips 32] [--baseline-clips 12] [--batch-size 8]

Both sides use the MERT-v1-95M architecture with random weights (real weights change nothing about
speed) on this machine's CPU, or any other ``--encoder`` that ``activity.train`` takes (MERT-v0,
music2vec-v1, a transformers folder: the baseline then feeds its model audio resampled to its rate with
soxr, clip by clip, as a student's loader would), each in its own process so that its peak resident
memory is its own:

* baseline, what students usually run: one clip at a time, float32, transformers'
  ``Wav2Vec2FeatureExtractor`` (MERT's preprocessor settings) on numpy, the encoder (``HubertModel``, ...) with
  ``output_hidden_states=True`` under ``torch.no_grad()`` in eval mode, then a time-mean of every
  hidden state (torch's default thread count);
* ours: :func:`activity.predict.predict_clips` on an :class:`ActivityModel` (frame and clip outputs),
  in the dtype ``--dtype auto`` picks (:func:`activity.precision.resolve_dtype`: bf16 where a timed bf16
  product beats float32 here, e.g. with AMX; float32 with AMX capped off), after the guard's check.

The machine line names the ISA oneDNN ran with (set ``ONEDNN_MAX_CPU_ISA`` to run another CPU's kernels,
e.g. ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` for an AVX512-BF16 CPU without AMX).

FLOPs per clip are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the model's own
forward; the peak is the best rate of a 4096^3 matrix product in ours' dtype, measured in ours'
process just before and after its timing. Ends with ``speedup=<ours/baseline> roofline=<share of peak>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark clip inference: course baseline vs activity.predict.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clips", type=int, default=32, help="5 s clips timed for ours (after one warm-up batch)")
    p.add_argument("--baseline-clips", type=int, default=12, help="clips timed for the baseline (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=8, help="ours' batch size")
    p.add_argument("--dtype", default="auto", help="ours' dtype: auto, bf16 or fp32")
    p.add_argument("--encoder", default="mert-v1-95m-random",
                   help="any --encoder of activity.train (a random-weight preset by default; e.g. mert-v0-random, "
                   "music2vec-v1-random, a transformers model folder)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's own)")
    p.add_argument("--part", choices=["baseline", "ours"], default=None, help=argparse.SUPPRESS)
    return p


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(dtype, size: int = 4096, repeats: int = 4) -> float:
    """Best GFLOP/s of a ``size``^3 matrix product in ``dtype``."""
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def test_clips(count: int, seed: int = 0):
    """``(count, CLIP_SAMPLES)`` float32 noise with some tones (the content does not change the speed)."""
    import numpy as np

    from activity.constants import CLIP_SAMPLES, SAMPLE_RATE

    rng = np.random.default_rng(seed)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    tones = np.sin(2 * np.pi * rng.uniform(80, 2000, (count, 1)) * t)
    return (0.3 * tones + 0.05 * rng.standard_normal((count, CLIP_SAMPLES))).astype(np.float32)


def count_flops(encoder_name: str) -> dict[str, float | str]:
    """GFLOP of one 5 s clip: the whole model's forward and its encoder alone (float32, eval)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from activity.constants import CLIP_SAMPLES
    from activity.model import ActivityModel

    torch.manual_seed(0)
    model = ActivityModel.from_encoder(encoder_name).eval()
    clip = torch.from_numpy(test_clips(1))
    with torch.no_grad():
        with FlopCounterMode(display=False) as whole:
            model(clip)
        encoder_input = model.encoder_input(clip)  # resampled to the encoder's rate
        with FlopCounterMode(display=False) as encoder:
            model.encoder.hidden_states(encoder_input)
    assert CLIP_SAMPLES == clip.shape[1]
    return {"model_gflop": whole.get_total_flops() / 1e9, "encoder_gflop": encoder.get_total_flops() / 1e9,
            "encoder_class": getattr(model.encoder, "model_class", type(model.encoder)).__name__}


def run_baseline(args: argparse.Namespace) -> dict:
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    from activity.audio import resample
    from activity.constants import SAMPLE_RATE
    from activity.encoder import load_encoder, resolve_encoder

    torch.manual_seed(0)
    rate = resolve_encoder(args.encoder).sample_rate
    model = load_encoder(args.encoder).eval()
    # MERT-v1's preprocessor_config.json (at the encoder's rate).
    processor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=rate, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    clips = test_clips(args.baseline_clips + 1)

    def embed(clip):
        inputs = processor(resample(clip, SAMPLE_RATE, rate), sampling_rate=rate, return_tensors="pt")
        with torch.no_grad():
            outputs = model(**inputs, output_hidden_states=True)
        return torch.stack(outputs.hidden_states).squeeze(1).mean(-2)  # (layers, hidden)

    embed(clips[0])  # warm-up: first-call allocations and oneDNN kernel selection
    start = time.perf_counter()
    for clip in clips[1:]:
        embed(clip)
    seconds = time.perf_counter() - start
    return {"clips": args.baseline_clips, "seconds": seconds, "peak_rss_mib": peak_rss_mib(),
            "threads": torch.get_num_threads(), "peak_fp32_gflops": matmul_peak(torch.float32)}


def run_ours(args: argparse.Namespace) -> dict:
    import torch

    from activity.model import ActivityModel
    from activity.precision import resolve_dtype
    from activity.predict import predict_clips

    torch.manual_seed(0)
    model = ActivityModel.from_encoder(args.encoder).eval()
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    clips = test_clips(args.clips + args.batch_size)
    start = time.perf_counter()
    predict_clips(model, clips[: args.batch_size], batch_size=args.batch_size, dtype=dtype)  # warm-up
    warmup = time.perf_counter() - start
    peaks = [matmul_peak(dtype)]
    start = time.perf_counter()
    result = predict_clips(model, clips[args.batch_size :], batch_size=args.batch_size, dtype=dtype)
    seconds = time.perf_counter() - start
    peaks.append(matmul_peak(dtype))
    assert result.frame_probs.shape[:2] == (args.clips, 374) and result.clip_probs.shape[0] == args.clips
    return {"clips": args.clips, "seconds": seconds, "warmup_seconds": warmup, "peak_rss_mib": peak_rss_mib(),
            "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""),
            "peak_gflops": max(peaks), "peaks": peaks}


def run_part(name: str, argv: list[str]) -> dict:
    """Run one side in a fresh process (its own peak memory) and read its JSON line."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--part", name]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {name} part failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except Exception:
        model = platform.processor() or "unknown CPU"
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.part == "baseline":
        print(json.dumps(run_baseline(args)))
        return 0
    if args.part == "ours":
        print(json.dumps(run_ours(args)))
        return 0

    passthrough = list(sys.argv[1:] if argv is None else argv)
    load = os.getloadavg()
    flops = count_flops(args.encoder)
    baseline = run_part("baseline", passthrough)
    ours = run_part("ours", passthrough)
    base_rate = baseline["clips"] / baseline["seconds"]
    our_rate = ours["clips"] / ours["seconds"]
    achieved = flops["model_gflop"] * our_rate
    roofline = achieved / ours["peak_gflops"]
    base_roofline = flops["model_gflop"] * base_rate / baseline["peak_fp32_gflops"]
    from activity.numerics import onednn_isa

    print(f"machine: {machine()}; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"oneDNN ISA: {onednn_isa()} (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})")
    print(f"encoder {args.encoder}: {flops['model_gflop']:.1f} GFLOP per 5 s clip "
          f"(encoder {flops['encoder_gflop']:.1f}); ours in {ours['dtype']}, batch {args.batch_size}, "
          f"{ours['threads']} threads; first call (builds the fast copy) {ours['warmup_seconds']:.1f} s")
    print()
    print("| pipeline | clips/s | s/clip | GFLOP/s | share of peak | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    print(f"| baseline (fp32, 1 clip, HF extractor + {flops['encoder_class']}) | {base_rate:.2f} | {1 / base_rate:.3f} | "
          f"{flops['model_gflop'] * base_rate:.0f} | {base_roofline:.0%} of fp32 {baseline['peak_fp32_gflops']:.0f} "
          f"| {baseline['peak_rss_mib']:.0f} |")
    print(f"| ours (predict_clips, {ours['dtype']}, batch {args.batch_size}) | {our_rate:.2f} | {1 / our_rate:.3f} | "
          f"{achieved:.0f} | {roofline:.0%} of {ours['dtype']} {ours['peak_gflops']:.0f} | {ours['peak_rss_mib']:.0f} |")
    floor = flops["model_gflop"] / ours["peak_gflops"]
    print(f"\nfloor at the measured peak: {floor:.3f} s/clip; peaks measured around ours: "
          f"{', '.join(f'{p:.0f}' for p in ours['peaks'])} GFLOP/s")
    print(f"speedup={our_rate / base_rate:.2f} roofline={roofline:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
