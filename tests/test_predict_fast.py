"""The CPU fast path of activity.predict: same outputs as the model's own forward, rebuilt when weights change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activity.constants import CLIP_SAMPLES, num_frames
from activity.model import ActivityModel
from activity.predict import FastFeatureExtractor, inference_model, predict_clips


@pytest.fixture(scope="module")
def model() -> ActivityModel:
    torch.manual_seed(0)
    return ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()


def audio(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    # A DC offset and a loud tone make the folded group-norm statistics non-trivial.
    t = np.arange(shape[-1]) / 24000.0
    x = 0.1 * rng.standard_normal(shape) + 0.5 * np.sin(2 * np.pi * 440 * t) + 0.2
    return torch.from_numpy(x.astype(np.float32))


@pytest.mark.parametrize("length", [CLIP_SAMPLES, 400, 8123])
def test_fast_front_end_equals_the_hubert_front_end_in_float32(model: ActivityModel, length: int) -> None:
    extractor = model.encoder.feature_extractor
    assert FastFeatureExtractor.supports(model.encoder)
    x = audio((3, length))
    with torch.no_grad():
        expected = extractor(x)
        got = FastFeatureExtractor(extractor, torch.float32)(x)
    assert got.shape == expected.shape == (3, extractor.conv_layers[-1].conv.out_channels, num_frames(length))
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_fast_path_matches_the_model_in_float32_and_bf16(model: ActivityModel) -> None:
    x = audio((4, CLIP_SAMPLES), seed=1)
    with torch.no_grad():
        direct = model(x)
    runner, autocast = inference_model(model, torch.device("cpu"), torch.float32)
    assert runner is not model and not autocast
    fp32 = predict_clips(model, x.numpy(), dtype="fp32")
    np.testing.assert_allclose(fp32.clip_probs, direct.clip_probs.numpy(), atol=1e-6)
    np.testing.assert_allclose(fp32.frame_probs, direct.frame_probs.numpy(), atol=1e-6)
    bf16 = predict_clips(model, x.numpy(), dtype="bf16")
    assert np.abs(bf16.frame_probs - direct.frame_probs.numpy()).max() < 0.02
    runner, _ = inference_model(model, torch.device("cpu"), torch.bfloat16)
    assert next(runner.encoder.encoder.parameters()).dtype == torch.bfloat16
    assert next(model.encoder.parameters()).dtype == torch.float32  # the user's model is untouched


def test_fast_copy_is_cached_and_rebuilt_when_a_weight_changes() -> None:
    torch.manual_seed(1)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    x = audio((2, 8000), seed=2).numpy()
    first, _ = inference_model(model, torch.device("cpu"), torch.float32)
    again, _ = inference_model(model, torch.device("cpu"), torch.float32)
    assert again is first
    before = predict_clips(model, x, dtype="fp32").clip_probs
    with torch.no_grad():  # an optimiser step changes weights in place
        model.encoder.feature_extractor.conv_layers[1].conv.weight.mul_(-1.5)
        model.encoder.encoder.layers[0].feed_forward.output_dense.weight.mul_(3.0)
    rebuilt, _ = inference_model(model, torch.device("cpu"), torch.float32)
    assert rebuilt is not first
    after = predict_clips(model, x, dtype="fp32").clip_probs
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).clip_probs.numpy()
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert np.abs(after - before).max() > 1e-4


def test_training_mode_and_unsupported_front_ends_use_the_model_itself(model: ActivityModel) -> None:
    model.train()
    try:
        runner, autocast = inference_model(model, torch.device("cpu"), torch.bfloat16)
        assert runner is model and autocast
    finally:
        model.eval()
    config = dict(model.config.encoder_config, feat_extract_norm="layer")
    layer_norm_model = ActivityModel(type(model.config)(encoder_config=config, gru_hidden=8, gru_layers=1)).eval()
    assert not FastFeatureExtractor.supports(layer_norm_model.encoder)
    runner, _ = inference_model(layer_norm_model, torch.device("cpu"), torch.float32)
    assert runner is layer_norm_model
