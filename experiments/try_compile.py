"""Does ``torch.compile`` (inductor, CPU) speed up ours' fast inference model? One batch, MERT-95M.

    .venv/bin/python experiments/try_compile.py [--batch-size 8] [--threads 1]

Prints eager and compiled seconds per clip (best of two timed calls after a warm-up), the compile time,
the largest clip-probability difference and the bf16 matrix-product peak with its share. Used to
decide issue 7; not wired into ``activity.predict``: see experiments/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Eager vs torch.compile for ours' CPU inference model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-size", type=int, default=8, help="clips per call")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from activity.model import ActivityModel
    from activity.cpu_kernels import inference_model
    from bench_infer import count_flops, matmul_peak, test_clips

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ActivityModel.from_encoder("mert-v1-95m-random").eval()
    fast, _ = inference_model(model, torch.device("cpu"), torch.bfloat16)
    batch = torch.from_numpy(test_clips(args.batch_size))

    def seconds_per_clip() -> tuple[float, torch.Tensor]:
        best, out = float("inf"), None
        for _ in range(2):
            start = time.perf_counter()
            with torch.inference_mode():
                out = fast(batch).clip_probs
            best = min(best, time.perf_counter() - start)
        return best / args.batch_size, out

    with torch.inference_mode():
        fast(batch)  # warm-up
    eager, eager_probs = seconds_per_clip()
    start = time.perf_counter()
    fast.encoder = torch.compile(fast.encoder)
    with torch.inference_mode():
        fast(batch)
    compile_seconds = time.perf_counter() - start
    compiled, compiled_probs = seconds_per_clip()
    peak = matmul_peak(torch.bfloat16)
    gflop = count_flops("mert-v1-95m-random")["model_gflop"]
    print(f"{args.threads} thread(s), batch {args.batch_size}, bf16 peak {peak:.0f} GFLOP/s, {gflop:.1f} GFLOP/clip")
    for name, value in (("eager", eager), ("compiled", compiled)):
        print(f"{name:<9} {value:.3f} s/clip  {gflop / value:.0f} GFLOP/s  {gflop / value / peak:.0%} of peak")
    print(f"compile {compile_seconds:.1f} s; max clip-probability difference "
          f"{(eager_probs - compiled_probs).abs().max().item():.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
