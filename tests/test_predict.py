"""Library inference: clip batches, whole songs at any rate and length, files, devices and dtypes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from activity.audio import prepare
from activity.constants import CLIP_SAMPLES, FRAME_RATE, HOP, NUM_CLASSES, SAMPLE_RATE, num_frames
from activity.errors import ActivityError
from activity.model import ActivityModel
from activity.precision import resolve_dtype
from activity.predict import predict_clips, resolve_device
from activity.windows import predict_file, predict_song, window_starts


@pytest.fixture(scope="module")
def model() -> ActivityModel:
    torch.manual_seed(0)
    return ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32)


def test_predict_clips_matches_the_model_and_ignores_batching(model: ActivityModel) -> None:
    clips = noise((5, CLIP_SAMPLES))
    whole = predict_clips(model, clips, batch_size=8, dtype="fp32")
    assert whole.clip_probs.shape == (5, NUM_CLASSES) and whole.frame_probs.shape == (5, 374, NUM_CLASSES)
    assert whole.clip_probs.dtype == np.float32 and whole.frame_probs.dtype == np.float32
    with torch.no_grad():
        direct = model(torch.from_numpy(clips))
    np.testing.assert_allclose(whole.clip_probs, direct.clip_probs.numpy(), atol=1e-6)
    single = predict_clips(model, clips, batch_size=1, dtype="fp32")
    np.testing.assert_allclose(single.frame_probs, whole.frame_probs, atol=1e-5)
    batches = predict_clips(model, iter([clips[:2], torch.from_numpy(clips[2:])]), batch_size=2, dtype="fp32")
    np.testing.assert_allclose(batches.clip_probs, whole.clip_probs, atol=1e-5)
    bf16 = predict_clips(model, clips, dtype="bf16")
    assert np.abs(bf16.clip_probs - whole.clip_probs).max() < 0.05


def test_predict_clips_restores_training_mode_and_rejects_bad_input(model: ActivityModel) -> None:
    model.train()
    predict_clips(model, noise((1, 8000)), dtype="fp32")
    assert model.training
    model.eval()
    with pytest.raises(ActivityError, match="one length"):
        predict_clips(model, [noise((1, 8000)), noise((1, 9000))], dtype="fp32")
    with pytest.raises(ActivityError, match="shorter than one frame"):
        predict_clips(model, noise((2, 300)), dtype="fp32")
    with pytest.raises(ActivityError, match="batch-size"):
        predict_clips(model, noise((2, 8000)), batch_size=0)


def test_song_of_37_3_s_stereo_at_44_1_khz(model: ActivityModel) -> None:
    stereo = noise((2, int(37.3 * 44100)), seed=1)
    song = predict_song(model, stereo, 44100, batch_size=3, dtype="fp32")
    expected = num_frames(round(37.3 * SAMPLE_RATE))
    assert abs(song.frame_probs.shape[0] - expected) <= 1 and song.frame_probs.shape[1] == NUM_CLASSES
    assert song.segment_probs.shape == (7, NUM_CLASSES)  # time first
    assert song.frame_times.shape == (song.frame_probs.shape[0],)
    np.testing.assert_allclose(song.frame_times[:3], np.arange(3) / FRAME_RATE)
    assert np.all((song.frame_probs > 0) & (song.frame_probs < 1))

    # Segment s is the model's own auto-pool over the 5 s window s; its frames are that window's frames.
    mono = prepare(stereo, 44100)
    windows = np.stack([mono[s * CLIP_SAMPLES : (s + 1) * CLIP_SAMPLES] for s in range(7)])
    clips = predict_clips(model, windows, dtype="fp32")
    np.testing.assert_allclose(song.segment_probs, clips.clip_probs, atol=1e-5)
    np.testing.assert_allclose(song.frame_probs[375 * 3 : 375 * 3 + 374], clips.frame_probs[3], atol=1e-5)
    # The tail (37.3 s - 35 s) comes from a full 5 s window ending at the song's end, on the frame grid.
    tail_start = window_starts(len(mono))[-1]
    assert tail_start % HOP == 0 and tail_start + CLIP_SAMPLES <= len(mono)
    tail = predict_clips(model, mono[None, tail_start : tail_start + CLIP_SAMPLES], dtype="fp32")
    first, total = tail_start // HOP, song.frame_probs.shape[0]
    after_regular = 7 * 375 - 1  # the first frame no regular window covers
    stop = min(first + 374, total)
    assert total - stop <= 1  # at most the very last frame lies beyond the aligned tail window
    np.testing.assert_allclose(song.frame_probs[after_regular:stop],
                               tail.frame_probs[0, after_regular - first : stop - first], atol=1e-5)


def test_window_boundary_frames_are_filled_from_their_neighbours(model: ActivityModel) -> None:
    song = predict_song(model, noise((2 * CLIP_SAMPLES,), seed=2), SAMPLE_RATE, dtype="fp32")
    assert song.frame_probs.shape == (num_frames(2 * CLIP_SAMPLES), NUM_CLASSES)
    gap = 374  # straddles samples 119680-120080: neither window sees it whole
    np.testing.assert_allclose(song.frame_probs[gap], song.frame_probs[[gap - 1, gap + 1]].mean(0), atol=1e-6)
    assert window_starts(2 * CLIP_SAMPLES) == [0, CLIP_SAMPLES]
    assert window_starts(2 * CLIP_SAMPLES + 5 * HOP) == [0, CLIP_SAMPLES, CLIP_SAMPLES + 5 * HOP]


@pytest.mark.parametrize("samples, frames", [(2 * SAMPLE_RATE, num_frames(2 * SAMPLE_RATE)), (400, 1), (399, 0), (0, 0)])
def test_short_audio(model: ActivityModel, samples: int, frames: int) -> None:
    song = predict_song(model, noise((samples,), seed=3), SAMPLE_RATE, dtype="fp32")
    assert song.frame_probs.shape == (frames, NUM_CLASSES) and song.frame_times.shape == (frames,)
    assert song.segment_probs.shape == (0, NUM_CLASSES)
    if frames:
        # Run at its own length, not padded to 5 s.
        direct = predict_clips(model, noise((1, samples), seed=3), dtype="fp32")
        np.testing.assert_allclose(song.frame_probs, direct.frame_probs[0], atol=1e-6)


def test_predict_file_reads_any_rate_and_channels(model: ActivityModel, tmp_path: Path) -> None:
    import soundfile

    audio = noise((int(6.5 * 22050), 2), seed=4)
    soundfile.write(tmp_path / "song.wav", audio, 22050, subtype="FLOAT")
    from_file = predict_file(model, tmp_path / "song.wav", dtype="fp32")
    from_array = predict_song(model, audio, 22050, dtype="fp32")
    np.testing.assert_allclose(from_file.frame_probs, from_array.frame_probs, atol=1e-6)
    assert from_file.segment_probs.shape == (1, NUM_CLASSES)
    assert from_file.duration == pytest.approx(6.5, abs=1e-3)
    with pytest.raises(ActivityError, match="does not exist"):
        predict_file(model, tmp_path / "missing.wav")


def test_devices_and_dtypes() -> None:
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ActivityError, match="--device tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ActivityError, match="CUDA is not available"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert resolve_dtype("fp32", cpu) == torch.float32 and resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ActivityError, match="expected auto, bf16, fp32 or int8"):
        resolve_dtype("fp16", cpu)
