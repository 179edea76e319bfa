"""``activity.infer --audio``: every format, the scores against MIDI, and the bad inputs of its flags."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile

from activity import infer
from activity.constants import CLASSES, FRAME_RATE, NUM_CLASSES
from activity.errors import ActivityError
from activity.evaluate import frame_scores
from activity.outputs import FORMATS, parse_formats
from activity.sed_metrics import SongTruth, frame_f1_by_sed_scores_eval, sed_scores

ALL = ",".join(FORMATS)


def test_parse_formats() -> None:
    assert parse_formats("npz, HTML,npz") == ("npz", "html")
    with pytest.raises(ActivityError, match="unknown format 'mp4'; choose from npz, csv, json, audacity, sv, html"):
        parse_formats("npz,mp4")
    with pytest.raises(ActivityError, match="comma-separated"):
        parse_formats("npz,,csv")


def test_every_format_is_written_and_agrees(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    audio, midi = song
    out = tmp_path / "out"
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(audio), "--midi", str(midi), "--out", str(out),
                       "--formats", ALL, "--threshold", "0.5"])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "warning" not in captured.err  # the song's own MIDI fits its length
    # Segment and event scores print beside the frame score.
    assert re.search(r"frame-level \(75 Hz\): +micro-F1 \d\.\d{4}", printed)
    assert re.search(r"segment-based \(1 s\): +micro-F1 \d\.\d{4}  macro-F1 \d\.\d{4}", printed)
    assert re.search(r"event-based \(collar 0\.2 s / 20 %\): micro-F1 \d\.\d{4}", printed)
    names = {p.name for p in out.iterdir()}
    assert names == {f"Track01950{s}" for s in (".npz", ".csv", ".json", ".labels.txt", ".sv.csv", ".html")}

    npz = np.load(out / "Track01950.npz")
    probs = npz["probs"]
    assert probs.shape[1] == NUM_CLASSES
    doc = json.loads((out / "Track01950.json").read_text())
    assert doc["classes"] == list(CLASSES) and doc["event_rule"] == {"min_duration_s": 0.25, "min_gap_s": 0.25}
    assert len(doc["segments"]) == int(soundfile.info(str(audio)).duration // 5)
    # With MIDI the JSON holds the printed scores too.
    assert doc["scores"]["midi"] == str(midi)
    assert f"micro-F1 {doc['scores']['segment']['micro_f1']:.4f}" in printed
    assert f"micro-F1 {doc['scores']['event']['micro_f1']:.4f}" in printed
    assert f"micro-F1 {doc['scores']['frame']['micro_f1']:.4f}" in printed
    seg_rows = list(csv.reader(open(out / "Track01950.csv")))[1:]
    for row, seg in zip(seg_rows, doc["segments"]):
        assert [float(v) for v in row[2:]] == pytest.approx([seg["probs"][c] for c in CLASSES], abs=1e-4)

    # The Audacity label track: start<TAB>end<TAB>class, one line per JSON event, same times.
    lines = (out / "Track01950.labels.txt").read_text().splitlines()
    assert len(lines) == len(doc["events"]) > 0
    for line, event in zip(lines, doc["events"]):
        start, end, label = re.fullmatch(r"(\d+\.\d{6})\t(\d+\.\d{6})\t([A-Za-z ]+)", line).groups()
        assert label == event["class"] in CLASSES
        assert float(start) == pytest.approx(event["start_s"]) and float(end) == pytest.approx(event["end_s"])
        assert float(end) - float(start) >= 0.25 - 1e-6
        # Each event is a run of frames at or above the threshold, maximal after the gap rule.
        c = CLASSES.index(label)
        first, stop = round(float(start) * FRAME_RATE), round(float(end) * FRAME_RATE)
        assert probs[first, c] >= 0.5 and probs[stop - 1, c] >= 0.5
    # Sonic Visualiser's CSV: time + 9 columns, one row per frame, the npz's values.
    sv = np.loadtxt(out / "Track01950.sv.csv", delimiter=",", skiprows=1)
    assert (out / "Track01950.sv.csv").read_text().splitlines()[0] == "time," + ",".join(CLASSES)
    assert sv.shape == (probs.shape[0], 1 + NUM_CLASSES)
    np.testing.assert_allclose(sv[:, 0], np.arange(len(sv)) / FRAME_RATE, atol=1e-6)
    np.testing.assert_allclose(sv[:, 1:], probs, atol=6e-5)
    page = (out / "Track01950.html").read_text()
    assert "data:audio/ogg;base64," in page and "http://" not in page and "https://" not in page


def test_unknown_format_is_one_error_line(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--out", str(tmp_path), "--formats", "npz,wav"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --formats: unknown format 'wav'") and err.count("\n") == 1


def test_unwritable_out_folder(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--out", str(blocker / "sub")])
    assert code == 2
    assert f"error: --out {blocker / 'sub'}: cannot write there" in capsys.readouterr().err


def one_piano_note(path: Path, end: float) -> Path:
    """A MIDI file with one piano note from 0 s to ``end`` s."""
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=90, pitch=60, start=0.0, end=end))
    pm.instruments.append(piano)
    pm.write(str(path))
    return path


def test_midi_longer_than_the_audio_is_refused(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    wrong = one_piano_note(tmp_path / "wrong.mid", 300.0)
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--midi", str(wrong), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: --midi" in err and "notes end at 300.0 s" in err and "is it this song's MIDI?" in err


def test_midi_much_shorter_than_the_audio_warns(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    short = one_piano_note(tmp_path / "short.mid", 3.0)
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--midi", str(short), "--out", str(tmp_path / "o"),
                       "--formats", "json"])
    assert code == 0
    captured = capsys.readouterr()
    assert f"warning: --midi {short}: its notes end at 3.0 s but" in captured.err
    assert "the rest is scored as silence" in captured.err and "scores against" in captured.out


def test_bad_event_rule_flags(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--out", str(tmp_path), "--min-duration", "-1"])
    assert code == 2
    assert "error: --min-duration must be a number of seconds >= 0, got -1.0" in capsys.readouterr().err


def test_a_folder_of_pairs_is_scored_per_song_and_pooled(ckpt: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    songs = synth_root / "test_track"
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(songs), "--midi", str(songs), "--out", str(tmp_path),
                       "--formats", "json"])
    assert code == 0
    printed = capsys.readouterr().out
    count = len(list(songs.glob("*.flac")))
    assert printed.count("scores against ") == count
    assert f"all {count} scored songs pooled:" in printed


def _truth_and_probs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 30 s song where every class has truth, and noisy probabilities around it."""
    rng = np.random.default_rng(seed)
    frames = 30 * FRAME_RATE
    truth = np.zeros((frames, NUM_CLASSES), np.uint8)
    for c in range(NUM_CLASSES):
        for _ in range(3):
            start = rng.integers(0, frames - 200)
            truth[start : start + rng.integers(20, 200), c] = 1
    probs = np.clip(0.35 * truth + rng.random(truth.shape) * 0.6, 0, 1).astype(np.float32)
    return truth, probs


def test_sed_scores_eval_frame_f1_equals_ours() -> None:
    """The cross-check: sed_scores_eval on one-frame segments is our frame-level F1, class by class."""
    truth, probs = _truth_and_probs()
    thresholds = np.linspace(0.4, 0.6, NUM_CLASSES)
    ours = frame_scores(truth, probs, thresholds)
    theirs = frame_f1_by_sed_scores_eval([SongTruth("a", probs, truth, len(truth) / FRAME_RATE)], thresholds)
    assert 0.2 < ours["micro_f1"] < 0.95  # neither trivial nor perfect
    assert theirs["micro_f1"] == pytest.approx(ours["micro_f1"], abs=1e-9)
    assert [theirs["per_class_f1"][c] for c in CLASSES] == pytest.approx(ours["per_class_f1"], abs=1e-9)


def test_segment_and_event_scores() -> None:
    truth, _ = _truth_and_probs(1)
    perfect = truth.astype(np.float32)
    song = SongTruth("a", perfect, truth, len(truth) / FRAME_RATE)
    scores = sed_scores([song], np.full(NUM_CLASSES, 0.5), min_duration=0.0, min_gap=0.0)
    assert scores["segment"]["micro_f1"] == pytest.approx(1.0) and scores["event"]["micro_f1"] == pytest.approx(1.0)
    assert scores["unscored"] == []
    # Shift every prediction by 0.5 s: the 1 s segments still mostly agree, the 200 ms onset collar never does.
    shifted = np.roll(perfect, int(0.5 * FRAME_RATE), axis=0)
    late = sed_scores([SongTruth("a", shifted, truth, len(truth) / FRAME_RATE)], 0.5, 0.0, 0.0)
    assert late["event"]["micro_f1"] == pytest.approx(0.0)
    assert 0.5 < late["segment"]["micro_f1"] < 1.0


def test_plot_pianoroll_html(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    import base64
    import io

    from activity import pianoroll as plot_pianoroll  # what plot_pianoroll.py runs

    audio, _ = song
    code = plot_pianoroll.main(["--track", "Track01950", "--test-track-dir", str(audio.parent), "--ckpt", str(ckpt),
                                "--save-dir", str(tmp_path), "--html"])
    assert code == 0
    assert f"wrote {tmp_path / 'Track01950.html'}" in capsys.readouterr().out
    page = (tmp_path / "Track01950.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="activity-data">(.*?)</script>', page, re.S).group(1))
    assert data["frameTruth"] is not None and data["segmentTruth"] is not None  # the MIDI's truth is in it
    frames = len(base64.b64decode(data["frameProbs"])) // NUM_CLASSES
    assert frames == data["frames"] > 0
    # The embedded audio is OGG Vorbis of the song's length, decodable by soundfile.
    ogg = base64.b64decode(re.search(r'src="data:audio/ogg;base64,([A-Za-z0-9+/=]+)"', page).group(1))
    samples, rate = soundfile.read(io.BytesIO(ogg))
    assert rate == 24_000 and abs(len(samples) / rate - soundfile.info(str(audio)).duration) < 0.01


def test_midi_pairing_by_name_and_missing_paths(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    audio, midi = song
    other = audio.parent / "Other.flac"
    shutil.copy(audio, other)
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(audio.parent), "--midi", str(audio.parent),
                       "--out", str(tmp_path / "o"), "--formats", "json"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("scores against ") == 1 and f"scores against {midi}" in printed
    assert "no MIDI named Other.mid among --midi: predicted only, no scores" in printed
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(audio), "--midi", str(tmp_path / "nope.mid")])
    assert code == 2
    assert f"error: --midi {tmp_path / 'nope.mid'} is neither a file nor a folder" in capsys.readouterr().err
