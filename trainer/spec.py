"""What defines one training run (`RunSpec`), with its training options declared once.

A training option is a RunSpec field made with `option(...)`: its name, type, default and help. Everything else is
read off those fields: `train`'s flags (`add_option_flags`), the keys a sweep grid point or a preset may set beside
head config fields (`TRAIN_OPTIONS`), `train_task`'s keyword arguments (`train_options`), the options made for
unseen events that a run records (`UNSEEN_EVENT_OPTIONS`), and what a LOEO fold's recipe digest leaves out while it
is off (`LATER_FIELDS`). A new option is one new field here.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, dataclass, field, fields

from mmdemo.encoders import DEFAULT_IMAGE_ENCODER, DEFAULT_TEXT_ENCODER, FeatureDims


def option(default, help: str | None = None, *, metavar: str | None = None, aliases: tuple[str, ...] = (),
           unseen_events: bool = False, added_later: bool = False):
    """A RunSpec field that is a training option. `aliases`: older names still read, as flags and as grid or preset
    keys; `unseen_events`: made for events never seen in training (a run records it); `added_later`: added after
    LOEO folds were first kept, so a fold's recipe digest leaves it out while it is off and kept folds still resume."""
    return field(default=default, metadata={"option": True, "help": help, "metavar": metavar, "aliases": aliases,
                                            "unseen_events": unseen_events, "added_later": added_later})


@dataclass
class RunSpec:
    """Everything that defines one training run (seed included)."""

    task: str
    model: str
    labels: list[str]
    multi_label: bool
    dims: FeatureDims
    text_encoder: str = option(DEFAULT_TEXT_ENCODER)
    image_encoder: str = option(DEFAULT_IMAGE_ENCODER)
    seed: int = 0
    variant: str = ""
    overrides: dict = field(default_factory=dict)
    max_length: int = 64
    data_version: str = ""
    select_metric: str = "accuracy"
    # > 0: the last n text layers train too (from cached states where possible); `--unfreeze-text-layers` is its
    # older name (recorded commands, presets, sweep grids)
    finetune_text_layers: int = option(
        0, "fine-tune the last N text-encoder layers (BERT family, MPNet: on the cached output of the block below "
           "them, so a step runs N blocks; other encoders run live on the captions)",
        metavar="N", aliases=("unfreeze_text_layers",))
    encoder_lr: float = option(2e-5, "learning rate of the unfrozen text layers (2e-5)")
    lora_rank: int = option(0, "> 0: tune the unfrozen text layers through LoRA adapters of this rank (a checkpoint "
                               "stores the adapters, not the layers); 0: tune the whole layers")
    ordinal: bool | None = None  # None: the task registry's answer
    prior_encoder: str = ""  # the prior encoder the model is built with ("" = none; dims.prior_dim says its width)
    # How training samples are drawn (default: every post once per epoch, shuffled). image_cap k > 0: an image
    # shared by n posts counts min(n, k) times per epoch however large n is; balance_groups: every group (a
    # MediaEval event) weighs the same in total, so one large event does not dominate. Both need `groups` / images
    # on the training split and draw with replacement (`sample_weights`). balance_classes: every class weighs the
    # same in total (after the two above), so the head learns no class prior: a new event's share of fakes is
    # unknown (MediaEval's range from 8% to 100%), and the training events' share would be a guess about it.
    image_cap: int = option(0, "draw training posts so that an image shared by n posts counts min(n, K) times per "
                               "epoch", metavar="K", unseen_events=True)
    balance_groups: bool = option(False, "draw training posts so that every group (MediaEval: event) weighs the same "
                                         "in total", unseen_events=True)
    balance_classes: bool = option(False, "draw training posts so that every class weighs the same in total (after "
                                          "--image-cap and --balance-groups): the head learns no class prior",
                                   unseen_events=True, added_later=True)
    # > 0: event-adversarial training with this lambda (trainer/adversarial.py): a discriminator of the training
    # split's groups (events) on the head's fused representation, through a gradient-reversal layer.
    event_adversarial: float = option(
        0.0, "> 0: EANN-style event-adversarial training with this lambda (a discriminator of the training events on "
             "the fused representation, through gradient reversal; trainer/adversarial.py)",
        metavar="LAMBDA", unseen_events=True)
    # > 0: modality dropout (Neverova et al., ModDrop, 2015): each training post's image is replaced, with this
    # probability, by the blank image the app's contributions stand in for a missing one, so the network learns to
    # answer from the caption when the image says nothing it knows.
    image_dropout: float = option(0.0, "replace each training post's image by the blank one with probability P "
                                       "(modality dropout)", metavar="P", unseen_events=True)

    def unseen_event_options(self) -> dict:
        """The options made for events never seen in training (sampling, adversary, image dropout)."""
        return {k: getattr(self, k) for k in UNSEEN_EVENT_OPTIONS}


OPTIONS: list[Field] = [f for f in fields(RunSpec) if f.metadata.get("option")]
ENCODER_OPTIONS = ("text_encoder", "image_encoder")  # flags every command that encodes shares (`encoder_flags`)
ALIASES = {alias: f.name for f in OPTIONS for alias in f.metadata["aliases"]}


def flag(name: str) -> str:
    """An option's (or alias's) command-line flag: finetune_text_layers -> --finetune-text-layers."""
    return "--" + name.replace("_", "-")


# Grid point and preset keys that are training options rather than head config fields, with their `train` flags.
TRAIN_OPTIONS = {name: flag(name) for name in [f.name for f in OPTIONS] + list(ALIASES)}
# The options made for unseen events with their defaults: a run records them (metrics' "training_for_unseen_events"),
# a LOEO report its options, and `trainer bundle --calibration` checks one against the other.
UNSEEN_EVENT_OPTIONS = {f.name: f.default for f in OPTIONS if f.metadata["unseen_events"]}
# RunSpec fields added after LOEO folds were first kept: left out of a fold's recipe digest while off.
LATER_FIELDS = tuple(f.name for f in OPTIONS if f.metadata["added_later"])


def canonical(point: dict) -> dict:
    """A grid point or preset with older option names read as today's ({"unfreeze_text_layers": 2} ->
    {"finetune_text_layers": 2}); head config fields pass through."""
    return {ALIASES.get(k, k): v for k, v in point.items()}


def train_options(**given) -> dict:
    """Every training option: those `given` (older names accepted), RunSpec's defaults for the rest."""
    given = canonical(given)
    unknown = set(given) - {f.name for f in OPTIONS}
    if unknown:
        raise TypeError(f"unknown training options {sorted(unknown)}; the options: {[f.name for f in OPTIONS]}")
    return {f.name: given.get(f.name, f.default) for f in OPTIONS}


TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def add_option_flags(parser: argparse.ArgumentParser, names: list[str], unset: bool = True) -> None:
    """A flag per option in `names` (its aliases too). `unset`: default None, so that a caller can tell a flag
    given from one left to the preset or RunSpec's default; else the RunSpec default."""
    by_name = {f.name: f for f in OPTIONS}
    for name in names:
        f = by_name[name]
        default = None if unset else f.default
        flags = [flag(name), *map(flag, f.metadata["aliases"])]
        kind = TYPES.get(f.type, f.type)  # the annotation, a string under `from __future__ import annotations`
        if kind is bool:  # a switch: present or absent
            parser.add_argument(*flags, dest=name, action="store_true", default=default, help=f.metadata["help"])
        else:
            parser.add_argument(*flags, dest=name, type=kind, default=default, metavar=f.metadata["metavar"],
                                help=f.metadata["help"])
