"""A seeded mixing and effects chain for synthetic stems, built from pedalboard's plugins.

Slakh's stems were rendered by many sample libraries and mixed; a bare SoundFont render is dry,
flat and uncompressed. With ``activity.synth --effects`` every stem goes through its own chain
before levelling (:func:`draw_stem_chain`, :func:`apply_chain`) and the mix through a bus chain
with gain and noise (:func:`draw_mix_chain`, :func:`apply_mix_chain`):

- stems: high-pass and low-pass filters, a peak EQ band and a shelf, compression, drive on
  guitar-like stems (General MIDI guitars, sometimes bass and organ), chorus on melodic stems, and
  a send to the song's one reverb;
- mix: bus compression, a gain, and white noise at a drawn signal-to-noise ratio.

Every parameter is drawn from the generator a caller passes (the song's own, so a build stays
byte-deterministic per seed); the drawn settings are plain dicts that go into the song's record.
pedalboard's plugins are built anew for each call and reset, so no state carries between stems.
"""

from __future__ import annotations

import math

import numpy as np

from ..taxonomy import BASS, GUITAR, ORGAN, class_of
from .loudness import gated_rms

EFFECTS_VERSION: int = 2
"""Bumped whenever the drawn chain changes, so a resumed build never mixes two chains."""


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _round(params: dict) -> dict:
    """Parameters rounded to 4 significant digits: the record shows what was applied, exactly."""
    return {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in params.items()}


def draw_stem_chain(rng: np.random.Generator, program: int, is_drum: bool, room: dict) -> list[tuple[str, dict]]:
    """The chain for one stem: a list of ``(plugin name, parameters)`` in processing order.

    ``room`` (from :func:`draw_room`) is the song's shared reverb space; each stem draws only how
    much it sends to it: the last entry, ``("Send", {"level": ...})``, is not a plugin but the
    stem's level on the reverb bus (:func:`split_sends`, ``render.mix_stems``). Always draws the same number of values, whatever is switched on, so one
    stem's choices never shift the next stem's.
    """
    cls = None if is_drum else class_of(program)
    u = rng.random(8)
    chain: list[tuple[str, dict]] = []
    if u[0] < 0.6:
        chain.append(("HighpassFilter", {"cutoff_frequency_hz": _log_uniform(rng, 20.0, 40.0 if cls == BASS else 160.0)}))
    else:
        rng.random()
    if u[1] < 0.4:
        chain.append(("LowpassFilter", {"cutoff_frequency_hz": _log_uniform(rng, 5000.0, 16000.0)}))
    else:
        rng.random()
    peak = {"cutoff_frequency_hz": _log_uniform(rng, 150.0, 6000.0), "gain_db": float(rng.uniform(-8.0, 8.0)),
            "q": float(rng.uniform(0.5, 2.0))}
    if u[2] < 0.7:
        chain.append(("PeakFilter", peak))
    shelf_kind = "LowShelfFilter" if u[3] < 0.5 else "HighShelfFilter"
    shelf = {"cutoff_frequency_hz": _log_uniform(rng, 80.0, 300.0) if shelf_kind == "LowShelfFilter" else _log_uniform(rng, 3000.0, 9000.0),
             "gain_db": float(rng.uniform(-5.0, 5.0))}
    if u[4] < 0.5:
        chain.append((shelf_kind, shelf))
    drive_rate = {GUITAR: 0.6, BASS: 0.15, ORGAN: 0.25}.get(cls, 0.0)
    drive = {"drive_db": float(rng.uniform(6.0, 24.0 if cls == GUITAR else 12.0))}
    if u[5] < drive_rate:
        chain.append(("Distortion", drive))
    compressor = {"threshold_db": float(rng.uniform(-30.0, -10.0)), "ratio": float(rng.uniform(2.0, 6.0)),
                  "attack_ms": _log_uniform(rng, 1.0, 30.0), "release_ms": _log_uniform(rng, 50.0, 300.0)}
    if u[6] < 0.6:
        chain.append(("Compressor", compressor))
    chorus = {"rate_hz": _log_uniform(rng, 0.3, 2.0), "depth": float(rng.uniform(0.1, 0.4)),
              "centre_delay_ms": float(rng.uniform(5.0, 12.0)), "feedback": 0.0, "mix": float(rng.uniform(0.2, 0.5))}
    if u[7] < (0.0 if is_drum else 0.25):
        chain.append(("Chorus", chorus))
    chain.append(("Send", {"level": float(rng.uniform(0.0, room["max_send"]))}))
    return [(name, _round(params)) for name, params in chain]


def draw_room(rng: np.random.Generator) -> dict:
    """The song's reverb space: size, damping and the largest send any stem may draw."""
    return _round({"room_size": float(rng.uniform(0.1, 0.7)), "damping": float(rng.uniform(0.2, 0.8)),
                   "max_send": float(rng.uniform(0.05, 0.35))})


def room_reverb(room: dict) -> dict:
    """pedalboard ``Reverb`` parameters of the song's send bus: fully wet, mono."""
    return {"room_size": room["room_size"], "damping": room["damping"], "wet_level": 1.0, "dry_level": 0.0, "width": 0.0}


def split_sends(chain: list[tuple[str, dict]]) -> tuple[list[tuple[str, dict]], float]:
    """A drawn stem chain without its ``Send`` entry, and the send level (0 when there is none)."""
    plugins = [(n, p) for n, p in chain if n != "Send"]
    sends = [p["level"] for n, p in chain if n == "Send"]
    return plugins, float(sends[0]) if sends else 0.0


def draw_mix_chain(rng: np.random.Generator) -> dict:
    """The mix bus: compression (or none), a gain in dB, and the noise's signal-to-noise ratio in dB."""
    u = rng.random()
    compressor = _round({"threshold_db": float(rng.uniform(-24.0, -8.0)), "ratio": float(rng.uniform(1.5, 4.0)),
                         "attack_ms": _log_uniform(rng, 5.0, 30.0), "release_ms": _log_uniform(rng, 80.0, 300.0)})
    return {"compressor": compressor if u < 0.5 else None, "gain_db": float(f"{rng.uniform(-12.0, 0.0):.4g}"),
            "snr_db": float(f"{rng.uniform(30.0, 70.0):.4g}")}


def _board(chain: list[tuple[str, dict]]):
    import pedalboard

    return pedalboard.Pedalboard([getattr(pedalboard, name)(**params) for name, params in chain])


def apply_chain(audio: np.ndarray, sample_rate: int, chain: list[tuple[str, dict]]) -> np.ndarray:
    """``audio`` (mono float32 ``(N,)``) through the plugins of ``chain``; returns float32 ``(N,)``."""
    if not chain or audio.size == 0:
        return audio.astype(np.float32, copy=False)
    board = _board(chain)
    out = board.process(np.ascontiguousarray(audio, dtype=np.float32)[None, :], float(sample_rate), reset=True)
    return np.ascontiguousarray(out[0, :audio.shape[0]], dtype=np.float32)


def apply_mix_chain(mix: np.ndarray, sample_rate: int, settings: dict, rng: np.random.Generator) -> np.ndarray:
    """The bus chain of ``settings`` on a mono float32 ``(N,)`` mix, then white noise from ``rng``.

    The noise's RMS is the mix's gated loudness minus ``snr_db``; the result keeps the mix's peak
    (the caller's limiter decided it), scaled by ``gain_db``.
    """
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    if peak <= 0:
        return mix
    chain = [("Compressor", settings["compressor"])] if settings["compressor"] else []
    out = apply_chain(mix, sample_rate, chain).astype(np.float64)
    noise_rms = gated_rms(out.astype(np.float32)) * 10 ** (-settings["snr_db"] / 20)
    out += rng.standard_normal(out.shape[0]) * noise_rms
    out *= peak * 10 ** (settings["gain_db"] / 20) / max(float(np.max(np.abs(out))), 1e-12)
    return out.astype(np.float32)
