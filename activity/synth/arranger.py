"""Procedural songs as General MIDI: tempo, key, chords, sections, and parts that enter and leave.

:func:`arrange_song` draws one song from a ``numpy`` generator and returns a ``pretty_midi.PrettyMIDI``
whose instruments are the stems Slakh would render: drums (always, never a label), bass, piano and
guitar comping, organ, string pads and lines, chromatic percussion, and lead/counter melodies on wind,
synth and voice programs. Part inclusion and section probabilities are tuned so that the share of 5 s
clips positive for each class is close to the course's test split (:data:`TARGET_CLIP_SHARES`).

Every note is playable: velocity 30-127, length at least :data:`MIN_NOTE_S`, and a pitch inside the
program's natural range (:func:`program_range`), so a labelled note always sounds when rendered.
Arrangement is done in beats and converted to seconds at the end; the song's audio lasts until
``end_time + TAIL_S`` so release tails are not cut (:func:`song_seconds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..constants import CLASSES, CLIP_SECONDS, NUM_CLASSES
from ..taxonomy import BASS, GUITAR, ORGAN, PERCUSSION, PIANO, STRINGS, SYNTH, VOICE, WIND, programs_of

TARGET_CLIP_SHARES: dict[str, float] = {
    "Bass": 0.92,
    "Guitar": 0.86,
    "Piano": 0.84,
    "Strings": 0.55,
    "Wind Instruments": 0.40,
    "Synth": 0.29,
    "Voice": 0.22,
    "Organ": 0.21,
    "Percussion": 0.11,
}
"""Share of the course's real test clips on for each class; the synthetic songs aim at these."""

TAIL_S: float = 1.0
"""Seconds of audio after the last note-off, so the release of the final notes is heard."""

MIN_NOTE_S: float = 0.08
"""Shortest note written, in seconds: every instrument of a GM SoundFont is audible by then."""

MIN_VELOCITY: int = 30

# Section kinds of the song form, in the order a song may use them.
INTRO, VERSE, CHORUS, BRIDGE, OUTRO = "intro", "verse", "chorus", "bridge", "outro"

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)

# Scale-degree progressions (0 = tonic), one chord per bar or per two bars.
MAJOR_PROGRESSIONS = (
    (0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (1, 4, 0, 0),
    (0, 3, 0, 4), (0, 2, 3, 4), (3, 4, 2, 5), (0, 0, 3, 4), (0, 5, 1, 4),
)
MINOR_PROGRESSIONS = (
    (0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 5, 3, 4), (0, 3, 6, 2), (5, 6, 0, 0), (0, 4, 5, 6),
)

# Natural playing range (lowest, highest MIDI pitch) of every General MIDI program, 0-based. The
# ranges are those of the real instruments, trimmed where TimGM6mb has no sample (checked by tests).
_RANGE_ROWS: tuple[tuple[int, int, int, int], ...] = (
    # first program, last program, low pitch, high pitch
    (0, 7, 28, 100),  # pianos, harpsichord, clavinet
    (8, 8, 60, 102), (9, 9, 72, 105), (10, 10, 60, 96), (11, 11, 53, 89),
    (12, 12, 45, 96), (13, 13, 65, 105), (14, 14, 60, 77), (15, 15, 48, 84),
    (16, 20, 36, 96), (21, 21, 53, 89), (22, 22, 60, 84), (23, 23, 48, 84),
    (24, 30, 40, 84), (31, 31, 52, 88),
    (32, 39, 28, 60),
    (40, 40, 55, 100), (41, 41, 48, 88), (42, 42, 36, 76), (43, 43, 28, 60),
    (44, 45, 36, 96), (46, 46, 36, 96), (47, 47, 40, 55), (48, 51, 36, 96),
    (52, 54, 48, 79), (55, 55, 48, 84),
    (56, 56, 54, 82), (57, 57, 40, 72), (58, 58, 28, 58), (59, 59, 54, 82), (60, 60, 41, 77),
    (61, 61, 40, 80), (62, 63, 36, 84), (64, 64, 56, 87), (65, 65, 49, 80), (66, 66, 44, 75),
    (67, 67, 36, 68), (68, 68, 58, 91), (69, 69, 52, 81), (70, 70, 34, 72), (71, 71, 50, 91),
    (72, 72, 74, 102), (73, 76, 60, 96), (77, 77, 55, 84), (78, 78, 60, 79), (79, 79, 60, 84),
    (80, 100, 36, 96), (101, 101, 36, 90), (102, 103, 36, 96),
    (104, 104, 48, 77), (105, 105, 48, 84), (106, 106, 50, 79), (107, 107, 55, 84),
    (108, 108, 60, 84), (109, 109, 55, 79), (110, 110, 55, 96), (111, 111, 60, 84),
    (112, 112, 72, 96), (113, 113, 60, 84), (114, 114, 52, 84), (115, 115, 60, 84),
    (116, 116, 36, 60), (117, 118, 40, 70), (119, 119, 48, 72),
    (120, 120, 48, 72), (121, 121, 60, 72), (122, 122, 48, 72), (123, 124, 60, 84), (125, 127, 48, 72),
)


def _range_table() -> tuple[tuple[int, int], ...]:
    table: list[tuple[int, int] | None] = [None] * 128
    for first, last, low, high in _RANGE_ROWS:
        for program in range(first, last + 1):
            assert table[program] is None, f"program {program} has two ranges"
            table[program] = (low, high)
    assert all(r is not None for r in table), "every program needs a range"
    return tuple(table)  # type: ignore[arg-type]


PROGRAM_RANGES: tuple[tuple[int, int], ...] = _range_table()


def program_range(program: int) -> tuple[int, int]:
    """Lowest and highest MIDI pitch (inclusive) the arranger writes for a 0-based GM program."""
    return PROGRAM_RANGES[program]


# Where a kit's instruments sit in the GM drum map.
KICK, SIDESTICK, SNARE, CLAP, HAT_CLOSED, HAT_PEDAL, HAT_OPEN, CRASH, RIDE = 36, 37, 38, 39, 42, 44, 46, 49, 51
TOMS = (41, 43, 45, 47, 48, 50)
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)
"""GM2 kit numbers (bank 128) a song's drums may use; the renderer falls back to kit 0 if missing."""


@dataclass
class Section:
    kind: str
    start_bar: int
    bars: int


@dataclass
class Song:
    """The skeleton every part is written against; times in beats until :func:`_to_midi`."""

    tempo: float
    beats_per_bar: int
    key: int
    minor: bool
    sections: list[Section]
    chords: list[tuple[int, ...]]  # per bar: pitch classes, root first
    scale: tuple[int, ...]  # pitch classes of the key

    @property
    def num_bars(self) -> int:
        return len(self.chords)

    @property
    def seconds_per_beat(self) -> float:
        return 60.0 / self.tempo


@dataclass
class Part:
    name: str
    program: int
    is_drum: bool = False
    # (start beat, length in beats, pitch, velocity)
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)


# Probability that a part of each role plays in a section of each kind.
SECTION_PROBS: dict[str, dict[str, float]] = {
    "bass": {INTRO: 0.45, VERSE: 0.97, CHORUS: 1.0, BRIDGE: 0.85, OUTRO: 0.7},
    "comp": {INTRO: 0.6, VERSE: 0.88, CHORUS: 0.95, BRIDGE: 0.75, OUTRO: 0.7},
    "pad": {INTRO: 0.5, VERSE: 0.55, CHORUS: 0.85, BRIDGE: 0.7, OUTRO: 0.5},
    "line": {INTRO: 0.2, VERSE: 0.45, CHORUS: 0.8, BRIDGE: 0.6, OUTRO: 0.2},
    "lead": {INTRO: 0.15, VERSE: 0.85, CHORUS: 0.9, BRIDGE: 0.5, OUTRO: 0.2},
    "counter": {INTRO: 0.1, VERSE: 0.35, CHORUS: 0.8, BRIDGE: 0.5, OUTRO: 0.15},
    "bells": {INTRO: 0.5, VERSE: 0.45, CHORUS: 0.65, BRIDGE: 0.55, OUTRO: 0.5},
    "stabs": {INTRO: 0.2, VERSE: 0.4, CHORUS: 0.9, BRIDGE: 0.4, OUTRO: 0.2},
    "drums": {INTRO: 0.5, VERSE: 1.0, CHORUS: 1.0, BRIDGE: 0.8, OUTRO: 0.6},
}

SECTION_VELOCITY = {INTRO: -10, VERSE: 0, CHORUS: 10, BRIDGE: -4, OUTRO: -12}


def song_seconds(pm: "pretty_midi.PrettyMIDI") -> float:  # noqa: F821
    """Length of the song's audio in seconds: the last event plus :data:`TAIL_S`."""
    return float(pm.get_end_time()) + TAIL_S


def song_num_clips(pm: "pretty_midi.PrettyMIDI") -> int:  # noqa: F821
    """Number of whole 5 s clips in the song's audio (a last partial segment is dropped)."""
    return int(math.floor(round(song_seconds(pm) / CLIP_SECONDS, 6)))


def clip_labels(pm: "pretty_midi.PrettyMIDI") -> np.ndarray:  # noqa: F821
    """Labels of every whole 5 s clip of a song, ``(num_clips, 9)`` uint8, via ``window_labels``."""
    from ..midi import window_labels

    count = song_num_clips(pm)
    labels = np.zeros((count, NUM_CLASSES), dtype=np.uint8)
    for k in range(count):
        labels[k] = window_labels(pm, k * CLIP_SECONDS, CLIP_SECONDS)
    return labels


# ----------------------------------------------------------------------------------------- song form


def _plan_sections(rng: np.random.Generator, num_bars: int) -> list[Section]:
    """Intro, then verse/chorus/bridge bodies, then outro, filling exactly ``num_bars`` bars."""
    body_len = 4 if num_bars < 10 else int(rng.choice([4, 8, 8]))
    intro = min(int(rng.choice([1, 2, 2, 4])), max(num_bars // 6, 1))
    outro = min(int(rng.choice([1, 2, 2, 4])), max(num_bars // 6, 1))
    order = [VERSE, CHORUS, VERSE, CHORUS, BRIDGE, CHORUS, CHORUS, VERSE, CHORUS]
    if rng.random() < 0.3:  # some songs open on the chorus
        order = [CHORUS, VERSE, CHORUS, BRIDGE, VERSE, CHORUS, CHORUS]
    sections = [Section(INTRO, 0, intro)]
    bar = intro
    i = 0
    while bar < num_bars - outro:
        length = min(body_len, num_bars - outro - bar)
        sections.append(Section(order[i % len(order)], bar, length))
        bar += length
        i += 1
    sections.append(Section(OUTRO, bar, num_bars - bar))
    return [s for s in sections if s.bars > 0]


def _chord(scale: tuple[int, ...], key: int, degree: int, seventh: bool) -> tuple[int, ...]:
    """Pitch classes of the diatonic triad (or seventh chord) on ``degree``, root first."""
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    return tuple((key + scale[(degree + s) % 7]) % 12 for s in steps)


def _plan_chords(rng: np.random.Generator, song_key: int, minor: bool, sections: list[Section]) -> list[tuple[int, ...]]:
    scale = MINOR if minor else MAJOR
    pool = MINOR_PROGRESSIONS if minor else MAJOR_PROGRESSIONS
    by_kind = {kind: pool[int(rng.integers(len(pool)))] for kind in (INTRO, VERSE, CHORUS, BRIDGE, OUTRO)}
    by_kind[INTRO] = by_kind[VERSE] if rng.random() < 0.5 else by_kind[CHORUS]
    bars_per_chord = 2 if rng.random() < 0.3 else 1
    sevenths = rng.random() < 0.3
    chords: list[tuple[int, ...]] = []
    for section in sections:
        progression = by_kind[section.kind]
        for b in range(section.bars):
            degree = progression[(b // bars_per_chord) % len(progression)]
            if section.kind == OUTRO and b == section.bars - 1:
                degree = 0  # end on the tonic
            chords.append(_chord(scale, song_key, degree, sevenths and rng.random() < 0.6))
    return chords


def _active_sections(rng: np.random.Generator, song: Song, role: str) -> list[bool]:
    """Which sections a part of ``role`` plays in; at least one, preferring a chorus."""
    probs = SECTION_PROBS[role]
    active = [bool(rng.random() < probs[s.kind]) for s in song.sections]
    if not any(active):
        choruses = [i for i, s in enumerate(song.sections) if s.kind == CHORUS] or list(range(len(song.sections)))
        active[int(rng.choice(choruses))] = True
    return active


# ------------------------------------------------------------------------------------------- helpers


def _register(rng: np.random.Generator, program: int, low: int, high: int, width: int = 19) -> tuple[int, int]:
    """A ``width``-semitone window inside both the role's [low, high] and the program's range."""
    p_low, p_high = program_range(program)
    lo, hi = max(low, p_low), min(high, p_high)
    if hi - lo < 12:  # the role's wish does not fit this instrument: use the instrument's own middle
        lo, hi = p_low, p_high
    if hi - lo <= width:
        return lo, hi
    start = int(rng.integers(lo, hi - width + 1))
    return start, start + width


def _pitches_of(pcs: tuple[int, ...] | list[int], low: int, high: int) -> list[int]:
    return [p for p in range(low, high + 1) if p % 12 in pcs]


def _voicing(chord: tuple[int, ...], low: int, high: int, center: int, count: int) -> list[int]:
    """``count`` chord tones near ``center`` inside [low, high], with every chord pitch class first."""
    candidates = sorted(_pitches_of(chord, low, high), key=lambda p: (abs(p - center), p))
    chosen: list[int] = []
    for pc in chord:  # one of each pitch class, nearest to the centre
        for p in candidates:
            if p % 12 == pc and p not in chosen:
                chosen.append(p)
                break
        if len(chosen) >= count:
            break
    for p in candidates:
        if len(chosen) >= count:
            break
        if p not in chosen:
            chosen.append(p)
    return sorted(chosen)


def _velocity(rng: np.random.Generator, base: int, section: Section, accent: int = 0) -> int:
    value = base + SECTION_VELOCITY[section.kind] + accent + int(rng.integers(-8, 9))
    return int(min(max(value, MIN_VELOCITY + 5), 127))


def _bars_of(song: Song, active: list[bool]):
    """Yield (section, bar index, bar within section) for the bars of the active sections."""
    for section, on in zip(song.sections, active):
        if on:
            for b in range(section.bars):
                yield section, section.start_bar + b, b


# -------------------------------------------------------------------------------------------- parts


def _bass_part(rng: np.random.Generator, song: Song, program: int) -> Part:
    part = Part(f"bass ({program})", program)
    low, high = _register(rng, program, 28, 55, width=19)
    style = rng.choice(["whole", "halves", "quarters", "eighths", "walk", "syncopated"])
    base = int(rng.integers(70, 111))
    active = _active_sections(rng, song, "bass")
    bpb = song.beats_per_bar
    for section, bar, _ in _bars_of(song, active):
        chord = song.chords[bar]
        roots = _pitches_of((chord[0],), low, high) or [low]
        root = roots[0]
        fifth_choices = _pitches_of((chord[2 % len(chord)],), root, min(root + 12, high)) or [root]
        fifth = fifth_choices[0]
        octave = root + 12 if root + 12 <= high else root
        t0 = bar * bpb
        if style == "whole":
            events = [(0.0, bpb * 0.95, root)]
        elif style == "halves":
            events = [(0.0, bpb / 2 * 0.9, root), (bpb / 2, bpb / 2 * 0.9, fifth)]
        elif style == "quarters":
            seq = [root, root, fifth, octave]
            events = [(float(b), 0.85, seq[b % 4]) for b in range(bpb)]
        elif style == "eighths":
            events = [(b / 2, 0.42, root if b % 8 != 6 else fifth) for b in range(bpb * 2)]
        elif style == "walk":
            scale_tones = _pitches_of(song.scale, root, min(root + 12, high))
            seq = [root] + [scale_tones[int(rng.integers(len(scale_tones)))] for _ in range(bpb - 1)]
            events = [(float(b), 0.9, p) for b, p in enumerate(seq)]
        else:
            events = [(0.0, 1.4, root), (1.5, 0.45, root), (2.5, 0.9, fifth), (min(3.5, bpb - 0.5), 0.45, octave)]
            events = [e for e in events if e[0] < bpb]
        for start, length, pitch in events:
            part.notes.append((t0 + start, length, pitch, _velocity(rng, base, section, 8 if start == 0 else 0)))
    return part


def _comp_part(rng: np.random.Generator, song: Song, program: int, guitar: bool, role: str = "comp") -> Part:
    """Chords: block, pulse, syncopated, arpeggio or (guitars) strummed."""
    part = Part(f"{role} ({program})", program)
    low, high = _register(rng, program, 45 if guitar else 48, 84, width=24)
    center = (low + high) // 2
    styles = ["block", "pulse", "syncopated", "arpeggio"] + (["strum", "strum"] if guitar else [])
    style = rng.choice(styles)
    voices = int(rng.integers(3, 6 if guitar else 5))
    base = int(rng.integers(55, 100))
    active = _active_sections(rng, song, role)
    bpb = song.beats_per_bar
    arp_step = float(rng.choice([0.5, 0.25, 1.0]))
    for section, bar, _ in _bars_of(song, active):
        chord = song.chords[bar]
        voicing = _voicing(chord, low, high, center, voices)
        t0 = bar * bpb
        if style == "block":
            hits = [(0.0, bpb * 0.96)]
        elif style == "pulse":
            step = 1.0 if rng.random() < 0.6 else 0.5
            hits = [(i * step, step * 0.8) for i in range(int(bpb / step))]
        elif style == "syncopated":
            hits = [(s, d) for s, d in ((0.0, 1.4), (1.5, 0.9), (2.5, 0.4), (3.0, 0.9)) if s < bpb]
        elif style == "strum":
            hits = [(s, d) for s, d in ((0.0, 0.9), (1.0, 0.4), (1.5, 0.9), (2.5, 0.4), (3.0, 0.9)) if s < bpb]
        else:  # arpeggio
            order = voicing + voicing[-2:0:-1]
            for i in range(int(bpb / arp_step)):
                pitch = order[i % len(order)]
                part.notes.append((t0 + i * arp_step, arp_step * 0.95, pitch, _velocity(rng, base, section)))
            continue
        for start, length in hits:
            accent = 8 if start == 0 else 0
            for v, pitch in enumerate(voicing):
                # A strum sounds the strings one after another, about 12 ms apart at 120 bpm.
                offset = v * 0.025 if style == "strum" else 0.0
                part.notes.append((t0 + start + offset, max(length - offset, 0.2), pitch, _velocity(rng, base, section, accent)))
    return part


def _pad_part(rng: np.random.Generator, song: Song, program: int, role: str = "pad") -> Part:
    """Sustained chords, re-voiced each chord change."""
    part = Part(f"{role} ({program})", program)
    low, high = _register(rng, program, 48, 84, width=24)
    center = (low + high) // 2
    voices = int(rng.integers(2, 5))
    base = int(rng.integers(50, 95))
    active = _active_sections(rng, song, role)
    bpb = song.beats_per_bar
    for section, bar, _ in _bars_of(song, active):
        t0 = bar * bpb
        for pitch in _voicing(song.chords[bar], low, high, center, voices):
            part.notes.append((t0, bpb * 0.98, pitch, _velocity(rng, base, section)))
    return part


def _melody_part(rng: np.random.Generator, song: Song, program: int, role: str) -> Part:
    """A phrase-based melody: a motif per section kind, repeated over the chords, with rests.

    ``role`` is ``lead`` (dense, central register), ``counter`` or ``line`` (slower, lower).
    """
    part = Part(f"{role} ({program})", program)
    if role == "lead":
        low, high = _register(rng, program, 60, 88, width=16)
        density = float(rng.choice([0.5, 1.0, 1.0, 0.5, 0.25]))
    else:
        low, high = _register(rng, program, 48, 79, width=14)
        density = float(rng.choice([1.0, 2.0, 2.0, 0.5]))
    base = int(rng.integers(65, 115))
    active = _active_sections(rng, song, role)
    bpb = song.beats_per_bar
    rest_prob = float(rng.uniform(0.1, 0.4))
    motifs: dict[str, list[tuple[float, float]]] = {}
    for kind in (INTRO, VERSE, CHORUS, BRIDGE, OUTRO):
        rhythm: list[tuple[float, float]] = []
        t = 0.0
        while t < 2 * bpb - 1e-9:  # a two-bar motif
            length = density * float(rng.choice([1, 1, 2, 0.5, 1.5]))
            length = min(length, 2 * bpb - t)
            if rng.random() > 0.15 or not rhythm:
                rhythm.append((t, length))
            t += length
        motifs[kind] = rhythm
    scale_pitches = _pitches_of(song.scale, low, high)
    pitch = scale_pitches[len(scale_pitches) // 2]
    for section, on in zip(song.sections, active):
        if not on:
            continue
        for phrase_bar in range(0, section.bars, 2):
            if rng.random() < rest_prob:
                continue  # a breath between phrases: activity stops inside the section
            for start, length in motifs[section.kind]:
                beat = (section.start_bar + phrase_bar) * bpb + start
                bar = int(beat // bpb)
                if bar >= section.start_bar + section.bars:
                    break
                chord = song.chords[bar]
                on_beat = abs(start - round(start)) < 1e-9
                steps = int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
                idx = int(np.clip(scale_pitches.index(pitch) + steps, 0, len(scale_pitches) - 1))
                pitch = scale_pitches[idx]
                if on_beat:  # strong beats land on the nearest chord tone
                    tones = _pitches_of(chord, low, high)
                    if tones:
                        pitch = min(tones, key=lambda p: abs(p - pitch))
                end_beat = min(beat + length * 0.92, (section.start_bar + section.bars) * bpb)
                part.notes.append((beat, end_beat - beat, pitch, _velocity(rng, base, section, 6 if on_beat else 0)))
    return part


def _bells_part(rng: np.random.Generator, song: Song, program: int) -> Part:
    """Chromatic percussion: sparse chord-tone figures high up, or one accent per bar."""
    part = Part(f"bells ({program})", program)
    low, high = _register(rng, program, 60, 96, width=19)
    base = int(rng.integers(60, 105))
    sparse = rng.random() < 0.4
    keep = float(rng.uniform(0.45, 0.85))
    active = _active_sections(rng, song, "bells")
    bpb = song.beats_per_bar
    for section, bar, _ in _bars_of(song, active):
        tones = _pitches_of(song.chords[bar], low, high) or [low]
        t0 = bar * bpb
        if sparse:
            part.notes.append((t0, bpb * 0.9, tones[int(rng.integers(len(tones)))], _velocity(rng, base, section, 6)))
            continue
        for i in range(bpb * 2):
            if i == 0 or rng.random() < keep:
                part.notes.append((t0 + i * 0.5, 0.45, tones[int(rng.integers(len(tones)))], _velocity(rng, base, section)))
    return part


def _stabs_part(rng: np.random.Generator, song: Song, program: int) -> Part:
    """Brass-section style chord hits on off-beats."""
    part = Part(f"stabs ({program})", program)
    low, high = _register(rng, program, 52, 84, width=19)
    center = (low + high) // 2
    base = int(rng.integers(70, 115))
    active = _active_sections(rng, song, "stabs")
    bpb = song.beats_per_bar
    patterns = ([(0.0, 0.5), (1.5, 0.4)], [(1.0, 0.4), (3.0, 0.4)], [(0.5, 0.3), (2.5, 0.8)])
    pattern = [(s, d) for s, d in patterns[int(rng.integers(len(patterns)))] if s < bpb]
    for section, bar, _ in _bars_of(song, active):
        for pitch in _voicing(song.chords[bar], low, high, center, 3):
            for start, length in pattern:
                part.notes.append((bar * bpb + start, length, pitch, _velocity(rng, base, section, 4)))
    return part


def _drum_part(rng: np.random.Generator, song: Song) -> Part:
    kit = int(rng.choice(DRUM_KITS))
    part = Part("drums", kit, is_drum=True)
    base = int(rng.integers(75, 115))
    active = _active_sections(rng, song, "drums")
    bpb = song.beats_per_bar
    groove = rng.choice(["rock", "four", "half", "funk"])
    hat_step = 0.5 if rng.random() < 0.75 else 0.25

    def hit(beat: float, pitch: int, section: Section, accent: int = 0) -> None:
        part.notes.append((beat, 0.12, pitch, _velocity(rng, base, section, accent)))

    previous_on = False
    for index, (section, on) in enumerate(zip(song.sections, active)):
        if not on:
            previous_on = False
            continue
        cymbal = RIDE if section.kind == BRIDGE else (HAT_OPEN if section.kind == CHORUS and rng.random() < 0.3 else HAT_CLOSED)
        for b in range(section.bars):
            t0 = (section.start_bar + b) * bpb
            if b == 0 and (section.kind in (CHORUS, OUTRO) or not previous_on):
                hit(t0, CRASH, section, 10)
            if section.kind == INTRO and rng.random() < 0.5:
                for i in range(bpb):
                    hit(t0 + i, HAT_PEDAL if i % 2 else SIDESTICK, section, -10)
                continue
            for i in range(int(bpb / hat_step)):
                hit(t0 + i * hat_step, cymbal, section, 6 if i * hat_step == int(i * hat_step) else -6)
            if bpb == 3:
                hit(t0, KICK, section, 10)
                hit(t0 + 1, SNARE, section)
                hit(t0 + 2, SNARE, section)
                continue
            if groove == "four":
                kicks = [0, 1, 2, 3]
            elif groove == "half":
                kicks = [0, 2.5]
            elif groove == "funk":
                kicks = [0, 0.75, 2.5]
            else:
                kicks = [0, 2] + ([2.5] if rng.random() < 0.3 else [])
            for k in kicks:
                hit(t0 + k, KICK, section, 10)
            snares = [2] if groove == "half" else [1, 3]
            for s in snares:
                hit(t0 + s, CLAP if groove == "four" and rng.random() < 0.5 else SNARE, section, 8)
            if b == section.bars - 1 and index < len(song.sections) - 1 and rng.random() < 0.7:
                for i in range(4):  # fill over the last beat
                    hit(t0 + bpb - 1 + i * 0.25, TOMS[int(rng.integers(len(TOMS)))], section, 4)
        previous_on = True
    return part


# ------------------------------------------------------------------------------------ orchestration


def _pick(rng: np.random.Generator, programs: list[int]) -> int:
    return int(programs[int(rng.integers(len(programs)))])


def _synth_programs(rng: np.random.Generator) -> list[int]:
    """Synth programs: mostly leads and pads (80-103), sometimes the sound effects (120-127)."""
    programs = programs_of(SYNTH)
    return [p for p in programs if p >= 120] if rng.random() < 0.08 else [p for p in programs if p < 120]


PART_DRAWS: tuple[str, ...] = (
    "bass", "piano", "guitar", "organ", "strings", "bells", "lead", "counter", "synth_pad", "voice_pad", "wind_stabs",
)
"""The song-level choices of :func:`_orchestrate` that a build balances across a split (see ``draws``)."""

PART_RATES: dict[str, float] = {"bass": 0.935, "piano": 0.89, "guitar": 0.92}
"""Share of songs in which bass, piano and guitar play (by default): tuned to the course's clip shares."""

ABSENCE_RATES: dict[str, float] = {"bass": 0.75, "piano": 0.6, "guitar": 0.7}
"""The same with ``activity.synth --absence``: each of the three is missing from 25-40% of songs, so a
model sees whole songs without it instead of 6-11%. A chosen setting, not a measured one: in real
pop and rock, songs without piano are common and songs without bass or guitar are not rare."""

LEAD_CLASSES = {WIND: 0.46, VOICE: 0.23, SYNTH: 0.30}
COUNTER_CLASSES = {WIND: 0.5, SYNTH: 0.3, VOICE: 0.2}


def _melodic_class(u: float, weights: dict[int, float]) -> int:
    """The class whose slice of the cumulative ``weights`` holds ``u`` in [0, 1)."""
    classes = list(weights)
    edges = np.cumsum([weights[c] for c in classes]) / sum(weights.values())
    return int(classes[min(int(np.searchsorted(edges, u, side="right")), len(classes) - 1)])


def _class_programs(rng: np.random.Generator, cls: int) -> list[int]:
    return _synth_programs(rng) if cls == SYNTH else programs_of(cls)


def _orchestrate(rng: np.random.Generator, song: Song, draws: dict[str, float] | None = None,
                 rates: dict[str, float] | None = None) -> list[Part]:
    """The song's parts. ``draws`` gives a uniform [0, 1) number per :data:`PART_DRAWS` key (else ``rng``);
    ``rates`` the share of songs with bass, piano and guitar (:data:`PART_RATES` when ``None``)."""
    def u(key: str) -> float:
        return float(draws[key]) if draws is not None else float(rng.random())

    rates = PART_RATES if rates is None else rates
    parts = [_drum_part(rng, song)]
    if u("bass") < rates["bass"]:
        parts.append(_bass_part(rng, song, _pick(rng, programs_of(BASS))))
    if u("piano") < rates["piano"]:
        parts.append(_comp_part(rng, song, _pick(rng, programs_of(PIANO)), guitar=False))
        if rng.random() < 0.15:
            parts.append(_melody_part(rng, song, _pick(rng, programs_of(PIANO)), "line"))
    if u("guitar") < rates["guitar"]:
        parts.append(_comp_part(rng, song, _pick(rng, programs_of(GUITAR)), guitar=True))
        if rng.random() < 0.3:
            second = _pick(rng, programs_of(GUITAR))
            parts.append(_melody_part(rng, song, second, "line") if rng.random() < 0.5 else _comp_part(rng, song, second, guitar=True))
    if u("organ") < 0.25:
        organ = _pick(rng, programs_of(ORGAN))
        parts.append(_pad_part(rng, song, organ) if rng.random() < 0.6 else _comp_part(rng, song, organ, guitar=False))
    if u("strings") < 0.72:
        strings = programs_of(STRINGS)
        parts.append(_pad_part(rng, song, _pick(rng, strings)) if rng.random() < 0.7 else _melody_part(rng, song, _pick(rng, strings), "line"))
        if rng.random() < 0.25:
            parts.append(_melody_part(rng, song, _pick(rng, strings), "line"))
    if u("bells") < 0.17:
        parts.append(_bells_part(rng, song, _pick(rng, programs_of(PERCUSSION))))
    # One number decides both whether a melody plays and its class, so a balanced split also gets
    # the intended number of wind, voice and synth melodies.
    for role, rate, classes in (("lead", 0.85, LEAD_CLASSES), ("counter", 0.32, COUNTER_CLASSES)):
        value = u(role)
        if value < rate:
            cls = _melodic_class(value / rate, classes)
            parts.append(_melody_part(rng, song, _pick(rng, _class_programs(rng, cls)), role))
    if u("synth_pad") < 0.08:
        parts.append(_pad_part(rng, song, _pick(rng, [p for p in programs_of(SYNTH) if p < 120])))
    if u("voice_pad") < 0.06:
        parts.append(_pad_part(rng, song, _pick(rng, programs_of(VOICE))))
    if u("wind_stabs") < 0.1:
        parts.append(_stabs_part(rng, song, _pick(rng, programs_of(WIND))))
    return parts


def _humanize(rng: np.random.Generator, song: Song, parts: list[Part], end_s: float) -> list[tuple[Part, list[tuple[float, float, int, int]]]]:
    """Beats -> seconds with a few ms of timing jitter; enforce playable, non-overlapping notes."""
    spb = song.seconds_per_beat
    out = []
    for part in parts:
        low, high = (0, 127) if part.is_drum else program_range(part.program)
        jitter = float(rng.uniform(0.0, 0.012))
        timed: list[tuple[float, float, int, int]] = []
        for start_beat, length_beats, pitch, velocity in part.notes:
            start = max(start_beat * spb + float(rng.normal(0.0, jitter)), 0.0)
            end = min(start + max(length_beats * spb, MIN_NOTE_S), end_s)
            if end - start < MIN_NOTE_S or not low <= pitch <= high:
                continue
            timed.append((start, end, int(pitch), int(min(max(velocity, MIN_VELOCITY), 127))))
        timed.sort(key=lambda n: (n[2], n[0]))
        cleaned: list[tuple[float, float, int, int]] = []
        for note in timed:
            # A repeated key cuts the previous note (a synth cannot hold one key twice).
            if cleaned and cleaned[-1][2] == note[2] and cleaned[-1][1] > note[0]:
                prev = cleaned[-1]
                if note[0] - prev[0] < MIN_NOTE_S:
                    continue
                cleaned[-1] = (prev[0], note[0], prev[2], prev[3])
            cleaned.append(note)
        cleaned.sort(key=lambda n: (n[0], n[2]))
        if cleaned:
            out.append((part, cleaned))
    return out


def _to_midi(song: Song, timed: list[tuple[Part, list[tuple[float, float, int, int]]]]) -> "pretty_midi.PrettyMIDI":  # noqa: F821
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(resolution=480, initial_tempo=song.tempo)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(song.beats_per_bar, 4, 0.0))
    pm.key_signature_changes.append(pretty_midi.KeySignature(song.key + (12 if song.minor else 0), 0.0))
    for part, notes in timed:
        instrument = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum, name=part.name)
        instrument.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in notes]
        pm.instruments.append(instrument)
    return pm


def arrange_song(rng: np.random.Generator, duration_s: float, draws: dict[str, float] | None = None,
                 rates: dict[str, float] | None = None) -> "pretty_midi.PrettyMIDI":  # noqa: F821
    """A procedural song of about ``duration_s`` seconds of audio (notes end ``TAIL_S`` earlier).

    ``draws`` (one uniform [0, 1) number per :data:`PART_DRAWS` key) decides which parts play; a build
    spreads these evenly over a split's songs (``activity.synth.build.split_draws``) so that even a
    50-song split has the intended share of songs with each part. Without it they come from ``rng``.

    ``rates`` overrides the share of songs with bass, piano and guitar (:data:`PART_RATES`,
    :data:`ABSENCE_RATES`).

    Returns a ``PrettyMIDI`` with one instrument per stem (drums with ``is_drum``), at most 15 of them
    so that every melodic part gets its own MIDI channel.
    """
    if duration_s < 4 * TAIL_S:
        raise ValueError(f"duration_s must be at least {4 * TAIL_S} s, got {duration_s}")
    tempo = float(rng.integers(72, 156))
    beats_per_bar = 3 if rng.random() < 0.12 else 4
    bar_s = beats_per_bar * 60.0 / tempo
    music_s = duration_s - TAIL_S
    num_bars = max(int(music_s // bar_s), 2)
    key = int(rng.integers(12))
    minor = bool(rng.random() < 0.4)
    sections = _plan_sections(rng, num_bars)
    chords = _plan_chords(rng, key, minor, sections)
    scale = tuple((key + s) % 12 for s in (MINOR if minor else MAJOR))
    song = Song(tempo, beats_per_bar, key, minor, sections, chords, scale)
    parts = _orchestrate(rng, song, draws, rates)
    return _to_midi(song, _humanize(rng, song, parts, end_s=num_bars * bar_s))
