"""Which keeps fe-f's in-domain skill better per unit of CPU time: distillation or TimGM6mb mixed back?

    .venv/bin/python experiments/protect_ab.py --slice 2 --steps 200        # issue 28, deliverable 3
    .venv/bin/python experiments/protect_ab.py --slice 1 --steps 4 --size tiny   # smoke run

Trains the same number of steps from ``--init`` (the shipped fe-f) on the data of one CPU slice
(``experiments/cpu_slice.py``: its multi-font builds and, for the arms that mix it back, its plain
TimGM6mb build), with the slice recipe's settings, in four arms:

* ``neither``: the multi-font builds only, no teacher;
* ``distill``: the same clips, fe-f's soft clip and frame targets on ``--distill-share`` of each batch;
* ``mix-back``: the multi-font builds plus the plain TimGM6mb build, no teacher;
* ``both``: what the slices do.

Each arm runs ``--steps`` steps (two epochs at most: the arms' pools differ in size), validates at each
epoch's end and at the last step as the slices do, and its ``best/`` (what a slice keeps) is scored with ``experiments/cross_font.py --levels clip``
(in-domain TimGM6mb and held-out OPL3_FM, course-sized test splits, float32) and timed. Prints a
Markdown table (training seconds per step, in-domain macro-F1 and its change from the start, held-out
mAP) and writes the figures to ``--json``. Arms already scored are not run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS: dict[str, tuple[bool, bool]] = {  # arm -> (teacher's soft targets, plain TimGM6mb build mixed back)
    "neither": (False, False), "distill": (True, False), "mix-back": (False, True), "both": (True, True)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--slice", type=int, default=2, help="whose data to train on (its builds must exist: run the slice first)")
    p.add_argument("--data", type=Path, default=REPO / "data" / "cpu-slices", help="where the slices' sets are")
    p.add_argument("--test-data", type=Path, default=REPO / "data", help="where cross_font.py finds its two test splits")
    p.add_argument("--size", choices=("tiny", "demo"), default="demo", help="the slices' build size")
    p.add_argument("--init", type=Path, default=REPO / "checkpoints" / "demo", help="starting weights, also the teacher")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per arm")
    p.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    p.add_argument("--out", type=Path, default=REPO / "runs" / "protect-ab", help="run folders, one per arm")
    p.add_argument("--json", type=Path, default=REPO / "experiments" / "protect_ab.json", help="where the figures go")
    return p


def _py(*args: object) -> list[str]:
    return [sys.executable, *map(str, args)]


def _arm_commands(args: argparse.Namespace, arm: str) -> tuple[list[str], list[str]]:
    distill, mix_back = ARMS[arm]
    seeds = [1000 + 2 * args.slice - 1, 1000 + 2 * args.slice]  # cpu_slice.py's seeds for this slice
    view = args.data / f"view-slice{args.slice}"
    extra = [args.data / f"train-{args.size}-s{seeds[1]}" / "slakh"]
    if mix_back:
        extra.append(args.data / f"plain-{args.size}-s{2000 + args.slice}" / "slakh")
    for folder in [view, *extra]:
        if not folder.is_dir():
            from activity.errors import ActivityError

            raise ActivityError(f"{folder} does not exist: run experiments/cpu_slice.py for slice {args.slice} first")
    out = args.out / arm
    train = _py("-m", "activity.train", "--data", view, "--extra-train", *extra, "--out", out, "--init-from", args.init,
                "--freeze-feature-extractor", "--encoder-dropout", "0", "--batch-size", 8, "--epochs", 2,
                "--max-steps", args.steps, "--lr-head", 1e-3, "--lr-encoder", 2e-4, "--warmup", 0.05,
                "--frame-loss-weight", 1.0, "--remix-prob", 0.5, "--precision", "auto", "--num-workers", 1,
                "--save-every", 100, "--seed", 7, "--quiet",
                *(["--distill-from", args.init, "--distill-weight", 1.0, "--distill-share", 0.5] if distill else []))
    size = "tiny" if args.size == "tiny" else "full"
    score = _py(REPO / "experiments" / "cross_font.py", "--ckpt", out / "best", "--size", size, "--data",
                args.test_data, "--levels", "clip", "--dtype", "fp32", "--json", out / "cross_font.json")
    return train, score


def _split(scores: dict, role: str) -> dict:
    # cross_font.json's keys are sorted, so find each split by its role, never by position.
    return next(split for name, split in scores["splits"].items() if name.startswith(role))


def main(argv: list[str] | None = None) -> int:
    from activity.errors import run_command

    return run_command(_run, build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    from activity.fileio import write_json

    figures = json.loads(args.json.read_text()) if args.json.exists() else {}
    for arm in args.arms:
        if arm in figures and figures[arm].get("steps") == args.steps:
            continue
        train, score = _arm_commands(args, arm)
        start = time.perf_counter()
        subprocess.run(train, check=True, cwd=REPO)
        train_s = time.perf_counter() - start
        subprocess.run(score, check=True, cwd=REPO)
        scores = json.loads((args.out / arm / "cross_font.json").read_text())
        figures[arm] = {"steps": args.steps, "train_s": round(train_s, 1), "date": time.strftime("%Y-%m-%d"),
                        "in_domain": _split(scores, "in-domain"), "held_out": _split(scores, "held-out")}
        write_json(args.json, figures)
    # train_s includes start-up and one validation pass, the same in every arm: compare arms, not absolutes.
    print("| arm | training seconds per step | in-domain macro-F1 | in-domain mAP | held-out macro-F1 | held-out mAP |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for arm in args.arms:
        f = figures[arm]
        print(f"| {arm} | {f['train_s'] / f['steps']:.2f} | {f['in_domain']['macro_f1']:.4f} | {f['in_domain']['mAP']:.4f} "
              f"| {f['held_out']['macro_f1']:.4f} | {f['held_out']['mAP']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
