"""Running the adsrel CLI from an Airflow task (shared by the DAG files; the standard library only).

The executable is the one named by ADSREL_BIN, else ``adsrel`` on PATH; the Spark stages get
``--master`` from ADSREL_SPARK_MASTER when it is set, so the same DAG drives a cluster unchanged.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shlex
import subprocess
import threading
from pathlib import Path

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger("adsrel")
REPO = Path(__file__).resolve().parent.parent
# The registry alias champion, as an Asset: ads_relevance_retrain emits it when promote moves the
# champion, and ads_relevance_batch_score is scheduled on it.
PROMOTED_MODEL = Asset(name="ads_relevance_champion", uri="models:/ads-relevance@champion")
# Every task: two retries, 2 minutes apart and then exponentially longer (at most 30 minutes).
RETRIES = {
    "retries": 2,
    "retry_delay": datetime.timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": datetime.timedelta(minutes=30),
}


def spark_master() -> list[str]:
    """``--master URL`` from ADSREL_SPARK_MASTER, or nothing (the CLI's default, local[*])."""
    master = os.environ.get("ADSREL_SPARK_MASTER")
    return ["--master", master] if master else []


def run_dir(output_root: str, context: dict) -> Path:
    """``<output_root>/<YYYY-MM-DD>`` of the run's logical date (a run without one: its run date)."""
    when = context.get("logical_date") or context["dag_run"].run_after
    return Path(output_root) / when.strftime("%Y-%m-%d")


def read_json(path: Path) -> dict:
    """The JSON file a command wrote (its --report or summary.json): what a task reads of its result."""
    return json.loads(path.read_text())


def adsrel(*args: str, ok: tuple[int, ...] = (0,), final: tuple[int, ...] = (2,)) -> int:
    """Run ``adsrel ARGS``: its stderr (progress) and stdout (results) go to the task log line by line.

    Returns the exit code when it is in ``ok``; a task reads the command's result from the file it
    wrote (--report, summary.json), never from its stdout. An exit code in ``final`` (a user error:
    bad path, config or data) fails the task without retries; any other one fails it for a retry.
    """
    cmd = [os.environ.get("ADSREL_BIN") or "adsrel", *args]
    log.info("$ %s", shlex.join(cmd))
    try:
        # ADSREL_VERBOSE: Spark's and MLflow's own output in the task log too, where the on-call looks
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                env={**os.environ, "ADSREL_VERBOSE": "1"})
    except OSError as exc:
        raise AirflowFailException(f"cannot run {cmd[0]} (set ADSREL_BIN to the project's adsrel): {exc}") from exc
    last_error = ["no message"]  # the last line on stderr: the one-line reason of a failure

    def pump_stderr() -> None:
        for line in proc.stderr:
            log.info("%s", line.rstrip("\n"))
            if line.strip():
                last_error[0] = line.strip()

    pump = threading.Thread(target=pump_stderr, daemon=True)
    pump.start()
    try:
        for line in proc.stdout:
            log.info("%s", line.rstrip("\n"))
        code = proc.wait()
    finally:  # a timeout or a kill of the task ends the command too
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        pump.join(timeout=10)
    if code in final:
        raise AirflowFailException(f"adsrel {args[0]} exited {code} (not retried): {last_error[0]}")
    if code not in ok:
        raise RuntimeError(f"adsrel {args[0]} exited {code}: {last_error[0]}")
    return code
