"""File commands (``put``, ``get``): plain HTTP clients of a running node's web API, like Tahoe's CLI.

Both take grid paths (``ALIAS:PATH``, ``DIRCAP/PATH``) as well as bare caps; the directory
commands (ls, cp, mv, ...) are in dir_commands and share the option and path helpers here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
from typing import IO, Any
from urllib.parse import quote

from lafs.cli import aliases as alias_file
from lafs.cli.common import CommandIO, UsageError
from lafs.cli.paths import GridPath, parse_grid_path
from lafs.cli.webapi import CHUNK, NodeUnreachableError, Progress, WebAPIError, check, request
from lafs.core import caps
from lafs.core.errors import LafsError

__all__ = ["NodeUnreachableError", "WebAPIError", "add_common_options", "node_url", "nodedir", "register"]


def register(subparsers: Any) -> None:
    put = subparsers.add_parser("put", help="upload a file into the grid and print its cap")
    put.add_argument("from_file", nargs="?", default="-", metavar="LOCAL_FILE", help="file to upload ('-' or none: stdin)")
    put.add_argument(
        "to",
        nargs="?",
        default=None,
        metavar="REMOTE_FILE",
        help="where to link it (ALIAS:PATH, DIRCAP/PATH), or a mutable file's write cap to replace its contents",
    )
    put.add_argument("-m", "--mutable", action="store_true", help="make a mutable file (in the node's default mutable format)")
    put.add_argument("--format", default=None, help="CHK (default), SDMF or MDMF")
    add_common_options(put)
    put.set_defaults(handler=put_command)

    get = subparsers.add_parser("get", help="download a file by its cap or path")
    get.add_argument("from_cap", metavar="REMOTE_FILE", help="the file's cap or path (ALIAS:PATH)")
    get.add_argument("to_file", nargs="?", default="-", metavar="LOCAL_FILE", help="where to write ('-' or none: stdout)")
    add_common_options(get)
    get.set_defaults(handler=get_command)

    check = subparsers.add_parser("check", help="check a file's health on the grid (and optionally repair it)")
    check.add_argument("where", metavar="LOCATION", help="the file: its cap, or ALIAS:PATH")
    check.add_argument("--raw", action="store_true", help="print the results as JSON, as the web API gives them")
    check.add_argument("--verify", action="store_true", help="verify every bit of every share (slow)")
    check.add_argument("--repair", action="store_true", help="repair the file if it is unhealthy")
    check.add_argument("--add-lease", action="store_true", help="add or renew this client's lease on every share")
    add_common_options(check)
    check.set_defaults(handler=check_command)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``-u/--node-url`` and ``--dir-cap``, which every file-store command takes (as in Tahoe)."""
    parser.add_argument("-u", "--node-url", default=None, help="the node's web API URL (default: from NODEDIR/node.url)")
    parser.add_argument("--dir-cap", default=None, help="the directory cap to use as the 'tahoe' alias")


def nodedir(options: argparse.Namespace) -> str:
    return os.path.expanduser(getattr(options, "node_directory", None) or "~/.tahoe")


def node_url(options: argparse.Namespace) -> str:
    if options.node_url:
        url: str = options.node_url
    else:
        directory = nodedir(options)
        path = os.path.join(directory, "node.url")
        try:
            with open(path, encoding="ascii") as f:
                url = f.read().strip()
        except FileNotFoundError:
            raise NodeUnreachableError(
                f"cannot find {path}: is the node in {directory} running? (start it with 'tahoe run {directory}')"
            ) from None
    if not url.startswith("http://"):
        raise UsageError(f"the node URL must start with http://, got {url!r}")
    return url.rstrip("/") + "/"


def grid_path(options: argparse.Namespace, arg: str, strict: bool = False) -> GridPath:
    """``arg`` as a grid path, with the aliases of the node directory (and ``--dir-cap``).

    ``strict``: a malformed starting cap is refused here rather than sent to the node (the
    directory commands; put and get leave it to the node, which names the problem).
    """
    path = parse_grid_path(arg, alias_file.read_aliases(nodedir(options), getattr(options, "dir_cap", None)))
    if strict:
        check_cap(path.cap)
    return path


def check_cap(cap: str) -> None:
    try:
        caps.from_string_strict(cap)
    except caps.CapError:
        # The message does not repeat the cap: errors may end up in logs.
        raise LafsError("Invalid cap: the path does not start with a well-formed cap of a kind Tahoe-LAFS 1.20 knows") from None


MUTABLE_WRITE_CAP_PREFIXES = ("URI:SSK:", "URI:MDMF:")


def _is_bare_file_cap(arg: str) -> bool:
    """A cap with no path after it that is not a directory: ``put`` replaces such a file's contents."""
    if not arg.startswith("URI:") or "/" in arg:
        return False
    try:
        return not isinstance(caps.from_string_strict(arg), caps.DirectoryCap)
    except caps.CapError:
        # Malformed: treated as a file cap, so the write-cap check below names the problem.
        return not arg.startswith("URI:DIR2")


def put_command(options: argparse.Namespace, io: CommandIO) -> int:
    fmt = options.format.upper() if options.format else None
    if fmt not in (None, "CHK", "SDMF", "MDMF"):
        raise UsageError(f"--format must be CHK, SDMF or MDMF, not {options.format!r}")
    if fmt == "CHK" and options.mutable:
        raise UsageError("--mutable and --format=CHK contradict each other: CHK files are immutable")
    if fmt in ("SDMF", "MDMF"):
        query = f"?format={fmt}"
    elif options.mutable:
        query = "?mutable=true"
    else:
        query = ""
    linked = False
    if options.to is not None and _is_bare_file_cap(options.to):
        if not options.to.startswith(MUTABLE_WRITE_CAP_PREFIXES):
            raise UsageError("that cap is not a mutable file's write cap (URI:SSK:... or URI:MDMF:...), so it cannot be replaced")
        if options.mutable or fmt is not None:
            raise UsageError("--mutable and --format choose how a new file is made; they cannot be used to replace one")
        path = "/uri/" + quote(options.to, safe="")
    elif options.to is not None:
        target = grid_path(options, options.to)
        if not target.segments or target.trailing_slash:
            raise LafsError(f"cannot put to a directory: give a file name, as in '{options.to.rstrip('/')}/NAME'")
        path = target.url_path() + query
        linked = True
    else:
        path = "/uri" + query
    url = node_url(options)
    with _open_source(options.from_file, io) as (source, size):
        response = request(url, "PUT", path, source, size, io)
        check(response, "PUT")
        cap = response.read().decode("ascii").strip()
        if linked:
            # Tahoe reports whether the link was new (201 Created) or replaced one (200 OK).
            io.stderr.write(f"{response.status} {response.reason}\n")
        io.stdout.write(cap + "\n")
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
    source = grid_path(options, options.from_cap.strip())
    url = node_url(options)
    response = request(url, "GET", source.url_path(), None, None, io)
    check(response, "GET")
    length = int(response.getheader("Content-Length") or 0)
    if options.to_file == "-":
        out: IO[bytes] = getattr(io.stdout, "buffer", None) or sys.stdout.buffer
        download_to(response, out, length, io)
        out.flush()
        return 0
    write_atomically(response, options.to_file, length, io)
    io.stderr.write(f"{options.from_cap} retrieved and written to {os.path.abspath(options.to_file)}\n")
    return 0


def write_atomically(response: http.client.HTTPResponse, to_file: str, length: int, io: CommandIO) -> None:
    """Download into ``to_file.partial`` and rename, so a failed download never leaves a truncated file."""
    partial = to_file + ".partial"
    try:
        with open(partial, "wb") as f:
            download_to(response, f, length, io)
        os.replace(partial, to_file)
    except OSError as e:
        raise LafsError(f"cannot write {to_file}: {e.strerror}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def download_to(response: http.client.HTTPResponse, out: IO[bytes], length: int, io: CommandIO) -> None:
    progress = Progress("downloading", length, io)
    received = 0
    while chunk := response.read(CHUNK):
        out.write(chunk)
        received += len(chunk)
        progress.advance(len(chunk))
    progress.done()
    if length and received != length:
        raise WebAPIError(f"download ended early: got {received} of {length} bytes")


def check_command(options: argparse.Namespace, io: CommandIO) -> int:
    """``tahoe check``: POST ``t=check&output=JSON`` and print the results as Tahoe's CLI does."""
    url = node_url(options)
    where = grid_path(options, options.where.strip(), strict=True)
    query = "t=check&output=JSON"
    for flag, name in ((options.verify, "verify"), (options.repair, "repair"), (options.add_lease, "add-lease")):
        if flag:
            query += f"&{name}=true"
    response = request(url, "POST", where.url_path() + "?" + query, None, 0, io)
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
