"""Training loop on accelerate: CUDA with bf16 when present, CPU otherwise, several GPUs via
`accelerate launch -m trainer train ...`. Heads train on cached features; early stopping on dev."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from mmdemo.atomic import save_tensors
from mmdemo.encoders import ImageFeatures
from mmdemo.models import FitData, MultimodalClassifier
from mmdemo.predict import HEADS

from .adversarial import EventDiscriminator
from .batches import loader, model_batch, require_captions
from .features import CachedSplit
from .metrics import compute_metrics
from .probe import reference_of
from .spec import RunSpec


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


def fit_data(model: MultimodalClassifier, split: CachedSplit) -> FitData:
    """The training split as `FusionHead.fit` reads it."""
    def batches(batch_size: int):
        return iter(loader(split, batch_size, model, shuffle=False))

    return FitData([split.token_ids(i) for i in range(len(split))], split.labels, batches)


@torch.no_grad()
def predict_split(model: MultimodalClassifier, split: CachedSplit, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], float]:
    """-> ({"fused"|"text"|"image": logits [N, C]}, mean loss of the head's objective)"""
    model.eval()
    outs: dict[str, list] = {h: [] for h in HEADS}
    loss_sum = 0.0
    for text, image, y in loader(split, batch_size, model, shuffle=False):
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
    save_tensors(tensors, path, {"progress": json.dumps(meta)})


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




# ---- one run: build, optimiser, epochs ----------------------------------------------------------------------------


@dataclass
class Training:
    """The live objects of one run (`prepare`). `model` is what accelerate wrapped (what a step calls), `raw` the
    model itself; `generator` the training loader's (its state is part of the resumable run state)."""

    accelerator: Accelerator
    model: nn.Module
    raw: MultimodalClassifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: torch.utils.data.DataLoader
    generator: torch.Generator
    adversary: nn.Module | None = None  # the event discriminator (`--event-adversarial`)
    event_ids: torch.Tensor | None = None  # each training sample's event index, for the discriminator
    blank: ImageFeatures | None = None  # the blank image's features (`--image-dropout`)

    def extra(self) -> nn.Module | None:
        """The training-only module outside the model that a resumable state keeps with it."""
        return self.accelerator.unwrap_model(self.adversary) if self.adversary is not None else None


@dataclass
class Progress:
    """Where a run stands after its last finished epoch: what a resumable state holds beside its tensors."""

    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    stopped: bool = False
    elapsed: float = 0.0
    best_state: dict | None = None  # the best weights so far (tensors, saved apart from this record)

    def record(self) -> dict:
        return {"epoch": self.epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": self.history, "stopped": self.stopped,
                "elapsed": self.elapsed}


def build_model(spec: RunSpec) -> MultimodalClassifier:
    """The untrained model of a run (its initial weights come from the global RNG)."""
    return MultimodalClassifier(
        model=spec.model, task=spec.task, labels=spec.labels, multi_label=spec.multi_label,
        text_encoder=spec.text_encoder, image_encoder=spec.image_encoder, dims=spec.dims.to_dict(),
        head=spec.overrides or None, variant=spec.variant, max_length=spec.max_length,
        finetune_text_layers=spec.finetune_text_layers, data_version=spec.data_version, ordinal=spec.ordinal,
        prior_encoder=spec.prior_encoder, lora_rank=spec.lora_rank)


def make_optimizer(spec: RunSpec, model: MultimodalClassifier, adversary: nn.Module | None, steps: int):
    """AdamW with the head's lr and weight decay, and a cosine schedule with warmup over `steps` batches. Fine-tuned
    encoder layers get a BERT-style small learning rate (`spec.encoder_lr`); the head keeps its own."""
    cfg = model.head_config
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("text_encoder.")]
    enc_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("text_encoder.")]
    groups = [{"params": head_params + (list(adversary.parameters()) if adversary else [])}]
    groups += [{"params": enc_params, "lr": spec.encoder_lr}] if enc_params else []
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * steps), steps)


def prepare(spec: RunSpec, feats: dict[str, CachedSplit]) -> Training:
    """Build, fit and wire one run. The order fixes its random draws: the seed, the model's initial weights, what
    the head fits on train, the event discriminator's weights."""
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    set_seed(spec.seed)
    model = build_model(spec)
    for split in (s for s in feats.values() if len(s)):  # fail before training, not at the first evaluation
        require_captions(model, split)
        model_batch(model, split, torch.tensor([0]))
    model.head.fit(fit_data(model, feats["train"]))  # statistics fitted on train, saved with the head
    weights = sample_weights(feats["train"], spec.image_cap, spec.balance_groups, spec.balance_classes)
    train_loader = loader(feats["train"], model.head_config.batch_size, model, shuffle=True, seed=spec.seed,
                          weights=weights, with_index=True)
    adversary, event_ids = _event_adversary(spec, model, feats["train"])
    blank = reference_of(model, "blank").image if spec.image_dropout else None
    optimizer, scheduler = make_optimizer(spec, model, adversary, model.head_config.epochs * len(train_loader))
    generator = train_loader.generator
    wrapped, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    if adversary is not None:
        adversary = accelerator.prepare(adversary)
    return Training(accelerator, wrapped, accelerator.unwrap_model(wrapped), optimizer, scheduler, train_loader,
                    generator, adversary, event_ids, blank)


def resume(t: Training, state_path: Path | None) -> Progress:
    """The progress of a run saved at `state_path`, restored into `t` (a fresh start when there is none, or none
    this code reads)."""
    if state_path is None or not Path(state_path).is_file() or not _readable_state(Path(state_path)):
        return Progress()
    best_state, done = load_train_state(Path(state_path), t.raw, t.optimizer, t.scheduler, t.generator,
                                        extra=t.extra())
    return Progress(**done, best_state=best_state)


def train_step(t: Training, text, image, y: torch.Tensor, idx: torch.Tensor) -> tuple[float, dict[str, float]]:
    """One optimizer step on a batch -> (its loss, each term of its objective)."""
    with t.accelerator.autocast():
        out = t.model(text, image)
        objective = t.raw.head.objective(out, y)
        if t.adversary is not None:
            objective.terms["event"] = t.adversary.loss(out.features, t.event_ids[idx].to(t.accelerator.device))
        loss = objective.total
    t.accelerator.backward(loss)
    if objective.update is not None:
        _drop_other_groups(t.raw, objective.update)
    t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)
    return loss.item(), {name: float(term.detach()) for name, term in objective.terms.items()}


def train_epoch(spec: RunSpec, t: Training, epoch: int) -> tuple[float, dict[str, float]]:
    """One pass over the training loader -> (mean loss, mean of each objective term) over its samples."""
    t.model.train()
    t.raw.head.on_epoch_start(epoch, t.raw.head_config.epochs)
    loss_sum, n, term_sums = 0.0, 0, {}
    for text, image, y, idx in t.loader:
        if spec.image_dropout:  # the global RNG: its state is part of the resumable run state
            image = blank_images(image, t.blank, torch.rand(len(y)) < spec.image_dropout)
        device = t.accelerator.device
        text, image, y = text.to(device), image.to(device), y.to(device)
        for step in range(t.raw.head.steps_per_batch()):  # in order, each on the weights the step before left
            t.raw.head.on_step(step)
            loss, terms = train_step(t, text, image, y, idx)
            loss_sum += loss * len(y)
            for name, term in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + term * len(y)
        t.scheduler.step()  # once per batch, however many steps the head takes on it
        n += len(y)
    return loss_sum / n, {k: round(v / n, 5) for k, v in term_sums.items()}


def end_epoch(spec: RunSpec, t: Training, dev_split: CachedSplit, p: Progress, epoch: int, train_loss: float,
              terms: dict[str, float]) -> float:
    """Score the epoch on dev, keep the best weights, count the epochs without progress -> the dev score."""
    dev = evaluate(t.raw, dev_split, device=t.accelerator.device)
    score = dev["fused"][spec.select_metric]
    p.history.append({"epoch": epoch, "train_loss": train_loss, "dev_loss": dev["loss"],
                      f"dev_{spec.select_metric}": score, "train_terms": terms})
    if score > p.best_score:
        p.best_score, p.best_epoch, p.bad_epochs = score, epoch, 0
        p.best_state = trained_state(t.raw)
    else:
        p.bad_epochs += 1
    p.epoch, p.stopped = epoch, p.bad_epochs >= t.raw.head_config.patience
    return score


def train(spec: RunSpec, feats: dict[str, CachedSplit], progress: bool = True,
          state_path: Path | None = None) -> tuple[MultimodalClassifier, dict]:
    """Train one head; returns the best-on-dev model and a record with history and timing. With `state_path`,
    the run's state is saved there after every epoch and, if a state is already there, the run resumes from it."""
    t = prepare(spec, feats)
    epochs = t.raw.head_config.epochs
    p = resume(t, state_path)
    first = epochs + 1 if p.stopped else p.epoch + 1  # a run that had stopped early has nothing left to run
    start = time.perf_counter() - p.elapsed
    name = f"{spec.task}/{spec.model}{'-' + spec.variant if spec.variant else ''} seed {spec.seed}"
    bar = tqdm(range(first, epochs + 1), desc=name, disable=not (progress and t.accelerator.is_main_process),
               leave=False)
    for epoch in bar:
        train_loss, terms = train_epoch(spec, t, epoch)
        score = end_epoch(spec, t, feats["dev"], p, epoch, train_loss, terms)
        bar.set_postfix(loss=f"{train_loss:.3f}", dev=f"{score:.4f}")
        if state_path is not None:
            p.elapsed = time.perf_counter() - start
            save_train_state(Path(state_path), t.raw, p.best_state, t.optimizer, t.scheduler, t.generator,
                             p.record(), extra=t.extra())
        if p.stopped:
            break
    t.raw.load_state_dict(p.best_state, strict=False)  # the frozen encoder weights are not in it: they never moved
    t.raw.eval().cpu()
    record = {"best_epoch": p.best_epoch, "epochs_run": len(p.history), "history": p.history,
              "train_seconds": round(time.perf_counter() - start, 2), "device": str(t.accelerator.device),
              "selected_on": f"dev {spec.select_metric} (fused)"}
    drawn = spec.unseen_event_options()
    if any(drawn.values()):
        record["training_for_unseen_events"] = drawn
    return t.raw, record
