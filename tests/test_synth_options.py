"""Options of the synthetic set (issue 19): several SoundFonts, the effects chain, absence, one split.

Tests of Debian's fonts skip where they are not installed (a fresh machine has pip only); the rest
use pretty_midi's TimGM6mb and a copy of it under another name, so they always run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from activity.errors import ActivityError
from activity.synth import __main__ as synth_cli
from activity.synth import build_dataset, default_soundfont, is_complete
from activity.synth.arranger import ABSENCE_RATES, PART_RATES
from activity.synth.build import SIZES, SPLITS, arrange_track_fast, track_numbers
from activity.synth.effects import apply_chain, apply_mix_chain, draw_mix_chain, draw_room, draw_stem_chain
from activity.synth.fonts import FONTS, HELD_OUT_FONT, TRAINING_FONTS, FontSpec, font_path, resolve_font
from activity.taxonomy import BASS, GUITAR, PIANO, class_of

TINY = ["--size", "tiny", "--workers", "1", "--quiet"]


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def installed(name: str) -> bool:
    try:
        font_path(name)
    except ActivityError:
        return False
    return True


@pytest.fixture(scope="module")
def two_fonts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """TimGM6mb and a byte copy of it under another name: two fonts on any machine."""
    copy = tmp_path_factory.mktemp("fonts") / "Copy.sf2"
    shutil.copyfile(default_soundfont(), copy)
    return ["TimGM6mb", str(copy)]


# ------------------------------------------------------------------------------------ font registry


def test_registry_names_a_package_for_every_debian_font_and_holds_one_family_out() -> None:
    for name, spec in FONTS.items():
        assert (spec.package is None) == (name == "TimGM6mb")
        assert spec.package is None or spec.path.startswith("/usr/share/sounds/sf")
    assert HELD_OUT_FONT in FONTS and HELD_OUT_FONT not in TRAINING_FONTS
    held = FONTS[HELD_OUT_FONT].family
    assert all(FONTS[n].family != held for n in TRAINING_FONTS)
    assert FONTS["sf_GMbank"].family == FONTS["TimGM6mb"].family  # sf_GMbank plays TimGM6mb's samples


def test_missing_debian_font_is_one_error_line_naming_the_package(tmp_path: Path, monkeypatch, capsys) -> None:
    gone = tmp_path / "nowhere" / "FluidR3_GM.sf2"
    monkeypatch.setitem(FONTS, "FluidR3_GM", FontSpec("FluidR3_GM", "fluid-soundfont-gm", str(gone), "FluidR3"))
    code = synth_cli.main(["--out", str(tmp_path / "out"), *TINY, "--soundfonts", "TimGM6mb", "FluidR3_GM"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: SoundFont FluidR3_GM:") and str(gone) in err[0]
    assert "apt-get install fluid-soundfont-gm" in err[0]
    assert not (tmp_path / "out").exists()


def test_unknown_font_name_and_repeated_font_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="neither a registered font"):
        resolve_font("NoSuchFont")
    with pytest.raises(ActivityError, match="names one file twice"):
        build_dataset(tmp_path, size="tiny", soundfonts=["TimGM6mb", str(default_soundfont())], workers=1, progress=False)
    with pytest.raises(ActivityError, match="--soundfont and --soundfonts exclude"):
        build_dataset(tmp_path, size="tiny", soundfont=default_soundfont(), soundfonts=["TimGM6mb"], workers=1, progress=False)


@pytest.mark.parametrize("name", [n for n in FONTS if n != "TimGM6mb"])
def test_debian_font_loads_and_every_program_sounds(name: str) -> None:
    if not installed(name):
        pytest.skip(f"{name} is not installed (apt-get install {FONTS[name].package})")
    import pretty_midi

    from activity.synth import RENDER_RATE, program_range, render_stems
    from activity.synth.soundfont import read_layout

    path = font_path(name)
    layout = read_layout(path)  # .sf3 too: Debian's FluidR3Mono_GM.sf3 leaves an odd chunk unpadded
    assert all((0, p) in layout.presets for p in range(128)) and (128, 0) in layout.presets
    pm = pretty_midi.PrettyMIDI()
    for program in range(0, 128, 9):
        inst = pretty_midi.Instrument(program=program)
        low, high = program_range(program)
        inst.notes.append(pretty_midi.Note(velocity=100, pitch=(low + high) // 2, start=0.0, end=0.5))
        pm.instruments.append(inst)
    for program, stem in zip(range(0, 128, 9), render_stems(pm, RENDER_RATE, path)):
        assert np.sqrt(np.mean(np.square(stem, dtype=np.float64))) > 1e-4, f"{name} program {program} is silent"


# ------------------------------------------------------------------------------------ several fonts


@pytest.fixture(scope="module")
def per_stem_root(two_fonts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("per-stem") / "set"
    build_dataset(root, size="tiny", seed=0, soundfonts=two_fonts, font_per="stem", workers=1, progress=False)
    return root


def test_several_fonts_are_drawn_per_stem_and_recorded(per_stem_root: Path, synth_root: Path) -> None:
    manifest = json.loads((per_stem_root / "manifest.json").read_text())
    assert [f["name"] for f in manifest["soundfonts"]] == ["TimGM6mb", "Copy"]
    assert manifest["soundfonts"][0]["sha256"] == manifest["soundfonts"][1]["sha256"] == manifest["soundfont"]["sha256"]
    assert manifest["font_per"] == "stem"
    records = {p.stem: json.loads(p.read_text()) for p in (per_stem_root / ".progress").glob("Track*.json")}
    assert set(manifest["tracks"]) == set(records) and len(records) == sum(SIZES["tiny"].songs.values())
    used = [name for info in manifest["tracks"].values() for name in info["fonts"]]
    assert set(used) == {"TimGM6mb", "Copy"}, "per stem, both fonts must be drawn over 8 songs"
    assert manifest["font_stems"] == {n: used.count(n) for n in ("Copy", "TimGM6mb")}
    for name, info in manifest["tracks"].items():
        assert len(info["fonts"]) == len(records[name]["instruments"])
    assert any(len(set(i["fonts"])) > 1 for i in manifest["tracks"].values())
    # The copy is the same font, so the audio is the plain build's: font choice does not touch the
    # arrangement or the stem levels. Not to the byte: a tinysoundfont voice keeps a trace of the
    # stem it played before (about -70 dB), and here stems are spread over two synthesizers.
    for split in SPLITS:
        assert (per_stem_root / "slakh" / f"{split}_labels.json").read_text() == \
            (synth_root / "slakh" / f"{split}_labels.json").read_text()
        for clip in (synth_root / "slakh" / split).glob("*.npy"):
            assert np.allclose(np.load(clip), np.load(per_stem_root / "slakh" / split / clip.name), atol=2e-3)


def test_font_per_song_gives_every_stem_of_a_song_one_font(two_fonts: list[str], tmp_path: Path) -> None:
    manifest = build_dataset(tmp_path / "set", size="tiny", seed=0, soundfonts=two_fonts, font_per="song",
                             splits=("test",), workers=1, progress=False)
    assert manifest["font_per"] == "song"
    assert all(len(set(info["fonts"])) == 1 for info in manifest["tracks"].values())


def test_other_fonts_or_font_per_refuse_a_complete_set(per_stem_root: Path, two_fonts: list[str]) -> None:
    with pytest.raises(ActivityError, match="already holds a complete synthetic set"):
        build_dataset(per_stem_root, size="tiny", seed=0, soundfonts=two_fonts, font_per="song", workers=1, progress=False)
    with pytest.raises(ActivityError, match="already holds a complete synthetic set"):
        build_dataset(per_stem_root, size="tiny", seed=0, workers=1, progress=False)


@pytest.mark.skipif(not (installed("FluidR3_GM") and installed("sf_GMbank")),
                    reason="Debian's fluid-soundfont-gm and csound-soundfont are not installed")
def test_debian_fonts_per_stem_same_bytes_with_one_or_two_workers(tmp_path: Path) -> None:
    fonts = ["TimGM6mb", "sf_GMbank", "FluidR3_GM"]
    a = build_dataset(tmp_path / "a", size="tiny", soundfonts=fonts, splits=("validation", "test"), workers=1, progress=False)
    build_dataset(tmp_path / "b", size="tiny", soundfonts=fonts, splits=("validation", "test"), workers=2, progress=False)
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert len(a["font_stems"]) == 3


# ------------------------------------------------------------------------------------------ effects


def test_stem_chain_draws_the_same_count_and_fits_the_stem() -> None:
    room = draw_room(np.random.default_rng(0))
    states = []
    kinds: dict[int, set[str]] = {GUITAR: set(), PIANO: set(), -1: set()}
    for program, is_drum, key in ((26, False, GUITAR), (0, False, PIANO), (0, True, -1)):
        for s in range(60):
            rng = np.random.default_rng(s)
            chain = draw_stem_chain(rng, program, is_drum, room)
            kinds[key] |= {name for name, _ in chain}
            assert chain[-1][0] == "Send" and 0.0 <= chain[-1][1]["level"] <= room["max_send"]
            states.append((s, rng.random()))
    # Whatever the stem, a chain consumes the same draws: one stem's chain never shifts the next one's.
    by_seed: dict[int, set[float]] = {}
    for s, value in states:
        by_seed.setdefault(s, set()).add(value)
    assert all(len(values) == 1 for values in by_seed.values())
    assert "Distortion" in kinds[GUITAR] and "Distortion" not in kinds[PIANO] and "Distortion" not in kinds[-1]
    assert "Chorus" in kinds[PIANO] and "Chorus" not in kinds[-1]
    assert {"HighpassFilter", "LowpassFilter", "PeakFilter", "Compressor"} <= kinds[PIANO]
    assert class_of(26) == GUITAR


def test_chain_is_deterministic_run_to_run_and_changes_the_sound() -> None:
    rate = 44_100
    rng = np.random.default_rng(3)
    audio = (0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate) * (np.arange(rate) < rate // 2)).astype(np.float32)
    chain = [("Distortion", {"drive_db": 18.0}), ("Chorus", {"rate_hz": 1.0, "depth": 0.3, "centre_delay_ms": 7.0,
                                                            "feedback": 0.0, "mix": 0.4}),
             ("Compressor", {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0, "release_ms": 100.0}),
             ("Reverb", {"room_size": 0.6, "damping": 0.5, "wet_level": 0.3, "dry_level": 1.0, "width": 0.0})]
    first = apply_chain(audio, rate, chain)
    apply_chain(rng.standard_normal(rate).astype(np.float32), rate, chain)  # other audio in between
    second = apply_chain(audio, rate, chain)
    assert first.dtype == np.float32 and first.shape == audio.shape
    assert first.tobytes() == second.tobytes()
    assert not np.allclose(first, audio, atol=1e-3)
    assert np.abs(first[int(0.6 * rate):]).max() > 1e-3, "the reverb's tail must ring after the tone stops"
    bus = draw_mix_chain(np.random.default_rng(1))
    mixed = apply_mix_chain(first, rate, bus, np.random.default_rng(2))
    assert mixed.tobytes() == apply_mix_chain(first, rate, bus, np.random.default_rng(2)).tobytes()
    expected_peak = np.abs(first).max() * 10 ** (bus["gain_db"] / 20)
    assert np.isclose(np.abs(mixed).max(), expected_peak, rtol=1e-5)


def test_effects_build_is_byte_identical_keeps_labels_and_records_the_chain(synth_root: Path, tmp_path: Path) -> None:
    for name, workers in (("a", "1"), ("b", "2")):
        code = synth_cli.main(["--out", str(tmp_path / name), "--size", "tiny", "--workers", workers, "--quiet",
                               "--effects", "--splits", "validation", "test"])
        assert code == 0
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["effects"]["library"] == "pedalboard" and manifest["built_splits"] == ["validation", "test"]
    for split in ("validation", "test"):
        assert (tmp_path / "a" / "slakh" / f"{split}_labels.json").read_text() == \
            (synth_root / "slakh" / f"{split}_labels.json").read_text()
        for clip in (synth_root / "slakh" / split).glob("*.npy"):
            plain = np.load(clip)
            wet = np.load(tmp_path / "a" / "slakh" / split / clip.name)
            assert wet.shape == plain.shape and np.abs(wet).max() < 1.0
            assert not np.allclose(wet, plain, atol=1e-3)
    for name, info in manifest["tracks"].items():
        record = json.loads((tmp_path / "a" / ".progress" / f"{name}.json").read_text())
        assert len(info["effects"]["stems"]) == len(record["instruments"]) == len(info["fonts"])
        assert set(info["effects"]) == {"room", "stems", "mix"}


# ------------------------------------------------------------------------------------ absence, splits


def test_absence_leaves_bass_piano_and_guitar_out_of_their_share_of_songs() -> None:
    tracks = track_numbers("train", SIZES["demo"].songs["train"])
    for absence, rates in ((False, PART_RATES), (True, ABSENCE_RATES)):
        songs = [arrange_track_fast(0, t, "demo", absence) for t in tracks]
        for cls, key in ((BASS, "bass"), (PIANO, "piano"), (GUITAR, "guitar")):
            without = sum(not any(not i.is_drum and class_of(i.program) == cls for i in pm.instruments) for pm in songs)
            expected = (1 - rates[key]) * len(tracks)
            # Part draws are spread evenly over a split: the count is the rate's, rounded up or down.
            assert abs(without - expected) < 1, (key, without, expected)


def test_one_split_is_the_same_songs_and_is_not_a_training_set(synth_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "test-only"
    manifest = build_dataset(root, size="tiny", seed=0, splits=("test",), workers=1, progress=False)
    assert list(manifest["splits"]) == ["test"] and manifest["built_splits"] == ["test"]
    assert not (root / "slakh" / "train").exists()
    for sub in ("slakh/test", "test_track"):
        for path in (synth_root / sub).iterdir():
            assert path.read_bytes() == (root / sub / path.name).read_bytes()
    assert is_complete(root) and not is_complete(root, SPLITS)
    with pytest.raises(ActivityError, match="built_splits"):
        build_dataset(root, size="tiny", seed=0, workers=1, progress=False)


def test_bad_splits_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="--splits takes distinct names"):
        build_dataset(tmp_path, size="tiny", splits=("test", "test"), workers=1, progress=False)
    with pytest.raises(ActivityError, match="--font-per must be one of"):
        build_dataset(tmp_path, size="tiny", font_per="bar", workers=1, progress=False)


# ------------------------------------------------------------------------- experiments/cross_font.py


def cross_font(*args: str):
    """``experiments/cross_font.py ARGS`` as a user runs it, from the repository root."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, str(repo / "experiments" / "cross_font.py"), *args], cwd=repo, env=env,
                          capture_output=True, text=True)


def test_cross_font_refuses_a_held_out_font_of_the_training_family(tmp_path: Path) -> None:
    done = cross_font("--size", "tiny", "--data", str(tmp_path), "--held-out-font", "TimGM6mb")
    assert done.returncode == 2 and "is the in-domain font too" in done.stderr
    if installed("sf_GMbank"):
        done = cross_font("--size", "tiny", "--data", str(tmp_path), "--held-out-font", "sf_GMbank")
        assert done.returncode == 2 and "shares samples with TimGM6mb (family TimGM6mb)" in done.stderr
    assert not any(tmp_path.iterdir()), "nothing may be built before the fonts are checked"


@pytest.mark.skipif(not installed(HELD_OUT_FONT), reason=f"{HELD_OUT_FONT} is not installed "
                    f"(apt-get install {FONTS[HELD_OUT_FONT].package})")
def test_cross_font_scores_both_splits_with_the_present_everywhere_baseline(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = cross_font("--size", "tiny", "--data", str(tmp_path), "--workers", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["splits"]) == {"in-domain (TimGM6mb)", f"held-out ({HELD_OUT_FONT})"}
    a, b = result["splits"]["in-domain (TimGM6mb)"], result["splits"][f"held-out ({HELD_OUT_FONT})"]
    assert a["clips"] == b["clips"] == 6 and a["songs"] == b["songs"] == 2
    labels = json.loads((tmp_path / "synth-tiny-test" / "slakh" / "test_labels.json").read_text())
    truth = np.array(list(labels.values()))
    share = truth.mean(axis=0)
    # "present everywhere": F1 = 2p / (1 + p) per class with positives, 0 for a class with none.
    expected = np.where(share > 0, 2 * share / (1 + share), 0.0).mean()
    assert a["present_macro_f1"] == b["present_macro_f1"] == pytest.approx(expected)
    for r in (a, b):
        assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["frame_macro_f1"] <= 1.0 and 0.0 < r["mAP"] <= 1.0
    manifest = json.loads((tmp_path / f"synth-tiny-test-{HELD_OUT_FONT}" / "manifest.json").read_text())
    assert manifest["soundfont"]["name"] == Path(FONTS[HELD_OUT_FONT].path).name and manifest["built_splits"] == ["test"]
