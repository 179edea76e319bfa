"""Clip inference as a library: equal-length clips -> clip and frame probabilities.

* :func:`predict_clips`: ``(B, N)`` equal-length clips -> clip ``(B, 9)`` and frame ``(B, T, 9)``
  probabilities (time before classes, as every array here: :data:`activity.constants.FRAME_AXES`).
* :func:`resolve_device`: ``auto``/``cpu``/``cuda[:N]`` -> a torch device.

Whole songs and files (windows, stitching, streaming) are :mod:`activity.windows`, which calls this.
Frames are on the 24 kHz / 75 Hz grid of :mod:`activity.constants` whatever the encoder's own rates: the
model resamples its input and interpolates its frames onto that grid (:mod:`activity.backbones.grid`).
The dtype follows the project's one rule, :func:`activity.precision.resolve_dtype`; on the CPU the model
runs through the checked fast copy of :mod:`activity.cpu_kernels`, on CUDA as it is under bf16 autocast
(also checked against float32 once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from .constants import NUM_CLASSES, RECEPTIVE_FIELD
from .cpu_kernels import inference_model
from .errors import ActivityError
from .precision import autocast, resolve_dtype

@dataclass
class ClipPredictions:
    """Outputs of :func:`predict_clips` for B clips of N samples (T = num_frames(N))."""

    clip_probs: np.ndarray  # (B, 9) float32
    frame_probs: np.ndarray  # (B, T, 9) float32


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
