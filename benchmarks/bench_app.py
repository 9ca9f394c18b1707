"""How fast the app answers on this CPU: prediction latency per bundled network, one explanation per method,
and the time from starting `python app.py` to its first answer. Prints a markdown table; asserts nothing.

    python benchmarks/bench_app.py                 # bundled checkpoints/ (or an untrained stand-in)
    python benchmarks/bench_app.py --threads 2 --runs 30 --root checkpoints
    python benchmarks/bench_app.py --untrained infig mahfnet cacnet   # networks not bundled yet
    python benchmarks/bench_app.py --starts 5     # only `python app.py` start-up: page served, first answer
    python benchmarks/bench_app.py --clicks 6     # only a click of Predict and explain: head passes and time

Targets: prediction p50 <= 150 ms, Integrated Gradients <= 3 s. When checkpoints/ holds no network, an
UNTRAINED concat checkpoint with the default encoders (minilm-l6 + efficientnet-lite0) is written to a temp
directory: latency does not depend on the weights' values, and the table says so.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

EXAMPLES = [("beach.jpg", "Best day ever at the beach, sun, sea and ice cream!"),
            ("rain.jpg", "Grey, cold and raining all week. So miserable."),
            ("cake.jpg", "Happy birthday to my best friend, love you!")]


def make_untrained_checkpoint(root: Path, model: str = "concat", task: str = "mvsa-single",
                              text: str = "minilm-l6", image: str = "efficientnet-lite0") -> Path:
    """A randomly initialised checkpoint with real encoders: the same compute as a trained one."""
    import torch

    from mmdemo.checkpoint import save_checkpoint
    from mmdemo.encoders import FeatureDims, shared_image_encoder, shared_text_encoder
    from mmdemo.models import MultimodalClassifier
    from mmdemo.tasks import get_task

    te, ie = shared_text_encoder(text), shared_image_encoder(image)
    torch.manual_seed(0)
    clf = MultimodalClassifier(model=model, task=task, labels=list(get_task(task).labels), text_encoder=text,
                               image_encoder=image, dims=FeatureDims.of(te, ie).to_dict())
    card = (f"# {model} on {task} (UNTRAINED)\n\nRandom head weights, written by benchmarks/bench_app.py to "
            f"measure speed. Its predictions mean nothing.\n")
    return save_checkpoint(clf, root / task / model, metrics={}, card=card)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def timed(fn, runs: int, warmup: int = 1) -> list[float]:
    """Wall-clock milliseconds of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def interleaved(p, images, runs: int) -> tuple[list[float], list[float]]:
    """ms of `runs` predictions as the app makes them (the head on the input's four coalitions, for the modality
    contributions) and of the same inputs without the contributions (encoders + the head on the input alone),
    taking turns on every input so that a busy machine slows both alike."""
    import torch

    from mmdemo.pipeline import ENCODED

    def plain(image, caption):
        inputs, _ = p.prepare(image, caption)
        with torch.no_grad():
            p.pipeline(**inputs)

    full, bare = [], []
    for r in range(runs + 2):
        image, caption = images[r % len(images)]
        pair = [(full, lambda: p.predict(image, caption)), (bare, lambda: plain(image, caption))]
        for out, fn in pair[::1 if r % 2 else -1]:
            ENCODED.clear()  # every timed prediction is of a new input: nothing of it is encoded yet
            t = time.perf_counter()
            fn()
            if r >= 2:  # two warm-up rounds
                out.append((time.perf_counter() - t) * 1000)
    return full, bare


def bench_predictions(root: Path, runs: int) -> tuple[list[list[str]], tuple[str, str] | None]:
    from PIL import Image

    from mmdemo.hub import bundled_checkpoints
    from mmdemo.predict import Predictor

    rows, first = [], None
    images = [(Image.open(REPO / "examples" / f).convert("RGB"), c) for f, c in EXAMPLES]
    for task, models in bundled_checkpoints(root).items():
        for model, path in models.items():
            t = time.perf_counter()
            p = Predictor.from_checkpoint(path, task=task)
            load_ms = (time.perf_counter() - t) * 1000
            ms, plain_ms = interleaved(p, images, runs)
            rows.append([f"predict {task}/{model}", f"{statistics.median(ms):.0f}", f"{pct(ms, 95):.0f}",
                         f"{runs} runs; load {load_ms:.0f} ms (frozen encoders shared after the first); the "
                         f"modality contributions cost {statistics.median(ms) / statistics.median(plain_ms) - 1:+.0%} "
                         f"over the same prediction without them ({statistics.median(plain_ms):.0f} ms)"])
            first = first or (task, model)
    return rows, first


def bench_compare(root: Path, runs: int) -> list[list[str]]:
    """The compare view (every bundled network of a task on one new input: one `predict_requests`, what
    DemoApp.compare_fn runs) against one network's prediction of a new input; against the networks predicting one
    after another (the compare view before the shared preprocessing and the side-by-side heads); and against every
    network encoding the input itself (ENCODED off: the code before the shared encoder pass). Taking turns on every
    input."""
    from PIL import Image

    from mmdemo.hub import bundled_checkpoints
    from mmdemo.pipeline import ENCODED
    from mmdemo.predict import Predictor, predict_requests

    images = [(Image.open(REPO / "examples" / f).convert("RGB"), c) for f, c in EXAMPLES]
    rows, size = [], ENCODED.size
    for task, models in bundled_checkpoints(root).items():
        if len(models) < 2:
            continue
        ps = [Predictor.from_checkpoint(path, task=task) for path in models.values()]
        compare = lambda im, c: predict_requests([(p, im, c) for p in ps])  # noqa: E731
        in_turn = lambda im, c: [p.predict(im, c) for p in ps]  # noqa: E731
        cases = {"one": lambda im, c: ps[0].predict(im, c), "compare": compare, "in turn": in_turn, "each": in_turn}
        ms: dict[str, list[float]] = {k: [] for k in cases}
        for r in range(runs + 1):
            image, caption = images[r % len(images)]
            for name in (list(cases) if r % 2 else list(cases)[::-1]):
                ENCODED.clear()
                ENCODED.size = 0 if name == "each" else size
                t = time.perf_counter()
                cases[name](image, caption)
                if r:  # one warm-up round
                    ms[name].append((time.perf_counter() - t) * 1000)
        ENCODED.size = size
        one, shared, in_turn_ms, each = (statistics.median(ms[k]) for k in cases)
        rows.append([f"compare {task}: {len(ps)} networks, one encoder pass", f"{shared:.0f}", f"{pct(ms['compare'], 95):.0f}",
                     f"{runs} runs; {shared / one:.2f}x one network's prediction ({next(iter(models))}, {one:.0f} ms); "
                     f"the networks predicting in turn: {in_turn_ms:.0f} ms ({in_turn_ms / one:.2f}x); each encoding the "
                     f"input itself: {each:.0f} ms ({each / shared:.2f}x)"])
    return rows


def bench_batch(root: Path, runs: int, size: int = 8) -> list[list[str]]:
    """What a batch of /predict requests costs the server's model code: `size` new inputs spread over every
    bundled network (the app's `predict_requests`, one encoder pass over all of them) against the same requests
    one by one, taking turns; ms per request."""
    from PIL import Image

    from mmdemo.hub import bundled_checkpoints
    from mmdemo.pipeline import ENCODED
    from mmdemo.predict import Predictor, predict_requests

    images = [(Image.open(REPO / "examples" / f).convert("RGB"), c) for f, c in EXAMPLES]
    ps = [Predictor.from_checkpoint(path, task=task) for task, models in bundled_checkpoints(root).items()
          for path in models.values()]
    ms: dict[str, list[float]] = {"batched": [], "one by one": []}
    for r in range(runs + 1):
        requests = []
        for k in range(size):  # new inputs: every caption and image differs from all before (a pixel is changed)
            image, caption = images[k % len(images)]
            image = image.copy()
            image.putpixel((r, k), (r % 256, k, 0))
            requests.append((ps[(r * size + k) % len(ps)], image, f"{caption} ({r}.{k})"))
        for name in (list(ms) if r % 2 else list(ms)[::-1]):
            ENCODED.clear()
            t = time.perf_counter()
            if name == "batched":
                predict_requests(requests)
            else:
                for p, im, c in requests:
                    p.predict(im, c)
            if r:
                ms[name].append((time.perf_counter() - t) * 1000 / size)
    batched, single = statistics.median(ms["batched"]), statistics.median(ms["one by one"])
    return [[f"predict_requests: {size} new inputs over the {len(ps)} bundled networks, batched", f"{batched:.0f}",
             f"{pct(ms['batched'], 95):.0f}", f"ms per request, {runs} runs; one by one: {single:.0f} ms per request "
             f"({single / batched:.2f}x)"]]


def bench_explanations(root: Path, task: str, model: str, runs: int) -> list[list[str]]:
    from PIL import Image

    from mmdemo import explain as X
    from mmdemo.predict import Predictor

    p = Predictor.from_checkpoint(root / task / model, task=task)
    image, caption = Image.open(REPO / "examples" / EXAMPLES[0][0]), EXAMPLES[0][1]
    inputs, _ = p.prepare(image, caption)
    cases = {
        "Grad-CAM": lambda: X.grad_cam(p.pipeline, inputs),
        "Integrated Gradients (pixels, 16 steps)": lambda: X.integrated_gradients(p.pipeline, inputs, n_steps=16),
        "Occlusion (4x4 windows, stride 1/2)": lambda: X.occlusion(p.pipeline, inputs),
        "Word attributions (LayerIG, 20 steps)": lambda: X.token_attributions(p.pipeline, inputs, n_steps=20),
    }
    rows = []
    for name, fn in cases.items():
        ms = timed(fn, runs)
        rows.append([f"explain {model}: {name}", f"{statistics.median(ms):.0f}", f"{pct(ms, 95):.0f}", f"{runs} runs"])
    from mmdemo.app.handlers import DemoApp

    app = DemoApp(root)
    ms = timed(lambda: app.explain_fn(image, caption, task, model, "grad-cam"), runs)
    rows.append([f"explain {model}: the page's Explain step (words + Grad-CAM + overlay)",
                 f"{statistics.median(ms):.0f}", f"{pct(ms, 95):.0f}", f"{runs} runs, DemoApp.explain_fn"])
    pred = p.predict(image, caption)
    head = p.classifier.head
    if X.attention_matrices(pred.explain, head.signals, len(pred.tokens))[0] is None:
        rows.append([f"explain {model}: attention", "–", "–", "the network has no attention maps"])
    else:
        ms = timed(lambda: X.attention_matrices(p.predict(image, caption).explain, head.signals,
                                                len(pred.tokens)), runs)
        rows.append([f"explain {model}: attention (predict + maps)", f"{statistics.median(ms):.0f}",
                     f"{pct(ms, 95):.0f}", f"{runs} runs"])
    return rows


def bench_click(root: Path, task: str, model: str, clicks: int) -> list[list[str]]:
    """A click of "Predict and explain" as the page makes it, through the page's own handlers: /predict, then the
    explanation (Grad-CAM, the fused head, the predicted class) and the attention panel, each as the page wraps it
    (`on_page`). Counts the head's forward passes per click: those of the prediction (the input on its four
    coalitions) apart from those of the explainers (Captum's steps and the deletion checks run the head on their
    own variants of the input). Every click is of a new input: the encoder cache and the deletion memo are emptied."""
    from PIL import Image

    from mmdemo import explain as X
    from mmdemo.app.handlers import ALL_REGIONS, ALL_WORDS, PREDICTED, DemoApp
    from mmdemo.pipeline import ENCODED
    from mmdemo.predict import Predictor

    app = DemoApp(root)
    head = app.load(task, model).predictor.classifier.head
    calls = {"all": 0, "prediction": 0}
    in_prediction = [False]
    forward, predict_encoded = head.forward, Predictor._predict_encoded

    def counted_forward(*args, **kwargs):
        calls["all"] += 1
        calls["prediction"] += in_prediction[0]
        return forward(*args, **kwargs)

    def counted_prediction(*args, **kwargs):
        in_prediction[0] = True
        try:
            return predict_encoded(*args, **kwargs)
        finally:
            in_prediction[0] = False

    head.forward, Predictor._predict_encoded = counted_forward, counted_prediction
    explain, attention = app.on_page(app.explain_fn, 3), app.on_page(app.attention_fn, 5)
    images = [(Image.open(REPO / "examples" / f).convert("RGB"), c) for f, c in EXAMPLES]

    def click(image, caption) -> tuple[list[float], float]:
        """-> (wall-clock ms of each step: /predict, the explanation, the attention panel; CPU ms of the click: less
        sensitive than wall-clock time to other processes on a busy machine)."""
        steps, cpu = [time.perf_counter()], time.process_time()
        answer = app.predict_batch_fn([image], [caption], [task], [model], ["bench"])[-1][0]
        steps.append(time.perf_counter())
        explain(image, caption, task, model, "grad-cam", "fused", PREDICTED, "bench", answer)
        steps.append(time.perf_counter())
        attention(image, caption, task, model, ALL_WORDS, ALL_REGIONS, "bench", answer)
        steps.append(time.perf_counter())
        return [(b - a) * 1000 for a, b in zip(steps, steps[1:])], (time.process_time() - cpu) * 1000

    ms, cpu_ms, passes, every = [], [], [], []
    try:
        for r in range(clicks + 1):  # one warm-up click
            image, caption = images[r % len(images)]
            ENCODED.clear()
            X._HIDDEN.clear()
            calls.update(all=0, prediction=0)
            steps, cpu = click(image, caption)
            if r:
                ms.append(steps)
                cpu_ms.append(cpu)
                passes.append(calls["prediction"])
                every.append(calls["all"])
    finally:
        Predictor._predict_encoded = predict_encoded
        del head.forward
    total = [sum(steps) for steps in ms]
    each = ", ".join(f"{name} {statistics.median(step):.0f}" for name, step in
                     zip(("predict", "explanation", "attention"), zip(*ms)))
    return [[f"click {task}/{model}: predict + explanation + attention", f"{statistics.median(total):.0f}",
             f"{pct(total, 95):.0f}", f"{clicks} clicks (p50 ms of each step: {each}; CPU time of a click, p50 "
             f"{statistics.median(cpu_ms):.0f} ms); the head's prediction pass "
             f"ran {statistics.median(passes):g} time(s) per click; every head forward, the explainers' included: "
             f"{statistics.median(every):g}"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_app_start(root: Path, task: str, model: str, calls: int) -> list[list[str]]:
    """Start `python app.py` in a subprocess; time until its first /predict answer, then API round trips."""
    from gradio_client import Client, handle_file

    port = _free_port()
    env = {**os.environ, "MMDEMO_CHECKPOINTS": str(root), "GRADIO_SERVER_PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1"}
    url = f"http://127.0.0.1:{port}/"
    image, caption = str(REPO / "examples" / EXAMPLES[0][0]), EXAMPLES[0][1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = None
        while client is None:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}")
            if time.perf_counter() - start > 300:
                raise TimeoutError("app.py did not answer within 300 s")
            try:
                client = Client(url, verbose=False)
            except Exception:  # not listening yet
                time.sleep(0.2)
        up_ms = (time.perf_counter() - start) * 1000
        result = client.predict(handle_file(image), caption, task, model, api_name="/predict")
        first_ms = (time.perf_counter() - start) * 1000
        assert result[0] and result[0].get("label"), result
        ms = timed(lambda: client.predict(handle_file(image), caption, task, model, api_name="/predict"), calls, 0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return [["app start → page served", f"{up_ms:.0f}", "–", "`python app.py` in a subprocess"],
            ["app start → first /predict answer", f"{first_ms:.0f}", "–", "includes loading encoders + checkpoint"],
            ["/predict over HTTP (gradio_client)", f"{statistics.median(ms):.0f}", f"{pct(ms, 95):.0f}",
             f"{calls} calls, upload + queue + predict"]]


def main() -> None:
    from mmdemo.hub import bundled_checkpoints

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=REPO / "checkpoints", help="checkpoints directory (<task>/<model>/)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a small shared CPU more threads oversubscribe it)")
    ap.add_argument("--runs", type=int, default=20, help="timed predictions per network")
    ap.add_argument("--explain-runs", type=int, default=3)
    ap.add_argument("--no-app", action="store_true", help="skip the app start-up measurement")
    ap.add_argument("--starts", type=int, default=0, metavar="N",
                    help="only the app start-up: start `python app.py` N times (p50 / p95 of page served, first answer)")
    ap.add_argument("--clicks", type=int, default=0, metavar="N",
                    help="only N clicks of Predict and explain on the page's first network (head passes, time)")
    ap.add_argument("--untrained", nargs="+", metavar="MODEL", default=[],
                    help="time only predictions of these networks, UNTRAINED (random heads with the default encoders: "
                         "the same compute), e.g. networks not bundled yet")
    a = ap.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(a.threads)  # the app subprocess too
    import torch

    torch.set_num_threads(a.threads)
    root, note = a.root, f"bundled checkpoints in `{a.root}`"
    tmp = None
    if a.untrained:
        tmp = tempfile.TemporaryDirectory(prefix="mmdemo-bench-")
        root = Path(tmp.name)
        for model in a.untrained:
            make_untrained_checkpoint(root, model=model)
        note = f"UNTRAINED {', '.join(a.untrained)} (minilm-l6 + efficientnet-lite0); latency does not depend on the weights"
        a.no_app, a.explain_runs = True, 0
    elif not bundled_checkpoints(root):
        tmp = tempfile.TemporaryDirectory(prefix="mmdemo-bench-")
        root = Path(tmp.name)
        make_untrained_checkpoint(root)
        note = (f"no checkpoint in `{a.root}`: an UNTRAINED concat checkpoint (minilm-l6 + efficientnet-lite0) "
                f"was written to a temp dir; latency does not depend on the weights")
    if a.clicks:
        from mmdemo.app.handlers import DemoApp

        rows = bench_click(root, *DemoApp(root).first_network(), clicks=a.clicks)
    elif a.starts:  # only the start-up, several times
        from mmdemo.app.handlers import DemoApp

        starts = [bench_app_start(root, *DemoApp(root).first_network(), calls=1) for _ in range(a.starts)]
        rows = []
        for i in (0, 1):  # page served, first answer
            ms = [float(s[i][1]) for s in starts]
            rows.append([starts[0][i][0], f"{statistics.median(ms):.0f}", f"{pct(ms, 95):.0f}", f"{a.starts} starts"])
    else:
        rows, first = bench_predictions(root, a.runs)
        rows += bench_compare(root, max(3, a.runs // 2))
        rows += bench_batch(root, max(3, a.runs // 2))
        if a.explain_runs:
            rows += bench_explanations(root, *first, a.explain_runs)
        if not a.no_app:
            rows += bench_app_start(root, *first, calls=10)
    print(f"\nmmdemo app benchmark — {note}; torch {torch.__version__}, {a.threads} thread(s), "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}\n")
    print("| what | p50 ms | p95 ms | notes |\n|---|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
