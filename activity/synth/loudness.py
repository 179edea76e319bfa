"""Loudness of a rendered stem or mix, as the levelling of stems and the mix bus's noise both measure it."""

from __future__ import annotations

import numpy as np

_GATE_FRAME = 2048  # samples per loudness frame
_GATE_DB = -50.0  # frames quieter than the loudest by more than this are rests


def gated_rms(audio: np.ndarray) -> float:
    """RMS over the frames that are within 50 dB of the loudest one, so rests do not count."""
    usable = audio.shape[0] // _GATE_FRAME * _GATE_FRAME
    if usable == 0:
        return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    power = np.mean(np.square(audio[:usable].reshape(-1, _GATE_FRAME), dtype=np.float64), axis=1)
    if power.max() <= 0:
        return 0.0
    gated = power[power >= power.max() * 10 ** (_GATE_DB / 10)]
    return float(np.sqrt(gated.mean()))
