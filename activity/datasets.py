"""The course's clip folders: ``DIR/{split}/TrackNNNNN_k.npy`` + ``DIR/{split}_labels.json``.

:func:`read_split` checks a whole split before any training starts (folder, labels JSON, every file's
``.npy`` header) and raises one :class:`~activity.errors.ActivityError` that names the file and what is
wrong. :class:`ClipDataset` then serves ``(waveform, labels, frame truth)`` triples; frame truth at
75 Hz exists when the song's MIDI is in ``DIR/midi/TrackNNNNN.mid`` (the synthetic set writes it;
for the course's data a user can copy Slakh's MIDI there). With :class:`~activity.remix.RemixOptions`
a share of the training items is remixed from the clip's own stems (``DIR/stems/``, :mod:`activity.remix`).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import load_clip
from .constants import CLASSES, CLIP_SAMPLES, HOP, NUM_CLASSES, num_frames
from .errors import ActivityError
from .midi import frame_roll
from .remix import STEMS_FOLDER, RemixOptions, read_clip_stems, remix_clip, stems_path

SPLITS = ("train", "validation", "test")
CLIP_NAME = re.compile(r"^(?P<track>Track\d+)_(?P<segment>\d+)\.npy$")
CLIP_FRAMES = num_frames(CLIP_SAMPLES)
MIDI_FOLDER = "midi"


@dataclass
class SplitIndex:
    """Files and labels of one split, sorted by file name.

    ``labels`` is ``(M, 9)`` uint8. ``tracks[i]``/``segments[i]`` come from ``TrackNNNNN_k.npy``
    (``None`` for other names). ``length_fixed`` counts clips that are not 120000 samples long.
    """

    root: Path
    split: str
    files: list[Path]
    labels: np.ndarray
    tracks: list[str | None] = field(default_factory=list)
    segments: list[int | None] = field(default_factory=list)
    length_fixed: int = 0

    def __len__(self) -> int:
        return len(self.files)


def _check_name(name: object, labels_path: Path) -> str:
    """A label key must be a bare ``.npy`` file name: no folders, no ``..``, not absolute."""
    if not isinstance(name, str) or not name.endswith(".npy"):
        raise ActivityError(f"{labels_path}: key {name!r} is not an .npy file name")
    if name != os.path.basename(name) or name in (".", "..") or "\\" in name or os.path.isabs(name):
        raise ActivityError(f"{labels_path}: key {name!r} points outside the split folder; only bare file names are allowed")
    return name


def _check_label(name: str, value: object, labels_path: Path) -> list[int]:
    if not isinstance(value, list) or len(value) != NUM_CLASSES:
        length = len(value) if isinstance(value, list) else type(value).__name__
        raise ActivityError(f"{labels_path}: label of {name} must be a list of {NUM_CLASSES} values (one per class: {', '.join(CLASSES)}), got {length}")
    out = []
    for v in value:
        if isinstance(v, bool) or v not in (0, 1):
            raise ActivityError(f"{labels_path}: label of {name} has value {v!r}; only 0 and 1 are allowed")
        out.append(int(v))
    return out


def _npy_samples(path: Path) -> int:
    """Number of mono samples an ``.npy`` clip holds, from its header; raises on a bad file."""
    try:
        # A memory map reads only the header, and fails when the data is shorter than it promises.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise ActivityError(f"clip {path} is not a readable .npy array (truncated or another format): {exc}") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise ActivityError(f"clip {path} does not hold an array of audio samples")
    shape = array.shape
    del array
    if len(shape) == 1:
        return int(shape[0])
    if len(shape) == 2 and min(shape) <= 16:
        return int(max(shape))
    raise ActivityError(f"clip {path} has shape {shape}; expected (N,), (2, N) or (N, 2) audio")


def read_split(root: str | os.PathLike, split: str) -> SplitIndex:
    """Index and validate ``root/split`` against ``root/{split}_labels.json``.

    Every labelled file must exist and every ``.npy`` in the folder must be labelled; labels are
    lists of nine 0/1 values. Clips of another length are allowed (they are padded or cropped when
    loaded) and counted in ``length_fixed``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ActivityError(f"data folder {root} does not exist")
    folder = root / split
    labels_path = root / f"{split}_labels.json"
    if not folder.is_dir():
        raise ActivityError(f"split folder {folder} does not exist (expected {root}/{{{','.join(SPLITS)}}}/)")
    if not labels_path.is_file():
        raise ActivityError(f"labels file {labels_path} does not exist")
    try:
        raw = json.loads(labels_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ActivityError(f"labels file {labels_path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ActivityError(f"labels file {labels_path} must map file names to label lists, and not be empty")

    labels = {_check_name(k, labels_path): _check_label(k, v, labels_path) for k, v in raw.items()}
    on_disk = {p.name for p in folder.glob("*.npy")}
    missing = sorted(set(labels) - on_disk)
    if missing:
        raise ActivityError(f"{labels_path} names {len(missing)} file(s) missing from {folder}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    unlabelled = sorted(on_disk - set(labels))
    if unlabelled:
        raise ActivityError(f"{folder} has {len(unlabelled)} .npy file(s) without a label in {labels_path}: {', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''}")

    names = sorted(labels)
    files = [folder / n for n in names]
    length_fixed = sum(_npy_samples(f) != CLIP_SAMPLES for f in files)
    matches = [CLIP_NAME.match(n) for n in names]
    return SplitIndex(
        root=root,
        split=split,
        files=files,
        labels=np.array([labels[n] for n in names], dtype=np.uint8).reshape(-1, NUM_CLASSES),
        tracks=[m["track"] if m else None for m in matches],
        segments=[int(m["segment"]) if m else None for m in matches],
        length_fixed=length_fixed,
    )


def warn_length_fixed(index: SplitIndex) -> None:
    """One warning per split that counts the clips padded or cropped to 120000 samples."""
    if index.length_fixed:
        warnings.warn(
            f"{index.length_fixed} of {len(index)} clips in {index.root / index.split} are not "
            f"{CLIP_SAMPLES} samples long; they are zero-padded or cropped",
            stacklevel=2,
        )


def _default_workers(tasks: int) -> int:
    """Processes for ``tasks`` MIDI parses: the CPUs this process may use, at least 32 songs each."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, tasks // 32))


def song_frame_rolls(midi_paths: list[Path], workers: int | None = None) -> list[np.ndarray]:
    """:func:`activity.midi.frame_roll` of each file, ``(T, 9)`` uint8 each, in order.

    Parsing MIDI is pure Python (about 17 ms per 50 s song), so several training builds' worth of songs
    is parsed by ``workers`` processes (default: one per CPU, at least 32 songs each); 1 parses here.
    """
    workers = _default_workers(len(midi_paths)) if workers is None else workers
    if workers <= 1 or len(midi_paths) <= 1:
        return [frame_roll(path) for path in midi_paths]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(frame_roll, midi_paths, chunksize=max(1, len(midi_paths) // (4 * workers))))


def clip_frame_truth(index: SplitIndex, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """75 Hz truth of each clip from its song's MIDI in ``root/midi/``.

    Returns ``frames`` ``(M, 374, 9)`` uint8 and ``has_frames`` ``(M,)`` bool; clips without a MIDI
    (or without a ``TrackNNNNN_k`` name) get zeros and ``False``. ``workers`` is passed to
    :func:`song_frame_rolls`.
    """
    frames = np.zeros((len(index), CLIP_FRAMES, NUM_CLASSES), dtype=np.uint8)
    has = np.zeros(len(index), dtype=bool)
    frames_per_clip = CLIP_SAMPLES // HOP  # clip k starts at frame k * 375 of its song
    songs = sorted({t for t, k in zip(index.tracks, index.segments) if t is not None and k is not None})
    paths = {t: index.root / MIDI_FOLDER / f"{t}.mid" for t in songs}
    with_midi = [t for t in songs if paths[t].is_file()]
    rolls = dict(zip(with_midi, song_frame_rolls([paths[t] for t in with_midi], workers)))
    for i, (track, segment) in enumerate(zip(index.tracks, index.segments)):
        roll = rolls.get(track) if segment is not None else None
        if roll is None:
            continue
        start = segment * frames_per_clip
        piece = roll[start : start + CLIP_FRAMES]
        frames[i, : piece.shape[0]] = piece
        has[i] = True
    return frames, has


class ClipDataset:
    """A ``torch.utils.data.Dataset`` of one split.

    Item ``i`` is ``(waveform (120000,) float32, labels (9,) float32, frames (374, 9) float32,
    has_frames bool)``; frames are zeros when the clip has no MIDI truth.

    With ``remix``, each item whose clip has stems is remixed with probability ``remix.prob``
    (:func:`activity.remix.remix_clip`), drawn from a generator seeded by ``(seed, epoch, i)``:
    the same item of the same epoch is the same remix in any worker and after a resume. Call
    :meth:`set_epoch` before each epoch's loader is made.
    """

    def __init__(self, index: SplitIndex, with_frames: bool = True, remix: RemixOptions | None = None,
                 seed: int = 0) -> None:
        self.index = index
        if with_frames:
            self.frames, self.has_frames = clip_frame_truth(index)
        else:
            self.frames = np.zeros((len(index), CLIP_FRAMES, NUM_CLASSES), dtype=np.uint8)
            self.has_frames = np.zeros(len(index), dtype=bool)
        self.remix = remix
        self.seed = seed
        self.epoch = 0
        self.stems: list[Path | None] = [None] * len(index)
        if remix is not None:
            paths = [stems_path(index.root, index.split, f.name) for f in index.files]
            self.stems = [p if p.is_file() else None for p in paths]

    @property
    def with_stems(self) -> int:
        """How many clips have stems to remix."""
        return sum(p is not None for p in self.stems)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        import torch

        waveform, _ = load_clip(self.index.files[i])
        labels = self.index.labels[i]
        frames = self.frames[i]
        if self.remix is not None and self.stems[i] is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            if rng.random() < self.remix.prob:
                audio, groups = read_clip_stems(self.stems[i])
                mixed = remix_clip(audio, groups, labels, frames, float(np.max(np.abs(waveform))), rng, self.remix)
                if mixed is not None:
                    waveform, labels, frames = mixed
        return (
            torch.from_numpy(waveform),
            torch.from_numpy(labels.astype(np.float32)),
            torch.from_numpy(frames.astype(np.float32)),
            bool(self.has_frames[i]),
        )


class ConcatClipDataset:
    """Several :class:`ClipDataset` served as one (item ``i`` runs through them in order).

    ``has_frames`` ``(M,)`` is the concatenation of the parts' flags. Track names may repeat across
    parts (two synthetic builds both have a Track00001); each clip still reads its own folder's files.
    """

    def __init__(self, parts: list[ClipDataset]) -> None:
        if not parts:
            raise ValueError("ConcatClipDataset needs at least one dataset")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.has_frames = np.concatenate([p.has_frames for p in parts])

    @property
    def with_stems(self) -> int:
        return sum(p.with_stems for p in self.parts)

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        part = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return self.parts[part][i - int(self.offsets[part])]


def training_set(indexes: list[SplitIndex], with_frames: bool = True, remix: RemixOptions | None = None,
                 seed: int = 0) -> ClipDataset | ConcatClipDataset:
    """One dataset over the training splits of one or more folders; ``remix`` and ``seed`` as in :class:`ClipDataset`.

    Part ``k`` remixes with seed ``seed + k``, so two builds' same-numbered clips draw differently.
    """
    parts = [ClipDataset(index, with_frames=with_frames, remix=remix, seed=seed + k) for k, index in enumerate(indexes)]
    if remix is not None and not any(p.with_stems for p in parts):
        folders = ", ".join(str(index.root / STEMS_FOLDER / index.split) for index in indexes)
        raise ActivityError(f"--remix-prob needs the clips' stems, and {folders} hold none; build the set with "
                            f"python -m activity.synth --stems")
    return parts[0] if len(parts) == 1 else ConcatClipDataset(parts)
