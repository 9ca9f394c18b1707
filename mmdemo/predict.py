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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Trust, read_trust, reliability_line
from .contrib import Contribution, Reference, blank_reference, contribution, with_reference
from .encoders import (ImageEncoder, ImageFeatures, TextEncoder, TextFeatures, prior_encoders, shared_image_encoder,
                       shared_text_encoder)
from .inputs import InputError, clean_caption, load_image
from .models import ModelOutput, MultimodalClassifier
from .names import HEADS

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
    def encoded_image(self, batch: list[dict[str, torch.Tensor]], memo: dict | None = None) -> list[ImageFeatures]:
        """The image half of `encoded`. `memo` (`predict_requests`) keeps each pixel tensor's digest for the
        networks that share it."""
        memo = {} if memo is None else memo

        def run_image(missing: list[int]) -> list[ImageFeatures]:
            out = self.image_encoder(torch.cat([batch[i]["pixel_values"] for i in missing]))
            return [out.item(j) for j in range(len(missing))]

        for b in batch:
            if ("digest", id(b["pixel_values"])) not in memo:  # the tensors outlive the call: ids are unique
                memo["digest", id(b["pixel_values"])] = digest(b["pixel_values"])
        images = ENCODED.get_many([("image", self.image_encoder, str(b["pixel_values"].device),
                                    memo["digest", id(b["pixel_values"])]) for b in batch], run_image)
        return [replace(image, prior=b.get("prior_image")) for b, image in zip(batch, images)]

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


def _item(value: Any, i: int) -> Any:
    """Row i of a head's explain quantities (tensors -> numpy, batch axis removed)."""
    if isinstance(value, torch.Tensor):
        return value.detach()[i].float().cpu().numpy()
    if isinstance(value, dict):
        return {k: _item(v, i) for k, v in value.items()}
    return value


class Predictor:
    """Loads a checkpoint (directory or MultimodalClassifier) and its frozen encoders (shared per process)."""

    def __init__(self, classifier: MultimodalClassifier, text_encoder: TextEncoder | None = None,
                 image_encoder: ImageEncoder | None = None, device: str = "cpu"):
        self.classifier = classifier.eval().to(device).merge_adapters()
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
        self.head_ms = 0.0  # how long its last head pass took (`predict_requests` starts the slowest heads first)

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
    def trust(self) -> Trust:
        """How far to trust this checkpoint's answers, as `trainer measure` recorded it (mmdemo.checkpoint.Trust)."""
        return read_trust({"trust": self.classifier.trust, "calibration": self.classifier.calibration})

    @property
    def reliability(self) -> str:
        """One true sentence on how far to trust the fused prediction ("" when nothing was measured)."""
        return reliability_line(self.trust)

    @exclusive
    def prepare(self, image, caption, memo: dict | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Validate and preprocess one input -> model inputs (batch of one) and warnings.
        Raises mmdemo.inputs.InputError with a readable message on bad input. `memo` (a dict kept for one call of
        `predict_requests`) holds each image decoded and preprocessed once, for every network on the same encoder."""
        memo = {} if memo is None else memo
        source = image if isinstance(image, (str, Path)) else id(image)  # the objects outlive the call: ids are unique
        if ("rgb", source) not in memo:
            memo["rgb", source] = load_image(image)
        rgb = memo["rgb", source]
        text, notes = clean_caption(caption)
        batch = self.text_encoder.tokenize([text], max_length=self.classifier.max_length)
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
        if int(batch["attention_mask"].sum()) >= batch["attention_mask"].shape[1] == self.classifier.max_length:
            notes.append(f"The caption was cut to the first {self.classifier.max_length} tokens the model reads"
                         f"{self._last_words(ids)}.")
        unknown = self._spelled_note(ids) or self._unknown_note(ids)
        if unknown:
            notes.append(unknown)
        if ("pixels", source, self.image_encoder) not in memo:
            memo["pixels", source, self.image_encoder] = self.image_encoder.preprocess([rgb])
        inputs = {"pixel_values": memo["pixels", source, self.image_encoder], **batch}
        if self.prior is not None:
            prior_text, prior_image = self.prior
            pixels, n = inputs["pixel_values"], self.classifier.max_length
            with torch.no_grad():
                inputs["prior_text"] = ENCODED.get(("prior-text", prior_text, text, n),
                                                   lambda: prior_text.encode([text], max_length=n).pooled)
                inputs["prior_image"] = ENCODED.get(("prior-image", prior_image, digest(pixels)),
                                                    lambda: prior_image.encode([rgb]).pooled)
        return {k: v.to(self.device) for k, v in inputs.items()}, notes

    def encode(self, inputs: dict[str, torch.Tensor]) -> tuple[TextFeatures, ImageFeatures]:
        """One prepared input -> the frozen encoders' outputs this network reads (`encode_batch`)."""
        return self.encode_batch([inputs])[0]

    @exclusive
    def encode_batch(self, batch: list[dict[str, torch.Tensor]]) -> list[tuple[TextFeatures, ImageFeatures]]:
        """Prepared inputs -> the frozen encoders' outputs this network reads, each input's own (`Pipeline.encoded`:
        one pass of each encoder over the inputs not seen before, by this network or another)."""
        return self.pipeline.encoded(batch)

    def _unknown_note(self, ids: list[int]) -> str:
        """A note when the tokenizer read some of the caption as [UNK] (emoji, scripts it never saw), else ""."""
        pieces = self._pieces(ids)
        n = sum(p == self.text_encoder.tokenizer.unk_token for p in pieces)
        if not n:
            return ""
        if n == len(pieces):
            return ("The text encoder knows none of the caption's characters (emoji, or a script it was not trained "
                    "on): it reads only [UNK], so the text-only prediction and the word attributions say nothing "
                    "about this caption.")
        return (f"{n} of the caption's {len(pieces)} word pieces {'is' if n == 1 else 'are'} unknown to the text "
                f"encoder (emoji, or a script it was not trained on) and read as [UNK].")

    def _pieces(self, ids: list[int]) -> list[str]:
        """The caption's word pieces, [UNK] included, without the tokenizer's other special tokens ([] for a
        tokenizer without an unknown token, e.g. CLIP's byte-level one)."""
        tokenizer = getattr(self.text_encoder, "tokenizer", None)
        if getattr(tokenizer, "unk_token_id", None) is None or not hasattr(tokenizer, "all_special_ids"):
            return []
        special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        return tokenizer.convert_ids_to_tokens([i for i in ids if i not in special])

    def _last_words(self, ids: list[int]) -> str:
        """', so it stops at “…the last words read”' for a cut caption ('' without a tokenizer)."""
        pieces = self._pieces(ids)
        if not pieces:
            return ""
        text = self.text_encoder.tokenizer.convert_tokens_to_string(pieces[-6:]).strip()
        return f", so it stops at “…{text}”"

    def _spelled_note(self, ids: list[int]) -> str:
        """A note when most of the caption lies outside the text encoder's vocabulary: a wordpiece tokenizer spells
        words it does not know letter by letter (Cyrillic, Arabic, CJK for an English vocabulary), and the encoder
        then reads letters, not words. Counted over the pieces that hold a letter (punctuation aside)."""
        pieces = [p.removeprefix("##") for p in self._pieces(ids)]
        lettered = [p for p in pieces if any(ch.isalpha() for ch in p) or p == "[UNK]"]
        spelled = sum(len(p) == 1 or p == "[UNK]" for p in lettered)
        if len(lettered) < 4 or spelled * 2 < len(lettered):
            return ""
        return (f"Most of this caption is outside the text encoder's vocabulary (it was trained on English): it reads "
                f"{spelled} of its {len(lettered)} word pieces as single letters or unknown symbols, not words, so "
                f"the text-only prediction and the word attributions say little about this caption.")

    def tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        ids = input_ids[0][attention_mask[0].bool()].tolist()
        return self.text_encoder.convert_ids_to_tokens(ids)

    @property
    @exclusive
    @torch.no_grad()
    def reference(self) -> Reference:
        """What stands in for a missing modality (mmdemo.contrib): the empty caption and a grey image through this
        predictor's encoders (and its own tuned text blocks, `head_text`), computed once."""
        if self._reference is None:
            ref = blank_reference(self.text_encoder, self.image_encoder, self.classifier.text_layers,
                                  self.classifier.max_length, self.prior)
            self._reference = Reference(self.classifier.head_text(ref.text.to(self.device)), ref.image.to(self.device),
                                        ref.kind)
        return self._reference

    def predict(self, image, caption) -> Prediction:
        """One input -> Prediction (raises InputError on bad input)."""
        pred = self.predict_batch([image], [caption])[0]
        if isinstance(pred, Exception):
            raise pred
        return pred

    def predict_batch(self, images: Sequence, captions: Sequence[str | None]) -> list[Prediction | InputError]:
        """Several inputs -> one Prediction each, or the InputError that says what is wrong with it (`predict_requests`
        with this network for every input)."""
        return predict_requests([(self, image, caption) for image, caption in zip(images, captions, strict=True)])

    def _predict_encoded(self, prepared: list[tuple[dict[str, torch.Tensor], list[str]]], text: TextFeatures,
                         image: ImageFeatures, ref: Reference, start: float) -> list[Prediction]:
        """Prepared inputs, their text features as the head reads them (`head_text`) and their image features ->
        their Predictions: the head once on the batch of every input's four coalitions (the input, and the input
        with its image, its caption, or both replaced by the reference), so the modality contributions cost a head
        pass. It touches this network's own modules only, so several networks' may run at once (`side_by_side`)."""
        began = time.perf_counter()
        # v(neither) does not depend on the input, but it runs in the same batch, padded like the others, so that a
        # modality the head ignores gets exactly 0 (computed apart, it would differ in the last bits)
        out: ModelOutput = self.classifier.head(*with_reference(text, image, ref))  # rows 0..B-1: the inputs
        self.head_ms = (time.perf_counter() - began) * 1000
        ml = self.classifier.multi_label
        fused = out.logits / self.temperature  # calibrated where the checkpoint carries a temperature
        probs = [probabilities(logits, ml) for logits in (fused, out.text_logits, out.image_logits)]
        contributions = contribution(fused, self.labels, ml, ref.kind)
        latency = (time.perf_counter() - start) * 1000
        predictions = []
        for j, (inputs, notes) in enumerate(prepared):
            tokens = self.tokens(inputs["input_ids"], inputs["attention_mask"])
            predictions.append(Prediction(
                self.labels, {head: dict(sorted(zip(self.labels, p[j].tolist()), key=lambda kv: -kv[1]))
                              for head, p in zip(HEADS, probs)},
                self._explain_item(out.explain, j, len(tokens)), tokens, ml, notes, latency, contributions[j],
                self.reliability))
        return predictions

    def _explain_item(self, explain: dict[str, Any], j: int, n_tokens: int) -> dict[str, Any]:
        """Row j of the head's explain quantities, its attention maps cut to its own tokens (the batch pads the
        captions to the longest), as predicting it alone gives them."""
        item = _item(explain, j)
        signals = self.classifier.head.signals
        for name, m in (item.get("attention") or {}).items():
            axis = m.ndim - 2 + signals[name].axes.index("text")  # [heads, query, key]
            item["attention"][name] = m.take(range(n_tokens), axis=axis)
        return item


@exclusive
@torch.no_grad()
def predict_requests(requests: Sequence[tuple[Predictor, Any, str | None]]) -> list[Prediction | InputError]:
    """(network, image, caption) requests, for one network or several -> each its Prediction, or the InputError
    that says what is wrong with its input: a bad input costs only its own answer. Every input is prepared by its
    own network (each image decoded and preprocessed once); the frozen encoders, which networks share, run once over
    all the inputs not seen before (one pass of each encoder, whichever networks asked), the text side and the image
    side at once; then each network's head runs once on its own inputs, different networks' side by side."""
    start = time.perf_counter()
    results: list[Prediction | InputError | None] = [None] * len(requests)
    prepared: dict[Predictor, list[tuple[int, dict[str, torch.Tensor], list[str]]]] = {}
    memo: dict = {}  # each image decoded, preprocessed and digested once, however many networks read it
    for i, (predictor, image, caption) in enumerate(requests):
        try:
            inputs, notes = predictor.prepare(image, caption, memo)
        except InputError as e:
            results[i] = e
            continue
        prepared.setdefault(predictor, []).append((i, inputs, notes))
    networks = list(prepared)
    batches = [[inputs for _, inputs, _ in prepared[p]] for p in networks]
    references = [p.reference for p in networks]  # computed once per network, under the lock

    def one_pass(encoder_of: Callable[[Predictor], nn.Module], run: Callable[[Predictor, list], list]) -> list:
        """`run` (a network, its inputs -> its view of their encodings) for every network, after one pass of each
        shared encoder instance over all the inputs not seen before (ENCODED)."""
        sharing: dict[nn.Module, list[int]] = {}
        for j, p in enumerate(networks):
            sharing.setdefault(encoder_of(p), []).append(j)
        for js in sharing.values():
            if len(js) > 1:  # a single network does it itself, below
                run(networks[js[0]], [inputs for j in js for inputs in batches[j]])
        return [run(p, batch) for p, batch in zip(networks, batches)]

    def text_side() -> list[TextFeatures]:  # then each tuned network's own last blocks, once per caption
        encoded = one_pass(lambda p: p.text_encoder, lambda p, batch: p.pipeline.encoded_text(batch))
        return [p.classifier.head_text(TextFeatures.cat(t)) for p, t in zip(networks, encoded)]

    def image_side() -> list[ImageFeatures]:
        encoded = one_pass(lambda p: p.image_encoder, lambda p, batch: p.pipeline.encoded_image(batch, memo))
        return [ImageFeatures.cat(i) for i in encoded]

    # Neither side needs the other. For one network the image encoder is most of the work, and it is faster on
    # every torch thread than on one next to the text side; for several, their tuned blocks make the text side
    # about as long as the image side.
    sides = side_by_side if len(networks) > 1 else lambda jobs: [job() for job in jobs]
    texts, images = sides([text_side, image_side])
    heads = {p: functools.partial(p._predict_encoded, [(inputs, notes) for _, inputs, notes in prepared[p]], t, i,
                                  ref, start) for p, t, i, ref in zip(networks, texts, images, references)}
    slowest_first = sorted(networks, key=lambda p: -p.head_ms)  # so that the workers finish together
    for p, predictions in zip(slowest_first, side_by_side([heads[p] for p in slowest_first])):
        for (i, _, _), prediction in zip(prepared[p], predictions):
            results[i] = prediction
    return results


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
