"""Synthetic Slakh: procedural General MIDI songs rendered stem by stem, in the course's layout.

``python -m activity.synth`` builds it; other modules call :func:`ensure_dataset` when a user gives
no data path. See :mod:`activity.synth.build` for the layout on disk.
"""

from __future__ import annotations

from .arranger import TARGET_CLIP_SHARES, arrange_song, clip_labels, program_range, song_num_clips, song_seconds
from .build import (
    DEFAULT_DATA_ROOT,
    SIZES,
    arrange_track,
    build_dataset,
    ensure_dataset,
    is_complete,
    read_manifest,
    track_name,
    track_numbers,
)
from .render import RENDER_RATE, default_soundfont, mix_stems, render_song, render_stems

__all__ = [
    "DEFAULT_DATA_ROOT",
    "RENDER_RATE",
    "SIZES",
    "TARGET_CLIP_SHARES",
    "arrange_song",
    "arrange_track",
    "build_dataset",
    "clip_labels",
    "default_soundfont",
    "ensure_dataset",
    "is_complete",
    "mix_stems",
    "program_range",
    "read_manifest",
    "render_song",
    "render_stems",
    "song_num_clips",
    "song_seconds",
    "track_name",
    "track_numbers",
]
