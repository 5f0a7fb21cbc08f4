"""Servers the tests start for real on 127.0.0.1 (mlflow server, mlflow models serve): a free port,
waiting until one answers, stopping it within a bound."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answers(url: str, server: subprocess.Popen, timeout_s: float, why: Callable[[], str]) -> None:
    """Until ``url`` answers 200; fails with ``why()`` (the server's own output) if the server exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, why()
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout_s:.0f} s"
        time.sleep(1)


def stop(server: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM to the server's process group (started with start_new_session), then SIGKILL."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=timeout_s)
    except ProcessLookupError:
        pass
