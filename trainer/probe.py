"""What a trained network draws on, measured over a split, next to what its own signals claim.

- Shapley shares (mmdemo.contrib): for each input, the exact two-player Shapley values of the caption and of the
  image on the log-probability of the predicted class; the text share |phi_t| / (|phi_t| + |phi_i|).
- Perceptual score (Gat et al., NeurIPS 2021): how much the metric drops when the images (or the captions) are
  shuffled across the split, so that the model sees a real but unrelated one; the spread over several shuffles.
- The network's own signals (`explain` scores and weight components): their spread across inputs, their Spearman
  rank correlation with the measured text share, and matched vs image-shuffled pairs (for MGGF: the paper's claim
  that alpha rises when the modalities conflict).

    python -m trainer probe --checkpoint checkpoints/mvsa-single/hglnet --split dev
    python -m trainer probe --bundled --splits dev test --json results/probe/bundled.json   (the README table)
    python -m trainer probe --compare-references --checkpoint RUN/seed0 RUN/seed1 RUN/seed2   (blank vs mean)
"""

from __future__ import annotations

import statistics

import torch
from torchmetrics.functional import spearman_corrcoef

from mmdemo.checkpoint import is_flat
from mmdemo.contrib import Contribution, Reference, blank_reference, contribution, mean_reference, with_reference
from mmdemo.encoders import Captions, prior_encoders, shared_image_encoder, shared_text_encoder
from mmdemo.models import MultimodalClassifier, Signal

from .features import CachedSplit
from .batches import loader, model_batch, require_captions
from .metrics import compute_metrics


@torch.no_grad()
def train_reference(model: MultimodalClassifier, split: CachedSplit) -> Reference:
    """The "mean" reference of mmdemo.contrib: the training split's mean features as the model reads them."""
    token_id = 0
    if model.needs.token_ids:
        token_id = getattr(getattr(shared_text_encoder(model.text_encoder_name), "tokenizer", None), "unk_token_id", 0) or 0
    return mean_reference(iter(loader(split, 256, model, shuffle=False)), token_id)


@torch.no_grad()
def reference_of(model: MultimodalClassifier, kind: str, train: CachedSplit | None = None) -> Reference:
    """The "blank" reference through the model's encoders (the app's), or the "mean" one of the `train` split."""
    if kind == "mean":
        if train is None:
            raise ValueError("the mean reference needs the training split")
        ref = train_reference(model, train)
        if ref.text is None:
            raise ValueError("this model encodes raw captions with its own encoder: it has no mean text reference")
        return ref
    if kind != "blank":
        raise ValueError(f"reference must be 'mean' or 'blank', not {kind!r}")
    prior = prior_encoders(model.prior_encoder) if model.prior_encoder else None
    return blank_reference(shared_text_encoder(model.text_encoder_name), shared_image_encoder(model.image_encoder_name),
                           model.text_layers, model.max_length, prior)


def derangements(n: int, shuffles: int, seed: int) -> list[torch.Tensor]:
    """`shuffles` derangements of range(n): no sample keeps its own partner."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(shuffles):
        order = torch.randperm(n, generator=gen)
        clash = order == torch.arange(n)
        order[clash] = (order[clash] + 1) % n
        out.append(order)
    return out


@torch.no_grad()
def _passes(model: MultimodalClassifier, split: CachedSplit, image_order: torch.Tensor | None = None,
            ref: Reference | None = None, batch_size: int = 128):
    """Run the model over the split (images taken in `image_order`): -> (fused logits [N, C], {signal: [N]}, and
    with `ref` the Shapley values of every input's four coalitions)."""
    require_captions(model, split)
    model.eval()
    n = len(split)
    image_order = torch.arange(n) if image_order is None else image_order
    logits, signals, shapley = [], {}, []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        text, _, _ = model_batch(model, split, idx)
        _, image, _ = model_batch(model, split, image_order[idx])
        if isinstance(text, Captions):
            raise ValueError("this model encodes raw captions with its own fine-tuned encoder; measure it in the app")
        if ref is None:
            out = model(text, image)
        else:
            out = model(*with_reference(text, image, ref))
            shapley.append(contribution(out.logits, model.labels, model.multi_label, ref.kind))
        b = len(idx)
        logits.append(out.logits[:b].float())
        for key, value in out.explain.items():
            if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2):
                continue
            names = model.head.signals.get(key)
            components = names.components if names is not None and value.dim() == 2 else ()
            for j in range(value.shape[1] if value.dim() == 2 else 1):
                name = key if value.dim() == 1 else f"{key}:{components[j] if j < len(components) else j}"
                signals.setdefault(name, []).append((value if value.dim() == 1 else value[:, j])[:b].float())
    values = None
    if shapley:
        values = {k: torch.cat([s.values[k] for s in shapley]) for k in shapley[0].values}
    return torch.cat(logits), {k: torch.cat(v) for k, v in signals.items()}, values


def predicted_class_shapley(shap: Contribution, predicted: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """[N] phi_text, phi_image, interaction and text share on each input's predicted class."""
    rows = torch.arange(len(predicted))
    return tuple(x[rows, predicted] for x in (shap.text, shap.image, shap.interaction, shap.text_shares))


@torch.no_grad()
def text_shares(model: MultimodalClassifier, split: CachedSplit, reference: Reference) -> torch.Tensor:
    """[N] the measured text share of each input's predicted class."""
    logits, _, values = _passes(model, split, ref=reference)
    return predicted_class_shapley(Contribution(model.labels, values, reference.kind), logits.argmax(-1))[3]


def _spread(x: torch.Tensor) -> dict[str, float]:
    return {"mean": x.mean().item(), "std": x.std().item(), "p05": x.quantile(0.05).item(), "p95": x.quantile(0.95).item()}


def _mean_std(xs: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def signal_validity(declared: dict[str, Signal], signals: dict[str, torch.Tensor], share: torch.Tensor,
                    shuffled: dict[str, torch.Tensor]) -> dict[str, dict]:
    """A network's own scalar signals over a split (`_passes`; `declared`: its head's `signals`), each against what
    it claims to mean: its spread, whether it is flat (`mmdemo.checkpoint.is_flat`, over its declared range), its
    Spearman rank correlation with the measured caption share `share` [N], and its mean on image-shuffled pairs
    `shuffled` (the record `mmdemo.checkpoint.Trust.signals` documents)."""
    out = {}
    for name, v in signals.items():
        sig = declared.get(name.split(":")[0])
        low, high = (sig.low, sig.high) if sig is not None else (None, None)
        s = _spread(v)
        constant = bool(v.max() == v.min())
        out[name] = {
            "n": len(v), **s, "low": low, "high": high, "flat": is_flat(s["p05"], s["p95"], low, high),
            "spearman_text_share": None if constant else spearman_corrcoef(v, share).item(),
            "shuffled_mean": shuffled[name].mean().item(),
            "shuffled_higher_fraction": (shuffled[name] > v).float().mean().item()}
    return out


@torch.no_grad()
def measure_signals(model: MultimodalClassifier, split: CachedSplit, reference: Reference, seed: int = 0) -> dict:
    """`signal_validity` of every scalar signal over one split: a Shapley pass (with `reference`) and one pass on
    image-shuffled pairs."""
    logits, signals, values = _passes(model, split, ref=reference)
    share = predicted_class_shapley(Contribution(model.labels, values, reference.kind), logits.argmax(-1))[3]
    _, shuffled, _ = _passes(model, split, image_order=derangements(len(split), 1, seed + 1)[0])
    return signal_validity(model.head.signals, signals, share, shuffled)


@torch.no_grad()
def modality_report(model: MultimodalClassifier, split: CachedSplit, reference: Reference, shuffles: int = 5,
                    seed: int = 0) -> dict:
    """Everything above for one model on one split (see the module docstring)."""
    metric = "precision@1" if model.multi_label else "accuracy"
    n = len(split)
    logits, signals, values = _passes(model, split, ref=reference)
    score = compute_metrics(logits, split.labels, model.labels, model.multi_label)[metric]
    phi_t, phi_i, inter, share = predicted_class_shapley(Contribution(model.labels, values, reference.kind),
                                                         logits.argmax(-1))
    report: dict = {
        "n": n, "metric": metric, "score": score, "reference": reference.kind,
        "shapley": {"text_share": _spread(share), "text": _spread(phi_t), "image": _spread(phi_i),
                    "interaction": _spread(inter)},
    }
    # Perceptual score. One pass per shuffle serves both modalities: row r pairs caption r with image order[r]. Read
    # with caption r's label, the images were shuffled (text and labels kept); read with image order[r]'s label,
    # the captions were (images and labels kept).
    drops = {"image": [], "text": []}
    for order in derangements(n, shuffles, seed):
        shuffled, _, _ = _passes(model, split, image_order=order)
        for modality, labels in (("image", split.labels), ("text", split.labels[order])):
            drops[modality].append(score - compute_metrics(shuffled, labels, model.labels, model.multi_label)[metric])
    report["perceptual"] = {m: _mean_std(d) for m, d in drops.items()}
    _, shuffled_signals, _ = _passes(model, split, image_order=derangements(n, 1, seed + 1)[0])
    report["signals"] = signal_validity(model.head.signals, signals, share, shuffled_signals)
    return report

