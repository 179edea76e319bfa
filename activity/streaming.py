"""Long audio in bounded memory: the file is read in blocks, resampled as a stream, predicted window by window.

:func:`predict_file_streaming` gives the same :class:`~activity.predict.SongPrediction` as
:func:`activity.predict.predict_file` (the same 5 s windows, batched in the same groups, stitched
the same way; ``tests/test_streaming.py`` checks the equality) while holding one batch of windows
and about 10 s of audio at a time. What grows with the song's length is only the output: ``9 x 4``
bytes per 75 Hz frame (9.7 MB per hour), filled in place as the windows come, plus a copy of it cut to
the final length at the end (peak RSS for 4 and 60 minutes in experiments/RESULTS.md).

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
_WINDOW_FRAMES = num_frames(CLIP_SAMPLES)  # 374 frames per window
_WINDOW_STEP = CLIP_SAMPLES // HOP  # 375: the frame where window i starts


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
    in the same pass. Returns a :class:`~activity.predict.SongPrediction` (``frame_probs`` (T, 9)).
    """
    from tqdm import tqdm

    from .predict import predict_song, window_starts

    path = Path(path)
    name = f"audio file {path}"
    handle, generate, source_frames = _blocks_24k(path, name)
    with handle:
        expected = int(source_frames * SAMPLE_RATE / max(handle.samplerate, 1))
        bar = tqdm(total=max(1, len(window_starts(expected))), unit="window", desc=path.name, file=sys.stderr,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress, leave=False)
        # Every array below is allocated once (and grown only if the header's length was short): many
        # small allocations kept alive between big temporary ones fragment glibc's heap, which then
        # grows with the song even though nothing leaks.
        feeder = _WindowFeeder(model, _Outputs(expected), bar, batch_size, device, dtype)
        # buf[:fill] holds the samples [buf_start, buf_start + fill) of the 24 kHz song.
        buf = np.empty(2 * CLIP_SAMPLES + 4 * BLOCK_FRAMES, dtype=np.float32)
        fill = buf_start = next_window = 0
        for block in generate():
            if block.size == 0:
                continue
            if audio_sink is not None:
                audio_sink(block)
            if fill + block.size > buf.size:
                buf = np.concatenate([buf[:fill], np.empty(block.size + buf.size, dtype=np.float32)])
            buf[fill : fill + block.size] = block
            fill += block.size
            while next_window + CLIP_SAMPLES <= buf_start + fill:
                feeder.add(buf[next_window - buf_start : next_window - buf_start + CLIP_SAMPLES])
                next_window += CLIP_SAMPLES
            # Keep what the next regular window and a possible tail window (<= 5 s + one hop back) need.
            keep_from = min(next_window, buf_start + fill - CLIP_SAMPLES - HOP)
            if keep_from > buf_start:
                shift = keep_from - buf_start
                buf[: fill - shift] = buf[shift:fill]
                fill -= shift
                buf_start = keep_from
        length = buf_start + fill

    if length == 0:
        raise ActivityError(f"audio file {path} is empty (no samples)")
    if length < CLIP_SAMPLES:  # shorter than one window: nothing was dropped from buf, and it is small
        bar.close()
        return predict_song(model, buf[:fill].copy(), SAMPLE_RATE, batch_size=batch_size, device=device,
                            dtype=dtype, name=name)

    starts = window_starts(length)
    segments = length // CLIP_SAMPLES
    if len(starts) > segments:  # the tail window, ending at the song's end, batched after the others
        feeder.add(buf[starts[-1] - buf_start : starts[-1] - buf_start + CLIP_SAMPLES])
    feeder.flush()
    bar.close()
    return feeder.out.song(starts, segments, length)


class _WindowFeeder:
    """Collects 5 s windows into one preallocated batch and runs the model when it is full (or flushed)."""

    def __init__(self, model, out: "_Outputs", bar, batch_size: int, device, dtype) -> None:
        self.model, self.out, self.bar = model, out, bar
        self.batch_size, self.device, self.dtype = batch_size, device, dtype
        self.batch = np.empty((batch_size, CLIP_SAMPLES), dtype=np.float32)
        self.count = 0  # windows in the batch
        self.first = 0  # index of batch[0] among the song's windows

    def add(self, window: np.ndarray) -> None:
        """Queue one ``(CLIP_SAMPLES,)`` window (copied); runs the batch when it is full."""
        self.batch[self.count] = window
        self.count += 1
        if self.count == self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Run the queued windows and put their outputs in place."""
        from .predict import predict_clips

        if not self.count:
            return
        result = predict_clips(self.model, self.batch[: self.count], batch_size=self.batch_size, device=self.device,
                               dtype=self.dtype)
        for j in range(self.count):
            self.out.put(self.first + j, result.clip_probs[j], result.frame_probs[j])
        self.bar.update(self.count)
        self.first += self.count
        self.count = 0


class _Outputs:
    """The song's rolls, filled window by window: regular window i writes frames ``[375 i, 375 i + 374)``
    straight into place; the tail window is kept aside until the song's length is known."""

    def __init__(self, expected_samples: int) -> None:
        frames = num_frames(expected_samples) + 2 * _WINDOW_FRAMES
        self.frames = np.zeros((frames, NUM_CLASSES), dtype=np.float32)
        self.clips = np.zeros((expected_samples // CLIP_SAMPLES + 2, NUM_CLASSES), dtype=np.float32)
        self.windows = 0
        self.last: tuple[np.ndarray, np.ndarray] | None = None

    def put(self, index: int, clip_probs: np.ndarray, frame_probs: np.ndarray) -> None:
        """Window ``index``'s clip ``(9,)`` and frame ``(374, 9)`` probabilities."""
        first = index * _WINDOW_STEP
        if first + _WINDOW_FRAMES > self.frames.shape[0]:
            self.frames = np.concatenate([self.frames, np.zeros_like(self.frames)])
        if index >= self.clips.shape[0]:
            self.clips = np.concatenate([self.clips, np.zeros_like(self.clips)])
        self.frames[first : first + _WINDOW_FRAMES] = frame_probs
        self.clips[index] = clip_probs
        self.windows = index + 1
        self.last = (clip_probs, frame_probs)

    def song(self, starts: list[int], segments: int, length: int):
        """The :class:`~activity.predict.SongPrediction`, stitched as :func:`~activity.predict.predict_song` does."""
        from .predict import SongPrediction, fill_uncovered

        total = num_frames(length)
        covered = np.zeros(total, dtype=bool)
        for i in range(segments):
            covered[i * _WINDOW_STEP : i * _WINDOW_STEP + _WINDOW_FRAMES] = True
        frame_probs = self.frames[:total].copy()
        self.frames = None
        if len(starts) > segments:
            # The tail window (written after the regular ones, at index `segments`, so at the wrong place):
            # it fills the frames no regular window covers; the regular windows win the frames they share.
            tail = self.last[1]
            first = starts[-1] // HOP
            stop = min(first + _WINDOW_FRAMES, total)
            frame_probs[segments * _WINDOW_STEP : total] = 0.0
            free = ~covered[first:stop]
            frame_probs[first:stop][free] = tail[: stop - first][free]
            covered[first:stop] = True
        fill_uncovered(frame_probs, covered)
        times = np.arange(total, dtype=np.float64) / FRAME_RATE
        segment_probs = np.ascontiguousarray(self.clips[:segments])
        return SongPrediction(frame_probs, times, segment_probs, length / SAMPLE_RATE)
