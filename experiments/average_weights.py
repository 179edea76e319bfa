"""Average the weights of checkpoints of one lineage, re-tune thresholds on validation, save the result.

    .venv/bin/python experiments/average_weights.py --ckpt runs/fe-c/best runs/fe-d/best --out runs/avg-cd

Averaging only makes sense for checkpoints that share a starting point (one continued from the
other), so that their weights lie in one basin; the models must have the same config. The thresholds
of the inputs were tuned for their own weights, so the average gets its own, tuned on --data's
validation split exactly as training tunes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, nargs="+", required=True, help="two or more checkpoint folders")
    p.add_argument("--out", type=Path, required=True, help="folder for the averaged checkpoint (must not exist)")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synth-full" / "slakh",
                   help="the course's slakh/ layout whose validation split tunes the thresholds")
    p.add_argument("--batch-size", type=int, default=8)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.ckpt) < 2:
        raise SystemExit("--ckpt: give at least two checkpoint folders to average")
    if args.out.exists():
        raise SystemExit(f"--out {args.out} already exists; choose another folder")

    import torch

    from activity.datasets import ClipDataset, read_split
    from activity.evaluate import clip_scores, tune_thresholds
    from activity.model import ActivityModel
    from activity.train import evaluate_split

    models = [ActivityModel.from_pretrained(path) for path in args.ckpt]
    configs = [m.config for m in models]
    if any(c != configs[0] for c in configs[1:]):
        raise SystemExit("--ckpt: the checkpoints have different configs (config.json); only one model's runs average")
    states = [m.state_dict() for m in models]
    averaged = {
        key: torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype) if value.is_floating_point() else value
        for key, value in states[0].items()
    }
    model = models[0]
    model.load_state_dict(averaged)

    index = read_split(args.data, "validation")
    result = evaluate_split(model, ClipDataset(index, with_frames=False), args.batch_size, torch.device("cpu"), "bf16")
    thresholds = tune_thresholds(index.labels, result["probs"])
    scores = clip_scores(index.labels, result["probs"], thresholds)
    model.thresholds = thresholds.tolist()
    model.save_pretrained(args.out)
    print(f"average of {len(models)} checkpoints -> {args.out}")
    print(f"validation ({len(index)} clips of {args.data}): loss {result['loss']:.4f}, "
          f"macro-F1 {scores['macro_f1']:.4f} (tuned), micro-F1 {scores['micro_f1']:.4f}, mAP {scores['mAP']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
