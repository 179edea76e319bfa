"""The HubertModel-based MERT encoder: presets, MERT-format folders, training traps, normalisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel

from activity.constants import CLIP_SAMPLES, num_frames
from activity.encoder import (
    build_encoder,
    encoder_hidden_states,
    hubert_config,
    load_encoder,
    normalize_waveform,
    preset_config,
    random_preset,
    resolve_encoder,
    time_mask,
)
from activity.errors import ActivityError
from activity.model import ActivityModel

TINY_FIELDS = dict(
    hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=[8] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_bias=False,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="group",
    feat_proj_layer_norm=True, hidden_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
)


def reference_hubert(stable: bool = False, seed: int = 0) -> HubertModel:
    """A tiny stock HubertModel with MERT's front end, in eval mode."""
    torch.manual_seed(seed)
    config = HubertConfig(**TINY_FIELDS, do_stable_layer_norm=stable, layerdrop=0.05, mask_time_prob=0.05)
    return HubertModel(config).eval()


def old_weight_norm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the parametrised weight-norm keys to MERT's published ``weight_g`` / ``weight_v``."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        renamed[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return renamed


def write_mert_folder(folder: Path, reference: HubertModel, do_normalize: bool = True,
                      state: dict[str, torch.Tensor] | None = None) -> Path:
    """MERT's own file layout: remote-code config.json, preprocessor_config.json, pytorch_model.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    config = reference.config.to_dict()
    config.update({
        "model_type": "mert_model", "architectures": ["MERTModel"],
        "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"},
        "attention_relax": -1.0, "deepnorm": False, "feature_extractor_cqt": False, "feature_extractor_cqt_bins": 336,
        "sample_rate": 24000,
    })
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": do_normalize, "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
         "padding_side": "right", "padding_value": 0, "return_attention_mask": True, "sampling_rate": 24000}))
    if state is None:
        state = old_weight_norm_names(reference.state_dict())
    torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.fixture()
def audio() -> torch.Tensor:
    return torch.randn(2, CLIP_SAMPLES, generator=torch.Generator().manual_seed(1)) * 0.1


def test_presets_have_mert_architectures() -> None:
    base, large = preset_config("mert-v1-95m"), preset_config("MERT-v1-330M")
    assert (base.hidden_size, base.num_hidden_layers, base.num_attention_heads, base.intermediate_size) == (768, 12, 12, 3072)
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads, large.intermediate_size) == (1024, 24, 16, 4096)
    assert base.do_stable_layer_norm is False and large.do_stable_layer_norm is True
    for config in (base, large, preset_config("compact"), preset_config("tiny")):
        assert list(config.conv_kernel) == [10, 3, 3, 3, 3, 2, 2] and list(config.conv_stride) == [5, 2, 2, 2, 2, 2, 2]
        assert config.layerdrop == 0.0 and config.mask_feature_prob == 0.0
        assert config._attn_implementation == "sdpa"
    assert list(base.conv_dim) == [512] * 7 and base.num_conv_pos_embeddings == 128


def test_compact_is_sized_for_cpu_training() -> None:
    encoder = load_encoder("compact")
    assert 1e6 <= sum(p.numel() for p in encoder.parameters()) <= 3e6


def test_tiny_gives_374_frames_and_every_hidden_state(audio: torch.Tensor) -> None:
    encoder = load_encoder("tiny").eval()
    hidden = encoder_hidden_states(encoder, audio)
    assert len(hidden) == encoder.config.num_hidden_layers + 1
    assert all(h.shape == (2, 374, encoder.config.hidden_size) for h in hidden)
    assert num_frames(CLIP_SAMPLES) == 374


@pytest.mark.parametrize("stable", [False, True])
def test_mert_folder_loads_strictly_and_reproduces_the_reference(tmp_path: Path, audio: torch.Tensor, stable: bool) -> None:
    reference = reference_hubert(stable=stable)
    state = old_weight_norm_names(reference.state_dict())
    assert "encoder.pos_conv_embed.conv.weight_g" in state and "encoder.pos_conv_embed.conv.weight_v" in state
    folder = write_mert_folder(tmp_path / "mert", reference, state=state)
    encoder = load_encoder(folder).eval()
    assert encoder.config.layerdrop == 0.0  # the folder says 0.05
    with torch.no_grad():
        expected = reference(audio, output_hidden_states=True)
        got = encoder_hidden_states(encoder, audio)
    assert len(got) == len(expected.hidden_states)
    for mine, theirs in zip(got[:-1], expected.hidden_states[:-1]):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(got[-1], expected.last_hidden_state, rtol=0, atol=1e-6)


def test_safetensors_weights_load_too(tmp_path: Path, audio: torch.Tensor) -> None:
    from safetensors.torch import save_file

    reference = reference_hubert(seed=3)
    folder = write_mert_folder(tmp_path / "mert", reference)
    (folder / "pytorch_model.bin").unlink()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(folder / "model.safetensors"))
    encoder = load_encoder(folder).eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(audio).last_hidden_state, reference(audio).last_hidden_state)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    reference = reference_hubert()
    state = old_weight_norm_names(reference.state_dict())
    missing = dict(state)
    del missing["encoder.layers.1.feed_forward.output_dense.weight"]
    write_mert_folder(tmp_path / "missing", reference, state=missing)
    with pytest.raises(ActivityError, match=r"missing keys encoder\.layers\.1\.feed_forward\.output_dense\.weight"):
        load_encoder(tmp_path / "missing")
    extra = dict(state, **{"encoder.layers.2.attention.k_proj.weight": torch.zeros(16, 16)})
    write_mert_folder(tmp_path / "extra", reference, state=extra)
    with pytest.raises(ActivityError, match=r"unexpected keys encoder\.layers\.2\.attention\.k_proj\.weight"):
        load_encoder(tmp_path / "extra")
    wrong = dict(state, **{"feature_projection.projection.weight": torch.zeros(16, 4)})
    write_mert_folder(tmp_path / "shape", reference, state=wrong)
    with pytest.raises(ActivityError, match=r"shape mismatch for feature_projection\.projection\.weight"):
        load_encoder(tmp_path / "shape")


def test_bad_names_and_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ActivityError, match="neither a preset"):
        resolve_encoder("no-such-encoder")
    with pytest.raises(ActivityError, match="neither a preset"):
        resolve_encoder(str(tmp_path / "missing" / "folder"))
    reference = reference_hubert()
    folder = write_mert_folder(tmp_path / "noweights", reference)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ActivityError, match="holds no weights"):
        resolve_encoder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ActivityError, match="no config.json"):
        resolve_encoder(tmp_path / "empty")
    folder = write_mert_folder(tmp_path / "corrupt", reference)
    (folder / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ActivityError, match="could not be read"):
        load_encoder(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "feature_extractor_cqt": True}))
    with pytest.raises(ActivityError, match="feature_extractor_cqt"):
        resolve_encoder(folder)
    # Any frame rate is mapped onto the 75 Hz output grid now: a hop of 480 samples is 50 Hz at 24 kHz.
    (folder / "config.json").write_text(json.dumps({**config, "conv_stride": [5, 2, 2, 2, 2, 2, 3]}))
    assert resolve_encoder(folder).frame_rate == 50.0
    (folder / "config.json").write_text(json.dumps({**config, "conv_stride": [5, 2, 2, 2, 2, 2]}))
    with pytest.raises(ActivityError, match="equal lengths"):
        resolve_encoder(folder)


def test_do_normalize_follows_the_preprocessor_config(tmp_path: Path, audio: torch.Tensor) -> None:
    reference = reference_hubert()
    on = resolve_encoder(write_mert_folder(tmp_path / "on", reference, do_normalize=True))
    off = resolve_encoder(write_mert_folder(tmp_path / "off", reference, do_normalize=False))
    assert on.do_normalize is True and off.do_normalize is False
    assert resolve_encoder("tiny").do_normalize is True  # MERT's value for presets

    torch.manual_seed(0)
    normalized = ActivityModel.from_encoder(tmp_path / "on", gru_hidden=4, gru_layers=1).eval()
    torch.manual_seed(0)
    raw = ActivityModel.from_encoder(tmp_path / "off", gru_hidden=4, gru_layers=1).eval()
    assert normalized.config.do_normalize and not raw.config.do_normalize
    shifted = audio * 3.0 + 0.5
    with torch.no_grad():
        # With normalisation, gain and offset of the input do not matter; without, they do.
        torch.testing.assert_close(normalized(audio).frame_probs, normalized(shifted).frame_probs, atol=1e-5, rtol=0)
        assert (raw(audio).frame_probs - raw(shifted).frame_probs).abs().max() > 1e-4


def test_normalize_waveform_matches_the_feature_extractor_formula(audio: torch.Tensor) -> None:
    x = audio.numpy().astype(np.float64) * 5 + 1
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-7)
    got = normalize_waveform(torch.from_numpy(x).float())
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)
    assert got.dtype == torch.float32


def test_pre_ln_last_hidden_state_is_after_the_final_layer_norm(audio: torch.Tensor) -> None:
    encoder = build_encoder(hubert_config({**TINY_FIELDS, "do_stable_layer_norm": True})).eval()
    captured = {}
    encoder.encoder.layers[-1].register_forward_hook(lambda module, args, out: captured.update(raw=out))
    with torch.no_grad():
        hidden = encoder_hidden_states(encoder, audio)
        normed = encoder.encoder.layer_norm(captured["raw"])
    torch.testing.assert_close(hidden[-1], normed)
    assert (hidden[-1] - captured["raw"]).abs().max() > 1e-3
    assert len(hidden) == 3


def test_train_mode_keeps_every_hidden_state(audio: torch.Tensor) -> None:
    encoder = build_encoder(hubert_config({**TINY_FIELDS, "layerdrop": 0.9})).train()
    assert encoder.config.layerdrop == 0.0
    for _ in range(8):
        assert len(encoder_hidden_states(encoder, audio[:1, :8000])) == 3


def test_spec_augment_is_off_by_default_and_seeded_when_on(audio: torch.Tensor) -> None:
    encoder = load_encoder("tiny").train()  # tiny has no dropout: train and eval differ only by masking
    with torch.no_grad():
        plain = encoder_hidden_states(encoder, audio)[-1]
        torch.testing.assert_close(plain, encoder_hidden_states(encoder.eval(), audio)[-1])
    masked_encoder = load_encoder("tiny", mask_time_prob=0.3).train()
    masked_encoder.load_state_dict(encoder.state_dict())
    assert masked_encoder.masked_spec_embed.requires_grad and not encoder.masked_spec_embed.requires_grad
    with torch.no_grad():
        torch.manual_seed(5)
        first = encoder_hidden_states(masked_encoder, audio)[-1]
        torch.manual_seed(5)
        second = encoder_hidden_states(masked_encoder, audio)[-1]
    torch.testing.assert_close(first, second)
    assert (first - plain).abs().max() > 1e-3
    torch.manual_seed(0)
    mask = time_mask(4, 374, masked_encoder.config, torch.device("cpu"))
    assert mask.shape == (4, 374) and 0.1 < mask.float().mean() < 0.5
    assert time_mask(4, 374, encoder.config, torch.device("cpu")) is None


def test_freezing_options(audio: torch.Tensor) -> None:
    frozen = load_encoder("tiny", freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    conv_only = load_encoder("tiny", freeze_conv=True)
    assert not any(p.requires_grad for p in conv_only.feature_extractor.parameters())
    assert all(p.requires_grad for p in conv_only.encoder.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(audio: torch.Tensor) -> None:
    torch.manual_seed(0)
    plain = load_encoder("tiny").train()
    checkpointed = load_encoder("tiny", gradient_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    assert all(layer.gradient_checkpointing for layer in checkpointed.encoder.layers)
    assert not any(layer.gradient_checkpointing for layer in plain.encoder.layers)
    for encoder in (plain, checkpointed):
        sum(h.square().mean() for h in encoder_hidden_states(encoder, audio[:, :24000])).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, msg=name, atol=1e-6, rtol=1e-4)


def test_hub_id_downloads_only_the_needed_files(tmp_path: Path, monkeypatch, hub_offline) -> None:
    import huggingface_hub

    folder = write_mert_folder(tmp_path / "snapshot", reference_hubert())
    calls = []
    monkeypatch.setattr(huggingface_hub, "list_repo_files",
                        lambda repo: ["config.json", "preprocessor_config.json", "pytorch_model.bin", "modeling_MERT.py"])

    def snapshot(repo, allow_patterns=None, **kwargs):
        calls.append((repo, allow_patterns))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    source = resolve_encoder("m-a-p/MERT-v1-95M")
    assert calls == [("m-a-p/MERT-v1-95M", ["config.json", "preprocessor_config.json", "pytorch_model.bin"])]
    assert source.weights == folder / "pytorch_model.bin"

    hub_offline()
    with pytest.raises(ActivityError, match=r"m-a-p/MERT-v1-330M: .*downloading it .* failed"):
        resolve_encoder("m-a-p/MERT-v1-330M")


def test_mert_short_names_mean_the_pretrained_weights(tmp_path: Path, monkeypatch, hub_offline) -> None:
    import huggingface_hub

    folder = write_mert_folder(tmp_path / "snapshot", reference_hubert())
    asked = []
    monkeypatch.setattr(huggingface_hub, "list_repo_files",
                        lambda repo: ["config.json", "preprocessor_config.json", "pytorch_model.bin"])

    def snapshot(repo, allow_patterns=None, **kwargs):
        asked.append(repo)
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    source = resolve_encoder("MERT-v1-95M")
    assert asked == ["m-a-p/MERT-v1-95M"] and source.weights == folder / "pytorch_model.bin"
    resolve_encoder("mert-v1-330m")
    assert asked[-1] == "m-a-p/MERT-v1-330M"

    hub_offline()
    with pytest.raises(ActivityError, match=r"mert-v1-95m means MERT's pretrained weights \(m-a-p/MERT-v1-95M\).*"
                                            r"mert-v1-95m-random for the architecture with random weights"):
        resolve_encoder("mert-v1-95m")


def test_random_suffix_builds_the_architecture_without_the_network(monkeypatch) -> None:
    import huggingface_hub

    def forbidden(*args, **kwargs):
        raise AssertionError("a random preset must not touch the hub")

    monkeypatch.setattr(huggingface_hub, "list_repo_files", forbidden)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", forbidden)
    for name, arch in (("mert-v1-95m-random", "mert-v1-95m"), ("MERT-v1-330M-random", "mert-v1-330m"),
                       ("compact", "compact"), ("tiny", "tiny")):
        source = resolve_encoder(name)
        assert source.weights is None
        assert source.config.to_dict() == preset_config(arch).to_dict()
    assert random_preset("mert-v1-95m") is None and random_preset("compact-random") is None
