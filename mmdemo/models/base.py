"""The contract between fusion heads and everything else (trainer, Predictor, explainers, app).

A head is an nn.Module built as `Head(config, dims, task)` that maps (TextFeatures, ImageFeatures) -> ModelOutput.
Heads never see pixels or raw captions: the encoders run before them (or their features come from the trainer's
feature cache), so one head serves training from cache, live inference and Captum explanations alike.

Everything about a network lives on its head class, and the trainer, the app and the model cards only read it:

- `needs(config)`         which features it reads (`FeatureNeeds`: text layers, image patches, token ids, a prior
                          encoder); the feature cache stores what the registered heads declare.
- `objective(out, labels)` its training loss as named terms, and which parameter groups a step updates
                          (`Objective`; `parameter_groups()` names the groups). Default: fused + auxiliary losses.
- `fit(data)`             statistics fitted once on the training split before training (`FitData`); whatever it
                          stores in buffers is saved in the checkpoint.
- `on_epoch_start(...)`   per-epoch schedules (a threshold that rises, a momentum that changes).
- `steps_per_batch()`     several optimizer steps on each training batch, in order, `on_step(step)` called before
                          each (two training phases per mini-batch). Default: one.
- `signals`               what each `explain` key means and how to show it (`Signal`).
- `task`                  the facts of the task it is built for (`TaskInfo`: label names, multi-label, ordinal).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.base import FeatureDims, ImageFeatures, TextFeatures, masked_mean  # noqa: F401 (re-exported)


@dataclass
class ModelOutput:
    """What every head returns.

    logits:       [B, C] fused prediction.
    text_logits:  [B, C] prediction from the text modality alone.
    image_logits: [B, C] prediction from the image modality alone.
    losses:       extra loss terms computed in forward (already weighted); the default objective adds them.
    explain:      named interpretable quantities for the batch, each declared in the head's `signals`:
                  [B] scores, [B, k] weights, and `explain["attention"]` = {name: [B, heads, Q, K]} maps.
    features:     [B, D] the fused representation the final classifier reads (what the trainer's
                  event-adversarial discriminator sees, EANN-style); None for a head without one (the prior).
    """

    logits: torch.Tensor
    text_logits: torch.Tensor
    image_logits: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    explain: dict[str, Any] = field(default_factory=dict)
    features: torch.Tensor | None = None


@dataclass(frozen=True)
class TaskInfo:
    """The facts of the task a head is built for."""

    labels: tuple[str, ...]
    multi_label: bool = False
    ordinal: bool = False  # the labels are listed in an order that means something (positive > neutral > negative)

    @property
    def num_labels(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FeatureNeeds:
    """The features a head reads: the trainer's cache builds exactly these, the live pipeline at least these.

    text_layers:   the last k text-encoder layers' token states (0: only the pooled sentence vector).
    image_patches: the image encoder's patch grid [B, N, C] (False: an empty [B, 0, C] tensor, pooled/logits only).
    token_ids:     TextFeatures.input_ids and .word_embeddings (static input embeddings), e.g. for IDF-weighted
                   word-vector averages.
    prior:         name of a prior encoder (`mmdemo.encoders.PRIOR_ENCODERS`, e.g. CLIP) whose global text and
                   image vectors arrive as TextFeatures.prior / ImageFeatures.prior. Where its weights are not
                   available the model is built with FeatureDims.prior_dim = 0 and the head runs without it.
    """

    text_layers: int = 1
    image_patches: bool = True
    token_ids: bool = False
    prior: str = ""


@dataclass(frozen=True)
class Signal:
    """How to read and show one `explain` entry (or one attention map in `explain["attention"]`). The app shows
    `plain` first, the value on a bar over [low, high] with the ends named, and `meaning` in an expander.

    title:      a short name.
    meaning:    the technical reading: the formula, the paper's equation numbers, where the code departs from the
                paper and what that changes.
    plain:      one plain sentence, no jargon or equation numbers: what the quantity is and how to read a value.
    kind:       "score" ([B], one bar), "weights" ([B, k], one bar per component) or "attention"
                ([B, heads, Q, K] in explain["attention"]).
    low, high:  the quantity's TRUE range, read off the code that computes it (a sigmoid of a KL >= 0 is in
                [0.5, 1], a cosine in [-1, 1]); None: unbounded on that side, and no bar is drawn.
    ends:       what a value at `low` and at `high` means, a few words each (e.g. ("agree", "conflict")).
    components: names of the k weights (kind "weights").
    axes:       (query, key) of an attention map, each "text" or "image": ("text", "image") means every text
                token's attention over the image regions.
    """

    title: str
    meaning: str
    kind: str = "score"
    low: float | None = 0.0
    high: float | None = 1.0
    components: tuple[str, ...] = ()
    axes: tuple[str, str] = ()
    plain: str = ""
    ends: tuple[str, str] = ()

    def __post_init__(self):
        if self.kind not in ("score", "weights", "attention"):
            raise ValueError(f"Signal kind must be score, weights or attention, not {self.kind!r}")
        if self.kind == "attention" and sorted(self.axes) != ["image", "text"]:
            raise ValueError(f"an attention signal names its (query, key) axes, one 'text' and one 'image'; "
                             f"got {self.axes!r}")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"Signal {self.title!r}: low ({self.low}) must be below high ({self.high})")
        if self.ends and len(self.ends) != 2:
            raise ValueError(f"Signal {self.title!r}: ends names the low and the high end, got {self.ends!r}")

    @property
    def bounded(self) -> bool:
        """True when the range is finite on both sides (a bar can show where a value lies in it)."""
        return self.low is not None and self.high is not None


@dataclass
class Objective:
    """One training step's loss: named, already weighted terms (the trainer minimises their sum and logs each),
    and the parameter groups the step updates (names from `FusionHead.parameter_groups()`, plus "text_encoder" for
    fine-tuned encoder layers); None updates every trainable parameter."""

    terms: dict[str, torch.Tensor]
    update: frozenset[str] | None = None

    @property
    def total(self) -> torch.Tensor:
        return sum(self.terms.values())


@dataclass
class FitData:
    """The training split, handed to `FusionHead.fit` once before training.

    input_ids: each training caption's token ids (real tokens only).
    labels:    [N] class ids or [N, C] 0/1.
    batches:   batches(batch_size) yields (TextFeatures, ImageFeatures, labels) of the split as the head reads it.
    """

    input_ids: list[torch.Tensor]
    labels: torch.Tensor
    batches: Callable[[int], Iterator[tuple[TextFeatures, ImageFeatures, torch.Tensor]]]


@dataclass
class HeadConfig:
    """Fields every head config has. Subclasses add the paper's hyperparameters.

    The optimisation fields are read by the trainer (AdamW, linear warm-up then cosine decay, early
    stopping on dev); they live here because the papers set them per network.
    """

    text_layers: int = 1  # how many of the text encoder's last layers the head reads (0: only pooled)
    aux_weight: float = 0.5  # weight of the auxiliary text-only and image-only losses
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
        types = {f.name: f.type for f in fields(cls)}
        unknown = set(d) - set(types)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return cls(**{k: _coerce(v, types[k], f"{cls.__name__}.{k}") for k, v in d.items()})


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(value: Any, annotation: str | type, where: str) -> Any:
    """A config value given as text (a sweep grid, `--set`) -> the field's type: "False" must not read as a true
    (non-empty) string. Other values pass unchanged."""
    kind = getattr(annotation, "__name__", annotation)
    if kind == "bool" and not isinstance(value, bool):
        if str(value).strip().lower() not in _BOOLS:
            raise ValueError(f"{where} is true or false, not {value!r}")
        return _BOOLS[str(value).strip().lower()]
    if kind in ("int", "float") and isinstance(value, str):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            raise ValueError(f"{where} is a number ({kind}), not {value!r}") from None
    return value


def task_loss(logits: torch.Tensor, target: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Cross-entropy for single-label targets [B], binary cross-entropy for multi-label 0/1 targets [B, C]."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, target.float()) if multi_label else F.cross_entropy(logits, target)


class FusionHead(nn.Module):
    """Base class for all heads. Subclasses set `config_class` and `signals` and implement `forward`; they override
    `needs`, `objective`, `parameter_groups`, `fit` and `on_epoch_start` where the paper asks for it."""

    config_class: ClassVar[type[HeadConfig]] = HeadConfig
    signals: ClassVar[dict[str, Signal]] = {}

    def __init__(self, config: HeadConfig, dims: FeatureDims, task: TaskInfo):
        super().__init__()
        self.config, self.dims, self.task = config, dims, task
        self.num_labels = task.num_labels

    @classmethod
    def needs(cls, config: HeadConfig) -> FeatureNeeds:
        """The features this head reads with this config (default: `config.text_layers` layers and the patches)."""
        return FeatureNeeds(text_layers=config.text_layers)

    def forward(self, text: TextFeatures, image: ImageFeatures) -> ModelOutput:
        raise NotImplementedError

    def objective(self, out: ModelOutput, labels: torch.Tensor) -> Objective:
        """The training loss of one batch. Default: the fused task loss, `aux_weight` times the text-only and
        image-only task losses, and the terms the head put in `out.losses`. Must not change the head's state
        outside training mode (the trainer also calls it for the dev loss)."""
        ml, aux = self.task.multi_label, self.config.aux_weight
        terms = {"fused": task_loss(out.logits, labels, ml)}
        if aux:
            terms["aux"] = aux * (task_loss(out.text_logits, labels, ml) + task_loss(out.image_logits, labels, ml))
        return Objective({**terms, **out.losses})

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups of this head's parameters that `Objective.update` can select (default: none named)."""
        return {}

    def fit(self, data: FitData) -> None:
        """Fit statistics on the training split once, before training; store them in buffers so that the
        checkpoint carries them. Default: nothing to fit."""

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Called by the trainer before each epoch (1-based) of `num_epochs` (the configured budget)."""

    def steps_per_batch(self) -> int:
        """Optimizer steps the trainer takes on each training batch, each on a fresh forward pass with the weights the
        step before left; the learning-rate schedule still advances once per batch. Default: one."""
        return 1

    def on_step(self, step: int) -> None:
        """Called by the trainer before step `step` (0-based) of `steps_per_batch()` on each training batch."""

    def training_state(self) -> list[str]:
        """Keys of this head's state dict that only further training reads (momentum encoders, queues of keys): a
        bundled checkpoint leaves them out (`mmdemo.checkpoint.compact_checkpoint`). Default: none."""
        return []

    def reset_training_state(self) -> None:
        """Rebuild what `training_state` names from the rest of the head, after a checkpoint that left it out."""


class MLP(nn.Sequential):
    """Linear -> GELU -> Dropout -> Linear; the small classifier every head uses for its outputs."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1):
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (output, the hidden layer it was computed from)."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return self[-1](x), x


@dataclass(frozen=True)
class ModelEntry:
    """One row of the model registry: what a network file declares in its `ENTRIES` (mmdemo.models lists them)."""

    name: str
    head: type[FusionHead]
    description: str
    paper: str = ""  # citation, shown in model cards and the app
    defaults: dict = field(default_factory=dict)  # config overrides that define this entry (e.g. fusion="text")
    variants: dict[str, dict] = field(default_factory=dict)  # ablation rows: variant name -> config overrides
    # Settings chosen on dev, per task: preset name -> {task: {head config field or train option: value}} (train
    # options: unfreeze_text_layers, encoder_lr, lora_rank, text_encoder, image_encoder). `python -m trainer train
    # --preset best` trains the row of docs/RESULTS.md.
    presets: dict[str, dict[str, dict]] = field(default_factory=dict)

    def config(self, overrides: dict | None = None, variant: str = "") -> HeadConfig:
        if variant and variant not in self.variants:
            raise KeyError(f"model {self.name!r} has no variant {variant!r}; variants: {', '.join(self.variants) or 'none'}")
        d = {**self.defaults, **(self.variants.get(variant, {})), **(overrides or {})}
        return self.head.config_class.from_dict(d)

    def preset(self, name: str, task: str) -> dict:
        """The settings of preset `name` for `task` (head config fields and train options)."""
        if name not in self.presets:
            raise KeyError(f"model {self.name!r} has no preset {name!r}; presets: {', '.join(self.presets) or 'none'}")
        if task not in self.presets[name]:
            raise KeyError(f"{self.name}'s preset {name!r} was chosen for {', '.join(self.presets[name])}, not {task!r}: "
                           f"choose settings on its dev set (python -m trainer sweep --task {task} ...)")
        return dict(self.presets[name][task])

    def configs(self) -> dict[str, HeadConfig]:
        """{variant ("" = the full model): its config}, every row this entry can train."""
        return {v: self.config(variant=v) for v in ("", *self.variants)}
