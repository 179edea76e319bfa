"""Short from-scratch training probes that compare encoder shapes and learning rates (issue 6).

Each probe builds a model from the ``compact`` preset with the given HubertConfig overrides, trains it
for ``--steps`` AdamW steps on a training split (clip BCE + frame BCE, the loss of
``activity.train``), and prints the mean training loss per window of steps, then validation mAP and
macro-F1 (thresholds tuned on the same clips) on the first ``--val-clips`` validation clips.

    .venv/bin/python experiments/probe_recipe.py --data data/synth-full/slakh --steps 400 \
        --override '{"hidden_dropout": 0.0}' --lr-encoder 1e-3

Comparing early losses is a screen, not a verdict: it picks which recipe gets the long run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("data/synth-full/slakh"))
    p.add_argument("--override", default="{}", help="JSON object of HubertConfig fields over the compact preset")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr-head", type=float, default=2e-3)
    p.add_argument("--lr-encoder", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=40)
    p.add_argument("--gru-hidden", type=int, default=128)
    p.add_argument("--window", type=int, default=100, help="steps per reported loss window")
    p.add_argument("--val-clips", type=int, default=400)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frontend-steps", type=int, default=0,
                   help="first fit the conv front end alone to the clips' log-mel spectrogram for this many steps")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = json.loads(args.override)

    import numpy as np
    import torch

    from activity import encoder as enc
    from activity.datasets import ClipDataset, read_split
    from activity.evaluate import clip_scores, tune_thresholds
    from activity.frontend import fit_frontend
    from activity.model import ActivityConfig, ActivityModel
    from activity.train import compute_loss, evaluate_split

    torch.manual_seed(args.seed)
    config = enc.hubert_config({**enc.PRESETS["compact"], **overrides}, source="probe")
    model = ActivityModel(ActivityConfig(encoder_config=enc.encoder_config_dict(config), encoder="compact+probe",
                                         gru_hidden=args.gru_hidden, gru_layers=1))
    model.train()
    optimizer = torch.optim.AdamW([
        {"params": list(model.head_parameters()), "lr": args.lr_head},
        {"params": list(model.encoder_parameters()), "lr": args.lr_encoder},
    ], weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / args.warmup_steps))

    train_set = ClipDataset(read_split(args.data, "train"), with_frames=True)
    order = np.random.default_rng(args.seed).permutation(len(train_set))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    frontend: list[str] = []
    if args.frontend_steps:
        t0 = time.perf_counter()
        fit = fit_frontend(model.encoder, train_set, args.frontend_steps, args.batch_size, seed=args.seed,
                           precision_context=lambda: autocast)
        frontend = [f"{np.mean(fit[i:i + args.window]):.3f}" for i in range(0, len(fit), args.window)]
        frontend.append(f"{time.perf_counter() - t0:.0f} s")

    losses: list[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        items = [train_set[int(i)] for i in order[step * args.batch_size: (step + 1) * args.batch_size]]
        waveform, labels, frames = (torch.stack([it[k] for it in items]) for k in range(3))
        has_frames = torch.tensor([it[3] for it in items])
        with autocast:
            out = model(waveform)
        loss = compute_loss(out, labels, frames, has_frames, 1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    seconds = time.perf_counter() - start

    val_index = read_split(args.data, "validation")
    val_set = ClipDataset(val_index, with_frames=False)
    count = min(args.val_clips, len(val_set))
    probs_all = evaluate_split(model, torch.utils.data.Subset(val_set, range(count)), 16, torch.device("cpu"),
                               args.precision)["probs"]
    truth = val_index.labels[:count]
    tuned = clip_scores(truth, probs_all, tune_thresholds(truth, probs_all))

    windows = [f"{np.mean(losses[i:i + args.window]):.3f}" for i in range(0, len(losses), args.window)]
    print(json.dumps({
        "override": overrides, "lr_encoder": args.lr_encoder, "lr_head": args.lr_head,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "s_per_step": round(seconds / args.steps, 3), "loss_windows": windows, "frontend_mse_windows": frontend,
        "val_clips": count, "val_mAP": round(float(tuned["mAP"]), 3), "val_macro_f1": round(float(tuned["macro_f1"]), 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
