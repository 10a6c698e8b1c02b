"""Unlinked uploads: ``PUT /uri`` (the body is the file) and ``POST /uri?t=upload`` (a form's ``file``)."""

from __future__ import annotations

import io
import time
from typing import Any
from urllib.parse import quote, urljoin

from twisted.web import http
from twisted.web.template import Element, renderer, tags

from lafs.client.nodemaker import Node, NodeMaker
from lafs.client.nodes import FileSource
from lafs.client.storage_broker import StorageBroker
from lafs.immutable.upload import UploadResult
from lafs.web.common import (
    HandlerResult,
    WebError,
    get_arg,
    get_format,
    is_mutable_format,
    when_done_url,
)
from lafs.web.html import link_list, send_page, template
from lafs.web.request import HashingBody
from lafs.web.status import CountingSource, Operation, tracked


class UnlinkedUploads:
    """Uploads that link the new file nowhere: the answer is its cap (or a page showing it)."""

    def __init__(self, node_maker: NodeMaker, broker: StorageBroker | None) -> None:
        self.node_maker = node_maker
        self.broker = broker

    def put(self, request: Any) -> HandlerResult:
        """``PUT /uri``: the request body is the file; answers with its cap."""
        if self._mutable_format(request):
            return self.create_mutable(request, request.content)
        return self.upload(request, request.content)

    def post(self, request: Any) -> HandlerResult:
        """``POST /uri?t=upload``: the form's ``file`` field is the file; answers with a page, or ``when_done=``."""
        body = form_file(request)
        if self._mutable_format(request):
            return self.create_mutable(request, body, when_done=get_arg(request, "when_done"))
        return self.upload(request, body, when_done=get_arg(request, "when_done"))

    def _mutable_format(self, request: Any) -> str | None:
        """SDMF or MDMF when the request asks for a mutable file; None for an immutable one."""
        chosen = get_format(request, mutable_default=self.node_maker.mutable_format)  # type: ignore[arg-type]
        return chosen if is_mutable_format(chosen) else None

    async def create_mutable(self, request: Any, body: Any, when_done: str = "") -> None:
        """A new mutable file holding ``body``; answers with its write cap (or goes to ``when_done=``)."""
        node = await publish_new(request, self.node_maker, spooled_source(body), self._mutable_format(request))
        cap = node.get_uri()
        if when_done:
            request.redirect(urljoin(request.prePathURL().decode("utf-8"), when_done_url(when_done, cap)).encode("utf-8"))
            request.finish()
            return
        request.setResponseCode(http.OK)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(cap.encode("ascii"))
        request.finish()

    async def upload(self, request: Any, body: Any, when_done: str = "") -> None:
        """Upload ``body`` as an immutable file and answer with its cap."""
        source = spooled_source(body)
        key_hint = body.convergent_key() if isinstance(body, HashingBody) else None
        started = time.monotonic()
        node, result = await upload_new(request, self.node_maker, source, key_hint)
        cap = node.get_uri()
        if when_done:
            target = when_done_url(when_done, cap)
            request.redirect(urljoin(request.prePathURL().decode("utf-8"), target).encode("utf-8"))
            request.finish()
            return
        if request.method == b"POST":
            # A form upload comes from a browser: answer with a page, as Tahoe does.
            nicknames = {handle.server_id: handle.nickname for handle in self._servers()}
            await send_page(request, UploadResultsPage(node, result, time.monotonic() - started, nicknames))
            return
        request.setResponseCode(http.OK)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(cap.encode("ascii"))
        request.finish()

    def _servers(self) -> list[Any]:
        return list(self.broker.all_servers()) if self.broker is not None else []


async def upload_new(request: Any, node_maker: NodeMaker, source: FileSource, key_hint: bytes | None) -> tuple[Node, UploadResult]:
    """An immutable upload, recorded on the status page."""

    async def work(operation: Operation) -> tuple[Node, UploadResult]:
        node, result = await node_maker.upload_immutable(CountingSource(source, operation), key_hint=key_hint)
        operation.identify(node.get_storage_index())
        return node, result

    answer: tuple[Node, UploadResult] = await tracked(request, "upload", source.size, work)
    return answer


async def publish_new(request: Any, node_maker: NodeMaker, source: FileSource, file_format: str | None) -> Any:
    """A new mutable file, its first publish recorded on the status page."""

    async def work(operation: Operation) -> Any:
        node = await node_maker.create_mutable_file(CountingSource(source, operation), file_format)
        operation.identify(node.get_storage_index())
        return node

    return await tracked(request, "publish", source.size, work)


async def publish_over(request: Any, node: Any, source: FileSource) -> None:
    """A new version of a mutable file, recorded on the status page."""

    async def work(operation: Operation) -> None:
        operation.identify(node.get_storage_index())
        await node.overwrite(CountingSource(source, operation))

    await tracked(request, "publish", source.size, work)


def form_file(request: Any) -> Any:
    """The ``file`` field of an upload form (spooled, when the form was multipart)."""
    form_error = getattr(request, "form_error", None)
    if form_error:
        raise WebError(http.BAD_REQUEST, f"the upload form could not be read: {form_error}")
    body = getattr(request, "form_files", {}).get("file")
    if body is not None and getattr(request, "form_filenames", {}).get("file") == "" and body.size == 0:
        # What a browser sends when no file was chosen: refuse it rather than store an empty nameless file.
        raise WebError(http.BAD_REQUEST, "no file was chosen: pick a file to upload")
    if body is None:
        fields = request.args.get(b"file")
        if not fields:
            raise WebError(http.BAD_REQUEST, f"{request.method.decode()} ?t=upload needs a 'file' form field")
        body = io.BytesIO(fields[0])
    return body


def spooled_source(body: Any) -> FileSource:
    """A request body (a spool, a form part) as an upload source; a spool the disk could not hold is an error."""
    if isinstance(body, HashingBody) and body.spool_error is not None:
        raise WebError(http.INSUFFICIENT_STORAGE_SPACE, f"the gateway could not spool the upload: {body.spool_error}")
    return body if isinstance(body, FileSource) else FileSource(body)


class UploadResultsPage(Element):
    """The page a form upload answers with: the cap, where the shares went, how long it took (Tahoe's wording)."""

    loader = template("upload_results.xml")

    def __init__(self, node: Node, result: UploadResult, seconds: float, nicknames: dict[str, str | None]) -> None:
        super().__init__()
        self._node = node
        self._result = result
        self._seconds = seconds
        self._nicknames = nicknames

    def _name(self, server_id: str) -> str:
        return self._nicknames.get(server_id) or server_id[:11]

    @renderer
    def cap(self, request: Any, tag: Any) -> Any:
        return tag(self._node.get_uri())

    @renderer
    def download_link(self, request: Any, tag: Any) -> Any:
        cap = self._node.get_uri()
        return tag(href="/uri/" + quote(cap, safe=""))("/uri/" + cap)

    @renderer
    def sharemap(self, request: Any, tag: Any) -> Any:
        placed_on: dict[int, list[str]] = {}
        for server_id, shnums in self._result.placements.items():
            for shnum in shnums:
                placed_on.setdefault(shnum, []).append(self._name(server_id))
        items = [f"{shnum} -> placed on [{', '.join(sorted(servers))}]" for shnum, servers in sorted(placed_on.items())]
        return tag(link_list(items))

    @renderer
    def servermap(self, request: Any, tag: Any) -> Any:
        items = [
            "[{}] got share{}: {}".format(self._name(server_id), "s" if len(shnums) != 1 else "", ",".join(f"#{n}" for n in sorted(shnums)))
            for server_id, shnums in sorted(self._result.placements.items())
        ]
        return tag(link_list(items))

    @renderer
    def timings(self, request: Any, tag: Any) -> Any:
        size = self._node.get_size() or 0
        seconds = self._seconds
        rate = f"{size / seconds / 1e6:.2f} MBps" if seconds > 0 else "-"
        return tag(tags.ul(tags.li(f"File Size: {size} bytes"), tags.li(f"Total: {seconds:.2f}s ({rate})")))
