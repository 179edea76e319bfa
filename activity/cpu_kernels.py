"""The CPU's kernels: a fast copy of the model for inference, and where float32 must stand in for bf16.

:func:`inference_model` gives the module to run for a model on a device and dtype. On the CPU, for an
:class:`~activity.model.ActivityModel` in eval mode with MERT's front end, that is a copy made once and
cached while the weights do not change (``experiments/bench_infer.py`` measures each part):

* the conv front end as matrix products on time-major activations (oneDNN's 1-D convolutions reach
  less than half the matrix-product rate), its group norm folded into the first layer's weights;
* encoder weights converted to bf16 once, instead of autocast casting all 95M of them at every call;
* attention as two batched products and a softmax (faster than PyTorch's CPU flash kernel at T = 374);
* the positional convolution's weight norm computed once, and the convolution itself in float32.

Every copy is checked against the model's own float32 forward on the probe clip of
:mod:`activity.precision` before it is used: a bf16 copy that disagrees by more than
``BF16_TOLERANCE`` is replaced by a float32 one (one line says so), a float32 copy that disagrees by
more than ``FAST_COPY_TOLERANCE`` by the model itself.

Why the positional convolution runs in float32 on the CPU, in the fast copy and under autocast alike
(:func:`positional_conv_in_float32`): oneDNN's AMX kernel for this grouped convolution with a long kernel
(128 taps, 16 groups) is wrong in bf16 for narrow layers (relative error 1.17 at 192 channels, the
``compact`` shape; 1.08 at 16), while its float32 kernels are right on every ISA. It is about 5% of
MERT-95M's FLOPs, so float32 costs little (experiments/RESULTS.md, "One answer on every CPU").
"""

from __future__ import annotations

import copy
import sys
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .precision import (BF16_TOLERANCE, FAST_COPY_TOLERANCE, checked_autocast_dtype, output_deviation,
                        probe_clips, reference_output, say_fallback)


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


class Float32Conv1d(nn.Module):
    """A 1-D convolution computed in float32 whatever its input's dtype; the output takes the input's dtype.

    Made from a ``Conv1d`` (its weight norm, if any, evaluated once): ``(B, C, T)`` -> ``(B, C_out, T')``.
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().float().clone(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().float().clone(), requires_grad=False)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            out = F.conv1d(hidden.float(), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return out.to(hidden.dtype)


class _Float32OnCpu:
    """Mixed into a positional-embedding module's class: under CPU autocast its forward runs in float32."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if hidden_states.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(hidden_states.float())  # type: ignore[misc]
        return super().forward(hidden_states)  # type: ignore[misc]


_FLOAT32_CLASSES: dict[type, type] = {}


def positional_conv_in_float32(encoder: nn.Module) -> None:
    """Make ``encoder``'s positional convolution (``encoder.encoder.pos_conv_embed``) run in float32 under CPU autocast.

    The module keeps its parameters and state-dict keys; only its class gains :class:`_Float32OnCpu`'s
    forward (as ``torch.nn.utils.parametrize`` does for a parametrised module). Elsewhere (CUDA, no
    autocast) it computes exactly what it did. Encoders without that module are left alone.
    """
    embed = getattr(getattr(encoder, "encoder", None), "pos_conv_embed", None)
    if embed is None or isinstance(embed, _Float32OnCpu):
        return
    cls = type(embed)
    if cls not in _FLOAT32_CLASSES:
        _FLOAT32_CLASSES[cls] = type(f"Float32OnCpu{cls.__name__}", (_Float32OnCpu, cls), {})
    embed.__class__ = _FLOAT32_CLASSES[cls]


# model -> (weights signature, asked dtype, fast copy or None for "the model itself"); entries go with their
# model (so a value must never hold the model: it would keep its own key alive).
_FAST_MODELS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, torch.dtype, nn.Module | None]]" = weakref.WeakKeyDictionary()


def _weights_signature(model: nn.Module) -> tuple:
    # In-place updates (optimiser steps, load_state_dict) bump a tensor's version; .to() replaces its storage.
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


def build_fast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The fast copy of ``model`` in ``dtype`` (unchecked: :func:`inference_model` checks it before use)."""
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
        memo[id(conv)] = Float32Conv1d(conv)
    fast = copy.deepcopy(model, memo)
    if _register_cpu_attention():
        fast.encoder.config._attn_implementation = _CPU_ATTENTION
    return fast.eval()


def _checked_fast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module | None:
    """:func:`build_fast_model`, compared with ``model``'s own float32 forward on the probe clip first;
    None where even a float32 copy disagrees (then the model itself runs)."""
    device = torch.device("cpu")
    reference = reference_output(model, device)
    fast = build_fast_model(model, dtype)
    with torch.inference_mode():
        deviation = output_deviation(reference, fast(probe_clips()))
    if dtype == torch.bfloat16 and deviation > BF16_TOLERANCE:
        say_fallback(deviation, device)
        fast = build_fast_model(model, torch.float32)
        with torch.inference_mode():
            deviation = output_deviation(reference, fast(probe_clips()))
    if deviation > FAST_COPY_TOLERANCE and next(fast.encoder.parameters()).dtype == torch.float32:
        print(f"the CPU fast path disagrees with the model's own float32 forward (max {deviation:.2g}); "
              "using the model itself", file=sys.stderr)
        return None
    return fast


COVERED_KINDS: tuple[str, ...] = ("hubert",)
"""Encoder kinds (:data:`activity.backbones.BACKBONES`) the fast copy is built and tested for: MERT's HuBERT."""

_STEPPED_ASIDE: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _step_aside(model: nn.Module, encoder: nn.Module) -> None:
    """Say once per model that the fast copy does not cover its encoder kind."""
    if model not in _STEPPED_ASIDE:
        _STEPPED_ASIDE.add(model)
        print(f"the CPU fast copy covers {', '.join(COVERED_KINDS)} encoders, not {encoder.kind}; "
              "running the model as it is", file=sys.stderr)


def inference_model(model: nn.Module, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, bool]:
    """The module to run for ``model`` on ``device`` in ``dtype``, and whether it runs under bf16 autocast.

    On the CPU, for an :class:`~activity.model.ActivityModel` in eval mode with MERT's front end: the
    checked fast copy (see the module docstring), sharing the head's parameters; built once and rebuilt
    only when a weight changes. Otherwise the model itself, under autocast for bf16 when
    :func:`~activity.precision.checked_autocast_dtype` allows it (that guard compares whole outputs, so it
    serves every encoder); an encoder kind outside :data:`COVERED_KINDS` gets one line saying so.
    """
    encoder = getattr(model, "encoder", None)
    kind = getattr(encoder, "kind", COVERED_KINDS[0])
    if device.type == "cpu" and not model.training and kind not in COVERED_KINDS:
        _step_aside(model, encoder)
    if (device.type != "cpu" or model.training or kind not in COVERED_KINDS
            or not FastFeatureExtractor.supports(encoder)):
        return model, checked_autocast_dtype(model, device, dtype) == torch.bfloat16
    signature = _weights_signature(model)
    cached = _FAST_MODELS.get(model)
    if cached is None or cached[0] != signature or cached[1] != dtype:
        cached = (signature, dtype, _checked_fast_model(model, dtype))
        _FAST_MODELS[model] = cached
    return (model if cached[2] is None else cached[2]), False
