"""The hostile-user probes of issue 30, run against a checkout, as a table (probe, outcome).

Each probe runs the checkout's own `adsrel` (``python -m pipelines.cli`` with the checkout first on
the path) in a fresh process and records its exit code, its stderr lines, whether a traceback
appeared, and for the probes into a complete earlier output, whether that output is byte for byte
as it was. Run it on two checkouts to compare them (``git worktree add /tmp/before <rev>``):

    python -m benchmarks.fault_probes [--checkout /tmp/before] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from benchmarks.serving_latency import build_artifact, candidates, log_version, post, start_server

ROOT = Path(__file__).resolve().parent.parent
RANDOM_BYTES = bytes(range(256)) * 40


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose adsrel is probed")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


class Probe:
    def __init__(self, checkout: Path, work: Path) -> None:
        self.checkout, self.work = checkout.resolve(), work
        self.env = {**os.environ, "PYTHONPATH": str(self.checkout), "MLFLOW_TRACKING_URI": f"sqlite:///{work}/m.db",
                    "ADSREL_LOG_DIR": str(work / "logs"), "PYSPARK_PYTHON": sys.executable}

    def adsrel(self, *args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=self.checkout, env=self.env,
                              capture_output=True, text=True, timeout=900)
        lines = done.stderr.strip().splitlines()
        return {"exit": done.returncode, "stderr_lines": len(lines), "traceback": "Traceback" in done.stderr,
                "non_adsrel_lines": sum(not line.startswith("adsrel") for line in lines)}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
            and not p.relative_to(directory).parts[0].startswith(".staging-")}


def input_probes(probe: Probe, model: Path) -> dict[str, dict]:
    work = probe.work
    (work / "random.parquet").write_bytes(RANDOM_BYTES)
    tasks = str(ROOT / "configs" / "tasks.yaml")
    return {
        "prepare: a corrupt .parquet": probe.adsrel("prepare", "--input", str(work / "random.parquet"), "--task-map",
                                                    tasks, "--output", str(work / "p-corrupt")),
        "score local: a corrupt .parquet": probe.adsrel("score", "--model", str(model), "--candidates",
                                                        str(work / "random.parquet"), "--engine", "local",
                                                        "--output", str(work / "s-corrupt")),
        "score spark: a corrupt .parquet": probe.adsrel("score", "--model", str(model), "--candidates",
                                                        str(work / "random.parquet"), "--output",
                                                        str(work / "s-corrupt-spark")),
        "train --set rank=-1": probe.adsrel("train", "--shards", str(work / "prepared"), "--set", "rank=-1",
                                            "--set", "mlflow=false", "--output", str(work / "m")),
        "synth, stderr": probe.adsrel("synth", "--rows", "20", "--master", "local[1]", "--output", str(work / "s")),
        "adsrel --version": probe.adsrel("--version"),
    }


def damage_probes(probe: Probe, model: Path) -> dict[str, dict]:
    """A failed run into a complete earlier output: is it as it was?"""
    work, tasks = probe.work, str(ROOT / "configs" / "tasks.yaml")
    pd.DataFrame(candidates(200)).drop(columns=["market"]).to_csv(work / "lacking.csv", index=False)
    before = snapshot(work / "prepared")
    result = probe.adsrel("prepare", "--input", str(work / "lacking.csv"), "--task-map", tasks, "--output",
                          str(work / "prepared"))
    prepare = {**result, "earlier output intact": snapshot(work / "prepared") == before}
    pd.DataFrame(candidates(200)).to_parquet(work / "good.parquet", index=False)
    probe.adsrel("score", "--model", str(model), "--candidates", str(work / "good.parquet"), "--engine", "local",
                 "--output", str(work / "scored"))
    before = snapshot(work / "scored")
    result = probe.adsrel("score", "--model", str(model), "--candidates", str(work / "lacking.csv"), "--engine",
                          "local", "--output", str(work / "scored"))
    score = {**result, "earlier output intact": snapshot(work / "scored") == before}
    return {"prepare into a complete output, input lacks a column": prepare,
            "score into a complete output, input lacks a column": score}


def serving_probes(probe: Probe, model: Path) -> dict[str, dict]:
    """The pyfunc as `mlflow models serve` runs it: bad rows, and a request without market."""
    store = probe.env["MLFLOW_TRACKING_URI"]
    version = log_version(model, store, probe.checkout)
    server, url = start_server(version, store, probe.work / "server.log")
    try:
        rows = candidates(3)
        rows[0]["query"], rows[1]["market"] = None, "zz"
        answer = _post_json(url, rows)
        missing = _post_json(url, [{k: v for k, v in r.items() if k != "market"} for r in candidates(2)])
        post(url, candidates(1))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    scored = [p.get("score") if isinstance(p, dict) else p for p in answer[1].get("predictions", [])]
    return {"serve: rows with query null, market zz": {"status": answer[0], "scores": scored[:2],
                                                        "rejected": [p.get("rejected") for p in
                                                                     answer[1].get("predictions", [])
                                                                     if isinstance(p, dict)][:2]},
            "serve: a request without market": {"status": missing[0],
                                                "stack_trace in body": "stack_trace" in missing[1],
                                                "message ends": str(missing[1].get("message", ""))[-80:]}}


def _post_json(url: str, rows: list[dict]) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    columns = list(rows[0])
    body = json.dumps({"dataframe_split": {"columns": columns, "data": [[r.get(c) for c in columns] for r in rows]}})
    request = urllib.request.Request(f"{url}/invocations", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="adsrel-probes-"))
    work.mkdir(parents=True, exist_ok=True)
    probe = Probe(args.checkout, work)
    model = build_artifact(work / "model")
    probe.adsrel("synth", "--rows", "3000", "--master", "local[2]", "--output", str(work / "raw"))
    probe.adsrel("prepare", "--input", str(work / "raw"), "--task-map", str(ROOT / "configs" / "tasks.yaml"),
                 "--output", str(work / "prepared"))
    results = {**input_probes(probe, model), **damage_probes(probe, model), **serving_probes(probe, model)}
    for name, outcome in results.items():
        print(f"| {name} | {json.dumps(outcome, default=str)} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
