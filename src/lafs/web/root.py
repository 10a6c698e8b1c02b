"""The root of the web gateway's resource tree."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

from lafs.web.welcome import WelcomePage


class RootResource(Resource):
    """``/`` is the welcome page; later issues hang ``/uri`` and friends here."""

    def __init__(self, node: Any) -> None:
        super().__init__()
        self.node = node
        self.welcome = WelcomePage(node)
        if getattr(node, "files", None) is not None:
            from lafs.web.uri import NamedRoot, URIRoot

            uri = URIRoot(node)
            self.putChild(b"uri", uri)  # type: ignore[arg-type]
            self.putChild(b"cap", uri)  # type: ignore[arg-type]
            named = NamedRoot(node)
            self.putChild(b"named", named)  # type: ignore[arg-type]
            self.putChild(b"file", named)  # type: ignore[arg-type]

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self.welcome
        return super().getChild(path, request)

    def render(self, request: Any) -> bytes:
        return self.welcome.render(request)
