"""What the commands print while they run: the model they loaded, score lines that say what they average,
progress bars that move per item, and no empty output folder after a failed run."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from activity import infer
from activity.api import DEMO_CHECKPOINT, Detector, training_data
from activity.constants import CLASSES
from activity.datasets import read_split


def test_audio_names_the_model_once(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), str(song[0]), "--out", str(tmp_path / "o"),
                       "--formats", "json"])
    assert code == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("model: ")]
    assert len(lines) == 1  # once, not per file
    assert f"checkpoint {ckpt} (encoder tiny, " in lines[0] and "M parameters" in lines[0]
    assert "training data unknown" in lines[0] and "on cpu" in lines[0]


def test_training_data_of_the_demo_and_of_a_run(tmp_path: Path) -> None:
    assert "TimGM6mb" in training_data(DEMO_CHECKPOINT)
    # A run folder: best/ beside last/train_args.json, whose --data is a synthetic set with a manifest.
    run, data = tmp_path / "run", tmp_path / "set" / "slakh"
    (run / "last").mkdir(parents=True)
    data.mkdir(parents=True)
    (run / "last" / "train_args.json").write_text(json.dumps({"data": str(data), "extra_train": ["x", "y"]}))
    (tmp_path / "set" / "manifest.json").write_text(json.dumps({"soundfonts": [{"name": "A"}, {"name": "B"}],
                                                                "effects": {"library": "pedalboard"}}))
    assert training_data(run / "best") == f"trained on {data} + 2 more folder(s) (synthetic, SoundFont A+B, effects)"
    assert training_data(tmp_path / "elsewhere").startswith("training data unknown")


def test_each_score_line_says_which_classes_it_averages(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    audio, midi = song
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(audio), "--midi", str(midi), "--out", str(tmp_path / "o"),
                       "--formats", "json"])
    assert code == 0
    printed = capsys.readouterr().out
    scores = json.loads((tmp_path / "o" / "Track01950.json").read_text())["scores"]
    with_truth = scores["segment"]["per_class_f1"].keys()
    assert 0 < len(with_truth) < 9  # the test is only meaningful when some classes have no truth
    named = re.search(r"classes with truth: (.+)", printed).group(1).split(", ")
    assert sorted(named) == sorted(with_truth)
    without = 9 - len(with_truth)
    frame = re.search(r"frame-level \(75 Hz\): .*macro-F1 (\d\.\d{4})  \(macro over all 9 classes; the (\d) without "
                      r"truth score 0; (\d\.\d{4}) over the (\d) with truth\)", printed)
    assert frame and int(frame.group(2)) == without and int(frame.group(4)) == len(with_truth)
    # The frame macro-F1 is the mean of all nine per-class F1s, the segment/event ones of those with truth.
    per_class = scores["frame"]["per_class_f1"]
    assert float(frame.group(1)) == pytest.approx(sum(per_class) / 9, abs=1e-4)
    truth_mean = sum(per_class[CLASSES.index(c)] for c in with_truth) / len(with_truth)
    assert float(frame.group(3)) == pytest.approx(truth_mean, abs=1e-4)
    for level in ("segment-based", "event-based"):
        line = next(line for line in printed.splitlines() if line.strip().startswith(level))
        assert f"(macro over the {len(with_truth)} with truth" in line
    seg = scores["segment"]
    assert seg["macro_f1"] == pytest.approx(sum(seg["per_class_f1"].values()) / len(with_truth), abs=1e-6)


def test_a_failed_run_leaves_no_empty_out_folder(ckpt: Path, song, tmp_path: Path, capsys) -> None:
    wrong = tmp_path / "wrong.mid"
    wrong.write_bytes(b"not a MIDI file")
    out = tmp_path / "new" / "deeper"
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--midi", str(wrong), "--out", str(out)])
    assert code == 2 and "error: MIDI file" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # both folders it created are gone
    # A checkpoint that fails to load: the same.
    code = infer.main(["--ckpt", str(tmp_path / "no-such-ckpt"), "--audio", str(song[0]), "--out", str(out)])
    assert code == 2 and not (tmp_path / "new").exists()
    # A folder that existed before stays, and so does one that got files before a later song failed.
    kept = tmp_path / "kept"
    kept.mkdir()
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), "--midi", str(wrong), "--out", str(kept)])
    assert code == 2 and kept.is_dir()
    broken = tmp_path / "zz_broken.wav"  # sorts after songs/Track01950.flac
    broken.write_bytes(b"RIFF....WAVEfmt nothing")
    partial = tmp_path / "partial"
    code = infer.main(["--ckpt", str(ckpt), "--audio", str(song[0]), str(broken), "--out", str(partial),
                       "--formats", "json"])
    assert code == 2 and [p.name for p in partial.iterdir()] == ["Track01950.json"]


def test_split_scoring_bar_counts_clips(ckpt: Path, synth_root: Path, monkeypatch) -> None:
    from activity import api

    bars: list[Recorder] = []

    class Recorder:
        def __init__(self, *args, total=None, disable=False, **kwargs) -> None:
            self.total, self.disable, self.steps = total, disable, []
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.steps.append(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

    monkeypatch.setattr(api, "tqdm", Recorder)
    index = read_split(synth_root / "slakh", "test")
    Detector(ckpt, device="cpu", dtype="fp32", batch_size=2).split_probs(index, progress=True)
    (bar,) = bars
    assert bar.total == len(index) and sum(bar.steps) == len(index) and not bar.disable
    assert max(bar.steps) <= 32 and len(bar.steps) == -(-len(index) // 32)  # every few batches, not once at the end


def test_synth_bar_advances_as_each_song_finishes(monkeypatch) -> None:
    """Two workers, one slow job: the fast jobs move the bar long before the slow one is done."""
    import tqdm

    from activity.synth import build

    events: list[tuple[str, float]] = []

    class Recorder:
        def __init__(self, *args, total=None, initial=0, **kwargs) -> None:
            events.append(("start", time.monotonic()))
            self.total, self.n = total, initial

        def update(self, n: int = 1) -> None:
            self.n += n
            events.append(("update", time.monotonic()))

        def close(self) -> None:
            events.append(("close", time.monotonic()))

    monkeypatch.setattr(tqdm, "tqdm", Recorder)
    import progress_jobs

    records = build._run_jobs([3.0, 0.0, 0.0], workers=2, progress=True, job=progress_jobs.sleep_job)
    assert sorted(r["seconds"] for r in records) == [0.0, 0.0, 3.0]
    kinds = [kind for kind, _ in events]
    assert kinds == ["start", "update", "update", "close"]  # the bar starts at the first finished song (initial=1)
    times = [t for _, t in events]
    assert times[2] - times[0] > 1.5  # the slow song came last, well after the first: no wait for all of them
