"""A file reached by its cap (``/uri/$FILECAP``, ``/named/$FILECAP/NAME``): its bytes (with ``Range``),
``t=json``, ``t=info``, ``t=uri`` and ``t=readonly-uri``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote, urljoin

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.web import http, static
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from lafs.client.nodemaker import CapOnlyNode, MutableFileNode, Node
from lafs.client.nodes import Sink
from lafs.dirnode import DirectoryNode
from lafs.web.check import render_check
from lafs.web.common import (
    Dispatch,
    HandlerResult,
    WebError,
    get_arg,
    get_boolean_arg,
    get_t,
    when_done_url,
)
from lafs.web.info import NodeViews, json_body, node_json, not_modified
from lafs.web.status import Kind, Operation, tracked
from lafs.web.unlinked import form_file, publish_over, spooled_source


class Readable(Protocol):
    """What sending a file's bytes needs of its node (every ``FileNode`` has it)."""

    async def get_current_size(self) -> int: ...

    async def read(
        self, sink: Sink, offset: int = 0, length: int | None = None, on_start: Callable[[], Any] | None = None
    ) -> None: ...


class FileHandler(NodeViews):
    """Answers the requests for one file node.

    ``named``: reached as ``/named/$CAP/NAME``, where NAME (the last path
    segment) is the file's name and only GET and HEAD make sense.
    """

    def __init__(self, node: Node, named: bool = False) -> None:
        self.node = node
        self.named = named
        self.operations = Dispatch(
            "a file",
            {
                (b"GET", ""): self._bytes,
                (b"GET", "json"): self._json,
                (b"GET", "info"): self._info,
                (b"GET", "uri"): self._uri,
                (b"GET", "readonly-uri"): self._readonly_uri,
                (b"PUT", ""): self._replace,
                (b"POST", "upload"): self._replace_from_form,
                (b"POST", "check"): self._check,
            },
        )

    def render(self, request: Any) -> int | bytes:
        if self.named and request.method not in (b"GET", b"HEAD"):
            raise WebError(http.BAD_REQUEST, "/named can only be used with GET or HEAD")
        if not self.named and request.postpath and any(request.postpath):
            child = unquote(request.postpath[0].decode("utf-8", "replace"))
            raise WebError(http.BAD_REQUEST, f"Files have no children named {child!r}")
        if request.method in (b"GET", b"HEAD") and not_modified(request, self.node, get_t(request)):
            request.finish()  # a 304 carries no body, and no Content-Length of one
            return NOT_DONE_YET
        return self.operations.render(request)

    def _json(self, request: Any) -> HandlerResult:
        if isinstance(self.node, MutableFileNode):
            return self._json_with_current_size(request, self.node)
        return json_body(request, node_json(self.node))

    @staticmethod
    async def _json_with_current_size(request: Any, node: MutableFileNode) -> None:
        """A mutable file's JSON: its size is that of the version the grid holds now."""
        description = node_json(node)
        description[1]["size"] = await node.get_current_size()
        request.write(json_body(request, description))
        request.finish()

    def _writable(self) -> MutableFileNode:
        node = self.node
        if not isinstance(node, MutableFileNode):
            raise WebError(http.BAD_REQUEST, "an immutable file cannot be changed; upload a new one instead")
        if node.is_readonly():
            raise WebError(http.BAD_REQUEST, "this is a read-only cap: the file cannot be changed through it")
        return node

    def _replace(self, request: Any) -> HandlerResult:
        """``PUT /uri/$WRITECAP``: the body replaces the contents, or with ``offset=N`` (MDMF) is written at N."""
        node = self._writable()
        offset_text = get_arg(request, "offset")
        if not offset_text:
            return self._overwrite(request, node, request.content)
        try:
            offset = int(offset_text)
        except ValueError:
            raise WebError(http.BAD_REQUEST, f"offset={offset_text!r} is not a whole number") from None
        if offset < 0:
            raise WebError(http.BAD_REQUEST, f"offset={offset} is negative; it must be 0 or more")
        if node.format_name() != "MDMF":
            raise WebError(http.BAD_REQUEST, f"offset= needs an MDMF file; this one is {node.format_name()} (replace it whole instead)")
        return self._update(request, node, offset)

    def _replace_from_form(self, request: Any) -> HandlerResult:
        """``POST /uri/$WRITECAP?t=upload``: the form's ``file`` replaces the contents."""
        node = self._writable()
        return self._overwrite(request, node, form_file(request), when_done=get_arg(request, "when_done"))

    async def _overwrite(self, request: Any, node: MutableFileNode, body: Any, when_done: str = "") -> None:
        await publish_over(request, node, spooled_source(body))
        self._written(request, node, when_done)

    async def _update(self, request: Any, node: MutableFileNode, offset: int) -> None:
        await node.update(offset, spooled_source(request.content))
        self._written(request, node)

    @staticmethod
    def _written(request: Any, node: MutableFileNode, when_done: str = "") -> None:
        if when_done:
            request.redirect(urljoin(request.prePathURL().decode("utf-8"), when_done_url(when_done, node.get_uri())).encode("utf-8"))
        else:
            request.setResponseCode(http.OK)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(node.get_uri().encode("ascii"))
        request.finish()

    def _check(self, request: Any) -> HandlerResult:
        node = self.node
        if isinstance(node, CapOnlyNode):
            raise node.unsupported()
        if isinstance(node, DirectoryNode):  # directories have their own handler; never routed here
            raise WebError(http.BAD_REQUEST, "this is a directory, not a file")
        return render_check(request, node)

    def _bytes(self, request: Any) -> HandlerResult:
        if isinstance(self.node, CapOnlyNode):
            raise self.node.unsupported()
        if isinstance(self.node, DirectoryNode):
            raise WebError(http.BAD_REQUEST, "a directory has no bytes to send; ask for its listing instead")
        return self._send(request, self.node)

    async def _send(self, request: Any, node: Readable) -> None:
        save = get_boolean_arg(request, "save")  # checked before any byte goes out
        size = await node.get_current_size()
        first, last = 0, size - 1
        header = request.getHeader(b"range")
        partial = False
        parsed = parse_range(header.decode("latin-1"), size) if header else None
        if parsed is not None:
            if parsed[0] >= size:
                request.setHeader(b"content-range", f"bytes */{size}".encode())
                raise WebError(http.REQUESTED_RANGE_NOT_SATISFIABLE, "First beyond end of file")
            first, last = max(0, parsed[0]), min(size - 1, parsed[1])
            partial = True
        length = max(0, last - first + 1)

        def send_headers() -> None:
            named = unquote(request.postpath[-1].decode("utf-8", "replace")) if self.named and request.postpath else ""
            filename = get_arg(request, "filename") or named
            # As Tahoe does, down to passing the name as bytes (so "x.tar.gz" is text/plain
            # with gzip encoding): the type and encoding the file name suggests, else text/plain.
            content_type, encoding = static.getTypeAndEncoding(
                filename.encode("utf-8"), static.File.contentTypes, static.File.contentEncodings, "text/plain"
            )
            request.setHeader(b"content-type", content_type.encode("ascii"))
            if encoding:
                request.setHeader(b"content-encoding", encoding.encode("ascii"))
            request.setHeader(b"accept-ranges", b"bytes")
            # A file's bytes are whatever its uploader chose: an HTML file viewed here must not run
            # script in the gateway's origin (where it could read other caps), nor be sniffed into HTML.
            request.setHeader(b"content-security-policy", b"sandbox")
            request.setHeader(b"x-content-type-options", b"nosniff")
            if save and filename:
                request.setHeader(b"content-disposition", f'attachment; filename="{filename}"'.encode())
            if partial:
                request.setResponseCode(http.PARTIAL_CONTENT)
                request.setHeader(b"content-range", f"bytes {first}-{last}/{size}".encode())
            request.setHeader(b"content-length", str(length).encode())

        if request.method == b"HEAD" or length == 0:
            send_headers()
        else:
            # Headers go out only once the shares are found, so a missing file still gets a 410.
            kind: Kind = "retrieve" if isinstance(node, MutableFileNode) else "download"

            async def work(operation: Operation) -> None:
                operation.identify(getattr(node, "get_storage_index", lambda: None)())
                throttle = _Throttle(request, operation)
                try:
                    await node.read(throttle.write, offset=first, length=length, on_start=send_headers)
                finally:
                    request.unregisterProducer()

            await tracked(request, kind, length, work)
        request.finish()


@implementer(IPushProducer)
class _Throttle:
    """Flow control for a download: when the HTTP client falls behind, wait instead of buffering."""

    def __init__(self, request: Any, operation: Operation) -> None:
        self.request = request
        self.operation = operation
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
        self.operation.advance(len(data))
        if self.paused:
            self.waiting = defer.Deferred()
            return self.waiting
        return None


def parse_range(header: str, size: int) -> tuple[int, int] | None:
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

