"""Training throughput: clips per second and peak memory of one optimiser step, per architecture.

    .venv/bin/python experiments/bench_train.py [--steps 2] [--batch-size 8] [--configs compact,compact-frozen-fe,95m-frozen,95m]
    .venv/bin/python experiments/bench_train.py --configs mert-v0-random@frozen-fe,music2vec-v1-random,/path/to/model

A configuration is a name of :data:`CONFIGS` or any ``--encoder`` of ``activity.train`` (a preset, a model
folder), optionally followed by ``@frozen`` (the whole encoder) or ``@frozen-fe`` (its front end).

One step is what ``activity.train`` does per batch: forward in train mode, the training loss
(``activity.train.compute_loss``: BCE on ``clip_probs``), backward and an AdamW step with the head and
encoder parameter groups. Each configuration runs in its own process so its peak memory (CPU resident
set; on CUDA also ``torch.cuda.max_memory_allocated``) is its own. Runs on CUDA when available, in the
precision ``train --precision`` would use (``--precision``, resolved by :func:`activity.precision.resolve_dtype`
and checked against float32 like training does: bf16 autocast on CUDA and on CPUs fast at bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (encoder preset, what is frozen: nothing, the conv front end or the whole encoder)
CONFIGS = {
    "compact": ("compact", None),
    "compact-frozen-fe": ("compact", "front end"),
    "95m-frozen": ("mert-v1-95m-random", "encoder"),
    "95m-frozen-fe": ("mert-v1-95m-random", "front end"),
    "95m": ("mert-v1-95m-random", None),
    "330m-frozen-fe": ("mert-v1-330m-random", "front end"),
    "330m": ("mert-v1-330m-random", None),
    "demo-frozen-fe": ("checkpoints/demo", "front end"),  # the shipped model's architecture, as fe-f trained
    "mert-v0-frozen-fe": ("mert-v0-random", "front end"),  # 16 kHz, 50 Hz: the course table's other encoders
    "mert-v0": ("mert-v0-random", None),
    "music2vec-frozen-fe": ("music2vec-v1-random", "front end"),
    "music2vec": ("music2vec-v1-random", None),
}
_FROZEN_SUFFIXES = {"": None, "frozen": "encoder", "frozen-fe": "front end"}


def parse_config(name: str) -> tuple[str, str | None]:
    """``(encoder, frozen part)`` of a configuration name: a :data:`CONFIGS` key or ``ENCODER[@frozen|@frozen-fe]``."""
    if name in CONFIGS:
        return CONFIGS[name]
    encoder, _, suffix = name.partition("@")
    if suffix not in _FROZEN_SUFFIXES:
        raise ValueError(f"{name}: the suffix after @ must be frozen or frozen-fe")
    return encoder, _FROZEN_SUFFIXES[suffix]
DEFAULT_CONFIGS = ("compact", "compact-frozen-fe", "95m-frozen", "95m")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark training steps (AdamW, clip BCE) per architecture.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help=f"comma-separated: from {', '.join(CONFIGS)}, or any --encoder of activity.train "
                   "(ENCODER, ENCODER@frozen, ENCODER@frozen-fe)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per step")
    p.add_argument("--batch-size-95m", type=int, default=None,
                   help="batch for the trainable 95M encoder (default: --batch-size)")
    p.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", help="auto, bf16 or fp32, as activity.train's --precision")
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    return p


def run_config(name: str, args: argparse.Namespace) -> dict:
    import torch

    from activity.constants import CLIP_SAMPLES, NUM_CLASSES, num_frames
    from activity.model import ActivityModel
    from activity.precision import autocast, checked_autocast_dtype, resolve_dtype
    from activity.predict import resolve_device
    from activity.train import compute_loss

    encoder, frozen = parse_config(name)
    batch = args.batch_size_95m if (name == "95m" and args.batch_size_95m) else args.batch_size
    device = resolve_device(args.device)
    torch.manual_seed(0)
    checkpoint = ROOT / encoder
    model = ActivityModel.from_pretrained(checkpoint) if checkpoint.is_dir() else ActivityModel.from_encoder(encoder)
    if frozen == "encoder":
        model.freeze_encoder()
    elif frozen == "front end":
        model.freeze_feature_extractor()
    model.to(device).train()
    dtype = checked_autocast_dtype(model, device, resolve_dtype(args.precision, device))
    groups = [{"params": [p for p in model.head_parameters() if p.requires_grad], "lr": 1e-3},
              {"params": [p for p in model.encoder_parameters() if p.requires_grad], "lr": 1e-5}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.01)
    waveform = (0.1 * torch.randn(batch, CLIP_SAMPLES)).to(device)
    labels = (torch.rand(batch, NUM_CLASSES) < 0.3).float().to(device)
    frames = torch.zeros(batch, num_frames(CLIP_SAMPLES), NUM_CLASSES, device=device)
    has_frames = torch.zeros(batch, dtype=torch.bool, device=device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            out = model(waveform)
        loss = compute_loss(out, labels, frames, has_frames, 0.0)
        loss.backward()
        optimizer.step()
        return float(loss)

    step()  # warm-up: optimiser state, allocator, kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    seconds = time.perf_counter() - start
    result = {"name": name, "encoder": encoder, "describe": model.encoder.describe(), "frozen": frozen, "batch": batch, "steps": args.steps,
              "seconds": seconds, "loss": loss, "device": str(device), "threads": torch.get_num_threads(),
              "precision": "bf16 autocast" if dtype == torch.bfloat16 else "float32",
              "trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["gpu"] = torch.cuda.get_device_name(device)
    return result


def _released() -> set[str]:
    from activity.encoder import PRETRAINED_HUB_IDS

    return set(PRETRAINED_HUB_IDS)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config is not None:
        print(json.dumps(run_config(args.config, args)))
        return 0
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    from activity.encoder import random_preset

    unknown = [n for n in names if n not in CONFIGS and random_preset(n.partition("@")[0]) is None
               and not Path(n.partition("@")[0]).is_dir() and n.partition("@")[0].lower() not in _released()]
    bad_suffix = [n for n in names if n not in CONFIGS and n.partition("@")[2] not in _FROZEN_SUFFIXES]
    if unknown or bad_suffix:
        print(f"error: --configs: unknown {', '.join(unknown + bad_suffix)}; choose from {', '.join(CONFIGS)}, or "
              "an encoder preset or folder with an optional @frozen / @frozen-fe", file=sys.stderr)
        return 2
    passthrough = list(sys.argv[1:] if argv is None else argv)
    load = os.getloadavg()[0]
    rows = []
    for name in names:
        command = [sys.executable, str(Path(__file__).resolve()), *passthrough, "--config", name]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            print(f"error: configuration {name} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{name}: {rows[-1]['seconds'] / rows[-1]['steps']:.3g} s/step", file=sys.stderr)

    device = rows[0]["device"]
    print(f"device {device}{' (' + rows[0]['gpu'] + ')' if 'gpu' in rows[0] else ''}, {rows[0]['threads']} threads, "
          f"{rows[0]['precision']} (--precision {args.precision}); {args.steps} timed steps after one "
          f"warm-up; load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    memory = "peak CUDA memory (MiB)" if device.startswith("cuda") else "peak RSS (MiB)"
    print(f"| configuration | trainable params (M) | batch | s/step | clips/s | {memory} |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        per_step = row["seconds"] / row["steps"]
        mem = row.get("cuda_peak_mib", row["peak_rss_mib"])
        print(f"| {row['name']} ({row['encoder']}{', frozen ' + row['frozen'] if row['frozen'] else ''}) | "
              f"{row['trainable_m']:.2f} | {row['batch']} | {per_step:.3g} | {row['batch'] / per_step:.3g} | {mem:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
