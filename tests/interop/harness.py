"""Drive the real Tahoe-LAFS 1.20 as a black box: its own venv, its CLI, real grids on 127.0.0.1.

The product never imports the real Tahoe.  Tests only run its programs and
read what they print or write.  Every process started here is stopped by PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs

TAHOE_VERSION = "1.20.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".interop-cache"
_READY_MARKER = "lafs-interop-ready"


class HarnessError(Exception):
    """The real Tahoe could not be installed, started or queried."""


def tahoe_venv() -> Path:
    """The venv holding the real Tahoe, built on first use (LAFS_TAHOE_VENV overrides)."""
    override = os.environ.get("LAFS_TAHOE_VENV")
    if override:
        venv = Path(override)
        if not (venv / "bin" / "tahoe").exists():
            raise HarnessError(f"LAFS_TAHOE_VENV={override} has no bin/tahoe")
        return venv
    venv = CACHE_DIR / f"tahoe-{TAHOE_VERSION}"
    if (venv / _READY_MARKER).exists():
        return venv
    CACHE_DIR.mkdir(exist_ok=True)
    with open(CACHE_DIR / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / _READY_MARKER).exists():
            _build_venv(venv)
    return venv


def _build_venv(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    commands = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"tahoe-lafs=={TAHOE_VERSION}"],
    ]
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        if result.returncode != 0:
            raise HarnessError(f"building the real Tahoe venv failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    (venv / _READY_MARKER).write_text(TAHOE_VERSION + "\n")


def tahoe_executable() -> Path:
    return tahoe_venv() / "bin" / "tahoe"


def run_tahoe(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 120,
    check: bool = True,
    input: str | bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``tahoe`` with ``args``; raise HarnessError on a non-zero exit when ``check``."""
    result = subprocess.run(
        [str(tahoe_executable()), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input.decode() if isinstance(input, bytes) else input,
        env=env,
    )
    if check and result.returncode != 0:
        raise HarnessError(f"real tahoe {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def run_tahoe_python(script: str, *args: str, timeout: float = 120) -> str:
    """Run ``script`` with the real Tahoe venv's python and return its stdout."""
    result = subprocess.run(
        [str(tahoe_venv() / "bin" / "python"), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise HarnessError(f"oracle script failed:\n{result.stderr[-3000:]}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")


@attrs.define
class RealNode:
    """A running real Tahoe node (``tahoe run``), stopped by its PID."""

    basedir: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 10) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def read_private(self, name: str) -> str:
        return (self.basedir / "private" / name).read_text().strip()


def start_real_node(basedir: Path) -> RealNode:
    """``tahoe run --allow-stdin-close BASEDIR`` in the background, output to BASEDIR/run.log."""
    log = open(basedir / "run.log", "ab")
    process = subprocess.Popen(
        [str(tahoe_executable()), "run", "--allow-stdin-close", str(basedir)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return RealNode(basedir, process)


def _listen_options(port: int) -> list[str]:
    return ["--listen=tcp", f"--port=tcp:{port}:interface=127.0.0.1", f"--location=tcp:127.0.0.1:{port}"]


def create_real_introducer(basedir: Path) -> RealNode:
    """Create and start a real introducer; returns once it has written its fURL."""
    run_tahoe("create-introducer", *_listen_options(free_port()), str(basedir))
    node = start_real_node(basedir)
    furl_file = basedir / "private" / "introducer.furl"
    try:
        wait_until(lambda: furl_file.exists() and furl_file.read_text().strip(), 60, "the introducer's fURL")
    except HarnessError:
        node.stop()
        raise
    return node


def create_real_storage_node(basedir: Path, introducer_furl: str | None, nickname: str) -> None:
    args = ["create-node", *_listen_options(free_port()), "--webport=none", f"--nickname={nickname}"]
    if introducer_furl:
        args.append(f"--introducer={introducer_furl}")
    run_tahoe(*args, str(basedir))


def create_real_client(
    basedir: Path, introducer_furl: str | None, *, needed: int = 3, happy: int = 7, total: int = 10
) -> int:
    """Create a real client node (no storage); returns its web port."""
    web_port = free_port()
    args = [
        "create-client",
        f"--webport=tcp:{web_port}:interface=127.0.0.1",
        f"--shares-needed={needed}",
        f"--shares-happy={happy}",
        f"--shares-total={total}",
        "--nickname=client",
    ]
    if introducer_furl:
        args.append(f"--introducer={introducer_furl}")
    run_tahoe(*args, str(basedir))
    return web_port


def get_json(url: str, timeout: float = 10) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def connected_server_count(web_url: str) -> int:
    try:
        welcome = get_json(web_url.rstrip("/") + "/?t=json")
    except (OSError, ValueError):
        return 0
    return sum(
        1 for server in welcome.get("servers", []) if str(server.get("connection_status", "")).lower().startswith("connected")
    )


def wait_for_servers(web_url: str, count: int, timeout: float = 90) -> None:
    wait_until(lambda: connected_server_count(web_url) >= count, timeout, f"{count} connected storage servers")


@attrs.define
class RealGrid:
    """An introducer, storage nodes and a client, all real Tahoe 1.20, on 127.0.0.1."""

    base: Path
    introducer: RealNode
    storage_nodes: list[RealNode]
    client: RealNode
    web_url: str

    @property
    def introducer_furl(self) -> str:
        return self.introducer.read_private("introducer.furl")

    @property
    def client_dir(self) -> Path:
        return self.client.basedir

    def nodes(self) -> list[RealNode]:
        return [self.client, *self.storage_nodes, self.introducer]

    def stop(self) -> None:
        for node in self.nodes():
            node.stop()

    def cli(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a real ``tahoe`` file command against this grid's client."""
        return run_tahoe("-d", str(self.client_dir), *args, **kwargs)  # type: ignore[arg-type]


def start_real_grid(base: Path, num_storage: int = 3, needed: int = 1, happy: int = 1, total: int = 3) -> RealGrid:
    """Start a whole real grid under ``base``; stops what it started if any step fails."""
    started: list[RealNode] = []
    try:
        introducer = create_real_introducer(base / "introducer")
        started.append(introducer)
        furl = introducer.read_private("introducer.furl")
        storage_nodes = []
        for index in range(num_storage):
            node_dir = base / f"storage{index}"
            create_real_storage_node(node_dir, furl, f"storage{index}")
            node = start_real_node(node_dir)
            started.append(node)
            storage_nodes.append(node)
        client_dir = base / "client"
        web_port = create_real_client(client_dir, furl, needed=needed, happy=happy, total=total)
        client = start_real_node(client_dir)
        started.append(client)
        web_url = f"http://127.0.0.1:{web_port}/"
        wait_until(lambda: (client_dir / "node.url").exists(), 60, "the real client's web server")
        wait_for_servers(web_url, num_storage)
        return RealGrid(base, introducer, storage_nodes, client, web_url)
    except BaseException:
        for node in reversed(started):
            node.stop()
        raise


@contextlib.contextmanager
def real_grid_running(base: Path, **kwargs: int) -> Iterator[RealGrid]:
    grid = start_real_grid(base, **kwargs)
    try:
        yield grid
    finally:
        grid.stop()
