"""Whole-song activity drawn: find a test song and its MIDI, draw predicted against true rolls.

The figure has three panels: the course's 5 s view (truth and prediction side by side, per class), the
5 s predicted probabilities, and the 75 Hz predicted probability as a heat map with the true activity
outlined. Class names on the y axis, seconds on the x axis.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .constants import CLASSES, CLIP_SECONDS, FRAME_RATE
from .errors import ActivityError
from .evaluate import binarize
from .fileio import atomic_path

if TYPE_CHECKING:
    from .outputs import SongOutputs

# matplotlib is imported where a figure is drawn: 0.6 s that only the plot command and training curves need.

SONG_SUFFIXES = (".flac", ".wav", ".ogg")


def available_tracks(track_dir: Path) -> list[str]:
    """Names (without suffix) of the songs with audio in ``track_dir``."""
    return sorted({p.stem for p in track_dir.iterdir() if p.suffix.lower() in SONG_SUFFIXES})


def find_track(track_dir: Path, track: str) -> tuple[Path, Path | None]:
    """Audio and MIDI paths of ``track``; an unknown name lists the close ones."""
    if not track_dir.is_dir():
        raise ActivityError(f"--test-track-dir {track_dir} does not exist")
    for suffix in SONG_SUFFIXES:
        audio = track_dir / f"{track}{suffix}"
        if audio.is_file():
            midi = track_dir / f"{track}.mid"
            return audio, (midi if midi.is_file() else None)
    names = available_tracks(track_dir)
    close = difflib.get_close_matches(track, names, n=5, cutoff=0.6)
    hint = f"close names: {', '.join(close)}" if close else f"available: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''}"
    raise ActivityError(f"--track {track}: no {'/'.join(SONG_SUFFIXES)} file of that name in {track_dir} "
                        f"({len(names)} songs there); {hint}")


def plot_track(result: "SongOutputs", path: Path) -> Path:
    """Draw one song (:meth:`activity.api.Detector.analyse_file`'s result: rolls ``(S, 9)`` and ``(T, 9)``,
    truth or None) to a PNG at ``path`` (written atomically); returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    # The drawing puts classes on the y axis: images are (9, L), transposed from the (L, 9) rolls here only.
    n_seg = result.segment_probs.shape[0]
    seg_pred = binarize(result.segment_probs, result.thresholds).T
    n_frames = result.frame_probs.shape[0]
    duration = n_frames / FRAME_RATE if n_frames else n_seg * CLIP_SECONDS
    seg_extent = (0, n_seg * CLIP_SECONDS, len(CLASSES) - 0.5, -0.5)
    fig, axes = plt.subplots(3, 1, figsize=(14, 10), sharex=True)

    ax = axes[0]
    if result.segment_truth is not None:
        # 0 = neither, 1 = missed (truth only), 2 = false alarm (prediction only), 3 = hit (both).
        code = result.segment_truth.T.astype(int) + 2 * seg_pred.astype(int)
        cmap = ListedColormap(["white", "#f4a259", "#e15759", "#4e79a7"])
        ax.imshow(code, aspect="auto", cmap=cmap, vmin=0, vmax=3, extent=seg_extent, interpolation="nearest")
        ax.legend(handles=[Patch(color="#4e79a7", label="true and predicted"), Patch(color="#f4a259", label="missed"),
                           Patch(color="#e15759", label="false alarm")], loc="upper right", fontsize=8, ncol=3)
        ax.set_title(f"{result.name}: 5 s segments, truth vs prediction")
    else:
        ax.imshow(seg_pred, aspect="auto", cmap="Blues", vmin=0, vmax=1, extent=seg_extent, interpolation="nearest")
        ax.set_title(f"{result.name}: 5 s segments, prediction (no MIDI: no truth)")

    ax = axes[1]
    im = ax.imshow(result.segment_probs.T, aspect="auto", cmap="magma", vmin=0, vmax=1, extent=seg_extent,
                   interpolation="nearest")
    ax.set_title("5 s segment probability (auto-pooled)")
    fig.colorbar(im, ax=axes[:2], fraction=0.02, pad=0.01)

    ax = axes[2]
    frame_extent = (0, duration, len(CLASSES) - 0.5, -0.5)
    im = ax.imshow(result.frame_probs.T, aspect="auto", cmap="magma", vmin=0, vmax=1, extent=frame_extent,
                   interpolation="nearest")
    if result.frame_truth is not None and result.frame_truth.any():
        centres = (np.arange(n_frames) + 0.5) / FRAME_RATE
        ax.contour(centres, np.arange(len(CLASSES)), result.frame_truth.T, levels=[0.5], colors="cyan", linewidths=1.0)
    ax.set_title("75 Hz frame probability" + (" (cyan: true activity)" if result.frame_truth is not None else ""))
    ax.set_xlabel("time (s)")
    fig.colorbar(im, ax=axes[2], fraction=0.02, pad=0.01)
    for ax in axes:
        ax.set_yticks(range(len(CLASSES)), CLASSES)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Training and validation loss, and validation macro/micro-F1 and mAP, per epoch, to a PNG at ``path``.

    ``history``: the rows of a run's ``history.csv`` (keys ``epoch``, ``train_loss``, ``val_loss``,
    ``val_macro_f1``, ``val_micro_f1``, ``val_mAP``). Written atomically; returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_f1) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation (clip BCE)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key, label in (("val_macro_f1", "macro-F1 (tuned thresholds)"), ("val_micro_f1", "micro-F1 (tuned)"),
                       ("val_mAP", "mAP")):
        ax_f1.plot(epochs, [h[key] for h in history], "o-", label=label)
    ax_f1.set_xlabel("epoch")
    ax_f1.set_ylim(0, 1)
    ax_f1.set_title("validation")
    ax_f1.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
