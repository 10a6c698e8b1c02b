"""What the gateway says about any node: Tahoe's JSON description, the ``t=info`` page, and its ETag."""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import quote

from twisted.web import http
from twisted.web.template import Element, renderer, tags

from lafs.client.nodemaker import CapOnlyNode, Node
from lafs.core import base32
from lafs.web.html import send_page, template


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


def json_body(request: Any, value: Any) -> bytes:
    """A JSON answer as Tahoe gives one: indented, newline-terminated, typed text/plain."""
    request.setHeader(b"content-type", b"text/plain")
    return (json.dumps(value, indent=1) + "\n").encode("utf-8")


def cap_body(request: Any, cap: str) -> bytes:
    """``t=uri`` / ``t=readonly-uri``: the cap as text."""
    request.setHeader(b"content-type", b"text/plain")
    return cap.encode("ascii")


def not_modified(request: Any, node: Node, t: str) -> bool:
    """Set Tahoe's ETag for a view of an immutable node; True when the client has it already (a 304).

    An immutable node's views never change, so the storage index and ``t`` name them for good.
    """
    si = None if node.is_mutable() else node.get_storage_index()
    if not si:
        return False
    return bool(request.setETag(f"{base32.b2a(si)}-{t}".encode()) == http.CACHED)


def _cap_cell(cap: str, anchor: str, linked: bool, directory: bool) -> Any:
    """A cap as text to copy and (for caps the gateway can open) as a link to open it."""
    text = tags.code(cap, id=anchor, class_="cap")
    if not linked:
        return text
    href = "/uri/" + quote(cap, safe="") + ("/" if directory else "")
    return tags.span(text, " ", tags.a("open", href=href, id=anchor + "-link"))


def _kind(node: Node) -> str:
    if node.is_directory():
        return "mutable directory" if node.is_mutable() else "immutable directory"
    return "mutable file" if node.is_mutable() else "immutable file"


class InfoPage(Element):
    """``t=info``: a node's kind, format, size and caps, for a person."""

    loader = template("info.xml")

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._node = node

    @renderer
    def title(self, request: Any, tag: Any) -> Any:
        return tag("Directory info" if self._node.is_directory() else "File info")

    @renderer
    def rows(self, request: Any, tag: Any) -> Any:
        node = self._node
        info = node_json(node)[1]
        si = node.get_storage_index()
        rows: list[tuple[str, Any]] = [
            ("Object type", _kind(node)),
            ("Format", str(info.get("format", ""))),
            ("Size", str(info.get("size", "?"))),
            ("Storage index", tags.code(base32.b2a(si) if si else "none (the data is in the cap)")),
        ]
        # Each cap only when this node has it: a read-only view must not show (or hint at) a write cap.
        for label, key, anchor in (("Read-write cap", "rw_uri", "rw-cap"), ("Read-only cap", "ro_uri", "ro-cap"), ("Verify cap", "verify_uri", "verify-cap")):
            cap = info.get(key)
            if cap:
                rows.append((label, _cap_cell(cap, anchor, linked=key != "verify_uri", directory=node.is_directory())))
        return [tag.clone().fillSlots(name=name, value=value) for name, value in rows]

    @renderer
    def json(self, request: Any, tag: Any) -> Any:
        return tag(json.dumps(node_json(self._node), indent=1))

    @renderer
    def check_form(self, request: Any, tag: Any) -> Any:
        """Tahoe's "Check This Object" form: a POST of ``t=check`` with the verify, repair and add-lease choices."""
        node = self._node
        if node.is_directory() or isinstance(node, CapOnlyNode):
            return ""  # nothing this gateway can check yet
        here = f"/uri/{quote(node.get_uri(), safe='')}"
        return tag(
            tags.form(
                tags.fieldset(
                    tags.input(type="hidden", name="t", value="check"),
                    tags.input(type="hidden", name="return_to", value=here + "?t=info"),
                    tags.legend("Check on this object", class_="freeform-form-label"),
                    tags.div("Verify every bit? (EXPENSIVE):", tags.input(type="checkbox", name="verify")),
                    tags.div("Repair any problems?: ", tags.input(type="checkbox", name="repair")),
                    tags.div("Add/renew lease on all shares?: ", tags.input(type="checkbox", name="add-lease")),
                    tags.div("Emit results in JSON format?: ", tags.input(type="checkbox", name="output", value="JSON")),
                    tags.input(type="submit", value="Check"),
                ),
                action=here,
                method="post",
                enctype="multipart/form-data",
            ),
        )


class _HasNode(Protocol):
    @property
    def node(self) -> Node: ...


class NodeViews:
    """The views every file and directory handler answers the same way: ``t=info``, ``t=uri``, ``t=readonly-uri``."""

    def _info(self: _HasNode, request: Any) -> Any:
        return send_page(request, InfoPage(self.node))

    def _uri(self: _HasNode, request: Any) -> bytes:
        return cap_body(request, self.node.get_uri())

    def _readonly_uri(self: _HasNode, request: Any) -> bytes:
        return cap_body(request, self.node.get_readonly_uri())
