"""Explanations of one prediction: Captum attributions through the full pipeline, attention maps, overlays.

Every attribution function takes the Predictor's `Pipeline` and the inputs `Predictor.prepare` made (a batch
of one) and explains one head's logit ("fused" by default) for one class (the fused predicted class by
default). Captum differentiates a small wrapper forward that returns that head's logits; the modality that is
not attributed is held fixed, read from the encoder outputs the prediction already computed (mmdemo.predict.ENCODED).

Image maps are returned as float arrays [H, W] over the encoder's input pixels (after its resize and crop),
higher = more evidence for the target class; `overlay` blends one over the image the encoder saw.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerGradCam, LayerIntegratedGradients, Occlusion
from PIL import Image, ImageDraw
from torchvision import transforms as T

from .encoders import ImageEncoder
from .models import ModelOutput, Signal
from .names import METHODS  # method id -> what the app shows; "attention" reads the network's own maps
from .predict import Pipeline, exclusive

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


@dataclass
class Convergence:
    """Integrated Gradients' completeness check (Captum's convergence delta): the attributions should add up to the
    change of the explained logit from the baseline to the input; `delta` is by how much they miss it (the error of
    the n-step Riemann sum), `change` that change, F(input) - F(baseline)."""

    delta: float
    change: float

    @property
    def relative(self) -> float:
        return abs(self.delta) / max(abs(self.change), 1e-12)

    def describe(self, what: str) -> str:
        return (f"{what}: convergence delta {self.delta:+.4f}, {self.relative:.1%} of the logit's change from the "
                f"baseline ({self.change:+.3f}){'; more steps would sharpen it' if self.relative > 0.05 else ''}.")


def _convergence(attr: torch.Tensor, delta: torch.Tensor) -> Convergence:
    """From Captum's attributions of one input and its convergence delta (sum(attr) - (F(x) - F(baseline)))."""
    d = float(delta.reshape(-1)[0])
    return Convergence(d, float(attr[0].sum()) - d)


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


@exclusive
def token_attributions(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
                       head: str = "fused", n_steps: int = 20) -> TokenAttribution:
    """LayerIntegratedGradients on the text encoder's input embeddings, one score per real token."""
    target = _target(pipeline, inputs, target)
    enc = pipeline.text_encoder
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    lig = LayerIntegratedGradients(text_forward(pipeline, inputs, head), enc.embeddings())
    real = mask[0].bool()
    convergence = None
    try:
        attr, delta = lig.attribute(ids, baselines=token_baseline(ids, mask, enc.pad_token_id), target=target,
                                    additional_forward_args=(mask,), n_steps=n_steps, internal_batch_size=n_steps,
                                    return_convergence_delta=True)
        scores = attr[0].sum(-1)[real].detach().float().cpu().numpy()
        convergence = _convergence(attr.detach(), delta)
    except RuntimeError as e:
        if not _unused_input(e):
            raise
        scores = np.zeros(int(real.sum()), dtype=np.float32)
    return TokenAttribution(enc.convert_ids_to_tokens(ids[0][real].tolist()), scores, convergence)


def merge_subwords(tokens: list[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """Join WordPiece ("##ing") and SentencePiece ("▁word") pieces into words, summing their scores."""
    sentencepiece = any(t.startswith("▁") for t in tokens)
    words: list[tuple[str, float]] = []
    prev_special = True
    for tok, s in zip(tokens, scores.tolist()):
        special = is_special_token(tok)
        if sentencepiece:
            piece = None if tok.startswith("▁") or special else tok
        else:
            piece = tok[2:] if tok.startswith("##") else None
        if piece is not None and words and not prev_special:
            words[-1] = (words[-1][0] + piece, words[-1][1] + s)
        else:
            words.append((tok.lstrip("▁") or tok, s))
        prev_special = special
    return words


def is_special_token(token: str) -> bool:
    """[CLS], [SEP], <|endoftext|>, <s>, ...: tokenizer markers rather than words."""
    return (token.startswith("[") and token.endswith("]")) or (token.startswith("<") and token.endswith(">"))


# ---- image ---------------------------------------------------------------------------------------------


@exclusive
def integrated_gradients(pipeline: Pipeline, inputs: dict[str, torch.Tensor], target: int | None = None,
                         head: str = "fused", n_steps: int = 16, return_convergence: bool = False
                         ) -> np.ndarray | tuple[np.ndarray, Convergence | None]:
    """IntegratedGradients on the pixels from a zero baseline in the encoder's normalised space (the
    dataset-mean image); |sum over colour channels| -> [H, W], and with `return_convergence` its `Convergence`
    (None where the head does not read the image)."""
    target = _target(pipeline, inputs, target)
    x = inputs["pixel_values"]
    ig = IntegratedGradients(image_forward(pipeline, inputs, head))
    try:
        attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps,
                                   internal_batch_size=n_steps, return_convergence_delta=True)
        heat, convergence = attr[0].sum(0).abs().detach().float().cpu().numpy(), _convergence(attr.detach(), delta)
    except RuntimeError as e:
        if not _unused_input(e):
            raise
        heat, convergence = np.zeros(tuple(x.shape[-2:]), dtype=np.float32), None
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
    # Grad-CAM keeps the positive part (evidence for the class); when every region argues against the class,
    # show the magnitude instead of a blank map.
    cam = F.relu(cam) if float(cam.max()) > 0 else cam.abs()
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
        return integrated_gradients(pipeline, inputs, target=target, head=head, return_convergence=True)
    return IMAGE_METHODS[method](pipeline, inputs, target=target, head=head), None


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


# ---- rendering -----------------------------------------------------------------------------------------


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


def normalise_map(heat: np.ndarray) -> np.ndarray:
    """Positive part stretched to [0, 1] between its min and max, so near-uniform maps (attention) still show
    where they peak; a flat map becomes all zeros."""
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0, None)
    if not h.size:
        return h
    lo, hi = h.min(), h.max()
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)


def overlay(image: Image.Image, heat: np.ndarray, cmap: str = "jet", alpha: float = 0.6,
            min_side: int = 320) -> Image.Image:
    """Blend a heatmap (any [h, w]) over `image`, upsampled smoothly. The colour's opacity grows with the heat,
    so unimportant regions keep the picture visible; small images are enlarged to `min_side` so the page shows
    them crisply."""
    from matplotlib import colormaps

    img = image.convert("RGB")
    if min(img.size) < min_side:
        scale = min_side / min(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    h = normalise_map(heat)
    h_img = Image.fromarray((h * 255).astype(np.uint8), "L").resize(img.size, Image.BILINEAR)
    h = np.asarray(h_img, dtype=np.float64)[..., None] / 255.0
    colour = colormaps[cmap](h[..., 0])[..., :3] * 255.0
    a = alpha * (0.25 + 0.75 * h)  # a faint tint everywhere keeps the map's extent readable
    out = np.asarray(img, dtype=np.float64) * (1 - a) + colour * a
    return Image.fromarray(out.clip(0, 255).astype(np.uint8), "RGB")


def outline_region(image: Image.Image, region: int, grid: tuple[int, int], colour: str = "white") -> Image.Image:
    """Draw the box of grid cell `region` (row-major) on a copy of `image`."""
    out = image.copy()
    rows, cols = grid
    r, c = divmod(region, cols)
    cw, ch = out.width / cols, out.height / rows
    ImageDraw.Draw(out).rectangle([c * cw, r * ch, (c + 1) * cw - 1, (r + 1) * ch - 1], outline=colour, width=3)
    return out
