"""Predictor: PIL image + caption -> per-head probabilities with label names, and the head's explanations.

The same preprocessing as training (owned by the encoders) feeds the full differentiable pipeline
pixels / token ids -> encoders -> head, which is also what Captum attributes through.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .contrib import Contribution, Reference, blank_reference, contribution, with_reference
from .encoders import (ImageEncoder, ImageFeatures, TextEncoder, TextFeatures, prior_encoders, shared_image_encoder,
                       shared_text_encoder)
from .inputs import clean_caption, load_image
from .models import ModelOutput, MultimodalClassifier

HEADS = ("fused", "text", "image")

# The frozen encoders are one module instance per process, shared by every Predictor, and Captum hooks them for the
# length of an explanation (the word-embedding layer, the last feature map): a forward that ran meanwhile would
# have its tensors swapped for the explanation's. So every use of a network holds this lock, which makes concurrent
# requests take turns (each request still uses every core through torch's own threads).
NETWORK_LOCK = threading.RLock()


def exclusive(fn: Callable) -> Callable:
    """Run `fn` holding NETWORK_LOCK."""
    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with NETWORK_LOCK:
            return fn(*args, **kwargs)
    return locked


class Pipeline(nn.Module):
    """encoders + head as one module: (pixel_values, input_ids, attention_mask) -> ModelOutput.

    A model with a prior encoder (CLIP) also takes its global vectors `prior_text` / `prior_image` [B, P], which
    `Predictor.prepare` computes once per input: they are inputs held fixed, never attributed."""

    def __init__(self, text_encoder: TextEncoder, image_encoder: ImageEncoder, classifier: MultimodalClassifier):
        super().__init__()
        self.text_encoder, self.image_encoder, self.classifier = text_encoder, image_encoder, classifier

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    prior_text: torch.Tensor | None = None) -> TextFeatures:
        text = self.text_encoder(input_ids, attention_mask, num_layers=self.classifier.text_layers)
        if prior_text is not None:
            text.prior = prior_text.expand(input_ids.shape[0], -1)
        return text

    def encode_image(self, pixel_values: torch.Tensor, prior_image: torch.Tensor | None = None) -> ImageFeatures:
        image = self.image_encoder(pixel_values)
        if prior_image is not None:
            image.prior = prior_image.expand(pixel_values.shape[0], -1)
        return image

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prior_text: torch.Tensor | None = None, prior_image: torch.Tensor | None = None) -> ModelOutput:
        return self.classifier(self.encode_text(input_ids, attention_mask, prior_text),
                               self.encode_image(pixel_values, prior_image))


class EncodedInputs:
    """The frozen encoders' outputs for the most recent inputs, shared by every Predictor of the process.

    One click runs predict, then the explanation and attention panels, on the same input, and the compare view runs
    every network on it: each asks for the same frozen encoder outputs, which are computed once and reused by
    every head (a tuned model reruns only its own last text layers on them). An entry is keyed by the encoder
    instance, its device and the exact model input (the token ids, a digest of the pixel tensor), so two requests
    share one only when their inputs are identical. Entries are computed without gradients and never modified."""

    def __init__(self, size: int = 32):
        self.size = size
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


ENCODED = EncodedInputs()


def digest(t: torch.Tensor) -> str:
    """A content key for a tensor (its dtype, shape and bytes)."""
    h = hashlib.blake2b(f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=16)
    h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


@dataclass
class Prediction:
    """Probabilities per head ("fused", "text", "image"), each a {label: p} dict sorted by p, plus the
    head's `explain` quantities for this one input (tensors -> numpy, batch axis removed)."""

    labels: list[str]
    probs: dict[str, dict[str, float]]
    explain: dict[str, Any]
    tokens: list[str]
    multi_label: bool = False
    warnings: list[str] = field(default_factory=list)
    latency_ms: float = 0.0
    # How much the caption and the image each moved the fused prediction (Shapley values, every class).
    contributions: Contribution | None = None
    reliability: str = ""  # how far to trust the fused probabilities, when the checkpoint measured it

    def top(self, head: str = "fused") -> tuple[str, float]:
        return next(iter(self.probs[head].items()))

    @property
    def disagree(self) -> bool:
        """True when the text-only and image-only top labels differ from each other or from the fused one."""
        return len({self.top(h)[0] for h in HEADS}) > 1


def _first_item(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()[0].float().cpu().numpy()
    if isinstance(value, dict):
        return {k: _first_item(v) for k, v in value.items()}
    return value


class Predictor:
    """Loads a checkpoint (directory or MultimodalClassifier) and its frozen encoders (shared per process)."""

    def __init__(self, classifier: MultimodalClassifier, text_encoder: TextEncoder | None = None,
                 image_encoder: ImageEncoder | None = None, device: str = "cpu"):
        self.classifier = classifier.eval().to(device)
        # Every model reads the shared frozen text encoder, and one that fine-tuned its last layers reruns them on
        # its output; only a fine-tuned encoder that cannot start from hidden states (DeBERTa, CLIP) runs whole.
        own = None if classifier.tunes_frozen_features else classifier.text_encoder
        self.text_encoder = (text_encoder or own or shared_text_encoder(classifier.text_encoder_name)).to(device)
        self.image_encoder = (image_encoder or shared_image_encoder(classifier.image_encoder_name)).to(device)
        # The prior encoder the checkpoint was trained with (CLIP); EncoderUnavailableError where it is missing.
        self.prior = prior_encoders(classifier.prior_encoder) if classifier.prior_encoder else None
        self.pipeline = Pipeline(self.text_encoder, self.image_encoder, self.classifier).eval()
        self.device = device
        self.source, self.note = "", ""  # set by for_task: "bundled" or "hub:<repo>"
        self._reference: Reference | None = None

    @classmethod
    def from_checkpoint(cls, path_or_repo: str | Path, device: str = "cpu", **expect) -> "Predictor":
        """A local checkpoint directory, or a Hub repo id ("user/name") when no such directory exists."""
        from .checkpoint import load_checkpoint
        from .hub import download

        path = Path(path_or_repo)
        if not path.exists() and str(path_or_repo).count("/") == 1:
            path = download(str(path_or_repo))
        return cls(load_checkpoint(path, **expect), device=device)

    @classmethod
    def for_task(cls, task: str, model: str, device: str = "cpu", **expect) -> "Predictor":
        """The configured Hub repo for (task, model) when reachable, else the bundled checkpoint;
        `predictor.source` says which was used (and `predictor.note` why a fallback happened)."""
        from .hub import load

        classifier, where = load(task, model, **expect)
        predictor = cls(classifier, device=device)
        predictor.source, predictor.note = where.source, where.note
        return predictor

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def temperature(self) -> float:
        """The fused logits' temperature (1: uncalibrated); single-label checkpoints only."""
        return 1.0 if self.classifier.multi_label else float(self.classifier.calibration.get("temperature", 1.0))

    @property
    def reliability(self) -> str:
        """One line on how far to trust the fused prediction, from the checkpoint's measured calibration."""
        c = self.classifier.calibration
        unseen = c.get("unseen")
        if not unseen:
            return ""
        return (f"On events it never saw ({unseen['protocol']}, {unseen['events']} events) this network scores "
                f"{unseen['accuracy']:.0%} accuracy, macro F1 {unseen['macro_f1']:.2f}; its fused probabilities are "
                f"calibrated (temperature {self.temperature:.2f}, fitted on held-out validation events).")

    @exclusive
    def prepare(self, image, caption) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Validate and preprocess one input -> model inputs (batch of one) and warnings.
        Raises mmdemo.inputs.InputError with a readable message on bad input."""
        rgb = load_image(image)
        text, notes = clean_caption(caption)
        batch = self.text_encoder.tokenize([text], max_length=self.classifier.max_length)
        if int(batch["attention_mask"].sum()) >= batch["attention_mask"].shape[1] == self.classifier.max_length:
            notes.append(f"The caption was cut to the first {self.classifier.max_length} tokens the model reads.")
        unknown = self._unknown_note(batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist())
        if unknown:
            notes.append(unknown)
        inputs = {"pixel_values": self.image_encoder.preprocess([rgb]), **batch}
        if self.prior is not None:
            prior_text, prior_image = self.prior
            pixels, n = inputs["pixel_values"], self.classifier.max_length
            with torch.no_grad():
                inputs["prior_text"] = ENCODED.get(("prior-text", prior_text, text, n),
                                                   lambda: prior_text.encode([text], max_length=n).pooled)
                inputs["prior_image"] = ENCODED.get(("prior-image", prior_image, digest(pixels)),
                                                    lambda: prior_image.encode([rgb]).pooled)
        return {k: v.to(self.device) for k, v in inputs.items()}, notes

    @exclusive
    @torch.no_grad()
    def encode(self, inputs: dict[str, torch.Tensor]) -> tuple[TextFeatures, ImageFeatures]:
        """One prepared input -> the frozen encoders' outputs this network reads, from ENCODED when the input was
        encoded before, by this network or another. The text encoder returns every layer (it runs them all
        anyway), so networks that read different numbers of layers share one entry."""
        ids, mask, pixels = inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"]
        k = self.classifier.text_layers
        every = max(k, self.text_encoder.num_layers)
        text = ENCODED.get(("text", self.text_encoder, str(ids.device), digest(ids), digest(mask)),
                           lambda: self.text_encoder(ids, mask, num_layers=every))
        text = replace(text, layers=text.layers[:, text.layers.shape[1] - k:])
        if inputs.get("prior_text") is not None:
            text.prior = inputs["prior_text"]
        image = ENCODED.get(("image", self.image_encoder, str(pixels.device), digest(pixels)),
                            lambda: self.image_encoder(pixels))
        if inputs.get("prior_image") is not None:
            image = replace(image, prior=inputs["prior_image"])
        return text, image

    def _unknown_note(self, ids: list[int]) -> str:
        """A note when the tokenizer read some of the caption as [UNK] (emoji, scripts it never saw), else ""."""
        tokenizer = getattr(self.text_encoder, "tokenizer", None)
        unk = getattr(tokenizer, "unk_token_id", None)
        if unk is None:
            return ""
        special = set(tokenizer.all_special_ids) - {unk}
        pieces = [i for i in ids if i not in special]
        n = sum(i == unk for i in pieces)
        if not n:
            return ""
        if n == len(pieces):
            return ("The text encoder knows none of the caption's characters (emoji, or a script it was not trained "
                    "on): it reads only [UNK], so the text-only prediction and the word attributions say nothing "
                    "about this caption.")
        return (f"{n} of the caption's {len(pieces)} word pieces are unknown to the text encoder (emoji, or a script "
                f"it was not trained on) and read as [UNK].")

    def tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        ids = input_ids[0][attention_mask[0].bool()].tolist()
        return self.text_encoder.convert_ids_to_tokens(ids)

    @property
    @exclusive
    @torch.no_grad()
    def reference(self) -> Reference:
        """What stands in for a missing modality (mmdemo.contrib): the empty caption and a grey image through this
        predictor's encoders, computed once."""
        if self._reference is None:
            ref = blank_reference(self.text_encoder, self.image_encoder, self.classifier.text_layers,
                                  self.classifier.max_length, self.prior)
            self._reference = Reference(ref.text.to(self.device), ref.image.to(self.device), ref.kind)
        return self._reference

    @exclusive
    @torch.no_grad()
    def predict(self, image, caption) -> Prediction:
        """One input -> Prediction. The head runs once on a batch of four (the input, and the input with its image,
        its caption, or both replaced by the reference), so the modality contributions cost a head pass."""
        start = time.perf_counter()
        inputs, notes = self.prepare(image, caption)
        text, img = self.encode(inputs)  # the frozen encoders run once per input, whichever network asks
        ref = self.reference
        # v(neither) does not depend on the input, but it runs in the same batch, padded like the others, so that a
        # modality the head ignores gets exactly 0 (computed apart, it would differ in the last bits)
        out: ModelOutput = self.classifier(*with_reference(text, img, ref))  # row 0: the input itself
        ml = self.classifier.multi_label
        fused = out.logits / self.temperature  # calibrated where the checkpoint carries a temperature
        probs = {}
        for head, logits in zip(HEADS, (fused, out.text_logits, out.image_logits)):
            p = probabilities(logits, ml)[0].tolist()
            probs[head] = dict(sorted(zip(self.labels, p), key=lambda kv: -kv[1]))
        return Prediction(self.labels, probs, _first_item(out.explain), self.tokens(inputs["input_ids"], inputs["attention_mask"]),
                          ml, notes, (time.perf_counter() - start) * 1000,
                          contribution(fused, self.labels, ml, ref.kind)[0], self.reliability)
