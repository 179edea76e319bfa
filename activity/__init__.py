"""activity: which of nine instrument classes play in music audio, frame by frame (75 Hz) and every 5 s.

The public API, imported on first use so that the command lines start without loading torch:

* :class:`Detector` (:mod:`activity.api`): a trained model with its device, dtype, thresholds and batch size;
  ``predict_clips``, ``predict_song``, ``predict_file``, ``score_split``. :class:`SplitScores` is what
  ``score_split`` returns.
* :class:`ActivityModel`, :class:`ActivityConfig` (:mod:`activity.model`): the network and its checkpoint
  format (``config.json`` + ``model.safetensors``).
* :func:`predict_clips`, :func:`predict_song`, :func:`predict_file`, :class:`ClipPredictions`,
  :class:`SongPrediction` (:mod:`activity.predict`, :mod:`activity.windows`): the same predictions for a bare model.
* :func:`resolve_dtype` (:mod:`activity.precision`): the one precision rule.
* :data:`CLASSES`, :data:`SAMPLE_RATE`, :data:`FRAME_RATE`, :data:`HOP`, :data:`CLIP_SECONDS`,
  :data:`CLIP_SAMPLES` (:mod:`activity.constants`); :func:`class_of` (:mod:`activity.taxonomy`, General
  MIDI program -> class).
* :func:`build_dataset` (:mod:`activity.synth`): the synthetic Slakh set.
* :class:`ActivityError` (:mod:`activity.errors`): the one exception a user should see.

Command lines: ``python -m activity.train``, ``python -m activity.infer``, ``python -m activity.synth``,
``python plot_pianoroll.py`` (installed as ``activity-train``, ``activity-infer``, ``activity-synth``,
``activity-plot``), and ``python -m activity.grow`` / ``python -m activity.numerics``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_HOMES: dict[str, str] = {
    "Detector": "api", "SplitScores": "api",
    "ActivityModel": "model", "ActivityConfig": "model",
    "predict_clips": "predict", "predict_song": "windows", "predict_file": "windows",
    "ClipPredictions": "predict", "SongPrediction": "windows",
    "resolve_dtype": "precision",
    "CLASSES": "constants", "SAMPLE_RATE": "constants", "FRAME_RATE": "constants", "HOP": "constants",
    "CLIP_SECONDS": "constants", "CLIP_SAMPLES": "constants",
    "class_of": "taxonomy",
    "build_dataset": "synth",
    "ActivityError": "errors",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'activity' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
