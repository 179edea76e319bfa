"""From an encoder's own rates to the package's 24 kHz input and 75 Hz output grid, inside the model.

Datasets, command lines and every output stay at 24 kHz audio and 75 Hz frames (:mod:`activity.constants`);
an encoder may want another sample rate and give another frame rate. Two steps bridge them:

* :class:`Resampler`: 24 kHz audio -> the encoder's rate, a windowed-sinc (Kaiser) polyphase filter run as
  one strided ``conv1d`` in torch, so it runs batched on the model's device (GPU included) and in the
  training graph's input path. Zero-phase: output sample ``i`` is the input at time ``i / rate_out``.
  Chosen over soxr (what :func:`activity.audio.resample` uses for files) because soxr runs on numpy on the
  CPU, one clip at a time; measured against it in experiments/RESULTS.md ("Encoders through one seam").
* :func:`to_output_grid`: encoder frames -> 75 Hz frames by linear interpolation in time. Frame ``j`` of
  an encoder with hop ``h`` and receptive field ``R`` (samples at its rate ``r``) sees samples
  ``[j h, j h + R)``, so it is centred at ``(j h + R / 2) / r`` seconds; output frame ``t`` is centred at
  ``(320 t + 200) / 24000`` s. Each output frame takes the two encoder frames whose centres surround its own,
  weighted by distance (clamped at the ends). For MERT-v1's grid (24 kHz, hop 320, field 400) this is the
  identity and is skipped, so such models compute exactly what they did before the seam existed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import HOP, RECEPTIVE_FIELD, SAMPLE_RATE

# torchaudio's "kaiser_best" settings (the same as librosa's): 64 zero crossings each side, a cut-off at
# 94.8% of the lower Nyquist frequency, Kaiser beta 14.77 (stop band below about -100 dB).
_ZERO_CROSSINGS = 64
_ROLLOFF = 0.9475937167399596
_KAISER_BETA = 14.769656459379492


def _sinc_kernel(up: int, down: int) -> tuple[torch.Tensor, int]:
    """Polyphase kernel ``(up, 1, 2 * width + down)`` float32 for ``rate * up / down``, and its half ``width``."""
    base = min(up, down) * _ROLLOFF
    width = math.ceil(_ZERO_CROSSINGS * down / base)
    index = torch.arange(-width, width + down, dtype=torch.float64)[None, None] / down
    t = (torch.arange(0, -up, -1, dtype=torch.float64)[:, None, None] / up + index) * base
    t = t.clamp(-_ZERO_CROSSINGS, _ZERO_CROSSINGS)
    window = torch.special.i0(_KAISER_BETA * torch.sqrt(1 - (t / _ZERO_CROSSINGS) ** 2)) / torch.special.i0(
        torch.tensor(_KAISER_BETA, dtype=torch.float64))
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * (base / down)).float(), width


class Resampler(nn.Module):
    """Band-limited resampling ``(B, N)`` at ``source_rate`` -> ``(B, ceil(N * target / source))`` at ``target_rate``.

    The kernel is a non-persistent buffer: it follows ``.to(device)`` but is not part of the state dict,
    so checkpoints do not depend on it. Runs in float32 (also under autocast): it is a few hundred
    multiply-adds per output sample, and bf16 would add audible noise to every encoder input.
    """

    def __init__(self, source_rate: int, target_rate: int) -> None:
        super().__init__()
        if source_rate <= 0 or target_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {source_rate} and {target_rate}")
        common = math.gcd(int(source_rate), int(target_rate))
        self.source_rate, self.target_rate = int(source_rate), int(target_rate)
        self.up, self.down = self.target_rate // common, self.source_rate // common
        kernel, self.width = _sinc_kernel(self.up, self.down)
        self.register_buffer("kernel", kernel, persistent=False)

    def output_length(self, num_samples: int) -> int:
        """Samples out for ``num_samples`` in: ``ceil(N * up / down)``."""
        return -(-num_samples * self.up // self.down)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        batch, length = waveform.shape
        with torch.autocast(waveform.device.type, enabled=False):
            padded = F.pad(waveform.float(), (self.width, self.width + self.down))
            phases = F.conv1d(padded[:, None], self.kernel.float(), stride=self.down)  # (B, up, N / down + 1)
        return phases.transpose(1, 2).reshape(batch, -1)[:, : self.output_length(length)]


def frame_centres(frames: int, sample_rate: float, hop: int, receptive_field: int) -> torch.Tensor:
    """Centre times in seconds ``(frames,)`` float64 of frames ``[j hop, j hop + receptive_field)`` at ``sample_rate``."""
    return (torch.arange(frames, dtype=torch.float64) * hop + receptive_field / 2) / sample_rate


def is_output_grid(sample_rate: int, hop: int, receptive_field: int) -> bool:
    """Whether an encoder's frames are the 75 Hz output frames themselves (MERT-v1's grid)."""
    return (sample_rate, hop, receptive_field) == (SAMPLE_RATE, HOP, RECEPTIVE_FIELD)


def output_positions(output_frames: int, sample_rate: int, hop: int, receptive_field: int) -> torch.Tensor:
    """Where each 75 Hz output frame lies on an encoder's frame axis: ``(output_frames,)`` float64, in
    encoder frames (``2.5`` = half way between the centres of frames 2 and 3)."""
    centres = frame_centres(output_frames, SAMPLE_RATE, HOP, RECEPTIVE_FIELD)
    return (centres * sample_rate - receptive_field / 2) / hop


def to_output_grid(features: torch.Tensor, output_frames: int, sample_rate: int, hop: int,
                   receptive_field: int) -> torch.Tensor:
    """Encoder frames ``(B, T_enc, D)`` -> 75 Hz frames ``(B, output_frames, D)`` by linear interpolation of
    centre times (see the module docstring); the input itself, cut to ``output_frames``, on MERT-v1's grid."""
    if is_output_grid(sample_rate, hop, receptive_field):
        return features[:, :output_frames]
    available = features.shape[1]
    position = output_positions(output_frames, sample_rate, hop, receptive_field).clamp(0, available - 1)
    lower = position.floor().long().clamp(max=available - 1)
    upper = (lower + 1).clamp(max=available - 1)
    weight = (position - lower).to(device=features.device, dtype=features.dtype)[None, :, None]
    lower, upper = lower.to(features.device), upper.to(features.device)
    return features[:, lower] * (1 - weight) + features[:, upper] * weight
