"""``/uri``: upload unlinked immutable files, and read files by cap (with ``Range``), as Tahoe's web API does."""

from __future__ import annotations

import html
import io
import json
import time
from typing import Any
from urllib.parse import quote, unquote, urljoin

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web import http, static
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from lafs import internals
from lafs.client.nodemaker import (
    CapOnlyNode,
    Node,
    NodeMaker,
    NotReadableError,
    UnsupportedOperationError,
)
from lafs.client.nodes import FileSource
from lafs.client.storage_broker import StorageBroker
from lafs.core import base32, caps
from lafs.core.errors import LafsError
from lafs.immutable.download import NotEnoughSharesError
from lafs.immutable.upload import UploadResult, UploadUnhappinessError
from lafs.web.request import HashingBody

log = Logger()


class WebError(LafsError):
    """An error with the HTTP status it should produce."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _arg(request: Any, name: str, default: str = "") -> str:
    values = request.args.get(name.encode(), [])
    return values[0].decode("utf-8", errors="replace") if values else default


def _fail(request: Any, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (message + "\n").encode("utf-8")


def _error_code(error: Exception) -> int:
    if isinstance(error, WebError):
        return error.code
    if isinstance(error, caps.CapError):
        return http.BAD_REQUEST
    if isinstance(error, NotEnoughSharesError):
        return http.GONE
    if isinstance(error, UploadUnhappinessError):
        return http.SERVICE_UNAVAILABLE
    if isinstance(error, UnsupportedOperationError):
        return http.NOT_IMPLEMENTED
    if isinstance(error, NotReadableError):
        return http.BAD_REQUEST
    return http.INTERNAL_SERVER_ERROR


def _run(request: Any, work: Any) -> int:
    """Run an async handler; turn our errors into plain-text HTTP errors, never tracebacks."""

    def failed(failure: Any) -> None:
        error = failure.value
        if isinstance(error, LafsError):
            code, message = _error_code(error), str(error)
        else:
            log.failure("web request failed", failure)
            code, message = http.INTERNAL_SERVER_ERROR, f"internal error: {error!r}"
        if request.finished or internals.request_disconnected(request):
            return
        if request.startedWriting:
            # Headers are gone; all we can do is cut the response short.
            request.loseConnection()
            return
        request.write(_fail(request, code, message))
        request.finish()

    d = defer.Deferred.fromCoroutine(work)
    d.addErrback(failed)
    return NOT_DONE_YET


class URIRoot(Resource):
    """``/uri`` and ``/uri/$CAP``."""

    def __init__(self, node_maker: NodeMaker, broker: StorageBroker | None) -> None:
        super().__init__()
        self.node_maker = node_maker
        self.broker = broker

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return CapResource(self.node_maker, unquote(path.decode("utf-8", errors="replace")))

    def render_GET(self, request: Any) -> bytes:
        cap = _arg(request, "uri")
        if not cap:
            return _fail(request, http.BAD_REQUEST, "GET /uri needs a uri= argument (or use GET /uri/$CAP)")
        request.redirect(b"/uri/" + cap.encode("utf-8").replace(b":", b"%3A"))
        return b""

    def render_PUT(self, request: Any) -> int | bytes:
        fmt = _arg(request, "format", "CHK").upper()
        if _arg(request, "mutable").lower() in ("true", "t", "1", "on") or fmt in ("SDMF", "MDMF"):
            return _fail(request, http.NOT_IMPLEMENTED, "mutable uploads are not supported by this gateway yet")
        if fmt != "CHK":
            return _fail(request, http.BAD_REQUEST, f"unknown format {fmt!r} (expected CHK, SDMF or MDMF)")
        return _run(request, self._upload(request, request.content))

    def render_POST(self, request: Any) -> int | bytes:
        form_error = getattr(request, "form_error", None)
        if form_error:
            return _fail(request, http.BAD_REQUEST, f"the upload form could not be read: {form_error}")
        t = _arg(request, "t")
        if t != "upload":
            return _fail(request, http.BAD_REQUEST, f"POST /uri does not support t={t!r} here (use t=upload)")
        body = getattr(request, "form_files", {}).get("file")
        if body is None:
            fields = request.args.get(b"file")
            if not fields:
                return _fail(request, http.BAD_REQUEST, "POST /uri?t=upload needs a 'file' form field")
            body = io.BytesIO(fields[0])
        return _run(request, self._upload(request, body, when_done=_arg(request, "when_done")))

    async def _upload(self, request: Any, body: Any, when_done: str = "") -> None:
        key_hint = None
        if isinstance(body, HashingBody):
            if body.spool_error is not None:
                raise WebError(http.INSUFFICIENT_STORAGE_SPACE, f"the gateway could not spool the upload: {body.spool_error}")
            key_hint = body.convergent_key()
        started = time.monotonic()
        source = body if isinstance(body, FileSource) else FileSource(body)
        node, result = await self.node_maker.upload_immutable(source, key_hint=key_hint)
        cap = node.get_uri()
        if when_done:
            # As in Tahoe, "%(uri)s" in the URL becomes the new file's (quoted) cap.
            target = when_done.replace("%(uri)s", quote(cap, safe=""))
            request.redirect(urljoin(request.prePathURL().decode("utf-8"), target).encode("utf-8"))
            request.finish()
            return
        request.setResponseCode(http.OK)
        if request.method == b"POST":
            # A form upload comes from a browser: answer with a page, as Tahoe does.
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.write(self._upload_page(node, result, time.monotonic() - started).encode("utf-8"))
        else:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(cap.encode("ascii"))
        request.finish()

    def _upload_page(self, node: Node, result: UploadResult, seconds: float) -> str:
        esc = html.escape
        cap = node.get_uri()
        size = node.get_size() or 0
        names = {handle.server_id: handle.nickname or handle.server_id[:11] for handle in self._servers()}
        placed_on: dict[int, list[str]] = {}
        for server_id, shnums in result.placements.items():
            for shnum in shnums:
                placed_on.setdefault(shnum, []).append(names.get(server_id, server_id[:11]))
        sharemap = "".join(
            f"<li>{shnum} -&gt; placed on [{esc(', '.join(sorted(servers)))}]</li>" for shnum, servers in sorted(placed_on.items())
        )
        servermap = "".join(
            "<li>[{}] got share{}: {}</li>".format(
                esc(names.get(server_id, server_id[:11])), "s" if len(shnums) != 1 else "", ",".join(f"#{n}" for n in sorted(shnums))
            )
            for server_id, shnums in sorted(result.placements.items())
        )
        rate = f"{size / seconds / 1e6:.2f} MBps" if seconds > 0 else "-"
        return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Tahoe-LAFS - File Uploaded</title></head>
<body><h1>Uploading File... done!</h1>
<h2>Upload Results:</h2>
<ul>
<li>URI: <tt><span>{esc(cap)}</span></tt></li>
<li>Download link: <a href="/uri/{esc(quote(cap, safe=""))}">/uri/{esc(cap)}</a></li>
<li>Sharemap: <ul>{sharemap or "None"}</ul></li>
<li>Servermap: <ul>{servermap or "None"}</ul></li>
<li>Timings:<ul><li>File Size: {size} bytes</li><li>Total: {seconds:.2f}s ({rate})</li></ul></li>
</ul>
<div>Return to the <a href="/">Welcome Page</a></div>
</body></html>
"""

    def _servers(self) -> list[Any]:
        return list(self.broker.all_servers()) if self.broker is not None else []


class NamedRoot(Resource):
    """``/named/$FILECAP/NAME`` (and the older ``/file/``): a file at a URL ending in its name, for wget and friends."""

    def __init__(self, node_maker: NodeMaker) -> None:
        super().__init__()
        self.node_maker = node_maker

    def getChild(self, path: bytes, request: Any) -> Resource:
        return CapResource(self.node_maker, unquote(path.decode("utf-8", errors="replace")), named=True)

    def render(self, request: Any) -> bytes:
        return _fail(request, http.NOT_FOUND, "/named must be followed by a file cap and a name")


class CapResource(Resource):
    """``/uri/$CAP``: a file's bytes, its JSON description, or its info page.

    ``named``: reached as ``/named/$CAP/NAME``, where NAME (the last segment)
    is the file's name and only GET and HEAD make sense.
    """

    isLeaf = True

    def __init__(self, node_maker: NodeMaker, cap_text: str, named: bool = False) -> None:
        super().__init__()
        self.node_maker = node_maker
        self.cap_text = cap_text
        self.named = named

    def render(self, request: Any) -> int | bytes:
        if self.named and request.method not in (b"GET", b"HEAD"):
            return _fail(request, http.BAD_REQUEST, "/named can only be used with GET or HEAD")
        result: int | bytes = super().render(request)
        return result

    def render_GET(self, request: Any) -> int | bytes:
        try:
            node = self.node_maker.node_from_string(self.cap_text)
        except caps.CapError as e:
            return _fail(request, http.BAD_REQUEST, f"Invalid cap: {e}")
        if self.named:
            if node.is_directory():
                return _fail(request, http.BAD_REQUEST, f"{self.cap_text!r} is not a file cap")
        elif request.postpath and any(request.postpath):
            if node.is_directory():
                return _fail(request, http.NOT_FOUND, "paths below a cap need directory support, which is not here yet")
            child = unquote(request.postpath[0].decode("utf-8", "replace"))
            return _fail(request, http.BAD_REQUEST, f"Files have no children named {child!r}")
        t = _arg(request, "t")
        si = None if node.is_mutable() else node.get_storage_index()
        # Tahoe's ETag for an immutable file's view; a client that has it gets 304.
        if si and request.setETag(f"{base32.b2a(si)}-{t}".encode()) == http.CACHED:
            request.finish()  # a 304 carries no body, and no Content-Length of one
            return NOT_DONE_YET
        if t == "json":
            return self._json(request, node)
        if t == "info":
            return self._info(request, node)
        if t in ("uri", "readonly-uri"):
            request.setHeader(b"content-type", b"text/plain")
            return (node.get_uri() if t == "uri" else node.get_readonly_uri()).encode("ascii")
        if t:
            return _fail(request, http.BAD_REQUEST, f"unknown t={t!r} for a file")
        return _run(request, self._send(request, node))

    def render_HEAD(self, request: Any) -> int | bytes:
        return self.render_GET(request)

    async def _send(self, request: Any, node: Node) -> None:
        if isinstance(node, CapOnlyNode):
            raise node.unsupported()
        size = await node.get_current_size()
        first, last = 0, size - 1
        header = request.getHeader(b"range")
        partial = False
        parsed = _parse_range(header.decode("latin-1"), size) if header else None
        if parsed is not None:
            if parsed[0] >= size:
                request.setHeader(b"content-range", f"bytes */{size}".encode())
                raise WebError(http.REQUESTED_RANGE_NOT_SATISFIABLE, "First beyond end of file")
            first, last = max(0, parsed[0]), min(size - 1, parsed[1])
            partial = True
        length = max(0, last - first + 1)

        def send_headers() -> None:
            named = unquote(request.postpath[-1].decode("utf-8", "replace")) if self.named and request.postpath else ""
            filename = _arg(request, "filename") or named
            # As Tahoe does, down to passing the name as bytes (so "x.tar.gz" is text/plain
            # with gzip encoding): the type and encoding the file name suggests, else text/plain.
            content_type, encoding = static.getTypeAndEncoding(
                filename.encode("utf-8"), static.File.contentTypes, static.File.contentEncodings, "text/plain"
            )
            request.setHeader(b"content-type", content_type.encode("ascii"))
            if encoding:
                request.setHeader(b"content-encoding", encoding.encode("ascii"))
            request.setHeader(b"accept-ranges", b"bytes")
            if _arg(request, "save").lower() in ("true", "t", "1", "on") and filename:
                request.setHeader(b"content-disposition", f'attachment; filename="{filename}"'.encode())
            if partial:
                request.setResponseCode(http.PARTIAL_CONTENT)
                request.setHeader(b"content-range", f"bytes {first}-{last}/{size}".encode())
            request.setHeader(b"content-length", str(length).encode())

        if request.method == b"HEAD" or length == 0:
            send_headers()
        else:
            # Headers go out only once the shares are found, so a missing file still gets a 410.
            throttle = _Throttle(request)
            try:
                await node.read(throttle.write, offset=first, length=length, on_start=send_headers)
            finally:
                request.unregisterProducer()
        request.finish()

    def _json(self, request: Any, node: Node) -> bytes:
        request.setHeader(b"content-type", b"text/plain")  # Tahoe's type for JSON (which is ASCII here)
        return (json.dumps(node_json(node), indent=1) + "\n").encode("utf-8")

    def _info(self, request: Any, node: Node) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        esc = html.escape
        info = node_json(node)[1]
        si = node.get_storage_index()
        rows = [
            ("Object type", "mutable file" if node.is_mutable() else "immutable file"),
            ("Format", str(info.get("format", ""))),
            ("Size", str(info.get("size", "?"))),
            ("Storage index", base32.b2a(si) if si else "none (the data is in the cap)"),
            ("Read-only cap", str(info.get("ro_uri", ""))),
            ("Verify cap", str(info.get("verify_uri", "none"))),
        ]
        body = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code></td></tr>" for k, v in rows)
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>File info</title></head>"
            f"<body><h1>File info</h1><table>{body}</table></body></html>\n"
        ).encode()


@implementer(IPushProducer)
class _Throttle:
    """Flow control for a download: when the HTTP client falls behind, wait instead of buffering."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.paused = False
        self.waiting: defer.Deferred[None] | None = None
        request.registerProducer(self, True)

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.errback(WebError(http.BAD_REQUEST, "the client went away"))

    def write(self, data: bytes) -> defer.Deferred[None] | None:
        self.request.write(data)
        if self.paused:
            self.waiting = defer.Deferred()
            return self.waiting
        return None


def node_json(node: Node) -> list[Any]:
    """Tahoe's ``["filenode", {...}]`` (or ``"dirnode"``) description of a node."""
    info: dict[str, Any] = {"mutable": node.is_mutable(), "format": node.format_name()}
    size = node.get_size()
    if size is not None:
        info["size"] = size
    if not node.is_readonly():
        info["rw_uri"] = node.get_uri()
    info["ro_uri"] = node.get_readonly_uri()
    verifier = node.get_verify_uri()
    if verifier is not None:
        info["verify_uri"] = verifier
    return ["dirnode" if node.is_directory() else "filenode", info]


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The first range of a ``Range: bytes=...`` header, read as Tahoe 1.20 reads it; None to ignore the header.

    Every listed range must parse and have first <= last, or the whole header is
    ignored and the whole file sent (as RFC 9110 allows); only the first range is
    served.  A suffix range (``-N``) may reach back before the start of the file.
    """
    if not header.startswith("bytes="):
        return None
    ranges = []
    for spec in header[len("bytes=") :].split(","):
        try:
            start, end = spec.strip().split("-")
            if start == "":
                first, last = size - int(end), size - 1
            else:
                first, last = int(start), (int(end) if end != "" else size - 1)
        except ValueError:
            return None
        if first > last:
            return None
        ranges.append((first, last))
    return ranges[0]
