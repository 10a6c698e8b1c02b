"""``/uri`` (and ``/cap``, ``/named``, ``/file``): unlinked uploads, and caps routed to the handler for their kind of node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote

from twisted.web import http
from twisted.web.resource import Resource

from lafs.client.nodemaker import Node, NodeMaker
from lafs.client.storage_broker import StorageBroker
from lafs.core import caps
from lafs.dirnode import DirectoryNode
from lafs.web.common import Dispatch, Rendered, WebError, answer, get_arg
from lafs.web.directory import DirectoryResource, UnlinkedDirectories
from lafs.web.filenode import FileHandler
from lafs.web.unlinked import UnlinkedUploads


class NodeHandler(Protocol):
    """Answers requests for one node (one handler module per kind of node)."""

    def render(self, request: Any) -> Rendered: ...


NODE_HANDLERS: tuple[tuple[Callable[[Node], bool], Callable[[Node, NodeMaker], NodeHandler]], ...] = (
    # The first whose test the node passes handles it; a new kind of node is one more row.
    (lambda node: isinstance(node, DirectoryNode), lambda node, maker: DirectoryResource(node, maker)),  # type: ignore[arg-type]
    (lambda node: True, lambda node, maker: FileHandler(node)),
)


def handler_for(node: Node, node_maker: NodeMaker) -> NodeHandler:
    for applies, make in NODE_HANDLERS:
        if applies(node):
            return make(node, node_maker)
    raise WebError(http.NOT_IMPLEMENTED, "this gateway has no handler for that kind of node")


class URIRoot(Resource):
    """``/uri``: ``PUT`` and ``POST ?t=upload`` upload, ``GET ?uri=`` goes to a cap; ``/uri/$CAP`` is the node."""

    def __init__(self, node_maker: NodeMaker, broker: StorageBroker | None) -> None:
        super().__init__()
        self.node_maker = node_maker
        uploads = UnlinkedUploads(node_maker, broker)
        self.operations = Dispatch(
            "/uri",
            {
                (b"GET", ""): self._go_to_cap,
                (b"PUT", ""): uploads.put,
                (b"POST", "upload"): uploads.post,
                **UnlinkedDirectories(node_maker).routes(),
            },
        )

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return CapResource(self.node_maker, unquote(path.decode("utf-8", errors="replace")))

    def render(self, request: Any) -> Rendered:
        return self.operations.render(request)

    def _go_to_cap(self, request: Any) -> bytes:
        cap = get_arg(request, "uri")
        if not cap:
            raise WebError(http.BAD_REQUEST, "GET /uri needs a uri= argument (or use GET /uri/$CAP)")
        request.redirect(b"/uri/" + cap.encode("utf-8").replace(b":", b"%3A"))
        return b""


class NamedRoot(Resource):
    """``/named/$FILECAP/NAME`` (and the older ``/file/``): a file at a URL ending in its name, for wget and friends."""

    def __init__(self, node_maker: NodeMaker) -> None:
        super().__init__()
        self.node_maker = node_maker

    def getChild(self, path: bytes, request: Any) -> Resource:
        return CapResource(self.node_maker, unquote(path.decode("utf-8", errors="replace")), named=True)

    def render(self, request: Any) -> Rendered:
        return answer(request, self._missing)

    @staticmethod
    def _missing() -> bytes:
        raise WebError(http.NOT_FOUND, "/named must be followed by a file cap and a name")


class CapResource(Resource):
    """``/uri/$CAP[/...]``: the node the cap names, answered by the handler for its kind."""

    isLeaf = True

    def __init__(self, node_maker: NodeMaker, cap_text: str, named: bool = False) -> None:
        super().__init__()
        self.node_maker = node_maker
        self.cap_text = cap_text
        self.named = named

    def render(self, request: Any) -> Rendered:
        return answer(request, lambda: self._handler(request).render(request))

    def _handler(self, request: Any) -> NodeHandler:
        if self.named and request.method not in (b"GET", b"HEAD"):
            raise WebError(http.BAD_REQUEST, "/named can only be used with GET or HEAD")
        try:
            node = self.node_maker.node_from_string(self.cap_text)
        except caps.CapError as e:
            raise WebError(http.BAD_REQUEST, f"Invalid cap: {e}") from None
        if self.named:
            if node.is_directory():
                raise WebError(http.BAD_REQUEST, "a /named URL needs a file cap, not a directory cap")
            return FileHandler(node, named=True)
        return handler_for(node, self.node_maker)
