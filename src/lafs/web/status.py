"""``/status``: the uploads, downloads, publishes and retrieves this gateway has run, for a person (and ``t=json``).

The web layer's handlers record each operation in a `StatusTracker`; it keeps
the active ones and the most recent finished ones (a bounded history, so a
long-running gateway does not grow).  Nothing here holds a cap: an operation is
named by its storage index, which lets no one read anything.
"""

from __future__ import annotations

import collections
import itertools
import json
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.template import Element, renderer, tags

from lafs.core import base32
from lafs.web.common import Dispatch, HandlerResult, Rendered, WebError, answer
from lafs.web.html import send_page, template

Kind = Literal["upload", "download", "publish", "retrieve"]
KINDS: tuple[Kind, ...] = ("upload", "download", "publish", "retrieve")
RECENT_LIMIT = 20
"""How many finished operations of each kind the status page remembers."""


@attrs.define
class Operation:
    """One upload, download, publish or retrieve, as the status page shows it."""

    number: int
    kind: Kind
    size: int | None
    started: float
    storage_index: str = ""
    """The base32 storage index, once known (never the cap)."""
    done_bytes: int = 0
    finished: float | None = None
    outcome: str = "in progress"
    clock: Callable[[], float] = attrs.field(default=time.time, repr=False)

    @property
    def active(self) -> bool:
        return self.finished is None

    def progress(self) -> float:
        if not self.active and self.outcome == "done":
            return 1.0
        if not self.size:
            return 0.0
        return min(1.0, self.done_bytes / self.size)

    def elapsed(self) -> float:
        return (self.finished if self.finished is not None else self.clock()) - self.started

    def speed(self) -> float | None:
        """Bytes per second so far (None before any time has passed)."""
        elapsed = self.elapsed()
        return self.done_bytes / elapsed if elapsed > 0 else None

    def advance(self, count: int) -> None:
        self.done_bytes += count

    def reached(self, position: int) -> None:
        self.done_bytes = max(self.done_bytes, position)

    def identify(self, storage_index: bytes | None) -> None:
        if storage_index:
            self.storage_index = base32.b2a(storage_index)

    def finish(self, outcome: str = "done") -> None:
        if self.finished is None:
            self.finished = self.clock()
            self.outcome = outcome
            if outcome == "done" and self.size is not None:
                self.done_bytes = self.size

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.number,
            "type": self.kind,
            "storage_index": self.storage_index,
            "total_size": self.size,
            "bytes_done": self.done_bytes,
            "progress": round(self.progress(), 4),
            "started": self.started,
            "finished": self.finished,
            "active": self.active,
            "status": self.outcome,
            "bytes_per_second": self.speed(),
        }


class StatusTracker:
    """The operations the gateway is running and the last `RECENT_LIMIT` of each kind it finished."""

    def __init__(self, clock: Callable[[], float] = time.time, recent_limit: int = RECENT_LIMIT) -> None:
        self._clock = clock
        self._numbers = itertools.count(1)
        self._active: dict[int, Operation] = {}
        self._recent: dict[Kind, collections.deque[Operation]] = {k: collections.deque(maxlen=recent_limit) for k in KINDS}

    def start(self, kind: Kind, size: int | None) -> Operation:
        operation = Operation(next(self._numbers), kind, size, self._clock(), clock=self._clock)
        self._active[operation.number] = operation
        return operation

    def finish(self, operation: Operation, outcome: str = "done") -> None:
        operation.finish(outcome)
        if self._active.pop(operation.number, None) is not None:
            self._recent[operation.kind].appendleft(operation)

    def active(self) -> list[Operation]:
        return sorted(self._active.values(), key=lambda op: op.number)

    def recent(self) -> list[Operation]:
        finished = [op for ops in self._recent.values() for op in ops]
        return sorted(finished, key=lambda op: op.number, reverse=True)

    def get(self, number: int) -> Operation | None:
        if number in self._active:
            return self._active[number]
        return next((op for op in self.recent() if op.number == number), None)


class CountingSource:
    """A data source that tells an operation how far into it the uploader has read."""

    def __init__(self, source: Any, operation: Operation) -> None:
        self._source = source
        self._operation = operation
        self.size: int = source.size

    def read(self, offset: int, length: int) -> bytes:
        data: bytes = self._source.read(offset, length)
        self._operation.reached(offset + len(data))
        return data


def tracker_of(request: Any) -> StatusTracker | None:
    """The status tracker of the gateway serving ``request`` (None outside a gateway, as in unit tests)."""
    context = getattr(getattr(request, "site", None), "context", None)
    tracker = getattr(context, "status", None)
    return tracker if isinstance(tracker, StatusTracker) else None


async def tracked(request: Any, kind: Kind, size: int | None, work: Callable[[Operation], Any]) -> Any:
    """Run ``work(operation)`` recorded as one ``kind`` operation; a failure is recorded, then raised on."""
    tracker = tracker_of(request)
    operation = tracker.start(kind, size) if tracker is not None else Operation(0, kind, size, time.time())
    try:
        result = await work(operation)
    except BaseException as e:
        if tracker is not None:
            tracker.finish(operation, f"failed: {type(e).__name__}")
        raise
    if tracker is not None:
        tracker.finish(operation)
    return result


# --- the pages ----------------------------------------------------------------------------


class StatusResource(Resource):
    """``/status`` (HTML or ``t=json``) and ``/status/NUMBER``, one operation's detail."""

    def __init__(self, tracker: StatusTracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.operations = Dispatch("/status", {(b"GET", ""): self._page, (b"GET", "json"): self._json})

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return OperationResource(self.tracker, path.decode("utf-8", "replace"))

    def render(self, request: Any) -> Rendered:
        return self.operations.render(request)

    def _json(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        body = {
            "active": [op.to_json() for op in self.tracker.active()],
            "recent": [op.to_json() for op in self.tracker.recent()],
        }
        return json.dumps(body, indent=1).encode("utf-8") + b"\n"

    def _page(self, request: Any) -> HandlerResult:
        return send_page(request, StatusPage(self.tracker.active(), self.tracker.recent()))


class OperationResource(Resource):
    isLeaf = True

    def __init__(self, tracker: StatusTracker, name: str) -> None:
        super().__init__()
        self.tracker = tracker
        self.name = name

    def render(self, request: Any) -> Rendered:
        return answer(request, lambda: self._answer(request))

    def _answer(self, request: Any) -> HandlerResult:
        if request.method not in (b"GET", b"HEAD"):
            raise WebError(http.NOT_ALLOWED, "an operation's status can only be read")
        operation = self.tracker.get(int(self.name)) if self.name.isdigit() else None
        if operation is None:
            raise WebError(http.NOT_FOUND, f"no operation numbered {self.name!r} is remembered")
        if request.args.get(b"t") == [b"json"]:
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            return json.dumps(operation.to_json(), indent=1).encode("utf-8") + b"\n"
        return send_page(request, OperationPage(operation))


def _size(size: int | None) -> str:
    return "?" if size is None else f"{size:,} B"


def _speed(operation: Operation) -> str:
    speed = operation.speed()
    return "-" if speed is None else f"{speed / 1e6:.2f} MB/s"


def _when(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def _progress_bar(operation: Operation) -> Any:
    percent = int(operation.progress() * 100)
    return tags.span(tags.progress(f"{percent}%", value=str(percent), max="100"), f" {percent}%")


class StatusPage(Element):
    loader = template("status.xml")

    def __init__(self, active: list[Operation], recent: list[Operation]) -> None:
        super().__init__()
        self._lists = {"active": active, "recent": recent}

    def _rows(self, tag: Any, operations: list[Operation]) -> Any:
        if not operations:
            return tags.tr(tags.td("none", colspan="7"))
        return [
            tag.clone().fillSlots(
                kind=tags.a(op.kind, href=f"/status/{op.number}"),
                si=tags.code(op.storage_index[:10] or "-"),
                size=_size(op.size),
                progress=_progress_bar(op),
                speed=_speed(op),
                started=_when(op.started),
                outcome=op.outcome,
            )
            for op in operations
        ]

    @renderer
    def active_rows(self, request: Any, tag: Any) -> Any:
        return self._rows(tag, self._lists["active"])

    @renderer
    def recent_rows(self, request: Any, tag: Any) -> Any:
        return self._rows(tag, self._lists["recent"])


class OperationPage(Element):
    loader = template("operation.xml")

    def __init__(self, operation: Operation) -> None:
        super().__init__()
        self._operation = operation

    @renderer
    def title(self, request: Any, tag: Any) -> Any:
        return tag(f"{self._operation.kind.capitalize()} #{self._operation.number}")

    @renderer
    def rows(self, request: Any, tag: Any) -> Any:
        op = self._operation
        rows = [
            ("Type", op.kind),
            ("Storage index", tags.code(op.storage_index or "-")),
            ("Total size", _size(op.size)),
            ("Bytes done", f"{op.done_bytes:,} B"),
            ("Progress", _progress_bar(op)),
            ("Speed", _speed(op)),
            ("Started", _when(op.started)),
            ("Finished", _when(op.finished)),
            ("Elapsed", f"{op.elapsed():.2f}s"),
            ("Status", op.outcome),
        ]
        return [tag.clone().fillSlots(name=name, value=value) for name, value in rows]
