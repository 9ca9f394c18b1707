"""Model registry: name -> `ModelEntry` (head class, default config, paper, ablation variants, presets).

Each network is one file in this package that declares `ENTRIES`, a tuple of `ModelEntry`; importing that file
registers nothing. `NETWORKS` below is the one list of network files, and the registry is built from it while
this package is imported, so Python's import lock makes the build atomic: a thread that uses the registry, even
as its first import, sees it full. A new network is one file plus its line in `NETWORKS`
(tests/networks/test_registry.py fails for a file that declares `ENTRIES` and is not listed).
"""

from __future__ import annotations

import threading

from . import baselines, cacnet, hglnet, infig, mahfnet, mggf
from .base import (MLP, FeatureNeeds, FitData, FusionHead, HeadConfig, ModelEntry, ModelOutput, Objective, Signal,
                   TaskInfo, masked_mean, task_loss)
from .classifier import MultimodalClassifier

# The network files, in the order `list_models` gives their entries.
NETWORKS = (baselines, cacnet, hglnet, infig, mahfnet, mggf)

MODELS: dict[str, ModelEntry] = {}
_registering = threading.Lock()  # register_model's check-then-insert, for entries added at run time


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add an entry that no network file declares (a test-only head); the package's own come from NETWORKS."""
    with _registering:
        if entry.name in MODELS:
            raise ValueError(f"model {entry.name!r} is registered twice")
        MODELS[entry.name] = entry
    return entry


for _network in NETWORKS:
    for _entry in _network.ENTRIES:
        register_model(_entry)
del _network, _entry


def get_model(name: str) -> ModelEntry:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def list_models() -> list[str]:
    return list(MODELS)


__all__ = ["ModelEntry", "MODELS", "NETWORKS", "register_model", "get_model", "list_models", "FusionHead",
           "HeadConfig", "ModelOutput", "Objective", "FeatureNeeds", "FitData", "Signal", "TaskInfo", "MLP",
           "masked_mean", "task_loss", "MultimodalClassifier"]
