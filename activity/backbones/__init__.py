"""Encoders behind one seam, and the registry of their kinds.

:class:`Backbone` (:mod:`activity.backbones.base`) is the interface the model uses; :data:`BACKBONES`
maps the ``encoder_kind`` saved in a model's ``config.json`` to the class that builds it. Adding a kind
of encoder is one module here with a :class:`Backbone` subclass, one line in :data:`BACKBONES`, and its
tests (README, "Where things are"). :mod:`activity.backbones.grid` moves audio and frames between an
encoder's rates and the package's 24 kHz / 75 Hz.
"""

from __future__ import annotations

from typing import Any

from ..errors import ActivityError
from .base import Backbone
from .wav2vec2_family import Data2VecAudioBackbone, HubertBackbone, Wav2Vec2Backbone, WavLMBackbone

BACKBONES: dict[str, type[Backbone]] = {
    "hubert": HubertBackbone,
    "wav2vec2": Wav2Vec2Backbone,
    "wavlm": WavLMBackbone,
    "data2vec-audio": Data2VecAudioBackbone,
}
"""Encoder kinds by the name saved in ``config.json`` (``encoder_kind``)."""


def backbone_class(kind: str, source: str = "encoder_kind") -> type[Backbone]:
    """The class of an encoder kind; :class:`ActivityError` naming ``source`` and the known kinds otherwise."""
    try:
        return BACKBONES[kind]
    except (KeyError, TypeError):
        raise ActivityError(f"{source}: unknown encoder kind {kind!r}; known: {', '.join(BACKBONES)}") from None


def build_backbone(kind: str, fields: dict[str, Any], *, sample_rate: int, mask_time_prob: float = 0.0,
                   source: str = "encoder_config") -> Backbone:
    """A randomly initialised encoder of ``kind`` from its configuration dict."""
    return backbone_class(kind).build(fields, sample_rate=sample_rate, mask_time_prob=mask_time_prob, source=source)


__all__ = ["BACKBONES", "Backbone", "backbone_class", "build_backbone"]
