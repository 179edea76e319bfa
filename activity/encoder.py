"""The MERT encoder, built from transformers' own ``HubertModel`` (no remote code).

MERT-v1 is a stock HuBERT network (post-LN encoder for 95M, pre-LN "stable layer norm" for 330M, a
7-layer conv front end with kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2, so one frame per
``HOP`` samples at 24 kHz = 75 Hz). The hub's remote code breaks on recent transformers, so this module
rebuilds the same network from ``HubertModel`` and loads MERT's own files into it with strict key
matching:

* ``mert-v1-95m`` / ``mert-v1-330m``: MERT's released weights (the hub ids ``m-a-p/MERT-v1-95M`` /
  ``-330M``, downloaded when online, else taken from the local hub cache);
* random-weight presets: ``mert-v1-95m-random`` / ``mert-v1-330m-random`` (MERT's exact architectures,
  for benchmarks), ``compact`` (a small encoder that trains on a CPU) and ``tiny`` (for tests);
* a local folder with MERT's ``config.json`` (``model_type: mert_model``), ``preprocessor_config.json`` and
  ``pytorch_model.bin`` / ``model.safetensors``;
* a hub id (``m-a-p/MERT-v1-95M``), downloaded with ``huggingface_hub`` only when named.

Training traps handled here: LayerDrop is always off (it drops entries of ``hidden_states`` in train
mode), SpecAugment time masking is an option drawn from torch's RNG (seedable, so resumable), and the
last hidden state of the pre-LN layout is taken after the final LayerNorm on every transformers version.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import HubertConfig, HubertModel

from .constants import HOP, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from .cpu_kernels import positional_conv_in_float32
from .errors import ActivityError

NORMALIZE_EPS = 1e-7
"""Added to the variance before the square root, as MERT's ``Wav2Vec2FeatureExtractor`` does."""

# MERT-v1's conv front end; anything else would not give 75 Hz frames.
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

PRESETS: dict[str, dict[str, Any]] = {
    "mert-v1-95m": _MERT_95M,
    "mert-v1-330m": _MERT_330M,
    "compact": _COMPACT,
    "tiny": _TINY,
}
"""Encoder architectures by name (random weights when built from these)."""

PRETRAINED_HUB_IDS: dict[str, str] = {"mert-v1-95m": "m-a-p/MERT-v1-95M", "mert-v1-330m": "m-a-p/MERT-v1-330M"}
"""Short names of MERT's released checkpoints: ``--encoder mert-v1-95m`` means these weights, never random."""

RANDOM_SUFFIX = "-random"
"""Appended to a pretrained name for its architecture with random weights (``mert-v1-95m-random``)."""


def random_preset(name: str | os.PathLike) -> str | None:
    """The :data:`PRESETS` key that ``name`` builds with random weights, or None (weights, folder, hub id).

    ``compact`` and ``tiny`` are random by nature; MERT's architectures are random only when asked for
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


PRESET_DO_NORMALIZE = True
"""MERT's ``preprocessor_config.json`` value, used for every preset."""

# HubertConfig's own fields that describe the network (saved with a model so it can be rebuilt offline).
_HUBERT_FIELDS = sorted(
    set(HubertConfig().to_dict())
    - {"_name_or_path", "architectures", "transformers_version", "id2label", "label2id", "dtype", "problem_type",
       "output_attentions", "output_hidden_states", "return_dict", "is_encoder_decoder", "chunk_size_feed_forward",
       "model_type"}
)

_REQUIRED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim",
                    "conv_kernel", "conv_stride")

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

# Keys of MERT's pre-2023 weight-norm layout; torch's parametrised weight_norm renames them on load.
_OLD_WEIGHT_NORM = {
    "encoder.pos_conv_embed.conv.weight_g": "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    "encoder.pos_conv_embed.conv.weight_v": "encoder.pos_conv_embed.conv.parametrizations.weight.original1",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class EncoderSource:
    """Where an encoder comes from: its architecture, input normalisation and weights file.

    ``weights`` is ``None`` for a preset (random initialisation).
    """

    name: str
    config: HubertConfig
    do_normalize: bool
    weights: Path | None


# --------------------------------------------------------------------------------------------------
# Configurations


def encoder_config_dict(config: HubertConfig) -> dict[str, Any]:
    """The architecture fields of ``config`` as a plain JSON-able dict (what a saved model stores)."""
    full = config.to_dict()
    return {key: full[key] for key in _HUBERT_FIELDS if key in full}


def _check_frame_rate(fields: dict[str, Any], source: str) -> None:
    kernel, stride = list(fields["conv_kernel"]), list(fields["conv_stride"])
    if len(kernel) != len(stride) or len(list(fields["conv_dim"])) != len(kernel):
        raise ActivityError(f"{source}: conv_dim, conv_kernel and conv_stride must have equal lengths")
    hop, field = 1, 1
    for k, s in zip(kernel, stride):
        field += (k - 1) * hop
        hop *= s
    if hop != HOP or field != RECEPTIVE_FIELD:
        raise ActivityError(
            f"{source}: the conv front end has hop {hop} and receptive field {field} samples; this package needs "
            f"MERT's {HOP} and {RECEPTIVE_FIELD} (kernels {_CONV_KERNEL}, strides {_CONV_STRIDE}) for 75 Hz frames"
        )


def hubert_config(fields: dict[str, Any], source: str = "encoder config") -> HubertConfig:
    """A ``HubertConfig`` from a MERT or Hubert config dict, with LayerDrop off and SDPA attention.

    Raises :class:`ActivityError` naming ``source`` for a config that is not a stock HuBERT network
    (MERT's CQT front end or DeepNorm) or whose front end does not give 75 Hz frames.
    """
    if not isinstance(fields, dict):
        raise ActivityError(f"{source}: expected a JSON object, got {type(fields).__name__}")
    missing = [key for key in _REQUIRED_FIELDS if key not in fields]
    if missing:
        raise ActivityError(f"{source}: missing the field(s) {', '.join(missing)}")
    for flag in ("feature_extractor_cqt", "deepnorm"):
        if fields.get(flag):
            raise ActivityError(f"{source}: {flag}=true is not a stock HuBERT network and is not supported")
    _check_frame_rate(fields, source)
    kept = {key: value for key, value in fields.items() if key in _HUBERT_FIELDS}
    kept["layerdrop"] = 0.0  # LayerDrop removes entries of hidden_states in train mode: the layer mix needs all
    kept["mask_feature_prob"] = 0.0
    try:
        return HubertConfig(**kept, attn_implementation="sdpa")
    except (TypeError, ValueError) as exc:
        raise ActivityError(f"{source}: not a valid HuBERT configuration: {exc}") from None


DROPOUT_FIELDS: tuple[str, ...] = ("hidden_dropout", "attention_dropout", "feat_proj_dropout")
"""The encoder's dropout rates that ``--encoder-dropout`` sets (0.1 each in MERT-v1-95M and ``compact``)."""


def preset_config(name: str) -> HubertConfig:
    """The ``HubertConfig`` of an architecture (``mert-v1-95m``, ``mert-v1-330m``, ``compact``, ``tiny``;
    a ``-random`` suffix is accepted)."""
    key = name.lower()
    key = random_preset(key) or key
    if key not in PRESETS:
        raise ActivityError(f"unknown encoder preset {name!r}; choose one of {', '.join(PRESETS)}")
    return hubert_config(dict(PRESETS[key]), source=f"preset {key}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ActivityError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActivityError(f"{path} is not valid JSON: {exc}") from None


def read_do_normalize(folder: Path) -> bool:
    """``do_normalize`` of a checkpoint's ``preprocessor_config.json`` (MERT's default True if absent)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return PRESET_DO_NORMALIZE
    data = _read_json(path)
    value = data.get("do_normalize", PRESET_DO_NORMALIZE) if isinstance(data, dict) else None
    if not isinstance(value, bool):
        raise ActivityError(f"{path}: do_normalize must be true or false, got {value!r}")
    rate = data.get("sampling_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ActivityError(f"{path}: sampling_rate is {rate}; this package feeds the encoder {SAMPLE_RATE} Hz audio")
    return value


# --------------------------------------------------------------------------------------------------
# Finding an encoder


def _folder_source(folder: Path, name: str) -> EncoderSource:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ActivityError(f"encoder folder {folder} has no config.json (expected MERT's own files)")
    fields = _read_json(config_path)
    if not isinstance(fields, dict):
        raise ActivityError(f"{config_path}: expected a JSON object")
    model_type = fields.get("model_type")
    if model_type not in ("mert_model", "hubert"):
        raise ActivityError(f"{config_path}: model_type is {model_type!r}, expected 'mert_model' (or 'hubert')")
    # Remote-code-only fields (auto_map, attention_relax, ...) are dropped; unsupported ones refused.
    config = hubert_config(fields, source=str(config_path))
    weights = next((folder / f for f in _WEIGHT_FILES if (folder / f).is_file()), None)
    if weights is None:
        raise ActivityError(f"encoder folder {folder} holds no weights: expected {' or '.join(_WEIGHT_FILES)}")
    return EncoderSource(name=name, config=config, do_normalize=read_do_normalize(folder), weights=weights)


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
            raise ActivityError(
                f"--encoder {asked} means MERT's pretrained weights ({repo_id}), and downloading them from the "
                f"Hugging Face hub failed ({type(exc).__name__}: {exc}). Offline, pass a local folder of MERT's files "
                f"(config.json, preprocessor_config.json, weights), or {asked.lower()}{RANDOM_SUFFIX} for the "
                "architecture with random weights."
            ) from None
        raise ActivityError(
            f"--encoder {repo_id}: not a preset or an existing folder, and downloading it from the Hugging Face hub "
            f"failed ({type(exc).__name__}: {exc}). Names: {', '.join(encoder_names())}; or pass a folder of MERT's "
            "files."
        ) from None


def resolve_encoder(name_or_path: str | os.PathLike) -> EncoderSource:
    """Find the architecture, normalisation and weights an encoder name refers to.

    A random preset (case-insensitive, :func:`random_preset`) gives random weights; ``mert-v1-95m`` /
    ``mert-v1-330m`` are MERT's released weights; an existing folder must hold MERT's files; ``owner/name``
    that is no folder is a Hugging Face hub id. Only MERT's short names and hub ids use the network.
    """
    text = str(name_or_path)
    preset = random_preset(text)
    if preset is not None:
        return EncoderSource(name=text.lower(), config=preset_config(preset), do_normalize=PRESET_DO_NORMALIZE,
                             weights=None)
    if text.lower() in PRETRAINED_HUB_IDS:
        return _folder_source(_download(PRETRAINED_HUB_IDS[text.lower()], asked=text), text)
    path = Path(text).expanduser()
    if path.is_dir():
        return _folder_source(path, text)
    if path.exists():
        raise ActivityError(f"--encoder {text} is a file; pass the folder holding MERT's config.json and weights")
    if _HUB_ID.match(text):  # exactly one "/", no leading ".", "/" or "~": not meant as a local path
        return _folder_source(_download(text), text)
    raise ActivityError(
        f"--encoder {text} is neither a preset ({', '.join(encoder_names())}), an existing folder, nor a hub id "
        "(owner/name)"
    )


# --------------------------------------------------------------------------------------------------
# Building and loading


def build_encoder(config: HubertConfig | dict[str, Any], mask_time_prob: float = 0.0) -> HubertModel:
    """A randomly initialised ``HubertModel`` for ``config``, made safe for training.

    LayerDrop is off, SpecAugment feature masking off, time masking set to ``mask_time_prob`` (applied by
    :func:`encoder_hidden_states` in train mode). ``masked_spec_embed`` always exists so that state dicts
    do not depend on the masking option. The positional convolution runs in float32 under CPU autocast
    (:func:`activity.cpu_kernels.positional_conv_in_float32`: oneDNN's bf16 kernel for it is wrong on AMX).
    """
    if not 0.0 <= mask_time_prob < 1.0:
        raise ActivityError(f"--mask-time-prob must be in [0, 1), got {mask_time_prob}")
    if isinstance(config, dict):
        config = hubert_config(config)
    config.layerdrop = 0.0
    config.mask_feature_prob = 0.0
    config.mask_time_prob = float(mask_time_prob)
    config._attn_implementation = "sdpa"
    encoder = HubertModel(config)
    if not hasattr(encoder, "masked_spec_embed"):
        encoder.masked_spec_embed = torch.nn.Parameter(torch.empty(config.hidden_size).uniform_())
    # Unused without masking: a trainable parameter that never gets a gradient breaks DDP.
    encoder.masked_spec_embed.requires_grad_(mask_time_prob > 0)
    positional_conv_in_float32(encoder)
    return encoder


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files, pickles with code, wrong formats
        raise ActivityError(f"encoder weights {path} could not be read: {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ActivityError(f"encoder weights {path} do not hold a state dict of tensors")
    return state


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_encoder_weights(encoder: HubertModel, path: str | os.PathLike) -> None:
    """Load MERT weights (``pytorch_model.bin`` or ``model.safetensors``) into ``encoder``, strictly.

    Old weight-norm keys (``weight_g``/``weight_v``) are accepted. A checkpoint that lacks only
    ``masked_spec_embed`` (the SpecAugment vector, unused at inference) keeps the random one. Any other
    missing or unexpected key, or a shape mismatch, raises :class:`ActivityError` naming the keys.
    """
    path = Path(path)
    state = _read_state_dict(path)
    # Checkpoints saved from a wrapper model carry its prefix.
    if state and all(k.startswith("hubert.") for k in state):
        state = {k[len("hubert."):]: v for k, v in state.items()}
    expected = encoder.state_dict()
    mismatched = []
    for key, tensor in state.items():
        target = expected.get(_OLD_WEIGHT_NORM.get(key, key))
        if target is not None and tuple(target.shape) != tuple(tensor.shape):
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(target.shape)}")
    if mismatched:
        raise ActivityError(f"encoder weights {path} do not fit the architecture in config.json: "
                            f"shape mismatch for {_list_keys(mismatched)}")
    result = encoder.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "masked_spec_embed"]
    if missing or result.unexpected_keys:
        parts = []
        if missing:
            parts.append(f"missing keys {_list_keys(missing)}")
        if result.unexpected_keys:
            parts.append(f"unexpected keys {_list_keys(list(result.unexpected_keys))}")
        raise ActivityError(f"encoder weights {path} do not match the architecture: {'; '.join(parts)}")


def freeze_encoder(encoder: HubertModel) -> None:
    """No gradients for any encoder parameter."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)


def freeze_feature_extractor(encoder: HubertModel) -> None:
    """No gradients for the conv front end (the transformer stays trainable).

    Clearing ``requires_grad`` alone is not enough: in train mode ``HubertFeatureEncoder`` marks its
    input waveform as requiring a gradient unless its own ``_requires_grad`` flag is off, and then the
    whole conv stack is differentiated and its activations kept for nothing (for ``compact`` on the CPU,
    8% of a training step and 30% of its memory: experiments/RESULTS.md, Training throughput).
    """
    extractor = encoder.feature_extractor
    for parameter in extractor.parameters():
        parameter.requires_grad_(False)
    if hasattr(extractor, "_requires_grad"):
        extractor._requires_grad = False


def load_encoder(
    name_or_path: str | os.PathLike,
    *,
    mask_time_prob: float = 0.0,
    freeze: bool = False,
    freeze_conv: bool = False,
    gradient_checkpointing: bool = False,
) -> HubertModel:
    """A ready ``HubertModel``: a random preset, MERT's released weights, a folder of MERT's files or a hub id.

    ``freeze`` stops gradients to the whole encoder, ``freeze_conv`` only to its conv front end;
    ``gradient_checkpointing`` recomputes layer activations in the backward pass to save memory. The
    input normalisation the checkpoint expects is :func:`resolve_encoder`'s ``do_normalize``.
    """
    source = resolve_encoder(name_or_path)
    encoder = build_encoder(source.config, mask_time_prob=mask_time_prob)
    if source.weights is not None:
        load_encoder_weights(encoder, source.weights)
    if freeze:
        freeze_encoder(encoder)
    elif freeze_conv:
        freeze_feature_extractor(encoder)
    if gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    return encoder


def enable_gradient_checkpointing(encoder: HubertModel) -> None:
    """Recompute each transformer layer in the backward pass (non-reentrant: works with frozen inputs)."""
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


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


def time_mask(batch: int, frames: int, config: HubertConfig, device: torch.device) -> torch.Tensor | None:
    """SpecAugment time-mask spans ``(B, T)`` bool drawn from torch's RNG; None when masking is off.

    Like wav2vec 2.0: about ``mask_time_prob * T / mask_time_length`` spans (at least
    ``mask_time_min_masks``) of ``mask_time_length`` frames per example, start frames uniform. Drawing
    from torch rather than numpy (as HubertModel does) makes masking follow ``torch.manual_seed`` and
    the saved RNG state of a resumed run.
    """
    prob = float(getattr(config, "mask_time_prob", 0.0))
    if prob <= 0:
        return None
    length = int(getattr(config, "mask_time_length", 10))
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    if frames >= length > 0:
        min_masks = int(getattr(config, "mask_time_min_masks", 0))
        spans = (prob * frames / length + torch.rand(batch)).long()
        spans = torch.clamp(spans, min=min_masks).clamp(max=frames // length)
        most = int(spans.max())
        if most > 0:
            starts = torch.randint(0, frames - length + 1, (batch, most))
            index = (starts[:, :, None] + torch.arange(length)).reshape(batch, -1)
            used = (torch.arange(most)[None, :] < spans[:, None])[:, :, None].expand(-1, -1, length)
            # Spans may overlap; a position is masked when any used span covers it.
            mask.scatter_reduce_(1, index, used.reshape(batch, -1), reduce="amax")
    # An all-False mask (not None) keeps HubertModel from drawing its own numpy mask in train mode.
    return mask.to(device)


def encoder_hidden_states(encoder: HubertModel, waveform: torch.Tensor) -> list[torch.Tensor]:
    """All hidden states of ``encoder`` for ``(B, N)`` (already normalised) audio.

    Returns ``num_hidden_layers + 1`` tensors ``(B, T, hidden)`` with ``T = num_frames(N)``: the
    embedding output, then every layer. The last one is always the model's ``last_hidden_state``, i.e.
    after the final LayerNorm of the pre-LN layout (transformers >= 5.16 would give it before that norm).
    In train mode SpecAugment time masking is applied when ``config.mask_time_prob > 0``.
    """
    mask = None
    if encoder.training:
        frames = num_frames(waveform.shape[-1])
        mask = time_mask(waveform.shape[0], frames, encoder.config, waveform.device)
    output = encoder(waveform, mask_time_indices=mask, output_hidden_states=True, return_dict=True)
    hidden = list(output.hidden_states or ())
    expected = encoder.config.num_hidden_layers + 1
    if len(hidden) != expected:
        raise RuntimeError(f"the encoder returned {len(hidden)} hidden states, expected {expected} "
                           f"(is LayerDrop on? layerdrop={encoder.config.layerdrop})")
    hidden[-1] = output.last_hidden_state
    return hidden
