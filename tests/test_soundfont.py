"""Reading which samples a SoundFont's presets play: a hand-built file, the default font, bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from activity.errors import ActivityError
from activity.synth.render import default_soundfont
from activity.synth.soundfont import DRUM_BANK, cross_class_sharing, preset_class, read_layout
from activity.taxonomy import PERCUSSION


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _name(text: str) -> bytes:
    return text.encode().ljust(20, b"\0")


def write_soundfont(path: Path, presets: list[tuple[str, int, int, list[int]]],
                    instruments: list[list[int]], samples: list[str]) -> Path:
    """A minimal SF2 with no audio: ``presets`` are (name, program, bank, instrument indices),
    ``instruments`` list sample indices, one zone per link."""
    phdr, pbag, pgen = b"", b"", b""
    zone = generator = 0
    for name, program, bank, linked in presets:
        phdr += struct.pack("<20sHHHIII", _name(name), program, bank, zone, 0, 0, 0)
        for instrument in linked:
            pbag += struct.pack("<HH", generator, 0)
            pgen += struct.pack("<HH", 41, instrument)
            zone, generator = zone + 1, generator + 1
    phdr += struct.pack("<20sHHHIII", _name("EOP"), 0, 0, zone, 0, 0, 0)
    pbag += struct.pack("<HH", generator, 0)
    pgen += struct.pack("<HH", 0, 0)
    inst, ibag, igen = b"", b"", b""
    zone = generator = 0
    for i, linked in enumerate(instruments):
        inst += struct.pack("<20sH", _name(f"inst{i}"), zone)
        for sample in linked:
            # A key range before the sample, as real fonts write it: only generator 53 may count.
            ibag += struct.pack("<HH", generator, 0)
            igen += struct.pack("<HH", 43, 0x7F00) + struct.pack("<HH", 53, sample)
            zone, generator = zone + 1, generator + 2
    inst += struct.pack("<20sH", _name("EOI"), zone)
    ibag += struct.pack("<HH", generator, 0)
    igen += struct.pack("<HH", 0, 0)
    shdr = b"".join(struct.pack("<20s5IBbHH", _name(s), 0, 0, 0, 0, 44100, 60, 0, 0, 1) for s in samples + ["EOS"])
    pmod = imod = struct.pack("<HHhHH", 0, 0, 0, 0, 0)
    hydra = b"pdta" + b"".join(_chunk(k, v) for k, v in ((b"phdr", phdr), (b"pbag", pbag), (b"pmod", pmod), (b"pgen", pgen),
                                                          (b"inst", inst), (b"ibag", ibag), (b"imod", imod), (b"igen", igen),
                                                          (b"shdr", shdr)))
    body = b"sfbk" + _chunk(b"LIST", b"INFO" + _chunk(b"ifil", struct.pack("<HH", 2, 1))) + _chunk(b"LIST", hydra)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture()
def small_font(tmp_path: Path) -> Path:
    # Two pianos (0, 1) share one instrument; Synth Strings 2 (51, Strings) plays its own samples; Warm Pad (89, Synth) plays
    # 51's strings through a second instrument; Melodic Tom (117, Percussion) plays the kit's tom.
    return write_soundfont(
        tmp_path / "small.sf2",
        presets=[("Piano", 0, 0, [0]), ("Bright Piano", 1, 0, [0]), ("Strings", 51, 0, [1]), ("Warm Pad", 89, 0, [2, 1]),
                 ("Melodic Tom", 117, 0, [3]), ("Standard", 0, DRUM_BANK, [4])],
        instruments=[[0, 1], [2], [5], [3], [3, 4]],
        samples=["piano C4", "piano C6", "strings G3", "tom", "snare", "pad wave"],
    )


def test_layout_links_presets_to_their_samples(small_font: Path) -> None:
    layout = read_layout(small_font)
    assert sorted(layout.presets) == [(0, 0), (0, 1), (0, 51), (0, 89), (0, 117), (DRUM_BANK, 0)]
    assert layout.sample_names == ("piano C4", "piano C6", "strings G3", "tom", "snare", "pad wave")
    assert layout.presets[(0, 0)].name == "Piano" and layout.presets[(0, 0)].samples == {0, 1}
    assert layout.presets[(0, 89)].samples == {2, 5}
    assert layout.shared_samples((0, 89), (0, 51)) == ["strings G3"]
    assert layout.shared_samples((0, 117), (DRUM_BANK, 0)) == ["tom"]
    assert layout.shared_samples((0, 0), (0, 51)) == []


def test_cross_class_sharing_counts_other_classes_and_kits(small_font: Path) -> None:
    sharing = cross_class_sharing(read_layout(small_font))
    assert sharing[0] == [] and sharing[1] == []  # sharing within a class is not counted
    assert sharing[51] == [(0, 89)] and sharing[89] == [(0, 51)]
    assert sharing[117] == [(DRUM_BANK, 0)]
    assert sharing[40] == []  # a labelled program the font lacks shares nothing
    assert 109 not in sharing  # no class, so never a key
    assert preset_class((0, 117)) == PERCUSSION and preset_class((DRUM_BANK, 117)) is None and preset_class((1, 0)) is None


def test_default_soundfont_shares_samples_across_classes() -> None:
    layout = read_layout(default_soundfont())
    assert all((0, program) in layout.presets and layout.presets[(0, program)].samples for program in range(128))
    sharing = cross_class_sharing(layout)
    assert layout.shared_samples((0, 117), (DRUM_BANK, 0)) == ["Acoustic Tom"]
    assert (DRUM_BANK, 0) in sharing[119]  # Reverse Cymbal is the kit's crash
    assert (0, 51) in sharing[89] and (0, 51) in sharing[95]  # pads on Synth Strings 2's samples
    assert sharing[0] == [] and sharing[19] == []  # Piano 1 and Church Organ share only within their class


def test_not_a_soundfont_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.sf2"
    bad.write_bytes(b"MThd" + b"\0" * 20)
    with pytest.raises(ActivityError, match=r"notes\.sf2 is not a SoundFont"):
        read_layout(bad)
    with pytest.raises(ActivityError, match=r"missing\.sf2 could not be read"):
        read_layout(tmp_path / "missing.sf2")


def test_missing_or_broken_preset_data_names_the_chunk(small_font: Path, tmp_path: Path) -> None:
    data = small_font.read_bytes()
    no_hydra = tmp_path / "no_hydra.sf2"
    no_hydra.write_bytes(data.replace(b"pdta", b"xdta"))
    with pytest.raises(ActivityError, match=r"no_hydra\.sf2 has no phdr, pbag, pgen, inst, ibag, igen, shdr chunk"):
        read_layout(no_hydra)
    dangling = tmp_path / "dangling.sf2"
    # Point Melodic Tom (the link after Warm Pad's second) at instrument 9, which does not exist.
    dangling.write_bytes(data.replace(struct.pack("<HH", 41, 1) + struct.pack("<HH", 41, 3),
                                      struct.pack("<HH", 41, 1) + struct.pack("<HH", 41, 9)))
    with pytest.raises(ActivityError, match=r"dangling\.sf2: a preset, zone or generator points past the end"):
        read_layout(dangling)
