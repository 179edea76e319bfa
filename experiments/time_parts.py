"""Where a checkpoint's clip inference time goes on this CPU: conv front end, whole encoder, BiGRU, all.

    .venv/bin/python experiments/time_parts.py [--ckpt checkpoints/demo] [--dtype fp32] [--threads N]

Times, per 5 s clip, in batches of ``--batch-size`` random clips after one warm-up: the encoder's conv
front end, the whole encoder (``activity.encoder.encoder_hidden_states``), the BiGRU on a tensor of
the encoder's output shape, and ``activity.predict.predict_clips`` (what ``activity.infer`` runs, in
``--dtype``). Prints one line per part; the rest of the head (layer mix, norm, classifier, auto-pool)
is what ``predict_clips`` spends beyond the encoder and the GRU.

Then what bounds ``predict_clips`` on this CPU: the matrix products and convolutions one clip needs
(counted by ``torch.utils.flop_counter`` on the module ``predict_clips`` runs; it does not count the BiGRU,
about 0.2 GFLOP for ``compact``), the rate it reaches, and
the rate of one large square product in the same dtype (2048 x 2048, best of ``--repeats``), which no
model of these layer shapes can beat. The last line is the time ``--clips`` clips (``make demo``'s split:
2267) would take at that large-product rate: a floor for the dtype, not a forecast.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=Path, default=REPO / "checkpoints" / "demo", help="checkpoint folder")
    p.add_argument("--dtype", default="fp32", help="predict_clips' dtype: auto, bf16 or fp32")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    p.add_argument("--repeats", type=int, default=5, help="timed batches per part")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--clips", type=int, default=2267, help="clips of the floor on the last line (make demo's split)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch

    from torch.utils.flop_counter import FlopCounterMode

    from bench_infer import matmul_peak  # this folder is on sys.path when the script runs

    from activity.constants import CLIP_SAMPLES, num_frames
    from activity.cpu_kernels import inference_model
    from activity.encoder import encoder_hidden_states
    from activity.model import ActivityModel
    from activity.precision import autocast, resolve_dtype
    from activity.predict import predict_clips

    if args.threads:
        torch.set_num_threads(args.threads)
    model = ActivityModel.from_pretrained(args.ckpt).eval()
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(CLIP_SAMPLES).astype(np.float32) for _ in range(args.batch_size)]
    batch = torch.from_numpy(np.stack(clips))

    def per_clip(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        return (time.perf_counter() - start) / args.repeats / args.batch_size

    with torch.no_grad():
        gru_input = torch.randn(args.batch_size, num_frames(CLIP_SAMPLES), model.gru.input_size)
        parts = {
            "conv front end": per_clip(lambda: model.encoder.feature_extractor(batch)),
            "encoder (front end included)": per_clip(lambda: encoder_hidden_states(model.encoder, batch)),
            "BiGRU": per_clip(lambda: model.gru(gru_input)),
        }
    predict_name = f"predict_clips ({str(dtype).replace('torch.', '')})"
    parts[predict_name] = per_clip(
        lambda: predict_clips(model, clips, batch_size=args.batch_size, dtype=dtype))
    module, autocast_bf16 = inference_model(model, torch.device("cpu"), dtype)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter, autocast(torch.device("cpu"), torch.bfloat16 if autocast_bf16 else torch.float32):
        module(batch)
    gflop_per_clip = counter.get_total_flops() / args.batch_size / 1e9
    predict_seconds = parts[predict_name]
    ceiling = matmul_peak(dtype, size=2048, repeats=args.repeats)
    print(f"{args.ckpt}, batches of {args.batch_size}, {torch.get_num_threads()} thread(s), {args.repeats} timed batches")
    for name, seconds in parts.items():
        print(f"{name:<32} {seconds:.4f} s/clip")
    print(f"{'products and convolutions':<32} {gflop_per_clip:.2f} GFLOP/clip, at {gflop_per_clip / predict_seconds:.1f} "
          f"GFLOP/s in predict_clips")
    print(f"{'one 2048^3 product':<32} {ceiling:.1f} GFLOP/s "
          f"(predict_clips reaches {gflop_per_clip / predict_seconds / ceiling:.0%} of it)")
    print(f"{'floor for ' + str(args.clips) + ' clips':<32} {args.clips * gflop_per_clip / ceiling:.0f} s at that rate; "
          f"{args.clips * predict_seconds:.0f} s at predict_clips' rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
