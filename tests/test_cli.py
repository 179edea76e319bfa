"""The three commands, called in-process on the tiny model and the tiny synthetic set."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from activity import infer, train
from activity.constants import CLASSES, NUM_CLASSES

import plot_pianoroll  # the repository root is on pytest's path (pyproject.toml)

REPO = Path(__file__).resolve().parents[1]

TINY_TRAIN = ["--encoder", "tiny", "--gru-hidden", "8", "--gru-layers", "1", "--batch-size", "2",
              "--num-workers", "0", "--quiet", "--frame-loss-weight", "0.5", "--mix-prob", "0.5"]


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tiny"
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(out), "--epochs", "2", *TINY_TRAIN])
    assert code == 0
    return out


def test_train_writes_the_run_folder(trained: Path) -> None:
    for name in ("best/config.json", "best/model.safetensors", "best/thresholds.json", "last/model/model.safetensors",
                 "last/trainer_state.pt", "history.csv", "curves.png"):
        assert (trained / name).is_file(), name
    rows = list(csv.DictReader(open(trained / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_macro_f1"]) <= 1 and np.isfinite(float(r["val_loss"])) for r in rows)
    thresholds = json.loads((trained / "best" / "thresholds.json").read_text())
    assert thresholds["classes"] == list(CLASSES) and len(thresholds["thresholds"]) == NUM_CLASSES


def test_resume_gives_the_same_weights(synth_root: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    common = ["--data", str(synth_root / "slakh"), "--epochs", "2", *TINY_TRAIN]
    assert train.main([*common, "--out", str(tmp_path / "whole")]) == 0
    assert train.main([*common, "--out", str(tmp_path / "cut"), "--stop-after-steps", "3"]) == 0
    assert not (tmp_path / "cut" / "history.csv").exists()  # stopped inside epoch 1
    assert train.main(["--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    whole = load_file(tmp_path / "whole" / "last" / "model" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "last" / "model" / "model.safetensors")
    assert whole.keys() == cut.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], cut[key], err_msg=key)
    assert (tmp_path / "cut" / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()


def test_train_refuses_to_overwrite_a_run(trained: Path, synth_root: Path, capsys) -> None:
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(trained), *TINY_TRAIN])
    assert code == 2
    assert "already holds a run" in capsys.readouterr().err


def test_init_from_starts_at_the_saved_weights(trained: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    from safetensors.numpy import load_file

    out = tmp_path / "again"
    # Learning rates 0: the one step must leave the weights exactly as --init-from gave them, also when
    # the model is rebuilt for another dropout rate.
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(out), "--init-from", str(trained / "best"),
                       "--max-steps", "1", "--lr-head", "0", "--lr-encoder", "0", "--gru-hidden", "32",
                       "--encoder-dropout", "0.2",
                       *[a for a in TINY_TRAIN if a not in ("--gru-hidden", "8")]])
    assert code == 0
    assert f"weights from {trained / 'best'}" in capsys.readouterr().out
    start = load_file(trained / "best" / "model.safetensors")
    after = load_file(out / "last" / "model" / "model.safetensors")
    assert start.keys() == after.keys()
    for key in start:
        np.testing.assert_array_equal(start[key], after[key], err_msg=key)
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["gru_hidden"] == 8, "shape from the checkpoint"
    assert config["encoder_config"]["attention_dropout"] == 0.2
    assert json.loads((trained / "best" / "config.json").read_text())["encoder_config"]["attention_dropout"] == 0.0
    assert (out / "best" / "thresholds.json").is_file()


def test_init_from_a_missing_folder_names_the_flag(synth_root: Path, tmp_path: Path, capsys) -> None:
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(tmp_path / "x"),
                       "--init-from", str(tmp_path / "nope"), *TINY_TRAIN])
    assert code == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "nope" in err and "Traceback" not in err


def test_extra_train_adds_another_folders_clips(synth_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    source = synth_root / "slakh"
    labels = json.loads((source / "train_labels.json").read_text())
    kept = dict(sorted(labels.items())[:4])
    extra = tmp_path / "second"
    (extra / "train").mkdir(parents=True)
    for name in kept:
        shutil.copy(source / "train" / name, extra / "train" / name)
    (extra / "train_labels.json").write_text(json.dumps(kept))
    shutil.copytree(source / "midi", extra / "midi")
    code = train.main(["--data", str(source), "--extra-train", str(extra), "--out", str(tmp_path / "run"),
                       "--max-steps", "2", "--stop-after-steps", "1", *TINY_TRAIN])
    assert code == 0
    out = capsys.readouterr().out
    assert "found 4 train clips" in out and str(extra / "train") in out
    total = len(labels) + 4
    assert f"for {total} of {total} training clips" in out, "frame truth from both folders' midi/"
    assert f"({total // 2} per epoch)" in out, "batches drawn from both folders"
    assert train.main(["--out", str(tmp_path / "run"), "--resume", "--quiet"]) == 0
    resumed = capsys.readouterr().out
    assert "found 4 train clips" in resumed and "resuming" in resumed, "the saved run keeps its extra folder"


def test_extra_train_refuses_the_data_folder_again(synth_root: Path, tmp_path: Path, capsys) -> None:
    code = train.main(["--data", str(synth_root / "slakh"), "--extra-train", str(synth_root / "slakh"),
                       "--out", str(tmp_path / "run"), *TINY_TRAIN])
    assert code == 2
    err = capsys.readouterr().err
    assert "--extra-train" in err and "same folder as --data" in err and "Traceback" not in err
    code = train.main(["--data", str(synth_root / "slakh"), "--extra-train", str(tmp_path / "nope"),
                       "--out", str(tmp_path / "run"), *TINY_TRAIN])
    assert code == 2
    err = capsys.readouterr().err
    assert "--extra-train: data folder" in err and "nope" in err and "Traceback" not in err


def test_infer_prints_the_course_report(trained: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    code = infer.main(["--ckpt", str(trained / "best"), "--data", str(synth_root / "slakh"), "--out", str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    for row in (*CLASSES, "micro avg", "macro avg", "weighted avg", "samples avg"):
        assert row in text
    report = json.loads((tmp_path / "report_test.json").read_text())
    assert report["split"] == "test" and set(report["thresholds"]) == set(CLASSES)
    assert report["macro_f1"] == pytest.approx(report["classification_report"]["macro avg"]["f1-score"])


def test_infer_threshold_override_and_split(trained: Path, synth_root: Path, capsys) -> None:
    assert infer.main(["--ckpt", str(trained / "best"), "--data", str(synth_root / "slakh"), "--split", "validation",
                       "--threshold", "0.999"]) == 0
    assert "--threshold 0.999" in capsys.readouterr().out
    assert infer.main(["--ckpt", str(trained / "best"), "--threshold", "1.5"]) == 2
    assert "--threshold must be between 0 and 1" in capsys.readouterr().err


def test_infer_audio_outputs(trained: Path, synth_root: Path, tmp_path: Path) -> None:
    song = sorted((synth_root / "test_track").glob("*.flac"))[0]
    assert infer.main(["--ckpt", str(trained / "best"), "--audio", str(song), "--out", str(tmp_path)]) == 0
    npz = np.load(tmp_path / f"{song.stem}.npz")
    import soundfile

    seconds = soundfile.info(str(song)).duration
    assert npz["probs"].shape[1] == NUM_CLASSES
    assert abs(npz["probs"].shape[0] - seconds * 75) < 2
    np.testing.assert_allclose(np.diff(npz["times"]), 1 / 75, rtol=1e-4)
    rows = list(csv.reader(open(tmp_path / f"{song.stem}.csv")))
    assert rows[0] == ["start_s", "end_s", *CLASSES]
    assert len(rows) - 1 == int(seconds // 5)


def test_plot_pianoroll(trained: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    code = plot_pianoroll.main(["--track", "Track01950", "--test-track-dir", str(synth_root / "test_track"),
                                "--ckpt", str(trained / "best"), "--save-dir", str(tmp_path)])
    assert code == 0
    png = tmp_path / "Track01950.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "macro avg" in out and "frame-level (75 Hz): micro-F1" in out


def test_plot_unknown_track_lists_close_names(trained: Path, synth_root: Path, capsys) -> None:
    code = plot_pianoroll.main(["--track", "Track01959", "--test-track-dir", str(synth_root / "test_track"),
                                "--ckpt", str(trained / "best")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Track01959" in err and "Track01950" in err


@pytest.mark.slow
def test_torchrun_two_processes(synth_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "activity.train", "--data", str(synth_root / "slakh"), "--out", str(tmp_path / "ddp"),
           "--epochs", "1", *TINY_TRAIN]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()
    assert result.stdout.count("found ") == 2  # rank 0 alone reports (train and validation)


def test_plot_song_without_midi(trained: Path, synth_root: Path, tmp_path: Path, capsys) -> None:
    import shutil

    songs = tmp_path / "songs"
    songs.mkdir()
    shutil.copy(synth_root / "test_track" / "Track01950.flac", songs)
    code = plot_pianoroll.main(["--track", "Track01950", "--test-track-dir", str(songs), "--ckpt", str(trained / "best"),
                                "--save-dir", str(tmp_path / "plots")])
    assert code == 0
    out = capsys.readouterr().out
    assert "no MIDI" in out and "macro avg" not in out
    assert (tmp_path / "plots" / "Track01950.png").is_file()


def test_train_flags_and_train_config_are_one_set_of_settings() -> None:
    from dataclasses import fields

    parsed = vars(train.build_parser().parse_args([]))
    assert set(parsed) == {f.name for f in fields(train.TrainConfig)}
    assert train.TrainConfig.from_dict(parsed) == train.TrainConfig()  # the flags' defaults are the config's
    config = train.TrainConfig.from_dict({**parsed, "out": "/x/run", "extra_train": ["/a"], "removed_flag": 1})
    assert config.out == Path("/x/run") and config.extra_train == [Path("/a")]
    assert train.TrainConfig.from_dict(json.loads(config.to_json())) == config
