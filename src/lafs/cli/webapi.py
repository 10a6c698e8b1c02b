"""A small client of a node's web API for the file-store commands: one HTTP request per call, no reactor.

Errors come back as one line: the node's HTML error pages are reduced to their message,
and caps in request paths are never repeated in them.
"""

from __future__ import annotations

import html
import http.client
import json
import re
import time
from typing import IO, Any
from urllib.parse import urlsplit

from lafs.cli.common import CommandIO
from lafs.core.errors import LafsError

CHUNK = 1024 * 1024


class NodeUnreachableError(LafsError):
    """The node's web API cannot be reached."""


class WebAPIError(LafsError):
    """The node answered with an error."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=3600)


def request(
    url: str,
    method: str,
    path: str,
    body: IO[bytes] | bytes | None,
    length: int | None,
    io: CommandIO,
    headers: dict[str, str] | None = None,
) -> http.client.HTTPResponse:
    """Send one request to the node at ``url`` (its base, ending in /); ``path`` starts with /."""
    connection = connect(url)
    try:
        connection.putrequest(method, urlsplit(url).path.rstrip("/") + path)
        if isinstance(body, bytes):
            length = len(body)
        if length is not None:
            connection.putheader("Content-Length", str(length))
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        if isinstance(body, bytes):
            connection.send(body)
        elif body is not None and length:
            progress = Progress("uploading", length, io)
            while chunk := body.read(CHUNK):
                connection.send(chunk)
                progress.advance(len(chunk))
            progress.done()
        return connection.getresponse()
    except ConnectionRefusedError:
        raise NodeUnreachableError(f"the node at {url} is not running (connection refused)") from None
    except OSError as e:
        raise NodeUnreachableError(f"cannot talk to the node at {url}: {e}") from None


_TITLE = re.compile(r"<h1>(.*?)</h1>\s*(?:<p>(.*?)</p>)?", re.S | re.I)


def error_message(body: bytes) -> str:
    """The message in an error answer: plain text as it is, an HTML page's heading and detail."""
    text = body.decode("utf-8", errors="replace").strip()
    match = _TITLE.search(text)
    if match:
        heading = html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip()
        detail = html.unescape(re.sub(r"<[^>]+>", "", match.group(2) or "")).strip()
        text = heading if detail in ("", "no details") or heading not in ("Error", "") else detail
    text = " ".join(text.split())
    return text[:500]


def check(response: http.client.HTTPResponse, what: str) -> None:
    if response.status >= 400:
        message = error_message(response.read(100_000))
        raise WebAPIError(f"Error during {what}: {response.status} {response.reason}: {message}", response.status)


def call(url: str, method: str, path: str, io: CommandIO, body: bytes | None = None, what: str | None = None) -> bytes:
    """One request whose whole answer is wanted; errors raise WebAPIError."""
    response = request(url, method, path, body, 0 if body is None and method in ("POST", "PUT") else None, io)
    check(response, what or method)
    return response.read()


def get_json(url: str, path: str, io: CommandIO) -> Any:
    """``GET path?t=json``, parsed; None when the node says 404 (no such child)."""
    response = request(url, "GET", path + "?t=json", None, None, io)
    if response.status == 404:
        response.read()
        return None
    check(response, "GET")
    return json.loads(response.read())


class Progress:
    """A one-line progress indication on stderr, only when stderr is a terminal and the transfer is large."""

    def __init__(self, verb: str, total: int, io: CommandIO, threshold: int = 8 * CHUNK) -> None:
        self.verb = verb
        self.total = total
        self.done_bytes = 0
        self.io = io
        self.enabled = total >= threshold and getattr(io.stderr, "isatty", lambda: False)()
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
