"""Feature cache: encode each (encoders, dataset, split) once, train many heads many epochs.

Layout: `<cache>/<key>/<split>.safetensors` + `<split>.json`, where key hashes the encoder names, their
preprocessing (repr of the image transform, tokenizer max length, number of layers kept), the dataset's
content version and this module's FORMAT version. Text token states are stored ragged (only real tokens,
[T_total, K, D] fp16 + offsets) with their token ids, the static word embeddings once per distinct token, image
features once per distinct image file (posts share images). Samples whose image cannot be decoded are dropped and
counted in the split's json. A prior encoder's (CLIP's) global vectors, when a head asks for one, sit beside them
in `<split>.prior-<name>.safetensors`.

What is stored follows what the registered heads declare (`FusionHead.needs`): K is the most text layers any
registered network or variant reads (or the run asks for), so one cache serves every head; K is in the key.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import torch
from filelock import FileLock
from safetensors.torch import load_file
from tqdm.auto import tqdm

from mmdemo.atomic import save_tensors
from mmdemo.encoders import Captions, ImageEncoder, ImageFeatures, TextEncoder, TextFeatures, prior_encoders
from mmdemo.inputs import InputError, load_image
from mmdemo.models import FeatureNeeds, get_model, list_models

from .datasets import DatasetSplits, Sample

FORMAT = 3  # 3: token ids and static word embeddings, image file list, text layers from the registry


def declared_text_layers() -> int:
    """The most text layers any registered network or variant reads with its registered config."""
    return max(entry.head.needs(cfg).text_layers for name in list_models()
               for entry in [get_model(name)] for cfg in entry.configs().values())


def cached_text_layers(encoder: TextEncoder, wanted: int = 0) -> int:
    """K, the text layers a cache for this encoder holds: what the registry declares (or `wanted`, if more)."""
    return min(max(declared_text_layers(), wanted), encoder.num_layers)


def default_cache_dir() -> Path:
    return Path(__file__).resolve().parents[1] / ".cache" / "features"


def cache_key(text_encoder: TextEncoder, image_encoder: ImageEncoder, data: DatasetSplits, max_length: int,
              text_layers: int) -> str:
    spec = {
        "format": FORMAT, "text": text_encoder.name, "image": image_encoder.name, "max_length": max_length,
        "layers": text_layers, "transform": repr(image_encoder.transform),
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
    """All features of one split, in memory. `batch(idx, needs)` builds padded TextFeatures / ImageFeatures."""

    ids: list[str]
    labels: torch.Tensor  # [N] or [N, C]
    text_tokens: torch.Tensor  # [T_total, K, D] fp16, real tokens only
    text_offsets: torch.Tensor  # [N + 1]
    text_pooled: torch.Tensor  # [N, D]
    text_ids: torch.Tensor  # [T_total] token ids, ragged like text_tokens
    vocab_ids: torch.Tensor  # [V] the distinct token ids of the split, sorted
    vocab_embeddings: torch.Tensor  # [V, D] fp16 their static word embeddings
    image_index: torch.Tensor  # [N] row in the image tables
    image_patches: torch.Tensor  # [M, P, C] fp16
    image_pooled: torch.Tensor  # [M, Cp]
    image_logits: torch.Tensor | None  # [M, 1000] or None
    skipped: dict[str, int]
    image_files: list[str] = field(default_factory=list)  # [M] the image file of each image row
    texts: list[str] | None = None  # raw captions, attached (not cached) when the text encoder is fine-tuned
    prior_text: torch.Tensor | None = None  # [N, P] prior encoder's text vectors, attached when a head asks
    prior_image: torch.Tensor | None = None  # [M, P]
    groups: list[str] | None = None  # each sample's group (a MediaEval event), attached (not cached) when needed

    def attach_groups(self, samples: list[Sample]) -> None:
        """Give every cached sample its group (`Sample.group`: the event of a MediaEval post)."""
        group = {s.id: s.group for s in samples}
        self.groups = [group[i] for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def footprint(self) -> dict[str, int]:
        """Bytes of each stored tensor, largest first (what the cache file holds, less its small json)."""
        sizes = {f.name: t.numel() * t.element_size() for f in fields(self)
                 for t in [getattr(self, f.name)] if isinstance(t, torch.Tensor)}
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))

    def describe(self, name: str) -> str:
        """One line: the split's cache size and what takes it (printed when a split is encoded)."""
        size = self.footprint()
        parts = ", ".join(f"{k} {tuple(getattr(self, k).shape)} {str(getattr(self, k).dtype).removeprefix('torch.')} "
                          f"{v / 1e6:.0f} MB" for k, v in size.items() if v >= 1e6)
        return (f"feature cache {name}: {sum(size.values()) / 1e6:.0f} MB for {len(self)} samples and "
                f"{self.image_patches.shape[0]} distinct images ({parts})")

    @property
    def text_layers(self) -> int:
        return self.text_tokens.shape[1]

    def attach_texts(self, samples: list[Sample] | None) -> None:
        """Give every cached sample its raw caption (fine-tuning runs the text encoder live); None detaches."""
        if samples is None:
            self.texts = None
            return
        caption = {s.id: s.text for s in samples}
        self.texts = [caption[i] for i in self.ids]

    def subset(self, idx: torch.Tensor) -> "CachedSplit":
        """The samples idx (in that order) as a split of their own; the image and vocabulary tables are shared
        (rows nobody indexes cost nothing but memory)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        starts, lengths = self.text_offsets[idx], self.text_offsets[idx + 1] - self.text_offsets[idx]
        offsets = torch.cat([torch.zeros(1, dtype=self.text_offsets.dtype), lengths.cumsum(0)])
        # token row of each kept token: its sample's start in this table plus its position within the sample
        rows = torch.arange(int(offsets[-1])) + torch.repeat_interleave(starts - offsets[:-1], lengths)
        ids = idx.tolist()
        return replace(self, ids=[self.ids[i] for i in ids], labels=self.labels[idx], text_tokens=self.text_tokens[rows],
                       text_offsets=offsets, text_pooled=self.text_pooled[idx], text_ids=self.text_ids[rows],
                       image_index=self.image_index[idx], skipped={},
                       texts=None if self.texts is None else [self.texts[i] for i in ids],
                       prior_text=None if self.prior_text is None else self.prior_text[idx],
                       groups=None if self.groups is None else [self.groups[i] for i in ids])

    def token_ids(self, i: int) -> torch.Tensor:
        """The token ids of sample i (real tokens only)."""
        return self.text_ids[self.text_offsets[i]:self.text_offsets[i + 1]].long()

    def batch(self, idx: torch.Tensor, needs: FeatureNeeds | None = None, dtype: torch.dtype = torch.float32
              ) -> tuple[TextFeatures | Captions, ImageFeatures, torch.Tensor]:
        """Padded features of the samples idx, as a head with these `needs` reads them (default: everything
        cached): its last `needs.text_layers` text layers (0: an empty layer axis), the image patches unless
        `needs.image_patches` is False (then an empty [B, 0, C] tensor), token ids and word embeddings only when
        declared, the prior vectors when attached; raw captions instead of text features when `texts` is set."""
        with_prior = self.prior_text is not None if needs is None else bool(needs.prior)
        needs = needs or FeatureNeeds(self.text_layers, image_patches=True, token_ids=True)
        if needs.text_layers > self.text_layers:
            raise ValueError(f"a head reads the last {needs.text_layers} text layers; the cache holds {self.text_layers}")
        if with_prior and self.prior_text is None:
            raise ValueError(f"a head reads prior-encoder vectors ({needs.prior}) but none are attached to this split")
        im = self.image_index[idx]
        logits = None if self.image_logits is None else self.image_logits[im].to(dtype)
        patch = self.image_patches[im] if needs.image_patches else self.image_patches.new_zeros(len(idx), 0, self.image_patches.shape[-1])
        prior_text = prior_image = None
        if with_prior:
            prior_text, prior_image = self.prior_text[idx].to(dtype), self.prior_image[im].to(dtype)
        image = ImageFeatures(patch.to(dtype), self.image_pooled[im].to(dtype), logits, prior_image)
        if self.texts is not None:
            return Captions([self.texts[i] for i in idx.tolist()], prior_text), image, self.labels[idx]
        # One gather for the whole batch: token t of sample b sits at row starts[b] + t of the ragged table.
        starts, lengths = self.text_offsets[idx], self.text_offsets[idx + 1] - self.text_offsets[idx]
        positions = torch.arange(int(lengths.max()))
        mask = (positions[None, :] < lengths[:, None]).long()  # [B, L]
        rows = (starts[:, None] + positions[None, :]).clamp(max=len(self.text_tokens) - 1)
        k = needs.text_layers
        layers = self.text_tokens[rows, self.text_layers - k:].to(dtype) * mask[:, :, None, None]  # [B, L, k, D], padding zeroed
        layers = layers.permute(0, 2, 1, 3).contiguous()  # [B, k, L, D]
        input_ids = words = None
        if needs.token_ids:
            input_ids = self.text_ids[rows].long() * mask
            words = self.vocab_embeddings[torch.searchsorted(self.vocab_ids, input_ids)].to(dtype) * mask[:, :, None]
        text = TextFeatures(layers, mask, self.text_pooled[idx].to(dtype), input_ids, words, prior_text)
        return text, image, self.labels[idx]


def concat_splits(splits: list[CachedSplit]) -> CachedSplit:
    """Several cached splits of one task and encoder pair as one (e.g. to cut it again by event): texts and
    labels in order, the image tables stacked (each split's image rows shifted), the vocabularies merged."""
    first = splits[0]
    image_shift = torch.tensor([0] + [len(s.image_pooled) for s in splits[:-1]]).cumsum(0)
    text_shift = torch.tensor([0] + [len(s.text_tokens) for s in splits[:-1]]).cumsum(0)
    vocab_ids, embeddings = torch.cat([s.vocab_ids for s in splits]), torch.cat([s.vocab_embeddings for s in splits])
    unique, inverse = torch.unique(vocab_ids, return_inverse=True)
    keep = torch.zeros(len(unique), dtype=torch.long).scatter_(0, inverse, torch.arange(len(vocab_ids)))
    both = lambda name: None if getattr(first, name) is None else torch.cat([getattr(s, name) for s in splits])  # noqa: E731
    return CachedSplit(
        ids=[i for s in splits for i in s.ids], labels=torch.cat([s.labels for s in splits]),
        text_tokens=torch.cat([s.text_tokens for s in splits]),
        text_offsets=torch.cat([first.text_offsets[:1]] + [s.text_offsets[1:] + k for s, k in zip(splits, text_shift)]),
        text_pooled=torch.cat([s.text_pooled for s in splits]), text_ids=torch.cat([s.text_ids for s in splits]),
        vocab_ids=unique, vocab_embeddings=embeddings[keep],
        image_index=torch.cat([s.image_index + k for s, k in zip(splits, image_shift)]),
        image_patches=torch.cat([s.image_patches for s in splits]), image_pooled=torch.cat([s.image_pooled for s in splits]),
        image_logits=both("image_logits"), skipped={}, image_files=[f for s in splits for f in s.image_files],
        texts=None if first.texts is None else [t for s in splits for t in s.texts],
        prior_text=both("prior_text"), prior_image=both("prior_image"),
        groups=None if any(s.groups is None for s in splits) else [g for s in splits for g in s.groups])


@torch.no_grad()
def _encode_texts(encoder: TextEncoder, texts: list[str], max_length: int, batch_size: int, desc: str,
                  num_layers: int):
    tokens, ids, offsets, pooled, vocab = [], [], [0], [], {}
    for i in tqdm(range(0, len(texts), batch_size), desc=f"{desc}: text", leave=False):
        feats = encoder.encode(texts[i:i + batch_size], num_layers=num_layers, max_length=max_length)
        for b in range(feats.layers.shape[0]):
            n = int(feats.attention_mask[b].sum())
            tokens.append(feats.layers[b, :, :n].transpose(0, 1).half().cpu())  # [n, K, D]
            ids.append(feats.input_ids[b, :n].int().cpu())
            for t, e in zip(ids[-1].tolist(), feats.word_embeddings[b, :n]):
                vocab.setdefault(t, e)
            offsets.append(offsets[-1] + n)
        pooled.append(feats.pooled.float().cpu())
    vocab_ids = torch.tensor(sorted(vocab))
    vocab_embeddings = torch.stack([vocab[t] for t in vocab_ids.tolist()]).half().cpu()
    return torch.cat(tokens), torch.cat(ids), torch.tensor(offsets), torch.cat(pooled), vocab_ids, vocab_embeddings


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
                 multi_label: bool, max_length: int, batch_size: int = 64, desc: str = "",
                 text_layers: int = 1) -> CachedSplit:
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
    tokens, ids, offsets, text_pooled, vocab_ids, vocab_embeddings = _encode_texts(
        text_encoder, [s.text for s in kept], max_length, batch_size, desc, text_layers)
    return CachedSplit(
        ids=[s.id for s in kept], labels=multi_hot([s.label for s in kept], num_labels, multi_label),
        text_tokens=tokens, text_offsets=offsets, text_pooled=text_pooled, text_ids=ids, vocab_ids=vocab_ids,
        vocab_embeddings=vocab_embeddings, image_index=torch.tensor([row[str(s.image)] for s in kept]),
        image_patches=patches, image_pooled=pooled, image_logits=logits, skipped=skipped, image_files=readable,
    )


TENSORS = ("labels", "text_tokens", "text_offsets", "text_pooled", "text_ids", "vocab_ids", "vocab_embeddings",
           "image_index", "image_patches", "image_pooled")


def save_split(split: CachedSplit, path: Path) -> None:
    tensors = {k: getattr(split, k) for k in TENSORS}
    if split.image_logits is not None:
        tensors["image_logits"] = split.image_logits
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps({"ids": split.ids, "skipped": split.skipped,
                                                     "image_files": split.image_files}))
    save_tensors(tensors, path)  # the cache entry exists only once it is complete


def load_split(path: Path) -> CachedSplit:
    t = load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text())
    return CachedSplit(ids=meta["ids"], skipped=meta["skipped"], image_files=meta["image_files"],
                       image_logits=t.pop("image_logits", None), **t)


@torch.no_grad()
def encode_prior(split: CachedSplit, captions: dict[str, str], prior: str, max_length: int,
                 batch_size: int = 64, desc: str = "") -> dict[str, torch.Tensor]:
    """The prior encoder's global vectors of a cached split: {"text": [N, P] per sample, "image": [M, P] per
    image row}."""
    text_encoder, image_encoder = prior_encoders(prior)
    texts = [captions[i] for i in split.ids]
    text = [text_encoder.encode(texts[i:i + batch_size], max_length=max_length).pooled.float().cpu()
            for i in tqdm(range(0, len(texts), batch_size), desc=f"{desc}: {prior} text", leave=False)]
    files = split.image_files
    image = [image_encoder.encode([load_image(f) for f in files[i:i + batch_size]]).pooled.float().cpu()
             for i in tqdm(range(0, len(files), batch_size), desc=f"{desc}: {prior} images", leave=False)]
    return {"text": torch.cat(text), "image": torch.cat(image)}


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


def _build_once(path: Path, build: Callable[[], None]) -> None:
    """Run `build` (which writes `path` atomically) unless `path` exists. One process builds it; another that needs
    it at the same time (parallel sweep runs) waits on the lock and finds it built."""
    with FileLock(str(path.with_suffix(".lock"))):
        if not path.exists():
            with full_precision():
                build()


def cached_features(data: DatasetSplits, text_encoder: TextEncoder, image_encoder: ImageEncoder,
                    max_length: int = 64, cache_dir: Path | None = None, splits=("train", "dev", "test"),
                    batch_size: int = 64, text_layers: int = 0, prior: str = "") -> dict[str, CachedSplit]:
    """Load the cached features of each split, encoding (once, on CUDA when present) what is missing. The cache
    holds `cached_text_layers(text_encoder, text_layers)` layers; `prior` attaches that prior encoder's vectors."""
    K = cached_text_layers(text_encoder, text_layers)
    root = (cache_dir or default_cache_dir()) / cache_key(text_encoder, image_encoder, data, max_length, K)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {}
    root.mkdir(parents=True, exist_ok=True)
    for name in splits:
        path = root / f"{name}.safetensors"
        built = not path.exists()
        _build_once(path, lambda: save_split(encode_split(
            data.splits()[name], text_encoder.to(device), image_encoder.to(device), data.num_labels, data.multi_label,
            max_length, batch_size, desc=f"{data.name}/{name}", text_layers=K), path))
        out[name] = load_split(path)
        if built:
            print(out[name].describe(f"{data.name}/{name}"), flush=True)
        if prior:
            prior_path = root / f"{name}.prior-{prior}.safetensors"
            _build_once(prior_path, lambda: save_tensors(encode_prior(
                out[name], {s.id: s.text for s in data.splits()[name]}, prior, max_length, batch_size,
                desc=f"{data.name}/{name}"), prior_path))
            vectors = load_file(str(prior_path))
            out[name].prior_text, out[name].prior_image = vectors["text"], vectors["image"]
    return out
