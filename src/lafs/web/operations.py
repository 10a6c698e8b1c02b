"""Deep operations through the gateway: streamed (``t=stream-deep-check``, ``t=stream-manifest``) and
in the background (``t=start-deep-check`` ... with ``ophandle=``), watched at ``/operations/$HANDLE``.

The registry is in memory, as Tahoe's: a handle lives until ``retain-for=``
seconds after it was last asked about (default four days, Tahoe's), until it
is fetched once finished with ``release-after-complete=true``, or until it is
cancelled.  Answers and messages are Tahoe 1.20's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.template import Element, TagLoader, renderer, tags

from lafs.client.deep import (
    DeepCheckResults,
    ManifestResults,
    Monitor,
    deep_check,
    deep_manifest,
    deep_size,
)
from lafs.core.errors import LafsError
from lafs.web.common import Dispatch, Rendered, WebError, get_arg, get_boolean_arg
from lafs.web.html import send_page

DEFAULT_RETAIN_FOR = 4 * 24 * 60 * 60
"""Tahoe keeps a finished operation's results four days unless told otherwise."""


def wants_json(request: Any) -> bool:
    return get_arg(request, "output").lower() == "json"


def _json(request: Any, value: Any) -> bytes:
    request.setHeader(b"content-type", b"text/plain")
    return (json.dumps(value, indent=1) + "\n").encode("utf-8")


@attrs.define(eq=False)
class Operation:
    """One background deep operation and what it has found so far."""

    kind: str
    """``deep-check``, ``manifest``, ``deep-size`` or ``deep-stats``."""
    monitor: Monitor
    results: DeepCheckResults | ManifestResults
    error: str | None = None
    expiry: Any = None

    @property
    def finished(self) -> bool:
        return self.monitor.finished or self.error is not None

    def to_json(self) -> Any:
        finished = self.finished
        if isinstance(self.results, DeepCheckResults):
            return self.results.to_json(finished)
        if self.kind == "manifest":
            return self.results.to_json(finished)
        stats = self.results.stats.results()
        if self.kind == "deep-size":
            # Tahoe 1.20's JSON for deep-size puts the whole stats under "size" (seen from a running node).
            return {"finished": finished, "size": stats}
        return {**stats, "finished": finished}

    def to_text(self) -> str:
        """deep-size's plain answer (Tahoe's)."""
        size = deep_size(self.results.stats.results())
        return f"finished: {'yes' if self.finished else 'no'}\nsize: {size}\n"


class Operations:
    """The gateway's operations by handle."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._operations: dict[str, Operation] = {}

    def __contains__(self, handle: str) -> bool:
        return handle in self._operations

    def add(self, handle: str, operation: Operation, retain_for: float = DEFAULT_RETAIN_FOR) -> None:
        self._operations[handle] = operation
        self._retain(handle, operation, retain_for)

    def _retain(self, handle: str, operation: Operation, seconds: float) -> None:
        if operation.expiry is not None and operation.expiry.active():
            operation.expiry.cancel()
        operation.expiry = self._reactor.callLater(seconds, self.release, handle)

    def get(self, handle: str) -> Operation:
        try:
            return self._operations[handle]
        except KeyError:
            raise WebError(http.NOT_FOUND, f"unknown/expired handle '{handle}'") from None

    def release(self, handle: str) -> None:
        operation = self._operations.pop(handle, None)
        if operation is not None and operation.expiry is not None and operation.expiry.active():
            operation.expiry.cancel()

    def touch(self, request: Any, handle: str, operation: Operation) -> None:
        """What a status request asks of the handle's life: ``retain-for=``, ``release-after-complete=``."""
        retain_for = get_arg(request, "retain-for")
        if retain_for:
            try:
                seconds = float(retain_for)
            except ValueError:
                raise WebError(http.BAD_REQUEST, f"retain-for= must be a number of seconds, not {retain_for!r}") from None
            self._retain(handle, operation, seconds)
        if operation.finished and get_boolean_arg(request, "release-after-complete"):
            self.release(handle)


# --- starting and streaming (``POST $DIRURL?t=...``) --------------------------------------------


_KINDS = {"start-deep-check": "deep-check", "start-manifest": "manifest", "start-deep-size": "deep-size", "start-deep-stats": "deep-stats"}


def start_operation(request: Any, node: Any, registry: Operations, t: str) -> bytes:
    """``t=start-*``: begin the walk in the background; answer with its status (JSON) or a redirect to it."""
    handle = get_arg(request, "ophandle")
    if not handle:
        raise WebError(http.BAD_REQUEST, "slow operation requires ophandle=")
    kind = _KINDS[t]
    monitor = Monitor()
    work: Callable[[], Any]
    results: DeepCheckResults | ManifestResults
    if kind == "deep-check":
        repair = get_boolean_arg(request, "repair")
        check_results = DeepCheckResults(node.get_storage_index(), repair)
        results = check_results
        verify, add_lease = get_boolean_arg(request, "verify"), get_boolean_arg(request, "add-lease")

        def work() -> Any:
            return deep_check(node, verify=verify, repair=repair, add_lease=add_lease, monitor=monitor, results=check_results)
    else:
        manifest = ManifestResults(node.get_storage_index())
        results = manifest

        def work() -> Any:
            return deep_manifest(node, monitor=monitor, results=manifest)

    operation = Operation(kind, monitor, results)
    registry.add(handle, operation)
    d = defer.Deferred.fromCoroutine(work())

    def failed(failure: Any) -> None:
        # The walk stops; what it found so far stays readable, with the reason.
        operation.error = failure.getErrorMessage() if failure.check(LafsError) else "internal error"
        monitor.finished = True

    d.addErrback(failed)
    if wants_json(request):
        return _json(request, operation.to_json())
    request.redirect(f"/operations/{handle}".encode())
    return b""


async def stream_operation(request: Any, node: Any, t: str) -> None:
    """``t=stream-deep-check`` / ``t=stream-manifest``: one JSON object per line, then the stats line."""
    request.setHeader(b"content-type", b"text/plain")

    def line(value: Any) -> None:
        request.write((json.dumps(value) + "\n").encode("utf-8"))

    try:
        if t == "stream-deep-check":
            found: DeepCheckResults | ManifestResults = await deep_check(
                node,
                verify=get_boolean_arg(request, "verify"),
                repair=get_boolean_arg(request, "repair"),
                add_lease=get_boolean_arg(request, "add-lease"),
                on_object=line,
            )
        else:
            found = await deep_manifest(node, on_object=line)
    except LafsError as e:
        # The status line went out with the first object: a failure can only be told in the stream.
        request.write(f"ERROR: {e}\n".encode())
    else:
        line({"type": "stats", "stats": found.stats.results()})
    request.finish()


# --- /operations/$HANDLE ------------------------------------------------------------------------------


class OperationsRoot(Resource):
    """``/operations/``: one child per handle."""

    def __init__(self, registry: Operations) -> None:
        super().__init__()
        self.registry = registry

    def getChild(self, path: bytes, request: Any) -> Resource:
        return OperationResource(self.registry, path.decode("utf-8", errors="replace"))


class OperationResource(Resource):
    isLeaf = True

    def __init__(self, registry: Operations, handle: str) -> None:
        super().__init__()
        self.registry = registry
        self.handle = handle
        self.dispatch = Dispatch(
            "an operation",
            {(b"GET", ""): self._status, (b"GET", "status"): self._status, (b"POST", "cancel"): self._cancel},
        )

    def render(self, request: Any) -> Rendered:
        return self.dispatch.render(request)

    def _status(self, request: Any) -> Any:
        operation = self.registry.get(self.handle)
        self.registry.touch(request, self.handle, operation)
        return self._answer(request, operation)

    def _cancel(self, request: Any) -> Any:
        operation = self.registry.get(self.handle)
        operation.monitor.cancel()
        # As Tahoe: the answer is the status at the moment of cancelling, and the handle is gone.
        self.registry.release(self.handle)
        return self._answer(request, operation)

    def _answer(self, request: Any, operation: Operation) -> Any:
        if wants_json(request) or operation.kind == "deep-stats":
            return _json(request, operation.to_json())
        if operation.kind == "deep-size":
            request.setHeader(b"content-type", b"text/plain")
            return operation.to_text().encode()
        return send_page(request, OperationPage(operation, self.handle))


class OperationPage(Element):
    """A person's view of a deep-check or manifest operation: its counters and every object found."""

    def __init__(self, operation: Operation, handle: str) -> None:
        super().__init__(loader=TagLoader(tags.html(tags.head(tags.title(render="title")), tags.body(render="body"))))  # type: ignore[arg-type]
        self.operation = operation
        self.handle = handle

    def _title(self) -> str:
        data = self.operation.to_json()
        if self.operation.kind == "manifest":
            return f"Manifest of SI={data['origin'][:6]}"
        repair = isinstance(self.operation.results, DeepCheckResults) and self.operation.results.repair
        return f"Deep-Check{'-And-Repair' if repair else ''} Results for root SI={data['root-storage-index']}"

    @renderer
    def title(self, request: Any, tag: Any) -> Any:
        return tag(self._title())

    @renderer
    def body(self, request: Any, tag: Any) -> Any:
        title = self._title()
        operation = self.operation
        parts: list[Any] = [tags.h1(title)]
        if not operation.finished:
            parts.append(tags.p("Operation still running"))
        if operation.error:
            parts.append(tags.p(f"Operation failed: {operation.error}"))
        data = operation.to_json()
        if operation.kind == "manifest":
            rows = [tags.tr(tags.td("Path"), tags.td("cap"))]
            rows += [tags.tr(tags.td("/".join(path)), tags.td(cap)) for path, cap in data.get("manifest", [])]
            parts.append(tags.table(*rows))
        else:
            counters = [tags.li(f"{key}: ", tags.span(str(value))) for key, value in data.items() if key.startswith("count-")]
            parts += [tags.p("Counters:"), tags.ul(*counters)]
            unhealthy = [tags.li("/".join(path) or "<root>") for path, _ in data["list-unhealthy-files"]] or [tags.li("None")]
            parts += [tags.h2("Files/Directories That Had Problems:"), tags.ul(*unhealthy)]
        return tag(*parts)
