"""Inference as a library: clips, whole songs and files (the CLIs and benchmarks call only this).

* :func:`predict_clips`: ``(B, N)`` equal-length clips -> clip and frame probabilities.
* :func:`predict_song`: any length, rate and channel count -> a 75 Hz roll ``(T, 9)`` for the whole song
  and the course's 5 s segment probabilities ``(S, 9)`` (time first, as every array here:
  :data:`activity.constants.FRAME_AXES`).
* :func:`predict_file`: the same for an audio file, read as a stream (:mod:`activity.streaming`).

Windows, frames and times here are on the 24 kHz / 75 Hz grid of :mod:`activity.constants` whatever the
encoder's own rates: the model resamples its input and interpolates its frames onto that grid
(:mod:`activity.backbones.grid`). Group-norm feature encoders (MERT's) normalise over time, so padding a window changes its output: songs
are cut into full 5 s windows only (the last one ends at the song's end, overlapping its neighbour),
never zero-padded to form a batch. The dtype follows the project's one rule,
:func:`activity.precision.resolve_dtype`; on the CPU the model runs through the checked fast copy of
:mod:`activity.cpu_kernels`, on CUDA as it is under bf16 autocast (also checked against float32 once).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from .constants import CLIP_SAMPLES, FRAME_RATE, HOP, NUM_CLASSES, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from .errors import ActivityError
from .precision import resolve_dtype

# Frames one 5 s window advances by (375) and yields (374): one frame per window boundary straddles
# two windows and is filled from its neighbours.
_WINDOW_STEP_FRAMES = CLIP_SAMPLES // HOP
_WINDOW_FRAMES = num_frames(CLIP_SAMPLES)


@dataclass
class ClipPredictions:
    """Outputs of :func:`predict_clips` for B clips of N samples (T = num_frames(N))."""

    clip_probs: np.ndarray  # (B, 9) float32
    frame_probs: np.ndarray  # (B, T, 9) float32


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


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as named.

    Raises :class:`ActivityError` for an unknown name or a CUDA device that is not there.
    """
    if isinstance(name, torch.device):
        device = name
    elif name is None or str(name).lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(str(name).lower())
        except RuntimeError:
            raise ActivityError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ActivityError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ActivityError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise ActivityError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    return device


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_batches(clips: np.ndarray | torch.Tensor | Iterable, batch_size: int) -> Iterable[torch.Tensor]:
    """Yield ``(b, N)`` float32 tensors of at most ``batch_size`` rows."""
    if isinstance(clips, (np.ndarray, torch.Tensor)):
        clips = [clips]
    for block in clips:
        tensor = torch.as_tensor(np.asarray(block, dtype=np.float32) if isinstance(block, np.ndarray) else block)
        if tensor.dim() == 1:
            tensor = tensor[None]
        if tensor.dim() != 2:
            raise ActivityError(f"clips must be (batch, samples) arrays, got shape {tuple(tensor.shape)}")
        tensor = tensor.float()
        for start in range(0, tensor.shape[0], batch_size):
            yield tensor[start : start + batch_size]


def _run(model, batches: Iterable[torch.Tensor], device: torch.device, dtype: torch.dtype,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip ``(B, 9)`` and frame ``(B, T, 9)`` probabilities on the CPU for equal-length batches."""
    clip_parts: list[torch.Tensor] = []
    frame_parts: list[torch.Tensor] = []
    length = None
    was_training = model.training
    model.eval()
    try:
        from .cpu_kernels import inference_model
        from .precision import autocast

        runner, use_autocast = inference_model(model, device, dtype)
        with torch.inference_mode(), autocast(device, torch.bfloat16 if use_autocast else torch.float32):
            for batch in batches:
                if length is None:
                    length = batch.shape[1]
                elif batch.shape[1] != length:
                    raise ActivityError(f"all clips must have one length: got {length} and {batch.shape[1]} samples")
                if length < RECEPTIVE_FIELD:
                    raise ActivityError(f"clips of {length} samples are shorter than one frame ({RECEPTIVE_FIELD})")
                out = runner(batch.to(device, non_blocking=True))
                # Results stay on the device until the end: no synchronisation inside the loop.
                clip_parts.append(out.clip_probs)
                frame_parts.append(out.frame_probs)
    finally:
        model.train(was_training)
    if not clip_parts:
        return torch.zeros(0, NUM_CLASSES), torch.zeros(0, 0, NUM_CLASSES)
    return torch.cat(clip_parts).float().cpu(), torch.cat(frame_parts).float().cpu()


def _prepare_model(model, device: torch.device | str | None) -> torch.device:
    target = _model_device(model) if device is None else resolve_device(device)
    if _model_device(model) != target:
        model.to(target)
    return target


def predict_clips(
    model,
    clips: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor],
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "auto",
) -> ClipPredictions:
    """Probabilities for equal-length clips at 24 kHz.

    ``clips``: a ``(B, N)`` array/tensor or an iterable of such batches (all with the same N >= 400).
    ``device``: None keeps the model where it is; otherwise the model is moved there. ``dtype``: see
    :func:`resolve_dtype`. Returns ``clip_probs (B, 9)`` and ``frame_probs (B, T, 9)``, float32 numpy.
    """
    if batch_size < 1:
        raise ActivityError(f"--batch-size must be >= 1, got {batch_size}")
    target = _prepare_model(model, device)
    clip_probs, frame_probs = _run(model, _as_batches(clips, batch_size), target, resolve_dtype(dtype, target))
    return ClipPredictions(clip_probs=clip_probs.numpy(), frame_probs=frame_probs.numpy())


def window_starts(num_samples: int) -> list[int]:
    """Start samples of the 5 s windows covering ``num_samples`` samples (song >= 5 s).

    One window per full 5 s segment, plus, when the song goes on past the last one, a final window that
    ends at the song's end, its start rounded down to a frame boundary so its frames align with the
    song's 75 Hz grid (so the song's very last frame may lie just beyond it and be copied from its
    neighbour).
    """
    full = num_samples // CLIP_SAMPLES
    starts = [i * CLIP_SAMPLES for i in range(full)]
    if full and num_frames(num_samples) > full * _WINDOW_STEP_FRAMES - 1:
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
    """Frame (75 Hz) and 5 s segment probabilities of a whole song.

    ``audio``: ``(N,)``, ``(C, N)`` or ``(N, C)`` at ``sample_rate``; mixed to mono and resampled to
    24 kHz. Songs of at least 5 s are cut into 5 s windows (batched, never padded); each frame of the
    song takes the window covering it, and the one frame per window boundary that no window sees whole
    (and possibly the song's last frame) is the mean of its covered neighbours.
    ``segment_probs[s]`` is the model's auto-pool over window s. Shorter songs run as one window of their own length; under 400 samples the rolls are empty.
    """
    from .audio import prepare

    samples = prepare(audio, sample_rate, name=name)
    length = samples.shape[0]
    total = num_frames(length)
    duration = length / SAMPLE_RATE
    segments = length // CLIP_SAMPLES
    frame_probs = np.zeros((total, NUM_CLASSES), dtype=np.float32)
    segment_probs = np.zeros((segments, NUM_CLASSES), dtype=np.float32)
    times = np.arange(total, dtype=np.float64) / FRAME_RATE
    if total == 0:
        return SongPrediction(frame_probs, times, segment_probs, duration)

    if segments == 0:
        result = predict_clips(model, samples[None], batch_size=1, device=device, dtype=dtype)
        frame_probs[:] = result.frame_probs[0, :total]
        return SongPrediction(frame_probs, times, segment_probs, duration)

    starts = window_starts(length)
    # Strided view: windows are copied once, into the batch tensors.
    windows = np.lib.stride_tricks.sliding_window_view(samples, CLIP_SAMPLES)[starts]
    result = predict_clips(model, windows, batch_size=batch_size, device=device, dtype=dtype)
    segment_probs[:] = result.clip_probs[:segments]

    covered = np.zeros(total, dtype=bool)
    # The tail window first, so the regular windows overwrite the frames they share with it.
    for index in reversed(range(len(starts))):
        first = starts[index] // HOP
        stop = min(first + _WINDOW_FRAMES, total)
        frame_probs[first:stop] = result.frame_probs[index, : stop - first]
        covered[first:stop] = True
    fill_uncovered(frame_probs, covered)
    return SongPrediction(frame_probs, times, segment_probs, duration)


def fill_uncovered(frame_probs: np.ndarray, covered: np.ndarray) -> None:
    """Set each frame no window covered (one per 5 s boundary, maybe the last) to its covered neighbours' mean.

    ``frame_probs`` ``(T, 9)`` is changed in place; ``covered`` ``(T,)`` bool.
    """
    total = len(covered)
    for t in np.flatnonzero(~covered):  # at most one per 5 s: a Python loop is cheap here
        neighbours = [n for n in (t - 1, t + 1) if 0 <= n < total and covered[n]]
        frame_probs[t] = frame_probs[neighbours].mean(axis=0)


def predict_file(
    model,
    path: str | os.PathLike,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "auto",
    progress: bool | None = None,
    audio_sink=None,
) -> SongPrediction:
    """:func:`predict_song` for an audio file (any format soundfile reads), read as a stream.

    Memory does not grow with the song beyond its output rolls (:mod:`activity.streaming`); the result
    equals :func:`predict_song` on the whole file. ``progress``: a bar on stderr (None: when it is a
    terminal). ``audio_sink``: called with each mono 24 kHz block, e.g. to encode the audio on the way.
    """
    from .streaming import predict_file_streaming

    return predict_file_streaming(model, path, batch_size=batch_size, device=device, dtype=dtype,
                                  progress=progress, audio_sink=audio_sink)
