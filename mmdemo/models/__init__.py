"""Model registry: name -> head class, default config, paper, ablation variants.

Each network is one file in this package that calls `register_model(...)`; every module here is
imported on first use of the registry, so a new network drops in as one file.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field

from .base import (MLP, FeatureNeeds, FitData, FusionHead, HeadConfig, ModelOutput, Objective, Signal, TaskInfo,
                   masked_mean, task_loss)
from .classifier import MultimodalClassifier


@dataclass(frozen=True)
class ModelEntry:
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


MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    if entry.name in MODELS:
        raise ValueError(f"model {entry.name!r} is registered twice")
    MODELS[entry.name] = entry
    return entry


_loaded = False
_loading = threading.RLock()  # re-entrant: a network module may ask the registry while it is being imported


def _load_all() -> None:
    """Import every network module once. Threads that ask while another thread imports wait for it: the registry
    is marked loaded only once it is full (marked first, a second thread saw a half-filled registry)."""
    global _loaded
    if _loaded:
        return
    with _loading:
        if _loaded:
            return
        for mod in pkgutil.iter_modules(__path__):
            if mod.name not in ("base", "classifier"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _loaded = True


def get_model(name: str) -> ModelEntry:
    _load_all()
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def list_models() -> list[str]:
    _load_all()
    return list(MODELS)


__all__ = ["ModelEntry", "MODELS", "register_model", "get_model", "list_models", "FusionHead", "HeadConfig",
           "ModelOutput", "Objective", "FeatureNeeds", "FitData", "Signal", "TaskInfo", "MLP", "masked_mean",
           "task_loss", "MultimodalClassifier"]
