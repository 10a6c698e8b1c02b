"""A directory reached by its cap (``/uri/$DIRCAP[/PATH]``).

This version knows a directory only by its cap: it describes it (``t=json``,
``t=info``, ``t=uri``, ``t=readonly-uri``) but cannot list it or follow a path
below it; those answer 501 and 404 saying so.  Listing, children, uploads into
the directory and the directory's HTML page come as more entries in the table.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http
from twisted.web.server import NOT_DONE_YET

from lafs.client.nodemaker import CapOnlyNode, Node
from lafs.web.common import Dispatch, HandlerResult, WebError, get_t
from lafs.web.html import send_page
from lafs.web.info import InfoPage, cap_body, json_body, node_json, not_modified


class DirectoryHandler:
    """Answers the requests for one directory node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.operations = Dispatch(
            "a directory",
            {
                (b"GET", ""): self._listing,
                (b"GET", "json"): self._json,
                (b"GET", "info"): self._info,
                (b"GET", "uri"): self._uri,
                (b"GET", "readonly-uri"): self._readonly_uri,
            },
        )

    def render(self, request: Any) -> int | bytes:
        if request.postpath and any(request.postpath):
            raise WebError(http.NOT_FOUND, "paths below a cap need directory support, which is not here yet")
        if request.method in (b"GET", b"HEAD") and not_modified(request, self.node, get_t(request)):
            request.finish()
            return NOT_DONE_YET
        return self.operations.render(request)

    def _listing(self, request: Any) -> bytes:
        if isinstance(self.node, CapOnlyNode):
            raise self.node.unsupported()
        raise WebError(http.NOT_IMPLEMENTED, "listing a directory is not supported by this gateway yet")

    def _json(self, request: Any) -> bytes:
        return json_body(request, node_json(self.node))

    def _info(self, request: Any) -> HandlerResult:
        return send_page(request, InfoPage(self.node))

    def _uri(self, request: Any) -> bytes:
        return cap_body(request, self.node.get_uri())

    def _readonly_uri(self, request: Any) -> bytes:
        return cap_body(request, self.node.get_readonly_uri())
