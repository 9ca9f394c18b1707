"""Soak test of the app as users hit it: N clients for T seconds, each looping over predict, explain and compare on
random networks, tasks and example inputs, through gradio_client against a real `python app.py`. Prints completed
and failed requests, p50 / p95 latency per endpoint, and the server's memory (RSS) over time. Asserts nothing.

    python benchmarks/soak.py --clients 8 --seconds 300
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_app(port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    from gradio_client import Client, handle_file

    port = free_port()
    proc = start_app(port)
    url = f"http://127.0.0.1:{port}/"
    examples = [(handle_file(str(EXAMPLES / e["image"])), e["caption"])
                for e in json.loads((EXAMPLES / "examples.json").read_text())]
    catalogue = {}
    setup = Client(url, verbose=False)
    for task in ("mvsa-single", "mediaeval2016"):
        choices = setup.predict(task, api_name="/models")["choices"]
        catalogue[task] = [c[0] for c in choices]
    memory = [(0.0, rss_mb(proc.pid))]
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.time() + a.seconds

    def client(k: int) -> None:
        rng = random.Random(a.seed * 1000 + k)
        c = Client(url, verbose=False)
        n = 0
        while time.time() < stop_at:
            task = rng.choice(list(catalogue))
            model = rng.choice(catalogue[task])
            image, caption = rng.choice(examples)
            n += 1
            caption = f"{caption} ({k}.{n})"  # a new input every time: the app's encoder cache never answers
            op = rng.choice(["predict", "predict", "explain", "compare"])
            start = time.perf_counter()
            try:
                if op == "predict":
                    out = c.predict(image, caption, task, model, api_name="/predict")
                    ok = "mm-error" not in out[-1]
                elif op == "explain":
                    out = c.predict(image, caption, task, model, rng.choice(["grad-cam", "integrated-gradients"]),
                                    "fused", "(predicted class)", api_name="/explain")
                    ok = "mm-error" not in out[-1]
                else:
                    out = c.predict(image, caption, task, api_name="/compare")
                    ok = "mm-error" not in out[-1]
                error = "" if ok else f"{op} {task}/{model}: {str(out[-1])[:200]}"
            except Exception as e:  # a failed request is counted, never fatal
                error = f"{op} {task}/{model}: {type(e).__name__}: {str(e)[:200]}"
            with lock:
                latencies[op].append((time.perf_counter() - start) * 1000)
                if error:
                    failures.append(error)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(a.clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(min(30, a.seconds / 10))
        memory.append((time.time() - t0, rss_mb(proc.pid)))
    proc.terminate()
    proc.wait(timeout=30)

    done = sum(len(v) for v in latencies.values())
    print(f"\n{a.clients} clients x {a.seconds:.0f} s against python app.py ({os.cpu_count()} cores): "
          f"{done} requests, {len(failures)} failed")
    print("| endpoint | requests | p50 ms | p95 ms |\n|---|---|---|---|")
    for op, values in sorted(latencies.items()):
        values = sorted(values)
        print(f"| /{op} | {len(values)} | {statistics.median(values):.0f} | {values[int(0.95 * (len(values) - 1))]:.0f} |")
    print("\nserver RSS over time: " + ", ".join(f"{t:.0f} s {m:.0f} MB" for t, m in memory))
    for f in failures[:10]:
        print("failed:", f)


if __name__ == "__main__":
    main()
