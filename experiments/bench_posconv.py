"""The encoder's positional convolution in bf16 against float32: error and time per shape, and the guard's cost.

    .venv/bin/python experiments/bench_posconv.py            # under this process's ONEDNN_MAX_CPU_ISA
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 .venv/bin/python experiments/bench_posconv.py

For each encoder shape (channels, kernel, groups) it runs ``F.conv1d`` on a batch of 8 clips' worth of
frames (T = 374) in float32 and in bf16 and prints the relative error ``|bf16 - fp32| / |fp32|`` and both
times (best of 5). Then it times what the guard of :mod:`activity.precision` costs when a fast copy of
``compact`` is built: the model's own float32 forward and the bf16 copy's forward on the probe clip.
"""

from __future__ import annotations

import argparse
import os
import time


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    return p


def best_seconds(run, repeats: int = 5) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    import torch.nn.functional as F

    from activity.constants import CLIP_SAMPLES, num_frames
    from activity.cpu_kernels import build_fast_model
    from activity.model import ActivityModel
    from activity.numerics import onednn_isa
    from activity.precision import probe_clips, reference_output

    torch.set_num_threads(args.threads)
    print(f"oneDNN ISA: {onednn_isa()} (ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}), "
          f"{args.threads} thread(s)")
    print("| shape | channels, kernel, groups | bf16 relative error | fp32 ms | bf16 ms |")
    print("|---|---|---:|---:|---:|")
    generator = torch.Generator().manual_seed(0)
    frames = num_frames(CLIP_SAMPLES)
    for name, channels, kernel, groups in (("tiny", 16, 16, 2), ("128 channels", 128, 128, 16),
                                           ("compact", 192, 128, 16), ("MERT-95M", 768, 128, 16),
                                           ("MERT-330M", 1024, 128, 16)):
        x = torch.randn(8, channels, frames, generator=generator)
        w = torch.randn(channels, channels // groups, kernel, generator=generator) * (channels // groups * kernel) ** -0.5
        with torch.inference_mode():
            ref = F.conv1d(x, w, padding=kernel // 2, groups=groups)
            xb, wb = x.bfloat16(), w.bfloat16()
            low = F.conv1d(xb, wb, padding=kernel // 2, groups=groups).float()
            error = float((low - ref).norm() / ref.norm())
            fp32 = best_seconds(lambda: F.conv1d(x, w, padding=kernel // 2, groups=groups))
            bf16 = best_seconds(lambda: F.conv1d(xb, wb, padding=kernel // 2, groups=groups))
        print(f"| {name} | {channels}, {kernel}, {groups} | {error:.3f} | {1000 * fp32:.1f} | {1000 * bf16:.1f} |")

    torch.manual_seed(0)
    model = ActivityModel.from_encoder("compact").eval()
    cpu = torch.device("cpu")
    reference = best_seconds(lambda: reference_output(model, cpu), repeats=3)
    fast = build_fast_model(model, torch.bfloat16)
    probe = probe_clips()

    def fast_forward():
        with torch.inference_mode():
            fast(probe)

    print(f"\nguard for compact: float32 reference {reference:.3f} s + bf16 copy {best_seconds(fast_forward, 3):.3f} s "
          f"on the 5 s probe clip")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
