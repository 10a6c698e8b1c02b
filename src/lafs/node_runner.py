"""Running nodes in this process: logging, pid file, signals, and the one-command local grid."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, Protocol, TextIO

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import globalLogBeginner, textFileLogObserver

from lafs import nodedir
from lafs.node import build_node
from lafs.nodedir import READY_MARKER

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_MALLOC_KEEP_BYTES = 64 * 1024 * 1024
_MALLOC_MMAP_BYTES = 16 * 1024 * 1024


def _reuse_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the kernel at once.

    Uploads and downloads allocate and free a few segment-sized buffers per
    segment (blocks of ~350 KB).  By default glibc serves those with fresh
    mmap()s and gives them back on free, so every block costs page faults and
    zeroing of new pages.  Keeping up to 64 MiB of freed heap for reuse makes
    them cheap; memory stays bounded by the pipeline, not the file.

    One arena for all threads: otherwise each worker thread (encoding,
    verifying) gets its own arena that keeps its own freed memory, which
    raised a 128 MiB download's peak RSS from ~105 to ~160 MiB.  Large
    buffers are few per segment, so sharing the arena's lock costs nothing
    measurable.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    mallopt(_M_ARENA_MAX, 1)
    mallopt(_M_MMAP_THRESHOLD, _MALLOC_MMAP_BYTES)
    mallopt(_M_TRIM_THRESHOLD, _MALLOC_KEEP_BYTES)


class Output(Protocol):
    """Where the runner reports: the CLI's CommandIO is one."""

    stdout: TextIO
    stderr: TextIO


def _start_logging(log_file: str | None, default_path: str) -> None:
    if log_file == "-":
        stream: Any = sys.stdout
    else:
        path = log_file or default_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stream = open(path, "a", encoding="utf-8")
    observer: Any = textFileLogObserver(stream)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def run_nodes(
    basedirs: Sequence[str],
    io: Output,
    *,
    pid_file: str,
    log_file: str | None,
    exit_on_stdin_close: bool,
    announce_web: bool = False,
    local_grid: tuple[str, int] | None = None,
) -> int:
    """Run the nodes in ``basedirs`` until SIGTERM/SIGINT (or stdin closing); return the exit code."""
    from twisted.internet import reactor as default_reactor

    reactor: Any = default_reactor

    _reuse_freed_memory()
    _start_logging(log_file, os.path.join(basedirs[0], "logs", "twistd.log"))
    for basedir in basedirs:
        _remove(os.path.join(basedir, READY_MARKER))
    top = service.MultiService()
    outcome: dict[str, Any] = {"code": 0}

    async def start() -> None:
        try:
            for basedir in basedirs:
                if local_grid is not None:
                    _point_at_local_introducer(basedir, local_grid[0])
                node = build_node(basedir, reactor=reactor)
                node.setServiceParent(top)
                await node.when_web_listening()
                if node.introducer_service is not None:
                    await _wait_for_file(os.path.join(basedir, "private", "introducer.furl"))
                with open(os.path.join(basedir, READY_MARKER), "w", encoding="ascii") as f:
                    f.write("ready\n")
                if announce_web and node.web is not None:
                    io.stdout.write(f"web UI: {node.web.url}\n")
                    io.stdout.flush()
        except Exception as e:
            io.stderr.write(f"tahoe: cannot start node: {e}\n")
            outcome["code"] = 1
            reactor.stop()

    with open(pid_file, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()))
    if exit_on_stdin_close:
        _exit_when_stdin_closes(reactor)
    try:
        reactor.run()
    finally:
        if _read(pid_file) == str(os.getpid()):
            _remove(pid_file)
        for basedir in basedirs:
            _remove(os.path.join(basedir, READY_MARKER))
    return int(outcome["code"])


def _exit_when_stdin_closes(reactor: Any) -> None:
    from twisted.internet import protocol, stdio

    class StdinWatcher(protocol.Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(StdinWatcher())


async def _wait_for_file(path: str, timeout: float = 30) -> None:
    from twisted.internet import reactor

    for _ in range(int(timeout * 10)):
        if os.path.exists(path) and os.path.getsize(path):
            return
        await task.deferLater(reactor, 0.1, lambda: None)
    raise TimeoutError(f"{path} did not appear within {timeout:.0f}s")


def _point_at_local_introducer(basedir: str, introducer_dir: str) -> None:
    if basedir == introducer_dir:
        return
    furl_path = os.path.join(introducer_dir, "private", "introducer.furl")
    with open(furl_path, encoding="ascii") as f:
        furl = f.read().strip()
    nodedir.write_introducers(basedir, {"default": furl})


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def create_local_grid(base: str, storage_nodes: int, webport: int) -> list[str]:
    """Make (once) the node directories of a local grid; return them introducer first."""
    os.makedirs(base, exist_ok=True)
    introducer = os.path.join(base, "introducer")
    nodes = [os.path.join(base, f"storage{i}") for i in range(storage_nodes)]
    client = os.path.join(base, "client")

    def create(basedir: str, kind: str, **settings: Any) -> None:
        if not os.path.exists(os.path.join(basedir, nodedir.CONFIG_FILE)):
            nodedir.create_node_directory(basedir, nodedir.NodeSettings(kind, **settings))

    def listening() -> dict[str, str]:
        port = nodedir.free_port()
        return {"tub_port": f"tcp:{port}:interface=127.0.0.1", "tub_location": f"tcp:127.0.0.1:{port}"}

    create(introducer, "introducer", **listening())
    happy = min(7, storage_nodes)
    total = max(min(10, storage_nodes * 2), happy)
    needed = min(3, happy)
    shares = {"shares_needed": needed, "shares_happy": happy, "shares_total": total}
    for index, node in enumerate(nodes):
        create(node, "node", **listening(), nickname=f"storage{index}", storage=True, **shares)
    create(client, "client", tub_port="disabled", tub_location="disabled",
           webport=f"tcp:{webport}:interface=127.0.0.1", nickname="client", **shares)
    return [introducer, *nodes, client]
