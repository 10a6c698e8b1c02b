"""Node commands: ``create-node``, ``create-client``, ``create-introducer``, ``run``, ``start``, ``stop``, ``local-grid``.

Options and files follow Tahoe-LAFS 1.20, so scripts written for it work unchanged.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

from lafs import nodedir
from lafs.cli.common import CommandIO, UsageError
from lafs.core.errors import LafsError
from lafs.nodedir import DEFAULT_WEBPORT, PID_FILE


class NodeCommandError(LafsError):
    """A node command that cannot do what was asked."""


def default_basedir() -> str:
    return os.path.expanduser("~/.tahoe")


def register(subparsers: Any) -> None:
    for name, kind, help_text in [
        ("create-node", "node", "create a node that acts as a client, a storage server, or both"),
        ("create-client", "client", "create a client node (no storage service)"),
        ("create-introducer", "introducer", "create an introducer node"),
    ]:
        parser = subparsers.add_parser(name, help=help_text)
        _add_create_options(parser, kind)
        parser.set_defaults(handler=create_command, node_type=kind)

    run = subparsers.add_parser("run", help="run a node in the foreground")
    run.add_argument("basedir_positional", nargs="?", metavar="NODEDIR")
    run.add_argument("-C", "--basedir", dest="basedir_option", metavar="DIR")
    run.add_argument(
        "--allow-stdin-close", action="store_true", help="keep running when stdin closes (otherwise the node exits)"
    )
    # twistd options that Tahoe 1.20's `run` passes through; accepted for compatibility.
    run.add_argument("-n", "--nodaemon", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("-l", "--logfile", metavar="FILE", help="log to FILE ('-' for stdout)")
    run.add_argument("--pidfile", metavar="FILE", help=argparse.SUPPRESS)
    run.set_defaults(handler=run_command)

    start = subparsers.add_parser("start", help="run a node in the background")
    start.add_argument("basedir_positional", nargs="?", metavar="NODEDIR")
    start.add_argument("-C", "--basedir", dest="basedir_option", metavar="DIR")
    start.add_argument("--timeout", type=float, default=60, help="seconds to wait for the node to come up")
    start.set_defaults(handler=start_command)

    stop = subparsers.add_parser("stop", help="stop a node started with 'tahoe start' or 'tahoe run'")
    stop.add_argument("basedir_positional", nargs="?", metavar="NODEDIR")
    stop.add_argument("-C", "--basedir", dest="basedir_option", metavar="DIR")
    stop.set_defaults(handler=stop_command)

    grid = subparsers.add_parser(
        "local-grid", help="create and run a whole grid on this computer: introducer, storage nodes and a client"
    )
    grid.add_argument("directory", metavar="DIR", help="where the grid's node directories live (made if missing)")
    grid.add_argument("--storage-nodes", type=int, default=5, metavar="N", help="number of storage nodes (default 5)")
    grid.add_argument("--webport", type=int, default=3456, metavar="PORT", help="the client's web port (default 3456)")
    grid.set_defaults(handler=local_grid_command)


def _add_create_options(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("basedir_positional", nargs="?", metavar="NODEDIR")
    parser.add_argument("-C", "--basedir", dest="basedir_option", metavar="DIR")
    parser.add_argument("-n", "--nickname", default=None)
    parser.add_argument("--hide-ip", action="store_true", help="never reveal this node's IP address")
    parser.add_argument("--listen", default=None, help="listener types: tcp, none (tor and i2p are not supported)")
    parser.add_argument("--hostname", default=None, help="sets --location and --port automatically with --listen=tcp")
    parser.add_argument("--location", default=None, help="the location hints to advertise, e.g. tcp:example.net:3457")
    parser.add_argument("--port", default=None, help="the server endpoint, e.g. tcp:3457:interface=127.0.0.1")
    if kind == "introducer":
        parser.add_argument("-p", "--webport", default="none", help=argparse.SUPPRESS)
        return
    parser.add_argument("-i", "--introducer", default="", help="the introducer fURL to use")
    parser.add_argument("-p", "--webport", default=DEFAULT_WEBPORT, help="web port endpoint, or 'none'")
    parser.add_argument("--shares-needed", type=int, default=3)
    parser.add_argument("--shares-happy", type=int, default=7)
    parser.add_argument("--shares-total", type=int, default=10)
    parser.add_argument("--storage-dir", default=None)
    parser.add_argument("--helper", action="store_true", help="run a helper (not supported by lafs yet)")
    if kind == "node":
        parser.add_argument("--no-storage", action="store_true", help="do not offer storage service")
    for option in ("--tor-launch", "--i2p-launch"):
        parser.add_argument(option, action="store_true", help=argparse.SUPPRESS)
    for option in ("--tor-executable", "--tor-control-port", "--i2p-executable", "--i2p-sam-port", "--join"):
        parser.add_argument(option, default=None, help=argparse.SUPPRESS)


def _basedir(options: argparse.Namespace) -> str:
    chosen = options.basedir_option or options.basedir_positional or getattr(options, "node_directory", None)
    return os.path.abspath(os.path.expanduser(chosen or default_basedir()))


# --- create --------------------------------------------------------------------------------


def _listen_settings(options: argparse.Namespace, kind: str) -> tuple[str, str]:
    """(tub.port, tub.location) from --listen/--hostname/--port/--location."""
    listen = options.listen if options.listen is not None else ("none" if kind == "client" else "tcp")
    listeners = {item.strip() for item in listen.split(",") if item.strip()}
    unsupported = listeners - {"tcp", "none"}
    if unsupported or getattr(options, "join", None):
        what = ", ".join(sorted(unsupported)) or "--join"
        raise UsageError(f"{what} is not supported by lafs yet (use --listen=tcp or --listen=none)")
    if listeners == {"none"}:
        if options.hostname or options.port or options.location:
            raise UsageError("--listen=none cannot be combined with --hostname, --port or --location")
        return "disabled", "disabled"
    if options.hostname and (options.port or options.location):
        raise UsageError("--hostname cannot be combined with --port or --location")
    if bool(options.port) != bool(options.location):
        raise UsageError("--port and --location must be given together")
    if options.hostname:
        port = nodedir.free_port()
        return f"tcp:{port}", f"tcp:{options.hostname}:{port}"
    if options.port:
        return options.port, options.location
    raise UsageError("--listen=tcp requires --hostname=, or --port= and --location=")


def _settings(options: argparse.Namespace, kind: str, tub_port: str, tub_location: str) -> nodedir.NodeSettings:
    webport = options.webport if options.webport and options.webport.lower() != "none" else ""
    if kind == "introducer":
        return nodedir.NodeSettings(
            kind, tub_port, tub_location, nickname=options.nickname or "", webport=webport, hide_ip=options.hide_ip
        )
    return nodedir.NodeSettings(
        kind,
        tub_port,
        tub_location,
        nickname=options.nickname or "",
        webport=webport,
        hide_ip=options.hide_ip,
        introducer_furl=options.introducer,
        shares_needed=options.shares_needed,
        shares_happy=options.shares_happy,
        shares_total=options.shares_total,
        storage=kind == "node" and not getattr(options, "no_storage", False),
        storage_dir=os.path.abspath(options.storage_dir) if options.storage_dir else None,
        helper=options.helper,
    )


def create_command(options: argparse.Namespace, io: CommandIO) -> int:
    kind = options.node_type
    basedir = _basedir(options)
    if not nodedir.is_free_for_a_node(basedir):
        raise NodeCommandError(f"the directory {basedir!r} already exists and is not empty; refusing to overwrite it")
    if kind != "introducer":
        needed, happy, total = options.shares_needed, options.shares_happy, options.shares_total
        if not 1 <= needed <= total <= 256:
            raise UsageError(f"--shares-needed={needed} and --shares-total={total} must satisfy 1 <= k <= N <= 256")
        if not 1 <= happy <= total:
            raise UsageError(f"--shares-happy={happy} must be between 1 and --shares-total={total}")
        if options.introducer and "#" in options.introducer:
            raise UsageError("the introducer fURL may not contain '#'")
    tub_port, tub_location = _listen_settings(options, "client" if kind == "client" else kind)
    nodedir.create_node_directory(basedir, _settings(options, kind, tub_port, tub_location))
    what = "Introducer" if kind == "introducer" else "Node"
    io.stdout.write(f"{what} created in {basedir!r}\n")
    if kind != "introducer" and not options.nickname:
        io.stdout.write(f" Please set [node]nickname= in '{os.path.join(basedir, 'tahoe.cfg')}'\n")
    return 0


# --- run / start / stop -------------------------------------------------------------------


def _check_node_dir(basedir: str) -> None:
    if not os.path.isfile(os.path.join(basedir, nodedir.CONFIG_FILE)):
        raise NodeCommandError(f"{basedir!r} does not look like a node directory (no tahoe.cfg)")


def _read_pid(basedir: str) -> int | None:
    try:
        with open(os.path.join(basedir, PID_FILE), encoding="ascii") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_command(options: argparse.Namespace, io: CommandIO) -> int:
    basedir = _basedir(options)
    _check_node_dir(basedir)
    pid = _read_pid(basedir)
    if pid is not None and pid != os.getpid() and _pid_alive(pid):
        raise NodeCommandError(f"the node in {basedir!r} is already running (pid {pid})")
    from lafs.node_runner import run_nodes

    return run_nodes(
        [basedir],
        io,
        pid_file=options.pidfile or os.path.join(basedir, PID_FILE),
        log_file=options.logfile,
        exit_on_stdin_close=not options.allow_stdin_close,
    )


def start_command(options: argparse.Namespace, io: CommandIO) -> int:
    basedir = _basedir(options)
    _check_node_dir(basedir)
    pid = _read_pid(basedir)
    if pid is not None and _pid_alive(pid):
        io.stdout.write(f"the node in {basedir} is already running (pid {pid})\n")
        return 0
    os.makedirs(os.path.join(basedir, "logs"), exist_ok=True)
    with open(os.path.join(basedir, "logs", "start.log"), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lafs", "run", "--allow-stdin-close", basedir],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + options.timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            reason = _last_line(os.path.join(basedir, "logs", "start.log"))
            raise NodeCommandError(
                f"the node in {basedir} exited at start-up (code {process.returncode}): {reason}"
            )
        if _read_pid(basedir) == process.pid and _node_ready(basedir):
            io.stdout.write(f"node in {basedir} is running (pid {process.pid})\n")
            return 0
        time.sleep(0.1)
    raise NodeCommandError(f"the node in {basedir} did not come up within {options.timeout:.0f}s")


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def _node_ready(basedir: str) -> bool:
    return os.path.exists(os.path.join(basedir, nodedir.READY_MARKER))


def stop_command(options: argparse.Namespace, io: CommandIO) -> int:
    basedir = _basedir(options)
    pid = _read_pid(basedir)
    if pid is None:
        io.stderr.write(f"{basedir} does not look like a running node directory (no {PID_FILE})\n")
        return 2
    if not _pid_alive(pid):
        io.stderr.write(f"the node in {basedir} is not running (stale {PID_FILE} for pid {pid}); removing it\n")
        os.remove(os.path.join(basedir, PID_FILE))
        return 2
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            io.stdout.write(f"node in {basedir} stopped\n")
            return 0
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    io.stdout.write(f"node in {basedir} did not stop within 20s; killed it\n")
    return 0


# --- local-grid ---------------------------------------------------------------------------


def local_grid_command(options: argparse.Namespace, io: CommandIO) -> int:
    from lafs.node_runner import create_local_grid, run_nodes

    if options.storage_nodes < 1:
        raise UsageError("--storage-nodes must be at least 1")
    base = os.path.abspath(os.path.expanduser(options.directory))
    node_dirs = create_local_grid(base, options.storage_nodes, options.webport)
    io.stdout.write(f"starting a local grid in {base}: 1 introducer, {options.storage_nodes} storage nodes, 1 client\n")
    code = run_nodes(
        node_dirs,
        io,
        pid_file=os.path.join(base, PID_FILE),
        log_file=os.path.join(base, "grid.log"),
        exit_on_stdin_close=False,
        announce_web=True,
        local_grid=(node_dirs[0], options.webport),
    )
    io.stdout.write("local grid stopped\n")
    return code
