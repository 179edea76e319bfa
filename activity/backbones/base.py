"""The encoder seam: what :class:`~activity.model.ActivityModel` needs of a pretrained audio encoder.

An encoder is a ``torch.nn.Module`` that also is a :class:`Backbone`: it says which audio it takes and
which frames it gives (``sample_rate``; ``hop`` and ``receptive_field`` in samples at that rate, so frame
``j`` sees samples ``[j * hop, j * hop + receptive_field)``), how many hidden states of what width it
returns, and how its parameters split into groups for freezing. The model does the rest: resampling
24 kHz audio to ``sample_rate``, normalising it, mixing the hidden states and moving the mix onto the
75 Hz output grid (:mod:`activity.backbones.grid`).

A kind of encoder is one class implementing this and one line in
:data:`activity.backbones.BACKBONES`; its configuration is a JSON-able dict, saved in the model's
``config.json`` next to the kind and the rates.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ActivityError


class Backbone:
    """Mixed into an ``nn.Module`` (first base) to make it an encoder the model can use.

    Set by :meth:`build` and read by the model: ``sample_rate`` (Hz), ``hop`` and ``receptive_field``
    (samples at ``sample_rate``). Subclasses implement the methods that raise ``NotImplementedError``.
    """

    kind: ClassVar[str] = ""
    """The registry name, saved as ``encoder_kind`` in a model's ``config.json``."""

    sample_rate: int
    hop: int
    receptive_field: int

    # ------------------------------------------------------------------------------------------
    # To implement

    @classmethod
    def build(cls, fields: dict[str, Any], *, sample_rate: int, mask_time_prob: float = 0.0,
              source: str = "encoder_config") -> "Backbone":
        """A randomly initialised encoder from its configuration dict (what :meth:`config_dict` returned).

        ``mask_time_prob``: SpecAugment time masking in train mode (0 = off). Raises
        :class:`~activity.errors.ActivityError` naming ``source`` for a configuration it cannot build.
        """
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The architecture as a JSON-able dict, enough to :meth:`build` it again offline."""
        raise NotImplementedError

    @property
    def num_hidden_states(self) -> int:
        """How many tensors :meth:`hidden_states` returns (the model learns one mixing weight each)."""
        raise NotImplementedError

    @property
    def hidden_size(self) -> int:
        """Width ``D`` of every hidden state."""
        raise NotImplementedError

    def hidden_states(self, waveform: torch.Tensor) -> list[torch.Tensor]:
        """``(B, N)`` float audio at :attr:`sample_rate`, already normalised when the checkpoint expects it,
        -> :attr:`num_hidden_states` tensors ``(B, T_enc, D)`` with ``T_enc = self.num_frames(N)``."""
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups covering every parameter once; ``"feature_extractor"`` (the part that sees raw
        audio, frozen by ``--freeze-feature-extractor``) must be one of them when the encoder has one."""
        raise NotImplementedError

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load released weights from a file, strictly (raise naming missing or unexpected keys)."""
        raise NotImplementedError(f"{type(self).__name__} cannot load weights files")

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations in the backward pass (the default: not supported, an error)."""
        raise ActivityError(f"--gradient-checkpointing: the {self.kind} encoder does not support it")

    # ------------------------------------------------------------------------------------------
    # Provided

    @property
    def frame_rate(self) -> float:
        """Encoder frames per second: ``sample_rate / hop``."""
        return self.sample_rate / self.hop

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` samples at :attr:`sample_rate`: ``floor((N - R) / hop) + 1``, 0 below R."""
        if num_samples < self.receptive_field:
            return 0
        return (num_samples - self.receptive_field) // self.hop + 1

    def freeze(self) -> None:
        """No gradients for any parameter."""
        for parameter in self.parameters():  # type: ignore[attr-defined]
            parameter.requires_grad_(False)

    def freeze_feature_extractor(self) -> None:
        """No gradients for the ``"feature_extractor"`` group (the rest stays trainable)."""
        groups = self.parameter_groups()
        if "feature_extractor" not in groups:
            raise ActivityError(f"--freeze-feature-extractor: the {self.kind} encoder has no feature extractor")
        for parameter in groups["feature_extractor"]:
            parameter.requires_grad_(False)

    def describe(self) -> str:
        """``hubert, 24000 Hz in, 75 Hz frames, 13 x 768`` (for logs and reports)."""
        return (f"{self.kind}, {self.sample_rate} Hz in, {self.frame_rate:g} Hz frames, "
                f"{self.num_hidden_states} x {self.hidden_size}")
