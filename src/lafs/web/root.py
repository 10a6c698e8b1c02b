"""The root of the web gateway's resource tree."""

from __future__ import annotations

from typing import Any

from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.static import File

from lafs.web.context import GatewayContext
from lafs.web.html import STATIC
from lafs.web.operations import OperationsRoot
from lafs.web.status import StatusResource
from lafs.web.storage_status import StoragePage
from lafs.web.uri import NamedRoot, URIRoot
from lafs.web.welcome import WelcomePage


class StaticFiles(File):
    """``/static/``: the files shipped in ``web/static``, and nothing else (no directory listings)."""

    def directoryListing(self) -> IResource:
        return notFound("No Such Resource", "the static files are not listed")


class RootResource(Resource):
    """``/`` is the welcome page, ``/static/`` the pages' style sheet; ``/uri`` and friends hang here."""

    def __init__(self, context: GatewayContext) -> None:
        super().__init__()
        self.welcome = WelcomePage(context)
        self.putChild(b"static", StaticFiles(STATIC.path))  # type: ignore[arg-type]
        self.putChild(b"status", StatusResource(context.status))  # type: ignore[arg-type]
        self.putChild(b"storage", StoragePage(context))  # type: ignore[arg-type]
        if context.node_maker is not None:
            uri = URIRoot(context.node_maker, context.storage_broker)
            self.putChild(b"uri", uri)  # type: ignore[arg-type]
            self.putChild(b"cap", uri)  # type: ignore[arg-type]
            named = NamedRoot(context.node_maker)
            self.putChild(b"named", named)  # type: ignore[arg-type]
            self.putChild(b"file", named)  # type: ignore[arg-type]
            self.putChild(b"operations", OperationsRoot(context.operations))  # type: ignore[arg-type]

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self.welcome
        return super().getChild(path, request)

    def render(self, request: Any) -> Any:
        return self.welcome.render(request)
