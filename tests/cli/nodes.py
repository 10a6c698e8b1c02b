"""Helpers for CLI tests: run our `tahoe` in subprocesses and stop exactly the nodes they started."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def tahoe(*args: str, timeout: float = 90, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "lafs", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"tahoe {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listen_args() -> list[str]:
    port = free_port()
    return ["--listen=tcp", f"--port=tcp:{port}:interface=127.0.0.1", f"--location=tcp:127.0.0.1:{port}"]


def pid_of(node: Path) -> int | None:
    try:
        return int((node / "running.process").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def start_node(node: Path, pids: list[int]) -> int:
    """``tahoe start`` one of our node directories; its PID goes on ``pids`` (for `stop_pids`) and is returned."""
    tahoe("start", str(node))
    pid = pid_of(node)
    assert pid is not None, f"{node} wrote no running.process"
    pids.append(pid)
    return pid


def stop_pids(pids: list[int]) -> None:
    """Last-resort cleanup: SIGTERM, then SIGKILL, the PIDs a test started."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def welcome(web_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(web_url.rstrip("/") + "/?t=json", timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def connected(web_url: str) -> int:
    try:
        data = welcome(web_url)
    except OSError:
        return 0
    return sum(1 for s in data["servers"] if s["connection_status"].lower().startswith("connected"))


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


CAP_IN_LOG = re.compile(r"URI(:|%3A)(LIT|CHK|SSK|MDMF|DIR2)", re.IGNORECASE)
"""What any cap looks like in text, plain or URL-escaped."""


def log_files(base: Path) -> list[Path]:
    """Every log a node directory of the grid holds: all under any ``logs/``, and any ``*.log``."""
    return [p for p in base.rglob("*") if p.is_file() and ("logs" in p.relative_to(base).parts or p.suffix == ".log")]


def assert_no_caps_in_logs(base: Path) -> None:
    for path in log_files(base):
        found = CAP_IN_LOG.search(path.read_text(errors="replace"))
        assert found is None, f"{path} shows a cap: {found}"


@contextlib.contextmanager
def local_grid(base: Path, storage_nodes: int) -> Iterator[str]:
    """``tahoe local-grid`` in a subprocess on 127.0.0.1; yields the web URL once every server is connected.

    Stops exactly the process it started, then checks that no node wrote a cap into a log,
    whatever the tests did through the gateway.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lafs", "local-grid", "--storage-nodes", str(storage_nodes), "--webport", str(port), str(base / "g")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: connected(url) == storage_nodes, 90, "the local grid")
        yield url
    finally:
        stop_pids([process.pid])
        process.wait(30)
        output = process.stdout.read().decode() if process.stdout else ""
    assert "local grid stopped" in output, output[-2000:]
    assert_no_caps_in_logs(base)
