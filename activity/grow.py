"""``python -m activity.grow``: widen the feed-forward blocks of a trained model's encoder without changing what it computes.

    python -m activity.grow --ckpt checkpoints/demo --intermediate-size 1536 --out runs/wide

Each transformer layer's feed-forward block is ``W2 gelu(W1 x + b1) + b2`` with ``I`` hidden units. The
grown model keeps the trained units and adds new ones whose input weights are random (drawn with the
trained rows' spread) and whose output weights are zero, so its outputs are those of the original model
(checked on random audio before saving) while the new units receive gradients from the first training
step (Net2Net-style growth: more capacity without losing the hours already spent). Continue training it
with ``python -m activity.train --init-from OUT``. Thresholds are copied: the function is unchanged. A step
of the shipped checkpoint's recipe (fe-e and fe-f).
"""

from __future__ import annotations

# A command line: torch, the model and the data are imported inside the functions, after the arguments are
# parsed, so `--help` and a bad flag answer at once (start-up time).

import argparse
import sys
from pathlib import Path

from .errors import ActivityError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m activity.grow", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("--ckpt", type=Path, required=True, help="trained checkpoint folder (config.json + model.safetensors)")
    p.add_argument("--intermediate-size", type=int, required=True, help="feed-forward units per layer after growing")
    p.add_argument("--out", type=Path, required=True, help="folder for the grown checkpoint (must not exist)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' input weights")
    return p


def grow_feed_forward(old, intermediate_size: int, seed: int = 0):
    """A copy of ``old`` (an :class:`~activity.model.ActivityModel`) with ``intermediate_size`` feed-forward units.

    Raises :class:`ActivityError` when the size does not grow or the grown model's frame probabilities on
    random audio differ from the old one's by more than 1e-4. Returns ``(model, largest difference)``.
    """
    import dataclasses

    import torch

    from .constants import CLIP_SAMPLES
    from .model import ActivityModel

    if "intermediate_size" not in old.config.encoder_config:
        raise ActivityError(f"the {old.config.encoder_kind} encoder has no intermediate_size to grow")
    before = int(old.config.encoder_config["intermediate_size"])
    if intermediate_size <= before:
        raise ActivityError(f"--intermediate-size {intermediate_size} must exceed the model's {before}")
    encoder_config = {**old.config.encoder_config, "intermediate_size": intermediate_size}
    new = ActivityModel(dataclasses.replace(old.config, encoder_config=encoder_config))
    state = new.state_dict()
    generator = torch.Generator().manual_seed(seed)
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
            raise ActivityError(f"unexpected shape change of {key}: {tuple(value.shape)} -> {tuple(target.shape)}")
    new.load_state_dict(state, strict=True)
    new.thresholds = old.thresholds
    new.eval()
    old.eval()
    audio = torch.randn(2, CLIP_SAMPLES, generator=generator) * 0.1
    with torch.no_grad():
        difference = (old(audio).frame_probs - new(audio).frame_probs).abs().max().item()
    if difference > 1e-4:
        raise ActivityError(f"the grown model's outputs differ by {difference:.2e}; not saved")
    return new, difference


def run(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise ActivityError(f"--out {args.out} already exists; choose another folder")
    from .model import ActivityModel

    old = ActivityModel.from_pretrained(args.ckpt)
    new, difference = grow_feed_forward(old, args.intermediate_size, args.seed)
    new.save_pretrained(args.out)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    before = old.config.encoder_config["intermediate_size"]
    print(f"{args.ckpt} ({count(old):.2f}M parameters, {before} feed-forward units per layer) -> {args.out} "
          f"({count(new):.2f}M, {args.intermediate_size}); largest change of a frame probability: {difference:.1e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import run_command

    return run_command(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
