"""Training-time remixing of a clip's own stems: random subsets and gains, labels and truth following.

A synthetic set built with ``python -m activity.synth --stems`` keeps, beside every training clip
``slakh/train/TrackNNNNN_k.npy``, its stems grouped by class in ``slakh/stems/train/TrackNNNNN_k.npz``:

- ``audio``: float16 ``(G, 120000)``, one row per group that sounds in the clip, at 24 kHz; the rows
  sum to the clip's mix before the mix bus (bus compression and noise are not in them);
- ``groups``: int8 ``(G,)``, the group of each row: a class index 0-8 in ``constants.CLASSES`` order,
  or :data:`OTHER_GROUP` for drum kits and the programs that count for no class.

:func:`remix_clip` then draws which groups a training item keeps and at what gain. A class whose
group is dropped loses its clip label and its 75 Hz truth; the others keep theirs, so a clip without
bass is as common in training as the keep rate makes it. Real Slakh ships its stems too, so a user
can write the same files for the course's data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import NUM_CLASSES
from .errors import ActivityError
from .taxonomy import class_of

STEMS_FOLDER = "stems"
"""Under a data folder (the one holding ``{split}/`` and ``{split}_labels.json``)."""

OTHER_GROUP: int = NUM_CLASSES
"""The group of drum kits and of programs 109 and 111: audible, but no class's label."""

SILENT_ROW = 1e-6
"""Largest absolute sample of a group row that is not written (it adds nothing to the clip)."""


def group_of(program: int, is_drum: bool) -> int:
    """The stem group of a MIDI instrument: its class index, or :data:`OTHER_GROUP`."""
    cls = class_of(program, is_drum)
    return OTHER_GROUP if cls is None else cls


def stems_path(root: str | os.PathLike, split: str, clip_name: str) -> Path:
    """Where the stems of clip ``clip_name`` (``TrackNNNNN_k.npy``) of ``root/split`` are kept."""
    return Path(root) / STEMS_FOLDER / split / (Path(clip_name).stem + ".npz")


def write_clip_stems(handle, audio: np.ndarray, groups: list[int] | np.ndarray) -> None:
    """Write one clip's group rows ``audio`` ``(G, N)`` and their ``groups`` ``(G,)`` as an .npz to ``handle``."""
    np.savez(handle, audio=np.asarray(audio, dtype=np.float16), groups=np.asarray(groups, dtype=np.int8))


def read_clip_stems(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``audio`` float32 ``(G, N)`` and ``groups`` int64 ``(G,)`` of a stems file; one clear error when it is bad."""
    try:
        with np.load(path, allow_pickle=False) as data:
            audio = data["audio"].astype(np.float32)
            groups = data["groups"].astype(np.int64)
    except Exception as exc:
        raise ActivityError(f"stems file {path} is not readable ({exc}); rebuild the set with "
                            f"python -m activity.synth --stems") from None
    if audio.ndim != 2 or groups.shape != (audio.shape[0],) or groups.min(initial=0) < 0 or groups.max(initial=0) > OTHER_GROUP:
        raise ActivityError(f"stems file {path} holds audio {audio.shape} and groups {groups.tolist()}; "
                            f"expected (G, N) rows with one group 0-{OTHER_GROUP} each")
    return audio, groups


@dataclass(frozen=True)
class RemixOptions:
    """How training items are remixed.

    ``prob``: share of items remixed (the others are served as they are). ``keep``: chance each
    group is kept (at least one group with a positive label always is). ``gain_db``: range of the
    gain drawn for every kept group, in dB.
    """

    prob: float = 0.5
    keep: float = 0.6
    gain_db: tuple[float, float] = (-9.0, 3.0)

    def __post_init__(self) -> None:
        for name, value in (("prob", self.prob), ("keep", self.keep)):
            if not 0.0 <= value <= 1.0:
                raise ActivityError(f"remix {name} must be in [0, 1], got {value}")
        if self.gain_db[0] > self.gain_db[1]:
            raise ActivityError(f"remix gain range {self.gain_db} is empty")


def remix_clip(audio: np.ndarray, groups: np.ndarray, labels: np.ndarray, frames: np.ndarray, peak: float,
               rng: np.random.Generator, options: RemixOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One remix of a clip from its group rows; ``None`` when the clip has no group to keep.

    ``audio`` float32 ``(G, N)`` and ``groups`` ``(G,)`` from :func:`read_clip_stems`; ``labels``
    ``(9,)`` and ``frames`` ``(T, 9)`` the clip's truth; ``peak`` the clip's largest absolute sample,
    which the remix is scaled to (so levels stay those of the mixes). Returns the waveform float32
    ``(N,)`` and the labels and frames with every dropped class zeroed. Draws the same number of
    values from ``rng`` whatever is kept.
    """
    positive = np.array([g < NUM_CLASSES and labels[g] > 0 for g in groups], dtype=bool)
    kept = rng.random(groups.shape[0]) < options.keep
    gains = 10 ** (rng.uniform(options.gain_db[0], options.gain_db[1], size=groups.shape[0]) / 20)
    fallback = int(rng.integers(max(1, int(positive.sum()))))
    if not positive.any():
        return None
    if not (kept & positive).any():
        kept[np.flatnonzero(positive)[fallback]] = True
    waveform = (gains[kept, None] * audio[kept]).sum(axis=0)
    largest = float(np.max(np.abs(waveform)))
    if largest <= 0:
        return None
    waveform = (waveform * (peak / largest)).astype(np.float32)
    dropped = np.zeros(NUM_CLASSES, dtype=bool)
    dropped[[g for g in groups[~kept] if g < NUM_CLASSES]] = True
    keep_mask = (~dropped).astype(labels.dtype)
    return waveform, labels * keep_mask, frames * keep_mask.astype(frames.dtype)[None, :]
