"""Every fixed number of the task, in one place.

Audio is mono float at ``SAMPLE_RATE``; every output is on one grid of frames at ``FRAME_RATE`` (one
every ``HOP`` samples, each covering ``RECEPTIVE_FIELD`` samples): MERT-v1's own frames. An encoder with
other rates (its own sample rate, hop and receptive field live in its module, :mod:`activity.backbones`)
is resampled to and interpolated from this grid inside the model (:mod:`activity.backbones.grid`). The
course cut songs into ``CLIP_SECONDS`` clips and labels each with the multi-hot vector over ``CLASSES``.
"""

from __future__ import annotations

from pathlib import Path

DEMO_CHECKPOINT: Path = Path(__file__).resolve().parents[1] / "checkpoints" / "demo"
"""The shipped checkpoint (``checkpoints/demo`` of the repository): every command's default ``--ckpt``."""

SAMPLE_RATE: int = 24_000
"""Samples per second of every waveform the model takes, datasets and files alike (MERT-v1 was trained at
24 kHz; a 16 kHz encoder gets its audio resampled inside the model)."""

HOP: int = 320
"""Samples between two output frames (MERT-v1's conv strides 5*2*2*2*2*2*2)."""

RECEPTIVE_FIELD: int = 400
"""Samples one output frame covers (what one MERT-v1 frame sees: kernels 10,3,3,3,3,2,2, strides 5,2,...)."""

FRAME_RATE: int = SAMPLE_RATE // HOP
"""Output frames per second (75), whatever the encoder's own frame rate."""

CLIP_SECONDS: int = 5
"""Length of one course clip, in seconds; also the step of the course's per-song 5 s truth."""

CLIP_SAMPLES: int = CLIP_SECONDS * SAMPLE_RATE
"""Samples in one clip (120000)."""

CLASSES: tuple[str, ...] = (
    "Piano",
    "Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Voice",
    "Wind Instruments",
    "Synth",
)
"""The course's nine classes, in the order of every label vector and model output."""

NUM_CLASSES: int = len(CLASSES)

assert FRAME_RATE * HOP == SAMPLE_RATE, "the frame rate must be an integer"

DTYPE_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp32")
"""What ``--dtype`` / ``--precision`` accept; :func:`activity.precision.resolve_dtype` says what each means."""

DTYPE_HELP: str = (
    "auto: bf16 where it is measurably faster than float32 on this machine (CUDA with bf16, CPUs with AMX), "
    "else float32. bf16 is first checked against float32 on a probe clip and replaced by float32 where they "
    "disagree (one line says so)")
"""The help text of those flags (kept here so that parsers need not import torch)."""

INFER_DTYPE_CHOICES: tuple[str, ...] = DTYPE_CHOICES + ("int8",)
"""What inference's ``--dtype`` accepts (``activity.infer``, ``plot_pianoroll.py``): training has no int8."""

INFER_DTYPE_HELP: str = DTYPE_HELP + (
    ". int8 (CPU only, never picked by auto): int8 products, faster where the CPU has VNNI or AMX; probabilities "
    "move by up to about 0.02, so reports may differ slightly from float32")

FRAME_AXES: str = "(..., T, 9)"
"""The one axis order of every public array over time: time first, the nine classes last.

Clip outputs are ``(B, T, 9)``; a song's 75 Hz roll ``(T, 9)`` and its 5 s segments ``(S, 9)``
(:class:`activity.windows.SongPrediction`); MIDI truth ``(T, 9)`` / ``(S, 9)`` (:mod:`activity.midi`);
the ``.npz``, CSV and JSON outputs and the plots' inputs alike. Only a drawing transposes, to put
classes on its y axis."""

PROB_EPS: float = 1e-6
"""Clip probabilities are clamped to ``[eps, 1 - eps]`` before a logit or a log (finite in float32)."""


def num_frames(num_samples: int) -> int:
    """Output frames for ``num_samples`` samples at 24 kHz: floor((N - 400) / 320) + 1, 0 below 400.

    >>> num_frames(CLIP_SAMPLES)
    374
    """
    if num_samples < RECEPTIVE_FIELD:
        return 0
    return (num_samples - RECEPTIVE_FIELD) // HOP + 1

