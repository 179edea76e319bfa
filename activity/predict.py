"""Inference as a library: clips, whole songs and files (the CLIs and benchmarks call only this).

* :func:`predict_clips`: ``(B, N)`` equal-length clips -> clip and frame probabilities.
* :func:`predict_song`: any length, rate and channel count -> a 75 Hz roll ``(9, T)`` for the whole song
  and the course's 5 s segment probabilities ``(9, S)``.
* :func:`predict_file`: the same for an audio file.

Group-norm feature encoders (MERT's) normalise over time, so padding a window changes its output: songs
are cut into full 5 s windows only (the last one ends at the song's end, overlapping its neighbour),
never zero-padded to form a batch. bf16 is used on CUDA and on CPUs with native bf16 (AVX512-BF16 or
AMX); float32 elsewhere.

On the CPU the model runs through :func:`inference_model`, a copy of it made once and cached while
the weights do not change (``experiments/bench_infer.py`` measures each part):

* the conv front end as matrix products on time-major activations (oneDNN's 1-D convolutions reach
  less than half the matrix-product rate), its group norm folded into the first layer's weights;
* encoder weights converted to bf16 once, instead of autocast casting all 95M of them at every call;
* attention as two batched products and a softmax (faster than PyTorch's CPU flash kernel at T = 374);
* the positional convolution's weight norm computed once.

On CUDA the model's own forward runs under bf16 autocast.
"""

from __future__ import annotations

import copy
import os
import weakref
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .constants import CLIP_SAMPLES, FRAME_RATE, HOP, NUM_CLASSES, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from .errors import ActivityError

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

    ``frame_probs[c, t]`` is the probability that class c plays in frame t, which starts at
    ``frame_times[t]`` seconds (75 Hz). ``segment_probs[c, s]`` covers ``[5 s, 5 (s + 1))``; the course
    drops a last partial segment, so S = floor(duration / 5).
    """

    frame_probs: np.ndarray  # (9, T) float32
    frame_times: np.ndarray  # (T,) float64 seconds
    segment_probs: np.ndarray  # (9, S) float32
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


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so autocast speeds it up."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, check, lambda: False)()) for check in checks)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"`` -> bf16 on CUDA with bf16 support and on CPUs with native bf16, else float32.

    Also accepts ``"bf16"``/``"bfloat16"``, ``"fp32"``/``"float32"`` or a torch dtype.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ActivityError(f"dtype {dtype}: expected float32 or bfloat16")
        return dtype
    name = "auto" if dtype is None else str(dtype).lower()
    if name in ("fp32", "float32"):
        return torch.float32
    if name in ("bf16", "bfloat16"):
        return torch.bfloat16
    if name != "auto":
        raise ActivityError(f"dtype {dtype!r}: expected auto, bf16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


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


# --------------------------------------------------------------------------------------------------
# The CPU fast path


class FastFeatureExtractor(nn.Module):
    """MERT's conv front end (group-norm variant) as matrix products on time-major activations.

    Same maths as ``HubertFeatureEncoder`` (conv0 -> GroupNorm(C groups) -> GELU, then conv -> GELU):
    ``(B, N)`` float audio -> ``(B, C, T)`` in ``dtype`` (a transposed view of ``(B, T, C)``, which
    HubertModel transposes back for free). Faster on CPUs because

    * conv0 has no bias and one input channel, so its output's per-channel mean and variance over
      time follow from the 10-sample frames' mean ``mu`` and covariance ``S``: ``mean = w . mu``,
      ``var = w^T S w``. The group norm folds into per-clip weights and bias, and conv0 + norm become
      one product of ``(B, T0, k + 1)`` frames (with a column of ones) by ``(B, k + 1, C)``;
    * every later conv is one product of ``(B * T', k * C)`` windows (an overlapping strided view of
      the time-major input, copied only when kernel > stride) by ``(k * C, C_out)``.
    """

    def __init__(self, feature_extractor: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        first, *rest = list(feature_extractor.conv_layers)
        conv0 = first.conv
        self.kernel0, self.stride0 = conv0.kernel_size[0], conv0.stride[0]
        # (k, C) in float64: the folded weights are built per clip from these.
        self.weight0 = conv0.weight.detach()[:, 0, :].t().double().contiguous()
        norm = first.layer_norm
        self.norm_weight, self.norm_bias, self.norm_eps = norm.weight.detach().double(), norm.bias.detach().double(), norm.eps
        self.layers: list[tuple[torch.Tensor, int, int]] = []
        for layer in rest:
            conv = layer.conv
            # (C_out, C_in, k) -> (C_out, k * C_in): windows are read time-major, k rows of C_in.
            weight = conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1)
            self.layers.append((weight.t().to(dtype).contiguous(), conv.kernel_size[0], conv.stride[0]))
        self.dtype = dtype

    @staticmethod
    def supports(encoder: nn.Module) -> bool:
        """Whether ``encoder``'s front end is the one this class reproduces (MERT's: group norm, GELU)."""
        config = getattr(encoder, "config", None)
        extractor = getattr(encoder, "feature_extractor", None)
        layers = list(getattr(extractor, "conv_layers", []))
        if config is None or not layers or getattr(config, "feat_extract_norm", None) != "group":
            return False
        if getattr(config, "feat_extract_activation", None) != "gelu" or getattr(config, "conv_bias", True):
            return False
        first = layers[0]
        norm = getattr(first, "layer_norm", None)
        return (isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels and norm.affine
                and first.conv.in_channels == 1 and all(not hasattr(layer, "layer_norm") for layer in layers[1:]))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform.unfold(1, self.kernel0, self.stride0)  # (B, T0, k) view
        batch, length, kernel = frames.shape
        wide = frames.double()
        mean = wide.mean(dim=1)  # (B, k)
        covariance = torch.einsum("btk,btj->bkj", wide, wide) / length - mean[:, :, None] * mean[:, None, :]
        variance = torch.einsum("kc,bkj,jc->bc", self.weight0, covariance, self.weight0).clamp_min(0.0)
        scale = self.norm_weight / torch.sqrt(variance + self.norm_eps)  # (B, C)
        shift = self.norm_bias - (mean @ self.weight0) * scale  # (B, C)
        folded = torch.cat([self.weight0[None] * scale[:, None, :], shift[:, None, :]], dim=1).to(self.dtype)
        augmented = torch.empty(batch, length, kernel + 1, dtype=self.dtype, device=waveform.device)
        augmented[..., :kernel] = frames
        augmented[..., kernel] = 1.0
        hidden = F.gelu(torch.bmm(augmented, folded))  # (B, T0, C)
        for weight, kernel, stride in self.layers:
            batch, length, channels = hidden.shape
            out_length = (length - kernel) // stride + 1
            windows = hidden.as_strided((batch, out_length, kernel * channels),
                                        (length * channels, stride * channels, 1))
            hidden = F.gelu(torch.mm(windows.reshape(batch * out_length, -1), weight)).view(batch, out_length, -1)
        return hidden.transpose(1, 2)


_CPU_ATTENTION = "activity_cpu"


def _cpu_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention without mask or dropout as ``softmax(q k^T * scale) v``: ``(B, H, T, D)`` -> ``(B, T, H, D)``.

    At MERT's T = 374 and D = 64 two batched bf16 products and a softmax take about 70% of the time of
    PyTorch's CPU flash-attention kernel; the scale is applied to q (T x D) rather than the scores (T x T).
    """
    if attention_mask is not None or (dropout > 0 and module.training):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    output = torch.matmul(torch.softmax(scores, dim=-1), value)
    return output.transpose(1, 2).contiguous(), None


def _register_cpu_attention() -> bool:
    try:
        from transformers import AttentionInterface

        AttentionInterface.register(_CPU_ATTENTION, _cpu_attention)
        return True
    except Exception:  # an older transformers without the registry: keep its own attention
        return False


# model -> (weights signature, dtype, fast copy); entries go with their model.
_FAST_MODELS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.dtype, nn.Module]]" = weakref.WeakKeyDictionary()


def _weights_signature(model: nn.Module) -> tuple:
    # In-place updates (optimiser steps, load_state_dict) bump a tensor's version; .to() replaces its storage.
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


def _build_fast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    encoder = model.encoder
    memo: dict[int, Any] = {}
    encoder_ids = set()
    for parameter in encoder.parameters():
        encoder_ids.add(id(parameter))
        memo[id(parameter)] = nn.Parameter(parameter.detach().to(dtype), requires_grad=False)
    for parameter in model.parameters():  # the head is shared, not copied
        if id(parameter) not in encoder_ids:
            memo[id(parameter)] = parameter
    memo[id(encoder.feature_extractor)] = FastFeatureExtractor(encoder.feature_extractor, dtype)
    positional = getattr(getattr(encoder, "encoder", None), "pos_conv_embed", None)
    conv = getattr(positional, "conv", None)
    if isinstance(conv, nn.Conv1d):
        # Weight norm recomputed at every call otherwise; a plain conv with the resulting weight.
        plain = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                          bias=conv.bias is not None, device="meta")
        plain.weight = nn.Parameter(conv.weight.detach().to(dtype), requires_grad=False)
        if conv.bias is not None:
            plain.bias = nn.Parameter(conv.bias.detach().to(dtype), requires_grad=False)
        memo[id(conv)] = plain
    fast = copy.deepcopy(model, memo)
    if _register_cpu_attention():
        fast.encoder.config._attn_implementation = _CPU_ATTENTION
    return fast.eval()


def inference_model(model: nn.Module, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, bool]:
    """The module to run for ``model`` on ``device`` in ``dtype``, and whether it needs autocast.

    On the CPU, for an :class:`~activity.model.ActivityModel` in eval mode with MERT's front end: a
    copy with the fast front end, encoder weights in ``dtype`` and the cheaper attention (see the module
    docstring), sharing the head's parameters; built once and rebuilt only when a weight changes.
    Otherwise the model itself (under autocast for bf16).
    """
    if device.type != "cpu" or model.training or not FastFeatureExtractor.supports(getattr(model, "encoder", None)):
        return model, dtype == torch.bfloat16
    signature = _weights_signature(model)
    cached = _FAST_MODELS.get(model)
    if cached is None or cached[0] != signature or cached[1] != dtype:
        cached = (signature, dtype, _build_fast_model(model, dtype))
        _FAST_MODELS[model] = cached
    return cached[2], False


def _run(model, batches: Iterable[torch.Tensor], device: torch.device, dtype: torch.dtype,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip ``(B, 9)`` and frame ``(B, T, 9)`` probabilities on the CPU for equal-length batches."""
    clip_parts: list[torch.Tensor] = []
    frame_parts: list[torch.Tensor] = []
    length = None
    was_training = model.training
    model.eval()
    try:
        runner, autocast = inference_model(model, device, dtype)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
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
    ``segment_probs[:, s]`` is the model's auto-pool over window s. Shorter songs run as one window of their own length; under 400 samples the rolls are empty.
    """
    from .audio import prepare

    samples = prepare(audio, sample_rate, name=name)
    length = samples.shape[0]
    total = num_frames(length)
    duration = length / SAMPLE_RATE
    segments = length // CLIP_SAMPLES
    frame_probs = np.zeros((NUM_CLASSES, total), dtype=np.float32)
    segment_probs = np.zeros((NUM_CLASSES, segments), dtype=np.float32)
    times = np.arange(total, dtype=np.float64) / FRAME_RATE
    if total == 0:
        return SongPrediction(frame_probs, times, segment_probs, duration)

    if segments == 0:
        result = predict_clips(model, samples[None], batch_size=1, device=device, dtype=dtype)
        frame_probs[:] = result.frame_probs[0].T[:, :total]
        return SongPrediction(frame_probs, times, segment_probs, duration)

    starts = window_starts(length)
    # Strided view: windows are copied once, into the batch tensors.
    windows = np.lib.stride_tricks.sliding_window_view(samples, CLIP_SAMPLES)[starts]
    result = predict_clips(model, windows, batch_size=batch_size, device=device, dtype=dtype)
    segment_probs[:] = result.clip_probs[:segments].T

    covered = np.zeros(total, dtype=bool)
    # The tail window first, so the regular windows overwrite the frames they share with it.
    for index in reversed(range(len(starts))):
        first = starts[index] // HOP
        stop = min(first + _WINDOW_FRAMES, total)
        frame_probs[:, first:stop] = result.frame_probs[index, : stop - first].T
        covered[first:stop] = True
    gaps = np.flatnonzero(~covered)
    for t in gaps:  # at most one per 5 s: a Python loop is cheap here
        neighbours = [n for n in (t - 1, t + 1) if 0 <= n < total and covered[n]]
        frame_probs[:, t] = frame_probs[:, neighbours].mean(axis=1)
    return SongPrediction(frame_probs, times, segment_probs, duration)


def predict_file(
    model,
    path: str | os.PathLike,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "auto",
) -> SongPrediction:
    """:func:`predict_song` for an audio file (any format soundfile reads)."""
    from .audio import load_audio

    samples = load_audio(path)
    return predict_song(model, samples, SAMPLE_RATE, batch_size=batch_size, device=device, dtype=dtype,
                        name=f"audio file {path}")
