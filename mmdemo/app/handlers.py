"""The page's endpoints: plain functions the Blocks wire up (each with an api_name, so gradio_client can call them),
and what keeps an answer tied to what is on screen (`OnScreen`).

A click of "Predict and explain" analyses its input once (`mmdemo.predict.analyse_requests`: the prediction, its
prepared inputs, the decoded upload); the page keeps what its next steps need of it (`Answer`, with the encoder's
view of the upload) in its session state, and the explanation and attention steps read it instead of predicting
again. Everything the network explains
is rendered generically from `Prediction.explain` and the head's `signals` declarations (mmdemo.render): nothing
here branches on a model name. Bad input and broken checkpoints become a message in the page, never a stack trace.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from ..checkpoint import CheckpointError, read_metrics
from ..inputs import InputError
from ..memory import release_memory
from ..names import HEADS
from ..render import (HEAD_NAMES, _box, answer_header, contribution_words, contributions_json, error_html,
                      highlighted_tokens, label_value, main_signal, measured_share, model_info_md, notes_html,
                      signals_html, uninformative, verdict_html)
from .catalogue import NO_CHECKPOINT_HELP, Catalogue, Loaded

if TYPE_CHECKING:
    import torch

    from ..explain import Deletion, Seen
    from ..predict import Analysis, Prediction, Predictor

ALL_WORDS, ALL_REGIONS, PREDICTED = "(all words)", "(all regions)", "(predicted class)"
COMPARE_COLUMNS = ["network", "fused", "text only", "image only", "agree", "caption / image", "own signal", "ms"]


def _check_box(label: str, units: str, check: Deletion | None) -> str:
    """A map's deletion check (`mmdemo.explain.Deletion`) as a box: green where deleting what the map ranks first
    moves the score more than deleting at random, amber where not, grey where it could not be checked."""
    from ..explain import deletion_line

    kind = "info" if check is None else "ok" if check.beats_random else "warn"
    return _box(html.escape(deletion_line(check, label, units)), kind)


def _answer_or_error(predictor: Predictor, image, caption: str | None) -> Prediction | Exception:
    try:
        return predictor.predict(image, caption)
    except Exception as e:
        return e


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


@dataclass(frozen=True)
class Answer:
    """The prediction on a page, kept in the page's session state (never shared between pages): the selection it
    answers, and what the click computed that its explanation and attention steps read: the prediction, the model
    inputs, and the upload at display size with the part the image encoder read (`Seen`; the full upload, which may
    be tens of megapixels, is not kept)."""

    selection: Selection
    prediction: Prediction
    inputs: dict[str, torch.Tensor] = field(repr=False)
    seen: Seen = field(repr=False)

    @classmethod
    def of(cls, selection: Selection, analysis: Analysis) -> Answer:
        from ..explain import seen

        return cls(selection, analysis.prediction, analysis.inputs, seen(analysis.image_encoder, analysis.image))


class DemoApp(Catalogue):
    """The functions the page and the API call, over the networks of `root` (`Catalogue`); `examples` holds
    examples.json and its images (None: no examples)."""

    def __init__(self, root: Path, examples: Path | None = None):
        super().__init__(root)
        self.examples = Path(examples) if examples is not None else None
        self.on_screen = OnScreen()

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
        and end with the page's session (and, with `needs_answer`, the `Answer` on screen, which `fn` receives as its
        `answer` when it answers these inputs). It runs only while that prediction answers what the page shows, and
        its result lands only if the page still shows it (`OnScreen`); otherwise it changes nothing. Called without
        a session (the API), it just runs (and analyses its input itself)."""
        def handler(*args):
            args, (session, *answered) = list(args[:-1 - needs_answer]), args[-1 - needs_answer:]
            mine = selection_of(*args[:parts], *([None] * (4 - parts)))
            skip = tuple(gr.skip() for _ in range(outputs))
            shown = answered[0] if needs_answer and isinstance(answered[0], Answer) else None
            if session and ((needs_answer and (shown is None or shown.selection != mine))
                            or not self.on_screen.shows(session, mine, parts)):
                return skip
            if needs_answer:  # an API client's session may hold an earlier input's answer: then it analyses its own
                out = fn(*args, answer=shown if shown is not None and shown.selection == mine else None)
            else:
                out = fn(*args)
            return out if self.on_screen.shows(session, mine, parts) else skip

        return handler

    def models_fn(self, task: str | None):
        """Task changed -> the model dropdown lists the networks trained for it."""
        choices = self.model_choices(task)
        return gr.update(choices=choices, value=self.default_model(task) if choices else None)

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
        any networks: one `analyse_requests`, so the shared encoders run once over all of them. Each request gets
        its own answer, or its own error, in `predict_fn`'s seven outputs (each a list, one entry per request).
        With `sessions` (the page's), an eighth output is the page's `Answer` (what the explanation and attention
        steps read; None for an error or without a session), and a request whose page shows another selection by
        the time it is answered changes nothing on that page (`OnScreen`)."""
        from ..predict import analyse_requests

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
            analyses = analyse_requests(requests)
        except Exception as e:
            analyses = [e] * len(requests)
        for i, where, analysis in zip(rows, loaded, analyses):
            if isinstance(analysis, Exception):
                answers[i] = self._predict_error(analysis)
            else:  # a page keeps its click's Answer for the explanation and attention steps; the API needs none
                answer = Answer.of(asked[i], analysis) if sessions[i] else None
                answers[i] = (*self._predict_answer(where, analysis.prediction), answer)
        skip = tuple(gr.skip() for _ in range(8))
        answers = [answer if self.on_screen.shows(session, selection) else skip
                   for answer, session, selection in zip(answers, sessions, asked)]
        return tuple(map(list, zip(*answers)))

    def _predict_error(self, e: Exception) -> tuple:
        return None, None, None, "", "", error_html(self._message(e, "prediction")), None, None

    def _predict_answer(self, loaded: Loaded, pred: Prediction) -> tuple:
        notes = list(pred.warnings) + ([loaded.where.note] if loaded.where.note else [])
        reliability = _box(html.escape(pred.reliability), "info") if pred.reliability else ""
        trust = loaded.predictor.trust
        return (label_value(pred, "fused"), label_value(pred, "text"), label_value(pred, "image"),
                answer_header(loaded.config) + verdict_html(pred, trust) + reliability,
                signals_html(pred, loaded.signals, loaded.predictor.classifier.missing_prior, trust=trust),
                notes_html(notes), contributions_json(pred))

    @staticmethod
    def _answer(loaded: Loaded, image, caption: str | None, answer: Answer | None) -> Answer:
        """The click's answer when the page has one for these inputs, else (the API) this input analysed now."""
        if answer is not None:
            return answer
        config = loaded.config
        return Answer.of(selection_of(image, caption, config.get("task"), config.get("model")),
                         loaded.predictor.analyse(image, caption))

    def explain_fn(self, image, caption: str | None, task: str | None, model: str | None,
                   method: str = "grad-cam", head: str = "fused", target: str | None = None,
                   answer: Answer | None = None):
        """-> (heatmap over the image, token attributions for gr.HighlightedText, note HTML). `answer`: the click's
        (`on_page`), read instead of predicting again."""
        from .. import explain as X

        try:
            loaded = self.load(task, model)
            p = loaded.predictor
            answer = self._answer(loaded, image, caption, answer)
            pred, inputs = answer.prediction, answer.inputs
            input_notes = list(pred.warnings)  # a cut or unreadable caption is said here too
            head = head if head in HEADS else "fused"
            labels = p.labels
            said = uninformative(pred, p.trust) if head == "fused" else None
            if said:  # a map of an answer that carries no information would only look like one
                return None, None, _box(f"{html.escape(said)} So no heatmap or word colours are drawn for it; the "
                                        f"text-only and image-only heads (Explanation options) can still be explained.",
                                        "info")
            cls = labels.index(target) if target in labels else labels.index(pred.top()[0])
            mid = X.method_id(method)
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
            if np.any(tok.scores):
                scores = X.word_scores(tok.tokens, tok.scores)
                checks.append(_check_box(labels[cls], "words",
                                         X.word_deletion(p.pipeline, inputs, scores, target=cls, head=head)))
            measured = pred.contributions
            if measured is not None:
                c = measured.of(cls)
                notes.append(f"Measured on the fused prediction (Shapley values): {contribution_words(c)}")
            notes += input_notes
            if mid == "attention":
                heat, note = self._attention_heat(loaded, pred)
                if heat is None:
                    return None, words, "".join(_box(n, "info") for n in notes + [note]) + "".join(checks)
                picture = X.attention_picture(answer.seen, heat)
                # the network's own attention serves its fused answer: checked on the fused head
                checks.append(_check_box(labels[cls], "image regions",
                                         X.region_deletion(p.pipeline, inputs, heat, target=cls)))
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
                picture = X.attribution_picture(answer.seen, heat, labels[cls], mid)
                if np.any(heat):
                    checks.append(_check_box(labels[cls], "image regions",
                                             X.region_deletion(p.pipeline, inputs, heat, target=cls, head=head)))
            note += " " + html.escape(answer.seen.note)
            return picture, words, "".join(_box(n, "info") for n in notes + [note]) + "".join(checks)
        except Exception as e:
            return None, None, error_html(self._message(e, "explanation"))
        finally:
            release_memory()  # the attributions' temporaries are freed: give their pages back (mmdemo.memory)

    @staticmethod
    def _attention_heat(loaded: Loaded, pred: Prediction) -> tuple[np.ndarray | None, str]:
        from .. import explain as X

        view = X.words_to_image(pred.explain, loaded.signals, pred.tokens, loaded.predictor.image_encoder.grid)
        if view is None:
            return None, "This network has no text ↔ image attention; pick Grad-CAM, Integrated Gradients or Occlusion."
        return view.weights, " ".join(["Attention from the caption's words to the image regions, mean over heads."]
                                      + [html.escape(n) for n in view.notes])

    def attention_fn(self, image, caption: str | None, task: str | None, model: str | None,
                     word: str | None = None, region: str | None = None, answer: Answer | None = None):
        """Pick a word -> which image regions it attends to; pick a region -> which words it attends to.
        -> (word dropdown, region dropdown, heatmap, word weights for gr.HighlightedText, note HTML). `answer`: the
        click's (`on_page`), read instead of predicting again."""
        from .. import explain as X

        keep = gr.update(), gr.update()
        try:
            loaded = self.load(task, model)
            answer = self._answer(loaded, image, caption, answer)
            pred = answer.prediction
            t2i, i2t = X.attention_matrices(pred.explain, loaded.signals, len(pred.tokens))
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
            native = X.has_direction(pred.explain, loaded.signals, ("image", "text"))
            view = X.attention_view(t2i, i2t, pred.tokens, grid, w_idx, r_idx, native)
            heat = X.attention_picture(answer.seen, view.weights, cell=(r_idx, grid) if r_idx is not None else None)
            words = highlighted_tokens(view.words)
            # the deletion check of both maps, on the fused answer the attention serves (X.region_deletion)
            p, inputs = loaded.predictor, answer.inputs
            label = pred.top()[0]
            cls, word_weights = p.labels.index(label), np.array([sc for _, sc in view.words])
            check_html = _check_box(label, "image regions",
                                    X.region_deletion(p.pipeline, inputs, view.weights, target=cls))
            if np.any(word_weights):  # words coloured by attention (a picked region, or a network's own image → text)
                check_html += _check_box(label, "words", X.word_deletion(p.pipeline, inputs, word_weights, target=cls))
            where = f"{html.escape(region)} (white box)" if r_idx is not None else "the whole image"
            who = f"<b>{html.escape(word)}</b> looks" if w_idx is not None else "<b>all words</b> look"
            words_read = (f"how much <b>{where}</b> attends to each word" if native else
                          f"how much each word attends to <b>{where}</b>")
            note = (f"Picture: where {who} in the image. Words: {words_read}; red = more than an even share, purple "
                    f"= less (log scale). Mean over attention heads.<br>"
                    + "<br>".join(html.escape(n) for n in view.notes + view.word_notes
                                  + [answer.seen.note]))
            return (gr.update(choices=word_choices, value=word), gr.update(choices=region_choices, value=region),
                    heat, words, _box(note, "info") + check_html)
        except Exception as e:
            return (*keep, None, None, error_html(self._message(e, "attention view")))

    def compare_fn(self, image, caption: str | None, task: str | None):
        """Every network of the task on the same input -> (table, note HTML). One `predict_requests`: the image is
        read once, the shared encoders run once and the heads side by side; a network that cannot load or predict
        gets its own row's message, and the others still answer. "latency ms": from the click to that answer."""
        from ..predict import predict_requests

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
                             main_signal(pred, loaded[model].signals),
                             round(pred.latency_ms)])
        except Exception as e:
            return pd.DataFrame(rows, columns=columns), error_html(self._message(e, "comparison"))
        return pd.DataFrame(rows, columns=columns), ""

    def model_info_fn(self, task: str | None, model: str | None) -> str:
        """Markdown: where the checkpoint came from, backbones, training data, test metrics, model card."""
        if not task or not model:
            return NO_CHECKPOINT_HELP.format(root=self.root) if not self.catalogue() else "Pick a task and a model."
        try:
            where, config = self.checkpoint_of(task, model)
        except Exception as e:
            return f"**Cannot read this checkpoint:** {self._message(e, 'model panel')}"
        card = where.path / "README.md"
        return model_info_md(model, task, config, read_metrics(where.path), where.source, where.note,
                             self.short(where.path), card.read_text() if card.is_file() else "")

    def example_rows(self, task: str | None) -> list[list[str]]:
        """The task's examples, [[image path, caption], ...], from examples.json in the examples folder (empty when
        there are none)."""
        index = self.examples / "examples.json" if self.examples else None
        if index is None or not index.is_file():
            return []
        return [[str(self.examples / r["image"]), r["caption"]] for r in json.loads(index.read_text())
                if r.get("task") == task and (self.examples / r["image"]).is_file()]

    def examples_fn(self, task: str | None):
        """Task changed -> its own examples (the box hides where it has none)."""
        rows = self.example_rows(task)
        return gr.Dataset(samples=rows, visible=bool(rows), label=f"Examples to try for {task}")
