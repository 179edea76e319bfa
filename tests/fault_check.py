"""Kill -9 a training run at a random moment, resume it, and check nothing was lost.

Trains the tiny model on a small noise data set twice with the same seed: once straight through, once
killed with SIGKILL at a random moment after its first resumable save and then continued with
``--resume`` (as often as it takes). The final weights and history must match exactly, and every
checkpoint folder left behind must be loadable.

    .venv/bin/python tests/fault_check.py            # prints what it checked, exits 1 on a mismatch

tests/test_reliability.py runs it once per test session.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs of each run")
    p.add_argument("--kills", type=int, default=2, help="how many times the second run is killed")
    p.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random)")
    p.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temporary folder)")
    return p


def make_noise_data(root: Path, seed: int = 0) -> Path:
    """A small labelled clip folder (train 16, validation 6 clips of noise) in the course layout."""
    import numpy as np

    from activity.constants import CLIP_SAMPLES, NUM_CLASSES

    rng = np.random.default_rng(seed)
    for split, count in (("train", 16), ("validation", 6)):
        (root / split).mkdir(parents=True, exist_ok=True)
        labels = {}
        for i in range(count):
            name = f"Track{i // 4 + (1 if split == 'train' else 500):05d}_{i % 4}.npy"
            np.save(root / split / name, (rng.standard_normal(CLIP_SAMPLES) * 0.1).astype(np.float32))
            labels[name] = [int(v) for v in rng.random(NUM_CLASSES) < 0.5]
        (root / f"{split}_labels.json").write_text(json.dumps(labels))
    return root


def train_command(data: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "activity.train", "--data", str(data), "--out", str(out), "--encoder", "tiny",
            "--gru-hidden", "8", "--gru-layers", "2", "--gru-dropout", "0.3", "--batch-size", "2", "--num-workers", "0",
            "--epochs", str(epochs), "--save-every", "1", "--mix-prob", "0.5", "--quiet", "--seed", "3"]


def run(args: argparse.Namespace) -> int:
    from safetensors.numpy import load_file

    from activity.model import ActivityModel

    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fault_check-"))
    data = make_noise_data(work / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    whole, cut = work / "whole", work / "cut"

    subprocess.run(train_command(data, whole, args.epochs), cwd=REPO, env=env, check=True, capture_output=True)
    print(f"uninterrupted run: {whole}")

    command = train_command(data, cut, args.epochs)
    kills = 0
    while True:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < args.kills:
            # Wait for a resumable state newer than the one this process started from, then a random moment.
            start = (cut / "last" / "trainer_state.pt").stat().st_mtime if (cut / "last").exists() else 0
            while proc.poll() is None and not (
                (cut / "last" / "trainer_state.pt").exists() and (cut / "last" / "trainer_state.pt").stat().st_mtime > start):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                leftovers = sorted(p.name for p in cut.iterdir())
                ActivityModel.from_pretrained(cut / "last" / "model") if (cut / "last").is_dir() else None
                print(f"kill -9 #{kills}: run folder holds {leftovers}; last/ loads")
                command = [sys.executable, "-m", "activity.train", "--out", str(cut), "--resume", "--quiet"]
                continue
        proc.wait()
        if proc.returncode != 0:
            print(proc.stderr.read().decode()[-2000:])
            return 1
        break

    checks = []
    a = load_file(whole / "last" / "model" / "model.safetensors")
    b = load_file(cut / "last" / "model" / "model.safetensors")
    checks.append(("final weights identical", a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)))
    checks.append(("history.csv identical", (whole / "history.csv").read_text() == (cut / "history.csv").read_text()))
    checks.append(("best/ identical", (whole / "best" / "model.safetensors").read_bytes() == (cut / "best" / "model.safetensors").read_bytes()))
    checks.append(("no temporary files left", not any(p.name.endswith((".tmp", ".old")) for p in cut.rglob("*"))))
    for name, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    print(f"killed {kills} time(s); {'all checks passed' if all(ok for _, ok in checks) else 'MISMATCH'}")
    return 0 if all(ok for _, ok in checks) else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
