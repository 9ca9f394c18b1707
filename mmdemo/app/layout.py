"""The page's layout: `build_demo` builds the Blocks and wires each event to its handler (mmdemo.app.handlers).

An answer belongs to what is on screen: every change of the image, the caption, the task or the network clears the
result panels at once, and an answer to a selection the page no longer shows changes nothing (`OnScreen`). A click
predicts once; the explanation and attention steps read that click's analysis from the page's session state.
"""

from __future__ import annotations

import html
import uuid
from pathlib import Path
from typing import Callable

import gradio as gr

from ..names import HEADS, METHODS
from ..render import HEAD_NAMES, READING_GUIDE, _box
from .catalogue import NO_CHECKPOINT_HELP
from .handlers import ALL_REGIONS, ALL_WORDS, PREDICTED, Answer, DemoApp, selection_of


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


# A long label (a hashtag, a class name) wraps inside its card instead of running out of it.
PAGE_CSS = """
#mm-fused .output-class, #mm-text .output-class, #mm-image-only .output-class {
  overflow-wrap: anywhere; word-break: break-word; font-size: clamp(1.1rem, 2.2vw, 2rem); line-height: 1.15; }
#mm-fused dl, #mm-text dl, #mm-image-only dl { overflow-wrap: anywhere; }
#mm-compare-table th, #mm-compare-table td { overflow-wrap: break-word; }
"""

PRESS_PREDICT = "Press <b>Predict and explain</b> for an answer to this image and caption{}."

# The compare view's columns (handlers.COMPARE_COLUMNS) and their share of its width (it sits in the right-hand
# column, ~700 px at 1400 px).
COMPARE_LEGEND = ("Each row is one network on the same image and caption. **agree**: its fused, text-only and "
                  "image-only heads name the same class. **caption / image**: the measured share of each modality in "
                  "the fused answer (signed: − pushes against it; see *How much each modality moved* above). **own "
                  "signal**: the first quantity the network reports about itself. **ms**: time to answer.")
COMPARE_WIDTHS = ["11%", "12%", "12%", "12%", "9%", "14%", "22%", "8%"]


def build_demo(checkpoints: Path, examples: Path | None = None, max_batch: int = 8) -> gr.Blocks:
    """The whole page. `checkpoints` holds <task>/<model>/ checkpoint directories; `examples` holds examples.json
    and its images (None: no examples). max_batch: /predict requests waiting together are answered by one batched
    pass, up to this many (1: one by one). Building it imports no torch: the model code loads with the first network
    (`DemoApp.preload`, which app.py starts once the page is served, or the first request)."""
    app = DemoApp(checkpoints, examples)
    cat = app.catalogue()
    task0, model0 = app.first_network()
    labels0 = app.labels_of(task0, model0)
    if app.examples is not None and app.examples.is_dir():
        gr.set_static_paths([app.examples])

    with gr.Blocks(title="mmdemo — image + caption classification") as demo:
        demo.mmdemo_app = app  # tests and benchmarks reach the cache through this
        gr.HTML(f"<style>{PAGE_CSS}</style>", padding=False, container=False)  # Blocks take no css in Gradio 6
        gr.Markdown("## mmdemo — what do the picture and its caption say, together and apart?\n"
                    "Upload an image, write its caption, pick a task and a network. You get the **fused** "
                    "prediction next to the **text-only** and **image-only** ones, what the network itself "
                    "reports about the fusion, and heatmaps that show which pixels and words drove the answer.")
        if not cat:
            gr.Markdown(NO_CHECKPOINT_HELP.format(root=app.short(app.root)))
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
                rows = app.example_rows(task0)
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
        # the prediction on screen: the selection it answers and the click's analysis, which the explanation and
        # attention steps read (an `Answer`; None: no prediction on screen)
        answered = gr.State(None)
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
            def check(page, image_now, caption_now, task_now, model_now, shown: Answer | None):
                answers = shown.selection if isinstance(shown, Answer) else None
                stale = answers != selection_of(image_now, caption_now, task_now, model_now)
                if not page or not stale or (only_a_stale_answer and answers is None):
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
        task.change(app.examples_fn, task, examples, api_visibility="private")
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
