"""The encoder seam: every kind trains, saves, reloads and predicts; 16 kHz encoders stay aligned in time.

Each kind runs as a tiny random model written to a local folder the way its released files come (MERT's
remote-code layout for MERT-v0, ``save_pretrained`` for the transformers classes), so these tests also
cover ``--encoder /path`` (issue 29).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from transformers import (Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel, Wav2Vec2Config,
                          Wav2Vec2Model, WavLMConfig, WavLMModel)

from activity import backbones, infer, train
from activity.backbones.base import Backbone
from activity.backbones.grid import Resampler, output_positions, to_output_grid
from activity.constants import CLIP_SAMPLES, HOP, NUM_CLASSES, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from activity.encoder import PRESETS, preset_config, resolve_encoder
from activity.errors import ActivityError
from activity.model import ActivityConfig, ActivityModel
from activity.predict import predict_clips
from activity.windows import predict_song

import plot_pianoroll  # the repository root is on pytest's path (pyproject.toml)

REPO = Path(__file__).resolve().parents[1]

SMALL = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=[8] * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, hidden_dropout=0.0, attention_dropout=0.0,
             feat_proj_dropout=0.0)


def _mert_v0_folder(folder: Path) -> Path:
    """MERT-v0's layout: remote-code config (``mert_model``), a 16 kHz preprocessor, old weight-norm keys."""
    torch.manual_seed(0)
    reference = HubertModel(HubertConfig(**SMALL, feat_extract_norm="group", feat_proj_layer_norm=True)).eval()
    folder.mkdir(parents=True)
    config = {**reference.config.to_dict(), "model_type": "mert_model", "architectures": ["MERTModel"],
              "auto_map": {"AutoModel": "modeling_MERT.MERTModel"}, "feature_extractor_cqt": False, "deepnorm": False}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "sampling_rate": 16000,
                                                                "feature_extractor_type": "Wav2Vec2FeatureExtractor"}))
    state = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                  "weight_v"): v
             for k, v in reference.state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def _saved(folder: Path, model: nn.Module) -> Path:
    model.save_pretrained(str(folder))
    return folder


KINDS: dict[str, Any] = {
    "hubert": _mert_v0_folder,
    "wav2vec2": lambda folder: _saved(folder, Wav2Vec2Model(Wav2Vec2Config(**SMALL))),
    "wavlm": lambda folder: _saved(folder, WavLMModel(WavLMConfig(**SMALL))),
    # music2vec-v1's class; a short positional convolution keeps it tiny.
    "data2vec-audio": lambda folder: _saved(folder, Data2VecAudioModel(Data2VecAudioConfig(
        **{**SMALL, "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5}))),
}


@pytest.fixture(scope="module")
def encoder_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    return {kind: make(root / kind) for kind, make in KINDS.items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_trains_saves_reloads_predicts_and_plots(kind: str, encoder_folders: dict[str, Path],
                                                            synth_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = train.main(["--data", str(synth_root / "slakh"), "--out", str(out), "--encoder", str(encoder_folders[kind]),
                       "--gru-hidden", "8", "--gru-layers", "1", "--batch-size", "2", "--num-workers", "0", "--quiet",
                       "--max-steps", "1", "--epochs", "1"])
    assert code == 0
    config = json.loads((out / "best" / "config.json").read_text())
    assert (config["encoder_kind"], config["encoder_sample_rate"], config["encoder_frame_rate"]) == (kind, 16000, 50.0)

    model = ActivityModel.from_pretrained(out / "best")  # strict: every key, every shape
    assert model.encoder.kind == kind and model.resampler is not None
    clips = np.random.default_rng(0).standard_normal((3, CLIP_SAMPLES)).astype(np.float32) * 0.1
    result = predict_clips(model, clips, dtype="fp32")
    assert result.frame_probs.shape == (3, num_frames(CLIP_SAMPLES), NUM_CLASSES)
    assert result.clip_probs.shape == (3, NUM_CLASSES) and np.all(np.isfinite(result.frame_probs))
    song = predict_song(model, np.concatenate([clips.ravel(), clips[0, :7777]]), SAMPLE_RATE, dtype="fp32")
    assert song.frame_probs.shape == (num_frames(3 * CLIP_SAMPLES + 7777), NUM_CLASSES)
    assert song.segment_probs.shape == (3, NUM_CLASSES)

    capsys.readouterr()
    assert infer.main(["--ckpt", str(out / "best"), "--data", str(synth_root / "slakh"), "--dtype", "fp32"]) == 0
    assert "macro avg" in capsys.readouterr().out
    code = plot_pianoroll.main(["--track", "Track01950", "--test-track-dir", str(synth_root / "test_track"),
                                "--ckpt", str(out / "best"), "--save-dir", str(tmp_path), "--dtype", "fp32"])
    assert code == 0
    assert (tmp_path / "Track01950.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "frame-level (75 Hz)" in capsys.readouterr().out


def test_mert_v0_folder_reproduces_the_stock_model(encoder_folders: dict[str, Path]) -> None:
    source = resolve_encoder(encoder_folders["hubert"])
    assert (source.kind, source.sample_rate, source.frame_rate) == ("hubert", 16000, 50.0)
    torch.manual_seed(0)
    reference = HubertModel(HubertConfig(**SMALL, feat_extract_norm="group", feat_proj_layer_norm=True)).eval()
    model = ActivityModel.from_encoder(encoder_folders["hubert"], gru_hidden=4, gru_layers=1).eval()
    audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = reference(audio, output_hidden_states=True).hidden_states
        mine = model.encoder.hidden_states(audio)
    assert len(mine) == len(theirs) == 3
    torch.testing.assert_close(mine[0], theirs[0], rtol=0, atol=1e-6)


def test_strict_loading_names_keys_and_sets_a_wrapper_head_aside(encoder_folders: dict[str, Path], tmp_path: Path,
                                                                capsys) -> None:
    from safetensors.torch import load_file, save_file

    folder = encoder_folders["data2vec-audio"]
    state = load_file(str(folder / "model.safetensors"))

    def variant(name: str, weights: dict[str, torch.Tensor]) -> Path:
        copy = tmp_path / name
        copy.mkdir()
        (copy / "config.json").write_text((folder / "config.json").read_text())
        save_file({k: v.contiguous() for k, v in weights.items()}, str(copy / "model.safetensors"))
        return copy

    missing = {k: v for k, v in state.items() if k != "encoder.layers.1.final_layer_norm.weight"}
    with pytest.raises(ActivityError, match=r"missing keys encoder\.layers\.1\.final_layer_norm\.weight"):
        ActivityModel.from_encoder(variant("missing", missing))
    extra = {**state, "encoder.layers.9.attention.q_proj.weight": torch.zeros(16, 16)}
    with pytest.raises(ActivityError, match=r"unexpected keys encoder\.layers\.9\.attention\.q_proj\.weight"):
        ActivityModel.from_encoder(variant("extra", extra))
    # A checkpoint saved from a wrapper (Data2VecAudioForCTC): the encoder under its prefix, a head beside it.
    wrapped = {**{f"data2vec_audio.{k}": v for k, v in state.items()}, "lm_head.weight": torch.zeros(32, 16)}
    model = ActivityModel.from_encoder(variant("wrapped", wrapped), gru_hidden=4, gru_layers=1)
    assert "ignoring 1 key(s) of the wrapper's head: lm_head.weight" in capsys.readouterr().err
    torch.testing.assert_close(model.encoder.state_dict()["encoder.layers.1.final_layer_norm.weight"],
                               state["encoder.layers.1.final_layer_norm.weight"])


def test_presets_of_the_course_table() -> None:
    for name, kind, rate in (("mert-v1-95m", "hubert", 24000), ("mert-v1-330m", "hubert", 24000),
                             ("mert-v0", "hubert", 16000), ("mert-v0-public", "hubert", 16000),
                             ("music2vec-v1", "data2vec-audio", 16000)):
        preset = PRESETS[name]
        assert (preset.kind, preset.sample_rate, preset.frame_rate) == (kind, rate, rate / 320)
        source = resolve_encoder(f"{name}-random")
        assert source.weights is None and (source.kind, source.sample_rate) == (kind, rate)
    for name in ("mert-v0", "mert-v0-public", "music2vec-v1"):
        config = preset_config(name)
        assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (768, 12, 3072)
    assert preset_config("music2vec-v1").model_type == "data2vec-audio"


def test_released_16k_names_need_their_weights(hub_offline) -> None:
    hub_offline()
    with pytest.raises(ActivityError, match=r"music2vec-v1 means music2vec's pretrained weights \(m-a-p/music2vec-v1\)"
                                            r".*music2vec-v1-random"):
        resolve_encoder("music2vec-v1")
    with pytest.raises(ActivityError, match=r"m-a-p/MERT-v0-public.*mert-v0-public-random"):
        resolve_encoder("mert-v0-public")


def test_old_config_files_are_mert_at_24k_and_bad_ones_are_named(tmp_path: Path) -> None:
    demo = json.loads((REPO / "checkpoints" / "demo" / "config.json").read_text())
    assert "encoder_kind" not in demo  # written before the seam
    model = ActivityModel.from_pretrained(REPO / "checkpoints" / "demo")
    assert (model.config.encoder_kind, model.config.encoder_sample_rate, model.config.encoder_frame_rate) == \
        ("hubert", 24000, 75.0)
    assert model.resampler is None and model.encoder.frame_rate == 75.0
    with pytest.raises(ActivityError, match=r"unknown encoder kind 'clap'; known: hubert, wav2vec2, wavlm"):
        ActivityModel(ActivityConfig.from_dict({**demo, "encoder_kind": "clap"}))
    with pytest.raises(ActivityError, match=r"encoder_frame_rate is 50 Hz, but the encoder's front end gives 75 Hz"):
        ActivityModel(ActivityConfig.from_dict({**demo, "encoder_frame_rate": 50}))
    with pytest.raises(ActivityError, match="encoder_sample_rate must be a positive"):
        ActivityConfig.from_dict({**demo, "encoder_sample_rate": "16k"})


def test_the_fast_copy_steps_aside_once_for_kinds_it_does_not_cover(encoder_folders: dict[str, Path], capsys) -> None:
    model = ActivityModel.from_encoder(encoder_folders["wav2vec2"], gru_hidden=4, gru_layers=1).eval()
    clips = np.zeros((1, CLIP_SAMPLES), np.float32)
    predict_clips(model, clips, dtype="fp32")
    predict_clips(model, clips, dtype="fp32")
    err = capsys.readouterr().err
    assert err.count("the CPU fast copy covers hubert encoders, not wav2vec2") == 1
    mert_v0 = ActivityModel.from_encoder(encoder_folders["hubert"], gru_hidden=4, gru_layers=1).eval()
    predict_clips(mert_v0, clips, dtype="fp32")  # HuBERT at 16 kHz: served by the fast copy
    assert "fast copy covers" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Rates and time


def test_resampler_keeps_the_band_and_the_time() -> None:
    resampler = Resampler(SAMPLE_RATE, 16000)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    tones = torch.from_numpy(np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 10000 * t)]).astype(np.float32))
    out = resampler(tones)
    assert out.shape == (2, 80000)
    inner = out[:, 2000:-2000]
    spectrum = np.abs(np.fft.rfft(inner[0].numpy()))
    assert abs(np.argmax(spectrum) * 16000 / inner.shape[1] - 1000) < 1
    assert float(inner[0].pow(2).mean().sqrt()) == pytest.approx(2 ** -0.5, rel=1e-3)
    assert float(inner[1].pow(2).mean().sqrt()) < 1e-4  # above 8 kHz: gone, not folded to 6 kHz
    impulse = torch.zeros(1, CLIP_SAMPLES)
    impulse[0, 61_200] = 1.0  # 2.55 s
    assert int(resampler(impulse).abs().argmax()) == 40_800


def test_output_grid_positions() -> None:
    # MERT-v1's grid is the output grid; at 16 kHz with MERT's front end frame t sits at 2t/3 - 5/24.
    torch.testing.assert_close(output_positions(5, SAMPLE_RATE, HOP, RECEPTIVE_FIELD), torch.arange(5).double())
    expected = torch.arange(5).double() * 2 / 3 - 5 / 24
    torch.testing.assert_close(output_positions(5, 16000, 320, 400), expected)
    features = torch.arange(10.0)[None, :, None]  # frame j holds j: interpolation gives the position back
    got = to_output_grid(features, 9, 16000, 320, 400)[0, :, 0]
    torch.testing.assert_close(got, (torch.arange(9) * 2 / 3 - 5 / 24).clamp(min=0))  # held at the first frame
    same = torch.randn(2, 374, 3)
    assert to_output_grid(same, 374, SAMPLE_RATE, HOP, RECEPTIVE_FIELD) is not None
    torch.testing.assert_close(to_output_grid(same, 374, SAMPLE_RATE, HOP, RECEPTIVE_FIELD), same, rtol=0, atol=0)


class EnergyBackbone(Backbone, nn.Module):
    """A deterministic encoder: one hidden state, each frame's Hann-weighted energy ``(B, T, 1)``."""

    kind = "energy"

    def __init__(self, hop: int, receptive_field: int) -> None:
        nn.Module.__init__(self)
        self.hop, self.receptive_field = hop, receptive_field

    @classmethod
    def build(cls, fields, *, sample_rate, mask_time_prob=0.0, source="encoder_config"):
        encoder = cls(int(fields["hop"]), int(fields["receptive_field"]))
        encoder.sample_rate = sample_rate
        return encoder

    def config_dict(self) -> dict[str, Any]:
        return {"hop": self.hop, "receptive_field": self.receptive_field}

    num_hidden_states = 1
    hidden_size = 1

    def hidden_states(self, waveform: torch.Tensor) -> list[torch.Tensor]:
        frames = waveform.unfold(1, self.receptive_field, self.hop)  # (B, T, R)
        window = torch.hann_window(self.receptive_field, periodic=False, dtype=waveform.dtype)
        return [(frames.square() * window).sum(-1, keepdim=True)]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}


ONSETS_S = (0.5, 2.0137, 4.3)


def _energy_model(sample_rate: int, hop: int, field: int) -> ActivityModel:
    config = ActivityConfig(encoder_config={"hop": hop, "receptive_field": field}, encoder="energy",
                            encoder_kind="energy", encoder_sample_rate=sample_rate,
                            encoder_frame_rate=sample_rate / hop, do_normalize=False, gru_hidden=2, gru_layers=1)
    return ActivityModel(config).eval()


@pytest.mark.parametrize("sample_rate, hop, field", [
    (24000, 320, 400),    # MERT-v1: 75 Hz
    (16000, 320, 400),    # MERT-v0, music2vec-v1: 50 Hz
    (16000, 320, 2000),   # 50 Hz frames each seeing 125 ms: centred 56 ms later than the output frames' start
])
def test_an_onset_lands_in_its_75_hz_frame_whatever_the_encoder_rate(sample_rate: int, hop: int, field: int,
                                                                     monkeypatch) -> None:
    monkeypatch.setitem(backbones.BACKBONES, "energy", EnergyBackbone)
    model = _energy_model(sample_rate, hop, field)
    clips = torch.zeros(len(ONSETS_S), CLIP_SAMPLES)
    for row, onset in enumerate(ONSETS_S):
        clips[row, round(onset * SAMPLE_RATE)] = 1.0
    with torch.no_grad():
        energy = model.frame_features(clips)[..., 0]  # (3, 374) on the 75 Hz grid
        native = model.encoder.hidden_states(model.encoder_input(clips))[0][..., 0]  # the encoder's own frames
    assert energy.shape == (len(ONSETS_S), num_frames(CLIP_SAMPLES))
    # Output frame t covers [320 t, 320 t + 400) at 24 kHz: the onset is nearest the centre of this one.
    expected = np.array([round((onset - RECEPTIVE_FIELD / 2 / SAMPLE_RATE) * SAMPLE_RATE / HOP) for onset in ONSETS_S])
    np.testing.assert_allclose(energy.argmax(dim=1).numpy(), expected, atol=1)

    # The check can fail: stretching the encoder's frames over the clip without their centre times (what
    # F.interpolate does) misplaces the onset of the wide-field encoder by 3 frames.
    stretched = torch.nn.functional.interpolate(native[:, None], size=energy.shape[1], mode="linear")[:, 0]
    miss = np.abs(stretched.argmax(dim=1).numpy() - expected).max()
    assert miss > 1 if field == 2000 else miss <= 1


def test_frontend_warm_start_fits_a_16k_encoder_on_its_own_frames(encoder_folders: dict[str, Path]) -> None:
    from activity.frontend import fit_frontend

    model = ActivityModel.from_encoder(encoder_folders["wav2vec2"], gru_hidden=4, gru_layers=1)
    before = model.encoder.feature_extractor.conv_layers[0].conv.weight.detach().clone()
    clips = [(torch.randn(CLIP_SAMPLES, generator=torch.Generator().manual_seed(i)) * 0.1,) for i in range(4)]
    # The target is the log-mel of each 16 kHz frame's 400 samples: its frame count must be the encoder's.
    losses = fit_frontend(model.encoder, clips, steps=2, batch_size=2, prepare=model.encoder_input)
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert not torch.equal(before, model.encoder.feature_extractor.conv_layers[0].conv.weight)


def test_grow_widens_a_16k_encoder_without_changing_it(encoder_folders: dict[str, Path]) -> None:
    from activity.grow import grow_feed_forward

    model = ActivityModel.from_encoder(encoder_folders["data2vec-audio"], gru_hidden=4, gru_layers=1)
    wide, difference = grow_feed_forward(model, 64)
    assert difference <= 1e-4 and wide.config.encoder_kind == "data2vec-audio"
    assert wide.config.encoder_config["intermediate_size"] == 64 and wide.config.encoder_sample_rate == 16000
