"""Soak test of the app as users hit it: N clients for T seconds, each looping over predict, explain and compare on
random networks, tasks and example inputs, through gradio_client (or Gradio's curl API, `--client http`) against a
real `python app.py`. Prints completed and failed requests, throughput and p50 / p95 latency per endpoint, the CPU
time the server and the clients spend per request, and the server's memory (RSS) over time. Asserts nothing. Every bundled network is loaded before the clock starts.

    python benchmarks/soak.py --clients 8 --seconds 300
    python benchmarks/soak.py --compare-batch --clients 8 --seconds 60   # batched /predict against one by one
    python benchmarks/soak.py --ops predict --clients 1 --seconds 60     # a single client's p95
    git worktree add /tmp/mmdemo-before cb265e8^                          # the code before the speed work
    python benchmarks/soak.py --against /tmp/mmdemo-before --clients 8 --seconds 60   # its /predict against this one
    python benchmarks/soak.py --against /tmp/mmdemo-before --client http ...           # a lighter load generator
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(port: int, max_batch: int = 8, app_dir: Path = REPO) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "MMDEMO_MAX_BATCH": str(max_batch)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the app exited while starting")
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start in 300 s")


class HttpClient:
    """Gradio's HTTP API as curl uses it (upload the image, POST /gradio_api/call/<endpoint>, read its event stream):
    the requests gradio_client makes, with less work of its own, so that a load generator on the server's own cores
    takes less of them. Same `predict` signature as gradio_client.Client, images given as file paths."""

    def __init__(self, url: str):
        import requests

        self.url, self.session = url.rstrip("/"), requests.Session()

    def predict(self, image: str, *args, api_name: str):
        with open(image, "rb") as f:
            path = self.session.post(f"{self.url}/gradio_api/upload", files={"files": f}).json()[0]
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, *args]
        event = self.session.post(f"{self.url}/gradio_api/call{api_name}", json={"data": data}).json()["event_id"]
        with self.session.get(f"{self.url}/gradio_api/call{api_name}/{event}", stream=True) as r:
            kind = b""
            for line in r.iter_lines():
                if line.startswith(b"event:"):
                    kind = line[6:].strip()
                elif line.startswith(b"data:") and kind in (b"complete", b"error"):
                    if kind == b"error":
                        raise RuntimeError(f"{api_name}: {line[5:].decode()[:200]}")
                    return json.loads(line[5:])
        raise RuntimeError(f"{api_name}: the event stream ended without a result")


def soak(clients: int, seconds: float, ops: list[str], max_batch: int, seed: int = 0, app_dir: Path = REPO,
         client_kind: str = "gradio") -> dict:
    """Start `python app.py` of `app_dir` (MMDEMO_MAX_BATCH=max_batch), run the clients (gradio_client, or "http":
    `HttpClient`), stop it -> latencies per endpoint, failures, the server's RSS and the CPU time of the server and
    of the clients over the run, and the wall time."""
    from gradio_client import Client, handle_file

    port = free_port()
    proc = start_app(port, max_batch, app_dir)
    url = f"http://127.0.0.1:{port}/"
    files = [(str(EXAMPLES / e["image"]), e["caption"]) for e in json.loads((EXAMPLES / "examples.json").read_text())]
    examples = [(handle_file(f), c) for f, c in files]
    catalogue = {}
    setup = Client(url, verbose=False)
    for task in ("mvsa-single", "mediaeval2016"):
        choices = setup.predict(task, api_name="/models")["choices"]
        catalogue[task] = [c[0] for c in choices]
    for task, models in catalogue.items():  # load every network first: the run measures serving, not loading
        for model in models:
            setup.predict(*examples[0], task, model, api_name="/predict")
    memory = [(0.0, rss_mb(proc.pid))]
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        c = Client(url, verbose=False) if client_kind == "gradio" else HttpClient(url)
        n = 0
        while time.time() < stop_at:
            task = rng.choice(list(catalogue))
            model = rng.choice(catalogue[task])
            image, caption = rng.choice(examples if client_kind == "gradio" else files)
            n += 1
            caption = f"{caption} ({k}.{n})"  # a new input every time: the app's encoder cache never answers
            op = rng.choice(ops)
            start = time.perf_counter()
            try:
                if op == "predict":
                    out = c.predict(image, caption, task, model, api_name="/predict")
                    ok = "mm-error" not in out[5]
                elif op == "explain":
                    out = c.predict(image, caption, task, model, rng.choice(["grad-cam", "integrated-gradients"]),
                                    "fused", "(predicted class)", api_name="/explain")
                    ok = "mm-error" not in out[-1]
                else:
                    out = c.predict(image, caption, task, api_name="/compare")
                    ok = "mm-error" not in out[-1]
                error = "" if ok else f"{op} {task}/{model}: {str(out)[:200]}"
            except Exception as e:  # a failed request is counted, never fatal
                error = f"{op} {task}/{model}: {type(e).__name__}: {str(e)[:200]}"
            with lock:
                latencies[op].append((time.perf_counter() - start) * 1000)
                if error:
                    failures.append(error)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    server_cpu, clients_cpu = cpu_seconds(proc.pid), cpu_seconds(os.getpid())
    t0 = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(min(30, seconds / 10))
        memory.append((time.time() - t0, rss_mb(proc.pid)))
    wall = time.time() - t0
    server_cpu, clients_cpu = cpu_seconds(proc.pid) - server_cpu, cpu_seconds(os.getpid()) - clients_cpu
    proc.terminate()
    proc.wait(timeout=30)
    return {"latencies": latencies, "failures": failures, "memory": memory, "wall": wall,
            "cpu": {"server": server_cpu, "clients": clients_cpu}}


def report(r: dict, clients: int, seconds: float, label: str = "") -> None:
    done = sum(len(v) for v in r["latencies"].values())
    print(f"\n{label}{clients} clients x {seconds:.0f} s against python app.py ({os.cpu_count()} cores): "
          f"{done} requests ({done / r['wall']:.2f}/s), {len(r['failures'])} failed")
    print("| endpoint | requests | per s | p50 ms | p95 ms |\n|---|---|---|---|---|")
    for op, values in sorted(r["latencies"].items()):
        values = sorted(values)
        print(f"| /{op} | {len(values)} | {len(values) / r['wall']:.2f} | {statistics.median(values):.0f} | "
              f"{values[int(0.95 * (len(values) - 1))]:.0f} |")
    print(f"\nCPU per request: the server {1000 * r['cpu']['server'] / max(done, 1):.0f} ms, the clients "
          f"{1000 * r['cpu']['clients'] / max(done, 1):.0f} ms (both share the {os.cpu_count()} cores)")
    print("\nserver RSS over time: " + ", ".join(f"{t:.0f} s {m:.0f} MB" for t, m in r["memory"]))
    for f in r["failures"][:10]:
        print("failed:", f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ops", nargs="+", default=["predict", "predict", "explain", "compare"],
                   choices=["predict", "explain", "compare"], help="what each request is, drawn at random")
    p.add_argument("--max-batch", type=int, default=8, help="the app's MMDEMO_MAX_BATCH")
    p.add_argument("--client", choices=["gradio", "http"], default="gradio",
                   help="gradio: gradio_client threads; http: Gradio's curl API through requests (less CPU of its "
                        "own on the cores the server uses)")
    p.add_argument("--compare-batch", action="store_true",
                   help="batched serving against one by one: predictions only, the app started with "
                        "MMDEMO_MAX_BATCH=1 and then --max-batch, the same clients and seconds, twice each in turn")
    p.add_argument("--against", type=Path, metavar="DIR",
                   help="another checkout of mmdemo (e.g. a git worktree of an earlier commit, with its own bundled "
                        "checkpoints): its app against this one, predictions only, twice each in turn")
    a = p.parse_args()
    if a.against:
        in_turns(a, {f"before ({a.against})": {"app_dir": a.against.resolve()}, "this checkout": {}})
        return
    if not a.compare_batch:
        report(soak(a.clients, a.seconds, a.ops, a.max_batch, a.seed, client_kind=a.client), a.clients, a.seconds)
        return
    in_turns(a, {"one by one (MMDEMO_MAX_BATCH=1)": {"max_batch": 1},
                 f"batched (MMDEMO_MAX_BATCH={a.max_batch})": {}})


def in_turns(a: argparse.Namespace, apps: dict[str, dict]) -> None:
    """Two app configurations (soak keyword arguments over the command line's), predictions only, each run twice in
    turns with the same clients and seconds; then the second's /predict throughput against the first's."""
    rate = defaultdict(list)
    for round_ in range(2):
        for name, kwargs in apps.items():
            options = {"max_batch": a.max_batch, "client_kind": a.client, **kwargs}
            r = soak(a.clients, a.seconds, ["predict"], seed=a.seed + round_, **options)
            report(r, a.clients, a.seconds, f"[{name}, round {round_ + 1}] ")
            rate[name].append(len(r["latencies"]["predict"]) / r["wall"])
    (first, x), (second, y) = ((name, statistics.mean(v)) for name, v in rate.items())
    print(f"\n/predict throughput, {a.clients} clients: {first} {x:.2f}/s, {second} {y:.2f}/s: {y / x:.2f}x")


if __name__ == "__main__":
    main()
