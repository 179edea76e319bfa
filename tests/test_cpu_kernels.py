"""The CPU fast path (activity.cpu_kernels): same outputs as the model's own forward, rebuilt when weights change,
checked against float32 before use; the positional convolution in float32 on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activity.constants import CLIP_SAMPLES, num_frames
from activity.model import ActivityModel
from activity import cpu_kernels
from activity.cpu_kernels import FastFeatureExtractor, Float32Conv1d, inference_model
from activity.precision import BF16_TOLERANCE, INT8, INT8_TOLERANCE, checked_autocast_dtype, probe_clips
from activity.predict import predict_clips


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
    # The bf16 copy itself, not a float32 fallback, met that bound.
    assert next(runner.encoder.encoder.layers.parameters()).dtype == torch.bfloat16
    assert next(model.encoder.parameters()).dtype == torch.float32  # the user's model is untouched


def test_fast_copy_is_cached_and_rebuilt_when_a_weight_changes() -> None:
    torch.manual_seed(1)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    x = audio((2, 8000), seed=2).numpy()
    first, _ = inference_model(model, torch.device("cpu"), torch.float32)
    bf16, _ = inference_model(model, torch.device("cpu"), torch.bfloat16)
    again, _ = inference_model(model, torch.device("cpu"), torch.float32)
    # One copy per dtype: a bf16 pass and its float32 re-check (activity.api) do not rebuild each other's.
    assert again is first and bf16 is not first
    assert inference_model(model, torch.device("cpu"), torch.bfloat16)[0] is bf16
    before = predict_clips(model, x, dtype="fp32").clip_probs
    with torch.no_grad():  # an optimiser step changes weights in place
        model.encoder.feature_extractor.conv_layers[1].conv.weight.mul_(-1.5)
        model.encoder.encoder.layers[0].feed_forward.output_dense.weight.mul_(3.0)
    rebuilt, _ = inference_model(model, torch.device("cpu"), torch.float32)
    assert rebuilt is not first
    assert inference_model(model, torch.device("cpu"), torch.bfloat16)[0] is not bf16
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


def test_the_positional_convolution_runs_in_float32_on_the_cpu(model: ActivityModel) -> None:
    runner, _ = inference_model(model, torch.device("cpu"), torch.bfloat16)
    conv = runner.encoder.encoder.pos_conv_embed.conv
    assert isinstance(conv, Float32Conv1d) and conv.weight.dtype == torch.float32
    # The model's own forward under CPU autocast (training, validation) too: the conv sees float32.
    seen: list[torch.dtype] = []
    handle = model.encoder.encoder.pos_conv_embed.conv.register_forward_hook(
        lambda module, args, output: seen.extend([args[0].dtype, output.dtype]))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(audio((1, 8000)))
        with torch.no_grad():
            model(audio((1, 8000)))
    finally:
        handle.remove()
    assert seen == [torch.float32] * 4
    # Same parameters and keys as transformers' module: checkpoints load as before.
    assert "encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0" in model.state_dict()


def broken_builder(broken_dtypes: tuple[torch.dtype, ...]):
    """``build_fast_model`` whose copies in ``broken_dtypes`` compute a wrong positional embedding."""
    real = cpu_kernels.build_fast_model

    def build(model, dtype):
        fast = real(model, dtype)
        if dtype in broken_dtypes:
            with torch.no_grad():
                fast.encoder.encoder.pos_conv_embed.conv.weight.mul_(-4.0)
        return fast

    return build


def test_a_fast_copy_that_disagrees_with_float32_is_replaced(monkeypatch, capsys) -> None:
    torch.manual_seed(2)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    x = audio((2, CLIP_SAMPLES), seed=3).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    monkeypatch.setattr(cpu_kernels, "build_fast_model", broken_builder((torch.bfloat16,)))
    got = predict_clips(model, x, dtype="bf16")
    line = capsys.readouterr().err.strip()
    assert line.startswith("bf16 on this CPU disagrees with float32 (max ") and line.endswith("); using float32")
    deviation = float(line.split("(max ")[1].split(")")[0])
    assert deviation > BF16_TOLERANCE
    np.testing.assert_allclose(got.frame_probs, expected.frame_probs.numpy(), atol=1e-5)
    runner, _ = inference_model(model, torch.device("cpu"), torch.bfloat16)
    assert next(runner.encoder.encoder.layers.parameters()).dtype == torch.float32
    predict_clips(model, x, dtype="bf16")
    assert capsys.readouterr().err == ""  # decided once for these weights

    # A float32 copy that is wrong too: the model itself runs.
    other = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    monkeypatch.setattr(cpu_kernels, "build_fast_model", broken_builder((torch.bfloat16, torch.float32)))
    got = predict_clips(other, x, dtype="bf16")
    err = capsys.readouterr().err
    assert "bf16 on this CPU disagrees" in err and "using the model itself" in err
    runner, autocast = inference_model(other, torch.device("cpu"), torch.bfloat16)
    assert runner is other and not autocast
    with torch.no_grad():
        np.testing.assert_allclose(got.clip_probs, other(torch.from_numpy(x)).clip_probs.numpy(), atol=1e-6)


def test_a_correct_fast_copy_passes_the_guard_silently(model: ActivityModel, capsys) -> None:
    torch.manual_seed(4)
    fresh = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    predict_clips(fresh, audio((1, 8000)).numpy(), dtype="bf16")
    assert capsys.readouterr().err == ""


def test_autocast_that_disagrees_with_float32_falls_back_once(capsys) -> None:
    torch.manual_seed(5)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).train()
    cpu = torch.device("cpu")

    def wrong_under_autocast(module, args, output):
        return output * -3.0 if torch.is_autocast_enabled("cpu") else output

    handle = model.encoder.encoder.pos_conv_embed.register_forward_hook(wrong_under_autocast)
    rng = torch.get_rng_state()
    try:
        assert checked_autocast_dtype(model, cpu, torch.bfloat16) == torch.float32
        assert checked_autocast_dtype(model, cpu, torch.bfloat16) == torch.float32
    finally:
        handle.remove()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bf16 on this CPU disagrees with float32 (max ")
    # The check leaves the run as it found it: mode and random numbers (a resumed run must match).
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert checked_autocast_dtype(model, cpu, torch.float32) == torch.float32

    healthy = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1)
    assert checked_autocast_dtype(healthy, cpu, torch.bfloat16) == torch.bfloat16
    assert capsys.readouterr().err == ""


def test_the_probe_clip_is_fixed() -> None:
    probe = probe_clips()
    assert probe.shape == (1, CLIP_SAMPLES) and probe.dtype == torch.float32
    assert torch.equal(probe, probe_clips())
    # Pinned values: the same input on every platform (PCG64 and numpy's sine are platform-independent).
    assert abs(float(probe.abs().mean()) - 0.29783) < 1e-4 and abs(float(probe.abs().max()) - 0.64232) < 1e-4


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (2, 2), (4, 2), (5, 3), (1, 1)])
def test_a_convolution_summed_from_tap_views_equals_conv1d(kernel: int, stride: int) -> None:
    torch.manual_seed(kernel * 10 + stride)
    hidden = torch.randn(301, 6)  # time-major (L, C)
    weight = torch.randn(5, 6, kernel)  # (C_out, C_in, k), Conv1d's layout
    expected = torch.nn.functional.conv1d(hidden.t()[None], weight, stride=stride)[0].t()
    folded = weight.permute(0, 2, 1).reshape(5, -1).t()  # (k * C_in, C_out), as FastFeatureExtractor keeps it
    # A view that does not start its storage (a block of a longer clip) must give the same answer.
    padded = torch.cat([torch.randn(7, 6), hidden])[7:]
    for source in (hidden, padded):
        torch.testing.assert_close(cpu_kernels._strided_conv(source, folded, kernel, stride), expected,
                                   atol=1e-5, rtol=1e-5)


def test_a_batch_gives_each_clip_what_it_gives_alone(model: ActivityModel) -> None:
    x = audio((3, 9000), seed=7)
    fast = FastFeatureExtractor(model.encoder.feature_extractor, torch.float32)
    with torch.no_grad():
        together = fast(x)
        alone = torch.cat([fast(x[i : i + 1]) for i in range(3)])
    assert torch.equal(together, alone)


def test_attention_is_the_flash_kernel_in_float32_and_products_in_bf16(model: ActivityModel) -> None:
    fp32 = cpu_kernels.build_fast_model(model, torch.float32)
    bf16 = cpu_kernels.build_fast_model(model, torch.bfloat16)
    assert fp32.encoder.config._attn_implementation == "sdpa"
    assert bf16.encoder.config._attn_implementation == cpu_kernels._CPU_ATTENTION
    assert model.encoder.config._attn_implementation == "sdpa"  # the model's own config is untouched


def test_int8_copy_quantizes_the_transformer_products_and_stays_near_float32(model: ActivityModel, capsys) -> None:
    if cpu_kernels.int8_engine() is None:
        pytest.skip("this PyTorch has no quantized engine")
    x = audio((3, CLIP_SAMPLES), seed=8).numpy()
    with torch.no_grad():
        direct = model(torch.from_numpy(x))
    int8 = predict_clips(model, x, dtype="int8")
    assert capsys.readouterr().err == ""  # within the bound: no fallback line
    difference = np.abs(int8.frame_probs - direct.frame_probs.numpy()).max()
    assert 0 < difference < INT8_TOLERANCE  # int8 really ran, and stayed close
    runner, autocast = inference_model(model, torch.device("cpu"), INT8)
    assert not autocast
    linears = [m for m in runner.encoder.encoder.modules() if isinstance(m, (torch.nn.Linear, cpu_kernels.Int8Linear))]
    assert linears and all(isinstance(m, cpu_kernels.Int8Linear) for m in linears)
    assert isinstance(runner.encoder.feature_extractor, FastFeatureExtractor)  # the front end stays float32
    assert all(type(m) is torch.nn.Linear for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))


def test_int8_that_disagrees_with_float32_is_replaced(monkeypatch, capsys) -> None:
    if cpu_kernels.int8_engine() is None:
        pytest.skip("this PyTorch has no quantized engine")
    torch.manual_seed(6)
    model = ActivityModel.from_encoder("tiny", gru_hidden=8, gru_layers=1).eval()
    x = audio((2, CLIP_SAMPLES), seed=9).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    monkeypatch.setattr(cpu_kernels, "build_fast_model", broken_builder((INT8,)))
    got = predict_clips(model, x, dtype="int8")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("int8 on this CPU disagrees with float32 (max ")
    assert float(lines[0].split("(max ")[1].split(")")[0]) > INT8_TOLERANCE
    np.testing.assert_allclose(got.frame_probs, expected.frame_probs.numpy(), atol=1e-5)
    runner, _ = inference_model(model, torch.device("cpu"), INT8)
    assert not any(isinstance(m, cpu_kernels.Int8Linear) for m in runner.modules())


def test_int8_engine_follows_the_onednn_cap(monkeypatch) -> None:
    engines = torch.backends.quantized.supported_engines
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    if "onednn" in engines:
        assert cpu_kernels.int8_engine() == "onednn"  # AMX int8: 2-3x fbgemm's VNNI kernels
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    if "x86" in engines:
        assert cpu_kernels.int8_engine() == "x86"  # without AMX fbgemm is as fast or faster
    assert cpu_kernels.int8_engine(["qnnpack"]) is None
