"""General MIDI program -> course class, exactly as the course labelled Slakh.

Read the table top to bottom: each row is (first program, last program, class), 0-based and
inclusive. Programs 109 (Bag pipe) and 111 (Shanai) and every drum kit belong to no class.
"""

from __future__ import annotations

from .constants import CLASSES

PIANO, PERCUSSION, ORGAN, GUITAR, BASS, STRINGS, VOICE, WIND, SYNTH = range(len(CLASSES))

PROGRAM_RANGES: tuple[tuple[int, int, int], ...] = (
    (0, 7, PIANO),
    (8, 15, PERCUSSION),
    (16, 23, ORGAN),
    (24, 31, GUITAR),
    (32, 39, BASS),
    (40, 51, STRINGS),
    (52, 54, VOICE),
    (55, 55, STRINGS),  # Orchestra Hit
    (56, 79, WIND),
    (80, 103, SYNTH),
    (104, 107, STRINGS),  # Sitar, Banjo, Shamisen, Koto
    (108, 108, PIANO),  # Kalimba
    (110, 110, STRINGS),  # Fiddle
    (112, 119, PERCUSSION),
    (120, 127, SYNTH),
    # 109 (Bag pipe) and 111 (Shanai) are deliberately absent: no class.
)


def _build_table() -> tuple[int | None, ...]:
    table: list[int | None] = [None] * 128
    for first, last, cls in PROGRAM_RANGES:
        for program in range(first, last + 1):
            assert table[program] is None, f"program {program} listed twice"
            table[program] = cls
    return tuple(table)


PROGRAM_TO_CLASS: tuple[int | None, ...] = _build_table()
"""Index with a 0-based program number; ``None`` means no class."""


def class_of(program: int, is_drum: bool = False) -> int | None:
    """Class index (into ``CLASSES``) of a 0-based General MIDI program, or ``None`` for no class.

    Drum kits (``is_drum``) are never a class, whatever their program number.

    Raises:
        ValueError: ``program`` is not an integer in 0-127.
    """
    if isinstance(program, bool) or not isinstance(program, int) or not 0 <= program <= 127:
        raise ValueError(f"MIDI program {program!r} is not an integer in 0-127")
    if is_drum:
        return None
    return PROGRAM_TO_CLASS[program]


def programs_of(class_index: int) -> list[int]:
    """All 0-based programs that map to ``class_index``."""
    return [p for p, c in enumerate(PROGRAM_TO_CLASS) if c == class_index]
