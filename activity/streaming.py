"""Long audio in bounded memory: the file is read in blocks, resampled as a stream, predicted window by window.

:func:`predict_file_streaming` gives the same :class:`~activity.predict.SongPrediction` as
:func:`activity.predict.predict_file` (the same 5 s windows, batched in the same groups, stitched
the same way; ``tests/test_streaming.py`` checks the equality) while holding at most one batch of
windows and about 5 s of audio at a time. What grows with the song's length is only the output:
``9 x 4`` bytes per 75 Hz frame (9.7 MB per hour) and the windows' frame probabilities until they are
stitched (as much again).

Reading uses ``soundfile.SoundFile.blocks``; a file not at 24 kHz goes through soxr's streaming
resampler (``soxr.ResampleStream``, the same HQ filter as the one-shot path, so its samples match
that path to float rounding, not bit for bit).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .constants import CLIP_SAMPLES, FRAME_RATE, HOP, NUM_CLASSES, SAMPLE_RATE, num_frames
from .errors import ActivityError

# Samples read from the file per block: a second or so at common rates, small against a 5 s window.
BLOCK_FRAMES = 65_536
_WINDOW_FRAMES = num_frames(CLIP_SAMPLES)


def _blocks_24k(path: Path, name: str) -> "tuple[object, Callable[[], object], int]":
    """Open ``path``; return the SoundFile, a generator of mono float32 24 kHz blocks, and its frame count."""
    import soundfile

    if not path.is_file():
        raise ActivityError(f"audio file {path} does not exist")
    try:
        handle = soundfile.SoundFile(str(path))
    except Exception as exc:  # libsndfile reports bad files through several exception types
        raise ActivityError(f"audio file {path} could not be read: {exc}") from None
    rate = int(handle.samplerate)

    def generate():
        import soxr

        stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ") if rate != SAMPLE_RATE else None
        try:
            for block in handle.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                if not np.all(np.isfinite(mono)):
                    raise ActivityError(f"{name}: samples are NaN or infinite")
                yield mono if stream is None else stream.resample_chunk(mono)
            if stream is not None:
                yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        except ActivityError:
            raise
        except Exception as exc:
            raise ActivityError(f"audio file {path} could not be read: {exc}") from None

    return handle, generate, int(handle.frames)


def predict_file_streaming(
    model,
    path: str | os.PathLike,
    batch_size: int = 8,
    device=None,
    dtype="auto",
    progress: bool | None = None,
    audio_sink: Callable[[np.ndarray], None] | None = None,
):
    """:func:`activity.predict.predict_file` in memory that does not grow with the song (see the module docstring).

    ``progress``: a tqdm bar on stderr (None: only when stderr is a terminal). ``audio_sink``: called
    with every mono float32 24 kHz block ``(n,)`` in order, e.g. to encode the audio for the HTML view
    in the same pass. Returns a :class:`~activity.predict.SongPrediction` (``frame_probs`` (9, T)).
    """
    from tqdm import tqdm

    from .predict import SongPrediction, predict_clips, predict_song

    path = Path(path)
    name = f"audio file {path}"
    handle, generate, source_frames = _blocks_24k(path, name)
    with handle:
        estimate = max(1, int(source_frames * SAMPLE_RATE / max(handle.samplerate, 1)) // CLIP_SAMPLES + 1)
        bar = tqdm(total=estimate, unit="window", desc=path.name, file=sys.stderr,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress, leave=False)
        # buf holds the samples [buf_start, buf_start + len(buf)) of the 24 kHz song.
        buf = np.zeros(0, dtype=np.float32)
        buf_start = 0
        next_window = 0
        pending: list[np.ndarray] = []  # windows waiting for a full batch
        clip_parts: list[np.ndarray] = []
        frame_parts: list[np.ndarray] = []

        def flush(final: bool) -> None:
            while len(pending) >= batch_size or (final and pending):
                batch = np.stack(pending[:batch_size])
                del pending[:batch_size]
                result = predict_clips(model, batch, batch_size=batch_size, device=device, dtype=dtype)
                clip_parts.append(result.clip_probs)
                frame_parts.append(result.frame_probs)
                bar.update(len(batch))

        for block in generate():
            if block.size == 0:
                continue
            if audio_sink is not None:
                audio_sink(block)
            buf = np.concatenate([buf, block]) if buf.size else np.ascontiguousarray(block, dtype=np.float32)
            while next_window + CLIP_SAMPLES <= buf_start + buf.size:
                offset = next_window - buf_start
                pending.append(buf[offset : offset + CLIP_SAMPLES].copy())
                next_window += CLIP_SAMPLES
            flush(final=False)
            # Keep what the next regular window and a possible tail window (<= 5 s + one hop back) need.
            keep_from = min(next_window, buf_start + buf.size - CLIP_SAMPLES - HOP)
            if keep_from > buf_start:
                buf = buf[keep_from - buf_start :]
                buf_start = keep_from
        length = buf_start + buf.size

    if length == 0:
        raise ActivityError(f"audio file {path} is empty (no samples)")
    if length < CLIP_SAMPLES:  # shorter than one window: nothing was dropped from buf, and it is small
        bar.close()
        return predict_song(model, buf, SAMPLE_RATE, batch_size=batch_size, device=device, dtype=dtype, name=name)

    from .predict import window_starts

    starts = window_starts(length)
    segments = length // CLIP_SAMPLES
    if len(starts) > segments:  # the tail window, ending at the song's end
        tail = starts[-1]
        pending.append(buf[tail - buf_start : tail - buf_start + CLIP_SAMPLES].copy())
    flush(final=True)
    bar.close()
    clip_probs = np.concatenate(clip_parts)
    window_frames = np.concatenate(frame_parts)
    del frame_parts
    total = num_frames(length)
    frame_probs = np.zeros((NUM_CLASSES, total), dtype=np.float32)
    covered = np.zeros(total, dtype=bool)
    # As predict_song: the tail window first, so the regular windows overwrite the frames they share with it.
    for index in reversed(range(len(starts))):
        first = starts[index] // HOP
        stop = min(first + _WINDOW_FRAMES, total)
        frame_probs[:, first:stop] = window_frames[index, : stop - first].T
        covered[first:stop] = True
    for t in np.flatnonzero(~covered):
        neighbours = [n for n in (t - 1, t + 1) if 0 <= n < total and covered[n]]
        frame_probs[:, t] = frame_probs[:, neighbours].mean(axis=1)
    times = np.arange(total, dtype=np.float64) / FRAME_RATE
    segment_probs = np.ascontiguousarray(clip_probs[:segments].T)
    return SongPrediction(frame_probs, times, segment_probs, length / SAMPLE_RATE)
