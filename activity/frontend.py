"""Warm start for an encoder trained from scratch: fit its conv front end to a log-mel spectrogram.

A randomly initialised MERT conv stack learns instrument timbre very slowly from clip and frame labels
alone: for the first few hundred steps the whole model stays at the loss of the class priors. Fitting
the conv stack first, on its own, to regress the log-mel spectrogram of the very samples each frame
sees (its receptive field, one frame every hop, at the encoder's own sample rate) costs about a fifth of a full training step per batch and
gives the transformer and head spectral features from their first step. See experiments/RESULTS.md
(issue 6) for the measurements.

The read-out used for the fit is thrown away; only the conv weights are kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .constants import HOP, RECEPTIVE_FIELD, SAMPLE_RATE
from .encoder import normalize_waveform

MEL_BANDS: int = 80
"""Mel bands of the fitting target."""

MEL_LOW_HZ: float = 30.0
"""Lower edge of the lowest mel band, in Hz (the top edge is the Nyquist frequency)."""


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(bands: int = MEL_BANDS, sample_rate: int = SAMPLE_RATE, n_fft: int = RECEPTIVE_FIELD) -> torch.Tensor:
    """Triangular mel filters ``(bands, n_fft // 2 + 1)``, each row summing to 1 (HTK mel scale, up to Nyquist)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(MEL_LOW_HZ), _hz_to_mel(sample_rate / 2), bands + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    rising = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    bank = np.maximum(0.0, np.minimum(rising, falling))
    # Low bands narrower than one FFT bin would be empty: give each at least its nearest bin.
    for row, centre in enumerate(edges[1:-1]):
        if bank[row].sum() == 0.0:
            bank[row, int(np.argmin(np.abs(freqs - centre)))] = 1.0
    return torch.from_numpy(bank / bank.sum(axis=1, keepdims=True)).float()


def frame_log_mel(waveform: torch.Tensor, bands: int = MEL_BANDS, sample_rate: int = SAMPLE_RATE, hop: int = HOP,
                  receptive_field: int = RECEPTIVE_FIELD) -> torch.Tensor:
    """``(B, N)`` audio at ``sample_rate`` -> ``(B, T, bands)`` natural-log mel power, ``T = (N - R) // hop + 1``.

    Frame ``t`` is the Hann-windowed spectrum of samples ``[t * hop, t * hop + receptive_field)``: exactly
    the samples encoder frame ``t`` sees (defaults: MERT-v1's 24 kHz, 320, 400).
    """
    spectrum = torch.stft(waveform.float(), receptive_field, hop_length=hop, window=torch.hann_window(
        receptive_field, device=waveform.device), center=False, return_complex=True).abs().pow(2)  # (B, F, T)
    bank = mel_filterbank(bands, sample_rate, receptive_field).to(waveform.device)
    mel = torch.einsum("mf,bft->btm", bank, spectrum)
    return torch.log(mel + 1e-6)


def fit_frontend(
    encoder: torch.nn.Module,
    dataset: Any,
    steps: int,
    batch_size: int,
    lr: float = 2e-3,
    seed: int = 0,
    precision_context: Callable[[], Any] = contextlib.nullcontext,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Train ``encoder.feature_extractor`` for ``steps`` AdamW steps to predict :func:`frame_log_mel`.

    ``dataset[i][0]`` is a raw ``(N,)`` 24 kHz clip (a :class:`~activity.datasets.ClipDataset` item), turned
    into the encoder's input by ``prepare`` (the model's :meth:`~activity.model.ActivityModel.encoder_input`:
    resampled to the encoder's rate and normalised; default: normalised only, for a 24 kHz encoder); the
    target's frames are the encoder's own (its ``sample_rate``, ``hop`` and ``receptive_field``); batches are drawn from it in a seeded order, reshuffled after each pass.
    ``precision_context()`` wraps the conv forward (bf16 autocast, say). The target is standardised per band over each
    batch, so the mean-squared error starts near 1 and every band counts alike. Returns the loss of each
    step. The conv weights are updated in place; nothing else of ``encoder`` changes.
    """
    extractor = encoder.feature_extractor
    device = next(extractor.parameters()).device
    width = encoder.config.conv_dim[-1]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the read-out's init must not shift the main run's RNG
        torch.manual_seed(seed)
        readout = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, MEL_BANDS)).to(device)
    optimizer = torch.optim.AdamW(list(extractor.parameters()) + list(readout.parameters()), lr=lr)
    was_training = extractor.training
    extractor.train()
    losses: list[float] = []
    order = torch.randperm(len(dataset), generator=generator).tolist()
    position = 0
    batch_size = min(batch_size, len(dataset))
    for _ in range(steps):
        if position + batch_size > len(order):
            order, position = torch.randperm(len(dataset), generator=generator).tolist(), 0
        rows = order[position: position + batch_size]
        position += batch_size
        batch = torch.stack([dataset[i][0] for i in rows])
        audio = normalize_waveform(batch).to(device) if prepare is None else prepare(batch.to(device))
        target = frame_log_mel(audio, sample_rate=getattr(encoder, "sample_rate", SAMPLE_RATE),
                               hop=getattr(encoder, "hop", HOP), receptive_field=getattr(encoder, "receptive_field",
                                                                                         RECEPTIVE_FIELD))
        target = (target - target.mean(dim=(0, 1))) / (target.std(dim=(0, 1)) + 1e-3)
        with precision_context():
            features = extractor(audio).transpose(1, 2)  # (B, T, width)
        loss = torch.nn.functional.mse_loss(readout(features.float()), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.item()))
    extractor.train(was_training)
    return losses
