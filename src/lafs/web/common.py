"""What every resource of the gateway shares: the one error -> HTTP status table, the runner
that turns errors into responses, Tahoe's argument parsing, and ``t=`` dispatch."""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.error import UnsupportedMethod
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.server import NOT_DONE_YET
from zope.interface import provider

from lafs import internals
from lafs.client.nodemaker import NotReadableError, UnsupportedOperationError
from lafs.core import caps
from lafs.core.dirnode_format import ChildNameError, ExistingChildError, NoSuchChildError
from lafs.core.errors import LafsError
from lafs.dirnode import DirectoryNotReadableError, DirectoryNotWritableError, PathNotDirectoryError
from lafs.immutable.download import NotEnoughSharesError
from lafs.immutable.upload import UploadUnhappinessError
from lafs.mutable.common import (
    NotEnoughServersError,
    NotWriteableError,
    PrivateKeyError,
    UncoordinatedWriteError,
)
from lafs.mutable.common import NotEnoughSharesError as MutableNotEnoughSharesError
from lafs.web import html

log = Logger()


class WebError(LafsError):
    """An error with the HTTP status it should produce."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


ERROR_STATUS: tuple[tuple[type[LafsError], int], ...] = (
    # Most specific first: the first class the error is an instance of decides.
    (NoSuchChildError, http.NOT_FOUND),
    (ExistingChildError, http.CONFLICT),
    (ChildNameError, http.BAD_REQUEST),
    # Tahoe 1.20 answers a change through a read-only or immutable directory with a 500
    # (its NotWriteableError is not in its table); it is a conflict with what the cap allows.
    (DirectoryNotWritableError, http.CONFLICT),
    (DirectoryNotReadableError, http.BAD_REQUEST),
    (PathNotDirectoryError, http.BAD_REQUEST),
    (caps.CapError, http.BAD_REQUEST),
    (NotReadableError, http.BAD_REQUEST),
    (NotWriteableError, http.BAD_REQUEST),
    (NotEnoughSharesError, http.GONE),
    (MutableNotEnoughSharesError, http.GONE),
    (UncoordinatedWriteError, http.CONFLICT),
    (NotEnoughServersError, http.SERVICE_UNAVAILABLE),
    (PrivateKeyError, http.GONE),
    (UnsupportedOperationError, http.NOT_IMPLEMENTED),
    (UploadUnhappinessError, http.SERVICE_UNAVAILABLE),
)
"""The HTTP status of each error lafs raises on purpose; a ``WebError`` carries its own."""


def message_of(error: LafsError) -> str:
    """What the answer says: Tahoe's own wording where clients may look for it, else the error's message."""
    if isinstance(error, NoSuchChildError):
        return f"No such child: {error.name}"
    if isinstance(error, ExistingChildError):
        return "There was already a child by that name, and you asked me to not replace it."
    if isinstance(error, caps.MustBeDeepImmutableError):
        return f"MustBeDeepImmutableError: {error}"
    return str(error)


def status_of(error: LafsError) -> int:
    """The HTTP status for one of our errors (500 for one the table does not know)."""
    if isinstance(error, WebError):
        return error.code
    for kind, code in ERROR_STATUS:
        if isinstance(error, kind):
            return code
    return http.INTERNAL_SERVER_ERROR


# --- error responses ------------------------------------------------------------------------


def error_body(request: Any, code: int, message: str) -> bytes:
    """Set the status and answer with ``message``: plain text (what the CLI and tools read,
    as Tahoe answers), or an error page when the client asked for HTML by name (a browser)."""
    request.setResponseCode(code)
    if html.wants_html(request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return html.page_now(html.ErrorPage(code, message, html.back_link(request)))
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return (message + "\n").encode("utf-8")


_CAP_TEXT = re.compile(r"URI(?::|%3A)[^\s/?&\"'<>]*", re.IGNORECASE)


def censor_caps(text: str) -> str:
    """``text`` with anything that looks like a cap (plain or URL-escaped) replaced by ``[CENSORED]``.

    A cap is the authority to read (or write) a file; whoever reads the log must not get it.
    """
    return _CAP_TEXT.sub("[CENSORED]", text)


def _log_unexpected(request: Any, failure: Failure) -> None:
    # The traceback's messages may quote a cap the request carried: censor them, keep the rest.
    log.error(
        "web request {method} {path} failed: {traceback}",
        method=request.method.decode("ascii", "replace"),
        path=censored_path(request.uri),
        traceback=censor_caps(failure.getTraceback()),
    )


def fail_request(request: Any, failure: Failure) -> None:
    """Answer a request whose handler failed: our errors by the table, anything else as a 500 (never a traceback)."""
    error = failure.value
    if isinstance(error, LafsError):
        code, message = status_of(error), message_of(error)
    else:
        _log_unexpected(request, failure)
        code, message = http.INTERNAL_SERVER_ERROR, f"internal error: {censor_caps(repr(error))}"
    if request.finished or internals.request_disconnected(request):
        return
    if request.startedWriting:
        # Headers are gone; all we can do is cut the response short.
        request.loseConnection()
        return
    request.write(error_body(request, code, message))
    request.finish()


Rendered = bytes | int
"""What a render method returns: the body, or ``NOT_DONE_YET``."""
HandlerResult = Rendered | Coroutine[Any, Any, None]
"""A handler answers at once (bytes) or later (a coroutine that writes and finishes the request)."""


def run_async(request: Any, work: Coroutine[Any, Any, None]) -> int:
    """Run an async handler to completion; its errors become responses by the table."""
    d = defer.Deferred.fromCoroutine(work)
    d.addErrback(lambda failure: fail_request(request, failure))
    return NOT_DONE_YET


def answer(request: Any, handler: Callable[[], HandlerResult]) -> Rendered:
    """Call a handler and turn what it gives (or raises) into what Twisted's ``render`` returns."""
    try:
        result = handler()
    except UnsupportedMethod:
        raise  # Twisted answers it: 405 with the Allow header
    except LafsError as e:
        return error_body(request, status_of(e), message_of(e))
    if isinstance(result, bytes | int):
        return result
    return run_async(request, result)


# --- arguments ---------------------------------------------------------------------------------


def get_arg(request: Any, name: str, default: str = "") -> str:
    """The first value of a query argument (or form field), as text."""
    values = request.args.get(name.encode("utf-8"), [])
    return values[0].decode("utf-8", errors="replace") if values else default


_TRUE = ("true", "t", "1", "on")
_FALSE = ("false", "f", "0", "off")


def boolean_of_arg(value: str, name: str = "") -> bool:
    """A boolean argument as Tahoe reads one: true/t/1/on or false/f/0/off, any case; else 400."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    what = f"{name}= " if name else ""
    raise WebError(http.BAD_REQUEST, f"invalid boolean {what}argument: {value!r} (use true or false)")


def get_boolean_arg(request: Any, name: str, default: bool = False) -> bool:
    value = get_arg(request, name)
    return boolean_of_arg(value, name) if value else default


OnlyFiles = Literal["only-files"]
ONLY_FILES: OnlyFiles = "only-files"


def get_replace_arg(request: Any, default: bool = True) -> bool | OnlyFiles:
    """``replace=``: a boolean, or ``only-files`` (replace files but never a directory)."""
    value = get_arg(request, "replace")
    if not value:
        return default
    if value.lower() == ONLY_FILES:
        return ONLY_FILES
    try:
        return boolean_of_arg(value)
    except WebError:
        raise WebError(http.BAD_REQUEST, f"invalid replace= argument: {value!r} (use true, false or only-files)") from None


FileFormat = Literal["CHK", "SDMF", "MDMF"]
_FORMATS: tuple[FileFormat, ...] = ("CHK", "SDMF", "MDMF")


def get_format(request: Any, default: FileFormat = "CHK", mutable_default: FileFormat = "SDMF") -> FileFormat:
    """``format=`` (any case) as Tahoe reads it; without one, a bare ``mutable=true`` means ``mutable_default``.

    Tahoe 1.20 always makes SDMF there; we make what ``[client]mutable.format`` says (SDMF unless set).
    """
    value = get_arg(request, "format")
    if not value:
        return mutable_default if get_boolean_arg(request, "mutable") else default
    for name in _FORMATS:
        if value.upper() == name:
            return name
    raise WebError(http.BAD_REQUEST, f"Unknown format: {value}, I know CHK, SDMF, MDMF")


def is_mutable_format(file_format: FileFormat) -> bool:
    return file_format != "CHK"


def get_t(request: Any) -> str:
    """The ``t=`` argument that selects an operation (Tahoe ignores surrounding spaces)."""
    return get_arg(request, "t").strip()


def when_done_url(when_done: str, cap: str) -> str:
    """Where ``when_done=`` sends the browser: as in Tahoe, ``%(uri)s`` becomes the new (quoted) cap."""
    return when_done.replace("%(uri)s", quote(cap, safe=""))


# --- t= dispatch -------------------------------------------------------------------------------

Handler = Callable[..., HandlerResult]


class Dispatch:
    """One resource's operations: (HTTP method, ``t=``) -> handler.

    HEAD is served by the GET handler (Twisted drops the body).  A method the
    resource has no operation for is a 405 naming the allowed ones; a ``t=``
    it does not know is a 400 naming the ``t``s it does.  A new operation is
    one more entry in the table.
    """

    def __init__(self, what: str, routes: Mapping[tuple[bytes, str], Handler]) -> None:
        self.what = what
        self.routes = dict(routes)

    def allowed_methods(self) -> list[bytes]:
        methods = {method for method, _ in self.routes}
        if b"GET" in methods:
            methods.add(b"HEAD")
        return sorted(methods)

    def handler_for(self, request: Any) -> Handler:
        """The handler for this request; raises ``UnsupportedMethod`` or a 400 ``WebError``."""
        method = b"GET" if request.method == b"HEAD" else request.method
        ts = [t for m, t in self.routes if m == method]
        if not ts:
            raise UnsupportedMethod(self.allowed_methods())
        t = get_t(request)
        handler = self.routes.get((method, t))
        if handler is None:
            raise WebError(http.BAD_REQUEST, self._unknown_t(method, t, ts))
        return handler

    def _unknown_t(self, method: bytes, t: str, known: Iterable[str]) -> str:
        named = ", ".join(f"t={k}" if k else "no t=" for k in sorted(known))
        verb = method.decode("ascii", "replace")
        if not t:
            return f"{verb} {self.what} needs a t= argument (one of: {named})"
        return f"{verb} {self.what} does not support t={t!r} (it supports: {named})"

    def render(self, request: Any, *args: Any) -> Rendered:
        """Find the handler for ``request`` and answer with it, passing ``args`` on."""
        return answer(request, lambda: self.handler_for(request)(request, *args))


# --- the access log ----------------------------------------------------------------------------

CENSORED = "[CENSORED]"
_CAP_PATH_PREFIXES = ("/uri/", "/cap/", "/file/", "/named/")
_SECRET_ARGS = ("uri", "private-key")


def censored_path(uri: bytes) -> str:
    """A request's path and query for the log, with every cap in it replaced by ``[CENSORED]``.

    As Tahoe does: all of the path after ``/uri/`` (``/cap/``, ``/file/``,
    ``/named/``), since a cap and the names under it are private, and the value
    of ``uri=`` and ``private-key=``.  Anything else that still looks like a cap
    (``when_done=/uri/URI:DIR2:...``, an odd path) is censored too.
    """
    text = uri.decode("utf-8", "replace")
    path, mark, query = text.partition("?")
    for prefix in _CAP_PATH_PREFIXES:
        if path.startswith(prefix):
            path = prefix + CENSORED
            break
    if mark:
        pairs = parse_qsl(query, keep_blank_values=True)
        pairs = [(k, CENSORED if k in _SECRET_ARGS else censor_caps(v)) for k, v in pairs]
        query = urlencode(pairs, safe="[]")
    return censor_caps(path + mark + query)


@provider(IAccessLogFormatter)
def access_log_line(timestamp: str | None, request: Any) -> str:
    """One access-log line (Twisted's ``IAccessLogFormatter``), in Tahoe's shape, caps censored.

    No Referer or User-Agent: a Referer may itself be a page's URL with a cap in it.
    """
    address = request.getClientAddress()
    host = getattr(address, "host", "-")
    method = request.method.decode("ascii", "replace")
    return f"web: {host} {method} {censored_path(request.uri)} {request.code} {request.sentLength or '-'}"
