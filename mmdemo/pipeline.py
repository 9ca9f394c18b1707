"""The frozen encoders and a network's head as one pipeline, shared by predictions and explanations.

`Pipeline` runs pixels / token ids -> encoders -> head (what Captum differentiates). The frozen encoders are one
module instance per process, shared by every network: `NETWORK_LOCK` makes their users take turns, `ENCODED` keeps
their outputs for recent inputs so that each input is encoded once, and `side_by_side` runs independent torch work
(the two encoders, several heads) at once.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ImageEncoder, ImageFeatures, TextEncoder, TextFeatures
from .models import ModelOutput, MultimodalClassifier

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
    `mmdemo.predict.Predictor.prepare` computes once per input: they are inputs held fixed, never attributed."""

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

    def encoded(self, batch: list[dict[str, torch.Tensor]]) -> list[tuple[TextFeatures, ImageFeatures]]:
        """Prepared inputs -> what `encode_text` / `encode_image` give each of them, without gradients, from ENCODED
        when the input was encoded before (by this network or another); the rest are encoded together, one pass of
        each encoder, each input keeping its own tokens."""
        return list(zip(self.encoded_text(batch), self.encoded_image(batch)))

    @torch.no_grad()
    def encoded_text(self, batch: list[dict[str, torch.Tensor]]) -> list[TextFeatures]:
        """The text half of `encoded`. The text encoder returns every layer (it runs them all anyway), so networks
        that read different numbers of layers share one entry."""
        k = self.classifier.text_layers
        every = max(k, self.text_encoder.num_layers)

        def run_text(missing: list[int]) -> list[TextFeatures]:
            length = max(batch[i]["input_ids"].shape[1] for i in missing)
            ids, mask = (torch.cat([F.pad(batch[i][name], (0, length - batch[i][name].shape[1])) for i in missing])
                         for name in ("input_ids", "attention_mask"))
            out = self.text_encoder(ids, mask, num_layers=every)
            return [out.item(j) for j in range(len(missing))]

        texts = ENCODED.get_many([("text", self.text_encoder, str(b["input_ids"].device), digest(b["input_ids"]),
                                   digest(b["attention_mask"])) for b in batch], run_text)
        return [replace(text, layers=text.layers[:, text.layers.shape[1] - k:], prior=b.get("prior_text"))
                for b, text in zip(batch, texts)]

    @torch.no_grad()
    def encoded_image(self, batch: list[dict[str, torch.Tensor]],
                      digests: list[str] | None = None) -> list[ImageFeatures]:
        """The image half of `encoded`. `digests`: each pixel tensor's `digest`, where the caller has it already
        (`mmdemo.predict.Prepared`), so that an image read by several networks is digested once."""
        digests = digests or [digest(b["pixel_values"]) for b in batch]

        def run_image(missing: list[int]) -> list[ImageFeatures]:
            out = self.image_encoder(torch.cat([batch[i]["pixel_values"] for i in missing]))
            return [out.item(j) for j in range(len(missing))]

        images = ENCODED.get_many([("image", self.image_encoder, str(b["pixel_values"].device), key)
                                   for b, key in zip(batch, digests, strict=True)], run_image)
        return [replace(image, prior=b.get("prior_image")) for b, image in zip(batch, images)]

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                prior_text: torch.Tensor | None = None, prior_image: torch.Tensor | None = None) -> ModelOutput:
        return self.classifier(self.encode_text(input_ids, attention_mask, prior_text),
                               self.encode_image(pixel_values, prior_image))


class EncodedInputs:
    """The frozen encoders' outputs for the most recent inputs, shared by every Predictor of the process.

    The compare view runs every network on one input, and an explanation holds the modality it does not attribute
    fixed at the click's prediction: each asks for the same frozen encoder outputs, which are computed once and
    reused by every head (a tuned model reruns only its own last text layers on them). An entry is keyed by the encoder
    instance, its device and the exact model input (the token ids, a digest of the pixel tensor), so two requests
    share one only when their inputs are identical. Entries are computed without gradients and never modified."""

    def __init__(self, size: int = 32):
        self.size = size
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_many(self, keys: list[tuple], compute: Callable[[list[int]], list[Any]]) -> list[Any]:
        """The entries of `keys`; those missing are computed together, by one call compute(their indices), each
        distinct key once (two requests with the same image share its encoding)."""
        with self._lock:
            found = {key: self._entries[key] for key in keys if key in self._entries}
            for key in found:
                self._entries.move_to_end(key)
            first = {}  # each missing key -> the first index that asks for it
            for i, key in enumerate(keys):
                if key not in found:
                    first.setdefault(key, i)
            self.hits += len(keys) - len(first)
            self.misses += len(first)
        if first:
            found.update(zip(first, compute(list(first.values()))))
            with self._lock:
                for key in first:
                    self._entries[key] = found[key]
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return [found[key] for key in keys]

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        return self.get_many([key], lambda _: [compute()])[0]

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


_WORKERS: dict[int, ThreadPoolExecutor] = {}  # by torch's thread count


def _one_thread(job: Callable[[], Any]) -> Any:
    torch.set_num_threads(1)  # this worker's own torch threads
    with torch.no_grad():  # grad mode is per thread
        return job()


def side_by_side(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run `jobs` (independent torch work: the two encoders, or different networks' heads) as many at once as torch
    has threads, each on one torch thread, and return their results in order. The models here are latency-bound
    (one input, a few tokens, a batch of four coalitions): on two cores one head with two torch threads is barely
    faster than with one, and two heads side by side are faster still (docs/PERFORMANCE.md)."""
    threads = torch.get_num_threads()
    if len(jobs) < 2 or threads < 2:
        return [job() for job in jobs]
    if threads not in _WORKERS:
        _WORKERS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="mmdemo-side-by-side")
    try:
        return list(_WORKERS[threads].map(_one_thread, jobs))
    finally:
        torch.set_num_threads(threads)  # torch.set_num_threads in a worker also sets the process default
