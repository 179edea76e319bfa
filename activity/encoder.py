"""Where an encoder comes from: presets, released weights, local folders and hub ids, for every kind of the seam.

The encoders themselves are classes of :mod:`activity.backbones` (transformers' own ``HubertModel``,
``Wav2Vec2Model``, ``WavLMModel``, ``Data2VecAudioModel``; no remote code). This module turns an
``--encoder`` value into an :class:`EncoderSource` (kind, architecture, sample rate, input normalisation,
weights file):

* MERT's released weights by short name: ``mert-v1-95m`` / ``mert-v1-330m`` (24 kHz, 75 Hz frames),
  ``mert-v0`` / ``mert-v0-public`` (HuBERT base at 16 kHz, 50 Hz) and ``music2vec-v1`` (data2vec-audio base
  at 16 kHz, 50 Hz): the hub ids of :data:`PRETRAINED_HUB_IDS`, downloaded when online, else taken from the
  local hub cache;
* random-weight presets: each of those with ``-random`` (the published architecture, for benchmarks),
  ``compact`` (a small 24 kHz encoder that trains on a CPU) and ``tiny`` (for tests);
* a local folder holding a ``config.json`` whose ``model_type`` is ``mert_model``, ``hubert``, ``wav2vec2``,
  ``wavlm`` or ``data2vec-audio``, optionally ``preprocessor_config.json`` (its ``sampling_rate`` and
  ``do_normalize``), and ``pytorch_model.bin`` / ``model.safetensors`` (loaded strictly);
* a hub id (``owner/name``), downloaded with ``huggingface_hub`` only when named.

MERT-v1 is a stock HuBERT network (post-LN encoder for 95M, pre-LN "stable layer norm" for 330M, a 7-layer
conv front end with kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2, so one frame per 320 samples at
24 kHz = 75 Hz). The hub's remote code breaks on recent transformers, so MERT's files are loaded into the
stock classes with strict key matching. The functions at the end (:func:`build_encoder`,
:func:`encoder_hidden_states`, ...) are the pre-seam names of the HuBERT kind's methods.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import HubertConfig, PretrainedConfig

from .backbones import BACKBONES, Backbone, backbone_class
from .backbones.wav2vec2_family import DROPOUT_FIELDS, FamilyBackbone, conv_geometry, time_mask  # noqa: F401
from .constants import SAMPLE_RATE
from .errors import ActivityError

NORMALIZE_EPS = 1e-7
"""Added to the variance before the square root, as MERT's ``Wav2Vec2FeatureExtractor`` does."""

# The family's usual conv front end: hop 320, receptive field 400 samples (75 Hz at 24 kHz, 50 Hz at 16 kHz).
_CONV_KERNEL = [10, 3, 3, 3, 3, 2, 2]
_CONV_STRIDE = [5, 2, 2, 2, 2, 2, 2]

_COMMON: dict[str, Any] = {
    "conv_kernel": _CONV_KERNEL,
    "conv_stride": _CONV_STRIDE,
    "conv_bias": False,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "feat_proj_layer_norm": True,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
    "num_feat_extract_layers": 7,
    "layerdrop": 0.0,
    "apply_spec_augment": True,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_feature_prob": 0.0,
    "conv_pos_batch_norm": False,
}

# Copied from m-a-p/MERT-v1-95M's config.json (architecture and dropouts; LayerDrop forced off).
_MERT_95M: dict[str, Any] = {
    **_COMMON,
    "conv_dim": [512] * 7,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "attention_dropout": 0.1,
    "hidden_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.1,
    "final_dropout": 0.1,
}

# MERT-v1-330M: 24 pre-LN layers of 1024 (the architecture fields of the published model).
_MERT_330M: dict[str, Any] = {
    **_COMMON,
    "conv_dim": [512] * 7,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": True,
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
}

# Sized to train on 2 CPU cores: 2.3M parameters, a forward+backward of 8 clips in about 1 s there.
# Same conv kernels/strides as MERT (75 Hz), narrower channels, 4 post-LN layers of 192.
_COMPACT: dict[str, Any] = {
    **_COMMON,
    "conv_dim": [64, 96, 128, 128, 128, 128, 128],
    "hidden_size": 192,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 768,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": False,
    "attention_dropout": 0.1,
    "hidden_dropout": 0.1,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.1,
    "final_dropout": 0.0,
}

# A minute network for tests: a few milliseconds per clip.
_TINY: dict[str, Any] = {
    **_COMMON,
    "conv_dim": [8] * 7,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "do_stable_layer_norm": False,
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
}

# MERT-v0 and MERT-v0-public: the HuBERT-base architecture (fairseq's, as MERT-v0 was trained with it) at
# 16 kHz. Their config.json is not available here: the architecture fields are HuBERT base's (those of
# MERT-v1-95M, which has the same shape), the dropouts MERT-v1-95M's; real weights come with their own config.
_MERT_V0: dict[str, Any] = dict(_MERT_95M)

# music2vec-v1: data2vec-audio base at 16 kHz. Its config.json is not available here: these are
# transformers' Data2VecAudioConfig defaults (facebook/data2vec-audio-base's shape: 12 x 768, 3072 units, a
# 5-layer positional convolution of kernel 19 in 16 groups), LayerDrop off.
_MUSIC2VEC: dict[str, Any] = {
    "conv_dim": [512] * 7,
    "conv_kernel": _CONV_KERNEL,
    "conv_stride": _CONV_STRIDE,
    "conv_bias": False,
    "feat_extract_activation": "gelu",
    "hidden_act": "gelu",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "num_conv_pos_embeddings": 5,
    "conv_pos_kernel_size": 19,
    "num_conv_pos_embedding_groups": 16,
    "layer_norm_eps": 1e-5,
    "layerdrop": 0.0,
    "attention_dropout": 0.1,
    "hidden_dropout": 0.1,
    "activation_dropout": 0.1,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.1,
    "apply_spec_augment": True,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_feature_prob": 0.0,
}


@dataclass(frozen=True)
class Preset:
    """An encoder architecture by name: its kind (:data:`activity.backbones.BACKBONES`), the sample rate it
    takes, and its configuration fields."""

    kind: str
    sample_rate: int
    fields: dict[str, Any]

    @property
    def frame_rate(self) -> float:
        """Encoder frames per second."""
        return self.sample_rate / conv_geometry(self.fields)[0]


PRESETS: dict[str, Preset] = {
    "mert-v1-95m": Preset("hubert", 24_000, _MERT_95M),
    "mert-v1-330m": Preset("hubert", 24_000, _MERT_330M),
    "mert-v0": Preset("hubert", 16_000, _MERT_V0),
    "mert-v0-public": Preset("hubert", 16_000, _MERT_V0),
    "music2vec-v1": Preset("data2vec-audio", 16_000, _MUSIC2VEC),
    "compact": Preset("hubert", 24_000, _COMPACT),
    "tiny": Preset("hubert", 24_000, _TINY),
}
"""Encoder architectures by name (random weights when built from these)."""

PRETRAINED_HUB_IDS: dict[str, str] = {
    "mert-v1-95m": "m-a-p/MERT-v1-95M",
    "mert-v1-330m": "m-a-p/MERT-v1-330M",
    "mert-v0": "m-a-p/MERT-v0",
    "mert-v0-public": "m-a-p/MERT-v0-public",
    "music2vec-v1": "m-a-p/music2vec-v1",
}
"""Short names of released checkpoints: ``--encoder mert-v1-95m`` means these weights, never random."""

RANDOM_SUFFIX = "-random"
"""Appended to a pretrained name for its architecture with random weights (``mert-v1-95m-random``)."""

PRESET_DO_NORMALIZE = True
"""``do_normalize`` of every preset: MERT's ``preprocessor_config.json`` value (assumed for MERT-v0 and
music2vec-v1 too, whose preprocessor configs are not available here; real weights bring their own)."""

MODEL_TYPES: dict[str, str] = {
    "mert_model": "hubert",
    "hubert": "hubert",
    "wav2vec2": "wav2vec2",
    "wavlm": "wavlm",
    "data2vec-audio": "data2vec-audio",
}
"""``model_type`` of a folder's ``config.json`` -> encoder kind (``mert_model`` is MERT's remote-code name)."""

_DEFAULT_FOLDER_RATES = {"mert_model": SAMPLE_RATE}
"""Sample rate of a folder that names none: 24 kHz for MERT's files (MERT-v1), else the family's 16 kHz."""
_FAMILY_RATE = 16_000


def random_preset(name: str | os.PathLike) -> str | None:
    """The :data:`PRESETS` key that ``name`` builds with random weights, or None (weights, folder, hub id).

    ``compact`` and ``tiny`` are random by nature; released architectures are random only when asked for
    with :data:`RANDOM_SUFFIX`, so that ``mert-v1-95m`` can never silently mean an untrained encoder.
    """
    key = str(name).lower()
    if key.endswith(RANDOM_SUFFIX) and key[: -len(RANDOM_SUFFIX)] in PRETRAINED_HUB_IDS:
        return key[: -len(RANDOM_SUFFIX)]
    if key in PRESETS and key not in PRETRAINED_HUB_IDS:
        return key
    return None


def encoder_names() -> list[str]:
    """Every name ``--encoder`` accepts besides folders and hub ids, for help and error messages."""
    return [*PRETRAINED_HUB_IDS, *(k for k in PRESETS if k not in PRETRAINED_HUB_IDS),
            *(k + RANDOM_SUFFIX for k in PRETRAINED_HUB_IDS)]


_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class EncoderSource:
    """Where an encoder comes from: its kind, architecture, sample rate, input normalisation and weights file.

    ``weights`` is ``None`` for a preset (random initialisation).
    """

    name: str
    config: PretrainedConfig
    do_normalize: bool
    weights: Path | None
    kind: str = "hubert"
    sample_rate: int = SAMPLE_RATE

    @property
    def frame_rate(self) -> float:
        """Encoder frames per second."""
        return self.sample_rate / conv_geometry(self.config)[0]


# --------------------------------------------------------------------------------------------------
# Configurations


def _family(kind: str) -> type[FamilyBackbone]:
    cls = backbone_class(kind)
    if not issubclass(cls, FamilyBackbone):
        raise ActivityError(f"encoder kind {kind} is not a transformers model")
    return cls


def kind_of_config(config: PretrainedConfig) -> str:
    """The encoder kind of a transformers config (by its ``model_type``)."""
    kind = MODEL_TYPES.get(getattr(config, "model_type", None))
    if kind is None:
        raise ActivityError(f"model_type {config.model_type!r} is not an encoder kind ({', '.join(MODEL_TYPES)})")
    return kind


def encoder_config_dict(config: PretrainedConfig) -> dict[str, Any]:
    """The architecture fields of ``config`` as a plain JSON-able dict (what a saved model stores)."""
    return _family(kind_of_config(config)).config_to_dict(config)


def hubert_config(fields: dict[str, Any], source: str = "encoder config") -> HubertConfig:
    """A ``HubertConfig`` from a MERT or Hubert config dict, with LayerDrop off and SDPA attention.

    Raises :class:`ActivityError` naming ``source`` for a config that is not a stock HuBERT network
    (MERT's CQT front end or DeepNorm).
    """
    return _family("hubert").make_config(fields, source)


def preset_config(name: str) -> PretrainedConfig:
    """The transformers config of a preset (a :data:`PRESETS` key; a ``-random`` suffix is accepted)."""
    key = name.lower()
    key = random_preset(key) or key
    if key not in PRESETS:
        raise ActivityError(f"unknown encoder preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[key]
    return _family(preset.kind).make_config(dict(preset.fields), source=f"preset {key}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ActivityError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActivityError(f"{path} is not valid JSON: {exc}") from None


def read_preprocessor(folder: Path, default_rate: int = SAMPLE_RATE) -> tuple[bool, int]:
    """``do_normalize`` and ``sampling_rate`` of a checkpoint's ``preprocessor_config.json``.

    Absent file or field: :data:`PRESET_DO_NORMALIZE` and ``default_rate``.
    """
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return PRESET_DO_NORMALIZE, default_rate
    data = _read_json(path)
    value = data.get("do_normalize", PRESET_DO_NORMALIZE) if isinstance(data, dict) else None
    if not isinstance(value, bool):
        raise ActivityError(f"{path}: do_normalize must be true or false, got {value!r}")
    rate = data.get("sampling_rate", default_rate)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1_000 <= rate <= 384_000:
        raise ActivityError(f"{path}: sampling_rate must be a whole number of Hz, got {rate!r}")
    return value, rate


def read_do_normalize(folder: Path) -> bool:
    """``do_normalize`` of a checkpoint's ``preprocessor_config.json`` (MERT's default True if absent)."""
    return read_preprocessor(folder)[0]


# --------------------------------------------------------------------------------------------------
# Finding an encoder


def _folder_source(folder: Path, name: str) -> EncoderSource:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ActivityError(f"encoder folder {folder} has no config.json (expected MERT's or a transformers "
                            "model's own files)")
    fields = _read_json(config_path)
    if not isinstance(fields, dict):
        raise ActivityError(f"{config_path}: expected a JSON object")
    model_type = fields.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ActivityError(f"{config_path}: model_type is {model_type!r}, expected one of "
                            f"{', '.join(repr(t) for t in MODEL_TYPES)}")
    kind = MODEL_TYPES[model_type]
    # Remote-code-only fields (auto_map, attention_relax, ...) are dropped; unsupported ones refused.
    config = _family(kind).make_config(fields, source=str(config_path))
    weights = next((folder / f for f in _WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise ActivityError(f"encoder folder {folder} holds no weights: expected {' or '.join(_WEIGHT_FILES)}")
    stated = fields.get("sample_rate", fields.get("sampling_rate"))
    default_rate = stated if isinstance(stated, int) and not isinstance(stated, bool) else \
        _DEFAULT_FOLDER_RATES.get(model_type, _FAMILY_RATE)
    do_normalize, rate = read_preprocessor(folder, default_rate)
    return EncoderSource(name=name, config=config, do_normalize=do_normalize, weights=weights, kind=kind,
                         sample_rate=rate)


def _download(repo_id: str, asked: str | None = None) -> Path:
    """Fetch only config, preprocessor config and one weights file of a hub repository.

    ``asked`` is the ``--encoder`` value when it was a short name for ``repo_id`` (for the error message).
    """
    try:
        import huggingface_hub
    except ImportError:  # pragma: no cover - transformers depends on it
        raise ActivityError(f"--encoder {repo_id}: huggingface_hub is not installed, cannot download") from None
    try:
        files = set(huggingface_hub.list_repo_files(repo_id))
        weights = next((f for f in _WEIGHT_FILES if f in files), None)
        if weights is None:
            raise ActivityError(f"hub repository {repo_id} holds neither {' nor '.join(_WEIGHT_FILES)}")
        patterns = ["config.json", "preprocessor_config.json", weights]
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns))
    except ActivityError:
        raise
    except Exception as exc:  # network, authentication and missing-repo errors come in many types
        try:  # an earlier download may be in the local cache
            return Path(huggingface_hub.snapshot_download(
                repo_id, allow_patterns=["config.json", "preprocessor_config.json", *_WEIGHT_FILES],
                local_files_only=True))
        except Exception:
            pass
        if asked is not None:
            owner = "music2vec's" if asked.lower().startswith("music2vec") else "MERT's"
            raise ActivityError(
                f"--encoder {asked} means {owner} pretrained weights ({repo_id}), and downloading them from the "
                f"Hugging Face hub failed ({type(exc).__name__}: {exc}). Offline, pass a local folder of its files "
                f"(config.json, preprocessor_config.json, weights), or {asked.lower()}{RANDOM_SUFFIX} for the "
                "architecture with random weights."
            ) from None
        raise ActivityError(
            f"--encoder {repo_id}: not a preset or an existing folder, and downloading it from the Hugging Face hub "
            f"failed ({type(exc).__name__}: {exc}). Names: {', '.join(encoder_names())}; or pass a folder of MERT's "
            "or a transformers model's files."
        ) from None


def resolve_encoder(name_or_path: str | os.PathLike) -> EncoderSource:
    """Find the kind, architecture, rate, normalisation and weights an encoder name refers to.

    A random preset (case-insensitive, :func:`random_preset`) gives random weights; the short names of
    :data:`PRETRAINED_HUB_IDS` are released weights; an existing folder must hold a model's files;
    ``owner/name`` that is no folder is a Hugging Face hub id. Only short names and hub ids use the network.
    """
    text = str(name_or_path)
    preset = random_preset(text)
    if preset is not None:
        spec = PRESETS[preset]
        return EncoderSource(name=text.lower(), config=preset_config(preset), do_normalize=PRESET_DO_NORMALIZE,
                             weights=None, kind=spec.kind, sample_rate=spec.sample_rate)
    if text.lower() in PRETRAINED_HUB_IDS:
        return _folder_source(_download(PRETRAINED_HUB_IDS[text.lower()], asked=text), text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_source(path, text)
    if path.exists():
        raise ActivityError(f"--encoder {text} is a file; pass the folder holding its config.json and weights")
    if _HUB_ID.match(text):  # exactly one "/", no leading ".", "/" or "~": not meant as a local path
        return _folder_source(_download(text), text)
    raise ActivityError(
        f"--encoder {text} is neither a preset ({', '.join(encoder_names())}), an existing folder, nor a hub id "
        "(owner/name)"
    )


# --------------------------------------------------------------------------------------------------
# Building and loading (the pre-seam names: each calls the encoder's own method)


def default_sample_rate(kind: str) -> int:
    """The sample rate assumed for a kind when none is recorded: 24 kHz for HuBERT (MERT-v1, and every
    checkpoint written before the seam), the family's 16 kHz for the others."""
    return SAMPLE_RATE if kind == "hubert" else _FAMILY_RATE


def build_encoder(config: PretrainedConfig | dict[str, Any], mask_time_prob: float = 0.0,
                  sample_rate: int | None = None) -> Backbone:
    """A randomly initialised encoder for ``config`` (a dict is a HuBERT config), made safe for training:
    see :meth:`activity.backbones.wav2vec2_family.FamilyBackbone.build`."""
    if isinstance(config, dict):
        config = hubert_config(config)
    kind = kind_of_config(config)
    rate = default_sample_rate(kind) if sample_rate is None else sample_rate
    return _family(kind).build(config, sample_rate=rate, mask_time_prob=mask_time_prob)


def load_encoder_weights(encoder: Backbone, path: str | os.PathLike) -> None:
    """Load released weights into ``encoder``, strictly (:meth:`Backbone.load_weights`)."""
    encoder.load_weights(path)


def freeze_encoder(encoder: Backbone) -> None:
    """No gradients for any encoder parameter."""
    encoder.freeze()


def freeze_feature_extractor(encoder: Backbone) -> None:
    """No gradients for the conv front end (the transformer stays trainable)."""
    encoder.freeze_feature_extractor()


def enable_gradient_checkpointing(encoder: Backbone) -> None:
    """Recompute each transformer layer in the backward pass."""
    encoder.enable_gradient_checkpointing()


def load_encoder(
    name_or_path: str | os.PathLike,
    *,
    mask_time_prob: float = 0.0,
    freeze: bool = False,
    freeze_conv: bool = False,
    gradient_checkpointing: bool = False,
) -> Backbone:
    """A ready encoder: a random preset, released weights, a folder of a model's files or a hub id.

    ``freeze`` stops gradients to the whole encoder, ``freeze_conv`` only to its conv front end;
    ``gradient_checkpointing`` recomputes layer activations in the backward pass to save memory. The
    input normalisation the checkpoint expects is :func:`resolve_encoder`'s ``do_normalize``.
    """
    source = resolve_encoder(name_or_path)
    encoder = _family(source.kind).build(source.config, sample_rate=source.sample_rate, mask_time_prob=mask_time_prob)
    if source.weights is not None:
        encoder.load_weights(source.weights)
    if freeze:
        encoder.freeze()
    elif freeze_conv:
        encoder.freeze_feature_extractor()
    if gradient_checkpointing:
        encoder.enable_gradient_checkpointing()
    return encoder


# --------------------------------------------------------------------------------------------------
# Running


def normalize_waveform(waveform: torch.Tensor, eps: float = NORMALIZE_EPS) -> torch.Tensor:
    """Zero mean, unit variance per example over time, in float32: ``(B, N) -> (B, N)``.

    ``(x - mean) / sqrt(var + 1e-7)`` with the population variance, as MERT's feature extractor does.
    """
    x = waveform.float()
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def encoder_hidden_states(encoder: Backbone, waveform: torch.Tensor) -> list[torch.Tensor]:
    """All hidden states of ``encoder`` for ``(B, N)`` (already normalised) audio at its own rate
    (:meth:`Backbone.hidden_states`): ``num_hidden_states`` tensors ``(B, T_enc, D)``."""
    return encoder.hidden_states(waveform)
