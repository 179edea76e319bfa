"""The course's program -> class table, checked program by program."""

import pytest

from activity.constants import CLASSES, NUM_CLASSES, num_frames
from activity.taxonomy import class_of, programs_of

# Written out independently of taxonomy.py's ranges, from the course's mapping.
EXPECTED = {}
for p in range(128):
    if p <= 7 or p == 108:
        EXPECTED[p] = "Piano"
    elif 8 <= p <= 15 or 112 <= p <= 119:
        EXPECTED[p] = "Percussion"
    elif 16 <= p <= 23:
        EXPECTED[p] = "Organ"
    elif 24 <= p <= 31:
        EXPECTED[p] = "Guitar"
    elif 32 <= p <= 39:
        EXPECTED[p] = "Bass"
    elif 40 <= p <= 51 or p == 55 or 104 <= p <= 107 or p == 110:
        EXPECTED[p] = "Strings"
    elif 52 <= p <= 54:
        EXPECTED[p] = "Voice"
    elif 56 <= p <= 79:
        EXPECTED[p] = "Wind Instruments"
    elif 80 <= p <= 103 or 120 <= p <= 127:
        EXPECTED[p] = "Synth"
    else:
        EXPECTED[p] = None


@pytest.mark.parametrize("program", range(128))
def test_every_program(program: int) -> None:
    got = class_of(program, is_drum=False)
    assert (None if got is None else CLASSES[got]) == EXPECTED[program]


def test_no_class_programs_are_exactly_109_and_111() -> None:
    assert [p for p in range(128) if class_of(p) is None] == [109, 111]


@pytest.mark.parametrize("program", [0, 32, 108, 127])
def test_drum_kits_are_never_a_class(program: int) -> None:
    assert class_of(program, is_drum=True) is None


@pytest.mark.parametrize("bad", [-1, 128, 1000])
def test_bad_program_raises_naming_it(bad: int) -> None:
    with pytest.raises(ValueError, match=str(bad)):
        class_of(bad)


def test_programs_of_partitions_the_classed_programs() -> None:
    seen = [p for c in range(NUM_CLASSES) for p in programs_of(c)]
    assert sorted(seen) == [p for p in range(128) if p not in (109, 111)]


def test_constants() -> None:
    assert CLASSES == ("Piano", "Percussion", "Organ", "Guitar", "Bass", "Strings", "Voice",
                       "Wind Instruments", "Synth")
    assert num_frames(120000) == 374
    assert num_frames(400) == 1
    assert num_frames(399) == 0
    assert num_frames(0) == 0
    assert num_frames(720) == 2
    assert num_frames(719) == 1
