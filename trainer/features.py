"""Feature cache: encode each (encoders, dataset, split) once, train many heads many epochs.

Layout: `<cache>/<key>/<split>.safetensors` + `<split>.json`, where key hashes the encoder names, their
preprocessing (repr of the image transform, tokenizer max length, number of layers kept), the dataset's
content version and this module's FORMAT version. Text token states are stored ragged (only real tokens,
[T_total, K, D] fp16 + offsets), image features once per distinct image file (posts share images).
Samples whose image cannot be decoded are dropped and counted in the split's json.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mmdemo.encoders import ImageEncoder, ImageFeatures, TextEncoder, TextFeatures
from mmdemo.inputs import InputError, load_image

from .datasets import DatasetSplits, Sample

FORMAT = 2
CACHED_TEXT_LAYERS = 4  # HGLNet reads the last 4 layers, INFIG 3; the others only the last


def default_cache_dir() -> Path:
    return Path(__file__).resolve().parents[1] / ".cache" / "features"


def cache_key(text_encoder: TextEncoder, image_encoder: ImageEncoder, data: DatasetSplits, max_length: int) -> str:
    spec = {
        "format": FORMAT, "text": text_encoder.name, "image": image_encoder.name, "max_length": max_length,
        "layers": min(CACHED_TEXT_LAYERS, text_encoder.num_layers), "transform": repr(image_encoder.transform),
        "data": data.name, "data_version": data.version,
    }
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{data.name}-{text_encoder.name}-{image_encoder.name}-{digest}"


def multi_hot(labels: list, num_labels: int, multi_label: bool) -> torch.Tensor:
    """[N] class ids, or [N, C] float 0/1 for multi-label tasks."""
    if not multi_label:
        return torch.tensor([int(y) for y in labels], dtype=torch.long)
    out = torch.zeros(len(labels), num_labels)
    for i, ys in enumerate(labels):
        out[i, list(ys)] = 1.0
    return out


@dataclass
class CachedSplit:
    """All features of one split, in memory. `batch(idx)` builds padded TextFeatures / ImageFeatures."""

    ids: list[str]
    labels: torch.Tensor  # [N] or [N, C]
    text_tokens: torch.Tensor  # [T_total, K, D] fp16, real tokens only
    text_offsets: torch.Tensor  # [N + 1]
    text_pooled: torch.Tensor  # [N, D]
    image_index: torch.Tensor  # [N] row in the image tables
    image_patches: torch.Tensor  # [M, P, C] fp16
    image_pooled: torch.Tensor  # [M, Cp]
    image_logits: torch.Tensor | None  # [M, 1000] or None
    skipped: dict[str, int]
    texts: list[str] | None = None  # raw captions, attached (not cached) when the text encoder is fine-tuned

    def __len__(self) -> int:
        return len(self.ids)

    def attach_texts(self, samples: list[Sample] | None) -> None:
        """Give every cached sample its raw caption (fine-tuning runs the text encoder live); None detaches."""
        if samples is None:
            self.texts = None
            return
        caption = {s.id: s.text for s in samples}
        self.texts = [caption[i] for i in self.ids]

    def batch(self, idx: torch.Tensor, num_layers: int | None = None, patches: bool = True,
              dtype: torch.dtype = torch.float32) -> tuple[TextFeatures | list[str], ImageFeatures, torch.Tensor]:
        """Padded features of the samples idx, with the last `num_layers` text layers (all cached ones by
        default; 0 gives an empty layer axis for heads that read only pooled vectors) and the image patches
        unless `patches` is False (then an empty [B, 0, C] tensor); raw captions instead of text features
        when `texts` is set."""
        im = self.image_index[idx]
        logits = None if self.image_logits is None else self.image_logits[im].to(dtype)
        patch = self.image_patches[im] if patches else self.image_patches.new_zeros(len(idx), 0, self.image_patches.shape[-1])
        image = ImageFeatures(patch.to(dtype), self.image_pooled[im].to(dtype), logits)
        if self.texts is not None:
            return [self.texts[i] for i in idx.tolist()], image, self.labels[idx]
        # One gather for the whole batch: token t of sample b sits at row starts[b] + t of the ragged table.
        starts, lengths = self.text_offsets[idx], self.text_offsets[idx + 1] - self.text_offsets[idx]
        positions = torch.arange(int(lengths.max()))
        mask = (positions[None, :] < lengths[:, None]).long()  # [B, L]
        rows = (starts[:, None] + positions[None, :]).clamp(max=len(self.text_tokens) - 1)
        k = self.text_tokens.shape[1] if num_layers is None else num_layers
        layers = self.text_tokens[rows, self.text_tokens.shape[1] - k:].to(dtype) * mask[:, :, None, None]  # [B, L, k, D], padding zeroed
        layers = layers.permute(0, 2, 1, 3).contiguous()  # [B, k, L, D]
        return TextFeatures(layers, mask, self.text_pooled[idx].to(dtype)), image, self.labels[idx]


@torch.no_grad()
def _encode_texts(encoder: TextEncoder, texts: list[str], max_length: int, batch_size: int, desc: str):
    K = min(CACHED_TEXT_LAYERS, encoder.num_layers)
    tokens, offsets, pooled = [], [0], []
    for i in tqdm(range(0, len(texts), batch_size), desc=f"{desc}: text", leave=False):
        feats = encoder.encode(texts[i:i + batch_size], num_layers=K, max_length=max_length)
        for b in range(feats.layers.shape[0]):
            n = int(feats.attention_mask[b].sum())
            tokens.append(feats.layers[b, :, :n].transpose(0, 1).half().cpu())  # [n, K, D]
            offsets.append(offsets[-1] + n)
        pooled.append(feats.pooled.float().cpu())
    return torch.cat(tokens), torch.tensor(offsets), torch.cat(pooled)


@torch.no_grad()
def _encode_images(encoder: ImageEncoder, paths: list[Path], batch_size: int, desc: str):
    """-> (patches, pooled, logits, ok) for the readable images; `ok[i]` False for unreadable ones."""
    ok = [True] * len(paths)
    patches, pooled, logits = [], [], []
    for i in tqdm(range(0, len(paths), batch_size), desc=f"{desc}: images", leave=False):
        ims = []
        for j, p in enumerate(paths[i:i + batch_size]):
            try:
                ims.append(load_image(p))
            except InputError:
                ok[i + j] = False
        if not ims:
            continue
        feats = encoder.encode(ims)
        patches.append(feats.patches.half().cpu())
        pooled.append(feats.pooled.float().cpu())
        if feats.logits is not None:
            logits.append(feats.logits.half().cpu())
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    return cat(patches), cat(pooled), cat(logits), ok


def encode_split(samples: list[Sample], text_encoder: TextEncoder, image_encoder: ImageEncoder, num_labels: int,
                 multi_label: bool, max_length: int, batch_size: int = 64, desc: str = "") -> CachedSplit:
    skipped: dict[str, int] = {}
    samples = [s for s in samples if s.image is not None]
    # Each distinct image file is encoded once (MediaEval posts share images).
    unique = sorted({str(s.image) for s in samples})
    patches, pooled, logits, ok = _encode_images(image_encoder, [Path(p) for p in unique], batch_size, desc)
    readable = [p for p, good in zip(unique, ok) if good]
    row = {p: i for i, p in enumerate(readable)}
    kept = [s for s in samples if str(s.image) in row]
    if len(kept) < len(samples):
        skipped["unreadable_image"] = len(samples) - len(kept)
        skipped["unreadable_image_files"] = len(unique) - len(readable)
    if not kept:
        raise RuntimeError(f"{desc}: no sample has a readable image")
    tokens, offsets, text_pooled = _encode_texts(text_encoder, [s.text for s in kept], max_length, batch_size, desc)
    return CachedSplit(
        ids=[s.id for s in kept], labels=multi_hot([s.label for s in kept], num_labels, multi_label),
        text_tokens=tokens, text_offsets=offsets, text_pooled=text_pooled,
        image_index=torch.tensor([row[str(s.image)] for s in kept]), image_patches=patches, image_pooled=pooled,
        image_logits=logits, skipped=skipped,
    )


def save_split(split: CachedSplit, path: Path) -> None:
    tensors = {k: getattr(split, k).contiguous() for k in ("labels", "text_tokens", "text_offsets", "text_pooled",
                                                           "image_index", "image_patches", "image_pooled")}
    if split.image_logits is not None:
        tensors["image_logits"] = split.image_logits.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    path.with_suffix(".json").write_text(json.dumps({"ids": split.ids, "skipped": split.skipped}))
    tmp.rename(path)  # the cache entry exists only once it is complete


def load_split(path: Path) -> CachedSplit:
    t = load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    return CachedSplit(ids=meta["ids"], skipped=meta["skipped"], image_logits=t.pop("image_logits", None), **t)


@contextmanager
def full_precision():
    """No TF32 in CUDA matmuls and convolutions while encoding, so a cache built on a GPU matches one built
    on a CPU to float32 rounding (the key does not say where a cache was made)."""
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def cached_features(data: DatasetSplits, text_encoder: TextEncoder, image_encoder: ImageEncoder,
                    max_length: int = 64, cache_dir: Path | None = None, splits=("train", "dev", "test"),
                    batch_size: int = 64) -> dict[str, CachedSplit]:
    """Load the cached features of each split, encoding (once, on CUDA when present) what is missing."""
    root = (cache_dir or default_cache_dir()) / cache_key(text_encoder, image_encoder, data, max_length)
    out = {}
    for name in splits:
        path = root / f"{name}.safetensors"
        if not path.exists():
            device = "cuda" if torch.cuda.is_available() else "cpu"
            with full_precision():
                split = encode_split(data.splits()[name], text_encoder.to(device), image_encoder.to(device),
                                     data.num_labels, data.multi_label, max_length, batch_size,
                                     desc=f"{data.name}/{name}")
            save_split(split, path)
        out[name] = load_split(path)
    return out
