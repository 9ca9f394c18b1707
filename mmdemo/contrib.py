"""How much did each modality matter? The exact two-player Shapley value of the caption and of the image on one
prediction, measured the same way for every network (it reads nothing but the head's outputs).

With v(S) the log-probability of a class when only the modalities in S are present, a missing one replaced by a
reference input, the Shapley values of the two players are

    phi_text  = 1/2 [v({t}) - v({})] + 1/2 [v({t, i}) - v({i})]
    phi_image = 1/2 [v({i}) - v({})] + 1/2 [v({t, i}) - v({t})]

They sum to v({t, i}) - v({}) exactly, and the interaction v({t, i}) - v({t}) - v({i}) + v({}) is what the pair is
worth beyond the two parts' separate effects. The four values come from ONE batch of four through the head
(`with_reference`): the encoders run once per input, so the measurement costs a head pass, not a prediction.

The reference is what "no caption" / "no image" means:
  "blank" (what the app uses): the empty caption and a mid-grey image, through the encoders.
  "mean":  the training split's mean frozen features (every real token state of each text layer averaged into one
           token, the mean patch at each grid position, the mean pooled vectors and ImageNet logits).
The app and the probe default to "blank": on MVSA-Single dev its per-input shares depend less on the training seed
(`python -m trainer probe --compare-references`; docs/results/contributions.md, the opening section).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable

import torch
import torch.nn.functional as F
from PIL import Image

from .encoders.base import Captions, ImageFeatures, TextFeatures

REFERENCES = ("blank", "mean")
# The four coalitions, in the order of the batch `with_reference` builds.
COALITIONS = ("both", "text", "image", "neither")
BLANK_RGB = (128, 128, 128)


@dataclass
class Reference:
    """The stand-in for a missing modality: the features of one text and one image (batches of one). A "mean"
    reference has no text (None) for a model that encodes its own captions with a fine-tuned encoder: the training
    split's frozen features are not what it reads."""

    text: TextFeatures | None
    image: ImageFeatures
    kind: str = "blank"


@torch.no_grad()
def mean_reference(batches: Iterable[tuple[TextFeatures | Captions, ImageFeatures, torch.Tensor]],
                   token_id: int = 0) -> Reference:
    """The "mean" reference from the training split as the model reads it (`FitData.batches`): each text layer's
    real-token states averaged into one token, every other feature averaged over the samples. `token_id` stands
    for the mean token where a head reads token ids (the tokenizer's [UNK]: a one-token caption's weighted word
    average is its word vector whatever the weight). A model that encodes raw captions gets no text part: its
    reference caption is the empty one."""
    sums: dict[str, torch.Tensor] = {}
    tokens = samples = 0
    captions = False
    for text, image, _ in batches:
        n = image.pooled.shape[0]
        samples += n
        for f in fields(image):
            v = getattr(image, f.name)
            if v is not None:
                sums[f"image.{f.name}"] = sums.get(f"image.{f.name}", 0) + v.double().sum(0)
        if isinstance(text, Captions):
            captions = True
            continue
        m = text.attention_mask.double()
        tokens += m.sum()
        sums["text.layers"] = sums.get("text.layers", 0) + (text.layers.double() * m[:, None, :, None]).sum((0, 2))
        for name in ("pooled", "prior"):
            if getattr(text, name) is not None:
                sums[f"text.{name}"] = sums.get(f"text.{name}", 0) + getattr(text, name).double().sum(0)
        if text.word_embeddings is not None:
            sums["text.word_embeddings"] = (sums.get("text.word_embeddings", 0)
                                            + (text.word_embeddings.double() * m[..., None]).sum((0, 1)))
    if not samples:
        raise ValueError("the mean reference needs at least one training sample")
    mean = lambda key, count: (sums[key] / count).float()[None]
    image = ImageFeatures(**{k.split(".")[1]: mean(k, samples) for k in sums if k.startswith("image.")})
    if captions:
        return Reference(None, image, "mean")
    text = TextFeatures(layers=mean("text.layers", tokens)[:, :, None], attention_mask=torch.ones(1, 1, dtype=torch.long),
                        pooled=mean("text.pooled", samples),
                        prior=mean("text.prior", samples) if "text.prior" in sums else None)
    if "text.word_embeddings" in sums:
        text = replace(text, input_ids=torch.full((1, 1), token_id, dtype=torch.long),
                       word_embeddings=mean("text.word_embeddings", tokens)[:, None])
    return Reference(text, image, "mean")


@torch.no_grad()
def blank_reference(text_encoder, image_encoder, text_layers: int, max_length: int, prior=None) -> Reference:
    """The "blank" reference: the empty caption and a mid-grey image through the encoders (and the prior
    encoders, when the model has them)."""
    blank = Image.new("RGB", (224, 224), BLANK_RGB)  # the encoder's own transform resizes it
    text = text_encoder.encode([""], num_layers=text_layers, max_length=max_length)
    image = image_encoder.encode([blank])
    if prior is not None:
        prior_text, prior_image = prior
        text.prior = prior_text.encode([""], max_length=max_length).pooled
        image.prior = prior_image.encode([blank]).pooled
    return Reference(text, image, "blank")


# Features every model reads; the others (token ids, prior vectors, ImageNet logits) are in a "mean" reference
# exactly when the model read them in training, and are left out of the batch when the reference lacks them.
_REQUIRED = {"layers", "attention_mask", "pooled", "patches"}


def _rows(x: torch.Tensor | None, ref: torch.Tensor | None, order: tuple[int, ...], name: str
          ) -> torch.Tensor | None:
    """The batch of the four coalitions, coalition-major: order[c] is 0 for the inputs x [B, ...], 1 for the
    reference [1, ...] repeated for each of them."""
    if x is None or (ref is None and name not in _REQUIRED):
        return None
    if ref is None:
        raise ValueError(f"the reference has no {name}, which every model reads")
    ref = ref.to(x.device, x.dtype).expand_as(x)
    return torch.cat([(x, ref)[o] for o in order])


def with_reference(text: TextFeatures, image: ImageFeatures, ref: Reference) -> tuple[TextFeatures, ImageFeatures]:
    """B inputs -> the batch of their four coalitions [4 * B], coalition-major in COALITIONS order: (input text,
    input image), (input text, reference image), (reference text, input image), (reference text, reference image)."""
    k = text.layers.shape[1]
    length = max(text.attention_mask.shape[1], ref.text.attention_mask.shape[1])
    ref_text = replace(ref.text, layers=ref.text.layers[:, ref.text.layers.shape[1] - k:])  # the layers it reads
    text, ref_text = text.padded(length), ref_text.padded(length)  # the captions differ in length
    texts = {f.name: _rows(getattr(text, f.name), getattr(ref_text, f.name), (0, 0, 1, 1), f.name)
             for f in fields(TextFeatures)}
    images = {}
    for f in fields(ImageFeatures):
        x, r = getattr(image, f.name), getattr(ref.image, f.name)
        if f.name == "patches" and 0 in (x.shape[1], r.shape[1]):  # a head that reads no patches (`needs`)
            r = torch.zeros_like(x[:1])
        images[f.name] = _rows(x, r, (0, 1, 0, 1), f.name)
    return TextFeatures(**texts), ImageFeatures(**images)


@dataclass
class Contribution:
    """The two-player Shapley values of B predictions for every class c ([B, C]; [C] for one input, `Prediction`):
    v(S) is the log-probability of c (log-sigmoid on multi-label tasks) with only the modalities in S present.

    values:      {coalition: v} for "both", "text", "image", "neither".
    text, image: the Shapley values; text + image == values["both"] - values["neither"].
    interaction: values["both"] - values["text"] - values["image"] + values["neither"].
    """

    labels: list[str]
    values: dict[str, torch.Tensor]
    reference: str = "blank"

    @property
    def text(self) -> torch.Tensor:
        v = self.values
        return 0.5 * (v["text"] - v["neither"]) + 0.5 * (v["both"] - v["image"])

    @property
    def image(self) -> torch.Tensor:
        v = self.values
        return 0.5 * (v["image"] - v["neither"]) + 0.5 * (v["both"] - v["text"])

    @property
    def interaction(self) -> torch.Tensor:
        v = self.values
        return v["both"] - v["text"] - v["image"] + v["neither"]

    def __getitem__(self, b: int) -> "Contribution":
        """Input b of a batch."""
        return Contribution(self.labels, {k: v[b] for k, v in self.values.items()}, self.reference)

    @property
    def text_shares(self) -> torch.Tensor:
        """|phi_text| / (|phi_text| + |phi_image|) for every class (0.5 where neither modality moves it)."""
        t, i = self.text.abs(), self.image.abs()
        return torch.where(t + i > 0, t / (t + i).clamp(min=1e-12), torch.full_like(t, 0.5))

    def text_share(self, label: str | int) -> float:
        """`text_shares` of one class."""
        c = self.labels.index(label) if isinstance(label, str) else label
        return float(self.text_shares[..., c])

    def of(self, label: str | int) -> dict[str, float]:
        """The numbers the app and the API show for one class."""
        c = self.labels.index(label) if isinstance(label, str) else label
        return {"label": self.labels[c], "text": float(self.text[c]), "image": float(self.image[c]),
                "interaction": float(self.interaction[c]), "text_share": self.text_share(c),
                "both": float(self.values["both"][c]), "neither": float(self.values["neither"][c]),
                "reference": self.reference}


def log_probs(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return F.logsigmoid(logits.float()) if multi_label else torch.log_softmax(logits.float(), dim=-1)


def contribution(logits: torch.Tensor, labels: list[str], multi_label: bool, reference: str) -> Contribution:
    """Fused logits of the coalition batch [4 * B, C] (`with_reference`'s order) -> the Shapley decomposition of the
    B inputs ([B, C] values)."""
    v = log_probs(logits, multi_label).cpu().reshape(len(COALITIONS), -1, logits.shape[-1])
    return Contribution(list(labels), dict(zip(COALITIONS, v)), reference)
