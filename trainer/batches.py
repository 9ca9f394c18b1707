"""Cached samples as a model reads them: the batches of training, evaluation and the probe."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from mmdemo.models import MultimodalClassifier

from .features import CachedSplit


def require_captions(model: MultimodalClassifier, split: CachedSplit) -> None:
    """A model that fine-tunes a text encoder which cannot start from hidden states must read the raw captions."""
    if model.finetune_text_layers and not model.tunes_frozen_features and split.texts is None:
        raise ValueError(f"this model fine-tuned {model.text_encoder_name}, which cannot start from cached hidden "
                         "states, so it reads raw captions: load the features with "
                         "trainer.run.load_features(..., finetune_text_layers=n)")


def model_batch(model: MultimodalClassifier, split: CachedSplit, idx: torch.Tensor):
    """The samples idx as the model reads them (its declared needs; captions when they are attached)."""
    return split.batch(idx, model.needs)


def loader(split: CachedSplit, batch_size: int, model: MultimodalClassifier, shuffle: bool, seed: int = 0,
           weights: torch.Tensor | None = None, with_index: bool = False) -> DataLoader:
    """Batches (text, image, labels), and the batch's sample indices last when `with_index`; `weights`: draw with
    replacement by these per-sample weights instead."""
    require_captions(model, split)
    gen = torch.Generator().manual_seed(seed)
    sampler = None if weights is None else WeightedRandomSampler(weights, len(split), replacement=True, generator=gen)

    def collate(idx: list[int]):
        idx = torch.tensor(idx)
        return (*model_batch(model, split, idx), idx) if with_index else model_batch(model, split, idx)

    return DataLoader(range(len(split)), batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=gen, collate_fn=collate)
