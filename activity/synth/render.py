"""MIDI -> audio the way Slakh was made: every stem rendered on its own, levelled, summed, limited.

Rendering uses tinysoundfont with a General MIDI SoundFont (pretty_midi's ``TimGM6mb.sf2`` unless
another is given). Note events land on exact sample positions: the synthesizer is advanced in chunks
that end exactly at each event's sample, ``round(time * sample_rate)``.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ActivityError
from .arranger import song_seconds
from .effects import apply_chain
from .loudness import gated_rms

RENDER_RATE: int = 44_100
"""Slakh's mixes are 44.1 kHz; songs are rendered at this rate, clips are resampled from it."""

STEM_RMS: float = 0.05
"""Common loudness (gated RMS, linear) every stem is brought to before its random offset."""

STEM_OFFSET_DB: float = 3.0
"""Each stem's level is drawn uniformly within +-this many dB of :data:`STEM_RMS`."""

MIX_PEAK: float = 0.89
"""Largest absolute sample of a mix (-1 dBFS), leaving room for resampling overshoot below 1.0."""



def default_soundfont() -> Path:
    """pretty_midi's bundled General MIDI SoundFont, ``TimGM6mb.sf2``."""
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


def resolve_soundfont(soundfont: str | os.PathLike | None) -> Path:
    """The SoundFont to use; raises ActivityError naming ``--soundfont`` when it is not a file."""
    if soundfont is None:
        path = default_soundfont()
        if not path.is_file():
            raise ActivityError(f"pretty_midi's SoundFont {path} is missing; pass --soundfont PATH to an .sf2/.sf3 file")
        return path
    path = Path(soundfont).expanduser()
    if not path.is_file():
        raise ActivityError(f"--soundfont {path} does not exist (expected an .sf2 or .sf3 file)")
    return path.resolve()


@lru_cache(maxsize=8)
def _soundfont_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def soundfont_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(_soundfont_bytes(str(path))).hexdigest()


def check_soundfont(path: str | os.PathLike) -> None:
    """Load the SoundFont once and select a piano, so a bad file fails before any work starts."""
    _new_synth(Path(path), RENDER_RATE)


def _new_synth(path: Path, sample_rate: int):
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    try:
        sfid = synth.sfload(_soundfont_bytes(str(path)))
        synth.program_select(0, sfid, 0, 0)
    except Exception as exc:  # tinysoundfont raises its own exception types for unreadable files
        raise ActivityError(f"--soundfont {path} could not be loaded as a SoundFont: {exc}") from None
    return synth, sfid


def _select(synth, sfid: int, channel: int, program: int, is_drum: bool, soundfont: Path) -> None:
    if is_drum:
        # A SoundFont without the song's kit plays the standard kit (0) instead.
        kit = program if synth.sfpreset_name(sfid, 128, program) is not None else 0
        synth.program_select(channel, sfid, 128, kit, True)
        return
    try:
        synth.program_select(channel, sfid, 0, program)
    except Exception:
        raise ActivityError(f"--soundfont {soundfont} has no preset for General MIDI program {program} (bank 0)") from None


def song_num_samples(pm: "pretty_midi.PrettyMIDI", sample_rate: int) -> int:  # noqa: F821
    """Samples of the song's audio at ``sample_rate``: last event plus the release tail."""
    return int(round(song_seconds(pm) * sample_rate))


def render_instrument(synth, sfid: int, instrument: "pretty_midi.Instrument", num_samples: int,  # noqa: F821
                      sample_rate: int, soundfont: Path) -> np.ndarray:
    """One stem, mono float32 ``(num_samples,)``; each event starts exactly at its sample."""
    channel = 9 if instrument.is_drum else 0
    synth.sounds_off()
    _select(synth, sfid, channel, int(instrument.program), bool(instrument.is_drum), soundfont)
    events: list[tuple[int, int, int, int]] = []  # (sample, 0 = off / 1 = on, pitch, velocity)
    for note in instrument.notes:
        on, off = int(round(note.start * sample_rate)), int(round(note.end * sample_rate))
        if off <= on or note.velocity <= 0:
            continue
        events.append((on, 1, int(note.pitch), int(note.velocity)))
        events.append((off, 0, int(note.pitch), 0))
    events.sort()  # at one sample, note-offs come before note-ons so a repeated key restarts
    out = np.zeros(num_samples, dtype=np.float32)
    position = 0

    def advance(to: int) -> None:
        nonlocal position
        to = min(to, num_samples)
        if to > position:
            stereo = np.frombuffer(synth.generate(to - position), dtype=np.float32)
            # Interleaved L R L R ...; slicing is several times faster than reshape().mean().
            np.add(stereo[0::2], stereo[1::2], out=out[position:to])
            out[position:to] *= 0.5
            position = to

    for sample, kind, pitch, velocity in events:
        advance(sample)
        if kind:
            synth.noteon(channel, pitch, velocity)
        else:
            synth.noteoff(channel, pitch)
    advance(num_samples)
    synth.sounds_off()
    return out


def render_stems(pm: "pretty_midi.PrettyMIDI", sample_rate: int, soundfont: str | os.PathLike | None = None  # noqa: F821
                 ) -> list[np.ndarray]:
    """Every instrument of ``pm`` rendered alone: a list of mono float32 ``(N,)``, N = song length."""
    path = resolve_soundfont(soundfont)
    synth, sfid = _new_synth(path, sample_rate)
    num_samples = song_num_samples(pm, sample_rate)
    return [render_instrument(synth, sfid, inst, num_samples, sample_rate, path) for inst in pm.instruments]


def render_stems_with(pm: "pretty_midi.PrettyMIDI", sample_rate: int, fonts: list[Path],  # noqa: F821
                      choice: list[int]) -> list[np.ndarray]:
    """Instrument ``i`` of ``pm`` rendered alone with SoundFont ``fonts[choice[i]]``.

    Each font used gets its own synthesizer, new for this song and playing its stems in song order,
    so the result depends only on ``choice``. A synthesizer kept from song to song, even reset
    (``tsf_reset``), would not do: FluidR3's filtered presets leave filter state in reused voices, so
    a song would depend on the songs a worker rendered before it. The price is a load per song and
    font (FluidR3_GM 1.4 s, FluidR3Mono_GM 1.3 s decoding its Ogg samples, TimGM6mb 0.02 s). Returns mono float32 ``(N,)`` arrays, N = song length.
    """
    if len(choice) != len(pm.instruments):
        raise ValueError(f"{len(pm.instruments)} instruments but {len(choice)} font choices")
    num_samples = song_num_samples(pm, sample_rate)
    synths: dict[int, tuple] = {}
    stems = []
    for inst, k in zip(pm.instruments, choice):
        if k not in synths:
            synths[k] = _new_synth(Path(fonts[k]), sample_rate)
        synth, sfid = synths[k]
        stems.append(render_instrument(synth, sfid, inst, num_samples, sample_rate, Path(fonts[k])))
    return stems


def mix_stems(stems: list[np.ndarray], rng: np.random.Generator, sends: list[float] | None = None,
              reverb: dict | None = None, sample_rate: int = RENDER_RATE,
              contributions: list[np.ndarray] | None = None) -> np.ndarray:
    """Level every stem to :data:`STEM_RMS` +- a few dB, sum, and scale so the peak is <= MIX_PEAK.

    ``stems`` are mono ``(N,)`` arrays of one length; returns the mono float32 ``(N,)`` mix. With
    ``sends`` (one linear level per stem) and ``reverb`` (pedalboard ``Reverb`` parameters), the
    levelled stems also feed a send bus through one reverb (fully wet), added to the mix: one
    reverb per song, as in a mixing desk, instead of one per stem.

    ``contributions``, when a list, receives each stem's share of the returned mix, float32 ``(N,)``
    in stem order: the levelled stem plus its own reverb return, times the song's gain. They sum to
    the mix up to rounding (the reverb is linear), which is what training-time remixing needs; the
    random draws, hence the mix, are the same with or without them.
    """
    if not stems:
        raise ValueError("a song needs at least one stem")
    mix = np.zeros_like(stems[0], dtype=np.float64)
    bus = np.zeros_like(mix) if sends is not None else None
    shares: list[np.ndarray | None] = []
    for i, stem in enumerate(stems):
        offset_db = float(rng.uniform(-STEM_OFFSET_DB, STEM_OFFSET_DB))
        rms = gated_rms(stem)
        levelled = None
        if rms > 0:
            levelled = stem.astype(np.float64) * (STEM_RMS * 10 ** (offset_db / 20) / rms)
            mix += levelled
            if bus is not None and sends[i] > 0:
                bus += levelled * sends[i]
        shares.append(levelled)
    if bus is not None and reverb is not None:

        mix += apply_chain(bus.astype(np.float32), sample_rate, [("Reverb", reverb)])
        if contributions is not None:
            for i, levelled in enumerate(shares):
                if levelled is not None and sends[i] > 0:
                    shares[i] = levelled + apply_chain((levelled * sends[i]).astype(np.float32), sample_rate,
                                                       [("Reverb", reverb)])
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    gain = 1.0
    if peak > 0:
        # One gain for the whole song puts its peak between -7 and -1 dBFS: never clipped, and
        # songs differ in level as real mixes do.
        gain = float(rng.uniform(0.5, 1.0)) * MIX_PEAK / peak
        mix *= gain
    if contributions is not None:
        contributions.extend(np.zeros(mix.shape[0], dtype=np.float32) if share is None else (share * gain).astype(np.float32)
                             for share in shares)
    return mix.astype(np.float32)


def render_song(pm: "pretty_midi.PrettyMIDI", sample_rate: int = RENDER_RATE,  # noqa: F821
                soundfont: str | os.PathLike | None = None, rng: np.random.Generator | None = None,
                contributions: list[np.ndarray] | None = None) -> np.ndarray:
    """The song's mix, mono float32 ``(N,)`` at ``sample_rate`` with ``N = song_num_samples``.

    ``rng`` draws the stem levels and the mix gain (a fixed generator when ``None``);
    ``contributions`` as in :func:`mix_stems`.
    """
    stems = render_stems(pm, sample_rate, soundfont)
    return mix_stems(stems, rng if rng is not None else np.random.default_rng(0), sample_rate=sample_rate,
                     contributions=contributions)
