"""Benchmark: feature-extraction throughput, one epoch of head training from the cache vs re-encoding every
batch with the frozen encoders, and a fine-tuning step of the text encoder over the padded batch vs over
length-sorted chunks (what the trainer runs), on the same samples, side by side.

    python -m trainer bench --task mvsa-single --samples 256
"""

from __future__ import annotations

import time

import torch

from mmdemo.encoders import FeatureDims, create_image_encoder, create_text_encoder
from mmdemo.inputs import load_image
from mmdemo.models import FeatureNeeds, MultimodalClassifier

from .datasets import load_task_data
from .features import cached_text_layers, encode_split
from .run import torch_threads


def _train_epoch(model: MultimodalClassifier, batches, optimizer) -> None:
    model.train()
    for text, image, y in batches:
        loss = model.head.objective(model(text, image), y).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def bench(task: str, model_name: str, text_encoder: str, image_encoder: str, samples: int, max_length: int,
          data_dir: str | None = None, batch_size: int = 64) -> dict:
    torch_threads(0)  # encoding dominates here and uses every core
    data = load_task_data(task, data_dir)
    subset = data.train[:samples]
    te, ie = create_text_encoder(text_encoder), create_image_encoder(image_encoder)
    K = cached_text_layers(te)

    # 1. Feature extraction (decode + preprocess + forward), images and texts separately.
    start = time.perf_counter()
    split = encode_split(subset, te, ie, data.num_labels, data.multi_label, max_length, batch_size, desc="bench",
                         text_layers=K)
    extract_s = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(subset), batch_size):
            te.encode([s.text for s in subset[i:i + batch_size]], num_layers=K, max_length=max_length)
    text_s = time.perf_counter() - start
    image_s = extract_s - text_s

    dims = FeatureDims.of(te, ie)
    clf = MultimodalClassifier(model=model_name, task=task, labels=data.labels, multi_label=data.multi_label,
                               text_encoder=te.name, image_encoder=ie.name, dims=dims.to_dict())
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-3)
    idx = torch.arange(len(split))

    # 2a. One epoch from the cache.
    start = time.perf_counter()
    _train_epoch(clf, (split.batch(idx[i:i + batch_size], clf.needs) for i in range(0, len(split), batch_size)), opt)
    cached_s = time.perf_counter() - start

    # 2b. The same epoch re-encoding every batch (what training without a cache costs).
    def live_batches():
        for i in range(0, len(subset), batch_size):
            chunk = subset[i:i + batch_size]
            with torch.no_grad():
                text = te.encode([s.text for s in chunk], num_layers=K, max_length=max_length)
                image = ie.encode([load_image(s.image) for s in chunk])
            yield text, image, split.labels[i:i + len(chunk)]

    start = time.perf_counter()
    _train_epoch(clf, live_batches(), opt)
    live_s = time.perf_counter() - start

    # 3. Fine-tuning the last 3 text layers (HGLNet's chosen setting; train mode, forward + backward), one step per
    #    training batch: the whole encoder live on the padded batch, live on length-sorted chunks
    #    (TextEncoder.forward_by_length), and only the 3 tuned blocks on the cached output of the block below them
    #    (what the trainer does where the encoder can start from hidden states). The variants take turns on every
    #    batch, so a busy machine slows them alike.
    tuned = create_text_encoder(text_encoder).train()
    tuned.unfreeze_last(3)
    texts = [s.text for s in subset]
    first = tuned.num_layers - 3

    def live(forward):
        def step(i):
            batch = tuned.tokenize(texts[i:i + batch_size], max_length=max_length)
            forward(batch["input_ids"], batch["attention_mask"], num_layers=K).layers.square().mean().backward()
        return step

    def cached(forward):
        def step(i):
            text, _, _ = split.batch(idx[i:i + batch_size], FeatureNeeds(4))
            forward(text.layers[:, -4], text.attention_mask, first=first)[-1].square().mean().backward()
        return step

    variants = {"padded": live(tuned.forward), "by_length": live(tuned.forward_by_length)}
    if tuned.can_resume:
        variants["cached"] = cached(tuned.forward_from)
    step_s = dict.fromkeys(variants, 0.0)
    steps = range(0, len(texts), batch_size)
    for i in steps:
        for name, step in variants.items():
            start = time.perf_counter()
            step(i)
            step_s[name] += time.perf_counter() - start
    step_s = {name: total / len(steps) for name, total in step_s.items()}

    n = len(split)
    full = len(data.train)
    res = {"samples": n, "threads": torch.get_num_threads(), "extract_samples_per_s": n / extract_s,
           "image_samples_per_s": n / image_s, "text_samples_per_s": n / text_s,
           "epoch_cached_s": cached_s, "epoch_live_s": live_s,
           "finetune_step_padded_s": step_s["padded"], "finetune_step_by_length_s": step_s["by_length"],
           "finetune_step_cached_s": step_s.get("cached")}
    print(f"\n{task}: {n} train samples, {text_encoder} + {image_encoder}, head {model_name}, "
          f"{res['threads']} threads, batch {batch_size}")
    print("| measure | value |\n|---|---|")
    print(f"| feature extraction (images + texts) | {res['extract_samples_per_s']:.1f} samples/s |")
    print(f"| image encoder alone (decode + preprocess + forward) | {res['image_samples_per_s']:.1f} samples/s |")
    print(f"| text encoder alone (tokenize + forward) | {res['text_samples_per_s']:.1f} samples/s |")
    print(f"| one epoch over {n} samples, from cache | {cached_s:.2f} s |")
    print(f"| one epoch over {n} samples, re-encoding every batch | {live_s:.2f} s |")
    print(f"| speed-up of the cache | {live_s / cached_s:.0f}x |")
    print(f"| full train split ({full}) per epoch, extrapolated: cache / live | "
          f"{cached_s * full / n:.1f} s / {live_s * full / n:.0f} s |")
    print(f"| fine-tuning step, last 3 text layers, batch {batch_size}, whole encoder live: padded batch / "
          f"length-sorted chunks | {step_s['padded']:.2f} s / {step_s['by_length']:.2f} s |")
    if "cached" in step_s:
        best_live = min(step_s["padded"], step_s["by_length"])
        print(f"| the same step, 3 blocks on the cached output of layer {first} | {step_s['cached']:.2f} s "
              f"({best_live / step_s['cached']:.1f}x faster than the best live step) |")
    return res
