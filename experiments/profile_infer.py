"""Where ours' clip-inference time goes, and what bounds its share of the matrix-product peak.

    .venv/bin/python experiments/profile_infer.py [--batches 2] [--batch-size 8] [--threads N]

Runs :func:`activity.predict.predict_clips` (the path ``activity.infer`` takes) on the MERT-v1-95M
architecture with random weights under ``torch.profiler``, after one warm-up batch, and groups the
operators' own CPU time into matrix products (``mm``/``bmm``/``addmm``/``linear``...), convolutions
(the positional conv), attention softmax, GELU, layer/group norm, the BiGRU, and the rest. For each
group it prints the time share and, where the profiler counts FLOPs, the rate reached against the
4096^3 matrix-product peak in the same dtype measured in this process. The last line is
``matmul_share=<time share of products> matmul_roofline=<their rate / peak> bound=<overall / peak>``:
overall share of peak cannot exceed ``matmul_share * matmul_roofline`` plus what the other groups'
FLOPs add.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict


GROUPS: dict[str, tuple[str, ...]] = {
    "matrix products": ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear", "aten::baddbmm",
                        "aten::_addmm_activation"),
    "convolution": ("aten::convolution", "aten::_convolution", "aten::mkldnn_convolution", "aten::conv1d"),
    "softmax": ("aten::softmax", "aten::_softmax"),
    "gelu": ("aten::gelu",),
    "norms": ("aten::layer_norm", "aten::native_layer_norm", "aten::group_norm", "aten::native_group_norm"),
    "gru": ("aten::gru", "aten::mkldnn_rnn", "aten::_thnn_fused_gru_cell", "aten::gru_cell"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Profile ours' clip inference by operator group.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batches", type=int, default=2, help="batches profiled after one warm-up batch")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    p.add_argument("--encoder", default="mert-v1-95m-random", help="encoder (a random-weight preset by default)")
    p.add_argument("--dtype", default="auto", help="auto, bf16 or fp32")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    return p


def group_of(name: str) -> str:
    for group, names in GROUPS.items():
        if name in names:
            return group
    return "other"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from activity.model import ActivityModel
    from activity.precision import resolve_dtype
    from activity.predict import predict_clips
    from bench_infer import count_flops, matmul_peak, test_clips

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ActivityModel.from_encoder(args.encoder).eval()
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    clips = test_clips(args.batch_size * (args.batches + 1))
    predict_clips(model, clips[: args.batch_size], batch_size=args.batch_size, dtype=dtype)  # warm-up
    peak = matmul_peak(dtype)
    timed = clips[args.batch_size:]
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        predict_clips(model, timed, batch_size=args.batch_size, dtype=dtype)
    wall = time.perf_counter() - start
    peak = max(peak, matmul_peak(dtype))
    model_gflop = count_flops(args.encoder)["model_gflop"] * len(timed)

    seconds: dict[str, float] = defaultdict(float)
    flops: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        group = group_of(event.key)
        seconds[group] += event.self_cpu_time_total / 1e6
        flops[group] += float(event.flops or 0)
    total = sum(seconds.values())
    print(f"{args.encoder}, {len(timed)} clips in batches of {args.batch_size}, {str(dtype).replace('torch.', '')}, "
          f"{torch.get_num_threads()} thread(s); peak {peak:.0f} GFLOP/s; wall {wall:.2f} s "
          f"({wall / len(timed):.3f} s/clip; the profiler adds a little)")
    print(f"{'group':<16} {'self s':>8} {'share':>7} {'GFLOP':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for group in sorted(seconds, key=seconds.get, reverse=True):
        rate = flops[group] / 1e9 / seconds[group] if seconds[group] and flops[group] else 0.0
        counted = f"{flops[group] / 1e9:8.1f} {rate:8.0f} {rate / peak:8.1%}" if rate else f"{'-':>8} {'-':>8} {'-':>8}"
        print(f"{group:<16} {seconds[group]:8.2f} {seconds[group] / total:7.1%} {counted}")
    products = "matrix products"
    product_rate = flops[products] / 1e9 / seconds[products] if seconds[products] else 0.0
    overall = model_gflop / wall / peak
    print(f"model FLOPs (FlopCounterMode): {model_gflop:.0f} GFLOP; overall {model_gflop / wall:.0f} GFLOP/s")
    print(f"matmul_share={seconds[products] / total:.2f} matmul_roofline={product_rate / peak:.2f} bound={overall:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
