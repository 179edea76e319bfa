"""Frame probabilities -> events: the min-duration / gap rule and the Audacity label format."""

from __future__ import annotations

import re

import numpy as np
import pytest

from activity.constants import CLASSES, FRAME_RATE, NUM_CLASSES
from activity.errors import ActivityError
from activity.events import apply_rule, audacity_labels, events_from_probs, runs


def test_runs_are_half_open_frame_ranges() -> None:
    assert runs(np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)) == [(1, 3), (4, 5), (7, 8)]
    assert runs(np.zeros(4, bool)) == []


def test_gaps_shorter_than_min_gap_are_joined_before_short_runs_are_dropped() -> None:
    active = np.zeros(300, bool)
    active[0:10] = True      # 10 frames (0.133 s)
    active[15:25] = True     # gap of 5 frames (0.067 s) before it: joined with the first -> 25 frames
    active[100:110] = True   # alone and short (0.133 s): dropped at min_duration 0.2 s
    active[200:260] = True   # long, alone: kept
    out = apply_rule(active, min_duration=0.2, min_gap=0.1)
    assert runs(out) == [(0, 25), (200, 260)]
    # No rule: the raw runs.
    assert runs(apply_rule(active, 0.0, 0.0)) == runs(active)
    # A gap of exactly min_gap is not "shorter than" it: stays open.
    assert runs(apply_rule(active, 0.0, 5 / FRAME_RATE)) == runs(active)
    assert runs(apply_rule(active, 0.0, 6 / FRAME_RATE))[0] == (0, 25)


def test_events_carry_class_times_and_peak_in_time_order() -> None:
    probs = np.zeros((150, NUM_CLASSES), np.float32)
    probs[75:150, CLASSES.index("Bass")] = 0.9
    probs[30:60, CLASSES.index("Piano")] = 0.7
    probs[40, CLASSES.index("Piano")] = 0.8
    events = events_from_probs(probs, np.full(NUM_CLASSES, 0.5), min_duration=0.1, min_gap=0.1)
    assert [(e.label, e.start, e.end) for e in events] == [("Piano", 30 / 75, 60 / 75), ("Bass", 1.0, 2.0)]
    assert events[0].peak == pytest.approx(0.8)
    with pytest.raises(ActivityError, match="--min-gap must be"):
        events_from_probs(probs, 0.5, min_gap=-1)


def test_audacity_label_lines() -> None:
    probs = np.zeros((300, NUM_CLASSES), np.float32)
    probs[10:200, CLASSES.index("Wind Instruments")] = 0.9
    probs[50:300, CLASSES.index("Guitar")] = 0.9
    text = audacity_labels(events_from_probs(probs, 0.5))
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 2
    pattern = re.compile(r"^(\d+\.\d{6})\t(\d+\.\d{6})\t(.+)$")
    parsed = [pattern.match(line).groups() for line in lines]
    assert [(float(a), float(b), c) for a, b, c in parsed] == [
        (pytest.approx(10 / 75, abs=1e-6), pytest.approx(200 / 75, abs=1e-6), "Wind Instruments"),
        (pytest.approx(50 / 75, abs=1e-6), 4.0, "Guitar")]
