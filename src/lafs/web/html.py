"""HTML pages: ``twisted.web.template`` elements loaded from the XML templates shipped in ``web/templates``."""

from __future__ import annotations

from typing import Any, cast

from twisted.python.filepath import FilePath
from twisted.web import http
from twisted.web.iweb import ITemplateLoader
from twisted.web.template import Element, XMLFile, flattenString, renderer, tags

TEMPLATES = FilePath(__file__).sibling("templates")
STATIC = FilePath(__file__).sibling("static")
DOCTYPE = b"<!DOCTYPE html>\n"


def template(name: str) -> ITemplateLoader:
    """The loader for ``web/templates/NAME`` (read once, when first rendered)."""
    return cast(ITemplateLoader, XMLFile(TEMPLATES.child(name)))


async def page_bytes(element: Element) -> bytes:
    """The whole page an element renders, doctype first."""
    body: bytes = await flattenString(None, cast(Any, element))
    return DOCTYPE + body + b"\n"


async def send_page(request: Any, element: Element, code: int = http.OK) -> None:
    """Answer ``request`` with the page and finish it."""
    page = await page_bytes(element)
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.write(page)
    request.finish()


def page_now(element: Element) -> bytes:
    """The page of an element whose renderers all answer at once, without waiting.

    For error answers, which are given from synchronous render methods.
    """
    pages: list[bytes] = []
    failures: list[Any] = []
    flattenString(None, cast(Any, element)).addCallbacks(pages.append, failures.append)
    if failures:
        failures[0].raiseException()
    if not pages:
        raise RuntimeError(f"{type(element).__name__} did not render synchronously")
    return DOCTYPE + pages[0] + b"\n"


def wants_html(request: Any) -> bool:
    """Whether the client asked for HTML by name (a browser); tools and the CLI get plain text."""
    accept = request.getHeader(b"accept") or b""
    return b"text/html" in accept.lower()


class ErrorPage(Element):
    """An error, for a person at a browser: the status and what went wrong."""

    loader = template("error.xml")

    def __init__(self, code: int, message: str, back: str | None = None) -> None:
        super().__init__()
        self._code = code
        self._message = message
        self._back = back

    @renderer
    def title(self, request: Any, tag: Any) -> Any:
        phrase = http.RESPONSES.get(self._code, b"Error").decode("ascii", "replace")
        return tag(f"{self._code} {phrase}")

    @renderer
    def message(self, request: Any, tag: Any) -> Any:
        return tag(self._message)

    @renderer
    def back(self, request: Any, tag: Any) -> Any:
        links: list[Any] = []
        if self._back:
            links += [tags.a("Go back", href=self._back, id="back"), " · "]
        return tag(*links, "Return to the ", tags.a("Welcome Page", href="/"))


def back_link(request: Any) -> str | None:
    """Where an error page's "Go back" leads: the page a form was to come back to (``when_done=``),
    when that is a path on this gateway (never another site: an error page is no open redirect)."""
    values = request.args.get(b"when_done") or []
    target = values[0].decode("utf-8", "replace") if values else ""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


def link_list(items: list[Any]) -> Any:
    """A ``<ul>`` of items (or "None" when there are none, as Tahoe's pages say)."""
    if not items:
        return "None"
    return tags.ul(*[tags.li(item) for item in items])
