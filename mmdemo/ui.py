"""The Gradio app: upload an image and a caption, pick a task and a network, and see the fused prediction beside
the text-only and image-only ones, the network's own interpretable quantities, Captum and attention heatmaps,
every network of the task side by side, and the model card.

`build_demo(root)` builds the Blocks; `DemoApp` holds the plain functions the Blocks wire up (each with an
api_name, so gradio_client can call them). Everything the network explains is rendered generically from
`Prediction.explain` and the head's `signals` declarations: nothing here branches on a model name.
Bad input and broken checkpoints become a message in the page, never a stack trace.
"""

from __future__ import annotations

import html
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from .checkpoint import CheckpointError, missing_prior, read_config, read_metrics
from .hub import (BUNDLED_DIR, MULTI_LABEL_COLUMNS, REPO_ROOT, HubError, Resolved, bundled_checkpoints, configured_repos,
                  resolve)
from .inputs import InputError
from .memory import release_memory
from .names import HEADS, METHODS
from .render import (HEAD_NAMES, _box, contributions_json, demote_headings, error_html, highlighted_tokens,
                     label_value, main_signal, measured_share, notes_html, prior_note, signals_html,
                     strip_front_matter, verdict_html)
from .tasks import TASKS

if TYPE_CHECKING:  # the model code (torch) is imported on first use, so the page is served before torch loads
    from .models import Signal
    from .predict import Prediction, Predictor

log = logging.getLogger(__name__)

EXAMPLES_DIR = REPO_ROOT / "examples"
ALL_WORDS, ALL_REGIONS, PREDICTED = "(all words)", "(all regions)", "(predicted class)"


def user_errors() -> tuple[type[Exception], ...]:
    """The errors whose message is for the user: bad input, a broken or missing checkpoint, an encoder whose weights
    are absent, the Hub. (A function: the encoders' error lives with the torch code, imported on first use.)"""
    from .encoders import EncoderUnavailableError

    return InputError, CheckpointError, EncoderUnavailableError, HubError

NO_CHECKPOINT_HELP = """**No trained checkpoint was found** in `{root}`. Train one and bundle it, then restart the app:

```
python -m trainer train --task mvsa-single --model concat
python -m trainer bundle --task mvsa-single --model concat
```
(or set `MMDEMO_HUB_REPOS` to map `task/model` to Hugging Face Hub repos)."""
NO_CHECKPOINT_LINE = ("No trained checkpoint was found in {root}. Train and bundle one, then restart the app: "
                      "python -m trainer train --task mvsa-single --model concat, then "
                      "python -m trainer bundle --task mvsa-single --model concat.")


def safe_image(**kwargs) -> gr.Image:
    """gr.Image whose preprocessing never raises: a file PIL cannot open reaches the app function as its path,
    and mmdemo.inputs.load_image turns it into a readable InputError instead of Gradio's bare 'Error'.
    (The instance's method is wrapped: subclassing a component makes Gradio write a .pyi next to this file.)"""
    image = gr.Image(**kwargs)
    preprocess = image.preprocess

    def safe_preprocess(payload):
        try:
            return preprocess(payload)
        except Exception:  # unreadable, truncated, decompression bomb, ...
            return getattr(payload, "path", None) or b""  # b"": an undecodable data URL

    image.preprocess = safe_preprocess
    return image


@dataclass
class Loaded:
    predictor: Predictor
    where: Resolved
    config: dict


# ---- the app -------------------------------------------------------------------------------------------------


def _answer_or_error(predictor: Predictor, image, caption: str | None) -> Prediction | Exception:
    try:
        return predictor.predict(image, caption)
    except Exception as e:
        return e


class DemoApp:
    """Predictors cached per (task, model), loaded on first use; the functions the page and the API call."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else BUNDLED_DIR
        self._cache: dict[tuple[str, str], Loaded] = {}
        self._lock = threading.Lock()

    # -- catalogue and loading --

    def catalogue(self) -> dict[str, list[str]]:
        """{task: [models]} from bundled checkpoints and MMDEMO_HUB_REPOS."""
        cat = {t: sorted(models) for t, models in bundled_checkpoints(self.root).items()}
        try:
            repos = configured_repos()
        except (OSError, ValueError) as e:
            log.warning("ignoring MMDEMO_HUB_REPOS: %s", e)
            repos = {}
        for key in repos:
            task, _, model = key.partition("/")
            if model and model not in cat.setdefault(task, []):
                cat[task].append(model)
        return {t: m for t, m in sorted(cat.items()) if m}

    def default_model(self, task: str) -> str | None:
        """The model with the best dev score for the task's paper metric, else the first one."""
        models = self.catalogue().get(task, [])
        metric = TASKS[task].paper_metric if task in TASKS else "weighted_f1"

        def dev_score(model: str) -> float:
            m = read_metrics(self.root / task / model).get("dev", {}).get("fused", {})
            return float(m.get(metric, m.get("accuracy", -1.0)))

        return max(models, key=dev_score) if models else None

    def load(self, task: str | None, model: str | None) -> Loaded:
        if not self.catalogue():
            raise CheckpointError(NO_CHECKPOINT_LINE.format(root=self.root))
        if not task or not model:
            raise InputError("Pick a task and a model first.")
        key = (task, model)
        with self._lock:  # two requests for a new model load it once
            if key not in self._cache:
                from .predict import Predictor  # the first load imports torch and the model code

                where = resolve(task, model, self.root)
                predictor = Predictor.from_checkpoint(where.path, task=task)
                self._cache[key] = Loaded(predictor, where, read_config(where.path))
            return self._cache[key]

    def first_network(self) -> tuple[str | None, str | None]:
        """The task and network the page opens on: MVSA-Single where it is trained, and its best network on dev."""
        cat = self.catalogue()
        task = "mvsa-single" if "mvsa-single" in cat else next(iter(cat), None)
        return task, self.default_model(task) if task else None

    def preload(self) -> threading.Thread:
        """Load the page's first network (and so torch and the model code) in a background thread, ahead of its
        first request; a failure is left for that request to report."""
        def run():
            task, model = self.first_network()
            if task and model:
                try:
                    self.load(task, model)
                except Exception as e:
                    log.warning("could not preload %s/%s: %s", task, model, e)

        thread = threading.Thread(target=run, name="mmdemo-preload", daemon=True)
        thread.start()
        return thread

    def loading_fn(self, task: str | None, model: str | None) -> str:
        """Network picked -> the status says it is loading (the event chained after it loads it), or nothing when
        it is loaded already."""
        if not task or not model or (task, model) in self._cache:
            return ""
        return _box(f"Loading {html.escape(model)} for {html.escape(task)} …", "info")

    def ready_fn(self, task: str | None, model: str | None) -> str:
        """Load the picked network (once) -> the status says it is ready and where it came from, or why not."""
        if not task or not model:
            return ""
        try:
            loaded = self.load(task, model)
        except Exception as e:
            return error_html(self._message(e, "loading"))
        source = "bundled checkpoint" if loaded.where.source == "bundled" else loaded.where.source
        return _box(f"{html.escape(model)} for {html.escape(task)} is ready ({html.escape(source)}).", "ok")

    @staticmethod
    def _signals(loaded: Loaded) -> dict[str, Signal]:
        return loaded.predictor.classifier.head.signals

    @staticmethod
    def _message(e: Exception, what: str) -> str:
        if isinstance(e, user_errors()):
            return str(e)
        log.error("%s failed", what, exc_info=e)  # its traceback, also where e was caught earlier
        return f"Sorry, the {what} failed unexpectedly ({type(e).__name__}). The details are in the server log."

    # -- the functions the page wires up --

    def models_fn(self, task: str | None):
        """Task changed -> the model dropdown lists the networks trained for it."""
        models = self.catalogue().get(task or "", [])
        return gr.update(choices=models, value=self.default_model(task) if models else None)

    def labels_of(self, task: str | None, model: str | None) -> list[str]:
        """The checkpoint's label names, from its config.json (bundled, or the configured Hub repo's) without
        loading the weights ([] when unknown)."""
        if not task or not model:
            return []
        if (task, model) in self._cache:
            return list(self._cache[(task, model)].predictor.labels)
        try:
            return list(read_config(resolve(task, model, self.root).path).get("labels", []))
        except user_errors():
            return []

    def targets_fn(self, task: str | None, model: str | None):
        return gr.update(choices=[PREDICTED] + self.labels_of(task, model), value=PREDICTED)

    def predict_fn(self, image, caption: str | None, task: str | None, model: str | None):
        """-> (fused, text-only, image-only {label: p}, agreement banner, network signals, status, modality
        contributions), HTML strings except the label dicts and the contributions (a dict, `contributions_json`);
        on bad input the dicts are None and the status says what is wrong."""
        return tuple(column[0] for column in self.predict_batch_fn([image], [caption], [task], [model]))

    def predict_batch_fn(self, images: list, captions: list, tasks: list, models: list) -> tuple[list, ...]:
        """`predict_fn` over requests that arrived together (the /predict endpoint runs in Gradio's batch mode), for
        any networks: one `predict_requests`, so the shared encoders run once over all of them. Each request gets
        its own answer, or its own error, in `predict_fn`'s seven outputs (each a list, one entry per request)."""
        from .predict import predict_requests

        answers: list[tuple | None] = [None] * len(images)
        requests, rows, loaded = [], [], []
        for i, (task, model) in enumerate(zip(tasks, models)):
            try:
                loaded.append(self.load(task, model))
            except Exception as e:
                answers[i] = self._predict_error(e)
                continue
            requests.append((loaded[-1].predictor, images[i], captions[i]))
            rows.append(i)
        try:
            preds = predict_requests(requests)
        except Exception as e:
            preds = [e] * len(requests)
        for i, where, pred in zip(rows, loaded, preds):
            answers[i] = self._predict_error(pred) if isinstance(pred, Exception) else self._predict_answer(where, pred)
        return tuple(map(list, zip(*answers)))

    def _predict_error(self, e: Exception) -> tuple:
        return None, None, None, "", "", error_html(self._message(e, "prediction")), None

    def _predict_answer(self, loaded: Loaded, pred: Prediction) -> tuple:
        notes = list(pred.warnings) + ([loaded.where.note] if loaded.where.note else [])
        reliability = _box(html.escape(pred.reliability), "info") if pred.reliability else ""
        return (label_value(pred, "fused"), label_value(pred, "text"), label_value(pred, "image"),
                verdict_html(pred) + reliability,
                signals_html(pred, self._signals(loaded), loaded.predictor.classifier.missing_prior),
                notes_html(notes), contributions_json(pred))

    def explain_fn(self, image, caption: str | None, task: str | None, model: str | None,
                   method: str = "grad-cam", head: str = "fused", target: str | None = None):
        """-> (heatmap over the image, token attributions for gr.HighlightedText, note HTML)."""
        from . import explain as X

        try:
            loaded = self.load(task, model)
            p = loaded.predictor
            inputs, input_notes = p.prepare(image, caption)  # a cut or unreadable caption is said here too
            head = head if head in HEADS else "fused"
            labels = p.labels
            pred = p.predict(image, caption)  # the click's prediction: its encoder pass is ENCODED's
            cls = labels.index(target) if target in labels else labels.index(pred.top()[0])
            mid = X.method_id(method)
            view = X.encoder_view(p.image_encoder, _rgb(image))
            tok = X.token_attributions(p.pipeline, inputs, target=cls, head=head)
            # [CLS]/[SEP] stay in the baseline, so their attribution is 0 by construction: show the words only
            words = highlighted_tokens([(w, sc) for w, sc in X.merge_subwords(tok.tokens, tok.normalised())
                                        if not X.is_special_token(w)])
            notes = [f"Explaining the <b>{HEAD_NAMES[head].lower()}</b> head's score for <b>"
                     f"{html.escape(labels[cls])}</b>{' (the fused prediction)' if target not in labels else ''}. "
                     f"Words: red pushes towards it, purple away (Integrated Gradients on the word embeddings)."]
            if not np.any(tok.scores):
                notes.append(f"The {HEAD_NAMES[head].lower()} head does not read the caption.")
            elif tok.convergence is not None:
                notes.append(tok.convergence.describe("Word attributions"))
            measured = pred.contributions
            if measured is not None:
                c = measured.of(cls)
                notes.append(f"Measured on the fused prediction for <b>{html.escape(c['label'])}</b> (Shapley values): "
                             f"caption {c['text']:+.3f}, image {c['image']:+.3f}, interaction {c['interaction']:+.3f} "
                             f"(caption share {c['text_share']:.0%}).")
            notes += input_notes
            if mid == "attention":
                heat, note = self._attention_heat(loaded, image, caption)
                if heat is None:
                    return None, words, "".join(_box(n, "info") for n in notes + [note])
            else:
                heat, convergence = X.image_attribution(mid, p.pipeline, inputs, target=cls, head=head)
                note = {"grad-cam": "Grad-CAM on the image encoder's last feature map.",
                        "integrated-gradients": "Integrated Gradients on the pixels (baseline: the mean image).",
                        "occlusion": "Occlusion: how much the score drops when each square is blanked."}[mid]
                if convergence is not None:
                    note += " " + convergence.describe("Pixel attributions")
                if not np.any(heat):
                    note += (" The map is flat: this head's score for the class does not depend on this part of "
                             "the image encoder (e.g. it reads only the pooled vector); try another method.")
            return X.overlay(view, heat), words, "".join(_box(n, "info") for n in notes + [note])
        except Exception as e:
            return None, None, error_html(self._message(e, "explanation"))
        finally:
            release_memory()  # the attributions' temporaries are freed: give their pages back (mmdemo.memory)

    def _attention_heat(self, loaded: Loaded, image, caption) -> tuple[np.ndarray | None, str]:
        from . import explain as X

        pred = loaded.predictor.predict(image, caption)
        t2i, _ = X.attention_matrices(pred.explain, self._signals(loaded), len(pred.tokens))
        if t2i is None:
            return None, "This network has no text ↔ image attention; pick Grad-CAM, Integrated Gradients or Occlusion."
        grid = X.grid_shape(t2i.shape[1], loaded.predictor.image_encoder.grid)
        return X.word_to_image(t2i, None, grid), "Attention from all words to the image regions (mean over heads)."

    def attention_fn(self, image, caption: str | None, task: str | None, model: str | None,
                     word: str | None = None, region: str | None = None):
        """Pick a word -> which image regions it attends to; pick a region -> which words it attends to.
        -> (word dropdown, region dropdown, heatmap, word weights for gr.HighlightedText, note HTML)."""
        from . import explain as X

        keep = gr.update(), gr.update()
        try:
            loaded = self.load(task, model)
            pred = loaded.predictor.predict(image, caption)
            t2i, i2t = X.attention_matrices(pred.explain, self._signals(loaded), len(pred.tokens))
            if t2i is None:
                return (*keep, None, None, _box("This network has no text ↔ image attention (only the networks "
                                                 "with cross-modal attention have these maps).", "info"))
            grid = X.grid_shape(t2i.shape[1], loaded.predictor.image_encoder.grid)
            word_choices = [ALL_WORDS] + [f"{i}: {t}" for i, t in enumerate(pred.tokens)]
            region_choices = [ALL_REGIONS] + [f"row {r + 1}, col {c + 1}" for r in range(grid[0])
                                              for c in range(grid[1])]
            word = word if word in word_choices else ALL_WORDS
            region = region if region in region_choices else ALL_REGIONS
            w_idx = None if word == ALL_WORDS else word_choices.index(word) - 1  # None: the mean over all
            r_idx = None if region == ALL_REGIONS else region_choices.index(region) - 1
            view = X.encoder_view(loaded.predictor.image_encoder, _rgb(image))
            heat = X.overlay(view, X.word_to_image(t2i, w_idx, grid))
            if r_idx is not None:
                heat = X.outline_region(heat, r_idx, grid)
            weights = X.normalise_map(X.image_to_words(i2t, r_idx))  # stretched to [0, 1] like the heatmaps
            words = highlighted_tokens([(t, float(w)) for t, w in zip(pred.tokens, weights)])
            where = f"{html.escape(region)} (white box)" if r_idx is not None else "the whole image"
            note = (f"Heatmap: where <b>{html.escape(word if w_idx is not None else 'all words')}</b> looks in the "
                    f"image. Words: how much <b>{where}</b> attends to each token. Mean over attention heads.")
            return (gr.update(choices=word_choices, value=word), gr.update(choices=region_choices, value=region),
                    heat, words, _box(note, "info"))
        except Exception as e:
            return (*keep, None, None, error_html(self._message(e, "attention view")))

    def compare_fn(self, image, caption: str | None, task: str | None):
        """Every network of the task on the same input -> (table, note HTML). One `predict_requests`: the image is
        read once, the shared encoders run once and the heads side by side; a network that cannot load or predict
        gets its own row's message, and the others still answer. "latency ms": from the click to that answer."""
        from .predict import predict_requests

        columns = ["network", "fused", "text only", "image only", "agree", "measured caption / image share",
                   "network's signal", "latency ms"]
        rows = []
        try:
            models = self.catalogue().get(task or "", [])
            if not models:
                raise CheckpointError(f"No networks are trained for task {task!r}.")
            loaded, answers = {}, {}
            for model in models:
                try:
                    loaded[model] = self.load(task, model)
                except Exception as e:
                    answers[model] = e
            try:
                answers.update(zip(loaded, predict_requests([(w.predictor, image, caption) for w in loaded.values()])))
            except Exception:  # one network's failure: ask each alone, so that it shows in its own row only
                answers.update({model: _answer_or_error(w.predictor, image, caption) for model, w in loaded.items()})
            for model in models:
                pred = answers[model]
                if isinstance(pred, InputError):  # the input is wrong, not the network: say it once
                    raise pred
                if isinstance(pred, Exception):  # one broken checkpoint should not hide the others
                    rows.append([model, self._message(pred, f"{model} prediction"), "", "", "", "", "", None])
                    continue
                top = {h: "{} ({:.0%})".format(*pred.top(h)) for h in HEADS}
                rows.append([model, top["fused"], top["text"], top["image"], "no" if pred.disagree else "yes",
                             measured_share(pred), main_signal(pred, self._signals(loaded[model])),
                             round(pred.latency_ms, 1)])
        except Exception as e:
            return pd.DataFrame(rows, columns=columns), error_html(self._message(e, "comparison"))
        return pd.DataFrame(rows, columns=columns), ""

    def model_info_fn(self, task: str | None, model: str | None) -> str:
        """Markdown: where the checkpoint came from, backbones, training data, test metrics, model card."""
        if not task or not model:
            return NO_CHECKPOINT_HELP.format(root=self.root) if not self.catalogue() else "Pick a task and a model."
        try:
            cached = self._cache.get((task, model))
            where = cached.where if cached else resolve(task, model, self.root)
            config = read_config(where.path)
        except Exception as e:
            return f"**Cannot read this checkpoint:** {self._message(e, 'model panel')}"
        source = (f"Hugging Face Hub (`{where.source.removeprefix('hub:')}`)" if where.source.startswith("hub:")
                  else f"bundled checkpoint `{_short(where.path)}`")
        t = TASKS.get(config.get("task", ""))
        lines = [
            f"### {model} on {task}",
            f"- **Loaded from:** {source}" + (f" — {where.note}" if where.note else ""),
            f"- **Backbones:** text `{config.get('text_encoder')}`"
            + (f" (last {config['finetune_text_layers']} layers fine-tuned"
               + (f" through LoRA, rank {config['lora_rank']})" if config.get("lora_rank") else ")")
               if config.get("finetune_text_layers") else " (frozen)")
            + f", image `{config.get('image_encoder')}` (frozen)",
            f"- **Training data:** {t.description if t else task}" +
            (f" (data version `{config['data_version']}`)" if config.get("data_version") else ""),
            f"- **Labels:** {', '.join(config.get('labels', []))}",
        ]
        wanted = missing_prior(config)
        if config.get("prior_encoder"):
            lines.append(f"- **Prior encoder:** `{config['prior_encoder']}` (its global vectors join the network's own)")
        elif wanted:
            lines.append(f"- **Prior encoder:** none. {prior_note(wanted)}")
        lines += ["", "#### Test metrics", _metrics_table(read_metrics(where.path))]
        card = where.path / "README.md"
        if card.is_file():
            lines += ["", "---", "#### Model card", demote_headings(strip_front_matter(card.read_text()))]
        return "\n".join(lines)


def _rgb(image) -> Image.Image:
    from .inputs import load_image

    return load_image(image)


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _metrics_table(metrics: dict) -> str:
    test = metrics.get("test", {})
    heads = [h for h in HEADS if isinstance(test.get(h), dict)]
    if not heads and metrics.get("data", {}).get("sizes", {}).get("test") == 0:
        return ("_No test part: this checkpoint was trained on every event but its validation events "
                "(`--protocol all-events`); its score on unseen events is in the model card below._")
    if not heads:
        return "_No test metrics recorded in metrics.json._"
    names = [k for k in ("accuracy", "weighted_f1", "macro_f1", *MULTI_LABEL_COLUMNS) if any(k in test[h] for h in heads)]
    names = names or [k for k in test[heads[0]] if isinstance(test[heads[0]][k], (int, float)) and k != "n"][:5]
    out = ["| head | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for h in heads:
        vals = [f"{test[h][k]:.4f}" if isinstance(test[h].get(k), (int, float)) else "–" for k in names]
        out.append(f"| {HEAD_NAMES[h].lower()} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def example_rows() -> list[list[str]]:
    """[[image path, caption], ...] from examples/examples.json (empty when the folder is absent)."""
    import json

    index = EXAMPLES_DIR / "examples.json"
    if not index.is_file():
        return []
    return [[str(EXAMPLES_DIR / r["image"]), r["caption"]] for r in json.loads(index.read_text())
            if (EXAMPLES_DIR / r["image"]).is_file()]


# ---- layout ----------------------------------------------------------------------------------------------


def build_demo(checkpoints_root: Path | None = None, max_batch: int = 8) -> gr.Blocks:
    """The whole page. `checkpoints_root` holds <task>/<model>/ checkpoint directories (default: checkpoints/).
    max_batch: /predict requests waiting together are answered by one batched pass, up to this many (1: one by
    one). Building it imports no torch: the model code loads with the first network (`DemoApp.preload`, which
    app.py starts once the page is served, or the first request)."""
    app = DemoApp(checkpoints_root)
    cat = app.catalogue()
    task0, model0 = app.first_network()
    labels0 = app.labels_of(task0, model0)
    if EXAMPLES_DIR.is_dir():
        gr.set_static_paths([EXAMPLES_DIR])

    with gr.Blocks(title="mmdemo — image + caption classification") as demo:
        demo.mmdemo_app = app  # tests and benchmarks reach the cache through this
        gr.Markdown("## mmdemo — what do the picture and its caption say, together and apart?\n"
                    "Upload an image, write its caption, pick a task and a network. You get the **fused** "
                    "prediction next to the **text-only** and **image-only** ones, what the network itself "
                    "reports about the fusion, and heatmaps that show which pixels and words drove the answer.")
        if not cat:
            gr.Markdown(NO_CHECKPOINT_HELP.format(root=_short(app.root)))
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=320):
                image = safe_image(sources=["upload", "webcam", "clipboard"], type="pil", image_mode=None,
                                  label="Image", height=300, elem_id="mm-image")
                caption = gr.Textbox(label="Caption", lines=2, placeholder="The text that goes with the image",
                                     elem_id="mm-caption")
                with gr.Row():
                    # Choices change with the task; the API takes any value and the handlers validate it (an
                    # unknown task or network gets a message), so no endpoint refuses what the page can send.
                    task = gr.Dropdown(list(cat), value=task0, label="Task", elem_id="mm-task",
                                       allow_custom_value=True)
                    model = gr.Dropdown(cat.get(task0, []), value=model0, label="Network", elem_id="mm-model",
                                        allow_custom_value=True)
                method = gr.Dropdown([(label, key) for key, label in METHODS.items()], value="grad-cam",
                                     label="Image explanation", elem_id="mm-method")
                with gr.Accordion("Explanation options", open=False):
                    with gr.Row():
                        head = gr.Radio([(HEAD_NAMES[h], h) for h in HEADS], value="fused", label="Explain head")
                        target = gr.Dropdown([PREDICTED] + labels0, value=PREDICTED, label="Explain class",
                                             allow_custom_value=True)
                run = gr.Button("Predict and explain", variant="primary", elem_id="mm-run")
                rows = example_rows()
                if rows:
                    gr.Examples(rows, inputs=[image, caption], label="Examples: pictures and captions that agree "
                                "or conflict", examples_per_page=6)
            with gr.Column(scale=7, min_width=420):
                status = gr.HTML(label="Status", elem_id="mm-status")
                verdict = gr.HTML(label="Agreement", elem_id="mm-verdict")
                with gr.Row():
                    fused = gr.Label(num_top_classes=5, label="Fused", elem_id="mm-fused")
                    text_only = gr.Label(num_top_classes=5, label="Text only", elem_id="mm-text")
                    image_only = gr.Label(num_top_classes=5, label="Image only", elem_id="mm-image-only")
                signals = gr.HTML(label="Network signals", elem_id="mm-signals")
                with gr.Accordion("Modality contributions, every class (as the API returns them)", open=False):
                    contributions = gr.JSON(label="Modality contributions", elem_id="mm-contributions")
                # The tabs sit beside the inputs and examples, so the whole answer is visible without scrolling.
                with gr.Tabs():
                    with gr.Tab("Explanation"):
                        with gr.Row():
                            heatmap = gr.Image(type="pil", label="Image explanation", interactive=False, height=320,
                                               elem_id="mm-heatmap", format="png")
                            with gr.Column():
                                tokens = gr.HighlightedText(label="Word attributions", show_legend=False,
                                                            elem_id="mm-tokens")
                                explain_note = gr.HTML(label="Explanation note", elem_id="mm-explain-note")
                    with gr.Tab("Attention"):
                        gr.Markdown("For networks with cross-modal attention: pick a word to see which image regions "
                                    "it attends to, or a region to see which words it attends to.")
                        with gr.Row():
                            word = gr.Dropdown([ALL_WORDS], value=ALL_WORDS, label="Word", elem_id="mm-word",
                                               allow_custom_value=True)
                            region = gr.Dropdown([ALL_REGIONS], value=ALL_REGIONS, label="Image region",
                                                 elem_id="mm-region", allow_custom_value=True)
                        with gr.Row():
                            attn_image = gr.Image(type="pil", label="Word → image", interactive=False, height=320,
                                                  format="png")
                            with gr.Column():
                                attn_words = gr.HighlightedText(label="Region → words", show_legend=False)
                                attn_note = gr.HTML(label="Attention note")
                    with gr.Tab("Compare networks"):
                        compare_btn = gr.Button("Run every network of this task on the input")
                        compare_note = gr.HTML(label="Compare note")
                        table = gr.Dataframe(label="All networks, same input", interactive=False, wrap=True)
                    with gr.Tab("Model"):
                        # filled when the page opens: the panel reads the head's declarations (the model code)
                        info = gr.Markdown(label="Model information", elem_id="mm-model-info")

        inputs = [image, caption, task, model]
        # Predictions first (fast), then the Captum heatmap and the attention view, each its own API endpoint.
        # /predict in batch mode: requests that wait in the queue together share the encoders' and the head's pass
        gr.on([run.click, caption.submit], app.predict_batch_fn, inputs,
              [fused, text_only, image_only, verdict, signals, status, contributions], api_name="predict",
              batch=True, max_batch_size=max_batch).then(
            app.explain_fn, inputs + [method, head, target], [heatmap, tokens, explain_note], api_name="explain").then(
            app.attention_fn, inputs + [word, region], [word, region, attn_image, attn_words, attn_note],
            api_name="attention")
        method.input(app.explain_fn, inputs + [method, head, target], [heatmap, tokens, explain_note],
                     api_visibility="private")
        gr.on([head.input, target.input], app.explain_fn, inputs + [method, head, target],
              [heatmap, tokens, explain_note], api_visibility="private")
        for dd in (word, region):
            dd.input(app.attention_fn, inputs + [word, region], [word, region, attn_image, attn_words, attn_note],
                     api_visibility="private")
        compare_btn.click(app.compare_fn, [image, caption, task], [table, compare_note], api_name="compare")
        task.change(app.models_fn, task, model, api_name="models")
        model.change(app.model_info_fn, [task, model], info, api_name="model_info")
        model.change(app.targets_fn, [task, model], target, api_visibility="private")
        # A network loads on first use; picking one starts loading it at once and the status says so.
        model.change(app.loading_fn, [task, model], status, api_visibility="private").then(
            app.ready_fn, [task, model], status, api_visibility="private")
        # When the page opens: the same status for its first network (loading in the background), and its panel
        demo.load(app.loading_fn, [task, model], status, api_visibility="private").then(
            app.ready_fn, [task, model], status, api_visibility="private")
        demo.load(app.model_info_fn, [task, model], info, api_visibility="private")
    return demo
