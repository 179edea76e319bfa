"""Audio in: files and arrays of any format become mono float32 at 24 kHz.

Everything here raises :class:`~activity.errors.ActivityError` naming the file for input a user can
get wrong (unreadable, empty, NaN samples), so the command lines can print one clear line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .constants import CLIP_SAMPLES, SAMPLE_RATE
from .errors import ActivityError
from .fileio import find_files

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus")

# Channel counts above this are taken to mean the array is (samples, channels) the other way round.
_MAX_CHANNELS = 16


def to_mono(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Average the channels of ``(N,)``, ``(C, N)`` or ``(N, C)`` audio into ``(N,)``.

    The channel axis is the short one (at most 16 long); a 2-D array with both axes short is
    read as ``(C, N)``.
    """
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ActivityError(f"{name}: expected mono (N,) or stereo (C, N)/(N, C) audio, got shape {audio.shape}")
    channels_first = audio.shape[0] <= min(_MAX_CHANNELS, audio.shape[1])
    return audio.mean(axis=0 if channels_first else 1)


def to_float32(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Integer PCM is scaled to [-1, 1); float arrays are cast. Raises on non-numeric data."""
    if np.issubdtype(audio.dtype, np.integer):
        info = np.iinfo(audio.dtype)
        scale = float(max(-int(info.min), int(info.max) + 1))
        if info.min == 0:  # unsigned PCM (8-bit wav) is centred on half the range
            return ((audio.astype(np.float64) - scale / 2) / (scale / 2)).astype(np.float32)
        return (audio.astype(np.float64) / scale).astype(np.float32)
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32, copy=False)
    raise ActivityError(f"{name}: audio has dtype {audio.dtype}, expected numbers")


def check_finite(audio: np.ndarray, name: str = "audio") -> None:
    """Raise naming ``name`` when any sample is NaN or infinite."""
    if not np.all(np.isfinite(audio)):
        bad = int(np.size(audio) - np.count_nonzero(np.isfinite(audio)))
        raise ActivityError(f"{name}: {bad} samples are NaN or infinite")


def resample(audio: np.ndarray, source_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (soxr, high quality) of ``(N,)`` float audio; a no-op at equal rates."""
    if source_rate == target_rate:
        return audio
    if source_rate <= 0:
        raise ActivityError(f"sample rate must be positive, got {source_rate}")
    import soxr

    return soxr.resample(audio, source_rate, target_rate, quality="HQ").astype(np.float32, copy=False)


def prepare(audio: np.ndarray, sample_rate: int, name: str = "audio") -> np.ndarray:
    """Any array and rate -> mono float32 ``(N,)`` at ``SAMPLE_RATE``, checked for NaN/Inf."""
    mono = to_mono(to_float32(np.asarray(audio), name), name)
    check_finite(mono, name)
    return np.ascontiguousarray(resample(mono, sample_rate), dtype=np.float32)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as it is: float32 ``(N, C)`` and its sample rate."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise ActivityError(f"audio file {path} does not exist")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports bad files through several exception types
        raise ActivityError(f"audio file {path} could not be read: {exc}") from None
    if data.shape[0] == 0:
        raise ActivityError(f"audio file {path} is empty (no samples)")
    return data, int(rate)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read any audio file soundfile knows into mono float32 ``(N,)`` at 24 kHz."""
    data, rate = read_audio(path)
    return prepare(data.T, rate, name=f"audio file {path}")


def fix_length(audio: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Crop or zero-pad ``(N,)`` audio to ``length`` samples."""
    if audio.shape[0] == length:
        return audio
    if audio.shape[0] > length:
        return audio[:length]
    return np.pad(audio, (0, length - audio.shape[0]))


def load_clip(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Load one course clip (``.npy``) as float32 ``(CLIP_SAMPLES,)`` mono at 24 kHz.

    Integer PCM and float64 are converted, stereo ``(2, N)``/``(N, 2)`` is mixed to mono. Returns the
    clip and whether its length had to be fixed (padded or cropped to 120000 samples), so a caller
    can warn once with a count instead of once per file.
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ActivityError(f"clip {path} does not exist") from None
    except Exception as exc:  # truncated files, pickles and non-npy data all land here
        raise ActivityError(f"clip {path} is not a readable .npy array: {exc}") from None
    if not isinstance(array, np.ndarray) or array.size == 0:
        raise ActivityError(f"clip {path} holds no audio samples")
    name = f"clip {path}"
    mono = to_mono(to_float32(array, name), name)
    check_finite(mono, name)
    fixed = mono.shape[0] != CLIP_SAMPLES
    return np.ascontiguousarray(fix_length(mono), dtype=np.float32), fixed


def find_audio_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (searched recursively) into a sorted list of audio files."""
    found = find_files(paths, AUDIO_SUFFIXES, "--audio")
    if not found:
        raise ActivityError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found in {', '.join(map(str, paths))}")
    return found
