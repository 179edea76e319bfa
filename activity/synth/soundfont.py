"""Which recorded samples each preset of a SoundFont plays: the SF2 "pdta" hydra, read without audio.

A General MIDI SoundFont small enough to ship (pretty_midi's 6 MB ``TimGM6mb.sf2``) builds many
presets from another preset's recordings: in it, Melodic Tom (117) plays the drum kit's tom sample
and several synth pads play the Synth Strings samples. Where two programs of different classes
share samples, only their envelopes and filters tell them apart in the rendered audio. This module
reads that structure so experiments can say which labels the synthetic set makes hard to hear.

Only the preset -> instrument -> sample links are read (generators 41 ``instrument`` and 53
``sampleID``); key and velocity ranges are ignored, so a preset's samples are all it can ever play.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ActivityError

DRUM_BANK: int = 128
"""The bank in which General MIDI SoundFonts keep their drum kits."""

_GEN_INSTRUMENT = 41
_GEN_SAMPLE_ID = 53
# Record layouts of the hydra's sub-chunks (SoundFont 2.04, section 7).
_RECORDS = {
    "phdr": "<20sHHHIII",  # name, program, bank, first zone, library, genre, morphology
    "pbag": "<HH",  # first generator, first modulator
    "pgen": "<HH",  # generator, amount
    "inst": "<20sH",  # name, first zone
    "ibag": "<HH",
    "igen": "<HH",
    "shdr": "<20s5IBbHH",  # name, start, end, loop start, loop end, rate, pitch, correction, link, type
}


@dataclass(frozen=True)
class Preset:
    """One preset: its bank and 0-based program, its name, and the indices of the samples it plays."""

    bank: int
    program: int
    name: str
    samples: frozenset[int]


@dataclass(frozen=True)
class SoundFontLayout:
    """Every preset of a SoundFont, keyed by ``(bank, program)``, and every sample's name by index."""

    presets: dict[tuple[int, int], Preset]
    sample_names: tuple[str, ...]

    def shared_samples(self, a: tuple[int, int], b: tuple[int, int]) -> list[str]:
        """Names of the samples both presets play, sorted; empty when they share none."""
        common = self.presets[a].samples & self.presets[b].samples
        return sorted({self.sample_names[i] for i in common})
_KNOWN_IDS = frozenset({b"LIST", *(name.encode() for name in _RECORDS), b"pmod", b"imod"})


def _chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """RIFF sub-chunks in ``data[start:end]``: (four-byte id, offset of the body, body size)."""
    offset = start
    while offset + 8 <= end:
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        yield chunk_id, offset + 8, size
        padded = offset + 8 + size + (size & 1)  # bodies are padded to even length...
        # ...except in some .sf3 files (Debian's FluidR3Mono_GM.sf3): take the unpadded end when
        # only it starts a chunk this reader knows.
        if size & 1 and data[padded:padded + 4] not in _KNOWN_IDS and data[padded - 1:padded + 3] in _KNOWN_IDS:
            padded -= 1
        offset = padded


def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def read_layout(path: str | os.PathLike) -> SoundFontLayout:
    """Read which samples every preset of the SoundFont at ``path`` (.sf2 or .sf3) plays.

    Raises:
        ActivityError: the file is missing or is not a SoundFont with a complete preset hydra.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ActivityError(f"SoundFont {path} could not be read: {exc.strerror or exc}") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise ActivityError(f"{path} is not a SoundFont: it does not start with a RIFF 'sfbk' header")
    hydra: dict[str, bytes] = {}
    for chunk_id, body, size in _chunks(data, 12, len(data)):
        if chunk_id == b"LIST" and data[body:body + 4] == b"pdta":
            for sub_id, sub_body, sub_size in _chunks(data, body + 4, body + size):
                hydra[sub_id.decode("latin-1")] = data[sub_body:sub_body + sub_size]
    missing = [name for name in _RECORDS if name not in hydra]
    if missing:
        raise ActivityError(f"SoundFont {path} has no {', '.join(missing)} chunk in its preset data (pdta)")
    tables: dict[str, list[tuple]] = {}
    for name, layout in _RECORDS.items():
        size = struct.calcsize(layout)
        body = hydra[name]
        terminated = name in ("phdr", "inst", "shdr")  # these end with a terminator record
        if len(body) % size or (terminated and len(body) < 2 * size):
            raise ActivityError(f"SoundFont {path}: its {name} chunk ({len(body)} bytes) is not whole {size}-byte records")
        tables[name] = [struct.unpack_from(layout, body, i) for i in range(0, len(body), size)]
    try:
        return _link(tables)
    except IndexError:
        raise ActivityError(f"SoundFont {path}: a preset, zone or generator points past the end of its table") from None


def _zone_generators(bags: list[tuple], generators: list[tuple], first_zone: int, end_zone: int) -> Iterator[tuple[int, int]]:
    for zone in range(first_zone, end_zone):
        yield from generators[bags[zone][0]:bags[zone + 1][0]]


def _link(tables: dict[str, list[tuple]]) -> SoundFontLayout:
    instruments, samples = tables["inst"], tables["shdr"]
    # The last record of phdr, inst and shdr is a terminator (EOP, EOI, EOS), not an entry.
    instrument_samples = [
        frozenset(amount for op, amount in _zone_generators(tables["ibag"], tables["igen"], inst[1], instruments[i + 1][1])
                  if op == _GEN_SAMPLE_ID)
        for i, inst in enumerate(instruments[:-1])
    ]
    if any(index >= len(samples) - 1 for played in instrument_samples for index in played):
        raise IndexError("sample index out of range")
    headers = tables["phdr"]
    presets: dict[tuple[int, int], Preset] = {}
    for i, (name, program, bank, first_zone, *_) in enumerate(headers[:-1]):
        played: set[int] = set()
        for op, amount in _zone_generators(tables["pbag"], tables["pgen"], first_zone, headers[i + 1][3]):
            if op == _GEN_INSTRUMENT:
                played |= instrument_samples[amount]
        presets[(bank, program)] = Preset(bank, program, _name(name), frozenset(played))
    return SoundFontLayout(presets, tuple(_name(s[0]) for s in samples[:-1]))


def preset_class(key: tuple[int, int]) -> int | None:
    """Course class of the preset ``(bank, program)``: bank 0 by its General MIDI program; drum kits
    (bank :data:`DRUM_BANK`) and every other bank belong to no class (``None``)."""
    from ..taxonomy import class_of

    bank, program = key
    return class_of(program) if bank == 0 else None


def cross_class_sharing(layout: SoundFontLayout) -> dict[int, list[tuple[int, int]]]:
    """For every General MIDI program of a class, the presets of another class that play a sample of it.

    "Another class" includes no class at all: drum kits (bank :data:`DRUM_BANK`) and programs 109
    and 111, which sound in songs but are never a label. Returns program -> sorted ``(bank, program)``
    keys of those presets; programs missing from bank 0, or sharing nothing, map to an empty list.
    """
    shared: dict[int, list[tuple[int, int]]] = {}
    for program in range(128):
        key = (0, program)
        cls = preset_class(key)
        if cls is None:
            continue
        if key not in layout.presets:
            shared[program] = []
            continue
        mine = layout.presets[key].samples
        shared[program] = sorted(other for other, preset in layout.presets.items()
                                 if other != key and preset_class(other) != cls and preset.samples & mine)
    return shared
