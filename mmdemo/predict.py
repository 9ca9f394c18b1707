"""Predictor: PIL image + caption -> per-head probabilities with label names, and the head's explanations.

The same preprocessing as training (owned by the encoders) feeds the full differentiable pipeline
pixels / token ids -> encoders -> head (`mmdemo.pipeline`), which is also what Captum attributes through.
`Predictor.analyse` keeps what a prediction was computed from (the prepared inputs, the decoded upload) with it
(`Analysis`), so that the explanation and attention of the same click read them instead of predicting again.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch import nn

from .checkpoint import Trust, read_trust, reliability_line
from .contrib import Contribution, Reference, blank_reference, contribution, with_reference
from .encoders import (ImageEncoder, ImageFeatures, TextEncoder, TextFeatures, prior_encoders, shared_image_encoder,
                       shared_text_encoder)
from .inputs import InputError, clean_caption, load_image
from .models import ModelOutput, MultimodalClassifier
from .names import HEADS
from .pipeline import ENCODED, Pipeline, digest, exclusive, side_by_side
from .render import cut_caption_note, spelled_note, unknown_note

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


@dataclass
class Prepared:
    """One input made ready for one network, each part computed once: the model inputs (a batch of one), the notes
    on the caption, the upload decoded (RGB) and the digest of its pixel tensor (its key in ENCODED)."""

    inputs: dict[str, torch.Tensor]
    notes: list[str]
    image: Image.Image
    pixels: str


@dataclass(frozen=True)
class Analysis:
    """A prediction with what it was computed from: the model inputs, the decoded upload and the image encoder
    that read it. The page's click predicts once and hands this to its explanation and attention steps, which read
    it instead of preparing and predicting again."""

    prediction: Prediction
    inputs: dict[str, torch.Tensor] = field(repr=False)
    image: Image.Image = field(repr=False)
    image_encoder: ImageEncoder = field(repr=False)


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
    def for_task(cls, task: str, model: str, root: str | Path, device: str = "cpu", **expect) -> "Predictor":
        """The configured Hub repo for (task, model) when reachable, else the checkpoint in `root/task/model`;
        `predictor.source` says which was used (and `predictor.note` why a fallback happened)."""
        from .hub import load

        classifier, where = load(task, model, Path(root), **expect)
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

    def prepare(self, image, caption) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Validate and preprocess one input -> model inputs (batch of one) and warnings.
        Raises mmdemo.inputs.InputError with a readable message on bad input."""
        prepared = self._prepare(load_image(image), caption, lambda rgb: self.image_encoder.preprocess([rgb]))
        return prepared.inputs, prepared.notes

    @exclusive
    def _prepare(self, rgb: Image.Image, caption: str | None,
                 pixels: Callable[[Image.Image], torch.Tensor]) -> Prepared:
        """A decoded upload and a caption -> `Prepared`. `pixels(rgb)`: the image encoder's tensor for it (which
        `predict_requests` makes once for every network on the same encoder)."""
        text, notes = clean_caption(caption)
        batch = self.text_encoder.tokenize([text], max_length=self.classifier.max_length)
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
        if int(batch["attention_mask"].sum()) >= batch["attention_mask"].shape[1] == self.classifier.max_length:
            notes.append(cut_caption_note(self.classifier.max_length, self._last_words(ids)))
        unknown = self._spelled_note(ids) or self._unknown_note(ids)
        if unknown:
            notes.append(unknown)
        pixel_values = pixels(rgb)
        key = digest(pixel_values)
        inputs = {"pixel_values": pixel_values, **batch}
        if self.prior is not None:
            prior_text, prior_image = self.prior
            n = self.classifier.max_length
            with torch.no_grad():
                inputs["prior_text"] = ENCODED.get(("prior-text", prior_text, text, n),
                                                   lambda: prior_text.encode([text], max_length=n).pooled)
                inputs["prior_image"] = ENCODED.get(("prior-image", prior_image, key),
                                                    lambda: prior_image.encode([rgb]).pooled)
        return Prepared({k: v.to(self.device) for k, v in inputs.items()}, notes, rgb, key)

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
        return unknown_note(n, len(pieces)) if n else ""

    def _pieces(self, ids: list[int]) -> list[str]:
        """The caption's word pieces, [UNK] included, without the tokenizer's other special tokens ([] for a
        tokenizer without an unknown token, e.g. CLIP's byte-level one)."""
        tokenizer = getattr(self.text_encoder, "tokenizer", None)
        if getattr(tokenizer, "unk_token_id", None) is None or not hasattr(tokenizer, "all_special_ids"):
            return []
        special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        return tokenizer.convert_ids_to_tokens([i for i in ids if i not in special])

    def _last_words(self, ids: list[int]) -> str:
        """The last words the encoder reads of a cut caption ("" without a tokenizer)."""
        pieces = self._pieces(ids)
        return self.text_encoder.tokenizer.convert_tokens_to_string(pieces[-6:]).strip() if pieces else ""

    def _spelled_note(self, ids: list[int]) -> str:
        """A note when most of the caption lies outside the text encoder's vocabulary: a wordpiece tokenizer spells
        words it does not know letter by letter (Cyrillic, Arabic, CJK for an English vocabulary), and the encoder
        then reads letters, not words. Counted over the pieces that hold a letter (punctuation aside)."""
        pieces = [p.removeprefix("##") for p in self._pieces(ids)]
        lettered = [p for p in pieces if any(ch.isalpha() for ch in p) or p == "[UNK]"]
        spelled = sum(len(p) == 1 or p == "[UNK]" for p in lettered)
        if len(lettered) < 4 or spelled * 2 < len(lettered):
            return ""
        return spelled_note(spelled, len(lettered))

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
        return self.analyse(image, caption).prediction

    def analyse(self, image, caption) -> Analysis:
        """One input -> its Analysis: the Prediction with the inputs it was computed from (raises InputError on bad
        input)."""
        analysis = analyse_requests([(self, image, caption)])[0]
        if isinstance(analysis, Exception):
            raise analysis
        return analysis

    def predict_batch(self, images: Sequence, captions: Sequence[str | None]) -> list[Prediction | InputError]:
        """Several inputs -> one Prediction each, or the InputError that says what is wrong with it (`predict_requests`
        with this network for every input)."""
        return predict_requests([(self, image, caption) for image, caption in zip(images, captions, strict=True)])

    def _predict_encoded(self, prepared: list[Prepared], text: TextFeatures, image: ImageFeatures, ref: Reference,
                         start: float) -> list[Prediction]:
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
        for j, one in enumerate(prepared):
            tokens = self.tokens(one.inputs["input_ids"], one.inputs["attention_mask"])
            predictions.append(Prediction(
                self.labels, {head: dict(sorted(zip(self.labels, p[j].tolist()), key=lambda kv: -kv[1]))
                              for head, p in zip(HEADS, probs)},
                self._explain_item(out.explain, j, len(tokens)), tokens, ml, one.notes, latency, contributions[j],
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


def predict_requests(requests: Sequence[tuple[Predictor, Any, str | None]]) -> list[Prediction | InputError]:
    """(network, image, caption) requests, for one network or several -> each its Prediction, or the InputError
    that says what is wrong with its input (`analyse_requests`, without what the predictions were computed from)."""
    return [a if isinstance(a, Exception) else a.prediction for a in analyse_requests(requests)]


class _Uploads:
    """The images of one call of `analyse_requests`, each decoded once, and its tensor made and digested once per
    image encoder, however many networks read it (the compare view hands every network the same image)."""

    def __init__(self):
        self._decoded: list[tuple[Any, Image.Image | InputError]] = []
        self._pixels: dict[tuple[int, ImageEncoder], torch.Tensor] = {}

    def decode(self, image) -> tuple[int, Image.Image]:
        """-> (its index among the call's images, the decoded RGB); raises InputError on an unreadable image."""
        index = next((k for k, (seen, _) in enumerate(self._decoded) if seen is image), None)
        if index is None:
            try:
                rgb = load_image(image)
            except InputError as e:
                rgb = e
            self._decoded.append((image, rgb))
            index = len(self._decoded) - 1
        rgb = self._decoded[index][1]
        if isinstance(rgb, InputError):
            raise rgb
        return index, rgb

    def pixels(self, index: int, encoder: ImageEncoder) -> Callable[[Image.Image], torch.Tensor]:
        def make(rgb: Image.Image) -> torch.Tensor:
            if (index, encoder) not in self._pixels:
                self._pixels[index, encoder] = encoder.preprocess([rgb])
            return self._pixels[index, encoder]

        return make


@exclusive
@torch.no_grad()
def analyse_requests(requests: Sequence[tuple[Predictor, Any, str | None]]) -> list[Analysis | InputError]:
    """(network, image, caption) requests, for one network or several -> each its Analysis, or the InputError
    that says what is wrong with its input: a bad input costs only its own answer. Every input is prepared by its
    own network (each image decoded and preprocessed once); the frozen encoders, which networks share, run once over
    all the inputs not seen before (one pass of each encoder, whichever networks asked), the text side and the image
    side at once; then each network's head runs once on its own inputs, different networks' side by side."""
    start = time.perf_counter()
    results: list[Analysis | InputError | None] = [None] * len(requests)
    prepared: dict[Predictor, list[tuple[int, Prepared]]] = {}
    uploads = _Uploads()
    for i, (predictor, image, caption) in enumerate(requests):
        try:
            index, rgb = uploads.decode(image)
            one = predictor._prepare(rgb, caption, uploads.pixels(index, predictor.image_encoder))
        except InputError as e:
            results[i] = e
            continue
        prepared.setdefault(predictor, []).append((i, one))
    networks = list(prepared)
    batches = [[one for _, one in prepared[p]] for p in networks]
    references = [p.reference for p in networks]  # computed once per network, under the lock

    def one_pass(encoder_of: Callable[[Predictor], nn.Module],
                 run: Callable[[Predictor, list[Prepared]], list]) -> list:
        """`run` (a network, its inputs -> its view of their encodings) for every network, after one pass of each
        shared encoder instance over all the inputs not seen before (ENCODED)."""
        sharing: dict[nn.Module, list[int]] = {}
        for j, p in enumerate(networks):
            sharing.setdefault(encoder_of(p), []).append(j)
        for js in sharing.values():
            if len(js) > 1:  # a single network does it itself, below
                run(networks[js[0]], [one for j in js for one in batches[j]])
        return [run(p, batch) for p, batch in zip(networks, batches)]

    def text_side() -> list[TextFeatures]:  # then each tuned network's own last blocks, once per caption
        encoded = one_pass(lambda p: p.text_encoder,
                           lambda p, batch: p.pipeline.encoded_text([one.inputs for one in batch]))
        return [p.classifier.head_text(TextFeatures.cat(t)) for p, t in zip(networks, encoded)]

    def image_side() -> list[ImageFeatures]:
        encoded = one_pass(lambda p: p.image_encoder, lambda p, batch: p.pipeline.encoded_image(
            [one.inputs for one in batch], [one.pixels for one in batch]))
        return [ImageFeatures.cat(i) for i in encoded]

    # Neither side needs the other. For one network the image encoder is most of the work, and it is faster on
    # every torch thread than on one next to the text side; for several, their tuned blocks make the text side
    # about as long as the image side.
    sides = side_by_side if len(networks) > 1 else lambda jobs: [job() for job in jobs]
    texts, images = sides([text_side, image_side])
    heads = {p: functools.partial(p._predict_encoded, batch, t, i, ref, start)
             for p, batch, t, i, ref in zip(networks, batches, texts, images, references)}
    slowest_first = sorted(networks, key=lambda p: -p.head_ms)  # so that the workers finish together
    for p, predictions in zip(slowest_first, side_by_side([heads[p] for p in slowest_first])):
        for (i, one), prediction in zip(prepared[p], predictions):
            results[i] = Analysis(prediction, one.inputs, one.image, p.image_encoder)
    return results
