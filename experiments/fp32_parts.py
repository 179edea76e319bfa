"""The CPU fast copy part by part against the model's own modules, in float32 (or bf16), per 5 s clip.

    .venv/bin/python experiments/fp32_parts.py [--batch-sizes 1 8] [--rounds 3] [--dtype fp32]

MERT-v1-95M architecture, random weights, one thread, timed with this process's CPU time (the time it
actually ran: the machine is shared), best of ``--rounds`` interleaved rounds, in each batch size. Parts:

* conv front end: :class:`activity.cpu_kernels.FastFeatureExtractor` against transformers' own
  ``HubertFeatureEncoder`` (grouped 1-D convolutions through oneDNN, group norm);
* attention core at ``(B, 12, 374, 64)``: ours (two products and a softmax) against PyTorch's
  ``scaled_dot_product_attention`` (what transformers' ``sdpa`` runs);
* one transformer layer, the positional convolution, the head (layer mix, norm, BiGRU) and the
  whole model: the fast copy's against the model's own.

Prints a markdown table; the fast copy keeps, per part, whichever is faster (activity/cpu_kernels.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="clips per call")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the best is kept)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="the fast copy's dtype")
    p.add_argument("--encoder", default="mert-v1-95m-random", help="encoder preset (random weights)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    import torch.nn.functional as F

    from activity.constants import CLIP_SAMPLES, num_frames
    from activity.cpu_kernels import _cpu_attention, build_fast_model
    from activity.model import ActivityModel

    torch.set_num_threads(1)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(0)
    model = ActivityModel.from_encoder(args.encoder).eval()
    fast = build_fast_model(model, dtype)
    own, ours = model.encoder, fast.encoder
    config = own.config
    frames = num_frames(CLIP_SAMPLES)
    heads, head_size = config.num_attention_heads, config.hidden_size // config.num_attention_heads

    def per_clip(fn, batch: int) -> float:
        start = time.process_time()
        fn()
        return (time.process_time() - start) / batch * 1000

    table: dict[tuple[str, int], dict[str, float]] = {}
    with torch.inference_mode():
        for batch in args.batch_sizes:
            x = 0.1 * torch.randn(batch, CLIP_SAMPLES)
            h = torch.randn(batch, frames, config.hidden_size)
            q, k, v = (torch.randn(batch, heads, frames, head_size, dtype=dtype) for _ in range(3))
            hidden = [torch.randn(batch, frames, config.hidden_size) for _ in range(config.num_hidden_layers + 1)]

            def head(m):
                mixed = torch.einsum("l,lbth->bth", m.layer_weights(), torch.stack(hidden))
                return m.gru(m.mix_norm(mixed))

            parts = {
                "conv front end": (lambda: ours.feature_extractor(x), lambda: own.feature_extractor(x)),
                "attention core (x12 per clip)": (
                    lambda: _cpu_attention(None, q, k, v, None),
                    lambda: F.scaled_dot_product_attention(q, k, v).transpose(1, 2).contiguous()),
                "one transformer layer (x12)": (lambda: ours.encoder.layers[0](h.to(dtype)),
                                                lambda: own.encoder.layers[0](h)),
                "positional convolution": (lambda: ours.encoder.pos_conv_embed(h.to(dtype)),
                                           lambda: own.encoder.pos_conv_embed(h)),
                "head (layer mix, norm, BiGRU)": (lambda: head(fast), lambda: head(model)),
                "whole model": (lambda: fast(x), lambda: model(x)),
            }
            for a, b in parts.values():  # warm-up
                a(), b()
            for _ in range(args.rounds):
                for name, (a, b) in parts.items():
                    row = table.setdefault((name, batch), {"ours": float("inf"), "own": float("inf")})
                    row["ours"] = min(row["ours"], per_clip(a, batch))
                    row["own"] = min(row["own"], per_clip(b, batch))
    print(f"{args.encoder}, fast copy in {args.dtype}, 1 thread, CPU ms per clip, best of {args.rounds} rounds")
    print("| part | batch | fast copy | model's own / SDPA | own / fast |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for (name, batch), row in table.items():
        print(f"| {name} | {batch} | {row['ours']:.1f} | {row['own']:.1f} | {row['own'] / row['ours']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
