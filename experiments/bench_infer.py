"""Inference speed of 5 s clips: the usual course pipeline against ours in auto, fp32 and int8, per oneDNN ISA.

    .venv/bin/python experiments/bench_infer.py [--isa AVX2 AVX512_CORE ...] [--rounds 4] [--threads 1 --clock cpu]

Both sides use the MERT-v1-95M architecture with random weights (real weights change nothing about speed):

* baseline, what students usually run: one clip at a time, float32, transformers'
  ``Wav2Vec2FeatureExtractor`` (MERT's preprocessor settings) on numpy, ``HubertModel`` with
  ``output_hidden_states=True`` under ``torch.no_grad()`` in eval mode, then a time-mean of every
  hidden state;
* ours: :func:`activity.predict.predict_clips` (what ``activity.infer`` runs) on an :class:`ActivityModel`
  (frame and clip outputs, so also the layer mix and the BiGRU the baseline does not have) in each of
  ``--paths``: ``auto`` (what :func:`activity.precision.resolve_dtype` picks here), ``fp32`` and ``int8``.

Each ISA runs in its own process with ``ONEDNN_MAX_CPU_ISA`` set, and for AVX2 also
``MKL_ENABLE_INSTRUCTIONS=AVX2``: float32 products go through MKL, which ignores oneDNN's cap, so without
it an "AVX2" run would still multiply with AVX-512. (fbgemm, the int8 engine without AMX, reads the CPU
itself and cannot be capped: its AVX2 row is what an AVX-512 VNNI CPU does.) Within a process the
pipelines are interleaved: each of ``--rounds`` rounds times the baseline on ``--baseline-clips`` clips,
then every path on ``--clips`` clips, so that a load that comes and goes hits all of them; a path's
speedup is the median over rounds of baseline s/clip over its s/clip in the same round. ``--clock cpu``
times with this process's CPU time (only with ``--threads 1``): on a machine shared with other jobs it
counts the time the process actually ran.

FLOPs per clip are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the model's own forward
(int8 products count as FLOPs). A path's share of its own peak is its rate over the best rate of a
2048-wide square product in its own kernels: MKL float32, oneDNN bf16 for a bf16 ``auto``, and the int8
path's own quantized linear kernel. Ends with one ``speedup_<isa>_<path>=`` line per row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("auto", "fp32", "int8")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark clip inference: course baseline vs activity.predict, per ISA.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--isa", nargs="*", default=None,
                   help="ONEDNN_MAX_CPU_ISA caps to run (default: every one this CPU offers; 'native' for no cap)")
    p.add_argument("--paths", nargs="*", default=list(PATHS), choices=PATHS, help="ours' dtypes to time")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds (after one warm-up of each)")
    p.add_argument("--clips", type=int, default=8, help="clips per round for each of ours' paths")
    p.add_argument("--baseline-clips", type=int, default=2, help="clips per round for the baseline")
    p.add_argument("--batch-size", type=int, default=8, help="ours' batch size")
    p.add_argument("--encoder", default="mert-v1-95m-random",
                   help="any --encoder of activity.train (a random-weight preset by default; e.g. mert-v0-random, "
                   "music2vec-v1-random, a transformers model folder)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall-clock time, or this process's CPU time (needs --threads 1)")
    p.add_argument("--part", default=None, help=argparse.SUPPRESS)
    return p


def matmul_peak(dtype, size: int = 2048, repeats: int = 4) -> float:
    """Best GFLOP/s of a ``size``^3 matrix product in ``dtype`` (float32 or bf16)."""
    import torch

    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    return _best_rate(lambda: a @ b, 2 * size**3, repeats)


def int8_peak(size: int = 2048, repeats: int = 4) -> float:
    """Best GOP/s of the int8 path's own kernel (:class:`activity.cpu_kernels.Int8Linear`) on a square product."""
    import torch

    from activity.cpu_kernels import Int8Linear, int8_engine

    linear = Int8Linear(torch.randn(size, size), None, int8_engine() or "x86")
    x = torch.randn(size, size)
    return _best_rate(lambda: linear(x), 2 * size**3, repeats)


def _best_rate(fn, flop: float, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return flop / best / 1e9


def test_clips(count: int, seed: int = 0):
    """``(count, CLIP_SAMPLES)`` float32 noise with some tones (the content does not change the speed)."""
    import numpy as np

    from activity.constants import CLIP_SAMPLES, SAMPLE_RATE

    rng = np.random.default_rng(seed)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    tones = np.sin(2 * np.pi * rng.uniform(80, 2000, (count, 1)) * t)
    return (0.3 * tones + 0.05 * rng.standard_normal((count, CLIP_SAMPLES))).astype(np.float32)


def count_flops(encoder_name: str) -> dict[str, float]:
    """GFLOP of one 5 s clip: the whole model's forward and its encoder alone (float32, eval)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from activity.model import ActivityModel

    torch.manual_seed(0)
    model = ActivityModel.from_encoder(encoder_name).eval()
    clip = torch.from_numpy(test_clips(1))
    with torch.no_grad():
        with FlopCounterMode(display=False) as whole:
            model(clip)
        with FlopCounterMode(display=False) as encoder:
            model.encoder.hidden_states(model.encoder_input(clip))  # at the encoder's own rate
    return {"model_gflop": whole.get_total_flops() / 1e9, "encoder_gflop": encoder.get_total_flops() / 1e9}


def run_isa(args: argparse.Namespace) -> dict:
    """Everything for this process's ISA: interleaved rounds of the baseline and ours' paths."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    from activity.audio import resample
    from activity.constants import SAMPLE_RATE
    from activity.encoder import load_encoder, resolve_encoder
    from activity.model import ActivityModel
    from activity.numerics import onednn_isa
    from activity.precision import dtype_name, resolve_dtype
    from activity.predict import predict_clips

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    rate = resolve_encoder(args.encoder).sample_rate
    encoder = load_encoder(args.encoder).eval()
    # MERT-v1's preprocessor_config.json, at the encoder's rate: a student's loader resamples clip by clip.
    processor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=rate, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)

    def baseline(clips) -> None:
        for clip in clips:
            inputs = processor(resample(clip, SAMPLE_RATE, rate), sampling_rate=rate, return_tensors="pt")
            with torch.no_grad():
                outputs = encoder(**inputs, output_hidden_states=True)
            torch.stack(outputs.hidden_states).squeeze(1).mean(-2)  # (layers, hidden)

    cpu = torch.device("cpu")
    dtypes = {path: resolve_dtype(path, cpu) for path in args.paths}
    clips = test_clips(args.clips)
    base_clips = test_clips(args.baseline_clips, seed=1)
    runs = {"baseline": lambda: baseline(base_clips)}
    for path, dtype in dtypes.items():
        # One model per path (same weights): a model caches one fast copy, for the last dtype asked, so
        # alternating dtypes on one model would rebuild and re-check a copy at every call.
        torch.manual_seed(0)
        model = ActivityModel.from_encoder(args.encoder).eval()
        runs[path] = lambda model=model, dtype=dtype: predict_clips(model, clips, batch_size=args.batch_size,
                                                                    dtype=dtype)
    counts = {"baseline": args.baseline_clips, **{path: args.clips for path in dtypes}}
    build = {}
    for name, fn in runs.items():  # warm-up: fast copies, their guard checks, oneDNN kernel selection
        start = time.perf_counter()
        fn()
        build[name] = time.perf_counter() - start
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            start = clock()
            fn()
            seconds[name].append((clock() - start) / counts[name])
    peaks = {"fp32": matmul_peak(torch.float32)}
    if torch.bfloat16 in dtypes.values():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    if "int8" in dtypes:
        peaks["int8"] = int8_peak()
    from activity.cpu_kernels import int8_engine

    return {"isa_cap": os.environ.get("ONEDNN_MAX_CPU_ISA", "none"), "onednn_isa": onednn_isa(),
            "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "unset"), "threads": torch.get_num_threads(),
            "dtypes": {path: dtype_name(dtype) for path, dtype in dtypes.items()}, "int8_engine": int8_engine(),
            "seconds": seconds, "first_call_seconds": build, "peaks": peaks}


def child_env(isa: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")}
    if isa != "native":
        env["ONEDNN_MAX_CPU_ISA"] = isa
    if isa == "AVX2":
        env["MKL_ENABLE_INSTRUCTIONS"] = "AVX2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_child(isa: str, argv: list[str]) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--part", isa]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=child_env(isa))
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {isa} run failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        model = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except Exception:
        model = platform.processor() or "unknown CPU"
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def summarize(result: dict, model_gflop: float) -> list[dict]:
    """One row per path: median s/clip, median per-round speedup over the baseline, share of its own peak."""
    base = result["seconds"]["baseline"]
    rows = []
    for path, dtype in result["dtypes"].items():
        ours = result["seconds"][path]
        speedup = statistics.median(b / o for b, o in zip(base, ours))
        peak = result["peaks"][{"bf16": "bf16", "int8": "int8"}.get(dtype, "fp32")]
        per_clip = statistics.median(ours)
        rows.append({"path": path, "dtype": dtype, "s_per_clip": per_clip, "speedup": speedup,
                     "share": model_gflop / per_clip / peak, "peak": peak})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("error: --clock cpu needs --threads 1 (CPU time of several threads is not speed)")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.part is not None:
        print(json.dumps(run_isa(args)))
        return 0

    from activity.numerics import available_isas

    isas = args.isa if args.isa else available_isas()
    passthrough = [a for a in (sys.argv[1:] if argv is None else argv)]
    if "--isa" in passthrough:  # the child runs one ISA, named by --part
        i = passthrough.index("--isa")
        j = i + 1
        while j < len(passthrough) and not passthrough[j].startswith("--"):
            j += 1
        passthrough = passthrough[:i] + passthrough[j:]
    load = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    flops = count_flops(args.encoder)
    results = [run_child(isa, passthrough) for isa in isas]
    print(f"{started}; machine: {machine()}; load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"encoder {args.encoder}: {flops['model_gflop']:.1f} GFLOP per 5 s clip (encoder {flops['encoder_gflop']:.1f}); "
          f"batch {args.batch_size}; {args.rounds} rounds of {args.baseline_clips} baseline and {args.clips} clips per "
          f"path; clock {args.clock}; threads {results[0]['threads'] if results else '?'}")
    print()
    print("| ONEDNN_MAX_CPU_ISA | oneDNN reports | baseline s/clip | path | runs in | s/clip | speedup | share of its peak |")
    print("| --- | --- | ---: | --- | --- | ---: | ---: | --- |")
    lines = []
    for result in results:
        base = statistics.median(result["seconds"]["baseline"])
        cap = result["isa_cap"] + (" (+MKL AVX2)" if result["mkl"] == "AVX2" else "")
        isa_words = result["onednn_isa"].split(" (")[0]
        for row in summarize(result, flops["model_gflop"]):
            dtype = row["dtype"] + (f" ({result['int8_engine']})" if row["dtype"] == "int8" else "")
            print(f"| {cap} | {isa_words} | {base:.3f} | {row['path']} | {dtype} | {row['s_per_clip']:.3f} | "
                  f"**{row['speedup']:.2f}x** | {row['share']:.0%} of {row['peak']:.0f} |")
            lines.append(f"speedup_{result['isa_cap']}_{row['path']}={row['speedup']:.2f}")
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
