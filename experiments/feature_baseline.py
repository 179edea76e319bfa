"""How far simple spectral features go: a logistic regression per class on clip-level band statistics.

    .venv/bin/python experiments/feature_baseline.py [--data data/synth-slakh/slakh]

Each 5 s clip becomes the mean, standard deviation and maximum over time of its log energy in about
80 log-spaced bands (1024-point STFT, hop 480); one logistic regression per class is fitted on the
train split and scored on the validation split (macro-F1 at 0.5, macro mAP, F1 per class). A yardstick
for the learned models in experiments/RESULTS.md, not part of the package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Logistic regression on band statistics: a simple-feature yardstick.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "synth-slakh" / "slakh",
                   help="folder with train/, validation/ and {split}_labels.json")
    p.add_argument("--c", type=float, default=0.3, help="inverse regularisation strength of the regressions")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, f1_score

    from activity.constants import CLASSES
    from activity.datasets import ClipDataset, read_split

    n_fft, hop = 1024, 480
    edges = np.unique(np.geomspace(2, n_fft // 2 + 1, 80).astype(int))
    bands = torch.zeros(len(edges) - 1, n_fft // 2 + 1)
    for i in range(len(edges) - 1):
        bands[i, edges[i]:edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
    window = torch.hann_window(n_fft)

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        dataset = ClipDataset(read_split(args.data, split), with_frames=False)
        rows, labels = [], []
        for i in range(len(dataset)):
            waveform, label, _, _ = dataset[i]
            power = torch.stft(waveform, n_fft, hop, window=window, return_complex=True).abs() ** 2
            energy = torch.log(bands @ power + 1e-6)  # (bands, frames)
            rows.append(torch.cat([energy.mean(1), energy.std(1), energy.max(1).values]).numpy())
            labels.append(label.numpy())
        return np.array(rows), np.array(labels)

    x_train, y_train = features("train")
    x_val, y_val = features("validation")
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    probs = np.zeros(y_val.shape)
    for c in range(len(CLASSES)):
        probs[:, c] = LogisticRegression(max_iter=2000, C=args.c).fit(x_train, y_train[:, c]).predict_proba(x_val)[:, 1]
    per_class = f1_score(y_val, probs > 0.5, average=None, zero_division=0)
    print(f"{len(x_train)} train / {len(x_val)} validation clips, {x_train.shape[1]} features")
    print("F1 per class: " + ", ".join(f"{name} {f:.2f}" for name, f in zip(CLASSES, per_class)))
    print(f"macro-F1 {f1_score(y_val, probs > 0.5, average='macro', zero_division=0):.3f} "
          f"mAP {average_precision_score(y_val, probs, average='macro'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
