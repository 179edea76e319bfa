"""What training-time remixing costs: disk of the stems, time per training item, and how often it drops a class.

    .venv/bin/python experiments/bench_remix.py --data data/next-demo-s20-stems/slakh [--items 400]

Reads the training split of a set built with ``activity.synth --stems``; prints the stems' disk per
clip against the clips', groups per clip, milliseconds per item without and with remixing (files in
the page cache, one process), and each class's share of positive training clips before and after a
pass of remixing at the given options (what "absence is learnable" means in numbers).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a data folder whose train split has stems")
    p.add_argument("--items", type=int, default=400, help="items timed per variant")
    p.add_argument("--prob", type=float, default=0.5, help="--remix-prob")
    p.add_argument("--keep", type=float, default=0.6, help="--remix-keep")
    return p


def _ms_per_item(dataset, items: int) -> float:
    for i in range(min(items, len(dataset))):  # warm the page cache
        dataset[i]
    started = time.perf_counter()
    for i in range(min(items, len(dataset))):
        dataset[i]
    return 1000 * (time.perf_counter() - started) / min(items, len(dataset))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from activity.constants import CLASSES
    from activity.datasets import ClipDataset, read_split
    from activity.remix import RemixOptions, read_clip_stems, stems_path

    index = read_split(args.data, "train")
    stems = [stems_path(index.root, "train", f.name) for f in index.files]
    present = [p for p in stems if p.is_file()]
    clip_bytes = sum(f.stat().st_size for f in index.files) / len(index)
    stem_bytes = sum(p.stat().st_size for p in present) / max(1, len(present))
    groups = [read_clip_stems(p)[1].shape[0] for p in present[: args.items]]
    print(f"{len(present)} of {len(index)} training clips have stems; disk per clip {stem_bytes / 2**20:.2f} MiB "
          f"(clip {clip_bytes / 2**20:.2f} MiB, x{stem_bytes / clip_bytes:.1f}); {np.mean(groups):.1f} groups per clip")
    plain = ClipDataset(index, with_frames=False)
    remixed = ClipDataset(index, with_frames=False, remix=RemixOptions(prob=1.0, keep=args.keep))
    print(f"ms per item: plain {_ms_per_item(plain, args.items):.2f}, remixed {_ms_per_item(remixed, args.items):.2f}")
    options = ClipDataset(index, with_frames=False, remix=RemixOptions(prob=args.prob, keep=args.keep))
    after = np.stack([options[i][1].numpy() for i in range(len(index))])
    before = index.labels.mean(axis=0)
    print(f"share of training items with each class (--remix-prob {args.prob:g} --remix-keep {args.keep:g}, one epoch):")
    for name, b, a in zip(CLASSES, before, after.mean(axis=0)):
        print(f"  {name:<17s} {b:6.1%} -> {a:6.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
