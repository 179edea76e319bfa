"""Sound-event-detection scores of songs against their MIDI truth, computed by ``sed_scores_eval``.

* segment-based F1 on 1 s segments (a class counts in a segment when active anywhere in it), and
* event-based (collar-based) F1: a predicted event matches a true one of its class when the onsets are
  within 200 ms and the offsets within max(200 ms, 20 % of the true event's length), DCASE's usual
  collars,

both of the events the outputs hold, i.e. after the min-duration / gap rule of :mod:`activity.events`,
and the threshold-free segment-based average precision of the raw frame probabilities. The true
events are the runs of the 75 Hz MIDI roll (:func:`activity.midi.frame_roll`) with rests shorter
than ``min_gap`` joined, as the predicted runs are (no minimum duration: every note counts); without
the join each note of a part would be an event of its own, and "Bass plays from 5 s to 40 s" would
match none of them.

``sed_scores_eval`` (Paderborn, MIT) is used in its numpy-2 build ``sed_scores_eval_np2``; it imports
``sed_eval`` and ``dcase_util``, and ``dcase_util`` imports ``pkg_resources`` at module level, which
setuptools >= 81 no longer ships: :func:`_sse` lends it an empty module for that import only
(``dcase_util`` uses it only in its installation check, which nothing here calls).

Arrays are time first: probabilities and truth ``(T, 9)`` at 75 Hz.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import numpy as np

from .constants import CLASSES, FRAME_RATE, NUM_CLASSES
from .events import DEFAULT_MIN_DURATION, DEFAULT_MIN_GAP, apply_rule, events_from_active

SEGMENT_SECONDS = 1.0
ONSET_COLLAR = 0.2
OFFSET_COLLAR = 0.2
OFFSET_COLLAR_RATE = 0.2
TIME_DECIMALS = 6  # sed_scores_eval's default time_decimals


def _sse():
    """``sed_scores_eval``, imported with the ``pkg_resources`` stand-in described in the module docstring."""
    if "sed_scores_eval" in sys.modules:
        return sys.modules["sed_scores_eval"]
    lent = False
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
        lent = True
    try:
        import sed_scores_eval
    finally:
        if lent:
            del sys.modules["pkg_resources"]
    return sed_scores_eval


@dataclass
class SongTruth:
    """One song to score: ``frame_probs`` and ``frame_truth`` ``(T, 9)`` at 75 Hz, ``duration`` seconds."""

    name: str
    frame_probs: np.ndarray
    frame_truth: np.ndarray
    duration: float


def _frame_times(count: int) -> np.ndarray:
    return np.arange(count + 1, dtype=np.float64) / FRAME_RATE


def scored_classes(songs: list[SongTruth]) -> list[int]:
    """Indices of the classes with truth in at least one of the songs: the only ones sed_scores_eval scores."""
    return [c for c in range(NUM_CLASSES) if any(np.asarray(s.frame_truth)[:, c].any() for s in songs)]


def _score_frames(songs: list[SongTruth], rolls: list[np.ndarray], classes: list[int]) -> dict:
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    names = [CLASSES[c] for c in classes]
    return {song.name: create_score_dataframe(np.asarray(roll, dtype=np.float64)[:, classes],
                                              _frame_times(len(roll)), names)
            for song, roll in zip(songs, rolls)}


def _truth_events(songs: list[SongTruth], min_gap: float = 0.0) -> dict:
    # sed_scores_eval rounds the score timestamps and segment boundaries to TIME_DECIMALS but not the
    # truth: an event ending at 700/75 s would then overlap the segment that starts at round(700/75).
    return {song.name: [(round(e.start, TIME_DECIMALS), round(e.end, TIME_DECIMALS), e.label)
                        for e in events_from_active(apply_rule(song.frame_truth, 0.0, min_gap))]
            for song in songs}


def _durations(songs: list[SongTruth]) -> dict:
    # The rolls end at the last frame's end, which can be up to a frame past the audio; score that span.
    return {song.name: max(song.duration, len(song.frame_probs) / FRAME_RATE) for song in songs}


def _named(result: dict) -> dict:
    per_class = {c: float(result[c]) for c in CLASSES if c in result}
    return {"micro_f1": float(result["micro_average"]), "macro_f1": float(result["macro_average"]),
            "per_class_f1": per_class}


def sed_scores(songs: list[SongTruth], thresholds: np.ndarray, min_duration: float = DEFAULT_MIN_DURATION,
               min_gap: float = DEFAULT_MIN_GAP) -> dict:
    """Segment-based (1 s) and event-based F1 of the songs' events (rule applied), pooled over songs.

    Returns ``{"segment": {micro_f1, macro_f1, per_class_f1: {class: f1}}, "event": {...}, "segment_ap":
    float, "classes": [...], "unscored": [...]}`` (``segment_ap``: macro segment-based average
    precision of the raw probabilities, threshold-free). sed_scores_eval needs truth events for every
    class it scores, so only the classes with truth in these songs are scored (``classes``); the
    others (``unscored``) add no false alarms to these numbers. ``None`` when no class has truth.
    """
    sse = _sse()
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (NUM_CLASSES,))
    classes = scored_classes(songs)
    if not classes:
        return None
    decided = [apply_rule(s.frame_probs >= thresholds, min_duration, min_gap) for s in songs]
    binary = _score_frames(songs, decided, classes)
    truth = _truth_events(songs, min_gap)
    durations = _durations(songs)
    half = {CLASSES[c]: 0.5 for c in classes}
    segment = sse.segment_based.fscore(binary, truth, durations, threshold=half, segment_length=SEGMENT_SECONDS)[0]
    event = sse.collar_based.fscore(binary, truth, threshold=half, onset_collar=ONSET_COLLAR,
                                    offset_collar=OFFSET_COLLAR, offset_collar_rate=OFFSET_COLLAR_RATE)[0]
    raw = _score_frames(songs, [s.frame_probs for s in songs], classes)
    ap = sse.segment_based.average_precision(raw, truth, durations, segment_length=SEGMENT_SECONDS)[0]
    return {"segment": _named(segment), "event": _named(event), "segment_ap": float(ap["mean"]),
            "classes": [CLASSES[c] for c in classes],
            "unscored": [CLASSES[c] for c in range(NUM_CLASSES) if c not in classes]}


def frame_f1_by_sed_scores_eval(songs: list[SongTruth], thresholds: np.ndarray) -> dict:
    """Frame-level F1 of the raw probabilities computed by sed_scores_eval with one-frame segments.

    The cross-check of :func:`activity.evaluate.frame_scores`: a segment of 1/75 s is one frame, so the
    two must agree on every class with truth (and on micro F1 when every class has truth).
    """
    sse = _sse()
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (NUM_CLASSES,))
    classes = scored_classes(songs)
    raw = _score_frames(songs, [s.frame_probs for s in songs], classes)
    result = sse.segment_based.fscore(raw, _truth_events(songs), _durations(songs),
                                      threshold={CLASSES[c]: float(thresholds[c]) for c in classes},
                                      segment_length=1.0 / FRAME_RATE)[0]
    return _named(result)
