"""Widen the feed-forward blocks of a trained model's encoder without changing what it computes.

    .venv/bin/python experiments/grow_model.py --ckpt checkpoints/demo --intermediate-size 1536 --out runs/wide

Each transformer layer's feed-forward block is ``W2 gelu(W1 x + b1) + b2`` with ``I`` hidden units. The
grown model keeps the trained units and adds new ones whose input weights are random (drawn with the
trained rows' spread) and whose output weights are zero, so its outputs are those of the original model
(checked here on random audio) while the new units receive gradients from the first training step
(Net2Net-style growth: more capacity without losing the hours already spent). Continue training it with
``python -m activity.train --init-from OUT``. Thresholds are copied: the function is unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, required=True, help="trained checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--intermediate-size", type=int, required=True, help="feed-forward units per layer after growing")
    p.add_argument("--out", type=Path, required=True, help="folder for the grown checkpoint (must not exist)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' input weights")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"--out {args.out} already exists; choose another folder")

    import dataclasses

    import torch

    from activity.constants import CLIP_SAMPLES
    from activity.model import ActivityModel

    old = ActivityModel.from_pretrained(args.ckpt)
    before = int(old.config.encoder_config["intermediate_size"])
    if args.intermediate_size <= before:
        raise SystemExit(f"--intermediate-size {args.intermediate_size} must exceed the model's {before}")
    encoder_config = {**old.config.encoder_config, "intermediate_size": args.intermediate_size}
    new = ActivityModel(dataclasses.replace(old.config, encoder_config=encoder_config))
    state = new.state_dict()
    generator = torch.Generator().manual_seed(args.seed)
    for key, value in old.state_dict().items():
        target = state[key]
        if target.shape == value.shape:
            target.copy_(value)
        elif key.endswith("feed_forward.intermediate_dense.weight"):  # (I, H): new rows random
            target[:before] = value
            target[before:] = torch.randn(target[before:].shape, generator=generator) * value.std()
        elif key.endswith("feed_forward.intermediate_dense.bias"):  # (I,)
            target[:before] = value
            target[before:] = 0.0
        elif key.endswith("feed_forward.output_dense.weight"):  # (H, I): new columns zero
            target[:, :before] = value
            target[:, before:] = 0.0
        else:
            raise SystemExit(f"unexpected shape change of {key}: {tuple(value.shape)} -> {tuple(target.shape)}")
    new.load_state_dict(state, strict=True)
    new.thresholds = old.thresholds
    new.eval()

    audio = torch.randn(2, CLIP_SAMPLES, generator=generator) * 0.1
    with torch.no_grad():
        difference = (old(audio).frame_probs - new(audio).frame_probs).abs().max().item()
    if difference > 1e-4:
        raise SystemExit(f"the grown model's outputs differ by {difference:.2e}; not saved")
    new.save_pretrained(args.out)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"{args.ckpt} ({count(old):.2f}M parameters, {before} feed-forward units per layer) -> {args.out} "
          f"({count(new):.2f}M, {args.intermediate_size}); largest change of a frame probability: {difference:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
