"""The instrument-activity network: encoder -> layer mix -> 75 Hz grid -> BiGRU -> logits -> auto-pool.

``ActivityModel`` takes ``(B, N)`` audio at 24 kHz and returns per-frame (75 Hz) and per-clip
probabilities of the nine classes. The encoder is any kind of :mod:`activity.backbones` (MERT by
default); audio is resampled to its rate inside the model (24 kHz encoders such as MERT-v1 skip this).
Its head:

* a softmax-weighted sum of ALL encoder hidden states (embedding output and every layer; one learned
  logit each, initialised equal), moved onto the 75 Hz output grid when the encoder's frames are not
  already on it (linear interpolation of frame centre times, :func:`activity.backbones.grid.to_output_grid`:
  the BiGRU, the logits, the truth and the scores are then at 75 Hz for every encoder), followed by a
  LayerNorm (pre-LN encoders such as MERT-330M give intermediate states of very different scales);
* a bidirectional GRU and a linear layer giving per-frame logits ``(B, T, 9)``;
* auto-pool (McFee et al. 2018), one learned ``alpha`` per class:
  ``p_clip = sum_t p_t * softmax_t(alpha * p_t)`` (``alpha = 0`` is the mean, large ``alpha`` the max).

A model is saved as a folder (``config.json``, ``model.safetensors``, optional ``thresholds.json``)
that rebuilds with no network and no original MERT weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .backbones import Backbone, build_backbone
from .backbones.grid import Resampler, to_output_grid
from .constants import CLASSES, FRAME_RATE, NUM_CLASSES, PROB_EPS, RECEPTIVE_FIELD, SAMPLE_RATE, num_frames
from .encoder import DROPOUT_FIELDS, encoder_config_dict, normalize_waveform, resolve_encoder
from .errors import ActivityError
from .fileio import atomic_dir, complete_dir

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
THRESHOLDS_FILE = "thresholds.json"


@dataclass
class ActivityConfig:
    """Everything needed to rebuild an :class:`ActivityModel` (saved as ``config.json``).

    ``encoder`` is informational (the preset, folder or hub id the encoder came from);
    ``encoder_config`` is the encoder's configuration as a dict (a HubertConfig's fields for MERT), enough to
    rebuild the architecture offline; ``encoder_kind`` names its class in :data:`activity.backbones.BACKBONES`,
    ``encoder_sample_rate`` the audio it takes (Hz) and ``encoder_frame_rate`` the frames it gives (Hz, checked
    against the architecture when built). Files written before these three existed are MERT's kind at 24 kHz
    and 75 Hz, their defaults.
    """

    encoder_config: dict[str, Any]
    encoder: str = "tiny"
    encoder_kind: str = "hubert"
    encoder_sample_rate: int = SAMPLE_RATE
    encoder_frame_rate: float = float(FRAME_RATE)
    do_normalize: bool = True
    gru_hidden: int = 256
    gru_layers: int = 2
    gru_dropout: float = 0.1
    num_classes: int = NUM_CLASSES
    class_names: list[str] = field(default_factory=lambda: list(CLASSES))
    autopool_init: float = 1.0
    mask_time_prob: float = 0.0

    def __post_init__(self) -> None:
        self.class_names = list(self.class_names)
        if self.num_classes != NUM_CLASSES or len(self.class_names) != NUM_CLASSES:
            raise ActivityError(
                f"model config has {self.num_classes} classes ({len(self.class_names)} names); this package "
                f"predicts {NUM_CLASSES}: {', '.join(CLASSES)}")
        if tuple(self.class_names) != CLASSES:
            raise ActivityError(f"model config classes {self.class_names} differ from {list(CLASSES)} (name or order)")
        if not isinstance(self.encoder_config, dict):
            raise ActivityError("model config: encoder_config must be a JSON object")
        if self.gru_hidden < 1 or self.gru_layers < 1:
            raise ActivityError(f"gru_hidden and gru_layers must be >= 1, got {self.gru_hidden} and {self.gru_layers}")
        if not 0.0 <= self.gru_dropout < 1.0:
            raise ActivityError(f"gru_dropout must be in [0, 1), got {self.gru_dropout}")
        if not 0.0 <= self.mask_time_prob < 1.0:
            raise ActivityError(f"mask_time_prob must be in [0, 1), got {self.mask_time_prob}")
        if isinstance(self.encoder_sample_rate, bool) or not isinstance(self.encoder_sample_rate, int) \
                or self.encoder_sample_rate <= 0:
            raise ActivityError(f"encoder_sample_rate must be a positive whole number of Hz, got {self.encoder_sample_rate!r}")
        if not isinstance(self.encoder_frame_rate, (int, float)) or not self.encoder_frame_rate > 0:
            raise ActivityError(f"encoder_frame_rate must be a positive number of Hz, got {self.encoder_frame_rate!r}")
        self.encoder_frame_rate = float(self.encoder_frame_rate)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what ``config.json`` holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model config") -> "ActivityConfig":
        """The inverse of :meth:`to_dict`; unknown keys, missing ``encoder_config`` or a wrong class
        count raise :class:`ActivityError` naming ``source``."""
        if not isinstance(data, dict):
            raise ActivityError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ActivityError(f"{source}: unknown key(s) {', '.join(unknown)}")
        if "encoder_config" not in data:
            raise ActivityError(f"{source}: missing encoder_config")
        try:
            return cls(**data)
        except ActivityError as exc:
            raise ActivityError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ActivityError(f"{source}: {exc}") from None


@dataclass
class ActivityOutput:
    """What :meth:`ActivityModel.forward` returns: T frames at 75 Hz, 9 classes, all float32
    (also under bf16 autocast)."""

    frame_logits: torch.Tensor  # (B, T, 9) float32
    frame_probs: torch.Tensor  # (B, T, 9) float32, sigmoid of frame_logits
    clip_probs: torch.Tensor  # (B, 9) float32, auto-pooled frame_probs
    clip_logits: torch.Tensor  # (B, 9) float32, logit of clip_probs clamped to [1e-6, 1 - 1e-6]
    layer_weights: torch.Tensor  # (L + 1,) float32, softmax of the layer-mix logits


def autopool(frame_probs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Auto-pool over time: ``(B, T, C)`` probabilities and ``(C,)`` alpha -> ``(B, C)``, in float32.

    ``sum_t p_t * softmax_t(alpha * p_t)``: always between the min and max over t; the mean at
    ``alpha = 0``; tends to the max as ``alpha`` grows (and to the min as it falls).
    """
    probs = frame_probs.float()
    weights = torch.softmax(alpha.float() * probs, dim=1)
    return (probs * weights).sum(dim=1)


def validate_thresholds(values: Any, source: str = "thresholds") -> list[float]:
    """Nine finite floats strictly between 0 and 1, as a list; raises :class:`ActivityError`."""
    try:
        floats = [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
    except (TypeError, ValueError):
        raise ActivityError(f"{source}: expected {NUM_CLASSES} numbers, got {values!r}") from None
    if len(floats) != NUM_CLASSES:
        raise ActivityError(f"{source}: expected {NUM_CLASSES} thresholds (one per class), got {len(floats)}")
    bad = [f"{name}={v}" for name, v in zip(CLASSES, floats) if not (math.isfinite(v) and 0.0 < v < 1.0)]
    if bad:
        raise ActivityError(f"{source}: thresholds must lie strictly between 0 and 1: {', '.join(bad)}")
    return floats


class ActivityModel(nn.Module):
    """Encoder (:class:`~activity.backbones.Backbone`) + layer mix + BiGRU + per-frame classifier + auto-pool.

    ``thresholds``: optional per-class decision thresholds (9 floats in (0, 1)); None means 0.5.
    ``resampler``: 24 kHz -> the encoder's rate, or None for a 24 kHz encoder.
    """

    def __init__(self, config: ActivityConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder: Backbone = build_backbone(config.encoder_kind, dict(config.encoder_config),
                                                sample_rate=config.encoder_sample_rate,
                                                mask_time_prob=config.mask_time_prob, source="encoder_config")
        if abs(self.encoder.frame_rate - config.encoder_frame_rate) > 1e-6 * config.encoder_frame_rate:
            raise ActivityError(f"encoder_frame_rate is {config.encoder_frame_rate:g} Hz, but the encoder's front end "
                                f"gives {self.encoder.frame_rate:g} Hz at {config.encoder_sample_rate} Hz")
        self.resampler = (Resampler(SAMPLE_RATE, config.encoder_sample_rate)
                          if config.encoder_sample_rate != SAMPLE_RATE else None)
        hidden = self.encoder.hidden_size
        states = self.encoder.num_hidden_states
        self.layer_logits = nn.Parameter(torch.zeros(states))  # equal weights at the start
        self.mix_norm = nn.LayerNorm(hidden)
        self.gru = nn.GRU(
            hidden, config.gru_hidden, num_layers=config.gru_layers, batch_first=True, bidirectional=True,
            dropout=config.gru_dropout if config.gru_layers > 1 else 0.0,  # torch warns on dropout with 1 layer
        )
        self.classifier = nn.Linear(2 * config.gru_hidden, config.num_classes)
        self.autopool_alpha = nn.Parameter(torch.full((config.num_classes,), float(config.autopool_init)))
        self._thresholds: list[float] | None = None

    # ------------------------------------------------------------------------------------------
    # Construction

    @classmethod
    def from_encoder(
        cls,
        name_or_path: str | os.PathLike,
        *,
        gru_hidden: int = 256,
        gru_layers: int = 2,
        gru_dropout: float = 0.1,
        autopool_init: float = 1.0,
        mask_time_prob: float = 0.0,
    ) -> "ActivityModel":
        """A new model around an encoder preset (random weights), a model folder or hub id (real weights).

        The head is randomly initialised (seed with ``torch.manual_seed`` first for reproducibility).
        """
        source = resolve_encoder(name_or_path)
        source.config.mask_time_prob = float(mask_time_prob)  # the checkpoint's pre-training value does not apply
        config = ActivityConfig(
            encoder=str(name_or_path), encoder_config=encoder_config_dict(source.config),
            encoder_kind=source.kind, encoder_sample_rate=source.sample_rate, encoder_frame_rate=source.frame_rate,
            do_normalize=source.do_normalize, gru_hidden=gru_hidden, gru_layers=gru_layers,
            gru_dropout=gru_dropout, autopool_init=autopool_init, mask_time_prob=mask_time_prob,
        )
        model = cls(config)
        if source.weights is not None:
            model.encoder.load_weights(source.weights)
        return model

    def with_encoder_dropout(self, rate: float) -> "ActivityModel":
        """A copy of this model (same weights and thresholds) whose encoder uses dropout ``rate`` in
        [0, 1) for every field of :data:`~activity.encoder.DROPOUT_FIELDS`; the rate is saved in its
        ``config.json``. Rebuilt from the config rather than patched, so every dropout the installed
        transformers creates from those fields follows."""
        if not 0.0 <= rate < 1.0:
            raise ActivityError(f"--encoder-dropout must be in [0, 1), got {rate}")
        encoder_config = {**self.config.encoder_config, **{key: float(rate) for key in DROPOUT_FIELDS}}
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation must not shift the caller's RNG
            model = type(self)(replace(self.config, encoder_config=encoder_config))
        model.load_state_dict(self.state_dict(), strict=True)
        model.thresholds = self.thresholds
        device = next(self.parameters()).device
        return model.to(device).train(self.training)

    # ------------------------------------------------------------------------------------------
    # Thresholds

    @property
    def thresholds(self) -> list[float] | None:
        """Per-class decision thresholds, or None (0.5 for every class)."""
        return None if self._thresholds is None else list(self._thresholds)

    @thresholds.setter
    def thresholds(self, values: Sequence[float] | None) -> None:
        self._thresholds = None if values is None else validate_thresholds(values)

    # ------------------------------------------------------------------------------------------
    # Parameters

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's parameters (for their own, usually lower, learning rate)."""
        return self.encoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Everything but the encoder: layer mix, LayerNorm, BiGRU, classifier, auto-pool alphas."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return (p for p in self.parameters() if id(p) not in encoder_ids)

    def freeze_encoder(self) -> None:
        """Train only the head; the encoder then runs without building a graph."""
        self.encoder.freeze()

    def freeze_feature_extractor(self) -> None:
        """Freeze only the encoder's conv front end."""
        self.encoder.freeze_feature_extractor()

    def gradient_checkpointing_enable(self) -> None:
        """Recompute encoder layer activations in the backward pass (less memory, more compute)."""
        self.encoder.enable_gradient_checkpointing()

    def layer_weights(self) -> torch.Tensor:
        """Softmax of the layer-mix logits, ``(L + 1,)`` float32, summing to 1."""
        return torch.softmax(self.layer_logits.float(), dim=0)

    # ------------------------------------------------------------------------------------------
    # Forward

    def encoder_input(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` audio at 24 kHz -> ``(B, N')`` float32 as the encoder takes it: resampled to its rate,
        normalised per clip over time when ``config.do_normalize``, and zero-padded at the end to one
        receptive field when shorter (only clips under 25 ms at 16 kHz)."""
        x = waveform.float() if self.resampler is None else self.resampler(waveform)
        x = normalize_waveform(x) if self.config.do_normalize else x.float()
        if x.shape[-1] < self.encoder.receptive_field:
            x = torch.nn.functional.pad(x, (0, self.encoder.receptive_field - x.shape[-1]))
        return x

    def frame_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """The layer mix on the 75 Hz grid: ``(B, N)`` audio at 24 kHz -> ``(B, num_frames(N), D)``, before
        the LayerNorm (in the encoder's dtype)."""
        return self._mixed(waveform, self.layer_weights())

    def _mixed(self, waveform: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ActivityError(f"the model takes (batch, samples) audio, got shape {tuple(waveform.shape)}")
        if waveform.shape[-1] < RECEPTIVE_FIELD:
            raise ActivityError(f"audio of {waveform.shape[-1]} samples is shorter than one frame ({RECEPTIVE_FIELD})")
        x = self.encoder_input(waveform)
        frozen = not any(p.requires_grad for p in self.encoder.parameters())
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden = self.encoder.hidden_states(x)
        stacked = torch.stack(hidden, dim=0)  # (L + 1, B, T_enc, H)
        mixed = torch.einsum("l,lbth->bth", weights.to(stacked.dtype), stacked)
        # Mixing and interpolating commute (both linear in the states): interpolating the mix is the cheap order.
        encoder = self.encoder
        return to_output_grid(mixed, num_frames(waveform.shape[-1]), encoder.sample_rate, encoder.hop,
                              encoder.receptive_field)

    def forward(self, waveform: torch.Tensor) -> ActivityOutput:
        """``(B, N)`` float audio at 24 kHz (N >= 400) -> :class:`ActivityOutput` with T = num_frames(N).

        Resampling to the encoder's rate and normalisation (per clip, over time, when
        ``config.do_normalize``) are applied here (:meth:`encoder_input`). Under bf16 autocast the encoder
        runs in bf16, the GRU too on CUDA (float32 on the CPU, where autocast would run it step by step);
        resampling, sigmoid and auto-pool always run in float32.
        """
        weights = self.layer_weights()
        mixed = self._mixed(waveform, weights)
        # LayerNorm runs in float32 under autocast anyway; casting first also serves bf16 encoders run
        # without autocast (the CPU fast path of activity.predict).
        mixed = self.mix_norm(mixed.float())
        if mixed.is_cuda:
            self.gru.flatten_parameters()  # weights may have been moved (.to, DDP): keep cuDNN's layout
            sequence, _ = self.gru(mixed)
        else:
            # CPU autocast runs the GRU step by step, casting its weights at each of the T steps: 4x
            # slower than float32, which is also more accurate.
            with torch.autocast("cpu", enabled=False):
                sequence, _ = self.gru(mixed)
        frame_logits = self.classifier(sequence)
        device_type = frame_logits.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            frame_logits = frame_logits.float()
            frame_probs = torch.sigmoid(frame_logits)
            clip_probs = autopool(frame_probs, self.autopool_alpha)
            clip_logits = torch.logit(clip_probs.clamp(PROB_EPS, 1.0 - PROB_EPS))
        return ActivityOutput(frame_logits=frame_logits, frame_probs=frame_probs, clip_probs=clip_probs,
                              clip_logits=clip_logits, layer_weights=weights)

    # ------------------------------------------------------------------------------------------
    # Saving and loading

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` (+ ``thresholds.json``) into ``directory``.

        The folder is filled under a temporary sibling name and renamed into place, so a process killed
        while saving leaves the previous checkpoint intact (see :func:`activity.fileio.atomic_dir`).
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {key: tensor.detach().to("cpu").contiguous() for key, tensor in self.state_dict().items()}
        with atomic_dir(directory) as tmp:
            (tmp / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
            save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
            if self._thresholds is not None:
                (tmp / THRESHOLDS_FILE).write_text(
                    json.dumps({"classes": list(CLASSES), "thresholds": self._thresholds}, indent=2) + "\n",
                    encoding="utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> "ActivityModel":
        """Load a folder written by :meth:`save_pretrained`, strictly, in eval mode on ``device``.

        Raises :class:`ActivityError` naming the file for a missing folder, a missing or unreadable
        ``config.json`` / ``model.safetensors``, weights that do not fit the config (keys or shapes), a
        config for another class count, or an invalid ``thresholds.json``.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        requested = Path(directory)
        folder = complete_dir(requested)  # <dir>.old when a save was killed between its two renames
        if folder is None:
            raise ActivityError(f"checkpoint folder {requested} does not exist")
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise ActivityError(f"checkpoint {folder} has no {CONFIG_FILE}")
        try:
            data = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ActivityError(f"{config_path} is not valid JSON: {exc}") from None
        config = ActivityConfig.from_dict(data, source=str(config_path))
        weights_path = folder / WEIGHTS_FILE
        if not weights_path.is_file():
            raise ActivityError(f"checkpoint {folder} has no {WEIGHTS_FILE}")
        try:
            state = load_file(str(weights_path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ActivityError(f"{weights_path} is corrupt or not a safetensors file: {exc}") from None
        model = cls(config)
        _load_strict(model, state, weights_path)
        thresholds_path = folder / THRESHOLDS_FILE
        if thresholds_path.exists():
            model.thresholds = read_thresholds(thresholds_path)
        return model.to(device).eval()


def read_thresholds(path: str | os.PathLike) -> list[float]:
    """The thresholds of a ``thresholds.json`` (``{"classes": [...9], "thresholds": [...9]}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActivityError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "thresholds" not in data:
        raise ActivityError(f'{path}: expected {{"classes": [...], "thresholds": [...]}}')
    if "classes" in data and list(data["classes"]) != list(CLASSES):
        raise ActivityError(f"{path}: classes {data['classes']} differ from {list(CLASSES)}")
    return validate_thresholds(data["thresholds"], source=str(path))


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                  for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_short(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch (file vs config) for {_short(mismatched)}")
    if problems:
        raise ActivityError(f"{path} does not match its config.json: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


def _short(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f" (and {len(items) - limit} more)" if len(items) > limit else "")

