"""The files written for one song: every format ``activity.infer --audio --formats`` can name.

================  ==========================  =====================================================
format            file                        what is in it
================  ==========================  =====================================================
``npz``           ``NAME.npz``                ``probs`` (T, 9) float32 at 75 Hz, ``times`` (T,) s,
                                              ``classes``, ``thresholds`` (9,), ``source``
``csv``           ``NAME.csv``                one row per 5 s segment: ``start_s,end_s,<9 classes>``
``json``          ``NAME.json``               the events (after the min-duration / gap rule of
                                              :mod:`activity.events`), the 5 s segments and, with
                                              MIDI, the scores
``audacity``      ``NAME.labels.txt``         Audacity label track: ``start<TAB>end<TAB>class`` per
                                              event (File > Import > Labels)
``sv``            ``NAME.sv.csv``             Sonic Visualiser: ``time,<9 classes>`` per 75 Hz frame
                                              (File > Import Annotation Layer: one value column per
                                              class, or all nine as a colour 3D plot)
``html``          ``NAME.html``               the self-contained player and rolls (:mod:`activity.html_view`)
================  ==========================  =====================================================

Every file is written under a temporary name and renamed (:mod:`activity.fileio`), so an interrupted
run leaves whole files only. Arrays are time first, ``(T, 9)`` and ``(S, 9)``, as
:class:`~activity.windows.SongPrediction` holds them.
"""

from __future__ import annotations

import csv
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .constants import CLASSES, CLIP_SECONDS, FRAME_RATE
from .errors import ActivityError
from .events import DEFAULT_MIN_DURATION, DEFAULT_MIN_GAP, audacity_labels, events_from_probs
from .fileio import atomic_path, write_json, write_text
from .html_view import render_html

FORMATS: tuple[str, ...] = ("npz", "csv", "json", "audacity", "sv", "html")
DEFAULT_FORMATS: tuple[str, ...] = ("npz", "csv", "json")
SUFFIXES = {"npz": ".npz", "csv": ".csv", "json": ".json", "audacity": ".labels.txt", "sv": ".sv.csv",
            "html": ".html"}


def parse_formats(text: str) -> tuple[str, ...]:
    """``"npz,csv,html"`` -> ``("npz", "csv", "html")``; an unknown or empty name raises naming ``--formats``."""
    names = [name.strip().lower() for name in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise ActivityError(f"--formats {text!r}: give a comma-separated list of {', '.join(FORMATS)}")
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise ActivityError(f"--formats: unknown format {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(names))


def check_writable(folder: Path, flag: str = "--out") -> list[Path]:
    """Create ``folder`` and write a probe file there, so a bad folder fails before any prediction runs.

    Returns the folders this call created, outermost first (empty when ``folder`` existed), so that a
    run which fails before writing anything can remove them again (:func:`remove_if_empty`).
    """
    created = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        remove_if_empty(created)
        raise ActivityError(f"{flag} {folder}: cannot write there ({exc.strerror or exc})") from None
    return created


def remove_if_empty(created: list[Path]) -> None:
    """Remove the folders of :func:`check_writable`'s list that are still empty, innermost first."""
    for folder in reversed(created):
        try:
            folder.rmdir()  # fails, and keeps the folder, when anything was written into it
        except OSError:
            return


@dataclass
class SongOutputs:
    """What :func:`write_outputs` needs for one song. Arrays time first: ``frame_probs`` ``(T, 9)``,
    ``segment_probs`` ``(S, 9)``; truths ``(T, 9)`` / ``(S, 9)`` 0/1 or None; ``ogg`` the audio for html."""

    name: str
    source: str
    frame_probs: np.ndarray
    frame_times: np.ndarray
    segment_probs: np.ndarray
    duration: float
    thresholds: np.ndarray
    min_duration: float = DEFAULT_MIN_DURATION
    min_gap: float = DEFAULT_MIN_GAP
    ogg: bytes | None = None
    frame_truth: np.ndarray | None = None
    segment_truth: np.ndarray | None = None
    events: list = field(default_factory=list)
    scores: dict | None = None  # scores against the MIDI (Detector.predict_and_save), written into the JSON
    truth: Any = None  # the activity.sed_metrics.SongTruth scored, when there is MIDI
    written: dict = field(default_factory=dict)  # format -> path, once written

    @classmethod
    def from_prediction(cls, song, name: str, source: str, thresholds: np.ndarray, **kwargs) -> "SongOutputs":
        """From a :class:`~activity.windows.SongPrediction` (``(T, 9)``, ``(S, 9)``)."""
        out = cls(name=name, source=source, frame_probs=song.frame_probs,
                  frame_times=song.frame_times, segment_probs=song.segment_probs,
                  duration=float(song.duration), thresholds=np.asarray(thresholds, dtype=np.float64), **kwargs)
        out.events = events_from_probs(out.frame_probs, out.thresholds, out.min_duration, out.min_gap)
        return out


def _segments(song: SongOutputs) -> list[dict]:
    rows = []
    for s, probs in enumerate(song.segment_probs):
        rows.append({"start_s": s * CLIP_SECONDS, "end_s": (s + 1) * CLIP_SECONDS,
                     "probs": {c: round(float(p), 4) for c, p in zip(CLASSES, probs)},
                     "active": [c for c, p, t in zip(CLASSES, probs, song.thresholds) if p >= t]})
    return rows


def write_outputs(song: SongOutputs, out_dir: Path, formats: tuple[str, ...] = DEFAULT_FORMATS) -> dict[str, Path]:
    """Write ``formats`` of ``song`` to ``out_dir/NAME.<suffix>`` (atomically each); returns format -> path."""
    written: dict[str, Path] = {}
    for fmt in formats:
        path = out_dir / f"{song.name}{SUFFIXES[fmt]}"
        if fmt == "npz":
            with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                np.savez_compressed(handle, probs=song.frame_probs.astype(np.float32),
                                    times=song.frame_times.astype(np.float32), classes=np.array(CLASSES),
                                    thresholds=song.thresholds.astype(np.float32), source=song.source)
        elif fmt == "csv":
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["start_s", "end_s", *CLASSES])
                for s, probs in enumerate(song.segment_probs):
                    writer.writerow([s * CLIP_SECONDS, (s + 1) * CLIP_SECONDS, *(f"{p:.4f}" for p in probs)])
        elif fmt == "json":
            write_json(path, {
                "source": song.source, "duration_s": song.duration, "frame_rate_hz": FRAME_RATE,
                "classes": list(CLASSES), "thresholds": dict(zip(CLASSES, song.thresholds.tolist())),
                "event_rule": {"min_duration_s": song.min_duration, "min_gap_s": song.min_gap},
                "events": [e.as_dict() for e in song.events], "segment_seconds": CLIP_SECONDS,
                "segments": _segments(song),
                **({"scores": song.scores} if song.scores is not None else {}),
            })
        elif fmt == "audacity":
            write_text(path, audacity_labels(song.events))
        elif fmt == "sv":
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
                handle.write("time," + ",".join(CLASSES) + "\n")
                # One row per frame; np.savetxt writes it in C without a Python loop over T.
                table = np.column_stack([song.frame_times, song.frame_probs])
                np.savetxt(handle, table, fmt=["%.6f"] + ["%.4f"] * len(CLASSES), delimiter=",")
        elif fmt == "html":
            write_text(path, render_html(song.name, song.frame_probs, song.segment_probs, song.thresholds,
                                         song.duration, song.ogg, song.frame_truth, song.segment_truth))
        else:  # parse_formats keeps other names out
            raise ValueError(f"unknown format {fmt}")
        written[fmt] = path
    return written
