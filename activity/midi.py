"""Truth from MIDI: which classes sound when, on the course's 5 s grid and at 75 Hz.

All rolls are ``uint8`` arrays of shape ``(L, NUM_CLASSES)`` (time first, :data:`~activity.constants.FRAME_AXES`);
column ``c`` is ``CLASSES[c]``. A note of a
class marks every step it overlaps. Zero-length notes (``end <= start``) make no sound and mark
nothing; drum kits and programs without a class (see :mod:`activity.taxonomy`) are ignored.
"""

from __future__ import annotations

import math
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Union

import numpy as np
import pretty_midi
import yaml

from .constants import CLIP_SECONDS, FRAME_RATE, NUM_CLASSES
from .errors import ActivityError
from .taxonomy import class_of

MidiSource = Union[str, os.PathLike, pretty_midi.PrettyMIDI]

# Times from MIDI ticks carry float noise (a note ending "at 5 s" may end at 5.000000000001);
# rounding grid positions to this many decimals keeps such notes from marking the next step.
_GRID_DECIMALS = 6


def load_midi(source: MidiSource) -> pretty_midi.PrettyMIDI:
    """Parse a MIDI file (or pass a ``PrettyMIDI`` through); raise ActivityError naming a bad file."""
    if isinstance(source, pretty_midi.PrettyMIDI):
        return source
    path = Path(source)
    if not path.is_file():
        raise ActivityError(f"MIDI file {path} does not exist")
    try:
        with warnings.catch_warnings():
            # pretty_midi warns about odd meta events in many real files; they do not change notes.
            warnings.simplefilter("ignore")
            return pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido/pretty_midi raise many types for a broken file
        raise ActivityError(f"MIDI file {path} could not be parsed: {exc}") from None


def class_notes(source: MidiSource) -> list[tuple[int, float, float]]:
    """Every sounding note as ``(class index, start s, end s)``; drums and class-less programs dropped."""
    pm = load_midi(source)
    notes: list[tuple[int, float, float]] = []
    for instrument in pm.instruments:
        cls = class_of(int(instrument.program), bool(instrument.is_drum))
        if cls is None:
            continue
        notes.extend((cls, float(n.start), float(n.end)) for n in instrument.notes if n.end > n.start)
    return notes


def classes_present(source: MidiSource) -> set[int]:
    """Indices of the classes that have at least one sounding note."""
    return {cls for cls, _, _ in class_notes(source)}


def _roll(
    notes: list[tuple[int, float, float]], steps_per_second: Fraction, length: int
) -> np.ndarray:
    """Mark steps floor(start*r) .. ceil(end*r)-1 of each note, r = ``steps_per_second``."""
    roll = np.zeros((max(length, 0), NUM_CLASSES), dtype=np.uint8)
    num, den = steps_per_second.numerator, steps_per_second.denominator
    for cls, start, end in notes:
        first = math.floor(round(start * num / den, _GRID_DECIMALS))
        stop = math.ceil(round(end * num / den, _GRID_DECIMALS))
        first, stop = max(first, 0), min(stop, length)
        if stop > first:
            roll[first:stop, cls] = 1
    return roll


def _fit(roll: np.ndarray, length: int | None) -> np.ndarray:
    """Crop or zero-pad the time axis to ``length`` (unchanged when ``None``)."""
    if length is None or length == roll.shape[0]:
        return roll
    out = np.zeros((length, roll.shape[1]), dtype=roll.dtype)
    keep = min(length, roll.shape[0])
    out[:keep] = roll[:keep]
    return out


def segment_roll(
    source: MidiSource, step: float = CLIP_SECONDS, num_segments: int | None = None
) -> np.ndarray:
    """The course's per-song truth on a ``step``-second grid, shape ``(L, 9)``, uint8.

    ``L = ceil(end_time / step)`` unless ``num_segments`` is given, which crops or pads to an audio
    length (the course drops a last partial segment of audio: pass ``len(audio) // step_samples``).
    Each note marks steps ``floor(start/step)`` to ``ceil(end/step) - 1``.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    pm = load_midi(source)
    rate = 1 / Fraction(step).limit_denominator(10_000)
    length = math.ceil(round(pm.get_end_time() * float(rate), _GRID_DECIMALS))
    roll = _roll(class_notes(pm), rate, length)
    return _fit(roll, num_segments)


def frame_roll(source: MidiSource, num_frames: int | None = None) -> np.ndarray:
    """Truth at 75 Hz, shape ``(T, 9)``, uint8: frame t is on when a note overlaps [t/75, (t+1)/75).

    ``T = ceil(end_time * 75)`` unless ``num_frames`` is given, which crops or zero-pads to an
    audio's frame count (see :func:`activity.constants.num_frames`).
    """
    pm = load_midi(source)
    rate = Fraction(FRAME_RATE)
    length = math.ceil(round(pm.get_end_time() * FRAME_RATE, _GRID_DECIMALS))
    roll = _roll(class_notes(pm), rate, length if num_frames is None else num_frames)
    return _fit(roll, num_frames)


def window_labels(source: MidiSource, start_s: float, duration_s: float = CLIP_SECONDS) -> np.ndarray:
    """Multi-hot label, shape ``(9,)`` uint8, of the window [start_s, start_s + duration_s).

    A class is positive when any of its notes overlaps the window (start < window end and
    end > window start).
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    stop_s = start_s + duration_s
    labels = np.zeros(NUM_CLASSES, dtype=np.uint8)
    for cls, start, end in class_notes(source):
        if start < stop_s and end > start_s:
            labels[cls] = 1
    return labels


def load_slakh_track(track_dir: str | os.PathLike) -> pretty_midi.PrettyMIDI:
    """The sounding instruments of a Slakh2100 track folder, as one ``PrettyMIDI``.

    Slakh's ``all_src.mid`` also holds stems that were never rendered to audio (``audio_rendered:
    false`` in ``metadata.yaml``), so truth taken from it can mark a class nobody hears. This merges
    ``MIDI/Sxx.mid`` of the rendered stems only.
    """
    track_dir = Path(track_dir)
    meta_path = track_dir / "metadata.yaml"
    if not meta_path.is_file():
        raise ActivityError(f"{meta_path} does not exist: not a Slakh2100 track folder")
    try:
        stems = yaml.safe_load(meta_path.read_text())["stems"]
    except Exception as exc:
        raise ActivityError(f"{meta_path} could not be read as Slakh metadata: {exc}") from None
    merged = pretty_midi.PrettyMIDI()
    for stem_id, info in sorted(stems.items()):
        if not info.get("audio_rendered", False):
            continue
        stem_path = track_dir / "MIDI" / f"{stem_id}.mid"
        merged.instruments.extend(load_midi(stem_path).instruments)
    return merged
