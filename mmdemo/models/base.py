"""The contract between fusion heads and everything else (trainer, Predictor, app).

Every head is an nn.Module built as `Head(config, dims, num_labels)` that maps
(TextFeatures, ImageFeatures) -> ModelOutput. Heads never see pixels or token ids: the frozen encoders
run before them (or their features come from the trainer's cache), so one head serves training from
cache, live inference and Captum explanations alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from ..encoders.base import FeatureDims, ImageFeatures, TextFeatures, masked_mean  # noqa: F401 (re-exported)


@dataclass
class ModelOutput:
    """What every head returns.

    logits:       [B, C] fused prediction.
    text_logits:  [B, C] prediction from the text modality alone.
    image_logits: [B, C] prediction from the image modality alone.
    losses:       extra loss terms, already weighted by the head's config; the trainer adds their sum
                  to the classification losses.
    explain:      named interpretable quantities with documented shapes, rendered generically by the app:
                  a [B] tensor is a score, a [B, k] tensor a set of weights (names in
                  `explain_labels[name]` when given), and `attention` maps name -> [B, heads, Q, K]
                  cross-attention between text tokens and image patches (axes named by
                  `attention_axes[name]`: ("text", "image") or ("image", "text")).
    """

    logits: torch.Tensor
    text_logits: torch.Tensor
    image_logits: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    explain: dict[str, Any] = field(default_factory=dict)


@dataclass
class HeadConfig:
    """Fields every head config has. Subclasses add the paper's hyperparameters.

    The optimisation fields are read by the trainer (AdamW, linear warm-up then cosine decay, early
    stopping on dev); they live here because the papers set them per network.
    """

    text_layers: int = 1  # how many of the text encoder's last layers the head reads (0: only pooled)
    aux_weight: float = 0.5  # weight of the auxiliary text-only and image-only cross-entropy terms
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 30
    batch_size: int = 64
    warmup_ratio: float = 0.05
    patience: int = 6  # early stopping: epochs without dev improvement

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict | None) -> "HeadConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return cls(**d)


class FusionHead(nn.Module):
    """Base class for all heads. Subclasses set `config_class` and implement `forward`.

    `explain_labels` names the components of [B, k] explain tensors (e.g. modality_weights -> text, image);
    `attention_axes` says which side of each attention map is text and which is image.
    """

    config_class: ClassVar[type[HeadConfig]] = HeadConfig
    # False for heads that read only ImageFeatures.pooled/logits: the feature cache then hands them an
    # empty [B, 0, C] patch tensor instead of copying 49 patches per sample every batch.
    uses_patches: ClassVar[bool] = True
    explain_labels: ClassVar[dict[str, tuple[str, ...]]] = {}
    attention_axes: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, config: HeadConfig, dims: FeatureDims, num_labels: int):
        super().__init__()
        self.config, self.dims, self.num_labels = config, dims, num_labels

    def forward(self, text: TextFeatures, image: ImageFeatures) -> ModelOutput:
        raise NotImplementedError

    def label_losses(self, out: ModelOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra loss terms that need the labels (e.g. MGGF's L1 regression term), already weighted.
        The trainer calls this after forward and adds the sum. labels: [B] class ids, or [B, C] 0/1 for
        multi-label tasks."""
        return {}


class MLP(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear; the small classifier every head uses for its outputs."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1):
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

