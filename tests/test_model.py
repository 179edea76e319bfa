"""ActivityModel: shapes, layer mix, auto-pool, parameter groups, freezing, save/load and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from activity.constants import CLASSES, CLIP_SAMPLES, NUM_CLASSES
from activity.errors import ActivityError
from activity.model import ActivityConfig, ActivityModel, autopool


def tiny_model(seed: int = 0, **options) -> ActivityModel:
    torch.manual_seed(seed)
    return ActivityModel.from_encoder("tiny", **{"gru_hidden": 8, "gru_layers": 1, **options})


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return torch.randn(3, CLIP_SAMPLES, generator=torch.Generator().manual_seed(2)) * 0.1


def test_forward_shapes_and_consistency(clips: torch.Tensor) -> None:
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(clips)
    assert out.frame_logits.shape == (3, 374, NUM_CLASSES) and out.frame_probs.shape == (3, 374, NUM_CLASSES)
    assert out.clip_probs.shape == (3, NUM_CLASSES) and out.clip_logits.shape == (3, NUM_CLASSES)
    assert out.layer_weights.shape == (model.encoder.config.num_hidden_layers + 1,)
    torch.testing.assert_close(out.frame_probs, torch.sigmoid(out.frame_logits))
    torch.testing.assert_close(torch.sigmoid(out.clip_logits), out.clip_probs)
    assert all(t.dtype == torch.float32 for t in (out.frame_logits, out.frame_probs, out.clip_probs, out.clip_logits))


def test_layer_weights_start_equal_and_sum_to_one() -> None:
    model = tiny_model()
    weights = model.layer_weights()
    torch.testing.assert_close(weights, torch.full_like(weights, 1 / weights.numel()))
    with torch.no_grad():
        model.layer_logits.copy_(torch.tensor([2.0, -1.0, 0.5]))
    assert abs(float(model.layer_weights().detach().sum()) - 1.0) < 1e-6
    assert model.layer_weights().argmax() == 0


def test_autopool_lies_between_min_and_max_with_mean_and_max_limits() -> None:
    probs = torch.rand(4, 50, NUM_CLASSES, generator=torch.Generator().manual_seed(0))
    lo, hi = probs.min(1).values, probs.max(1).values
    for alpha in (-5.0, 0.0, 1.0, 10.0):
        pooled = autopool(probs, torch.full((NUM_CLASSES,), alpha))
        assert torch.all(pooled >= lo - 1e-6) and torch.all(pooled <= hi + 1e-6)
    torch.testing.assert_close(autopool(probs, torch.zeros(NUM_CLASSES)), probs.mean(1))
    assert torch.all((hi - autopool(probs, torch.full((NUM_CLASSES,), 500.0))) < 0.01)
    # One alpha per class: class 0 pools as a max, the others as a mean.
    mixed = autopool(probs, torch.tensor([500.0] + [0.0] * (NUM_CLASSES - 1)))
    assert torch.all(hi[:, 0] - mixed[:, 0] < 0.01)
    torch.testing.assert_close(mixed[:, 1:], probs.mean(1)[:, 1:])


def test_bf16_autocast_keeps_probabilities_in_float32(clips: torch.Tensor) -> None:
    model = tiny_model().eval()
    with torch.no_grad():
        full = model(clips[:1])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(clips[:1])
    assert half.clip_probs.dtype == torch.float32 and half.frame_probs.dtype == torch.float32
    assert (half.clip_probs - full.clip_probs).abs().max() < 0.05


def test_parameter_groups_partition_the_model() -> None:
    model = tiny_model()
    encoder = {id(p) for p in model.encoder_parameters()}
    head = {id(p) for p in model.head_parameters()}
    assert encoder and head and not encoder & head
    assert encoder | head == {id(p) for p in model.parameters()}
    assert id(model.layer_logits) in head and id(model.autopool_alpha) in head


def _backward(model: ActivityModel, clips: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    model(clips[:2, :24000]).clip_probs.sum().backward()


def _has_grad(p: torch.nn.Parameter) -> bool:
    return p.grad is not None and bool(p.grad.abs().sum() > 0)


def test_encoder_gets_gradients_only_when_trainable(clips: torch.Tensor) -> None:
    model = tiny_model()
    _backward(model, clips)
    trainable = [p for p in model.encoder_parameters() if p.requires_grad]
    assert trainable and all(_has_grad(p) for p in trainable)
    assert all(_has_grad(p) for p in model.head_parameters())

    model = tiny_model()
    model.freeze_encoder()
    _backward(model, clips)
    assert all(p.grad is None for p in model.encoder_parameters())
    assert all(_has_grad(p) for p in model.head_parameters())

    model = tiny_model()
    model.freeze_feature_extractor()
    _backward(model, clips)
    assert all(p.grad is None for p in model.encoder.feature_extractor.parameters())
    assert all(_has_grad(p) for p in model.encoder.encoder.parameters())
    # A frozen front end builds no graph: its backward would be pure cost.
    assert not model.encoder.feature_extractor(clips[:1, :24000]).requires_grad


def test_encoder_dropout_changes_only_the_dropout(clips: torch.Tensor, tmp_path: Path) -> None:
    rates = ("hidden_dropout", "attention_dropout", "feat_proj_dropout")
    model = tiny_model()  # the tiny preset has no dropout
    assert [model.config.encoder_config[key] for key in rates] == [0.0] * 3
    model.thresholds = [0.3] * NUM_CLASSES
    rng = torch.get_rng_state()
    noisy = model.with_encoder_dropout(0.3)
    assert torch.equal(torch.get_rng_state(), rng), "rebuilding must not draw from the caller's RNG"
    assert noisy.thresholds == model.thresholds and model.config.encoder_config["hidden_dropout"] == 0.0
    with torch.no_grad():
        torch.testing.assert_close(noisy.eval()(clips[:1]).clip_probs, model.eval()(clips[:1]).clip_probs)
        # In train mode dropout draws new masks every call; without it two calls agree exactly.
        model.train(), noisy.train()
        assert not torch.equal(noisy(clips[:1]).frame_probs, noisy(clips[:1]).frame_probs)
        assert torch.equal(model(clips[:1]).frame_probs, model(clips[:1]).frame_probs)
    saved = json.loads((noisy.save_pretrained(tmp_path / "noisy") / "config.json").read_text())
    assert [saved["encoder_config"][key] for key in rates] == [0.3] * 3
    with pytest.raises(ActivityError, match="--encoder-dropout must be in"):
        model.with_encoder_dropout(1.0)


def test_train_mode_uses_every_layer_even_if_the_config_asks_for_layerdrop(clips: torch.Tensor) -> None:
    config = tiny_model().config
    config.encoder_config = {**config.encoder_config, "layerdrop": 0.9}
    torch.manual_seed(0)
    model = ActivityModel(config).train()
    assert model.encoder.config.layerdrop == 0.0
    for _ in range(4):
        model.zero_grad(set_to_none=True)
        model(clips[:1, :24000]).clip_probs.sum().backward()
        assert all(_has_grad(p) for p in model.encoder.encoder.layers.parameters())
    model.encoder.config.layerdrop = 0.99  # forced back on: dropped states are caught, not mixed silently
    torch.manual_seed(1)
    with pytest.raises(RuntimeError, match="LayerDrop"):
        model(clips[:1, :24000])


def test_config_round_trip_and_validation() -> None:
    config = tiny_model().config
    assert ActivityConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ActivityError, match="unknown key.*colour"):
        ActivityConfig.from_dict({**config.to_dict(), "colour": "red"})
    with pytest.raises(ActivityError, match="8 classes"):
        ActivityConfig.from_dict({**config.to_dict(), "num_classes": 8, "class_names": list(CLASSES[:8])})
    with pytest.raises(ActivityError, match="missing encoder_config"):
        ActivityConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "encoder_config"})


def test_thresholds_are_validated() -> None:
    model = tiny_model()
    assert model.thresholds is None
    model.thresholds = [0.3] * NUM_CLASSES
    assert model.thresholds == [0.3] * NUM_CLASSES
    for bad in ([0.5] * 8, [0.0] + [0.5] * 8, [float("nan")] * 9, "abc"):
        with pytest.raises(ActivityError):
            model.thresholds = bad


def test_save_and_load_give_identical_outputs(tmp_path: Path, clips: torch.Tensor) -> None:
    model = tiny_model(seed=4).eval()
    with torch.no_grad():  # make every head weight distinctive, not its initial value
        model.autopool_alpha.copy_(torch.linspace(-2, 3, NUM_CLASSES))
        model.layer_logits.copy_(torch.tensor([0.1, 0.7, -0.4]))
    model.thresholds = [0.1 * (i + 1) for i in range(NUM_CLASSES)]
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors", "thresholds.json"]
    saved = json.loads((tmp_path / "ckpt" / "thresholds.json").read_text())
    assert saved["classes"] == list(CLASSES) and len(saved["thresholds"]) == NUM_CLASSES
    loaded = ActivityModel.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training
    assert loaded.thresholds == pytest.approx(model.thresholds)
    with torch.no_grad():
        a, b = model(clips), loaded(clips)
    for name in ("frame_logits", "frame_probs", "clip_probs", "clip_logits", "layer_weights"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    model.thresholds = None  # saving again without thresholds removes the old file
    model.save_pretrained(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "thresholds.json").exists()
    assert ActivityModel.from_pretrained(tmp_path / "ckpt").thresholds is None


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch

    model = tiny_model()
    model.save_pretrained(tmp_path / "ckpt")
    before = (tmp_path / "ckpt" / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        tiny_model(seed=9).save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left
    # A process killed between the two renames leaves only <dir>.old: it still loads.
    (tmp_path / "ckpt").rename(tmp_path / "ckpt.old")
    assert isinstance(ActivityModel.from_pretrained(tmp_path / "ckpt"), ActivityModel)


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    model = tiny_model()
    model.thresholds = [0.5] * NUM_CLASSES
    return model.save_pretrained(tmp_path / "ckpt")


def test_from_pretrained_missing_folder_and_files(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(ActivityError, match=r"checkpoint folder .*nowhere does not exist"):
        ActivityModel.from_pretrained(tmp_path / "nowhere")
    (saved / "model.safetensors").unlink()
    with pytest.raises(ActivityError, match="has no model.safetensors"):
        ActivityModel.from_pretrained(saved)
    (saved / "config.json").unlink()
    with pytest.raises(ActivityError, match="has no config.json"):
        ActivityModel.from_pretrained(saved)


def test_from_pretrained_corrupt_weights(saved: Path) -> None:
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ActivityError, match="model.safetensors is corrupt"):
        ActivityModel.from_pretrained(saved)
    (saved / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ActivityError, match="model.safetensors is corrupt"):
        ActivityModel.from_pretrained(saved)


def test_from_pretrained_config_mismatches(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "gru_hidden": 16}))
    with pytest.raises(ActivityError, match=r"config.json.*shape mismatch.*gru\.weight"):
        ActivityModel.from_pretrained(saved)
    encoder = {**config["encoder_config"], "intermediate_size": 64}
    (saved / "config.json").write_text(json.dumps({**config, "encoder_config": encoder}))
    with pytest.raises(ActivityError, match=r"shape mismatch.*encoder\.layers\.0\.feed_forward"):
        ActivityModel.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({**config, "num_classes": 10, "class_names": [*CLASSES, "Kazoo"]}))
    with pytest.raises(ActivityError, match=r"config.json: .*10 classes"):
        ActivityModel.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({**config, "gru_layers": 2}))
    with pytest.raises(ActivityError, match=r"missing keys gru\.bias_hh_l1, .*\(and 2 more\)"):
        ActivityModel.from_pretrained(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(ActivityError, match="config.json is not valid JSON"):
        ActivityModel.from_pretrained(saved)


@pytest.mark.parametrize("content, message", [
    ('{"classes": [], "thresholds": [0.5, 0.5]}', "classes"),
    (json.dumps({"classes": list(CLASSES), "thresholds": [0.5] * 8}), "expected 9 thresholds"),
    (json.dumps({"classes": list(CLASSES), "thresholds": [1.5] + [0.5] * 8}), "strictly between 0 and 1"),
    ("[0.5]", "expected"),
    ("nope", "not valid JSON"),
])
def test_from_pretrained_invalid_thresholds(saved: Path, content: str, message: str) -> None:
    (saved / "thresholds.json").write_text(content)
    with pytest.raises(ActivityError, match=rf"thresholds.json.*{message}"):
        ActivityModel.from_pretrained(saved)


def test_grow_model_widens_feed_forward_without_changing_outputs(clips: torch.Tensor, tmp_path: Path, capsys) -> None:
    from activity import grow

    model = tiny_model()
    model.thresholds = [0.4] * NUM_CLASSES
    model.save_pretrained(tmp_path / "small")
    before = model.config.encoder_config["intermediate_size"]
    assert grow.main(["--ckpt", str(tmp_path / "small"), "--intermediate-size", str(2 * before),
                      "--out", str(tmp_path / "wide")]) == 0
    wide = ActivityModel.from_pretrained(tmp_path / "wide")
    assert wide.config.encoder_config["intermediate_size"] == 2 * before and wide.thresholds == model.thresholds
    for layer in wide.encoder.encoder.layers:
        assert layer.feed_forward.intermediate_dense.weight.shape[0] == 2 * before
        assert torch.all(layer.feed_forward.output_dense.weight[:, before:] == 0)
        assert layer.feed_forward.intermediate_dense.weight[before:].abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(wide(clips[:1]).frame_probs, model.eval()(clips[:1]).frame_probs)
    capsys.readouterr()
    assert grow.main(["--ckpt", str(tmp_path / "small"), "--intermediate-size", str(before),
                      "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --intermediate-size {before} must exceed the model's {before}"
    assert grow.main(["--ckpt", str(tmp_path / "small"), "--intermediate-size", "99", "--out", str(tmp_path / "wide")]) == 2
    assert "already exists; choose another folder" in capsys.readouterr().err
