"""One precision rule for the whole project, and the guard that checks a fast path against float32.

Every command and library call that runs the model (training, validation, ``activity.infer``,
``plot_pianoroll.py``, the benchmarks) resolves its dtype with :func:`resolve_dtype`:

* ``fp32`` / ``float32`` and ``bf16`` / ``bfloat16`` are taken as asked; so is ``int8`` (:data:`INT8`:
  inference on the CPU with int8 products, checked like bf16 against :data:`INT8_TOLERANCE`);
* ``auto`` is bf16 on CUDA devices that support it; on the CPU it is bf16 only where the CPU computes
  bf16 natively (AVX512-BF16 or AMX) **and** a timed bf16 matrix product on this machine, under this
  process's oneDNN settings, runs at least :data:`BF16_MIN_SPEEDUP` times as fast as float32
  (:func:`bf16_speedup`, measured once per process). A flag alone does not decide: with AMX switched
  off (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``) bf16 products ran at 180 GFLOP/s against 299 in float32
  on the same Xeon, so bf16 would be the slow path there.

bf16 is a fast path, never trusted blindly: oneDNN picks other kernels on other CPUs, and some are
wrong for some shapes (its AMX kernel for the encoder's grouped positional convolution gave a relative
error of 1.17 for the ``compact`` shape). So whatever runs in bf16 is first compared with float32 on a
fixed probe clip (:func:`probe_clips`, :func:`output_deviation`); where the clip or frame probabilities
differ by more than :data:`BF16_TOLERANCE`, float32 is used instead and one line says so. The CPU fast
copy of :mod:`activity.cpu_kernels` does this when it is built; the autocast path (training,
validation, CUDA) through :func:`checked_autocast_dtype`, once per model and process.

A split's report does not depend on the path: the clips whose decisions bf16 or int8 rounding could flip
(a class within :data:`RECHECK_MARGIN` of its threshold, :func:`near_threshold`) are scored again in
float32 (:meth:`activity.api.Detector.split_probs`), so the fast path buys speed, not another report.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import weakref
from typing import Any, Callable

import numpy as np
import torch

from .constants import CLIP_SAMPLES, SAMPLE_RATE
from .errors import ActivityError

BF16_MIN_SPEEDUP: float = 1.3
"""``auto`` picks bf16 on a CPU only when its timed bf16 product is at least this much faster than float32.

The margin keeps the choice stable against timing noise: measured ratios were 4 and more with AMX and
0.74-0.83 with AMX capped off (AVX512-BF16 kernels), on a Xeon shared with other jobs; far from 1 either way.
"""

BF16_TOLERANCE: float = 0.05
"""Largest absolute difference of any clip or frame probability on the probe clips between a bf16 path and
float32 that is accepted. Correct bf16 kernels stay within 0.023 of float32 for the shipped checkpoint on
every oneDNN ISA measured (experiments/RESULTS.md, "One answer on every CPU"); the broken AMX positional
convolution moved them by 0.08 (``tiny``) to 0.97 (the shipped checkpoint)."""

INT8: torch.dtype = torch.qint8
"""What :func:`resolve_dtype` returns for ``int8``: the CPU fast copy with int8 products
(:func:`activity.cpu_kernels.quantize_fast_model`); a marker, no tensor of the model is in this dtype."""

INT8_TOLERANCE: float = 0.05
"""The bound of :data:`BF16_TOLERANCE` for the int8 path against float32 on the probe clips. int8 moves
probabilities more than bf16 does (0.004-0.006 on the probe clip, 0.02 on the golden clips of the shipped
checkpoint: experiments/RESULTS.md, "int8"), so ``auto`` never picks it; the bound catches broken kernels."""

RECHECK_MARGIN: float = 0.03
"""When a split is scored in bf16 or int8 (:meth:`activity.api.Detector.split_probs`), every clip with the
probability of any class within this of its threshold is scored again in float32, so the course's report
is float32's wherever the fast path is within this of float32. On ``make demo``'s split (2267 clips, the
shipped checkpoint, AMX bf16) the largest clip-probability difference was 0.0249 and 0.1% of them were
above 0.015; 25% of the clips lie within 0.03 of a threshold (experiments/RESULTS.md, "make demo's time")."""

FAST_COPY_TOLERANCE: float = 1e-3
"""The same bound for a float32 fast copy against the model's own float32 forward (they differ only by
rounding, about 1e-6)."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX); a necessary condition for speed only."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, check, lambda: False)()) for check in checks)


def _product_seconds(dtype: torch.dtype, rows: int, size: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    a @ b  # first call: kernel selection and allocation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=None)
def bf16_speedup(rows: int = 1024, size: int = 768, repeats: int = 5) -> float:
    """float32 time / bf16 time of a ``(rows, size) @ (size, size)`` product on this CPU (> 1: bf16 faster).

    The shape is that of MERT-95M's projections for a few clips. Measured once per process (about 50 ms),
    with this process's thread count and ``ONEDNN_MAX_CPU_ISA``.
    """
    return _product_seconds(torch.float32, rows, size, repeats) / _product_seconds(torch.bfloat16, rows, size, repeats)


def auto_dtype(device_type: str, *, cuda_bf16: bool = False, cpu_native_bf16: bool = False,
               cpu_speedup: Callable[[], float] = bf16_speedup) -> torch.dtype:
    """The ``auto`` rule from the facts of a machine (``cpu_speedup`` is only called when it can matter)."""
    if device_type == "cuda":
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if device_type == "cpu" and cpu_native_bf16 and cpu_speedup() >= BF16_MIN_SPEEDUP:
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"``/None, ``"bf16"``/``"bfloat16"``, ``"fp32"``/``"float32"``, ``"int8"`` or a torch dtype -> the
    dtype to run in.

    ``auto`` follows :func:`auto_dtype` with this machine's facts (never int8). ``int8`` (:data:`INT8`) is
    for inference on the CPU only. Raises :class:`ActivityError` for anything else.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, INT8):
            raise ActivityError(f"dtype {dtype}: expected float32, bfloat16 or qint8")
        name = "int8" if dtype == INT8 else "explicit"
    else:
        name = "auto" if dtype is None else str(dtype).lower()
    if name == "int8":
        if device.type != "cpu":
            raise ActivityError(f"--dtype int8 runs on the CPU only (device {device}); use bf16 or fp32 there")
        return INT8
    if name == "explicit":
        return dtype  # type: ignore[return-value]
    if name in ("fp32", "float32"):
        return torch.float32
    if name in ("bf16", "bfloat16"):
        return torch.bfloat16
    if name != "auto":
        raise ActivityError(f"dtype {dtype!r}: expected auto, bf16, fp32 or int8")
    if device.type == "cuda":
        return auto_dtype("cuda", cuda_bf16=torch.cuda.is_bf16_supported())
    return auto_dtype(device.type, cpu_native_bf16=cpu_has_native_bf16(), cpu_speedup=bf16_speedup)


def describe_dtype(dtype: torch.dtype, device: torch.device) -> str:
    """A short phrase for logs: ``dtype bf16 on cpu``."""
    return f"dtype {dtype_name(dtype)} on {device}"


def dtype_name(dtype: torch.dtype) -> str:
    """``bf16``, ``int8`` or ``float32``: the word logs and tables use for a resolved dtype."""
    return {torch.bfloat16: "bf16", INT8: "int8"}.get(dtype, "float32")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``dtype`` is bf16, else a context that changes nothing."""
    if dtype != torch.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# --------------------------------------------------------------------------------------------------
# The guard


@functools.lru_cache(maxsize=1)
def _probe_array() -> np.ndarray:
    rng = np.random.default_rng(20261201)  # PCG64: the same numbers on every platform
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    # Tones that change pitch every half second over noise: varied frames, like music rather than silence.
    pitches = 110.0 * 2.0 ** (rng.integers(0, 36, size=10) / 12.0)
    tone = np.sin(2 * np.pi * np.repeat(pitches, CLIP_SAMPLES // 10) * t)
    clip = 0.4 * tone + 0.2 * np.sin(2 * np.pi * 3 * np.repeat(pitches, CLIP_SAMPLES // 10) * t)
    clip += 0.05 * rng.standard_normal(CLIP_SAMPLES)
    return clip.astype(np.float32)[None]


def probe_clips() -> torch.Tensor:
    """The fixed probe input of the guard: ``(1, CLIP_SAMPLES)`` float32 audio at 24 kHz (one 5 s clip)."""
    return torch.from_numpy(_probe_array().copy())


def output_deviation(reference: Any, candidate: Any) -> float:
    """Largest absolute difference of ``clip_probs`` and ``frame_probs`` between two model outputs."""
    clip = (candidate.clip_probs.float() - reference.clip_probs.float()).abs().max()
    frame = (candidate.frame_probs.float() - reference.frame_probs.float()).abs().max()
    value = float(torch.maximum(clip, frame))
    return value if np.isfinite(value) else float("inf")


def near_threshold(probs: np.ndarray, thresholds: np.ndarray, margin: float | None = None) -> np.ndarray:
    """``(M,)`` bool: which rows of clip probabilities ``(M, 9)`` have a class within ``margin`` (default
    :data:`RECHECK_MARGIN`) of its threshold (``(9,)``), i.e. whose decisions a fast path's rounding could flip."""
    margin = RECHECK_MARGIN if margin is None else margin
    return (np.abs(np.asarray(probs, np.float32) - np.asarray(thresholds, np.float32)) <= margin).any(axis=1)


def say_fallback(deviation: float, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> None:
    """The one line (stderr) that says ``dtype`` (bf16 or int8) was replaced by float32 on ``device``."""
    place = "this CPU" if device.type == "cpu" else f"this GPU ({device})"
    print(f"{dtype_name(dtype)} on {place} disagrees with float32 (max {deviation:.2f}); using float32", file=sys.stderr)


@torch.inference_mode()
def reference_output(model: torch.nn.Module, device: torch.device) -> Any:
    """``model``'s own float32 forward (eval mode, no autocast) on the probe clip."""
    with torch.autocast(device.type, enabled=False):
        return model(probe_clips().to(device))


# model -> dtype it may use under autocast; entries go with their model.
_AUTOCAST_CHECKED: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.dtype]]" = weakref.WeakKeyDictionary()


def checked_autocast_dtype(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """``dtype`` if the model under bf16 autocast on ``device`` agrees with float32 on the probe, else float32.

    Checked once per model, device and process (one forward each way in eval mode; the model's mode and the
    random number generators are left as they were). float32 needs no check.
    """
    if dtype == INT8:  # int8 exists only in the CPU fast copy: autocast paths run float32
        return torch.float32
    if dtype != torch.bfloat16:
        return dtype
    checked = _AUTOCAST_CHECKED.setdefault(model, {})
    key = str(device)
    if key not in checked:
        was_training = model.training
        model.eval()
        try:
            reference = reference_output(model, device)
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
                candidate = model(probe_clips().to(device))
        finally:
            model.train(was_training)
        deviation = output_deviation(reference, candidate)
        checked[key] = dtype if deviation <= BF16_TOLERANCE else torch.float32
        if checked[key] != dtype:
            say_fallback(deviation, device)
    return checked[key]
