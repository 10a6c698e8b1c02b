"""File commands (``put``, ``get``): plain HTTP clients of a running node's web API, like Tahoe's CLI."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
from typing import IO, Any
from urllib.parse import quote, urlsplit

from lafs.cli.common import CommandIO, UsageError
from lafs.core.errors import LafsError

CHUNK = 1024 * 1024


class NodeUnreachableError(LafsError):
    """The node's web API cannot be reached."""


class WebAPIError(LafsError):
    """The node answered with an error."""


def register(subparsers: Any) -> None:
    put = subparsers.add_parser("put", help="upload a file into the grid and print its cap")
    put.add_argument("from_file", nargs="?", default="-", metavar="LOCAL_FILE", help="file to upload ('-' or none: stdin)")
    put.add_argument(
        "to", nargs="?", default=None, metavar="REMOTE_FILE", help="a mutable file's write cap, to replace its contents"
    )
    put.add_argument("-m", "--mutable", action="store_true", help="make a mutable file (in the node's default mutable format)")
    put.add_argument("--format", default=None, help="CHK (default), SDMF or MDMF")
    _add_node_url(put)
    put.set_defaults(handler=put_command)

    get = subparsers.add_parser("get", help="download a file by its cap")
    get.add_argument("from_cap", metavar="REMOTE_FILE", help="the file's cap")
    get.add_argument("to_file", nargs="?", default="-", metavar="LOCAL_FILE", help="where to write ('-' or none: stdout)")
    _add_node_url(get)
    get.set_defaults(handler=get_command)

    check = subparsers.add_parser("check", help="check a file's health on the grid (and optionally repair it)")
    check.add_argument("where", metavar="CAP", help="the file's cap")
    check.add_argument("--raw", action="store_true", help="print the results as JSON, as the web API gives them")
    check.add_argument("--verify", action="store_true", help="verify every bit of every share (slow)")
    check.add_argument("--repair", action="store_true", help="repair the file if it is unhealthy")
    check.add_argument("--add-lease", action="store_true", help="add or renew this client's lease on every share")
    _add_node_url(check)
    check.set_defaults(handler=check_command)


def _add_node_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--node-url", default=None, help="the node's web API URL (default: from NODEDIR/node.url)")


def node_url(options: argparse.Namespace) -> str:
    if options.node_url:
        url: str = options.node_url
    else:
        nodedir = os.path.expanduser(getattr(options, "node_directory", None) or "~/.tahoe")
        path = os.path.join(nodedir, "node.url")
        try:
            with open(path, encoding="ascii") as f:
                url = f.read().strip()
        except FileNotFoundError:
            raise NodeUnreachableError(
                f"cannot find {path}: is the node in {nodedir} running? (start it with 'tahoe run {nodedir}')"
            ) from None
    if not url.startswith("http://"):
        raise UsageError(f"the node URL must start with http://, got {url!r}")
    return url.rstrip("/") + "/"


def _connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=3600)


def _request(url: str, method: str, path: str, body: IO[bytes] | None, length: int | None, io: CommandIO) -> http.client.HTTPResponse:
    connection = _connect(url)
    try:
        connection.putrequest(method, urlsplit(url).path.rstrip("/") + path)
        if length is not None:
            connection.putheader("Content-Length", str(length))
        connection.endheaders()
        if body is not None and length:
            progress = _Progress("uploading", length, io)
            while chunk := body.read(CHUNK):
                connection.send(chunk)
                progress.advance(len(chunk))
            progress.done()
        return connection.getresponse()
    except ConnectionRefusedError:
        raise NodeUnreachableError(f"the node at {url} is not running (connection refused)") from None
    except OSError as e:
        raise NodeUnreachableError(f"cannot talk to the node at {url}: {e}") from None


def _check(response: http.client.HTTPResponse, what: str) -> None:
    if response.status >= 400:
        message = response.read(10000).decode("utf-8", errors="replace").strip()
        raise WebAPIError(f"{what} failed: {response.status} {response.reason}: {message}")


MUTABLE_WRITE_CAP_PREFIXES = ("URI:SSK:", "URI:MDMF:")


def put_command(options: argparse.Namespace, io: CommandIO) -> int:
    fmt = options.format.upper() if options.format else None
    if fmt not in (None, "CHK", "SDMF", "MDMF"):
        raise UsageError(f"--format must be CHK, SDMF or MDMF, not {options.format!r}")
    if fmt == "CHK" and options.mutable:
        raise UsageError("--mutable and --format=CHK contradict each other: CHK files are immutable")
    if options.to is not None:
        if not options.to.startswith(MUTABLE_WRITE_CAP_PREFIXES):
            raise UsageError(
                f"{options.to!r} is not a mutable file's write cap (URI:SSK:... or URI:MDMF:...); "
                "uploading to a directory path is not supported yet"
            )
        if options.mutable or fmt is not None:
            raise UsageError("--mutable and --format choose how a new file is made; they cannot be used to replace one")
        path = "/uri/" + quote(options.to, safe="")
    elif fmt in ("SDMF", "MDMF"):
        path = f"/uri?format={fmt}"
    elif options.mutable:
        path = "/uri?mutable=true"
    else:
        path = "/uri"
    url = node_url(options)
    with _open_source(options.from_file, io) as (source, size):
        response = _request(url, "PUT", path, source, size, io)
        _check(response, "upload")
        io.stdout.write(response.read().decode("ascii").strip() + "\n")
    return 0


class _open_source:
    """A seekable source and its size; stdin is spooled to a temporary file first."""

    def __init__(self, name: str, io: CommandIO) -> None:
        self.name = name
        self.io = io
        self._file: IO[bytes] | None = None

    def __enter__(self) -> tuple[IO[bytes], int]:
        if self.name == "-":
            spool = tempfile.TemporaryFile()
            stdin = getattr(self.io.stdin, "buffer", self.io.stdin)
            shutil.copyfileobj(stdin, spool, CHUNK)
            spool.seek(0)
            self._file = spool
        else:
            try:
                self._file = open(self.name, "rb")
            except OSError as e:
                raise LafsError(f"cannot read {self.name}: {e.strerror}") from None
        size = os.fstat(self._file.fileno()).st_size
        return self._file, size

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def get_command(options: argparse.Namespace, io: CommandIO) -> int:
    url = node_url(options)
    cap = options.from_cap.strip()
    response = _request(url, "GET", "/uri/" + quote(cap, safe=""), None, None, io)
    _check(response, "download")
    length = int(response.getheader("Content-Length") or 0)
    if options.to_file == "-":
        out: IO[bytes] = getattr(io.stdout, "buffer", None) or sys.stdout.buffer
        _copy(response, out, length, io)
        out.flush()
        return 0
    partial = options.to_file + ".partial"
    try:
        with open(partial, "wb") as f:
            _copy(response, f, length, io)
        os.replace(partial, options.to_file)
    except OSError as e:
        raise LafsError(f"cannot write {options.to_file}: {e.strerror}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return 0


def _copy(response: http.client.HTTPResponse, out: IO[bytes], length: int, io: CommandIO) -> None:
    progress = _Progress("downloading", length, io)
    received = 0
    while chunk := response.read(CHUNK):
        out.write(chunk)
        received += len(chunk)
        progress.advance(len(chunk))
    progress.done()
    if length and received != length:
        raise WebAPIError(f"download ended early: got {received} of {length} bytes")


class _Progress:
    """A one-line progress indication on stderr, only when stderr is a terminal and the transfer is large."""

    def __init__(self, verb: str, total: int, io: CommandIO) -> None:
        self.verb = verb
        self.total = total
        self.done_bytes = 0
        self.io = io
        self.enabled = total >= 8 * CHUNK and getattr(io.stderr, "isatty", lambda: False)()
        self.started = time.monotonic()
        self._last = 0.0

    def advance(self, count: int) -> None:
        self.done_bytes += count
        now = time.monotonic()
        if self.enabled and now - self._last > 0.5:
            self._last = now
            rate = self.done_bytes / max(now - self.started, 1e-6) / 1e6
            percent = 100 * self.done_bytes // max(self.total, 1)
            self.io.stderr.write(f"\r{self.verb}: {percent}% ({rate:.1f} MB/s)")
            self.io.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            self.io.stderr.write(f"\r{self.verb}: 100%          \n")


def check_command(options: argparse.Namespace, io: CommandIO) -> int:
    """``tahoe check``: POST ``t=check&output=JSON`` and print the results as Tahoe's CLI does."""
    url = node_url(options)
    cap = options.where.strip()
    query = "t=check&output=JSON"
    for flag, name in ((options.verify, "verify"), (options.repair, "repair"), (options.add_lease, "add-lease")):
        if flag:
            query += f"&{name}=true"
    response = _request(url, "POST", "/uri/" + quote(cap, safe="") + "?" + query, None, 0, io)
    if response.status != 200:
        message = response.read(10000).decode("utf-8", errors="replace").strip()
        io.stderr.write(f"ERROR: {response.status} {response.reason}\n{message}\n")
        return 1
    body = response.read().decode("utf-8")
    if options.raw:
        io.stdout.write(body if body.endswith("\n") else body + "\n")
        return 0
    try:
        data = json.loads(body)
    except ValueError:
        raise WebAPIError("the node's check results are not JSON") from None
    io.stdout.write(format_check_results(data))
    return 0


def format_check_results(data: dict[str, Any]) -> str:
    """The lines ``tahoe check`` prints for a check (or a check-and-repair) JSON body."""
    si = data.get("storage-index", "")
    if not si:
        return "Summary: Healthy (LIT)\n storage index: \n"
    repaired = "pre-repair-results" in data
    check = data["pre-repair-results"] if repaired else data
    results = check["results"]
    lines = []
    if repaired:
        # After a repair Tahoe says whether the file was healthy before it, in lower case.
        lines.append("Summary: " + ("healthy" if results["healthy"] else "not healthy"))
    else:
        lines.append(f"Summary: {check.get('summary', '')}")
    lines.append(f" storage index: {si}")
    lines.append(
        f" good-shares: {results['count-shares-good']} "
        f"(encoding is {results['count-shares-needed']}-of-{results['count-shares-expected']})"
    )
    lines.append(f" wrong-shares: {results['count-wrong-shares']}")
    corrupt = results.get("list-corrupt-shares", [])
    if corrupt:
        lines.append(" corrupt shares:")
        lines += [f"  server {server}, SI {share_si}, shnum {shnum}" for server, share_si, shnum in corrupt]
    if repaired and data.get("repair-attempted"):
        lines.append(" repair successful" if data.get("repair-successful") else " repair failed")
    return "\n".join(lines) + "\n"
