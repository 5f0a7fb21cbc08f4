"""Serving latency of the registered pyfunc through `mlflow models serve`, side by side (issue 30).

An untrained MTL-LoRA artifact on the default backbone (all-MiniLM-L6-v2: latency does not depend on
the weights' values) over the task map of configs/tasks.yaml is logged to a temporary MLflow store and
served by `mlflow models serve` (one worker) on 127.0.0.1. With ``--baseline-checkout DIR`` (a
checkout of an earlier revision, e.g. ``git worktree add /tmp/before <rev>``) the same artifact is also
logged with that revision's pyfunc code and served beside it; requests alternate between the servers,
so machine noise hits both alike. Reported per server: p50/p95/p99 of ``--single`` sequential
one-row requests, and rows/s of a ``--batch``-row request (median of ``--repeats``).

    python -m benchmarks.serving_latency [--baseline-checkout /tmp/before] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("running shoes", "trail boots", "rome hotel", "cheap flights", "car loan", "used cars", "flu shot",
         "online degree", "paris apartment", "leather bag")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where the model and store go (a temp dir)")
    parser.add_argument("--baseline-checkout", type=Path, default=None,
                        help="a checkout whose pyfunc code is served beside this one's")
    parser.add_argument("--single", type=int, default=200, help="sequential one-row requests per server")
    parser.add_argument("--batch", type=int, default=256, help="rows of the batch request")
    parser.add_argument("--repeats", type=int, default=5, help="batch requests per server")
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def candidates(n: int, seed: int = 0) -> list[dict]:
    """Valid candidate rows of the task map's segments (every row can be scored)."""
    rng = np.random.default_rng(seed)
    segments = [("en-US", "retail"), ("en-GB", "travel"), ("en-US", "finance"), ("de-DE", "automotive"),
                ("en-AU", "health"), ("en-US", "education")]
    rows = []
    for i in range(n):
        market, vertical = segments[i % len(segments)]
        query, ad = rng.choice(WORDS, 2, replace=False)
        rows.append({"query": query, "ad_id": f"ad-{i}", "ad_title": f"{ad.title()} - official site",
                     "ad_description": f"the best {ad} deals, free delivery", "display_url": "www.example.com",
                     "market": market, "vertical": vertical})
    return rows


def build_artifact(directory: Path) -> Path:
    from features.task_map import load_task_map
    from models.artifact import save_model
    from models.backbone import DEFAULT_BACKBONE, load_tokenizer
    from models.config import AdapterConfig
    from models.relevance import RelevanceModel, RelevanceModelConfig

    task_map = load_task_map(ROOT / "configs" / "tasks.yaml")
    adapter = AdapterConfig(method="mtl_lora", num_tasks=len(task_map.tasks), rank=8)
    model = RelevanceModel.from_config(RelevanceModelConfig(adapter=adapter, head="per_task"))
    return save_model(model, directory, tokenizer=load_tokenizer(DEFAULT_BACKBONE),
                      tasks=[t.as_dict() for t in task_map.tasks], unmapped=task_map.unmapped, max_length=128,
                      segment_in_text=False)


def log_version(artifact: Path, store: str, checkout: Path) -> str:
    """Registers ``artifact`` with the pyfunc code of ``checkout``; returns its version."""
    code = ("import sys; from evaluation.registry import log_model; "
            "print(log_model(sys.argv[1]).version)")
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", code, str(artifact)], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"logging the model with {checkout} failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(version: str, store: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store,  # the server execs uvicorn from PATH
           "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(
        [str(mlflow_bin), "models", "serve", "-m", f"models:/ads-relevance/{version}", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server of version {version} exited: see {log}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5):
                return server, url
        except OSError:
            time.sleep(1)
    sys.exit(f"the server of version {version} did not answer in 300 s: see {log}")


def post(url: str, rows: list[dict]) -> float:
    """Seconds of one /invocations request (which must succeed)."""
    columns = list(rows[0])
    body = json.dumps({"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}})
    request = urllib.request.Request(f"{url}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as answer:
        answer.read()
    return time.perf_counter() - started


def measure(urls: dict[str, str], single: int, batch: int, repeats: int) -> dict[str, dict[str, float]]:
    """Interleaved: each request goes to every server in turn."""
    rows = candidates(max(single, batch))
    for url in urls.values():  # warm-up
        post(url, rows[:1])
        post(url, rows[:batch])
    one = {name: [] for name in urls}
    for row in rows[:single]:
        for name, url in urls.items():
            one[name].append(post(url, [row]))
    many = {name: [] for name in urls}
    for _ in range(repeats):
        for name, url in urls.items():
            many[name].append(post(url, rows[:batch]))
    return {name: {"p50_ms": 1000 * float(np.percentile(one[name], 50)),
                   "p95_ms": 1000 * float(np.percentile(one[name], 95)),
                   "p99_ms": 1000 * float(np.percentile(one[name], 99)),
                   "batch_rows_per_s": batch / statistics.median(many[name])} for name in urls}


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    print(f"| server | p50 ms | p95 ms | p99 ms | rows/s ({args.batch}-row request) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['batch_rows_per_s']:.1f} |")
    if "baseline" in results:
        ratio = results["this"]["p50_ms"] / results["baseline"]["p50_ms"]
        speed = results["this"]["batch_rows_per_s"] / results["baseline"]["batch_rows_per_s"]
        print(f"this / baseline: p50 latency {ratio:.2f}x, batch rows/s {speed:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "single": args.single, "batch": args.batch}, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="adsrel-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'mlflow.db'}"
    artifact = build_artifact(work / "model")
    versions = {"this": log_version(artifact, store, ROOT)}
    if args.baseline_checkout:
        versions["baseline"] = log_version(artifact, store, args.baseline_checkout.resolve())
    servers = {name: start_server(v, store, work / f"server-{name}.log") for name, v in versions.items()}
    try:
        report(measure({name: url for name, (_, url) in servers.items()}, args.single, args.batch, args.repeats),
               args)
    finally:
        for server, _ in servers.values():
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
