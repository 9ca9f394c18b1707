"""The Gradio app: upload an image and a caption, pick a task and a network, and see the fused prediction beside
the text-only and image-only ones, the network's own interpretable quantities, Captum and attention heatmaps,
every network of the task side by side, and the model card.

`build_demo(root)` builds the Blocks; `DemoApp` holds the plain functions the Blocks wire up (each with an
api_name, so gradio_client can call them). Everything the network explains is rendered generically from
`Prediction.explain` and the head's `signals` declarations: nothing here branches on a model name.
Bad input and broken checkpoints become a message in the page, never a stack trace. What the page shows answers
what is on screen: a change of the inputs clears it, and a late answer to an earlier selection is dropped (`OnScreen`).
"""

from __future__ import annotations

import html
import logging
import hashlib
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from .checkpoint import CheckpointError, Trust, missing_prior, read_config, read_metrics, read_trust
from .hub import (BUNDLED_DIR, MULTI_LABEL_COLUMNS, REPO_ROOT, HubError, Resolved, bundled_checkpoints, configured_repos,
                  resolve)
from .inputs import InputError
from .memory import release_memory
from .names import HEADS, METHODS
from .render import (HEAD_NAMES, READING_GUIDE, _box, contribution_words, contributions_json, demote_headings,
                     error_html, highlighted_tokens, label_value, main_signal, measured_share, notes_html, prior_note,
                     signals_html, strip_front_matter, uninformative, verdict_html)
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


# A long label (a hashtag, a class name) wraps inside its card instead of running out of it.
PAGE_CSS = """
#mm-fused .output-class, #mm-text .output-class, #mm-image-only .output-class {
  overflow-wrap: anywhere; word-break: break-word; font-size: clamp(1.1rem, 2.2vw, 2rem); line-height: 1.15; }
#mm-fused dl, #mm-text dl, #mm-image-only dl { overflow-wrap: anywhere; }
#mm-compare-table th, #mm-compare-table td { overflow-wrap: break-word; }
"""

PRESS_PREDICT = "Press <b>Predict and explain</b> for an answer to this image and caption{}."

# The compare view's columns and their share of its width (it sits in the right-hand column, ~700 px at 1400 px).
COMPARE_COLUMNS = ["network", "fused", "text only", "image only", "agree", "caption / image", "own signal", "ms"]
COMPARE_LEGEND = ("Each row is one network on the same image and caption. **agree**: its fused, text-only and "
                  "image-only heads name the same class. **caption / image**: the measured share of each modality in "
                  "the fused answer (signed: − pushes against it; see *How much each modality moved* above). **own "
                  "signal**: the first quantity the network reports about itself. **ms**: time to answer.")
COMPARE_WIDTHS = ["11%", "12%", "12%", "12%", "9%", "14%", "22%", "8%"]


Selection = tuple[str, str, str, str]  # (digest of the image, of the caption, task, network)


def selection_of(image, caption: str | None, task: str | None, model: str | None) -> Selection:
    """What an answer answers: the image's and the caption's contents (digests), the task and the network."""
    h = hashlib.blake2b(digest_size=12)
    try:
        if isinstance(image, Image.Image):
            h.update(f"{image.mode}{image.size}".encode())
            h.update(image.tobytes())
        else:  # a path (the API, examples) or nothing
            h.update(repr(image).encode())
    except (OSError, ValueError):  # a truncated or broken image: the prediction will say so; key it by its object
        h.update(f"unreadable {id(image)}".encode())
    text = hashlib.blake2b((caption or "").encode(), digest_size=12).hexdigest()
    return h.hexdigest(), text, task or "", model or ""


class OnScreen:
    """What each open page shows, so that an answer lands only on the selection it answers.

    A page holds a session id in a hidden component. Whenever its image, caption, task or network changes, and
    whenever it asks for a prediction, the server is told what is now on screen (`show`: a change clears the result
    panels). A result handler knows what it answers (its own inputs) and returns its answer only if that is still
    what the page shows (`shows`), otherwise it changes nothing: a request started before a change never fills the
    panels after it, while a late echo of the same selection (an example's image arriving after the click) is no
    change at all. API callers have no session (""): they are never held back. The table is bounded: a page not
    seen for LIMIT later pages is forgotten, and then whatever it asks is taken as on screen."""

    LIMIT = 10_000

    def __init__(self):
        self._pages: OrderedDict[str, Selection] = OrderedDict()
        self._lock = threading.Lock()

    def show(self, session: str, selection: Selection) -> bool:
        """Record that `session` shows `selection`; True when that is a change."""
        if not session:
            return True
        with self._lock:
            changed = self._pages.get(session) != selection
            self._pages[session] = selection
            self._pages.move_to_end(session)
            while len(self._pages) > self.LIMIT:
                self._pages.popitem(last=False)
            return changed

    def shows(self, session: str, selection: Selection, parts: int = 4) -> bool:
        """Does `session` still show `selection` (its first `parts` fields: 3 = image, caption and task)?"""
        if not session:
            return True
        with self._lock:
            shown = self._pages.get(session)
        return shown is None or shown[:parts] == selection[:parts]


class DemoApp:
    """Predictors cached per (task, model), loaded on first use; the functions the page and the API call."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else BUNDLED_DIR
        self._cache: dict[tuple[str, str], Loaded] = {}
        self._lock = threading.Lock()
        self.on_screen = OnScreen()

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

    def trust_of(self, task: str, model: str) -> Trust:
        """What the checkpoint measured about itself (its config.json), read without loading it (empty if unknown)."""
        try:
            cached = self._cache.get((task, model))
            return read_trust(cached.config if cached else read_config(resolve(task, model, self.root).path))
        except user_errors():
            return Trust()

    def default_model(self, task: str) -> str | None:
        """The network the page offers first. A network below a guess that ignores the input on the measure the task
        is judged on, or whose answer does not move with the input, comes last. Among the rest: on a task judged on
        inputs training never saw (fake news: new events), the best there; otherwise the best on dev, where the
        networks were chosen (the page does not pick by test scores)."""
        models = self.catalogue().get(task, [])
        trust = {m: self.trust_of(task, m) for m in models}
        metric = TASKS[task].paper_metric if task in TASKS else "weighted_f1"
        unseen = task in TASKS and TASKS[task].judged_on_unseen

        def rank(model: str) -> tuple:
            t = trust[model]
            if unseen and t.judged:
                score = t.judged["value"]
            else:
                m = read_metrics(self.root / task / model).get("dev", {}).get("fused", {})
                score = float(m.get(metric, m.get("accuracy", -1.0)))
            return t.informative is not False and not t.below_floor, not unseen or t.judged is not None, score

        return max(models, key=rank) if models else None

    def model_choices(self, task: str | None) -> list[tuple[str, str]]:
        """The network picker's (label, network) pairs: a network that scores below a guess that ignores the input on
        the measure the task is judged on, or whose answer does not change with the input, says so in its label."""
        choices = []
        for model in self.catalogue().get(task or "", []):
            t = self.trust_of(task, model)
            mark = (" (answer does not change with the input)" if t.informative is False else
                    " (below a guess that ignores the input)" if t.below_floor else "")
            choices.append((model + mark, model))
        return choices

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

    def on_page(self, fn: Callable, outputs: int, needs_answer: bool = True, parts: int = 4) -> Callable:
        """`fn` as a handler of the page: its inputs start with the image, caption, task (and network: `parts` 4)
        and end with the page's session (and, with `needs_answer`, the selection the prediction on screen answers).
        It runs only while that prediction answers what the page shows, and its result lands only if the page
        still shows it (`OnScreen`); otherwise it changes nothing. Called without a session (the API), it just runs."""
        def handler(*args):
            args, (session, *answered) = list(args[:-1 - needs_answer]), args[-1 - needs_answer:]
            mine = selection_of(*args[:parts], *([None] * (4 - parts)))
            skip = tuple(gr.skip() for _ in range(outputs))
            if session and ((needs_answer and answered[0] != mine) or not self.on_screen.shows(session, mine, parts)):
                return skip
            out = fn(*args)
            return out if self.on_screen.shows(session, mine, parts) else skip

        return handler

    @staticmethod
    def _signals(loaded: Loaded) -> dict[str, Signal]:
        return loaded.predictor.classifier.head.signals

    def _message(self, e: Exception, what: str) -> str:
        """The text the page shows for `e`: a user error's own message, without the server's paths (a checkpoint is
        named from the checkpoints folder down); anything else is logged with its traceback and named only."""
        if isinstance(e, user_errors()):
            text = str(e).replace(str(self.root.resolve()), self.root.name).replace(str(self.root), self.root.name)
            return text.replace(str(Path.home()), "~")
        log.error("%s failed", what, exc_info=e)  # its traceback, also where e was caught earlier
        return f"Sorry, the {what} failed unexpectedly ({type(e).__name__}). The details are in the server log."

    # -- the functions the page wires up --

    def models_fn(self, task: str | None):
        """Task changed -> the model dropdown lists the networks trained for it."""
        choices = self.model_choices(task)
        return gr.update(choices=choices, value=self.default_model(task) if choices else None)

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
        return tuple(column[0] for column in self.predict_batch_fn([image], [caption], [task], [model])[:7])

    def predict_batch_fn(self, images: list, captions: list, tasks: list, models: list,
                         sessions: list | None = None) -> tuple[list, ...]:
        """`predict_fn` over requests that arrived together (the /predict endpoint runs in Gradio's batch mode), for
        any networks: one `predict_requests`, so the shared encoders run once over all of them. Each request gets
        its own answer, or its own error, in `predict_fn`'s seven outputs (each a list, one entry per request).
        With `sessions` (the page's), an eighth output says which selection each answer answers, and a request whose
        page shows another selection by the time it is answered changes nothing on that page (`OnScreen`)."""
        from .predict import predict_requests

        sessions = sessions or [""] * len(images)
        asked = [selection_of(*request) for request in zip(images, captions, tasks, models)]
        for session, selection in zip(sessions, asked):  # a click says what is on screen
            self.on_screen.show(session, selection)
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
        skip = tuple(gr.skip() for _ in range(8))
        answers = [(*answer, selection if answer[0] else None) if self.on_screen.shows(session, selection) else skip
                   for answer, session, selection in zip(answers, sessions, asked)]
        return tuple(map(list, zip(*answers)))

    def _predict_error(self, e: Exception) -> tuple:
        return None, None, None, "", "", error_html(self._message(e, "prediction")), None

    def _predict_answer(self, loaded: Loaded, pred: Prediction) -> tuple:
        notes = list(pred.warnings) + ([loaded.where.note] if loaded.where.note else [])
        reliability = _box(html.escape(pred.reliability), "info") if pred.reliability else ""
        answers = (f"<div class='mm-answers' style='font-size:90%;opacity:.85'>Answer of <b>"
                   f"{html.escape(loaded.config.get('model', ''))}</b> on <b>{html.escape(loaded.config.get('task', ''))}"
                   f"</b> for the image and caption above.</div>")
        trust = loaded.predictor.trust
        return (label_value(pred, "fused"), label_value(pred, "text"), label_value(pred, "image"),
                answers + verdict_html(pred, trust) + reliability,
                signals_html(pred, self._signals(loaded), loaded.predictor.classifier.missing_prior, trust=trust),
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
            said = uninformative(pred, p.trust) if head == "fused" else None
            if said:  # a map of an answer that carries no information would only look like one
                return None, None, _box(f"{html.escape(said)} So no heatmap or word colours are drawn for it; the "
                                        f"text-only and image-only heads (Explanation options) can still be explained.",
                                        "info")
            cls = labels.index(target) if target in labels else labels.index(pred.top()[0])
            mid = X.method_id(method)
            upload = _rgb(image)
            tok = X.token_attributions(p.pipeline, inputs, target=cls, head=head, max_steps=X.WORD_MAX_STEPS)
            # [CLS]/[SEP] stay in the baseline, so their attribution is 0 by construction: show the words only
            words = highlighted_tokens([(w, sc) for w, sc in X.merge_subwords(tok.tokens, tok.normalised())
                                        if not X.is_special_token(w)])
            notes = [f"Explaining <b>{html.escape(model or '')}</b> on <b>{html.escape(task or '')}</b>: the "
                     f"<b>{HEAD_NAMES[head].lower()}</b> head's score for <b>"
                     f"{html.escape(labels[cls])}</b>{' (the fused prediction)' if target not in labels else ''}. "
                     f"Words: red pushes towards it, purple against (Integrated Gradients on the word embeddings; "
                     f"the strongest word is drawn at full colour)."]
            if not np.any(tok.scores):
                notes.append(f"The {HEAD_NAMES[head].lower()} head does not read the caption.")
            elif tok.convergence is not None:
                notes.append(html.escape(tok.convergence.describe("The word attributions")))
            checks = []  # the deletion check of each map (X.Deletion): green where it beats random deletion

            def check_box(check: X.Deletion | None, units: str) -> str:
                kind = "info" if check is None else "ok" if check.beats_random else "warn"
                return _box(html.escape(X.deletion_line(check, labels[cls], units)), kind)

            if np.any(tok.scores):
                checks.append(check_box(X.word_deletion(p.pipeline, inputs, X.word_scores(tok.tokens, tok.scores),
                                                        target=cls, head=head), "words"))
            measured = pred.contributions
            if measured is not None:
                c = measured.of(cls)
                notes.append(f"Measured on the fused prediction (Shapley values): {contribution_words(c)}")
            notes += input_notes
            if mid == "attention":
                heat, note = self._attention_heat(loaded, image, caption)
                if heat is None:
                    return None, words, "".join(_box(n, "info") for n in notes + [note]) + "".join(checks)
                picture = X.attention_picture(upload, p.image_encoder, heat)
                # the network's own attention serves its fused answer: checked on the fused head
                checks.append(check_box(X.region_deletion(p.pipeline, inputs, heat, target=cls), "image regions"))
            else:
                heat, convergence = X.image_attribution(mid, p.pipeline, inputs, target=cls, head=head)
                note = {"grad-cam": "Grad-CAM on the image encoder's last feature map.",
                        "integrated-gradients": "Integrated Gradients on the pixels (baseline: the mean image).",
                        "occlusion": "Occlusion: how much the score drops when each square is blanked."}[mid]
                if convergence is not None:
                    note += " " + html.escape(convergence.describe("The pixel attributions"))
                if not np.any(heat):
                    note += (" The map is flat: this head's score for the class does not depend on this part of "
                             "the image encoder (e.g. it reads only the pooled vector); try another method.")
                picture = X.attribution_picture(upload, p.image_encoder, heat, labels[cls], mid)
                if np.any(heat):
                    checks.append(check_box(X.region_deletion(p.pipeline, inputs, heat, target=cls, head=head),
                                            "image regions"))
            note += " " + html.escape(X.seen_note(p.image_encoder, upload))
            return picture, words, "".join(_box(n, "info") for n in notes + [note]) + "".join(checks)
        except Exception as e:
            return None, None, error_html(self._message(e, "explanation"))
        finally:
            release_memory()  # the attributions' temporaries are freed: give their pages back (mmdemo.memory)

    def _attention_heat(self, loaded: Loaded, image, caption) -> tuple[np.ndarray | None, str]:
        from . import explain as X

        pred = loaded.predictor.predict(image, caption)
        view = X.words_to_image(pred.explain, self._signals(loaded), pred.tokens, loaded.predictor.image_encoder.grid)
        if view is None:
            return None, "This network has no text ↔ image attention; pick Grad-CAM, Integrated Gradients or Occlusion."
        return view.weights, " ".join(["Attention from the caption's words to the image regions, mean over heads."]
                                      + [html.escape(n) for n in view.notes])

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
            said = uninformative(pred, loaded.predictor.trust)
            if said:  # where the answer carries no information, a map of what led to it would mislead
                return (*keep, None, None, _box(f"{html.escape(said)} So its attention maps are not drawn.", "info"))
            grid = X.grid_shape(t2i.shape[1], loaded.predictor.image_encoder.grid)
            word_choices = [ALL_WORDS] + [f"{i + 1}: {w}" for i, (w, _) in enumerate(X.word_spans(pred.tokens))]
            region_choices = [ALL_REGIONS] + [f"row {r + 1}, col {c + 1}" for r in range(grid[0])
                                              for c in range(grid[1])]
            word = word if word in word_choices else ALL_WORDS
            region = region if region in region_choices else ALL_REGIONS
            w_idx = None if word == ALL_WORDS else word_choices.index(word) - 1  # None: the mean over all
            r_idx = None if region == ALL_REGIONS else region_choices.index(region) - 1
            upload, encoder = _rgb(image), loaded.predictor.image_encoder
            native = X.has_direction(pred.explain, self._signals(loaded), ("image", "text"))
            view = X.attention_view(t2i, i2t, pred.tokens, grid, w_idx, r_idx, native)
            heat = X.attention_picture(upload, encoder, view.weights,
                                       cell=(r_idx, grid) if r_idx is not None else None)
            words = highlighted_tokens(view.words)
            # the deletion check of both maps, on the fused answer the attention serves (X.region_deletion)
            p = loaded.predictor
            inputs, _ = p.prepare(image, caption)
            label = pred.top()[0]
            cls, word_weights = p.labels.index(label), np.array([sc for _, sc in view.words])
            checks = [(X.region_deletion(p.pipeline, inputs, view.weights, target=cls), "image regions")]
            if np.any(word_weights):  # words coloured by attention (a picked region, or a network's own image → text)
                checks.append((X.word_deletion(p.pipeline, inputs, word_weights, target=cls), "words"))
            check_html = "".join(_box(html.escape(X.deletion_line(c, label, units)),
                                      "info" if c is None else "ok" if c.beats_random else "warn")
                                 for c, units in checks)
            where = f"{html.escape(region)} (white box)" if r_idx is not None else "the whole image"
            who = f"<b>{html.escape(word)}</b> looks" if w_idx is not None else "<b>all words</b> look"
            words_read = (f"how much <b>{where}</b> attends to each word" if native else
                          f"how much each word attends to <b>{where}</b>")
            note = (f"Picture: where {who} in the image. Words: {words_read}; red = more than an even share, purple "
                    f"= less (log scale). Mean over attention heads.<br>"
                    + "<br>".join(html.escape(n) for n in view.notes + view.word_notes
                                  + [X.seen_note(encoder, upload)]))
            return (gr.update(choices=word_choices, value=word), gr.update(choices=region_choices, value=region),
                    heat, words, _box(note, "info") + check_html)
        except Exception as e:
            return (*keep, None, None, error_html(self._message(e, "attention view")))

    def compare_fn(self, image, caption: str | None, task: str | None):
        """Every network of the task on the same input -> (table, note HTML). One `predict_requests`: the image is
        read once, the shared encoders run once and the heads side by side; a network that cannot load or predict
        gets its own row's message, and the others still answer. "latency ms": from the click to that answer."""
        from .predict import predict_requests

        columns = COMPARE_COLUMNS
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
                             measured_share(pred, loaded[model].predictor.trust),
                             main_signal(pred, self._signals(loaded[model])),
                             round(pred.latency_ms)])
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


def example_rows(task: str | None) -> list[list[str]]:
    """The task's examples, [[image path, caption], ...], from examples/examples.json (empty when there are none)."""
    import json

    index = EXAMPLES_DIR / "examples.json"
    if not index.is_file():
        return []
    return [[str(EXAMPLES_DIR / r["image"]), r["caption"]] for r in json.loads(index.read_text())
            if r.get("task") == task and (EXAMPLES_DIR / r["image"]).is_file()]


def examples_update(task: str | None):
    """Task changed -> its own examples (the box hides where it has none)."""
    rows = example_rows(task)
    return gr.Dataset(samples=rows, visible=bool(rows), label=f"Examples to try for {task}")


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
        gr.HTML(f"<style>{PAGE_CSS}</style>", padding=False, container=False)  # Blocks take no css in Gradio 6
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
                    model = gr.Dropdown(app.model_choices(task0), value=model0, label="Network", elem_id="mm-model",
                                        allow_custom_value=True)
                method = gr.Dropdown([(label, key) for key, label in METHODS.items()], value="grad-cam",
                                     label="Image explanation", elem_id="mm-method")
                with gr.Accordion("Explanation options", open=False):
                    with gr.Row():
                        head = gr.Radio([(HEAD_NAMES[h], h) for h in HEADS], value="fused", label="Explain head")
                        target = gr.Dropdown([PREDICTED] + labels0, value=PREDICTED, label="Explain class",
                                             allow_custom_value=True)
                run = gr.Button("Predict and explain", variant="primary", elem_id="mm-run")
                with gr.Accordion("How to read the numbers on this page", open=False, elem_id="mm-guide"):
                    gr.Markdown(READING_GUIDE)
                rows = example_rows(task0)
                # the current task's examples; a click fills the image and the caption (a person then predicts)
                examples = gr.Dataset(components=[image, caption], samples=rows, visible=bool(rows), type="values",
                                      label=f"Examples to try for {task0}", samples_per_page=6, elem_id="mm-examples")
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
                            heatmap = gr.Image(type="pil", label="Image explanation", interactive=False, height=420,
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
                            attn_image = gr.Image(type="pil", label="Word → image", interactive=False, height=420,
                                                  format="png")
                            with gr.Column():
                                attn_words = gr.HighlightedText(label="Region → words", show_legend=False)
                                attn_note = gr.HTML(label="Attention note")
                    with gr.Tab("Compare networks"):
                        compare_btn = gr.Button("Run every network of this task on the input", elem_id="mm-compare")
                        gr.Markdown(COMPARE_LEGEND)
                        compare_note = gr.HTML(label="Compare note")
                        # hidden until the first run; narrow columns that wrap, so that it fits beside the inputs
                        table = gr.Dataframe(label="All networks, same input", interactive=False, wrap=True,
                                             visible=False, elem_id="mm-compare-table", max_height=600,
                                             column_widths=COMPARE_WIDTHS)
                    with gr.Tab("Model"):
                        # filled when the page opens: the panel reads the head's declarations (the model code)
                        info = gr.Markdown(label="Model information", elem_id="mm-model-info")

        inputs = [image, caption, task, model]
        # What is on screen must answer the selection on screen (`OnScreen`): every change of the image, the caption,
        # the task or the network clears the result panels at once (no queue); an answer for a selection the page no
        # longer shows changes nothing.
        session = gr.Textbox("", visible=False, elem_id="mm-session")  # sent with every event, "" for the API
        answered = gr.State(None)  # the selection the prediction on screen answers (None: no prediction on screen)
        cleared = {fused: None, text_only: None, image_only: None, signals: "", status: "", contributions: None,
                   heatmap: None, tokens: None, explain_note: "", attn_image: None, attn_words: None, attn_note: "",
                   table: gr.update(value=None, visible=False), compare_note: "",
                   word: gr.update(choices=[ALL_WORDS], value=ALL_WORDS),
                   region: gr.update(choices=[ALL_REGIONS], value=ALL_REGIONS), answered: None}

        def new_selection(page, image_now, caption_now, task_now, model_now):
            if not app.on_screen.show(page, selection_of(image_now, caption_now, task_now, model_now)):
                return {component: gr.skip() for component in (verdict, *cleared)}  # the same selection again
            what = (f" with <b>{html.escape(model_now)}</b> on <b>{html.escape(task_now)}</b>"
                    if task_now and model_now else "")
            return {verdict: _box(PRESS_PREDICT.format(what), "info"), **cleared}

        gr.on([image.change, caption.change, task.change, model.change], new_selection, [session, *inputs],
              {verdict, *cleared}, queue=False, api_visibility="private")
        demo.load(lambda: uuid.uuid4().hex, None, session, queue=False, api_visibility="private")

        predict_outputs = [fused, text_only, image_only, verdict, signals, status, contributions, answered]
        explain_outputs = [heatmap, tokens, explain_note]
        attention_outputs = [word, region, attn_image, attn_words, attn_note]
        explain = app.on_page(app.explain_fn, len(explain_outputs))
        attention = app.on_page(app.attention_fn, len(attention_outputs))

        def settle(panels: list, only_a_stale_answer: bool) -> Callable:
            """A check once a result has reached the page: an answer decided a moment before the selection changed
            can arrive after the change's clearing; if the answer on screen is no longer the selection's, clear the
            panels again (predictions: only when one is on screen, so that a bad input's message stays)."""
            def check(page, image_now, caption_now, task_now, model_now, shown):
                stale = shown != selection_of(image_now, caption_now, task_now, model_now)
                if not page or not stale or (only_a_stale_answer and shown is None):
                    return {panel: gr.skip() for panel in panels}
                return {panel: cleared.get(panel, _box(PRESS_PREDICT.format(""), "info") if panel is verdict
                                           else gr.skip()) for panel in panels}

            return check

        after = dict(inputs=[session, *inputs, answered], queue=False, api_visibility="private")
        # Predictions first (fast), then the Captum heatmap and the attention view, each its own API endpoint.
        # /predict in batch mode: requests that wait in the queue together share the encoders' and the head's pass
        gr.on([run.click, caption.submit], app.predict_batch_fn, inputs + [session], predict_outputs,
              api_name="predict", batch=True, max_batch_size=max_batch).then(
            settle(predict_outputs, True), outputs=set(predict_outputs), **after).then(
            explain, inputs + [method, head, target, session, answered], explain_outputs, api_name="explain").then(
            settle(explain_outputs, False), outputs=set(explain_outputs), **after).then(
            attention, inputs + [word, region, session, answered], attention_outputs, api_name="attention").then(
            settle(attention_outputs, False), outputs=set(attention_outputs), **after)
        gr.on([method.input, head.input, target.input], explain, inputs + [method, head, target, session, answered],
              explain_outputs, api_visibility="private").then(
            settle(explain_outputs, False), outputs=set(explain_outputs), **after)
        gr.on([word.input, region.input], attention, inputs + [word, region, session, answered], attention_outputs,
              api_visibility="private").then(settle(attention_outputs, False), outputs=set(attention_outputs), **after)
        compare_btn.click(app.on_page(app.compare_fn, 2, needs_answer=False, parts=3), [image, caption, task, session],
                          [table, compare_note], api_name="compare").then(
            app.on_page(lambda _image, _caption, task_now: gr.update(visible=True, label=f"Every network of "
                                                                      f"{task_now}, same input"),
                        1, needs_answer=False, parts=3),
            [image, caption, task, session], table, api_visibility="private")
        # The network list, its panel and its classes follow the task even when the new task's default network has
        # the same name as the old one (then the network dropdown does not change).
        examples.click(lambda row: (row[0], row[1]), examples, [image, caption], api_visibility="private")
        task.change(examples_update, task, examples, api_visibility="private")
        task.change(app.models_fn, task, model, api_name="models").then(
            app.model_info_fn, [task, model], info, api_visibility="private").then(
            app.targets_fn, [task, model], target, api_visibility="private")
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
