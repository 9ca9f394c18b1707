"""The model card of a checkpoint (its README.md): what it is, how it was trained, what it scored and how far to
trust it, with the Hub's metadata. Written by the trainer, read by the app's Model tab."""

from __future__ import annotations

import json

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .checkpoint import Trust, missing_prior, read_trust, reliability_line, validity_line
from .tasks import TASKS

# Backbone names -> Hub ids for the card's base_model field.
BASE_MODELS = {
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2", "mpnet-base": "sentence-transformers/all-mpnet-base-v2",
    "bert-base-uncased": "bert-base-uncased",
    "bert-base-chinese": "bert-base-chinese", "deberta-v3-base": "microsoft/deberta-v3-base",
    "vit-base-patch16-224": "google/vit-base-patch16-224", "resnet50": "timm/resnet50.tv2_in1k",
    "vgg16": "timm/vgg16.tv_in1k", "efficientnet-lite0": "timm/efficientnet_lite0.ra_in1k",
    "efficientnet-lite1": "timm/tf_efficientnet_lite1.in1k", "efficientnet-lite2": "timm/tf_efficientnet_lite2.in1k",
    "clip-vit-b-16": "openai/clip-vit-base-patch16",
}
DATASETS = {"mvsa-single": "MVSA-Single", "mvsa-multiple": "MVSA-Multiple", "mediaeval2016": "MediaEval-2016-VMU",
            "hashtags": "MVSA-Single-hashtags"}


SINGLE_LABEL_COLUMNS = {"accuracy": "accuracy", "weighted_f1": "weighted F1", "macro_f1": "macro F1"}
# the hashtag papers' metrics (CACNet Tables 3-4, HARRISON)
MULTI_LABEL_COLUMNS = {"precision@1": "P@1", "precision@3": "P@3", "recall@5": "R@5", "accuracy@1": "A@1",
                       "accuracy@3": "A@3", "accuracy@5": "A@5"}


def _metric_values(split_metrics: dict) -> dict[str, float]:
    fused = split_metrics.get("fused", {})
    return {k: v for k, v in fused.items() if isinstance(v, (int, float)) and k != "n"}


def _encoders_line(config: dict, metrics: dict) -> str:
    n = config.get("finetune_text_layers", 0)
    text, image = f"text `{config['text_encoder']}`", f"image `{config['image_encoder']}` (frozen)"
    if n and metrics.get("bundle", {}).get("lora_rank"):  # tuned whole, bundled as adapters (`as_lora`)
        return (f"{text} with its last {n} layers fine-tuned whole, stored as LoRA adapters of rank "
                f"{config['lora_rank']} (each weight's change cut to its top singular directions) with the tuned "
                f"biases and LayerNorms, {image}; `model.safetensors` holds the fusion head and these (the encoder "
                f"itself is rebuilt from its package on load).")
    if n and config.get("lora_rank"):
        return (f"{text} with its last {n} layers fine-tuned through LoRA adapters of rank {config['lora_rank']}, "
                f"{image}; `model.safetensors` holds the fusion head and the adapters (the encoder itself is rebuilt "
                f"from its package on load).")
    if n:
        return (f"{text} with its last {n} layers fine-tuned, {image}; `model.safetensors` holds the fusion head and "
                f"the {n} tuned layers (the frozen rest is rebuilt from the encoder's package on load).")
    return (f"{text} and image `{config['image_encoder']}`, both frozen; only the fusion head's weights are in "
            f"`model.safetensors`.")


def _aux_line(head: dict) -> str:
    w = head.get("aux_weight")
    if head.get("aux_detach"):
        return (f"trained with weight `aux_weight={w}` on their cross-entropy on detached inputs (probes: their loss "
                "never reaches the fusion network)")
    return f"trained jointly with weight `aux_weight={w}` on their cross-entropy"


def _bundle_line(metrics: dict, dev: str = "dev") -> str:
    """The weights' storage when `trainer bundle` compacted them, with the dev metrics measured on that copy."""
    b = metrics.get("bundle")
    if not b:
        return ""
    name, dev = dev, ", ".join(f"{k} {v:.4f}" for k, v in sorted(b["dev"].items()))
    return (f"\n- **Weights:** stored in {b['dtype']} ({b['bytes']['bundled'] / 2**20:.1f} MiB, from "
            f"{b['bytes']['run'] / 2**20:.1f}), without training-only state; {name} measured on this copy: {dev}.")


def _selection(config: dict, metrics: dict) -> str:
    """Which inputs chose the epoch and the seed."""
    chosen = (config.get("trust") or {}).get("selected_on")
    seed = f"seed {metrics.get('seed', '?')}"
    if chosen:
        return f"chosen on {chosen} ({seed})."
    return f"best epoch on {split_name(config, metrics, 'dev')} ({metrics.get('selected_on', 'dev')}); {seed}."


def split_name(config: dict, metrics: dict, split: str) -> str:
    """A split named by what it is: "validation events (boston, nepal)" / "held-out events (malaysia, nepal)" where
    the checkpoint recorded events, else "dev" / "test"."""
    named = ((config.get("trust") or {}).get("splits") or {}).get(split)
    if named:
        return named
    events = (metrics.get("data", {}).get("groups") or {}).get(split)
    if events:
        return f"{'validation' if split == 'dev' else 'held-out'} events ({', '.join(events)})"
    return split


def _trust_lines(config: dict) -> str:
    """How far to trust the checkpoint, as `trainer measure` recorded it: the app's one line, then the figures."""
    trust = read_trust(config)
    if trust == Trust():
        return ""
    lines = [f"\n- **How far to trust it:** {reliability_line(trust)}"]
    s, j, c = trust.spread, trust.judged, trust.calibration
    if s:
        lines.append(f"\n- **Spread of its answer:** over {s['on']}, the fused probability of a class varies by at "
                     f"most {s['std']:.3g} (standard deviation); the top class's probability lies between "
                     f"{s['top_low']:.3f} and {s['top_high']:.3f} for 90% of them"
                     + ("; the answer does not move with the input" if trust.informative is False else "") + ".")
    if j:
        whose = ("the recipe's (a leave-one-event-out run of the same settings, pooled over seeds), not this "
                 "checkpoint's" if j["whose"] == "recipe" else "this checkpoint's own, measured on the bundled copy")
        lines.append(f"\n- **Judged on:** {j['metric']} {j['value']:.4f}"
                     + (f" ± {j['std']:.4f}" if "std" in j else "")
                     + f" on {j['on']}: {whose}; {j['floor_name']} scores {j['floor']:.4f} there"
                     + (f". Optimistic: {j['why']}." if j.get("optimistic") else "."))
    if c:
        lines.append(f"\n- **Calibration:** temperature {c['temperature']:.4g} divides the fused logits, fitted on "
                     f"{c['fitted_on']} ({c['whose']}'s); expected calibration error there {c['ece_before']:.4f} "
                     f"before, {c['ece_after']:.4f} after"
                     + (f", {c['ece_after_unseen']:.4f} on each event when its temperature is fitted without it"
                        if "ece_after_unseen" in c else "") + "."
                     + ("" if trust.carries_over else " It does not carry over to a new event: the probabilities are "
                        "rough scores, not chances."))
    elif j or s:
        lines.append("\n- **Calibration:** none; the probabilities are scores, not chances.")
    if trust.signals:
        lines.append("\n- **What its own signals carry, measured:**" + "".join(
            f"\n  - `{name}`: {validity_line(v)}" for name, v in trust.signals.items()))
    return "".join(lines)


def make_model_card(config: dict, metrics: dict, command: str = "") -> ModelCard:
    """A model card with ModelCardData (license, library, tags, datasets, base models, eval results) and a
    body that says what the model is, how it was trained and evaluated, and how to load it."""
    from .models import get_model

    entry = get_model(config["model"])
    task = TASKS.get(config["task"])
    dataset = DATASETS.get(config["task"], config["task"])
    evals = []
    for split in ("dev", "test"):
        for name, value in _metric_values(metrics.get(split, {})).items():
            evals.append(EvalResult(task_type="image-text-classification", dataset_type=dataset, dataset_name=dataset,
                                    dataset_split=split_name(config, metrics, split), metric_type=name,
                                    metric_value=round(float(value), 4)))
    base = [BASE_MODELS.get(config["text_encoder"]), BASE_MODELS.get(config["image_encoder"])]
    data = ModelCardData(
        license="apache-2.0", library_name="mmdemo", tags=["multimodal", "image-text-classification", config["model"]],
        datasets=[dataset], base_model=[b for b in base if b], model_name=f"mmdemo-{config['task']}-{config['model']}",
        eval_results=evals or None,
    )
    name = config["model"] + (f" ({config['variant']})" if config.get("variant") else "")
    columns = MULTI_LABEL_COLUMNS if config.get("multi_label") else SINGLE_LABEL_COLUMNS
    rows = []
    for split in ("dev", "test"):
        for head in ("fused", "text", "image"):
            m = metrics.get(split, {}).get(head)
            if m:
                vals = " | ".join(f"{m[k]:.4f}" if k in m else "–" for k in columns)
                rows.append(f"| {split_name(config, metrics, split)} | {head} | {vals} |")
    table = "\n".join(["| split | head | " + " | ".join(columns.values()) + " |",
                       "|---|---|" + "---|" * len(columns), *rows])
    signals = entry.head.signals
    outputs = "".join(f"\n  - `{key}` ({sig.kind}): {sig.title}: {sig.plain} ({sig.meaning})."
                      for key, sig in signals.items())  # the plain reading first, as the app shows it
    prior, wanted = config.get("prior_encoder", ""), missing_prior(config)
    prior_line = (f"\n- **Prior encoder:** `{prior}`." if prior else
                  f"\n- **Prior encoder:** none: `{wanted}` was not available, so this is the paper's w/o-prior "
                  f"variant." if wanted else "")
    body = f"""
# {name} on {config['task']}

{entry.description}. {('Paper: ' + entry.paper + '.') if entry.paper else ''}

- **Task:** {task.description if task else config['task']}; labels: {', '.join(config['labels'])}
- **Encoders:** {_encoders_line(config, metrics)}{prior_line}
- **Interpretable outputs:** {outputs or 'none (a baseline)'}
- **Unimodal predictions:** every mmdemo network also predicts from each modality alone through small auxiliary
  classifiers on its own unimodal representations, {_aux_line(config['head'])}.
- **Selection:** {_selection(config, metrics)}{_bundle_line(metrics, split_name(config, metrics, 'dev'))}{_trust_lines(config)}

## Evaluation

{table}

## Training

```
{command or metrics.get('command', 'python -m trainer train ...')}
```

Head config: `{json.dumps(config['head'], sort_keys=True)}`

## Use

```python
from mmdemo.predict import Predictor
p = Predictor.from_checkpoint("path/to/this/directory")   # or Predictor.for_task("{config['task']}", "{config['model']}", "checkpoints")
print(p.predict(image, "caption").probs["fused"])
```
"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body)
