"""Truth rolls from MIDI: the course's 5 s grid, 75 Hz frames and window labels."""

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from activity.constants import CLASSES, NUM_CLASSES
from activity.errors import ActivityError
from activity.midi import (
    class_notes,
    classes_present,
    frame_roll,
    load_slakh_track,
    segment_roll,
    window_labels,
)
from activity.taxonomy import class_of

PIANO, BASS, SYNTH = CLASSES.index("Piano"), CLASSES.index("Bass"), CLASSES.index("Synth")

SLAKH_TRACK = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "slakh2100" / "Track00001"


def write_midi(path: Path, parts: list[tuple[int, bool, list[tuple[float, float]]]]) -> Path:
    """Write (program, is_drum, [(start, end), ...]) parts to ``path``."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for program, is_drum, notes in parts:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
        for start, end in notes:
            inst.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=start, end=end))
        pm.instruments.append(inst)
    pm.write(str(path))
    return path


@pytest.fixture
def song(tmp_path: Path) -> Path:
    # Piano 0.0-1.0 and 7.5-10.0, bass 4.9-5.1, drums everywhere, a bag pipe (no class) 0-12.
    return write_midi(tmp_path / "song.mid", [
        (0, False, [(0.0, 1.0), (7.5, 10.0)]),
        (33, False, [(4.9, 5.1)]),
        (0, True, [(0.0, 12.0)]),
        (109, False, [(0.0, 12.0)]),
    ])


def test_segment_roll_marks_course_steps(song: Path) -> None:
    roll = segment_roll(song)
    assert roll.dtype == np.uint8
    assert roll.shape == (3, NUM_CLASSES)  # end 12.0 s -> ceil(12/5); time first
    expected = np.zeros((3, NUM_CLASSES), np.uint8)
    expected[:, PIANO] = [1, 1, 0]  # 0-1 -> step 0; 7.5-10.0 -> floor(1.5)=1 .. ceil(2)-1=1
    expected[:, BASS] = [1, 1, 0]  # 4.9-5.1 straddles the boundary
    np.testing.assert_array_equal(roll, expected)


def test_segment_roll_crops_and_pads_to_audio(song: Path) -> None:
    assert segment_roll(song, num_segments=2).shape == (2, NUM_CLASSES)
    padded = segment_roll(song, num_segments=5)
    assert padded.shape == (5, NUM_CLASSES) and padded[3:].sum() == 0


def test_frame_roll_exact() -> None:
    # One piano note from frame 1.5 to frame 3 (in 1/75 s): overlaps frames 1 and 2 only. Built in
    # memory: a written file would round the times to MIDI ticks.
    pm = pretty_midi.PrettyMIDI()
    for program, start, end in [(0, 1.5 / 75, 3 / 75), (33, 0.0, 0.1)]:
        inst = pretty_midi.Instrument(program=program)
        inst.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=start, end=end))
        pm.instruments.append(inst)
    roll = frame_roll(pm)
    assert roll.shape == (8, NUM_CLASSES)  # end 0.1 s -> ceil(7.5)
    np.testing.assert_array_equal(roll[:, PIANO], [0, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(roll[:, BASS], [1] * 8)
    assert roll.sum() == 10


def test_frame_roll_num_frames_crops_and_pads(song: Path) -> None:
    full = frame_roll(song)
    assert full.shape == (900, NUM_CLASSES)
    cropped = frame_roll(song, num_frames=374)
    np.testing.assert_array_equal(cropped, full[:374])
    padded = frame_roll(song, num_frames=1000)
    np.testing.assert_array_equal(padded[:900], full)
    assert padded[900:].sum() == 0


def test_window_labels_overlap(song: Path) -> None:
    np.testing.assert_array_equal(window_labels(song, 0.0), np.eye(NUM_CLASSES, dtype=np.uint8)[[PIANO, BASS]].sum(0))
    assert window_labels(song, 5.0)[BASS] == 1  # bass ends at 5.1
    assert window_labels(song, 5.1)[BASS] == 0  # a note ending at the window start does not overlap
    assert window_labels(song, 10.0).sum() == 0  # piano ends at 10.0: not in [10, 15)
    assert window_labels(song, 1.0, duration_s=6.5)[PIANO] == 0  # [1, 7.5): piano starts at 7.5
    assert window_labels(song, 1.0, duration_s=6.6)[PIANO] == 1


def test_empty_and_drums_only(tmp_path: Path) -> None:
    empty = write_midi(tmp_path / "empty.mid", [])
    assert segment_roll(empty).shape == (0, NUM_CLASSES)
    assert frame_roll(empty, num_frames=10).sum() == 0
    assert window_labels(empty, 0.0).sum() == 0
    drums = write_midi(tmp_path / "drums.mid", [(0, True, [(0.0, 9.0)])])
    roll = segment_roll(drums)
    assert roll.shape == (2, NUM_CLASSES) and roll.sum() == 0
    assert classes_present(drums) == set()


def test_zero_length_notes_mark_nothing(tmp_path: Path) -> None:
    path = write_midi(tmp_path / "z.mid", [(0, False, [(2.0, 2.0)]), (33, False, [(0.0, 6.0)])])
    assert class_notes(path) == [(BASS, 0.0, 6.0)]
    assert segment_roll(path)[:, PIANO].sum() == 0
    assert frame_roll(path)[:, PIANO].sum() == 0


def test_notes_past_audio_end_are_cropped(tmp_path: Path) -> None:
    path = write_midi(tmp_path / "long.mid", [(90, False, [(3.0, 30.0)])])
    roll = segment_roll(path, num_segments=4)
    np.testing.assert_array_equal(roll[:, SYNTH], [1, 1, 1, 1])
    assert frame_roll(path, num_frames=300)[:, SYNTH].sum() == 300 - 3 * 75  # frames 225..299


def test_boundary_float_noise_does_not_leak(tmp_path: Path) -> None:
    # At 120 bpm with 220 ticks per beat, 5.0 s is tick 2200: the note must end exactly on step 1.
    path = write_midi(tmp_path / "b.mid", [(0, False, [(0.0, 5.0)])])
    np.testing.assert_array_equal(segment_roll(path)[:, PIANO], [1])
    assert frame_roll(path)[:, PIANO].sum() == 375


@pytest.mark.parametrize("content", [b"", b"not a midi file at all"])
def test_unreadable_midi_names_the_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "broken.mid"
    bad.write_bytes(content)
    for func in (segment_roll, frame_roll, lambda p: window_labels(p, 0.0)):
        with pytest.raises(ActivityError, match="broken.mid"):
            func(bad)


def test_missing_midi_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="nothere.mid.*does not exist"):
        segment_roll(tmp_path / "nothere.mid")


@pytest.mark.skipif(not SLAKH_TRACK.is_dir(), reason="../shared/fixtures/slakh2100 is not beside the repo")
class TestRealSlakhTrack:
    """Track00001 of Slakh2100: MIDI and metadata written by the dataset's authors, not by us."""

    def rendered_classes_from_metadata(self) -> set[int]:
        import yaml

        stems = yaml.safe_load((SLAKH_TRACK / "metadata.yaml").read_text())["stems"]
        return {
            c for s in stems.values() if s["audio_rendered"]
            for c in [class_of(s["program_num"] if not s["is_drum"] else 0, s["is_drum"])] if c is not None
        }

    def test_classes_match_metadata(self) -> None:
        expected = self.rendered_classes_from_metadata()
        assert {CLASSES[c] for c in expected} == {"Piano", "Organ", "Guitar", "Bass", "Voice"}
        assert classes_present(load_slakh_track(SLAKH_TRACK)) == expected

    def test_stems_agree_with_all_src(self) -> None:
        import pretty_midi as pm_lib

        # all_src.mid also holds S06 (program 103, never rendered): drop the instruments of unrendered
        # stems, in stem order, before comparing.
        all_src = pm_lib.PrettyMIDI(str(SLAKH_TRACK / "all_src.mid"))
        assert classes_present(all_src) - classes_present(load_slakh_track(SLAKH_TRACK)) == {SYNTH}
        import yaml

        stems = yaml.safe_load((SLAKH_TRACK / "metadata.yaml").read_text())["stems"]
        keep = [info["audio_rendered"] for _, info in sorted(stems.items())]
        assert len(keep) == len(all_src.instruments)
        all_src.instruments = [inst for inst, k in zip(all_src.instruments, keep) if k]
        stems_pm = load_slakh_track(SLAKH_TRACK)
        length = segment_roll(all_src).shape[0]
        np.testing.assert_array_equal(segment_roll(stems_pm, num_segments=length), segment_roll(all_src))
        assert length == 48  # 236.6 s of MIDI
        # At 75 Hz they differ by a hair: Slakh transposed the bass stem an octave, which makes two
        # overlapping notes share pitch 55 so that one note-off ends both (0.2 s, twice, in 236 s).
        frames = frame_roll(all_src).shape[0]
        differ = frame_roll(stems_pm, num_frames=frames) != frame_roll(all_src)
        assert set(np.nonzero(differ)[1]) == {BASS}
        assert differ.sum() == 30
