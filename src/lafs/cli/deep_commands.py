"""``tahoe deep-check``, ``tahoe manifest`` and ``tahoe stats``: clients of the gateway's deep operations.

deep-check and manifest read ``t=stream-deep-check`` / ``t=stream-manifest``
line by line; stats starts ``t=start-deep-stats`` and polls the operation, as
Tahoe's CLI does.  The output is Tahoe 1.20's (compared with the real tahoe on a
real grid).  On a terminal, a long walk shows how many objects it has seen.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from lafs.cli.common import CommandIO
from lafs.cli.file_commands import add_common_options, grid_path, node_url
from lafs.cli.webapi import WebAPIError, request


def register(subparsers: Any) -> None:
    deep = subparsers.add_parser("deep-check", help="check every file and directory below a directory")
    deep.add_argument("where", metavar="LOCATION", help="the directory: its cap, or ALIAS:PATH")
    deep.add_argument("--raw", action="store_true", help="print the results as JSON lines, as the web API gives them")
    deep.add_argument("--verify", action="store_true", help="verify every bit of every share (slow)")
    deep.add_argument("--repair", action="store_true", help="repair what is unhealthy")
    deep.add_argument("--add-lease", action="store_true", help="add or renew this client's lease on every share")
    deep.add_argument("-v", "--verbose", action="store_true", help="one line per object")
    add_common_options(deep)
    deep.set_defaults(handler=deep_check_command)

    manifest = subparsers.add_parser("manifest", help="list every object below a directory")
    manifest.add_argument("where", metavar="LOCATION", help="the directory: its cap, or ALIAS:PATH")
    which = manifest.add_mutually_exclusive_group()
    which.add_argument("-s", "--storage-index", action="store_true", help="only the storage indexes")
    which.add_argument("--verify-cap", action="store_true", help="only the verify caps")
    which.add_argument("--repair-cap", action="store_true", help="only the repair caps")
    which.add_argument("-r", "--raw", action="store_true", help="the JSON lines, as the web API gives them")
    add_common_options(manifest)
    manifest.set_defaults(handler=manifest_command)

    stats = subparsers.add_parser("stats", help="counts and sizes of everything below a directory")
    stats.add_argument("where", metavar="LOCATION", help="the directory: its cap, or ALIAS:PATH")
    stats.add_argument("-r", "--raw", action="store_true", help="the JSON, as the web API gives it")
    add_common_options(stats)
    stats.set_defaults(handler=stats_command)


class _Counter:
    """``N objects`` on stderr while a walk goes on, when stderr is a terminal."""

    def __init__(self, io: CommandIO) -> None:
        self.io = io
        self.count = 0
        self.enabled = getattr(io.stderr, "isatty", lambda: False)()
        self._last = 0.0

    def tick(self) -> None:
        self.count += 1
        now = time.monotonic()
        if self.enabled and now - self._last > 0.5:
            self._last = now
            self.io.stderr.write(f"\r{self.count} objects...")
            self.io.stderr.flush()

    def done(self) -> None:
        if self.enabled and self._last:
            self.io.stderr.write("\r" + " " * 30 + "\r")


def _post(options: argparse.Namespace, io: CommandIO, query: str) -> Any:
    url = node_url(options)
    where = grid_path(options, options.where.strip(), strict=True)
    response = request(url, "POST", where.url_path() + "?" + query, b"", None, io)
    if response.status != 200:
        message = response.read(10000).decode("utf-8", errors="replace").strip()
        io.stderr.write(f"ERROR: {response.status} {response.reason}\n{message}\n")
        return None
    return response


def _stream(options: argparse.Namespace, io: CommandIO, query: str, each: Any) -> int:
    """Feed each JSON line to ``each``; an ``ERROR:`` line ends the command with exit 1."""
    response = _post(options, io, query)
    if response is None:
        return 1
    counter = _Counter(io)
    try:
        while raw := response.readline():
            line = raw.decode("utf-8").rstrip("\n")
            if not line:
                continue
            if line.startswith("ERROR:"):
                counter.done()
                io.stderr.write(line[len("ERROR:") :].strip() + "\n")
                return 1
            if options.raw:
                io.stdout.write(line + "\n")
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise WebAPIError("the node's answer is not JSON lines") from None
            counter.tick()
            each(data)
    finally:
        counter.done()
    return 0


def _quoted_path(path: list[str]) -> str:
    return "'" + ("/".join(path) or "<root>") + "'"


PROGRESS_EVERY = 100
"""deep-check prints ``N objects checked..`` on reaching every this many objects (before that object's own
line with -v), as Tahoe does."""


def deep_check_command(options: argparse.Namespace, io: CommandIO) -> int:
    query = "t=stream-deep-check"
    for flag, name in ((options.verify, "verify"), (options.repair, "repair"), (options.add_lease, "add-lease")):
        if flag:
            query += f"&{name}=true"
    counts = {"objects": 0, "healthy": 0, "unhealthy": 0, "post-healthy": 0, "post-unhealthy": 0, "attempted": 0, "successful": 0}
    corrupt: list[list[Any]] = []

    def each(data: dict[str, Any]) -> None:
        if data.get("type") == "stats":
            return
        if data.get("type") == "unknown":
            return
        counts["objects"] += 1
        outcome = ""  # a repair's result: printed with or without -v, as Tahoe does
        if counts["objects"] % PROGRESS_EVERY == 0:
            io.stdout.write(f"{counts['objects']} objects checked..\n")
        repaired = data.get("check-and-repair-results")
        if repaired is not None:
            pre = repaired["pre-repair-results"]["results"]
            post = repaired["post-repair-results"]["results"]
            healthy = bool(pre["healthy"])
            counts["post-healthy" if post["healthy"] else "post-unhealthy"] += 1
            if repaired["repair-attempted"]:
                counts["attempted"] += 1
                counts["successful"] += 1 if repaired["repair-successful"] else 0
            corrupt.extend(pre.get("list-corrupt-shares", []))
            summary = "healthy" if healthy else "not healthy"
            if repaired["repair-attempted"]:
                outcome = " repair successful" if repaired["repair-successful"] else " repair failed"
        else:
            check = data.get("check-results", {})
            results = check.get("results", {})
            healthy = bool(results.get("healthy"))
            if options.repair:
                counts["post-healthy" if healthy else "post-unhealthy"] += 1
                summary = "healthy" if healthy else "not healthy"
            else:
                summary = check.get("summary") or "Healthy (LIT)"
            corrupt.extend(results.get("list-corrupt-shares", []))
        counts["healthy" if healthy else "unhealthy"] += 1
        if options.verbose:
            io.stdout.write(f"{_quoted_path(data['path'])}: {summary}\n")
        if outcome:
            io.stdout.write(outcome + "\n")

    code = _stream(options, io, query, each)
    if code or options.raw:
        return code
    if options.repair:
        failed = counts["attempted"] - counts["successful"]
        io.stdout.write(
            f"done: {counts['objects']} objects checked\n"
            f" pre-repair: {counts['healthy']} healthy, {counts['unhealthy']} unhealthy\n"
            f" {counts['attempted']} repairs attempted, {counts['successful']} successful, {failed} failed\n"
            f" post-repair: {counts['post-healthy']} healthy, {counts['post-unhealthy']} unhealthy\n"
        )
    else:
        io.stdout.write(f"done: {counts['objects']} objects checked, {counts['healthy']} healthy, {counts['unhealthy']} unhealthy\n")
    if corrupt:
        io.stdout.write(f" {len(corrupt)} corrupt shares:\n")
        for server, si, shnum in corrupt:
            io.stdout.write(f"  server {server}, SI {si}, shnum {shnum}\n")
    return 0


def manifest_command(options: argparse.Namespace, io: CommandIO) -> int:
    def each(data: dict[str, Any]) -> None:
        if data.get("type") == "stats":
            return
        if options.storage_index:
            value = data.get("storage-index")
        elif options.verify_cap:
            value = data.get("verifycap")
        elif options.repair_cap:
            value = data.get("repaircap")
        else:
            io.stdout.write(f"{data['cap']} {'/'.join(data['path'])}\n")
            return
        if value:
            io.stdout.write(value + "\n")

    return _stream(options, io, "t=stream-manifest", each)


def abbreviate_space(size: int, si: bool = True) -> str:
    """Tahoe's abbreviate_space: ``1.73 kB`` (SI) or ``1.69 kiB``; below 1024, plain bytes."""
    unit, suffix = (1000.0, "B") if si else (1024.0, "iB")
    if size < 1024:
        return f"{size} B"
    for power, prefix in enumerate("kMGTP", start=1):
        if size < unit ** (power + 1):
            return f"{size / unit**power:.2f} {prefix}{suffix}"
    return f"{size / unit**6:.2f} E{suffix}"


def abbreviate_both(size: int) -> str:
    return f"({abbreviate_space(size, True)}, {abbreviate_space(size, False)})"


STATS_KEYS = (
    "count-immutable-files",
    "count-mutable-files",
    "count-literal-files",
    "count-files",
    "count-directories",
    "size-immutable-files",
    "size-mutable-files",
    "size-literal-files",
    "size-directories",
    "largest-directory",
    "largest-immutable-file",
)


def format_stats(data: dict[str, Any]) -> str:
    """What ``tahoe stats`` prints for deep-stats JSON (keys the node does not give are left out, as Tahoe)."""
    width = max(len(k) for k in STATS_KEYS)
    lines = ["Counts and Total Sizes:"]
    for key in STATS_KEYS:
        if key not in data:
            continue
        value = data[key]
        line = f"{key:>{width}}: {value}"
        if not key.startswith("count-") and value > 1000:
            line += "    " + abbreviate_both(value)
        lines.append(line)
    histogram = data.get("size-files-histogram") or []
    if histogram:
        lines.append("Size Histogram:")
        maxlen = max(len(str(high)) for _, high, _ in histogram)
        countlen = max(len(str(count)) for _, _, count in histogram)
        previous = None
        for low, high, count in histogram:
            if previous is not None and low != previous + 1:
                lines.append(" " * (maxlen - 1) + "...")
            previous = high
            lines.append(f"{low:>{maxlen}}-{high:<{maxlen}} : {count:<{countlen}}    {abbreviate_both(high)}")
    return "\n".join(lines) + "\n"


def stats_command(options: argparse.Namespace, io: CommandIO) -> int:
    handle = "lafs-stats-" + os.urandom(8).hex()
    response = _post(options, io, f"t=start-deep-stats&ophandle={handle}&output=JSON")
    if response is None:
        return 1
    response.read()
    url = node_url(options)
    counter = _Counter(io)
    while True:
        status = request(url, "GET", f"/operations/{handle}?t=status&output=JSON", None, None, io)
        body = status.read()
        if status.status != 200:
            raise WebAPIError(f"Error during GET /operations/: {status.status} {status.reason}", status.status)
        data = json.loads(body)
        if data.get("finished"):
            break
        counter.count = int(data.get("count-files", 0)) + int(data.get("count-directories", 0))
        counter.tick()
        time.sleep(0.25)
    counter.done()
    # The handle is of no more use: let the node forget it now rather than in four days.
    request(url, "GET", f"/operations/{handle}?output=JSON&release-after-complete=true", None, None, io).read()
    if options.raw:
        io.stdout.write(json.dumps(data, indent=1) + "\n\n")  # Tahoe prints the JSON body, newline and all
    else:
        io.stdout.write(format_stats(data))
    return 0
