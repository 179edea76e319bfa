"""The CPU's kernels: a fast copy of the model for inference, and where float32 must stand in for bf16.

:func:`inference_model` gives the module to run for a model on a device and dtype. On the CPU, for an
:class:`~activity.model.ActivityModel` in eval mode with MERT's front end, that is a copy made once and
cached while the weights do not change (``experiments/fp32_parts.py`` times each part against the model's
own, ``experiments/bench_infer.py`` the whole against the course pipeline):

* the conv front end as matrix products on time-major activations (oneDNN's 1-D convolutions reach
  less than half the matrix-product rate), its group norm folded into the first layer's weights, one
  clip at a time and in blocks of time so that no activation outgrows the caches and glibc's 32 MB
  mmap threshold (above it every call page-faults its output in afresh: 18 ms per 49 MB);
* encoder weights converted to bf16 once, instead of autocast casting all 95M of them at every call;
* in bf16, attention as two batched products and a softmax (faster than PyTorch's CPU flash kernel at
  T = 374 there; in float32 the flash kernel is the faster one and stays);
* the positional convolution's weight norm computed once, and the convolution itself in float32.

``int8`` is the float32 copy with the transformer's products in int8 (:func:`quantize_fast_model`).

Every copy is checked against the model's own float32 forward on the probe clip of
:mod:`activity.precision` before it is used: a bf16 copy that disagrees by more than
``BF16_TOLERANCE`` (an int8 one by more than ``INT8_TOLERANCE``) is replaced by a float32 one (one line
says so), a float32 copy that disagrees by more than ``FAST_COPY_TOLERANCE`` by the model itself.

Why the positional convolution runs in float32 on the CPU, in the fast copy and under autocast alike
(:func:`positional_conv_in_float32`): oneDNN's AMX kernel for this grouped convolution with a long kernel
(128 taps, 16 groups) is wrong in bf16 for narrow layers (relative error 1.17 at 192 channels, the
``compact`` shape; 1.08 at 16), while its float32 kernels are right on every ISA. It is about 5% of
MERT-95M's FLOPs, so float32 costs little (experiments/RESULTS.md, "One answer on every CPU").
"""

from __future__ import annotations

import copy
import sys
import warnings
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .precision import (BF16_TOLERANCE, FAST_COPY_TOLERANCE, INT8, INT8_TOLERANCE, checked_autocast_dtype,
                        output_deviation, probe_clips, reference_output, say_fallback)


class FastFeatureExtractor(nn.Module):
    """MERT's conv front end (group-norm variant) as matrix products on time-major activations.

    Same maths as ``HubertFeatureEncoder`` (conv0 -> GroupNorm(C groups) -> GELU, then conv -> GELU):
    ``(B, N)`` float audio -> ``(B, C, T)`` in ``dtype`` (a transposed view of ``(B, T, C)``, which
    HubertModel transposes back for free). Faster on CPUs because

    * conv0 has no bias and one input channel, so its output's per-channel mean and variance over
      time follow from the 10-sample frames' mean ``mu`` and covariance ``S``: ``mean = w . mu``,
      ``var = w^T S w``. The group norm folds into per-clip weights and bias, and conv0 + norm become
      one product of ``(T0, k)`` frames by ``(k, C)`` plus a bias;
    * every later conv is a product of ``(T', k * C)`` windows by ``(k * C, C_out)``, summed from
      views of the time-major input that need no copy (:func:`_strided_conv`);
    * clips run one at a time and conv0 + conv1 in blocks of time, so no activation is larger than
      12000 x 512 values (see :meth:`forward`).
    """

    BLOCK_ROWS = 1024
    """conv1 output rows per block (the block's conv0 output is 2049 x 512 values, 4 MB in float32)."""

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
        # One clip at a time: a clip's activations (at most 24 MB in float32) stay under glibc's 32 MB mmap
        # threshold, so they are reused from the heap instead of page-faulted in afresh at every call, and
        # they stay closer to the caches; batching adds nothing to products of 12000 x 1536 rows.
        clips = [self._one_clip(clip) for clip in waveform]
        return torch.stack(clips).transpose(1, 2)

    def _folded_first_layer(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """conv0 + group norm of one clip's ``(T0, k)`` frames as a ``(k, C)`` weight and a ``(C,)`` bias."""
        wide = frames.double()
        length = wide.shape[0]
        mean = wide.mean(dim=0)  # (k,)
        covariance = wide.t() @ wide / length - mean[:, None] * mean[None, :]
        variance = torch.einsum("kc,kj,jc->c", self.weight0, covariance, self.weight0).clamp_min(0.0)
        scale = self.norm_weight / torch.sqrt(variance + self.norm_eps)  # (C,)
        shift = self.norm_bias - (mean @ self.weight0) * scale  # (C,)
        return (self.weight0 * scale).to(self.dtype), shift.to(self.dtype)

    def _one_clip(self, samples: torch.Tensor) -> torch.Tensor:
        """``(N,)`` audio -> ``(T, C)`` features in ``self.dtype``."""
        frames = samples.unfold(0, self.kernel0, self.stride0)  # (T0, k) view
        weight0, bias0 = self._folded_first_layer(frames)
        frames = frames.to(self.dtype)
        if not self.layers:
            return F.gelu(torch.addmm(bias0, frames, weight0))
        (weight1, kernel1, stride1), *rest = self.layers
        length1 = (frames.shape[0] - kernel1) // stride1 + 1
        hidden = torch.empty(length1, weight1.shape[1], dtype=self.dtype, device=samples.device)
        # conv0 and conv1 in blocks of conv1's rows: conv0's output (24000 x 512 per clip) is never whole.
        for start in range(0, length1, self.BLOCK_ROWS):
            stop = min(start + self.BLOCK_ROWS, length1)
            first = F.gelu(torch.addmm(bias0, frames[start * stride1 : (stop - 1) * stride1 + kernel1], weight0))
            hidden[start:stop] = F.gelu(_strided_conv(first, weight1, kernel1, stride1))
        for weight, kernel, stride in rest:
            hidden = F.gelu(_strided_conv(hidden, weight, kernel, stride))
        return hidden


def _strided_conv(hidden: torch.Tensor, weight: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """A bias-free 1-D convolution of time-major ``(L, C)`` by ``(kernel * C, C_out)`` -> ``(L', C_out)``.

    Its windows of ``kernel`` rows overlap when ``kernel > stride``, and a matrix of overlapping rows is
    copied by every BLAS call; so the product is split by kernel taps into blocks of ``stride`` taps
    (views of ``hidden`` whose rows do not overlap) plus the leftover taps, and the partial products summed.
    """
    length, channels = hidden.shape
    out_length = (length - kernel) // stride + 1
    hidden = hidden.contiguous()
    total = None
    for tap in range(0, kernel, stride):
        taps = min(stride, kernel - tap)
        rows = hidden.as_strided((out_length, taps * channels), (stride * channels, 1),
                                 hidden.storage_offset() + tap * channels)
        part = weight[tap * channels : (tap + taps) * channels]
        total = rows @ part if total is None else torch.addmm(total, rows, part)
    return total


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


# model -> {asked dtype: (weights signature, fast copy or None for "the model itself")}: one copy per dtype, so
# a bf16 pass followed by a float32 re-check of a few clips (activity.api) builds each copy once. Entries go with
# their model (so a value must never hold the model: it would keep its own key alive).
_FAST_MODELS: "weakref.WeakKeyDictionary[nn.Module, dict[torch.dtype, tuple[tuple, nn.Module | None]]]" = weakref.WeakKeyDictionary()


def _weights_signature(model: nn.Module) -> tuple:
    # In-place updates (optimiser steps, load_state_dict) bump a tensor's version; .to() replaces its storage.
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


def build_fast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The fast copy of ``model`` in ``dtype`` (unchecked: :func:`inference_model` checks it before use).

    ``dtype`` float32, bf16, or ``torch.qint8`` (:data:`~activity.precision.INT8`): the float32 copy with
    int8 products (:func:`quantize_fast_model`).
    """
    if dtype == INT8:
        return quantize_fast_model(build_fast_model(model, torch.float32))
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
    # Attention: in float32 PyTorch's CPU flash kernel (transformers' "sdpa") is 1.4-2.7x faster than two
    # products and a softmax, which must write and read a (B, 12, 374, 374) score tensor; in bf16 the
    # products win (experiments/RESULTS.md, "Float32 part by part").
    if dtype == torch.bfloat16 and _register_cpu_attention():
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
    if (dtype == torch.bfloat16 and deviation > BF16_TOLERANCE) or (dtype == INT8 and deviation > INT8_TOLERANCE):
        say_fallback(deviation, device, dtype)
        fast = build_fast_model(model, torch.float32)
        with torch.inference_mode():
            deviation = output_deviation(reference, fast(probe_clips()))
    if deviation > FAST_COPY_TOLERANCE and getattr(fast, _INT8_MARK, None) is None \
            and next(fast.encoder.parameters()).dtype == torch.float32:
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
        if dtype == INT8:
            print("int8 runs only in the CPU fast copy (MERT's front end, eval mode); using float32", file=sys.stderr)
            return model, False
        return model, checked_autocast_dtype(model, device, dtype) == torch.bfloat16
    signature = _weights_signature(model)
    copies = _FAST_MODELS.setdefault(model, {})
    cached = copies.get(dtype)
    if cached is None or cached[0] != signature:
        if cached is not None:  # the weights changed: every copy is stale
            copies.clear()
        cached = copies[dtype] = (signature, _checked_fast_model(model, dtype))
    return (model if cached[1] is None else cached[1]), False


# --------------------------------------------------------------------------------------------------
# int8


_INT8_MARK = "activity_int8_engine"


def int8_engine(engines: list[str] | None = None) -> str | None:
    """The quantized engine for int8 products here: ``onednn`` where oneDNN may use AMX, else ``x86`` (fbgemm).

    Measured on a Sapphire Rapids Xeon, one thread, MERT-95M's products (experiments/RESULTS.md, "int8"):
    oneDNN's int8 kernels reach 1300-2000 GOP/s with AMX but only 270-290 (AVX512_CORE) to 620-740
    (AVX512-VNNI) without it, where fbgemm gives 560-630 on every cap (fbgemm picks its kernels from the
    CPU itself; ``ONEDNN_MAX_CPU_ISA`` does not reach it). ``engines``: default PyTorch's supported ones;
    None where it has neither.
    """
    import os

    engines = torch.backends.quantized.supported_engines if engines is None else engines
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    amx_allowed = cap in ("", "ALL", "DEFAULT") or "AMX" in cap
    amx = bool(getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", lambda: False)())
    if "onednn" in engines and amx and amx_allowed:
        return "onednn"
    for engine in ("x86", "fbgemm", "onednn"):
        if engine in engines:
            return engine
    return None


class Int8Linear(nn.Module):
    """``x @ weight^T + bias`` with int8 weights (per output channel) and activations quantized per call.

    Made from an ``nn.Linear`` (or a ``(C_out, C_in)`` weight); PyTorch's dynamic quantized linear kernel
    of ``engine`` (:func:`int8_engine`): ``(..., C_in)`` float32 -> ``(..., C_out)`` float32.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, engine: str) -> None:
        super().__init__()
        weight = weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        with warnings.catch_warnings():  # quantized tensors are deprecated but still PyTorch's int8 path
            warnings.simplefilter("ignore")
            quantized = torch.quantize_per_channel(weight, scales.double(), torch.zeros(len(scales), dtype=torch.long),
                                                   0, torch.qint8)
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine  # the packed format is the engine's; the kernel follows it
        try:
            self._packed = torch.ops.quantized.linear_prepack(quantized, None if bias is None else bias.detach().float())
        finally:
            torch.backends.quantized.engine = previous
        self.in_features, self.out_features, self.engine = weight.shape[1], weight.shape[0], engine
        # fbgemm's kernels without VNNI add pairs of u8 x s8 products in 16 bits: 7-bit activations keep
        # them from saturating (PyTorch's own default there); oneDNN needs no such margin.
        self.reduce_range = engine != "onednn"

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(hidden.contiguous(), self._packed, self.reduce_range)

    def __deepcopy__(self, memo: dict) -> "Int8Linear":
        return self  # packed weights are immutable

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, engine={self.engine}"


def quantize_fast_model(fast: nn.Module, engine: str | None = None) -> nn.Module:
    """``fast`` (a float32 fast copy) with int8 products in every ``nn.Linear`` of the transformer (attention
    projections, feed-forward: 65% of MERT-95M's FLOPs). Changed in place and returned.

    Kept in float32: the conv front end (as int8 products, with activations quantized per tensor, it moved
    the shipped checkpoint's golden probabilities by 0.3-0.8), the positional convolution, attention's own
    products (flash kernel), layer norms and the head (layer mix, BiGRU, classifier). ``engine``: default
    :func:`int8_engine`; where there is none ``fast`` stays float32.
    """
    engine = engine or int8_engine()
    if engine is None:
        return fast
    for module in list(fast.encoder.encoder.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, Int8Linear(child.weight, child.bias, engine))
    setattr(fast, _INT8_MARK, engine)
    return fast
