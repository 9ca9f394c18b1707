"""Explanations of one prediction: Captum attributions through the full pipeline, attention maps, and the pictures
that show them.

Every attribution function takes the Predictor's `Pipeline` and the inputs `Predictor.prepare` made (a batch
of one) and explains one head's logit ("fused" by default) for one class (the fused predicted class by
default). Captum differentiates a small wrapper forward that returns that head's logits; the modality that is
not attributed is held fixed, read from the encoder outputs the prediction already computed (mmdemo.pipeline.ENCODED).
Integrated Gradients checks its own completeness (`Convergence`) and, asked to, retries with more steps (`escalate`).

Image maps are returned as float arrays [H, W] over the encoder's input pixels (after its resize and crop),
> 0 = evidence for the target class. `attribution_picture` / `attention_picture` draw one over the whole upload:
the part the encoder read (`seen_box`) is outlined and the rest dimmed, and a colour scale with its meaning is
drawn under the picture, so an API caller gets it too; the upload is prepared for drawing once (`seen`) for every
map of it. Attention is drawn on an absolute scale (a multiple of an
even share; an even map is drawn flat) and measured against an even spread (`focus`).

Every map is checked on the input itself (`word_deletion`, `region_deletion`): hiding the words or image regions it
ranks highest should lower the explained class's probability more than hiding as many at random (`Deletion`).
"""

from __future__ import annotations

import functools
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, LayerIntegratedGradients, Occlusion
from PIL import Image, ImageDraw, ImageFont
from torchvision import transforms as T

from .encoders import ImageEncoder
from .models import ModelOutput, Signal
from .names import METHODS  # method id -> what the app shows; "attention" reads the network's own maps
from .pipeline import Pipeline, digest, exclusive
from .predict import probabilities

HEAD_LOGITS = {"fused": "logits", "text": "text_logits", "image": "image_logits"}


def method_id(name: str) -> str:
    """Accept a method id or its display name."""
    for key, label in METHODS.items():
        if name in (key, label):
            return key
    raise ValueError(f"unknown explanation method {name!r}; choose one of {', '.join(METHODS)}")


def head_logits(out: ModelOutput, head: str = "fused") -> torch.Tensor:
    if head not in HEAD_LOGITS:
        raise ValueError(f"head must be one of {', '.join(HEAD_LOGITS)}, not {head!r}")
    return getattr(out, HEAD_LOGITS[head])


@torch.no_grad()
@exclusive
def predicted_class(pipeline: Pipeline, inputs: dict[str, torch.Tensor]) -> int:
    """The fused head's top class: the default target of every explanation."""
    return int(pipeline(**inputs).logits[0].argmax())


def image_forward(pipeline: Pipeline, inputs: dict[str, torch.Tensor], head: str = "fused") -> Callable:
    """pixel_values [B,3,H,W] -> head logits [B,C], with this input's caption held fixed: its frozen features from
    the click's prediction (`Pipeline.encoded_text`), not encoded again."""
    text = pipeline.encoded_text([inputs])[0]

    def forward(pixel_values: torch.Tensor) -> torch.Tensor:
        image = pipeline.encode_image(pixel_values, inputs.get("prior_image"))
        return head_logits(pipeline.classifier(text.expand(pixel_values.shape[0]), image), head)

    return forward


def text_forward(pipeline: Pipeline, inputs: dict[str, torch.Tensor], head: str = "fused") -> Callable:
    """(input_ids [B,L], attention_mask [B,L]) -> head logits [B,C], with this input's image held fixed (its frozen
    features from the click's prediction, `Pipeline.encoded_image`)."""
    image = pipeline.encoded_image([inputs])[0]

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        text = pipeline.encode_text(input_ids, attention_mask, inputs.get("prior_text"))
        return head_logits(pipeline.classifier(text, image.expand(input_ids.shape[0])), head)

    return forward


def _target(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None) -> int:
    return predicted_class(pipeline, inputs) if target is None else int(target)


def _unused_input(e: RuntimeError) -> bool:
    """autograd's complaint when the explained head does not read the attributed input at all (the text-only
    head and the pixels, say): the honest attribution is then zero everywhere."""
    return "not have been used in the graph" in str(e)


# ---- text --------------------------------------------------------------------------------------------


IG_TOLERANCE = 0.05  # attributions that miss the logit's change by more than this share are recomputed, then flagged
IG_BUDGET_S = 15.0  # no more steps are tried once the next try would end after this many seconds of the explanation
SMALL_CHANGE = 0.01  # a logit change below this (from the baseline to the input) leaves nothing much to attribute


@dataclass
class Convergence:
    """Integrated Gradients' completeness check (Captum's convergence delta): the attributions should add up to the
    change of the explained logit from the baseline to the input; `delta` is by how much they miss it (the error of
    the n-step path integral), `change` that change, F(input) - F(baseline). `steps`: the steps of the attribution
    kept, `tried`: every step count run for it (more when the first missed by more than `IG_TOLERANCE`)."""

    delta: float
    change: float
    steps: int = 0
    tried: tuple[int, ...] = ()
    seconds: float = 0.0  # all tries together

    @property
    def relative(self) -> float:
        return abs(self.delta) / max(abs(self.change), 1e-12)

    @property
    def small_change(self) -> bool:
        """The score hardly moves from the baseline to the input, so the attributions are small and mostly noise."""
        return abs(self.change) < SMALL_CHANGE and abs(self.delta) < SMALL_CHANGE

    @property
    def reliable(self) -> bool:
        return self.relative <= IG_TOLERANCE

    def describe(self, what: str) -> str:
        """One plain sentence on how far to trust the attributions; `what` names them ("The word colours")."""
        steps = f"{self.steps} steps" + (f"; tried {', '.join(map(str, self.tried))}" if len(self.tried) > 1 else "")
        if self.small_change:
            return (f"{what}: the score hardly changes between the baseline and this input ({self.change:+.3f}), so "
                    f"there is little to attribute and the colours mostly show noise.")
        if self.reliable:
            return (f"{what} add up to the change in score from the baseline to this input ({self.change:+.2f}) "
                    f"to within {max(self.relative, 0.01):.0%} ({steps}).")
        miss = "more than the change itself" if self.relative > 1 else f"{self.relative:.0%}"
        return (f"{what} do not add up to the change in score from the baseline to this input: read them as rough "
                f"(they miss the change, {self.change:+.2f}, by {miss}; {steps}).")


def _convergence(attr: torch.Tensor, delta: torch.Tensor, steps: int = 0) -> Convergence:
    """From Captum's attributions of one input and its convergence delta (sum(attr) - (F(x) - F(baseline)))."""
    d = float(delta.reshape(-1)[0])
    return Convergence(d, float(attr[0].sum()) - d, steps, (steps,))


def escalate(attribute: Callable[[int], tuple[Any, Convergence | None]], n_steps: int, max_steps: int,
             budget_s: float = IG_BUDGET_S, tolerance: float = IG_TOLERANCE) -> tuple[Any, Convergence | None]:
    """Run `attribute(steps)` with n_steps, then 4x as many, up to max_steps, while the attributions miss the logit's
    change by more than `tolerance` (relative) and the next try is expected (from the last one's time per step) to
    end within `budget_s` of the start. -> the try that added up best, its Convergence listing every try."""
    start = time.perf_counter()
    best: tuple[Any, Convergence] | None = None
    tried: list[int] = []
    steps = n_steps
    while True:
        t0 = time.perf_counter()
        result, conv = attribute(steps)
        took = time.perf_counter() - t0
        if conv is None:  # the head does not read this input: nothing to converge
            return result, None
        tried.append(steps)
        if best is None or conv.relative < best[1].relative:
            best = (result, conv)
        nxt = min(steps * 4, max_steps)
        elapsed = time.perf_counter() - start
        if (conv.relative <= tolerance or conv.small_change or nxt <= steps
                or elapsed + took * nxt / steps > budget_s):
            break
        steps = nxt
    result, conv = best
    conv.tried, conv.seconds = tuple(tried), time.perf_counter() - start
    return result, conv


@dataclass
class TokenAttribution:
    tokens: list[str]  # the real (unpadded) tokens, special tokens included
    scores: np.ndarray  # [len(tokens)] attribution to the target logit, summed over the embedding
    convergence: Convergence | None = None  # None where the head does not read the caption (the scores are 0)

    def normalised(self) -> np.ndarray:
        """Scores scaled to [-1, 1] by the largest magnitude (0s stay 0s)."""
        m = float(np.abs(self.scores).max()) if self.scores.size else 0.0
        return self.scores / m if m > 0 else self.scores


def token_baseline(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Pad ids everywhere except the first and the last real token ([CLS]/[SEP] for BERT, start/end of text for
    CLIP, whose pooling finds the end token by its id), so only the words get attributions."""
    ref = torch.full_like(input_ids, pad_id)
    last = attention_mask.sum(1) - 1
    rows = torch.arange(input_ids.shape[0])
    ref[:, 0] = input_ids[:, 0]
    ref[rows, last] = input_ids[rows, last]
    return ref


WORD_STEPS, WORD_MAX_STEPS = 20, 320  # the app's word IG: 20 steps, up to 320 while the attributions do not add up
PIXEL_STEPS, PIXEL_MAX_STEPS = 16, 256  # the app's pixel IG (each step is a pass of the image encoder)


@exclusive
def token_attributions(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
                       head: str = "fused", n_steps: int = WORD_STEPS, max_steps: int | None = None,
                       budget_s: float = IG_BUDGET_S) -> TokenAttribution:
    """LayerIntegratedGradients on the text encoder's input embeddings, one score per real token. With `max_steps`,
    attributions that do not add up to the logit's change are recomputed with more steps (`escalate`)."""
    target = _target(pipeline, inputs, target)
    enc = pipeline.text_encoder
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    lig = LayerIntegratedGradients(text_forward(pipeline, inputs, head), enc.embeddings())
    real = mask[0].bool()

    def attribute(steps: int) -> tuple[np.ndarray, Convergence | None]:
        try:
            attr, delta = lig.attribute(ids, baselines=token_baseline(ids, mask, enc.pad_token_id), target=target,
                                        additional_forward_args=(mask,), n_steps=steps,
                                        internal_batch_size=min(steps, 64), return_convergence_delta=True)
        except RuntimeError as e:
            if not _unused_input(e):
                raise
            return np.zeros(int(real.sum()), dtype=np.float32), None
        return attr[0].sum(-1)[real].detach().float().cpu().numpy(), _convergence(attr.detach(), delta, steps)

    scores, convergence = escalate(attribute, n_steps, max(n_steps, max_steps or n_steps), budget_s)
    return TokenAttribution(enc.convert_ids_to_tokens(ids[0][real].tolist()), scores, convergence)


def _pieces_to_words(tokens: list[str]) -> list[tuple[str, list[int]]]:
    """Join WordPiece ("##ing") and SentencePiece ("▁word") pieces into words -> (word, its token indices)."""
    sentencepiece = any(t.startswith("▁") for t in tokens)
    words: list[tuple[str, list[int]]] = []
    prev_special = True
    for i, tok in enumerate(tokens):
        special = is_special_token(tok)
        if sentencepiece:
            piece = None if tok.startswith("▁") or special else tok
        else:
            piece = tok[2:] if tok.startswith("##") else None
        if piece is None and words and not prev_special and not special and words[-1][0] in ("#", "@"):
            piece = tok.lstrip("▁")  # a hashtag or a mention is one word ("#", "summer", "##vibes")
        if piece is not None and words and not prev_special:
            words[-1] = (words[-1][0] + piece, words[-1][1] + [i])
        else:
            words.append((tok.lstrip("▁") or tok, [i]))
        prev_special = special
    return words


def merge_subwords(tokens: list[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """Word pieces joined into words, summing their scores (tokenizer markers such as [CLS] kept as they are)."""
    return [(w, float(sum(scores[i] for i in idx))) for w, idx in _pieces_to_words(tokens)]


def word_spans(tokens: list[str]) -> list[tuple[str, list[int]]]:
    """The caption's words, each with the indices of its pieces; tokenizer markers ([CLS], [SEP]) left out."""
    return [(w, idx) for w, idx in _pieces_to_words(tokens) if not is_special_token(tokens[idx[0]])]


def word_scores(tokens: list[str], scores: np.ndarray) -> np.ndarray:
    """Per-token scores -> one per word of `word_spans` (the sum over its pieces): what `word_deletion` ranks."""
    return np.array([float(np.sum(scores[idx])) for _, idx in word_spans(tokens)])


def is_special_token(token: str) -> bool:
    """[CLS], [SEP], <|endoftext|>, <s>, ...: tokenizer markers rather than words."""
    return (token.startswith("[") and token.endswith("]")) or (token.startswith("<") and token.endswith(">"))


# ---- image ---------------------------------------------------------------------------------------------


@exclusive
def integrated_gradients(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
                         head: str = "fused", n_steps: int = PIXEL_STEPS, return_convergence: bool = False,
                         max_steps: int | None = None, budget_s: float = IG_BUDGET_S
                         ) -> np.ndarray | tuple[np.ndarray, Convergence | None]:
    """IntegratedGradients on the pixels from a zero baseline in the encoder's normalised space (the
    dataset-mean image), summed over colour channels -> [H, W] (signed: > 0 pushes the logit up), and with
    `return_convergence` its `Convergence` (None where the head does not read the image). With `max_steps`,
    attributions that do not add up to the logit's change are recomputed with more steps (`escalate`)."""
    target = _target(pipeline, inputs, target)
    x = inputs["pixel_values"]
    ig = IntegratedGradients(image_forward(pipeline, inputs, head))

    def attribute(steps: int) -> tuple[np.ndarray, Convergence | None]:
        try:  # chunks of 16 images bound the memory of a long path
            attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=steps,
                                       internal_batch_size=min(steps, 16), return_convergence_delta=True)
        except RuntimeError as e:
            if not _unused_input(e):
                raise
            return np.zeros(tuple(x.shape[-2:]), dtype=np.float32), None
        return attr[0].sum(0).detach().float().cpu().numpy(), _convergence(attr.detach(), delta, steps)

    heat, convergence = escalate(attribute, n_steps, max(n_steps, max_steps or n_steps), budget_s)
    return (heat, convergence) if return_convergence else heat


@exclusive
def occlusion(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
              head: str = "fused", windows: int = 4, batch: int = 8) -> np.ndarray:
    """Occlusion: the drop of the target logit when a square (a `windows`-th of the image side, stride half
    of that) is set to the zero baseline -> [H, W]."""
    target = _target(pipeline, inputs, target)
    x = inputs["pixel_values"]
    h, w = x.shape[-2:]
    win = max(1, min(h, w) // windows)
    stride = max(1, win // 2)
    occ = Occlusion(image_forward(pipeline, inputs, head))
    with torch.no_grad():
        attr = occ.attribute(x, sliding_window_shapes=(x.shape[1], win, win), strides=(x.shape[1], stride, stride),
                             baselines=0.0, target=target, perturbations_per_eval=batch)
    return attr[0].mean(0).float().cpu().numpy()


def _upsample(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[h, w] -> [H, W] bilinear."""
    return F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()


@exclusive
def grad_cam(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
             head: str = "fused") -> np.ndarray:
    """Grad-CAM on `image_encoder.feature_layer()`, upsampled to [H, W].

    CNNs output a map [B, C, h, w] there (Captum's LayerGradCam). ViT/CLIP output tokens [B, T, C]
    (T = grid cells, plus a leading [CLS] for ViT): channel weights are the gradients averaged over the patch
    tokens, and the weighted sum is reshaped to the encoder's grid.
    """
    target = _target(pipeline, inputs, target)
    enc: ImageEncoder = pipeline.image_encoder
    x = inputs["pixel_values"]
    forward = image_forward(pipeline, inputs, head)
    layer = enc.feature_layer()
    try:
        if _feature_rank(enc, x) == 4:
            cam = LayerGradCam(forward, layer).attribute(x, target=target)[0, 0]
        else:
            cam = _token_grad_cam(forward, layer, x, target, enc.grid)
    except RuntimeError as e:
        if not _unused_input(e):
            raise
        return np.zeros(tuple(x.shape[-2:]), dtype=np.float32)
    cam = cam.detach()
    # Grad-CAM keeps the positive part (evidence for the class); when every region argues against the class, keep
    # the negative part instead of a blank map: it is drawn as evidence against (`attribution_picture`).
    cam = F.relu(cam) if float(cam.max()) > 0 else cam.clamp(max=0)
    return _upsample(cam, tuple(x.shape[-2:]))


_FEATURE_RANK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _feature_rank(enc: ImageEncoder, x: torch.Tensor) -> int:
    """4 for a CNN map [B, C, h, w], 3 for tokens [B, T, C]; probed once per encoder."""
    if enc not in _FEATURE_RANK:
        out: list[torch.Tensor] = []
        hook = enc.feature_layer().register_forward_hook(lambda m, i, o: out.append(o))
        try:
            with torch.no_grad():
                enc(x)
        finally:
            hook.remove()
        _FEATURE_RANK[enc] = out[0].dim()
    return _FEATURE_RANK[enc]


def _token_grad_cam(forward: Callable, layer: torch.nn.Module, x: torch.Tensor, target: int,
                    grid: tuple[int, int]) -> torch.Tensor:
    saved: list[torch.Tensor] = []

    def keep(module, inp, out):
        out.retain_grad()
        saved.append(out)

    hook = layer.register_forward_hook(keep)
    try:
        x = x.clone().requires_grad_(True)  # frozen encoders: a leaf that needs grad builds the graph
        out = forward(x)[0, target]
        if not saved or not saved[0].requires_grad:
            raise RuntimeError("the patch tokens have not been used in the graph")
        out.backward()
    finally:
        hook.remove()
    tokens = saved[0]
    n = grid[0] * grid[1]
    if tokens.grad is None:  # the head never reads the patch tokens (only a pooled vector)
        return torch.zeros(grid)
    acts, grads = tokens[0, -n:], tokens.grad[0, -n:]  # drop leading [CLS]-like tokens
    weights = grads.mean(0)  # [C]
    return (acts * weights).sum(-1).reshape(grid)


IMAGE_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "grad-cam": grad_cam,
    "integrated-gradients": integrated_gradients,
    "occlusion": occlusion,
}


def image_attribution(method: str, pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
                      head: str = "fused") -> tuple[np.ndarray, Convergence | None]:
    """-> (map [H, W], its Convergence where the method has one: Integrated Gradients)."""
    method = method_id(method)
    if method == "integrated-gradients":
        return integrated_gradients(pipeline, inputs, target=target, head=head, return_convergence=True,
                                    max_steps=PIXEL_MAX_STEPS)
    return IMAGE_METHODS[method](pipeline, inputs, target=target, head=head), None


# ---- faithfulness: does a map point at what the network uses? ---------------------------------------------
#
# A deletion check on the input itself: hide the k words (or image regions) a map ranks highest and compare the
# explained class's probability with hiding k at random (the deletion test of RISE / ROAR, without retraining).
# Captum's metrics answer other questions: `captum.metrics.infidelity` is the expected squared gap between
# attr . perturbation and the output's change under random perturbations, whose size depends on the attributions'
# units (attention weights and Grad-CAM have none that add up to a change in score), and `sensitivity_max` is how
# much a map moves when the input is nudged (robustness, not faithfulness). Neither says whether hiding what the map
# highlights costs the answer more than hiding as much at random, which is what the page tells the user, so that
# comparison is written here: one batched forward per modality, the other modality held fixed from the prediction.

DELETE_WORDS = 3  # at most this many words are hidden, and at most a third of the caption (at least one)
DELETE_REGIONS = 0.1  # the share of the image grid's regions hidden (at least one)
RANDOM_DRAWS = 4  # random deletions, averaged: each costs an image (or caption) pass on the first map of an input
MIN_GAIN = 0.01  # the highlighted k must lower the probability this much more than k random ones to count


@dataclass
class Deletion:
    """The explained class's probability on the input (`before`), with the k items a map ranks highest hidden
    (`top`), and with k items chosen at random hidden (`random`, one per draw); n items in all."""

    k: int
    n: int
    units: str  # "words" / "image regions"
    before: float
    top: float
    random: np.ndarray  # [draws]

    @property
    def random_mean(self) -> float:
        return float(np.mean(self.random))

    @property
    def gain(self) -> float:
        """How much lower the probability ends with the top k hidden than with k random ones (their mean):
        > 0 = the map points at what the network uses more than random picks would."""
        return self.random_mean - self.top

    @property
    def beats_random(self) -> bool:
        return self.gain > MIN_GAIN

    def describe(self, label: str) -> str:
        """One plain sentence on the check, and a plain verdict where the map does no better than random."""
        def moves(p: float) -> str:
            if abs(p - self.before) < 0.005:
                return f"leaves '{label}' at {self.before:.0%}"
            return f"{'lowers' if p < self.before else 'raises'} '{label}' from {self.before:.0%} to {p:.0%}"

        what = f"{self.units} (of {self.n})"
        line = (f"Hiding the {self.k} most highlighted {what} {moves(self.top)}; hiding {self.k} random "
                f"{self.units}: to {self.random_mean:.0%} (mean of {self.random.size} draws).")
        if not self.beats_random:
            line += f" So this map points no more at what the network uses than random {self.units} would."
        return line


def deletion_line(check: Deletion | None, label: str, units: str) -> str:
    """The line under a map: `check`'s sentence, or why there is none."""
    if check is not None:
        return check.describe(label)
    return (f"No deletion check: the map highlights no {units} towards '{label}', or there are too few {units} to "
            f"compare with random ones.")


def deletion_k(n: int, units: str) -> int:
    """How many of n words or regions the check hides."""
    if units == "words":
        return max(1, min(DELETE_WORDS, n // 3))
    return max(1, round(n * DELETE_REGIONS))


# The random deletions do not depend on the map: every map of one input (the words' IG, then Grad-CAM, IG, Occlusion
# or attention on the image) shares them, and a map whose top k were hidden before (the words' IG, recomputed on each
# click) reuses that too: each hidden set's probability is kept, per network and input, and only new ones run.
_HIDDEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> {input: {hidden set: probability}}
INPUTS_KEPT = 16  # inputs kept per network (the most recent)


def _deletions(pipeline: Pipeline, key: tuple, scores: np.ndarray, k: int, draws: int, seed: int,
               run: Callable[[list[tuple[int, ...]]], np.ndarray]) -> tuple[float, np.ndarray]:
    """-> (the probability with the k highest `scores` hidden (ties: the first), with each of `draws` random
    k-subsets of all n hidden (a fixed seed: the same input gets the same line)). `run(sets)` hides each set in one
    row of a batch -> their probabilities; it runs once, on the sets not measured before for `key` (the input)."""
    top = tuple(sorted(np.argsort(-scores, kind="stable")[:k].tolist()))
    rng = np.random.default_rng(seed)
    randoms = [tuple(sorted(rng.choice(scores.size, k, replace=False).tolist())) for _ in range(draws)]
    per_input = _HIDDEN.setdefault(pipeline, {})
    memo = per_input.pop(key, {})
    per_input[key] = memo  # the most recent last
    while len(per_input) > INPUTS_KEPT:
        per_input.pop(next(iter(per_input)))
    missing = list(dict.fromkeys(h for h in [top, *randoms] if h not in memo))
    if missing:
        memo.update(zip(missing, run(missing).tolist()))
    return memo[top], np.array([memo[h] for h in randoms])


def class_probability(pipeline: Pipeline, logits: torch.Tensor, target: int, head: str = "fused") -> np.ndarray:
    """[B, C] head logits -> [B] the target class's probability as the page shows it (the fused head calibrated
    with the checkpoint's temperature; sigmoid for multi-label tasks)."""
    clf = pipeline.classifier
    multi = bool(getattr(clf, "multi_label", False))
    if head == "fused" and not multi:
        logits = logits / float(getattr(clf, "calibration", {}).get("temperature", 1.0))
    return probabilities(logits, multi)[:, target].float().cpu().numpy()


def _before(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int, head: str) -> float:
    """The probability on the input itself, from the prediction's encoder outputs (no encoder pass)."""
    text, image = pipeline.encoded([inputs])[0]
    return float(class_probability(pipeline, head_logits(pipeline.classifier(text, image), head), target, head)[0])


@exclusive
@torch.no_grad()
def word_deletion(pipeline: Pipeline, inputs: dict[str, torch.Tensor], word_scores: np.ndarray | list[float],
                  target: int | None = None, head: str = "fused", k: int | None = None, draws: int = RANDOM_DRAWS,
                  seed: int = 0) -> Deletion | None:
    """The deletion check of a map over the caption's words: `word_scores`, one per word of `word_spans` (higher =
    more highlighted). A word is hidden as the explainer's baseline hides it: its pieces become the tokenizer's pad
    id (`token_baseline`). The k-highlighted and the random variants run as one batch through the text encoder and
    the head. None where there is nothing to compare: fewer than two words, or no word scored above 0."""
    target = _target(pipeline, inputs, target)
    enc = pipeline.text_encoder
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    positions = mask[0].nonzero().flatten()  # the real tokens
    spans = word_spans(enc.convert_ids_to_tokens(ids[0][positions].tolist()))
    scores = np.asarray(word_scores, dtype=np.float64)
    if scores.size != len(spans):
        raise ValueError(f"{scores.size} word scores for a caption of {len(spans)} words")
    n = len(spans)
    k = deletion_k(n, "words") if k is None else k
    if n < 2 or k >= n or scores.max() <= 0:  # nothing highlighted towards the class
        return None
    forward = text_forward(pipeline, inputs, head)

    def run(picks: list[tuple[int, ...]]) -> np.ndarray:
        batch = ids.repeat(len(picks), 1)
        for row, words in enumerate(picks):
            for w in words:
                batch[row, positions[spans[w][1]]] = enc.pad_token_id
        return class_probability(pipeline, forward(batch, mask.expand(len(picks), -1)), target, head)

    key = ("words", digest(ids), digest(mask), head, target)
    top, random = _deletions(pipeline, key, scores, k, draws, seed, run)
    return Deletion(k, n, "words", _before(pipeline, inputs, target, head), top, random)


def region_scores(heat: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A map [H, W] over the encoder's pixels -> its mean over each cell of `grid` [h, w] (`region_bounds`)."""
    heat = np.asarray(heat, dtype=np.float64)
    rows, cols = region_bounds(heat.shape, grid)
    return np.array([[heat[r0:r1, c0:c1].mean() for c0, c1 in cols] for r0, r1 in rows])


def region_bounds(size: tuple[int, int], grid: tuple[int, int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The pixel rows and columns of each grid cell: the grid split evenly over the image (cells differ by at most a
    pixel where it does not divide)."""
    (H, W), (h, w) = size, grid
    return ([(i * H // h, (i + 1) * H // h) for i in range(h)], [(j * W // w, (j + 1) * W // w) for j in range(w)])


@exclusive
@torch.no_grad()
def region_deletion(pipeline: Pipeline, inputs: dict[str, torch.Tensor], heat: np.ndarray,
                    target: int | None = None, head: str = "fused", k: int | None = None, draws: int = RANDOM_DRAWS,
                    seed: int = 0) -> Deletion | None:
    """The deletion check of an image map: `heat` is either a map over the encoder's pixels [H, W] (an
    attribution; read as its mean over each cell of the encoder's grid) or one weight per region [h, w] (an
    attention map over its grid). A region is greyed out on the preprocessed pixels: set to 0 in the encoder's
    normalised space, the dataset-mean colour that Integrated Gradients and Occlusion use as their baseline. The
    variants run as one batch through the image encoder and the head. None where no region scores above 0."""
    target = _target(pipeline, inputs, target)
    x = inputs["pixel_values"]
    heat = np.asarray(heat, dtype=np.float64)
    if heat.shape == tuple(x.shape[-2:]):
        heat = region_scores(heat, tuple(pipeline.image_encoder.grid))
    grid = heat.shape
    scores = heat.reshape(-1)
    n = scores.size
    k = deletion_k(n, "regions") if k is None else k
    if n < 2 or k >= n or scores.max() <= 0:  # nothing highlighted towards the class
        return None
    rows, cols = region_bounds(tuple(x.shape[-2:]), grid)
    forward = image_forward(pipeline, inputs, head)

    def run(picks: list[tuple[int, ...]]) -> np.ndarray:
        batch = x.repeat(len(picks), 1, 1, 1)
        for row, regions in enumerate(picks):
            for cell in regions:
                (r0, r1), (c0, c1) = rows[cell // grid[1]], cols[cell % grid[1]]
                batch[row, :, r0:r1, c0:c1] = 0.0
        return class_probability(pipeline, forward(batch), target, head)

    key = ("regions", digest(x), grid, head, target)
    top, random = _deletions(pipeline, key, scores, k, draws, seed, run)
    return Deletion(k, n, "image regions", _before(pipeline, inputs, target, head), top, random)


# ---- attention --------------------------------------------------------------------------------------


def attention_matrices(explain: dict[str, Any], signals: dict[str, Signal],
                       n_tokens: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """-> (text->image [L, N], image->text [N, L]) averaged over heads, from a Prediction's explain (batch
    axis removed: each map [heads, Q, K]) and the head's declared `signals` (which side of each map is the query).
    A missing direction is the other one transposed; (None, None) when the network has no attention. Rows and
    columns are cut to the `n_tokens` real tokens."""
    maps = explain.get("attention") or {}
    t2i = i2t = None
    for name, m in maps.items():
        a = np.asarray(m, dtype=np.float64)
        a = a.mean(0) if a.ndim == 3 else a  # average the heads
        axes = signals[name].axes
        if axes == ("text", "image") and t2i is None:
            t2i = a[:n_tokens]
        elif axes == ("image", "text") and i2t is None:
            i2t = a[:, :n_tokens]
    if t2i is None and i2t is not None:
        t2i = i2t.T
    if i2t is None and t2i is not None:
        i2t = t2i.T
    return t2i, i2t


def grid_shape(n: int, grid: tuple[int, int]) -> tuple[int, int]:
    """The encoder's grid when it has n cells, else the squarest h x w = n."""
    if grid[0] * grid[1] == n:
        return tuple(grid)
    h = int(np.sqrt(n))
    while n % h:
        h -= 1
    return h, n // h


def word_to_image(t2i: np.ndarray, token: int | None, grid: tuple[int, int]) -> np.ndarray:
    """Attention of one token (None: the mean over all tokens) over the image grid -> [h, w]."""
    row = t2i.mean(0) if token is None else t2i[token]
    return row.reshape(grid_shape(row.size, grid))


def image_to_words(i2t: np.ndarray, region: int | None) -> np.ndarray:
    """Attention of one image region (None: the mean over regions) over the tokens -> [L]."""
    return i2t.mean(0) if region is None else i2t[region]


def has_direction(explain: dict[str, Any], signals: dict[str, Signal], axes: tuple[str, str]) -> bool:
    """Whether the network reports a map with these (query, key) axes itself (rather than the other one transposed,
    whose rows are then not a distribution of attention)."""
    return any(signals[name].axes == axes for name in (explain.get("attention") or {}))


# ---- how far attention is from an even spread -------------------------------------------------------

UNIFORM_TOL = 5e-5  # every weight within this of an even share 1/n: the map is reported even and drawn flat


@dataclass
class Focus:
    """How far one attention distribution over n regions (or tokens) is from an even spread. Weights are read as
    shares of their sum (a row of a joint attention that also attends elsewhere sums to less than 1)."""

    n: int
    score: float  # 1 - entropy / log(n): 0 = evenly over all n, 1 = all on one
    top: int  # the index of the largest share
    top_share: float
    max_dev: float  # the largest |share - 1/n|

    @property
    def even(self) -> bool:
        return self.max_dev < UNIFORM_TOL

    @property
    def top_ratio(self) -> float:
        """The largest share as a multiple of an even share (1 = even, n = all on one)."""
        return self.top_share * self.n

    def describe(self, what: str, top_name: str, units: str = "regions") -> str:
        """One plain sentence: `what` ("All words"), the top item's name ("row 2, col 3"), what the n items are."""
        unit = units.rstrip("s")
        if self.even:
            return (f"{what} attends almost evenly: no {unit} singled out (every one within {UNIFORM_TOL:g} of an "
                    f"even share, 1/{self.n} = {1 / self.n:.4f}).")
        score = f"{self.score:.2f}" if self.score >= 0.01 else f"{self.score:.1g}"
        return (f"{what}: focus {score} (0 = spread evenly over all {self.n} {units}, 1 = all on one); the most "
                f"attended, {top_name}, gets {self.top_share:.1%} against an even share of {1 / self.n:.1%} "
                f"({self.top_ratio:.1f}x){f': no {unit} stands out much' if self.top_ratio < 1.5 else ''}.")


def focus(weights: np.ndarray) -> Focus | None:
    """-> the Focus of one attention distribution (any shape, read flat); None where it is not one (a negative
    weight, as in a similarity map, or no weight at all)."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if not w.size or (w < 0).any() or w.sum() <= 0:
        return None
    p, n = w / w.sum(), w.size
    nz = p[p > 0]
    score = 1.0 - float(-(nz * np.log(nz)).sum() / np.log(n)) if n > 1 else 0.0
    top = int(p.argmax())
    return Focus(n, min(max(score, 0.0), 1.0), top, float(p[top]), float(np.abs(p - 1 / n).max()))


def even_multiples(weights: np.ndarray) -> np.ndarray:
    """Each weight as a multiple of an even share (share * n): 1 = even, n = all on one. An even map (`Focus.even`)
    comes back exactly 1 everywhere, so it is drawn flat."""
    w = np.asarray(weights, dtype=np.float64)
    f = focus(w)
    if f is None or f.even:
        return np.ones_like(w)
    return w / w.sum() * w.size


def word_attention(weights: np.ndarray, tokens: list[str]) -> tuple[list[tuple[str, float]], Focus | None, float]:
    """One attention distribution over the caption's tokens -> (per word, a score in [-1, 1] for the page's word
    colours: log(its share / an even share for its pieces) / log(n), 0 = even, 1 = all on it; the Focus over the
    tokens; the share the tokenizer's markers ([CLS]/[SEP], not shown) get)."""
    w = np.asarray(weights, dtype=np.float64)
    f = focus(w)
    if f is None:
        return [(word, 0.0) for word, _ in word_spans(tokens)], None, 0.0
    p, n = w / w.sum(), w.size
    spans = word_spans(tokens)
    words = []
    for word, idx in spans:
        ratio = float(p[idx].sum()) * n / len(idx)
        score = 0.0 if f.even else -1.0 if ratio <= 0 else float(np.clip(np.log(ratio) / np.log(n), -1, 1))
        words.append((word, score))
    shown = [i for _, idx in spans for i in idx]
    return words, f, float(1 - p[shown].sum()) if shown else 1.0


def region_name(index: int, grid: tuple[int, int]) -> str:
    r, c = divmod(index, grid[1])
    return f"row {r + 1}, col {c + 1}"


@dataclass
class AttentionView:
    """What the attention tab shows for one pick: `weights` [h, w], the picked word's attention over the image
    regions (all words: their mean); `words`, each caption word's colour in [-1, 1] for the picked region's (all
    regions: their mean) attention over the caption; `notes` and `word_notes`, plain sentences on how far each is
    from even."""

    weights: np.ndarray
    words: list[tuple[str, float]]
    notes: list[str]
    word_notes: list[str]


def words_to_image(explain: dict[str, Any], signals: dict[str, Signal], tokens: list[str],
                   encoder_grid: tuple[int, int]) -> AttentionView | None:
    """All the caption's words' mean attention over the image regions (the map the explanation's "attention" method
    draws and checks), or None where the network reports no text <-> image attention."""
    t2i, _ = attention_matrices(explain, signals, len(tokens))
    if t2i is None:
        return None
    return attention_view(t2i, t2i.T, tokens, grid_shape(t2i.shape[1], encoder_grid), i2t_native=False)


def attention_view(t2i: np.ndarray, i2t: np.ndarray, tokens: list[str], grid: tuple[int, int],
                   word: int | None = None, region: int | None = None, i2t_native: bool = True) -> AttentionView:
    """`t2i` [L, N] / `i2t` [N, L] from `attention_matrices`, the real tokens, the image grid; `word` indexes
    `word_spans(tokens)` (None: all words), `region` the grid cells (None: all regions). `i2t_native`: whether the
    network reports image->text attention itself (`has_direction`); where it does not, the words show how much each
    attends to the picked region instead."""
    spans = word_spans(tokens)
    rows = spans[word][1] if word is not None else [i for _, idx in spans for i in idx] or list(range(len(tokens)))
    name = f"'{spans[word][0]}'" if word is not None else "All words (their mean)"
    row = t2i[rows].mean(0)
    grid = grid_shape(row.size, grid)
    notes = []
    f = focus(row)
    if f is None:
        notes.append(f"{name}: these weights are not a distribution of attention; drawn as they are.")
    else:
        notes.append(f.describe(name, region_name(f.top, grid)))
        total = float(row.sum())
        if abs(total - 1) > 0.01:  # a joint attention (INFIG), or one with a summary token (MGGF) not drawn here
            notes.append(f"{name} gives {total:.0%} of its attention to these {row.size} regions (the rest goes to "
                         f"tokens not drawn here); the shares above are of that part.")
    n, word_notes = row.size, []
    where = f"Region {region_name(region, grid)}" if region is not None else "The image regions (their mean)"
    if i2t_native:
        words, wf, markers = word_attention(i2t.mean(0) if region is None else i2t[region], tokens)
        if wf is not None:
            top = next((w for w, idx in spans if wf.top in idx), tokens[wf.top])
            word_notes.append(wf.describe(where, f"'{top}'", units="tokens"))
            if markers > 0.05:
                word_notes.append(f"{markers:.0%} of it goes to the tokenizer's start and end markers, which are "
                                  f"not shown.")
    elif region is None:
        words = [(w, 0.0) for w, _ in spans]
        word_notes.append("This network reports only word → image attention: pick a region to colour the words by "
                          "how much each attends to it.")
    else:
        share = t2i[:, region] / np.maximum(t2i.sum(1), 1e-12)  # each token's share for this region
        words = []
        for w, idx in spans:
            ratio = float(share[idx].mean()) * n
            words.append((w, -1.0 if ratio <= 0 else float(np.clip(np.log(ratio) / np.log(n), -1, 1))))
        word_notes.append(f"Words: how much each attends to region {region_name(region, grid)}, as a multiple of an "
                          f"even share (this network reports only word → image attention).")
    return AttentionView(row.reshape(grid), words, notes, word_notes)


# ---- rendering -----------------------------------------------------------------------------------------

ALPHA = 0.75  # the colour's opacity at full strength; it falls to 0 with the strength, so weak parts show the photo
SEQUENTIAL, DIVERGING = "inferno", "RdBu_r"  # attention weights; attributions (red towards the class, blue against)
DIM = 0.35  # brightness left to the parts of the photo the encoder did not read
MIN_SIDE, MAX_SIDE = 320, 640  # the shorter side is scaled to MIN_SIDE unless the longer one then exceeds MAX_SIDE



def encoder_view(encoder: ImageEncoder, image: Image.Image) -> Image.Image:
    """The image as the encoder sees it (its resize and crop, before the tensor conversion), so heatmaps over
    the encoder's pixels line up."""
    tf = getattr(encoder, "transform", None)
    if isinstance(tf, T.Compose):
        out = image
        for step in tf.transforms:
            if isinstance(step, (T.ToTensor, T.PILToTensor, T.Normalize)):
                break
            out = step(out)
        if isinstance(out, Image.Image):
            return out
    side = encoder.image_size
    return image.resize((side, side), Image.BICUBIC)


def seen_box(encoder: ImageEncoder, image: Image.Image) -> tuple[float, float, float, float] | None:
    """The part of `image` the encoder reads, (left, top, right, bottom) in its pixels: its transform's resizes and
    centre crops followed back to the uploaded picture. None where a step's geometry is unknown."""
    tf = getattr(encoder, "transform", None)
    if not isinstance(tf, T.Compose):
        return None
    box = [0.0, 0.0, float(image.width), float(image.height)]  # the current picture, in the upload's pixels
    w, h = image.size  # the current picture's size in its own pixels
    for step in tf.transforms:
        if isinstance(step, (T.ToTensor, T.PILToTensor, T.Normalize)):
            break
        if isinstance(step, T.Resize):
            size = step.size
            if isinstance(size, int) or len(size) == 1:  # the shorter side becomes `size` (torchvision's rounding)
                short = size if isinstance(size, int) else size[0]
                w, h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            else:
                h, w = size
        elif isinstance(step, T.CenterCrop):
            ch, cw = step.size
            left, top = int(round((w - cw) / 2.0)), int(round((h - ch) / 2.0))  # torchvision's center_crop
            sx, sy = (box[2] - box[0]) / w, (box[3] - box[1]) / h
            box = [box[0] + left * sx, box[1] + top * sy, box[0] + (left + cw) * sx, box[1] + (top + ch) * sy]
            w, h = cw, ch
        elif not callable(step) or isinstance(step, torch.nn.Module):  # a geometric step we cannot follow
            return None
    return tuple(box)


def seen_note(encoder: ImageEncoder, image: Image.Image) -> str:
    """One sentence on which part of the upload the image encoder read."""
    box = seen_box(encoder, image)
    side = encoder.image_size
    if box is None:
        return f"The image encoder read the picture resized to {side}x{side} pixels; the map covers that view."
    l, t, r, b = box
    if l <= 0.5 and t <= 0.5 and r >= image.width - 0.5 and b >= image.height - 0.5:
        return f"The image encoder read the whole picture (resized to {side}x{side} pixels)."
    share = (r - l) * (b - t) / (image.width * image.height)
    return (f"The image encoder read only the outlined centre square ({share:.0%} of the picture, resized to "
            f"{side}x{side} pixels); the dimmed edges outside it were not read, so the map says nothing about them.")


@dataclass
class Legend:
    """The colour scale drawn under a map: `cmap` from position 0 to 1; `signed`: the middle is 'no colour' and both
    ends are full strength (else the 0 end is); `ends` label positions 0 and 1 (and `middle` 0.5); `ticks` are
    (position, label)."""

    title: str
    cmap: str
    signed: bool
    ends: tuple[str, str]
    middle: str = ""
    ticks: tuple[tuple[float, str], ...] = ()

    def strength(self, pos: np.ndarray) -> np.ndarray:
        return np.abs(2 * pos - 1) if self.signed else pos


def _colours(pos: np.ndarray, strength: np.ndarray, cmap: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (RGB [..., 3] in 0..255, opacity [..., 1])."""
    from matplotlib import colormaps

    return colormaps[cmap](np.clip(pos, 0, 1))[..., :3] * 255.0, (ALPHA * np.clip(strength, 0, 1))[..., None]


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # no TrueType font: Pillow's own
        return ImageFont.load_default(size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


BAR_HEIGHT, LEGEND_PAD = 14, 8


def legend_band(width: int, legend: Legend) -> Image.Image:
    """The colour bar with its title, tick labels and end labels, `width` pixels wide (white background). The bar
    shows each colour as the maps draw it at that strength over a mid-grey pixel."""
    font, small = _font(13), _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x0, x1 = LEGEND_PAD, width - LEGEND_PAD
    title = _wrap(probe, legend.title, font, x1 - x0)
    bar_top = LEGEND_PAD + 16 * len(title) + 2
    height = bar_top + BAR_HEIGHT + 4 + 14 + (14 if legend.ticks else 0) + LEGEND_PAD
    band = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(title):
        draw.text((x0, LEGEND_PAD + 16 * i), line, fill=(30, 30, 30), font=font)
    pos = np.linspace(0, 1, x1 - x0)
    colour, a = _colours(pos, legend.strength(pos), legend.cmap)
    row = 128.0 * (1 - a) + colour * a
    bar = np.repeat(row[None], BAR_HEIGHT, 0).clip(0, 255).astype(np.uint8)
    band.paste(Image.fromarray(bar, "RGB"), (x0, bar_top))
    draw.rectangle([x0 - 1, bar_top - 1, x1, bar_top + BAR_HEIGHT], outline=(80, 80, 80))
    y = bar_top + BAR_HEIGHT + 3
    for p, label in legend.ticks:
        x = x0 + p * (x1 - x0 - 1)
        draw.line([x, bar_top + BAR_HEIGHT, x, y + 1], fill=(80, 80, 80))
        tw = draw.textlength(label, font=small)
        draw.text((min(max(x - tw / 2, x0), x1 - tw), y + 1), label, fill=(60, 60, 60), font=small)
    y += 14 if legend.ticks else 0
    left, right = legend.ends
    draw.text((x0, y), left, fill=(30, 30, 30), font=small)
    draw.text((x1 - draw.textlength(right, font=small), y), right, fill=(30, 30, 30), font=small)
    if legend.middle:
        draw.text(((x0 + x1 - draw.textlength(legend.middle, font=small)) / 2, y), legend.middle,
                  fill=(30, 30, 30), font=small)
    return band


def _display_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    s = MIN_SIDE / min(w, h)
    if max(w, h) * s > MAX_SIDE:
        s = MAX_SIDE / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


@dataclass(frozen=True)
class Seen:
    """An upload as every map of it is drawn: the picture at display size (the encoder's own view where its
    geometry is unknown), the part the encoder read in those pixels (left, top, right, bottom), and a sentence
    saying which part that is."""

    picture: Image.Image
    box: tuple[int, int, int, int]
    note: str


def seen(encoder: ImageEncoder, image: Image.Image) -> Seen:
    """The upload made ready for drawing maps over it (`picture`): its display size and the part `seen_box` says
    the encoder read."""
    img = image.convert("RGB")
    note = seen_note(encoder, img)
    box = seen_box(encoder, img)
    if box is None:  # unknown geometry: draw over the encoder's own view
        img = encoder_view(encoder, img)
        box = (0.0, 0.0, float(img.width), float(img.height))
    size = _display_size(img.size)
    sx, sy = size[0] / img.width, size[1] / img.height
    shown = img.resize(size, Image.BICUBIC, reducing_gap=3.0)
    return Seen(shown, (round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)), note)


def picture(upload: Seen, pos: np.ndarray, legend: Legend, cell: tuple[int, tuple[int, int]] | None = None
            ) -> Image.Image:
    """The whole upload with a map drawn over the part the encoder read (`seen_box`: outlined; the rest dimmed),
    and the legend under it. `pos` [h, w]: each cell's position on the legend's colour scale, over the encoder's
    input (any resolution; upsampled smoothly). `cell`: (index, grid) of a grid cell to outline (row-major)."""
    size = upload.picture.size
    out = np.asarray(upload.picture, dtype=np.float64)  # a copy: the upload is drawn on again by the next map
    l, t, r, b = upload.box
    inside = np.zeros(size[::-1], dtype=bool)
    inside[max(t, 0):b, max(l, 0):r] = True
    whole = inside.all()
    out[~inside] *= DIM
    # the map over the box (which may reach past the picture where the encoder padded it)
    p = np.asarray(Image.fromarray(np.asarray(pos, dtype=np.float32)).resize((max(r - l, 1), max(b - t, 1)),
                                                                             Image.BILINEAR))
    colour, a = _colours(p, legend.strength(p), legend.cmap)
    ys, xs = slice(max(t, 0), min(b, size[1])), slice(max(l, 0), min(r, size[0]))
    cy, cx = slice(ys.start - t, ys.stop - t), slice(xs.start - l, xs.stop - l)
    out[ys, xs] = out[ys, xs] * (1 - a[cy, cx]) + colour[cy, cx] * a[cy, cx]
    shown = Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(shown)
    if not whole:
        draw.rectangle([l, t, r - 1, b - 1], outline="white", width=2)
    if cell is not None:
        index, (rows, cols) = cell
        row, col = divmod(index, cols)
        cw, ch = (r - l) / cols, (b - t) / rows
        draw.rectangle([l + col * cw, t + row * ch, l + (col + 1) * cw - 1, t + (row + 1) * ch - 1],
                       outline="white", width=3)
    band = legend_band(max(shown.width, 360), legend)
    canvas = Image.new("RGB", (band.width, shown.height + band.height), "white")
    canvas.paste(shown, ((band.width - shown.width) // 2, 0))
    canvas.paste(band, (0, shown.height))
    return canvas


def _even_ticks(n: int) -> tuple[tuple[float, str], ...]:
    marks = [m for m in (1, 2, 5, 10, 20, 50, 100, 200, 500) if m < n * 0.8] + [n]
    return tuple((np.log(m) / np.log(n), f"{m}x") for m in marks)


def attention_picture(upload: Seen, weights: np.ndarray,
                      cell: tuple[int, tuple[int, int]] | None = None) -> Image.Image:
    """An attention distribution over the image grid [h, w] on an absolute scale: each region's weight as a multiple
    of an even share, log scale from 1x (even or less: no colour) to n x (all on that region). An even map
    (`Focus.even`) is drawn flat: the photo untinted."""
    w = np.asarray(weights, dtype=np.float64)
    n = w.size
    multiple = even_multiples(w)
    pos = np.clip(np.log(np.maximum(multiple, 1e-12)) / np.log(n), 0, 1) if n > 1 else np.zeros_like(w)
    legend = Legend(f"Attention weight of each region, as a multiple of an even share (1/{n}); log scale, the same "
                    f"for every map", SEQUENTIAL, False, ("even share or less: no colour", "all on one region"),
                    ticks=_even_ticks(n) if n > 1 else ())
    return picture(upload, pos, legend, cell)


METHOD_SCALES = {  # how each attribution map is scaled to full colour, in words for its legend
    "grad-cam": "Grad-CAM shows evidence {sign} the class only (it drops the other sign): full colour = this map's "
                "strongest region",
    "integrated-gradients": "Integrated Gradients, summed over colour channels: full colour at the 99th percentile "
                            "of |attribution| (the strongest 1% of pixels are drawn at full colour)",
    "occlusion": "Occlusion, the drop in the score when a square is blanked: full colour = ±{limit:.2f} in the score",
}


def attribution_picture(upload: Seen, heat: np.ndarray, label: str, method: str) -> Image.Image:
    """A signed attribution map [H, W] (> 0: evidence for `label`) in red (towards) and blue (against), scaled to
    full colour at its largest magnitude, or, for Integrated Gradients, whose pixels are few and extreme, at the
    99th percentile of |attribution| (Captum's visualisation clips at a percentile too)."""
    method = method_id(method)
    h = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    mag = np.abs(h)
    limit = float(np.percentile(mag, 99)) if method == "integrated-gradients" else float(mag.max(initial=0))
    limit = limit if limit > 0 else float(mag.max(initial=0))
    pos = 0.5 + 0.5 * np.clip(h / limit, -1, 1) if limit > 0 else np.full_like(h, 0.5)
    how = METHOD_SCALES[method].format(limit=limit, sign="against" if h.max(initial=0) <= 0 < limit else "for")
    title = f"{how}." if limit > 0 else f"{how.split(':')[0]}: flat, nothing to show."
    return picture(upload, pos, Legend(title, DIVERGING, True, (f"against {label}", f"towards {label}"),
                                               "no effect"))
