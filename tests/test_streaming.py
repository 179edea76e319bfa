"""Long-file prediction in blocks gives exactly what the whole-file path gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from activity import windows
from activity.constants import SAMPLE_RATE
from activity.errors import ActivityError
from activity.model import ActivityModel
from activity.windows import predict_file, predict_song


@pytest.fixture(scope="module")
def model() -> ActivityModel:
    torch.manual_seed(0)
    return ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()


def write(path: Path, seconds: float, rate: int, channels: int, seed: int = 0) -> Path:
    audio = np.random.default_rng(seed).standard_normal((int(seconds * rate), channels)) * 0.1
    soundfile.write(str(path), audio.astype(np.float32), rate, subtype="FLOAT")
    return path


def whole_file(model, path: Path, **kwargs):
    """The whole-file path: the audio read at once, then predict_song."""
    from activity.audio import load_audio

    return predict_song(model, load_audio(path), SAMPLE_RATE, name=f"audio file {path}", **kwargs)


@pytest.mark.parametrize("seconds, rate, channels", [
    (17.3, SAMPLE_RATE, 1),   # 3 full windows and a tail window
    (15.0, SAMPLE_RATE, 1),   # whole windows only
    (13.2, 44_100, 2),        # resampled as a stream, stereo
    (3.0, SAMPLE_RATE, 1),    # shorter than one window
])
def test_streaming_equals_predict_file(model, tmp_path: Path, monkeypatch, seconds, rate, channels) -> None:
    # Small blocks, so windows straddle many block boundaries.
    monkeypatch.setattr(windows, "BLOCK_FRAMES", 7_001)
    path = write(tmp_path / "song.wav", seconds, rate, channels)
    whole = whole_file(model, path, batch_size=2, dtype="fp32")
    blocks: list[np.ndarray] = []
    stream = predict_file(model, path, batch_size=2, dtype="fp32", progress=False, audio_sink=blocks.append)
    assert stream.frame_probs.shape == whole.frame_probs.shape
    assert stream.segment_probs.shape == whole.segment_probs.shape == (int(seconds // 5), 9)
    np.testing.assert_array_equal(stream.frame_probs, whole.frame_probs)
    np.testing.assert_array_equal(stream.segment_probs, whole.segment_probs)
    np.testing.assert_array_equal(stream.frame_times, whole.frame_times)
    assert stream.duration == whole.duration
    # The sink saw the whole 24 kHz song, in order.
    assert sum(map(len, blocks)) == round(whole.duration * SAMPLE_RATE)


def test_streaming_memory_does_not_grow_with_the_song(model, tmp_path: Path) -> None:
    """Peak numpy memory (tracemalloc) of a 65 s song is that of a 25 s one plus the longer outputs,
    where the whole-file path holds the extra 40 s of audio several times over."""
    import tracemalloc

    def peak(run, path: Path) -> int:
        tracemalloc.start()
        run(model, path, batch_size=2, dtype="fp32")
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short = write(tmp_path / "short.wav", 25.0, 44_100, 2)
    long = write(tmp_path / "long.wav", 65.0, 44_100, 2, seed=1)
    extra_audio = 40 * SAMPLE_RATE * 4  # bytes of 40 s of mono float32 at 24 kHz
    extra_outputs = 2 * 40 * 75 * 9 * 4 + 8 * 40 * 75  # frame rolls (and a copy) + frame times
    streamed = peak(lambda *a, **k: predict_file(*a, progress=False, **k), long) - \
        peak(lambda *a, **k: predict_file(*a, progress=False, **k), short)
    whole = peak(whole_file, long) - peak(whole_file, short)
    assert whole > 2 * extra_audio  # the measure sees the audio the whole-file path holds
    assert streamed < extra_outputs + extra_audio / 4, (streamed, whole)


def test_streaming_errors_name_the_file(model, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(ActivityError, match="bad.wav could not be read"):
        predict_file(model, bad, progress=False)
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros((0, 1), np.float32), SAMPLE_RATE)
    with pytest.raises(ActivityError, match="empty.wav is empty"):
        predict_file(model, empty, progress=False)
