"""Training loop on accelerate: CUDA with bf16 when present, CPU otherwise, several GPUs via
`accelerate launch -m trainer train ...`. Heads train on cached features; early stopping on dev."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from mmdemo.encoders import FeatureDims, ImageFeatures
from mmdemo.models import FitData, MultimodalClassifier
from mmdemo.predict import HEADS

from .adversarial import EventDiscriminator
from .features import CachedSplit
from .metrics import compute_metrics


@dataclass
class RunSpec:
    """Everything that defines one training run (seed included)."""

    task: str
    model: str
    labels: list[str]
    multi_label: bool
    text_encoder: str
    image_encoder: str
    dims: FeatureDims
    seed: int = 0
    variant: str = ""
    overrides: dict = field(default_factory=dict)
    max_length: int = 64
    data_version: str = ""
    select_metric: str = "accuracy"
    finetune_text_layers: int = 0  # > 0: the last n text layers train too (from cached states where possible)
    encoder_lr: float = 2e-5
    lora_rank: int = 0  # > 0: the tuned text layers train through LoRA adapters of this rank, not whole
    ordinal: bool | None = None  # None: the task registry's answer
    prior_encoder: str = ""  # the prior encoder the model is built with ("" = none; dims.prior_dim says its width)
    # How training samples are drawn (default: every post once per epoch, shuffled). image_cap k > 0: an image
    # shared by n posts counts min(n, k) times per epoch however large n is; balance_groups: every group (a
    # MediaEval event) weighs the same in total, so one large event does not dominate. Both need `groups` / images
    # on the training split and draw with replacement (`sample_weights`). balance_classes: every class weighs the
    # same in total (after the two above), so the head learns no class prior: a new event's share of fakes is
    # unknown (MediaEval's range from 8% to 100%), and the training events' share would be a guess about it.
    image_cap: int = 0
    balance_groups: bool = False
    balance_classes: bool = False
    # > 0: event-adversarial training with this lambda (trainer/adversarial.py): a discriminator of the training
    # split's groups (events) on the head's fused representation, through a gradient-reversal layer.
    event_adversarial: float = 0.0
    # > 0: modality dropout (Neverova et al., ModDrop, 2015): each training post's image is replaced, with this
    # probability, by the blank image the app's contributions stand in for a missing one, so the network learns to
    # answer from the caption when the image says nothing it knows.
    image_dropout: float = 0.0

    def unseen_event_options(self) -> dict:
        """The fields above made for events never seen in training (sampling, adversary, image dropout)."""
        return {k: getattr(self, k) for k in UNSEEN_EVENT_OPTIONS}


# Those fields with their defaults: a run records them (metrics' "training_for_unseen_events"), a LOEO report its
# options, and `trainer bundle --calibration` checks one against the other.
UNSEEN_EVENT_OPTIONS = {f.name: f.default for f in fields(RunSpec)
                        if f.name in ("image_cap", "balance_groups", "balance_classes", "event_adversarial",
                                      "image_dropout")}


def require_captions(model: MultimodalClassifier, split: CachedSplit) -> None:
    """A model that fine-tunes a text encoder which cannot start from hidden states must read the raw captions."""
    if model.finetune_text_layers and not model.tunes_frozen_features and split.texts is None:
        raise ValueError(f"this model fine-tuned {model.text_encoder_name}, which cannot start from cached hidden "
                         "states, so it reads raw captions: load the features with "
                         "trainer.run.load_features(..., finetune_text_layers=n)")


def model_batch(model: MultimodalClassifier, split: CachedSplit, idx: torch.Tensor):
    """The samples idx as the model reads them (its declared needs; captions when they are attached)."""
    return split.batch(idx, model.needs)


def sample_weights(split: CachedSplit, image_cap: int = 0, balance_groups: bool = False,
                   balance_classes: bool = False) -> torch.Tensor | None:
    """Per-sample draw weights (None: draw every sample once). image_cap k: the posts of an image shared by n posts
    weigh min(n, k) / n each, so the image counts min(n, k) times; balance_groups: rescaled so that every group
    carries the same total weight; balance_classes: then rescaled so that every class does."""
    if not image_cap and not balance_groups and not balance_classes:
        return None
    weights = torch.ones(len(split), dtype=torch.float64)
    if image_cap:
        counts = torch.bincount(split.image_index).double()[split.image_index]  # posts sharing each post's image
        weights = counts.clamp(max=image_cap) / counts
    if balance_groups:
        if split.groups is None:
            raise ValueError("balance_groups needs the split's groups (CachedSplit.attach_groups)")
        totals: dict[str, float] = {}
        for g, w in zip(split.groups, weights.tolist()):
            totals[g] = totals.get(g, 0.0) + w
        weights = weights / torch.tensor([totals[g] for g in split.groups], dtype=torch.float64)
    if balance_classes:
        if split.labels.dim() != 1:
            raise ValueError("balance_classes needs single-label data (one class per sample)")
        per_class = torch.zeros(int(split.labels.max()) + 1, dtype=torch.float64).index_add_(0, split.labels, weights)
        weights = weights / per_class[split.labels]
    return weights / weights.sum()


def _loader(split: CachedSplit, batch_size: int, model: MultimodalClassifier, shuffle: bool, seed: int = 0,
            weights: torch.Tensor | None = None, with_index: bool = False) -> DataLoader:
    """Batches (text, image, labels), and the batch's sample indices last when `with_index`."""
    require_captions(model, split)
    gen = torch.Generator().manual_seed(seed)
    sampler = None if weights is None else WeightedRandomSampler(weights, len(split), replacement=True, generator=gen)

    def collate(idx: list[int]):
        idx = torch.tensor(idx)
        return (*model_batch(model, split, idx), idx) if with_index else model_batch(model, split, idx)

    return DataLoader(range(len(split)), batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                      generator=gen, collate_fn=collate)


def fit_data(model: MultimodalClassifier, split: CachedSplit) -> FitData:
    """The training split as `FusionHead.fit` reads it."""
    def batches(batch_size: int):
        return iter(_loader(split, batch_size, model, shuffle=False))

    return FitData([split.token_ids(i) for i in range(len(split))], split.labels, batches)


@torch.no_grad()
def predict_split(model: MultimodalClassifier, split: CachedSplit, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], float]:
    """-> ({"fused"|"text"|"image": logits [N, C]}, mean loss of the head's objective)"""
    model.eval()
    outs: dict[str, list] = {h: [] for h in HEADS}
    loss_sum = 0.0
    for text, image, y in _loader(split, batch_size, model, shuffle=False):
        out = model(text.to(device), image.to(device))
        y = y.to(device)
        loss_sum += model.head.objective(out, y).total.item() * len(y)
        for h, lg in zip(HEADS, (out.logits, out.text_logits, out.image_logits)):
            outs[h].append(lg.float().cpu())
    return {h: torch.cat(v) for h, v in outs.items()}, loss_sum / max(len(split), 1)


def evaluate(model: MultimodalClassifier, split: CachedSplit, device="cpu") -> dict:
    """Metrics for the fused, text-only and image-only heads on one split."""
    logits, loss = predict_split(model, split, device=device)
    res = {h: compute_metrics(lg, split.labels, model.labels, model.multi_label) for h, lg in logits.items()}
    res["loss"] = loss
    return res


def _drop_other_groups(model: MultimodalClassifier, update: frozenset[str]) -> None:
    """Only the named parameter groups take this step: every other gradient is set to None, so the optimizer
    leaves those weights alone (no update, no weight decay, no moment change)."""
    groups = {**model.head.parameter_groups(),
              "text_encoder": list(model.text_encoder.parameters()) if model.text_encoder is not None else []}
    unknown = set(update) - set(groups)
    if unknown:
        raise ValueError(f"{model.model_name}'s objective updates unknown parameter groups {sorted(unknown)}; "
                         f"its groups: {sorted(groups)}")
    keep = {id(p) for name in update for p in groups[name]}
    for p in model.parameters():
        if id(p) not in keep:
            p.grad = None


# ---- resumable training state -------------------------------------------------------------------------------
# After every epoch the whole state of the run (trainable weights, best weights so far, optimizer moments, schedule,
# RNG states, history) is written atomically to one safetensors file, the non-tensor part as JSON in its metadata;
# `--resume` continues from the last finished epoch and gives the result of an uninterrupted run. Tensors and JSON
# only: nothing is ever unpickled.


def trained_state(model: MultimodalClassifier) -> dict[str, torch.Tensor]:
    """A copy of the weights training can change: everything but the frozen encoder's (which never move)."""
    frozen = model.frozen_encoder_keys()
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in frozen}


def _flat_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        meta["state"][str(idx)] = sorted(entry)
        for key, value in entry.items():
            tensors[f"optimizer.{idx}.{key}"] = torch.as_tensor(value)
    return tensors, meta


def _unflat_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {int(idx): {key: tensors[f"optimizer.{idx}.{key}"] for key in keys} for idx, keys in meta["state"].items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def save_train_state(path: Path, model: MultimodalClassifier, best_state: dict, optimizer, scheduler,
                     generator: torch.Generator, progress: dict, extra: nn.Module | None = None) -> None:
    """`extra`: a training-only module outside the model (the event discriminator), saved with it."""
    opt_tensors, opt_meta = _flat_optimizer(optimizer.state_dict())
    tensors = {**{f"model.{k}": v for k, v in trained_state(model).items()},
               **({f"extra.{k}": v for k, v in extra.state_dict().items()} if extra is not None else {}),
               **{f"best.{k}": v for k, v in best_state.items()}, **opt_tensors,
               "rng.torch": torch.get_rng_state(), "rng.loader": generator.get_state()}
    meta = {"optimizer": opt_meta, "scheduler": scheduler.state_dict(), **progress}
    save_atomically(tensors, path, {"progress": json.dumps(meta)})


def save_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """One safetensors file, replaced whole: a kill while writing leaves the previous file (or none), never half a
    file, which is what makes a resumable state safe to read back."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def read_train_progress(path: Path) -> dict:
    """The non-tensor part of a saved state (epoch, history, ...)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["progress"])


def _readable_state(path: Path) -> bool:
    """False (with a message) for a state this code cannot read: the run then starts from its first epoch."""
    try:
        read_train_progress(path)
        return True
    except Exception as e:  # a foreign or damaged file: never half-used
        print(f"{path}: not a training state this version reads ({type(e).__name__}); starting the run afresh",
              flush=True)
        return False


def load_train_state(path: Path, model: MultimodalClassifier, optimizer, scheduler, generator: torch.Generator,
                     extra: nn.Module | None = None) -> tuple[dict, dict]:
    """Restore a saved state into the live objects; -> (best weights so far, progress)."""
    from safetensors.torch import load_file

    tensors, meta = load_file(str(path)), read_train_progress(path)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=False)
    if extra is not None:
        extra.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("extra.")})
    optimizer.load_state_dict(_unflat_optimizer(tensors, meta.pop("optimizer")))
    scheduler.load_state_dict(meta.pop("scheduler"))
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.loader"])
    return {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}, meta


def blank_images(image: ImageFeatures, blank: ImageFeatures, rows: torch.Tensor) -> ImageFeatures:
    """The batch with the images of `rows` ([B] bool) replaced by the blank image's features (batch of one)."""
    def mix(x: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or b is None or x.shape[1:] != b.shape[1:]:  # e.g. patches the head does not read: [B, 0, C]
            return x
        return torch.where(rows.view(-1, *[1] * (x.dim() - 1)), b.to(x.device, x.dtype), x)

    return replace(image, patches=mix(image.patches, blank.patches), pooled=mix(image.pooled, blank.pooled),
                   logits=mix(image.logits, blank.logits), prior=mix(image.prior, blank.prior))


def _event_adversary(spec: RunSpec, model: MultimodalClassifier, split: CachedSplit
                     ) -> tuple[EventDiscriminator | None, torch.Tensor | None]:
    """The event discriminator of `spec.event_adversarial` over the training split's groups, and each training
    sample's event index (None, None when off)."""
    if not spec.event_adversarial:
        return None, None
    if split.groups is None:
        raise ValueError("event-adversarial training needs the training split's groups (events)")
    events = sorted(set(split.groups))
    if len(events) < 2:
        raise ValueError(f"event-adversarial training needs at least two training events, not {events}")
    with torch.no_grad():
        features = model.eval()(*model_batch(model, split, torch.tensor([0]))[:2]).features
    if features is None:
        raise ValueError(f"{spec.model} has no fused representation (ModelOutput.features) to train against events")
    index = {e: i for i, e in enumerate(events)}
    return (EventDiscriminator(features.shape[-1], len(events), spec.event_adversarial),
            torch.tensor([index[g] for g in split.groups]))


def train(spec: RunSpec, feats: dict[str, CachedSplit], progress: bool = True,
          state_path: Path | None = None) -> tuple[MultimodalClassifier, dict]:
    """Train one head; returns the best-on-dev model and a record with history and timing. With `state_path`,
    the run's state is saved there after every epoch and, if a state is already there, the run resumes from it."""
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    set_seed(spec.seed)
    model = MultimodalClassifier(
        model=spec.model, task=spec.task, labels=spec.labels, multi_label=spec.multi_label,
        text_encoder=spec.text_encoder, image_encoder=spec.image_encoder, dims=spec.dims.to_dict(),
        head=spec.overrides or None, variant=spec.variant, max_length=spec.max_length,
        finetune_text_layers=spec.finetune_text_layers, data_version=spec.data_version, ordinal=spec.ordinal,
        prior_encoder=spec.prior_encoder, lora_rank=spec.lora_rank)
    cfg = model.head_config
    for split in (s for s in feats.values() if len(s)):  # fail before training, not at the first evaluation
        require_captions(model, split)
        model_batch(model, split, torch.tensor([0]))
    model.head.fit(fit_data(model, feats["train"]))  # statistics fitted on train, saved with the head
    train_loader = _loader(feats["train"], cfg.batch_size, model, shuffle=True, seed=spec.seed,
                           weights=sample_weights(feats["train"], spec.image_cap, spec.balance_groups,
                                                   spec.balance_classes), with_index=True)
    generator = train_loader.generator
    adversary, event_ids = _event_adversary(spec, model, feats["train"])
    if spec.image_dropout:
        from .probe import reference_of  # the probe imports this module

        blank = reference_of(model, "blank").image
    # Fine-tuned encoder layers get a BERT-style small learning rate; the head keeps its own.
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text_encoder.")]
    enc_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("text_encoder.")]
    groups = [{"params": head_params + (list(adversary.parameters()) if adversary else [])}]
    groups += [{"params": enc_params, "lr": spec.encoder_lr}] if enc_params else []
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(train_loader)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if adversary is not None:
        adversary = accelerator.prepare(adversary)
    raw: MultimodalClassifier = accelerator.unwrap_model(model)

    best_score, best_state, best_epoch, bad_epochs, history = -1.0, None, 0, 0, []
    first, elapsed = 1, 0.0
    if state_path is not None and Path(state_path).is_file() and _readable_state(Path(state_path)):
        best_state, done = load_train_state(Path(state_path), raw, optimizer, scheduler, generator,
                                            extra=accelerator.unwrap_model(adversary) if adversary else None)
        best_score, best_epoch, bad_epochs, history = (done["best_score"], done["best_epoch"], done["bad_epochs"],
                                                       done["history"])
        first, elapsed = done["epoch"] + 1, done["elapsed"]
        if done["stopped"]:
            first = cfg.epochs + 1  # it had stopped early: nothing left to run
    start = time.perf_counter() - elapsed
    name = f"{spec.task}/{spec.model}{'-' + spec.variant if spec.variant else ''} seed {spec.seed}"
    bar = tqdm(range(first, cfg.epochs + 1), desc=name, disable=not (progress and accelerator.is_main_process),
               leave=False)
    for epoch in bar:
        model.train()
        raw.head.on_epoch_start(epoch, cfg.epochs)
        loss_sum, n, term_sums = 0.0, 0, {}
        for text, image, y, idx in train_loader:
            if spec.image_dropout:  # the global RNG: its state is part of the resumable run state
                image = blank_images(image, blank, torch.rand(len(y)) < spec.image_dropout)
            text, image, y = text.to(accelerator.device), image.to(accelerator.device), y.to(accelerator.device)
            for step in range(raw.head.steps_per_batch()):  # in order, each on the weights the step before left
                raw.head.on_step(step)
                with accelerator.autocast():
                    out = model(text, image)
                    objective = raw.head.objective(out, y)
                    if adversary is not None:
                        objective.terms["event"] = adversary.loss(out.features, event_ids[idx].to(accelerator.device))
                    loss = objective.total
                accelerator.backward(loss)
                if objective.update is not None:
                    _drop_other_groups(raw, objective.update)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.item() * len(y)
                for name, term in objective.terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(term.detach()) * len(y)
            scheduler.step()  # once per batch, however many steps the head takes on it
            n += len(y)
        dev = evaluate(raw, feats["dev"], device=accelerator.device)
        score = dev["fused"][spec.select_metric]
        history.append({"epoch": epoch, "train_loss": loss_sum / n, "dev_loss": dev["loss"],
                        f"dev_{spec.select_metric}": score,
                        "train_terms": {k: round(v / n, 5) for k, v in term_sums.items()}})
        bar.set_postfix(loss=f"{loss_sum / n:.3f}", dev=f"{score:.4f}")
        if score > best_score:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            best_state = trained_state(raw)
        else:
            bad_epochs += 1
        stop = bad_epochs >= cfg.patience
        if state_path is not None:
            save_train_state(Path(state_path), raw, best_state, optimizer, scheduler, generator, {
                "epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                "history": history, "stopped": stop, "elapsed": time.perf_counter() - start},
                extra=accelerator.unwrap_model(adversary) if adversary else None)
        if stop:
            break
    raw.load_state_dict(best_state, strict=False)  # the frozen encoder weights are not in it: they never moved
    raw.eval().cpu()
    record = {"best_epoch": best_epoch, "epochs_run": len(history), "history": history,
              "train_seconds": round(time.perf_counter() - start, 2), "device": str(accelerator.device),
              "selected_on": f"dev {spec.select_metric} (fused)"}
    drawn = spec.unseen_event_options()
    if any(drawn.values()):
        record["training_for_unseen_events"] = drawn
    return raw, record
