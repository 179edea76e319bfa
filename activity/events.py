"""Frame probabilities -> events: one region per contiguous active run of a class.

Arrays here are time first, classes last: ``probs`` is ``(T, 9)`` at ``FRAME_RATE`` (75 Hz), frame t
covering ``[t / 75, (t + 1) / 75)`` s, as :class:`activity.windows.SongPrediction` holds it.

The rule, applied per class in this order:

1. a frame is active when its probability is at least the class's threshold;
2. active runs separated by a gap shorter than ``min_gap`` seconds are joined (a note's decay or one
   uncertain frame should not split a part in two);
3. runs shorter than ``min_duration`` seconds are dropped (one stray frame is not an entry).

Gaps are filled before short runs are dropped, so two short bursts close together survive as one
event. ``min_gap = 0`` and ``min_duration = 0`` give the raw thresholded runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import CLASSES, FRAME_RATE, NUM_CLASSES
from .errors import ActivityError

DEFAULT_MIN_DURATION = 0.25
"""Seconds: shorter runs are dropped (``--min-duration``)."""

DEFAULT_MIN_GAP = 0.25
"""Seconds: shorter gaps between two runs of a class are filled (``--min-gap``)."""


@dataclass(frozen=True)
class Event:
    """One class active from ``start`` to ``end`` seconds; ``peak`` is its highest frame probability."""

    label: str
    start: float
    end: float
    peak: float

    def as_dict(self) -> dict:
        return {"class": self.label, "start_s": round(self.start, 6), "end_s": round(self.end, 6),
                "peak_prob": round(self.peak, 4)}


def check_rule(min_duration: float, min_gap: float) -> None:
    """Raise naming the flag for a negative or non-finite duration."""
    for flag, value in (("--min-duration", min_duration), ("--min-gap", min_gap)):
        if not np.isfinite(value) or value < 0:
            raise ActivityError(f"{flag} must be a number of seconds >= 0, got {value}")


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """``[first, stop)`` frame ranges of the True runs of a 1-D boolean array."""
    padded = np.concatenate([[False], np.asarray(active, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def apply_rule(active: np.ndarray, min_duration: float = DEFAULT_MIN_DURATION,
               min_gap: float = DEFAULT_MIN_GAP, frame_rate: float = FRAME_RATE) -> np.ndarray:
    """The module's gap and duration rule on a ``(T, 9)`` (or ``(T,)``) 0/1 array; returns bool, same shape."""
    check_rule(min_duration, min_gap)
    active = np.asarray(active, dtype=bool)
    squeeze = active.ndim == 1
    grid = active[:, None] if squeeze else active
    out = np.zeros_like(grid)
    # In frames: a gap of g frames is filled when g / rate < min_gap; a run of n frames kept when n / rate >= min_duration.
    gap_frames = min_gap * frame_rate
    min_frames = min_duration * frame_rate
    for c in range(grid.shape[1]):
        merged: list[list[int]] = []
        for first, stop in runs(grid[:, c]):
            if merged and first - merged[-1][1] < gap_frames - 1e-9:
                merged[-1][1] = stop
            else:
                merged.append([first, stop])
        for first, stop in merged:
            if stop - first >= min_frames - 1e-9:
                out[first:stop, c] = True
    return out[:, 0] if squeeze else out


def events_from_probs(probs: np.ndarray, thresholds: np.ndarray, min_duration: float = DEFAULT_MIN_DURATION,
                      min_gap: float = DEFAULT_MIN_GAP, frame_rate: float = FRAME_RATE) -> list[Event]:
    """Events of a ``(T, 9)`` probability roll at per-class ``thresholds`` ``(9,)``, sorted by start then class order."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES:
        raise ValueError(f"probs {probs.shape} must be (T, {NUM_CLASSES}) with classes last")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (NUM_CLASSES,))
    active = apply_rule(probs >= thresholds, min_duration, min_gap, frame_rate)
    return events_from_active(active, probs, frame_rate)


def events_from_active(active: np.ndarray, probs: np.ndarray | None = None,
                       frame_rate: float = FRAME_RATE) -> list[Event]:
    """One event per True run of each column of a ``(T, 9)`` array (no rule applied)."""
    active = np.asarray(active, dtype=bool)
    found: list[tuple[float, int, Event]] = []
    for c in range(active.shape[1]):
        for first, stop in runs(active[:, c]):
            peak = float(probs[first:stop, c].max()) if probs is not None else 1.0
            event = Event(CLASSES[c], first / frame_rate, stop / frame_rate, peak)
            found.append((event.start, c, event))
    return [event for _, _, event in sorted(found, key=lambda item: item[:2])]


def audacity_labels(events: list[Event]) -> str:
    """Audacity's label-track text: one ``start<TAB>end<TAB>label`` line per event, seconds with 6 decimals.

    Audacity (File > Import > Labels) and Sonic Visualiser (as a region layer) read it as it is.
    """
    return "".join(f"{e.start:.6f}\t{e.end:.6f}\t{e.label}\n" for e in events)
