"""What happens when things go wrong: interrupted training, bad checkpoints, bad audio, safety."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from activity import infer, train
from activity.audio import load_audio
from activity.errors import ActivityError

import fault_check  # tests/fault_check.py, beside this file

REPO = Path(__file__).resolve().parents[1]

TINY = ["--encoder", "tiny", "--gru-hidden", "8", "--gru-layers", "1", "--batch-size", "2", "--num-workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def noise_data(tmp_path_factory) -> Path:
    return fault_check.make_noise_data(tmp_path_factory.mktemp("noise"))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_resumable_state(noise_data: Path, tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "activity.train", "--data", str(noise_data), "--out", str(out), "--epochs", "1000",
           *TINY]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "history.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # wait until training is under way (an epoch is done)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert "saved a resumable state" in stdout and "--resume" in stdout
    assert (out / "last" / "trainer_state.pt").is_file()
    resumed = train.main(["--out", str(out), "--resume", "--quiet", "--stop-after-steps", "1"])
    assert resumed == 0


def test_kill_9_and_resume_lose_nothing(tmp_path: Path, capsys) -> None:
    assert fault_check.main(["--epochs", "2", "--kills", "1", "--seed", "0", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "final weights identical" in out and "all checks passed" in out


def test_resume_without_a_run(tmp_path: Path, capsys) -> None:
    assert train.main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--batch-size", "0", "--batch-size must be at least 1"),
    ("--warmup", "2", r"--warmup must be in \[0, 1\]"),
    ("--lr-head", "-1", "--lr-head must not be negative"),
    ("--encoder-dropout", "1", r"--encoder-dropout must be in \[0, 1\)"),
])
def test_bad_training_flags(noise_data: Path, tmp_path: Path, capsys, flag: str, value: str, message: str) -> None:
    assert train.main(["--data", str(noise_data), "--out", str(tmp_path / "r"), *TINY, flag, value]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_missing_data_folder_and_split(tmp_path: Path, capsys) -> None:
    assert train.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "data folder" in capsys.readouterr().err
    (tmp_path / "d" / "train").mkdir(parents=True)
    assert infer.main(["--data", str(tmp_path / "d"), "--ckpt", str(tmp_path / "ck")]) == 2
    assert "split folder" in capsys.readouterr().err


def test_unknown_encoder_is_one_clear_line(noise_data: Path, tmp_path: Path, capsys) -> None:
    assert train.main(["--data", str(noise_data), "--out", str(tmp_path / "r"), *TINY[2:], "--encoder", "no-such-thing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-such-thing" in err and "Traceback" not in err


def test_missing_checkpoint(tmp_path: Path, noise_data: Path, capsys) -> None:
    assert infer.main(["--ckpt", str(tmp_path / "none"), "--data", str(noise_data), "--split", "validation"]) == 2
    err = capsys.readouterr().err
    assert "none" in err and "Traceback" not in err


@pytest.mark.parametrize("content, message", [(b"", "could not be read"), (b"RIFF\x00\x00junk", "could not be read")])
def test_unreadable_audio(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "song.wav"
    path.write_bytes(content)
    with pytest.raises(ActivityError, match=f"song.wav {message}"):
        load_audio(path)


def test_empty_audio_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros((0, 2), np.float32), 44100)
    with pytest.raises(ActivityError, match="empty.wav is empty"):
        load_audio(path)


def test_audio_is_resampled_and_mixed(tmp_path: Path) -> None:
    from activity.constants import SAMPLE_RATE

    path = tmp_path / "tone.flac"
    t = np.arange(44100 * 2) / 44100
    soundfile.write(path, np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1) * 0.5, 44100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (2 * SAMPLE_RATE,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio) - 440) < 1


def test_no_pickle_loading_anywhere() -> None:
    """Weights load only from safetensors or with torch.load(weights_only=True); no remote code."""
    import re

    for path in (REPO / "activity").rglob("*.py"):
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "trust_remote_code=True" not in text, path
        assert "allow_pickle=True" not in text, path
