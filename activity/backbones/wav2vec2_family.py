"""transformers' wav2vec 2.0 family as encoders of the seam: HuBERT (MERT), wav2vec 2.0, WavLM, data2vec-audio.

All four share one shape (a 7-layer strided conv front end, a feature projection, a transformer with a
convolutional positional embedding) and one calling convention in transformers, so one mixin serves them:
:class:`FamilyBackbone` subclasses the stock model class (``HubertModel``, ...) and adds the seam's methods.
Subclassing rather than wrapping keeps the state-dict keys (``encoder.feature_extractor...`` in a saved
model) those of the stock class, so checkpoints written before the seam load unchanged. No remote code is
run: MERT's and music2vec's released files are loaded into these stock classes by key (:meth:`load_weights`).

Rates: frames come every ``prod(conv_stride)`` samples and see ``1 + sum((k_i - 1) prod(s_<i))``; with
the usual kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2 that is 320 and 400 samples, i.e. 75 Hz at
MERT-v1's 24 kHz and 50 Hz at 16 kHz (MERT-v0, music2vec-v1 and every facebook model of this family).

Training traps handled here: LayerDrop is always off (it drops entries of ``hidden_states`` in train
mode), SpecAugment time masking is an option drawn from torch's RNG (seedable, so resumable), and the
last hidden state of the pre-LN layout is taken after the final LayerNorm on every transformers version.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import (Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel, PretrainedConfig,
                          Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel)

from ..cpu_kernels import positional_conv_in_float32
from ..errors import ActivityError
from .base import Backbone

_NOT_ARCHITECTURE = {
    "_name_or_path", "architectures", "transformers_version", "id2label", "label2id", "dtype", "problem_type",
    "output_attentions", "output_hidden_states", "return_dict", "is_encoder_decoder", "chunk_size_feed_forward",
    "model_type",
}

_REQUIRED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim",
                    "conv_kernel", "conv_stride")

DROPOUT_FIELDS: tuple[str, ...] = ("hidden_dropout", "attention_dropout", "feat_proj_dropout")
"""The encoder's dropout rates that ``--encoder-dropout`` sets (0.1 each in MERT-v1-95M and ``compact``)."""

# Parametrised weight norm (torch >= 2.1) renames the old weight_g / weight_v keys of released checkpoints.
_OLD_WEIGHT_NORM = re.compile(r"\.weight_([gv])$")
_NEW_WEIGHT_NORM = {"g": ".parametrizations.weight.original0", "v": ".parametrizations.weight.original1"}


def conv_geometry(fields: dict[str, Any] | PretrainedConfig) -> tuple[int, int]:
    """``(hop, receptive_field)`` in samples of a conv front end's kernels and strides."""
    get = fields.get if isinstance(fields, dict) else lambda key: getattr(fields, key)
    hop, field = 1, 1
    for kernel, stride in zip(get("conv_kernel"), get("conv_stride")):
        field += (int(kernel) - 1) * hop
        hop *= int(stride)
    return hop, field


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


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


class FamilyBackbone(Backbone):
    """The seam for a stock transformers model of the wav2vec 2.0 family (mixed in before the model class)."""

    config_class_: ClassVar[type[PretrainedConfig]]
    model_class: ClassVar[type[nn.Module]]
    wrapper_prefixes: ClassVar[tuple[str, ...]] = ()
    """Key prefixes of wrapper models (``hubert.`` of ``HubertForCTC``, ...) stripped when loading weights."""

    # ------------------------------------------------------------------------------------------
    # Configurations

    @classmethod
    def architecture_fields(cls) -> list[str]:
        """The config class's own fields that describe the network (saved with a model)."""
        return sorted(set(cls.config_class_().to_dict()) - _NOT_ARCHITECTURE)

    @classmethod
    def make_config(cls, fields: dict[str, Any], source: str = "encoder config") -> PretrainedConfig:
        """The transformers config of this kind from a (possibly remote-code) config dict, LayerDrop off.

        Fields of other kinds or of remote code (``auto_map``, MERT's ``attention_relax``, ...) are dropped;
        MERT's CQT front end and DeepNorm, which stock classes do not have, are refused naming ``source``.
        """
        if not isinstance(fields, dict):
            raise ActivityError(f"{source}: expected a JSON object, got {type(fields).__name__}")
        missing = [key for key in _REQUIRED_FIELDS if key not in fields]
        if missing:
            raise ActivityError(f"{source}: missing the field(s) {', '.join(missing)}")
        for flag in ("feature_extractor_cqt", "deepnorm"):
            if fields.get(flag):
                raise ActivityError(f"{source}: {flag}=true is not a stock {cls.kind} network and is not supported")
        lengths = {len(list(fields[key])) for key in ("conv_dim", "conv_kernel", "conv_stride")}
        if len(lengths) != 1:
            raise ActivityError(f"{source}: conv_dim, conv_kernel and conv_stride must have equal lengths")
        known = set(cls.architecture_fields())
        kept = {key: value for key, value in fields.items() if key in known}
        kept["layerdrop"] = 0.0  # LayerDrop removes entries of hidden_states in train mode: the layer mix needs all
        kept["mask_feature_prob"] = 0.0
        kept["num_feat_extract_layers"] = len(list(fields["conv_dim"]))
        attention = "sdpa" if getattr(cls.model_class, "_supports_sdpa", False) else "eager"
        try:
            return cls.config_class_(**kept, attn_implementation=attention)
        except (TypeError, ValueError) as exc:
            raise ActivityError(f"{source}: not a valid {cls.kind} configuration: {exc}") from None

    @classmethod
    def config_to_dict(cls, config: PretrainedConfig) -> dict[str, Any]:
        """The architecture fields of ``config`` as a plain JSON-able dict (what a saved model stores)."""
        full = config.to_dict()
        return {key: full[key] for key in cls.architecture_fields() if key in full}

    # ------------------------------------------------------------------------------------------
    # The seam

    @classmethod
    def build(cls, fields: dict[str, Any] | PretrainedConfig, *, sample_rate: int, mask_time_prob: float = 0.0,
              source: str = "encoder_config") -> "FamilyBackbone":
        """A randomly initialised encoder, made safe for training.

        LayerDrop is off, SpecAugment feature masking off, time masking set to ``mask_time_prob`` (applied by
        :meth:`hidden_states` in train mode). ``masked_spec_embed`` always exists so that state dicts do not
        depend on the masking option. The positional convolution runs in float32 under CPU autocast
        (:func:`activity.cpu_kernels.positional_conv_in_float32`: oneDNN's bf16 kernel for it is wrong on AMX).
        """
        if not 0.0 <= mask_time_prob < 1.0:
            raise ActivityError(f"--mask-time-prob must be in [0, 1), got {mask_time_prob}")
        config = cls.make_config(dict(fields), source) if isinstance(fields, dict) else fields
        config.layerdrop = 0.0
        config.mask_feature_prob = 0.0
        config.mask_time_prob = float(mask_time_prob)
        encoder = cls(config)
        if getattr(encoder, "masked_spec_embed", None) is None:
            encoder.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        # Unused without masking: a trainable parameter that never gets a gradient breaks DDP.
        encoder.masked_spec_embed.requires_grad_(mask_time_prob > 0)
        positional_conv_in_float32(encoder)
        encoder.sample_rate = int(sample_rate)
        encoder.hop, encoder.receptive_field = conv_geometry(config)
        return encoder

    def config_dict(self) -> dict[str, Any]:
        return self.config_to_dict(self.config)

    @property
    def num_hidden_states(self) -> int:
        return int(self.config.num_hidden_layers) + 1

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def hidden_states(self, waveform: torch.Tensor) -> list[torch.Tensor]:
        """All hidden states: the embedding output, then every layer, each ``(B, T_enc, hidden_size)``.

        The last one is always the model's ``last_hidden_state``, i.e. after the final LayerNorm of the
        pre-LN layout (transformers >= 5.16 would give it before that norm). In train mode SpecAugment time
        masking is applied when ``config.mask_time_prob > 0``.
        """
        mask = None
        if self.training:
            mask = time_mask(waveform.shape[0], self.num_frames(waveform.shape[-1]), self.config, waveform.device)
        output = self(waveform, mask_time_indices=mask, output_hidden_states=True, return_dict=True)
        hidden = list(output.hidden_states or ())
        if len(hidden) != self.num_hidden_states:
            raise RuntimeError(f"the encoder returned {len(hidden)} hidden states, expected {self.num_hidden_states} "
                               f"(is LayerDrop on? layerdrop={self.config.layerdrop})")
        hidden[-1] = output.last_hidden_state
        return hidden

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        front = list(self.feature_extractor.parameters())
        ids = {id(p) for p in front}
        return {"feature_extractor": front, "transformer": [p for p in self.parameters() if id(p) not in ids]}

    def freeze_feature_extractor(self) -> None:
        """No gradients for the conv front end (the transformer stays trainable).

        Clearing ``requires_grad`` alone is not enough: in train mode the feature encoder marks its input
        waveform as requiring a gradient unless its own ``_requires_grad`` flag is off, and then the whole
        conv stack is differentiated and its activations kept for nothing (for ``compact`` on the CPU, 8% of
        a training step and 30% of its memory: experiments/RESULTS.md, Training throughput).
        """
        super().freeze_feature_extractor()
        if hasattr(self.feature_extractor, "_requires_grad"):
            self.feature_extractor._requires_grad = False

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each transformer layer in the backward pass (non-reentrant: works with frozen inputs)."""
        kwargs = {"use_reentrant": False}
        if hasattr(self, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
            self.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            self.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load released weights (``pytorch_model.bin`` or ``model.safetensors``) strictly.

        Accepted renamings, and nothing else: old weight-norm keys (``...weight_g`` / ``...weight_v``); a
        wrapper model's prefix (``hubert.``, ``wav2vec2.``, ...), whose task-head keys outside it are then
        set aside with one line; a missing ``masked_spec_embed`` (the SpecAugment vector, unused at
        inference) keeps the random one. Any other missing or unexpected key, or a shape mismatch, raises
        :class:`ActivityError` naming the keys.
        """
        path = Path(path)
        state = _read_state_dict(path)
        own_roots = {key.split(".")[0] for key in self.state_dict()}
        if state and not any(key.split(".")[0] in own_roots for key in state):
            for prefix in self.wrapper_prefixes:
                inner = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
                if inner:
                    head = sorted(k for k in state if not k.startswith(prefix + "."))
                    if head:
                        print(f"encoder weights {path}: using the {prefix}. encoder, ignoring {len(head)} key(s) of "
                              f"the wrapper's head: {_list_keys(head, 4)}", file=sys.stderr)
                    state = inner
                    break
        state = {_OLD_WEIGHT_NORM.sub(lambda m: _NEW_WEIGHT_NORM[m.group(1)], k) if k.endswith(("weight_g", "weight_v"))
                 else k: v for k, v in state.items()}
        expected = self.state_dict()
        mismatched = [f"{key} {tuple(tensor.shape)} vs {tuple(expected[key].shape)}" for key, tensor in state.items()
                      if key in expected and tuple(expected[key].shape) != tuple(tensor.shape)]
        if mismatched:
            raise ActivityError(f"encoder weights {path} do not fit the architecture in config.json: "
                                f"shape mismatch for {_list_keys(mismatched)}")
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if k != "masked_spec_embed"]
        if missing or result.unexpected_keys:
            parts = []
            if missing:
                parts.append(f"missing keys {_list_keys(missing)}")
            if result.unexpected_keys:
                parts.append(f"unexpected keys {_list_keys(list(result.unexpected_keys))}")
            raise ActivityError(f"encoder weights {path} do not match the architecture: {'; '.join(parts)}")


def time_mask(batch: int, frames: int, config: PretrainedConfig, device: torch.device) -> torch.Tensor | None:
    """SpecAugment time-mask spans ``(B, T)`` bool drawn from torch's RNG; None when masking is off.

    Like wav2vec 2.0: about ``mask_time_prob * T / mask_time_length`` spans (at least
    ``mask_time_min_masks``) of ``mask_time_length`` frames per example, start frames uniform. Drawing
    from torch rather than numpy (as transformers does) makes masking follow ``torch.manual_seed`` and
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
    # An all-False mask (not None) keeps the model from drawing its own numpy mask in train mode.
    return mask.to(device)


class HubertBackbone(FamilyBackbone, HubertModel):
    """HuBERT: MERT-v1 (24 kHz), MERT-v0 and MERT-v0-public (16 kHz), facebook's HuBERT models."""

    kind = "hubert"
    config_class_ = HubertConfig
    model_class = HubertModel
    wrapper_prefixes = ("hubert", "mert", "model")


class Wav2Vec2Backbone(FamilyBackbone, Wav2Vec2Model):
    """wav2vec 2.0 (16 kHz models of facebook and others)."""

    kind = "wav2vec2"
    config_class_ = Wav2Vec2Config
    model_class = Wav2Vec2Model
    wrapper_prefixes = ("wav2vec2", "model")


class WavLMBackbone(FamilyBackbone, WavLMModel):
    """WavLM (eager attention: transformers has no SDPA path for its gated relative position bias)."""

    kind = "wavlm"
    config_class_ = WavLMConfig
    model_class = WavLMModel
    wrapper_prefixes = ("wavlm", "model")


class Data2VecAudioBackbone(FamilyBackbone, Data2VecAudioModel):
    """data2vec-audio: music2vec-v1 (16 kHz) and facebook's data2vec-audio models."""

    kind = "data2vec-audio"
    config_class_ = Data2VecAudioConfig
    model_class = Data2VecAudioModel
    wrapper_prefixes = ("data2vec_audio", "music2vec", "model")
