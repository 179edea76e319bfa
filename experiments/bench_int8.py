"""Would int8 products make float32 CPU inference faster? Dynamic int8 Linears against the float32 fast copy.

    .venv/bin/python experiments/bench_int8.py [--ckpt checkpoints/demo] [--batch-size 8] [--repeats 4]

Times, per 5 s clip, the float32 fast copy that ``activity.infer`` runs (``activity.cpu_kernels.inference_model``)
and the same copy with every ``nn.Linear`` replaced by ``torch.ao.quantization.quantize_dynamic``'s int8 one,
on random clips; then each feed-forward shape alone (``batch-size x 374`` frames, float32 against int8). Prints
the speed-ups and the largest clip-probability difference int8 makes. A measurement, not a shipped path.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    p.add_argument("--repeats", type=int, default=4, help="timed batches")
    return p


def seconds_per_call(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch

    from activity.constants import CLIP_SAMPLES, num_frames
    from activity.cpu_kernels import inference_model
    from activity.model import ActivityModel

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    model = ActivityModel.from_pretrained(args.ckpt).eval()
    fast, _ = inference_model(model, torch.device("cpu"), torch.float32)
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fast), {torch.nn.Linear}, dtype=torch.qint8)
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(0.1 * rng.standard_normal((args.batch_size, CLIP_SAMPLES)).astype(np.float32))
    with torch.inference_mode():
        float_s = seconds_per_call(lambda: fast(batch), args.repeats) / args.batch_size
        int8_s = seconds_per_call(lambda: quantized(batch), args.repeats) / args.batch_size
        difference = (torch.sigmoid(fast(batch).clip_logits) - torch.sigmoid(quantized(batch).clip_logits)).abs().max()
    print(f"{args.ckpt}, batches of {args.batch_size}, {torch.get_num_threads()} thread(s)")
    print(f"whole model: float32 fast copy {float_s * 1000:.1f} ms/clip, int8 Linears {int8_s * 1000:.1f} ms/clip "
          f"({float_s / int8_s:.2f}x); largest clip-probability difference {difference:.4f}")
    config = model.encoder.config
    rows = args.batch_size * num_frames(CLIP_SAMPLES)
    for fan_in, fan_out in [(config.hidden_size, config.intermediate_size), (config.intermediate_size, config.hidden_size)]:
        linear = torch.nn.Linear(fan_in, fan_out).eval()
        linear_int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8)
        x = torch.randn(rows, fan_in)
        with torch.inference_mode():
            a = seconds_per_call(lambda: linear(x), 10)
            b = seconds_per_call(lambda: linear_int8(x), 10)
        flop = 2 * rows * fan_in * fan_out
        print(f"Linear {fan_in} -> {fan_out}, {rows} rows: float32 {flop / a / 1e9:.0f} GFLOP/s, "
              f"int8 {flop / b / 1e9:.0f} GOP/s ({a / b:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
