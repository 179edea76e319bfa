"""Whole songs and files: 5 s windows, their stitching into one 75 Hz roll, and reading long files as a stream.

* :func:`predict_song`: audio in memory, any length, rate and channel count -> :class:`SongPrediction`: a
  75 Hz roll ``(T, 9)`` for the whole song and the course's 5 s segment probabilities ``(S, 9)``.
* :func:`predict_file`: the same for an audio file, read in blocks (``soundfile.SoundFile.blocks``) and
  resampled as a stream (``soxr.ResampleStream``, the HQ filter of the one-shot path, so its samples match
  that path to float rounding), so memory does not grow with the song beyond its output rolls (``9 x 4``
  bytes per 75 Hz frame, 9.7 MB per hour; peak RSS for 4 and 60 minutes in experiments/RESULTS.md).

Both cut the song the same way (:func:`window_starts`), batch the windows in the same groups
(:class:`_WindowFeeder`, which calls :func:`activity.predict.predict_clips`) and stitch them in one place
(:class:`_Outputs`), so a file and its samples give the same roll (``tests/test_streaming.py``).
Group-norm feature encoders (MERT's) normalise over time, so padding a window changes its output: songs
are cut into full 5 s windows only (the last one ends at the song's end, overlapping its neighbour), never
zero-padded to form a batch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile
import soxr
import torch
from tqdm import tqdm

from .audio import prepare
from .constants import CLIP_SAMPLES, FRAME_RATE, HOP, NUM_CLASSES, SAMPLE_RATE, num_frames
from .errors import ActivityError
from .predict import predict_clips

# Samples read from the file per block: a second or so at common rates, small against a 5 s window.
BLOCK_FRAMES = 65_536
# Frames one 5 s window yields (374) and advances by (375): one frame per window boundary straddles
# two windows and is filled from its neighbours.
_WINDOW_FRAMES = num_frames(CLIP_SAMPLES)
_WINDOW_STEP = CLIP_SAMPLES // HOP


@dataclass
class SongPrediction:
    """Outputs of :func:`predict_song` for a song of ``duration`` seconds.

    ``frame_probs[t, c]`` is the probability that class c plays in frame t, which starts at
    ``frame_times[t]`` seconds (75 Hz). ``segment_probs[s, c]`` covers ``[5 s, 5 (s + 1))``; the course
    drops a last partial segment, so S = floor(duration / 5).
    """

    frame_probs: np.ndarray  # (T, 9) float32
    frame_times: np.ndarray  # (T,) float64 seconds
    segment_probs: np.ndarray  # (S, 9) float32
    duration: float  # seconds of audio at 24 kHz



def window_starts(num_samples: int) -> list[int]:
    """Start samples of the 5 s windows covering ``num_samples`` samples (song >= 5 s).

    One window per full 5 s segment, plus, when the song goes on past the last one, a final window that
    ends at the song's end, its start rounded down to a frame boundary so its frames align with the
    song's 75 Hz grid (so the song's very last frame may lie just beyond it and be copied from its
    neighbour).
    """
    full = num_samples // CLIP_SAMPLES
    starts = [i * CLIP_SAMPLES for i in range(full)]
    if full and num_frames(num_samples) > full * _WINDOW_STEP - 1:
        tail = (num_samples - CLIP_SAMPLES) // HOP * HOP
        if tail != starts[-1]:
            starts.append(tail)
    return starts


def predict_song(
    model,
    audio: np.ndarray,
    sample_rate: int,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "auto",
    name: str = "audio",
) -> SongPrediction:
    """Frame (75 Hz) and 5 s segment probabilities of a whole song in memory.

    ``audio``: ``(N,)``, ``(C, N)`` or ``(N, C)`` at ``sample_rate``; mixed to mono and resampled to
    24 kHz. Songs of at least 5 s are cut into 5 s windows (batched, never padded); each frame of the
    song takes the window covering it, and the one frame per window boundary that no window sees whole
    (and possibly the song's last frame) is the mean of its covered neighbours. ``segment_probs[s]`` is
    the model's auto-pool over window s. Shorter songs run as one window of their own length; under 400
    samples the rolls are empty.
    """
    samples = prepare(audio, sample_rate, name=name)
    length = samples.shape[0]
    total = num_frames(length)
    times = np.arange(total, dtype=np.float64) / FRAME_RATE
    if length < CLIP_SAMPLES:
        frame_probs = np.zeros((total, NUM_CLASSES), dtype=np.float32)
        if total:
            result = predict_clips(model, samples[None], batch_size=1, device=device, dtype=dtype)
            frame_probs[:] = result.frame_probs[0, :total]
        return SongPrediction(frame_probs, times, np.zeros((0, NUM_CLASSES), np.float32), length / SAMPLE_RATE)
    starts = window_starts(length)
    feeder = _WindowFeeder(model, _Outputs(length), None, batch_size, device, dtype)
    for start in starts:  # the regular windows in order, then the tail one: the batches of predict_file
        feeder.add(samples[start : start + CLIP_SAMPLES])
    feeder.flush()
    return feeder.out.song(starts, length // CLIP_SAMPLES, length)


def fill_uncovered(frame_probs: np.ndarray, covered: np.ndarray) -> None:
    """Set each frame no window covered (one per 5 s boundary, maybe the last) to its covered neighbours' mean.

    ``frame_probs`` ``(T, 9)`` is changed in place; ``covered`` ``(T,)`` bool.
    """
    total = len(covered)
    for t in np.flatnonzero(~covered):  # at most one per 5 s: a Python loop is cheap here
        neighbours = [n for n in (t - 1, t + 1) if 0 <= n < total and covered[n]]
        frame_probs[t] = frame_probs[neighbours].mean(axis=0)


def _blocks_24k(path: Path, name: str) -> "tuple[object, Callable[[], object], int]":
    """Open ``path``; return the SoundFile, a generator of mono float32 24 kHz blocks, and its frame count."""
    if not path.is_file():
        raise ActivityError(f"audio file {path} does not exist")
    try:
        handle = soundfile.SoundFile(str(path))
    except Exception as exc:  # libsndfile reports bad files through several exception types
        raise ActivityError(f"audio file {path} could not be read: {exc}") from None
    rate = int(handle.samplerate)

    def generate():
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


def predict_file(
    model,
    path: str | os.PathLike,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "auto",
    progress: bool | None = None,
    audio_sink: Callable[[np.ndarray], None] | None = None,
):
    """:func:`predict_song` for an audio file (any format soundfile reads), read as a stream.

    Memory does not grow with the song beyond its output rolls (see the module docstring); the result
    equals :func:`predict_song` on the whole file read at once. ``progress``: a tqdm bar on stderr (None:
    only when stderr is a terminal). ``audio_sink``: called with every mono float32 24 kHz block ``(n,)``
    in order, e.g. to encode the audio for the HTML view in the same pass. Returns a :class:`SongPrediction` (``frame_probs`` (T, 9)).
    """
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

    def __init__(self, model, out: "_Outputs", bar: "tqdm | None", batch_size: int, device, dtype) -> None:
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
        if not self.count:
            return
        result = predict_clips(self.model, self.batch[: self.count], batch_size=self.batch_size, device=self.device,
                               dtype=self.dtype)
        for j in range(self.count):
            self.out.put(self.first + j, result.clip_probs[j], result.frame_probs[j])
        if self.bar is not None:
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
        """The :class:`SongPrediction` of a song of ``length`` samples cut at ``starts`` (:func:`window_starts`)."""
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
