"""The synthetic Slakh set: layout, truth from the notes, audible labels, determinism, refusals, resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from activity.audio import load_audio
from activity.constants import CLASSES, CLIP_SAMPLES, CLIP_SECONDS, NUM_CLASSES, SAMPLE_RATE
from activity.errors import ActivityError
from activity.midi import window_labels
from activity.synth import (
    DEFAULT_DATA_ROOT,
    RENDER_RATE,
    TARGET_CLIP_SHARES,
    arrange_song,
    arrange_track,
    build_dataset,
    clip_labels,
    ensure_dataset,
    is_complete,
    program_range,
    render_stems,
    track_numbers,
)
from activity.synth import __main__ as synth_cli
from activity.synth.arranger import MIN_NOTE_S, TAIL_S
from activity.synth.arranger import PART_DRAWS
from activity.synth.build import SIZES, arrange_track_fast, split_draws
from activity.taxonomy import class_of, programs_of

SPLITS = ("train", "validation", "test")
TINY = ["--size", "tiny", "--workers", "1", "--quiet"]


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def clip_files(root: Path, split: str) -> list[str]:
    return sorted(p.name for p in (root / "slakh" / split).glob("*.npy"))


# ------------------------------------------------------------------------------------------ layout


def test_layout_matches_the_course(synth_root: Path) -> None:
    manifest = json.loads((synth_root / "manifest.json").read_text())
    tracks_by_split: dict[str, set[str]] = {}
    for split in SPLITS:
        labels_text = (synth_root / "slakh" / f"{split}_labels.json").read_text()
        labels = json.loads(labels_text)
        assert list(labels) == sorted(labels), "keys must be sorted"
        assert list(labels) == clip_files(synth_root, split)
        assert len(labels) == manifest["splits"][split]["clips"] > 0
        for name, value in labels.items():
            assert len(value) == NUM_CLASSES and set(value) <= {0, 1}
            clip = np.load(synth_root / "slakh" / split / name, allow_pickle=False)
            assert clip.dtype == np.float32 and clip.shape == (CLIP_SAMPLES,)
            assert 0 < np.abs(clip).max() < 1.0
        tracks = {name.split("_")[0] for name in labels}
        tracks_by_split[split] = tracks
        assert len(tracks) == manifest["splits"][split]["songs"]
        for track in tracks:
            assert (synth_root / "slakh" / "midi" / f"{track}.mid").is_file()
            segments = sorted(int(n.split("_")[1][:-4]) for n in labels if n.startswith(track + "_"))
            assert segments == list(range(len(segments))), "segments k = 0, 1, ... with none missing"
    assert not tracks_by_split["train"] & tracks_by_split["validation"]
    assert not (tracks_by_split["train"] | tracks_by_split["validation"]) & tracks_by_split["test"]
    assert "Track01950" in tracks_by_split["test"]
    songs = sorted(p.stem for p in (synth_root / "test_track").glob("*.flac"))
    assert songs == sorted(tracks_by_split["test"])
    assert sorted(p.stem for p in (synth_root / "test_track").glob("*.mid")) == songs
    assert not list(synth_root.rglob("*.tmp"))


def test_track_numbers_keep_slakh_bands() -> None:
    assert track_numbers("train", 1500) == list(range(1, 1501))
    assert track_numbers("validation", 375) == list(range(1501, 1876))
    assert track_numbers("test", 225) == list(range(1876, 2101))
    for count in (1, 2, 50, 151, 200):
        numbers = track_numbers("test", count)
        assert 1950 in numbers and len(numbers) == count and min(numbers) >= 1876 and max(numbers) <= 2100


def test_labels_are_window_labels_of_the_midi(synth_root: Path) -> None:
    on = np.zeros(NUM_CLASSES)
    for split in SPLITS:
        labels = json.loads((synth_root / "slakh" / f"{split}_labels.json").read_text())
        for name, value in labels.items():
            track, k = name[:-4].split("_")
            truth = window_labels(synth_root / "slakh" / "midi" / f"{track}.mid", int(k) * CLIP_SECONDS)
            assert value == truth.tolist(), name
            on += truth
    assert on[CLASSES.index("Bass")] > 0 and on.sum() > 2 * len(CLASSES)


def test_test_track_song_is_the_clips(synth_root: Path) -> None:
    """The 44.1 kHz flac, resampled as users load it, is the clips one after another."""
    import soundfile

    for flac in sorted((synth_root / "test_track").glob("*.flac")):
        assert soundfile.info(str(flac)).samplerate == RENDER_RATE
        song = load_audio(flac)
        names = [n for n in clip_files(synth_root, "test") if n.startswith(flac.stem + "_")]
        assert len(names) == song.shape[0] // CLIP_SAMPLES
        clips = np.concatenate([np.load(synth_root / "slakh" / "test" / n) for n in names])
        assert np.abs(song[:clips.shape[0]] - clips).max() < 2e-3  # 16-bit flac, nothing else differs
        midi = pretty_midi.PrettyMIDI(str(flac.with_suffix(".mid")))
        assert midi.instruments[0].is_drum and midi.instruments[0].notes
        assert midi.get_end_time() + TAIL_S == pytest.approx(soundfile.info(str(flac)).frames / RENDER_RATE, abs=1e-3)
        # mido: drum notes on channel 10 (9 zero-based), no melodic part on it
        import mido

        channels = {(t.name, m.channel) for t in mido.MidiFile(str(flac.with_suffix(".mid"))).tracks
                    for m in t if m.type == "note_on"}
        assert ("drums", 9) in channels and all(c != 9 for name, c in channels if name != "drums")


# ---------------------------------------------------------------------------------- truth and audio


def test_every_labelled_note_sounds_in_its_stem() -> None:
    rate = SAMPLE_RATE
    for track in (1, 1950):
        pm = arrange_track(0, track, "tiny")
        labels = clip_labels(pm)
        stems = render_stems(pm, rate)
        class_energy = np.zeros((labels.shape[0], NUM_CLASSES))
        for instrument, stem in zip(pm.instruments, stems):
            assert stem.dtype == np.float32 and stem.shape == (int(round((pm.get_end_time() + TAIL_S) * rate)),)
            for note in instrument.notes:
                assert note.velocity > 0 and note.end - note.start >= MIN_NOTE_S - 1e-3
                first, last = int(round(note.start * rate)), int(round(note.end * rate))
                assert np.sqrt(np.mean(stem[first:last] ** 2)) > 1e-4, (track, instrument.program, note)
            cls = class_of(int(instrument.program), bool(instrument.is_drum))
            if cls is not None:
                for k in range(labels.shape[0]):
                    class_energy[k, cls] += np.abs(stem[k * CLIP_SAMPLES:(k + 1) * CLIP_SAMPLES]).max()
        assert np.all(class_energy[labels == 1] > 1e-3), "a labelled class is silent in its clip"


def test_every_program_range_sounds_in_the_default_soundfont() -> None:
    pm = pretty_midi.PrettyMIDI()
    for program in range(128):
        low, high = program_range(program)
        instrument = pretty_midi.Instrument(program=program)
        for i, pitch in enumerate((low, (low + high) // 2, high)):
            instrument.notes.append(pretty_midi.Note(velocity=40, pitch=pitch, start=0.3 * i, end=0.3 * i + MIN_NOTE_S))
        pm.instruments.append(instrument)
    stems = render_stems(pm, SAMPLE_RATE)
    for program, (instrument, stem) in enumerate(zip(pm.instruments, stems)):
        for note in instrument.notes:
            first, last = int(note.start * SAMPLE_RATE), int(note.end * SAMPLE_RATE)
            assert np.sqrt(np.mean(stem[first:last] ** 2)) > 1e-5, f"program {program} pitch {note.pitch} is silent"


def test_notes_start_on_their_exact_sample() -> None:
    pm = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=80)  # square wave: loud from its first sample
    start = 12345 / RENDER_RATE
    instrument.notes.append(pretty_midi.Note(velocity=100, pitch=69, start=start, end=start + 0.5))
    pm.instruments.append(instrument)
    stem = render_stems(pm, RENDER_RATE)[0]
    assert not stem[:12345].any()
    assert np.abs(stem[12345:12345 + 64]).max() > 0


def test_every_split_of_the_demo_size_has_the_course_class_shares() -> None:
    """Even 50-song splits: part choices are spread evenly over a split, not drawn independently."""
    for split, count in SIZES["demo"].songs.items():
        labels = np.concatenate([clip_labels(arrange_track_fast(0, t, "demo")) for t in track_numbers(split, count)])
        shares = labels.mean(axis=0)
        for c, name in enumerate(CLASSES):
            assert abs(shares[c] - TARGET_CLIP_SHARES[name]) <= 0.08, f"{split} {name}: {shares[c]:.3f}"


def test_split_draws_are_uniform_and_balanced() -> None:
    draws = split_draws(5, "test", 50)
    assert len(draws) == 50 and all(set(d) == set(PART_DRAWS) for d in draws)
    for key in PART_DRAWS:
        values = np.array([d[key] for d in draws])
        assert values.min() >= 0.0 and values.max() < 1.0
        # exactly one value in each of the 50 equal bins: p * 50 songs fall under any rate p, +-1
        assert sorted(np.floor(values * 50).astype(int).tolist()) == list(range(50)), key
    assert draws == split_draws(5, "test", 50) and draws != split_draws(6, "test", 50)
    assert [d["piano"] for d in draws] != [d["guitar"] for d in draws], "keys are independent"
    with pytest.raises(ValueError, match="not in the test split"):
        arrange_track_fast(0, 2100, "tiny")


def test_arranged_song_structure() -> None:
    rng = np.random.default_rng(7)
    pm = arrange_song(rng, 50.0)
    assert pm.get_end_time() <= 50.0 - TAIL_S + 1e-6
    assert sum(i.is_drum for i in pm.instruments) == 1
    assert 3 <= len(pm.instruments) <= 15
    for instrument in pm.instruments:
        if not instrument.is_drum:
            low, high = program_range(instrument.program)
            assert all(low <= n.pitch <= high and n.end > n.start for n in instrument.notes)
    with pytest.raises(ValueError):
        arrange_song(rng, 1.0)


def test_class_shares_and_variety_of_many_songs() -> None:
    """300 full-size songs, arranged only: class shares of clips near the course's, activity varies."""
    labels, programs = [], {c: set() for c in range(NUM_CLASSES)}
    varying = pairs = 0
    spec = SIZES["full"]
    for track in track_numbers("train", 300):
        pm = arrange_track_fast(0, track, "full")
        song = clip_labels(pm)
        labels.append(song)
        present = song.any(axis=0)
        pairs += int(present.sum())
        varying += int((present & ~song.all(axis=0)).sum())
        for instrument in pm.instruments:
            cls = class_of(int(instrument.program), bool(instrument.is_drum))
            if cls is not None:
                programs[cls].add(instrument.program)
    counts = [song.shape[0] for song in labels]
    assert min(counts) >= 8 and 9.5 <= np.mean(counts) <= 10.5, "full-size songs have about ten 5 s clips"
    shares = np.concatenate(labels).mean(axis=0)
    for c, name in enumerate(CLASSES):
        assert abs(shares[c] - TARGET_CLIP_SHARES[name]) <= 0.08, f"{name}: {shares[c]:.3f} vs {TARGET_CLIP_SHARES[name]}"
    assert varying / pairs > 0.15, "instruments should enter and leave within songs"
    for c in range(NUM_CLASSES):  # programs come from each class's whole GM range
        assert len(programs[c]) >= 0.75 * len(programs_of(c)), CLASSES[c]


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_same_bytes_with_two_workers(synth_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "again"
    build_dataset(other, size="tiny", seed=0, workers=2, progress=False)
    assert tree_hashes(other) == tree_hashes(synth_root)


def test_different_seed_different_songs(synth_root: Path, tmp_path: Path) -> None:
    other = tmp_path / "seed1"
    manifest = build_dataset(other, size="tiny", seed=1, workers=1, progress=False)
    assert manifest["seed"] == 1
    a = (synth_root / "slakh" / "midi" / "Track01950.mid").read_bytes()
    b = (other / "slakh" / "midi" / "Track01950.mid").read_bytes()
    assert a != b
    assert tree_hashes(other / "test_track") != tree_hashes(synth_root / "test_track")


# ----------------------------------------------------------------------------- refusals and resume


def test_complete_set_same_parameters_is_already_built(synth_root: Path, capsys) -> None:
    before = tree_hashes(synth_root)
    assert synth_cli.main(["--out", str(synth_root), *TINY[:-1]]) == 0
    assert "already built" in capsys.readouterr().err
    assert tree_hashes(synth_root) == before


def test_complete_set_other_parameters_is_refused(synth_root: Path, capsys) -> None:
    assert synth_cli.main(["--out", str(synth_root), "--seed", "3", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(synth_root) in err and "seed=0" in err and "--overwrite" in err
    assert synth_cli.main(["--out", str(synth_root), "--size", "demo", "--quiet"]) == 2


def test_non_empty_folder_without_flags_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert synth_cli.main(["--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "--resume" in err and "--overwrite" in err
    assert synth_cli.main(["--out", str(tmp_path), "--overwrite", *TINY]) == 2  # never deletes foreign files
    assert "notes.txt" in capsys.readouterr().err and (tmp_path / "notes.txt").exists()
    assert synth_cli.main(["--out", str(tmp_path), "--resume", *TINY]) == 2
    assert "no interrupted synthetic build" in capsys.readouterr().err


def test_missing_soundfont_is_a_clear_error(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.sf2"
    assert synth_cli.main(["--out", str(tmp_path / "out"), "--soundfont", str(missing), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --soundfont") and str(missing) in err and "Traceback" not in err
    broken = tmp_path / "broken.sf2"
    broken.write_bytes(b"RIFF0000notasoundfont")
    assert synth_cli.main(["--out", str(tmp_path / "out"), "--soundfont", str(broken), *TINY]) == 2
    assert "could not be loaded" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resume_after_an_interruption(synth_root: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "set"
    shutil.copytree(synth_root, work)
    # What a kill leaves: no manifest, a song's files half there, a temporary file, no record.
    (work / "manifest.json").unlink()
    (work / "slakh" / "test" / "Track01950_1.npy").unlink()
    (work / "slakh" / "midi" / "Track00002.mid").unlink()
    (work / ".progress" / "Track01501.json").unlink()
    (work / "slakh" / "train" / ".Track00003_0.npy.abc123.tmp").write_bytes(b"partial")
    assert not is_complete(work)
    assert synth_cli.main(["--out", str(work), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert synth_cli.main(["--out", str(work), "--resume", *TINY]) == 0
    assert tree_hashes(work) == tree_hashes(synth_root)
    assert is_complete(work)


def test_resume_with_other_parameters_is_refused(synth_root: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "set"
    shutil.copytree(synth_root, work)
    (work / "manifest.json").unlink()
    assert synth_cli.main(["--out", str(work), "--resume", "--seed", "5", *TINY]) == 2
    err = capsys.readouterr().err
    assert "seed=0" in err and "seed=5" in err


def test_ensure_dataset_returns_a_complete_set_without_building(synth_root: Path, monkeypatch) -> None:
    import activity.synth.build as build

    monkeypatch.setattr(build, "build_dataset", lambda *a, **k: pytest.fail("must not build"))
    assert ensure_dataset(synth_root, size="tiny") == synth_root


def test_default_root_is_under_the_repository() -> None:
    assert DEFAULT_DATA_ROOT == Path(__file__).resolve().parents[1] / "data" / "synth-slakh"
