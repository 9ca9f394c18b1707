"""The one interface every text and image encoder implements.

Encoders own their preprocessing (tokenizer, image transform), so the trainer and the app run the
same code from PIL image / caption to features.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the token axis of x [B, L, D], counting only mask == 1 positions."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def _values(obj) -> list:
    """A dataclass's field values in order, as they are (dataclasses.astuple would deep-copy the tensors)."""
    return [getattr(obj, f.name) for f in fields(obj)]


class EncoderUnavailableError(RuntimeError):
    """An encoder's weights are not on this machine and cannot be fetched."""


@dataclass
class TextFeatures:
    """Output of a text encoder.

    layers:          [B, K, L, D] token states of the last K transformer layers, oldest first
                     (layers[:, -1] is the last layer).
    attention_mask:  [B, L] 1 for real tokens, 0 for padding.
    pooled:          [B, D] the encoder's sentence vector (mean pooling for MiniLM, pooler for BERT,
                     projected EOT token for CLIP).
    input_ids:       [B, L] the token ids, for heads that declare `FeatureNeeds.token_ids` (else may be None).
    word_embeddings: [B, L, D] the encoder's static input embeddings of those ids (the embedding layer's
                     output, before positions and LayerNorm: order-free word vectors), same condition.
    prior:           [B, P] the global text vector of a prior encoder (CLIP) when the model names one, else None.
    """

    layers: torch.Tensor
    attention_mask: torch.Tensor
    pooled: torch.Tensor
    input_ids: torch.Tensor | None = None
    word_embeddings: torch.Tensor | None = None
    prior: torch.Tensor | None = None

    @property
    def tokens(self) -> torch.Tensor:
        """[B, L, D] last-layer token states."""
        return self.layers[:, -1]

    @property
    def cls(self) -> torch.Tensor:
        """[B, D] first token of the last layer ([CLS] for BERT-style encoders)."""
        return self.layers[:, -1, 0]

    @property
    def global_vector(self) -> torch.Tensor:
        """[B, D] the papers' 'global text vector' e_cls: the encoder's own sentence vector. For BERT that is
        the last-layer [CLS] token itself (pooling "cls"); MiniLM-L6 was trained as a sentence encoder with
        mean pooling, so its [CLS] state carries little and its sentence vector is the mean; CLIP's is the
        projected end-of-text token (its position-0 token does not depend on the caption)."""
        return self.pooled

    def last(self, k: int) -> torch.Tensor:
        """[B, k, L, D] the last k layers; asks for no more than the encoder gave."""
        if k > self.layers.shape[1]:
            raise ValueError(f"a head asked for the last {k} text layers but only {self.layers.shape[1]} were encoded")
        return self.layers[:, -k:]

    def to(self, device: torch.device | str) -> "TextFeatures":
        return TextFeatures(*(None if t is None else t.to(device) for t in _values(self)))

    def expand(self, b: int) -> "TextFeatures":
        """A batch of one repeated b times (views, no copies)."""
        return TextFeatures(*(None if t is None else t.expand(b, *t.shape[1:]) for t in _values(self)))

    def padded(self, length: int) -> "TextFeatures":
        """Zero-padded along the token axis to `length` (padding positions are masked, and zero as in the feature
        cache), so that captions of different lengths share a batch."""
        def pad(name: str, x: torch.Tensor | None) -> torch.Tensor | None:
            axis = TOKEN_AXIS.get(name)
            if x is None or axis is None or x.shape[axis] == length:
                return x
            return F.pad(x, [0, 0] * (x.dim() - 1 - axis) + [0, length - x.shape[axis]])
        return TextFeatures(**{f.name: pad(f.name, getattr(self, f.name)) for f in fields(self)})

    def item(self, i: int) -> "TextFeatures":
        """Row i as a batch of one, cut to its own tokens (what encoding it alone gives)."""
        n = int(self.attention_mask[i].sum())
        return TextFeatures(**{f.name: _row(getattr(self, f.name), i, TOKEN_AXIS.get(f.name), n) for f in fields(self)})

    @staticmethod
    def cat(items: list["TextFeatures"]) -> "TextFeatures":
        """One batch of several, padded to the longest caption."""
        length = max(t.attention_mask.shape[1] for t in items)
        return TextFeatures(*_cat([_values(t.padded(length)) for t in items]))


# The token axis of each TextFeatures field.
TOKEN_AXIS = {"layers": 2, "attention_mask": 1, "input_ids": 1, "word_embeddings": 1}


def _row(x: torch.Tensor | None, i: int, axis: int | None = None, n: int = 0) -> torch.Tensor | None:
    """x[i:i + 1], cut to the first n positions of `axis` when one is given."""
    if x is None:
        return None
    x = x[i:i + 1]
    return x if axis is None else x.narrow(axis, 0, n)


def _cat(rows: list[list[torch.Tensor | None]]) -> list[torch.Tensor | None]:
    """Field-wise concatenation along the batch axis of several dataclasses' values (None stays None)."""
    return [None if column[0] is None else torch.cat(column) for column in zip(*rows)]


@dataclass
class Captions:
    """Raw captions, for a model that fine-tunes its own text encoder (it tokenizes and encodes them itself), with
    the per-caption features that do not come from that encoder (the prior encoder's text vector)."""

    texts: list[str]
    prior: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def to(self, device: torch.device | str) -> "Captions":
        return Captions(self.texts, None if self.prior is None else self.prior.to(device))


@dataclass
class ImageFeatures:
    """Output of an image encoder.

    patches: [B, N, C] tokens of the last feature map, row-major over `grid` (N = h * w); for ViT/CLIP
             the patch tokens without [CLS].
    pooled:  [B, P] the global image vector (average pool for CNNs, [CLS]/pooled for ViT/CLIP,
             fc7 for VGG16).
    logits:  [B, 1000] ImageNet logits where the encoder has a classifier, else None.
    prior:   [B, P] the global image vector of a prior encoder (CLIP) when the model names one, else None.
    """

    patches: torch.Tensor
    pooled: torch.Tensor
    logits: torch.Tensor | None = None
    prior: torch.Tensor | None = None

    @property
    def global_vector(self) -> torch.Tensor:
        """The paper's 'global image vector': ImageNet logits where present (HGLNet uses ResNet's 1000-d
        output), else the pooled vector."""
        return self.logits if self.logits is not None else self.pooled

    def to(self, device: torch.device | str) -> "ImageFeatures":
        return ImageFeatures(*(None if t is None else t.to(device) for t in _values(self)))

    def expand(self, b: int) -> "ImageFeatures":
        """A batch of one repeated b times (views, no copies)."""
        return ImageFeatures(*(None if t is None else t.expand(b, *t.shape[1:]) for t in _values(self)))

    def item(self, i: int) -> "ImageFeatures":
        """Row i as a batch of one."""
        return ImageFeatures(*(_row(t, i) for t in _values(self)))

    @staticmethod
    def cat(items: list["ImageFeatures"]) -> "ImageFeatures":
        return ImageFeatures(*_cat([_values(t) for t in items]))


class TextEncoder(nn.Module):
    """Base class. Subclasses set `name`, `dim`, `num_layers` and implement `tokenize`, `forward`,
    `embeddings`, `convert_ids_to_tokens`."""

    name: str = ""
    dim: int = 0
    num_layers: int = 0
    vocab_size: int = 0
    max_length: int = 64

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """-> {"input_ids": [B, L], "attention_mask": [B, L]}"""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor, num_layers: int = 1,
                inputs_embeds: torch.Tensor | None = None) -> TextFeatures:
        """The last `num_layers` layers (0: an empty layer axis, only `pooled`), with `input_ids` and
        `word_embeddings` filled in. The embedding layer runs once per call and its output feeds the encoder,
        so Captum's LayerIntegratedGradients on `embeddings()` sees every use of the word vectors."""
        raise NotImplementedError

    def embeddings(self) -> nn.Module:
        """The input-embedding layer (Captum's LayerIntegratedGradients attributes to its output)."""
        raise NotImplementedError

    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, first to last (the trainer may unfreeze the last few)."""
        raise NotImplementedError

    @property
    def can_resume(self) -> bool:
        """Whether `forward_from` works: the blocks can start from stored hidden states."""
        return False

    def forward_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, first: int) -> list[torch.Tensor]:
        """The outputs of blocks first, first + 1, ..., last, given `hidden` [B, L, D], the output of block
        first - 1 (the hidden states entering block `first`): what `forward` computes, without running the blocks
        below again. Fine-tuning the last n blocks trains on the cached output of the block below them."""
        raise NotImplementedError(f"{self.name} cannot start from hidden states")

    def pool(self, last: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The sentence vector (`TextFeatures.pooled`) from the last layer's token states."""
        raise NotImplementedError

    def unfreeze_last(self, n: int) -> None:
        """Make the last n blocks trainable (everything else stays frozen)."""
        self.requires_grad_(False)
        if n > 0:
            for block in self.blocks()[-n:]:
                block.requires_grad_(True)

    def add_lora(self, n: int, rank: int, alpha: float | None = None, dropout: float = 0.1) -> None:
        """Fine-tune the last n blocks through LoRA adapters (peft) on each of their linear layers, W x + (alpha / r)
        B A x with A, B of rank r; everything else, the blocks' own weights included, stays frozen. A checkpoint then
        stores the adapters only (a few hundred kB) instead of whole blocks."""
        from peft import LoraConfig, inject_adapter_in_model

        self.requires_grad_(False)
        names = {module: name for name, module in self.named_modules()}
        targets = [names[m] for block in self.blocks()[-n:] for m in block.modules() if isinstance(m, nn.Linear)]
        config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=dropout, target_modules=targets)
        inject_adapter_in_model(config, self)  # leaves only the adapters trainable

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        raise NotImplementedError

    @property
    def pad_token_id(self) -> int:
        return 0

    def forward_by_length(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_layers: int = 1,
                          chunk_size: int = 16) -> TextFeatures:
        """`forward` over length-sorted chunks of the batch, each cut to its own longest caption, then put back in
        the batch's order and padding. Real tokens get the states `forward` gives them (masked attention: padding
        never changes them); padding positions are zeros, as in the trainer's feature cache. Tweets average 30
        MiniLM tokens while a random batch of 128 pads to ~62, so this is 2-3x less compute where the text encoder
        runs live (fine-tuning)."""
        B, L = input_ids.shape
        lengths = attention_mask.sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        parts = [self(input_ids[idx, :int(lengths[idx[0]])], attention_mask[idx, :int(lengths[idx[0]])],
                      num_layers=num_layers) for idx in order.split(chunk_size)]
        layers = torch.cat([F.pad(p.layers, (0, 0, 0, L - p.layers.shape[2])) for p in parts])
        words = torch.cat([F.pad(p.word_embeddings, (0, 0, 0, L - p.word_embeddings.shape[1])) for p in parts])
        pooled = torch.cat([p.pooled for p in parts])
        inverse = torch.argsort(order)
        return TextFeatures(layers[inverse] * attention_mask[:, None, :, None], attention_mask, pooled[inverse],
                            input_ids, words[inverse] * attention_mask[:, :, None])

    def encode(self, texts: list[str], num_layers: int = 1, max_length: int | None = None) -> TextFeatures:
        batch = self.tokenize(texts, max_length)
        device = next(self.parameters()).device
        return self(batch["input_ids"].to(device), batch["attention_mask"].to(device), num_layers=num_layers)


class ImageEncoder(nn.Module):
    """Base class. Subclasses set `name`, `dim` (patch channels), `pooled_dim`, `logits_dim` (0 when
    there is no ImageNet head), `grid`, `transform` and implement `forward` and `feature_layer`."""

    name: str = ""
    dim: int = 0
    pooled_dim: int = 0
    logits_dim: int = 0
    grid: tuple[int, int] = (7, 7)
    image_size: int = 224
    transform: Callable[[Image.Image], torch.Tensor]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> [B, 3, H, W] pixel tensor in the encoder's own normalisation."""
        return torch.stack([self.transform(im) for im in images])

    def forward(self, pixel_values: torch.Tensor) -> ImageFeatures:
        raise NotImplementedError

    def feature_layer(self) -> nn.Module:
        """The module whose output is the last feature map (Grad-CAM hooks here)."""
        raise NotImplementedError

    def encode(self, images: list[Image.Image]) -> ImageFeatures:
        device = next(self.parameters()).device
        return self(self.preprocess(images).to(device))


@dataclass(frozen=True)
class FeatureDims:
    """What a fusion head needs to know about the encoders' outputs to build its layers."""

    text_dim: int
    text_layers: int  # how many layers the text encoder has (a head may read up to this many)
    image_dim: int
    image_pooled_dim: int
    image_logits_dim: int  # 0 when the image encoder has no ImageNet classifier
    image_grid: tuple[int, int]
    vocab_size: int = 0  # the text encoder's vocabulary (size of per-token statistics such as IDF)
    prior_dim: int = 0  # width of the prior encoder's global vectors; 0 = no prior encoder (e.g. CLIP offline)

    @property
    def num_patches(self) -> int:
        return self.image_grid[0] * self.image_grid[1]

    @property
    def image_global_dim(self) -> int:
        """Size of ImageFeatures.global_vector."""
        return self.image_logits_dim or self.image_pooled_dim

    @classmethod
    def of(cls, text: TextEncoder, image: ImageEncoder, prior_dim: int = 0) -> "FeatureDims":
        return cls(text.dim, text.num_layers, image.dim, image.pooled_dim, image.logits_dim, tuple(image.grid),
                   text.vocab_size, prior_dim)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureDims":
        """From a checkpoint's config.json `dims` (older checkpoints lack the later fields: their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "image_grid" else v) for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return {**self.__dict__, "image_grid": list(self.image_grid)}
