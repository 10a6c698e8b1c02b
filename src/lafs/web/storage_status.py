"""``/storage``: the storage server's status, as Tahoe 1.20's page shows it, and ``?t=json`` in its keys.

Space (total, used, free, reserved, available), whether new shares are accepted, the bucket
counter's count, and the lease checker: its rule, how far this cycle is, and what the last
cycle removed (or, with expiration off, would have removed).
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.template import Element, renderer, tags

from lafs.web.common import Dispatch, HandlerResult, Rendered, WebError
from lafs.web.context import GatewayContext, StorageStatus
from lafs.web.html import send_page, template

NO_STORAGE = "No storage server is running on this node ([storage]enabled is false in tahoe.cfg)"


class StoragePage(Resource):
    isLeaf = True

    def __init__(self, context: GatewayContext) -> None:
        super().__init__()
        self.context = context
        self.operations = Dispatch("/storage", {(b"GET", ""): self._page, (b"GET", "json"): self._json})

    def render(self, request: Any) -> Rendered:
        return self.operations.render(request)

    def _status(self) -> StorageStatus:
        if self.context.storage_status is None:
            raise WebError(http.NOT_FOUND, NO_STORAGE)
        return self.context.storage_status()

    def _json(self, request: Any) -> bytes:
        data = self._status().data
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps(data, indent=1).encode("utf-8") + b"\n"

    def _page(self, request: Any) -> HandlerResult:
        return send_page(request, StorageElement(self._status()))


def abbreviate_space(size: int | None) -> str:
    """Bytes as Tahoe's page shows them: ``270.55 GB`` (powers of 1000)."""
    if size is None:
        return "?"
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB"):
        value /= 1000
        if value < 1000 or unit == "EB":
            return f"{value:.2f} {unit}"
    raise AssertionError("unreachable")


def abbreviate_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{int(seconds)} seconds"
    if seconds < 2 * 3600:
        return f"{int(seconds / 60)} minutes"
    if seconds < 2 * 86400:
        return f"{int(seconds / 3600)} hours"
    return f"{int(seconds / 86400)} days"


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


class StorageElement(Element):
    loader = template("storage_status.xml")

    def __init__(self, status: StorageStatus) -> None:
        super().__init__()
        self._status = status
        self._data = status.data
        self._stats = status.data["stats"]

    @renderer
    def space(self, request: Any, tag: Any) -> Any:
        s = self._stats
        rows = [
            ("Total disk space", s["storage_server.disk_total"], ""),
            ("Disk space used", s["storage_server.disk_used"], "- "),
            ("Disk space free (root)", s["storage_server.disk_free_for_root"], ""),
            ("Disk space free (non-root)", s["storage_server.disk_free_for_nonroot"], ""),
            ("Reserved space", s["storage_server.reserved_space"], "- "),
            ("Space Available to Tahoe", s["storage_server.disk_avail"], ""),
        ]
        return [
            tag.clone().fillSlots(name=name, abbreviated=sign + abbreviate_space(value), exact=f"({value})")
            for name, value, sign in rows
        ]

    @renderer
    def nickname(self, request: Any, tag: Any) -> Any:
        return tag(self._status.nickname)

    @renderer
    def nodeid(self, request: Any, tag: Any) -> Any:
        return tag(self._status.nodeid)

    @renderer
    def accepting(self, request: Any, tag: Any) -> Any:
        accepting = self._stats["storage_server.accepting_immutable_shares"]
        return tag("Yes" if accepting else "No")

    @renderer
    def total_buckets(self, request: Any, tag: Any) -> Any:
        counter = self._data.get("bucket-counter")
        count = None if counter is None else counter.get("last-complete-bucket-count")
        return tag("Not computed yet" if count is None else str(count))

    @renderer
    def bucket_counter_progress(self, request: Any, tag: Any) -> Any:
        return tag(_progress_text(self._data.get("bucket-counter-progress")))

    @renderer
    def expiration(self, request: Any, tag: Any) -> Any:
        rule = self._status.expiration
        if rule is None:
            return tag("No lease checker runs on this server.")
        if not rule["enabled"]:
            head = "Expiration Disabled: scan-only mode, no leases will be removed"
        else:
            head = "Expiration Enabled: expired leases will be removed"
        if rule["mode"] == "age":
            override = rule["override-lease-duration"]
            if override is None:
                when = "Leases will expire naturally, probably 31 days after creation or renewal."
            else:
                when = f"Leases created or last renewed more than {abbreviate_time(override)} ago will be considered expired."
        else:
            when = f"Leases created or last renewed before {_when(rule['cutoff-date'])} will be considered expired."
        types = " ".join(rule["sharetypes"]) or "none"
        return tag(tags.p(tags.b(head)), tags.p(f"{when} The following sharetypes will be expired: {types}."))

    @renderer
    def lease_progress(self, request: Any, tag: Any) -> Any:
        return tag(_progress_text(self._data.get("lease-checker-progress")))

    @renderer
    def cycle_so_far(self, request: Any, tag: Any) -> Any:
        checker = self._data.get("lease-checker") or {}
        to_date = checker.get("cycle-to-date")
        if not to_date:
            return ""
        return tag("So far this cycle: ", _recovered_text(to_date.get("space-recovered") or {}, self._expiring()))

    @renderer
    def last_cycle(self, request: Any, tag: Any) -> Any:
        checker = self._data.get("lease-checker") or {}
        history = checker.get("history") or {}
        if not history:
            return tag("No cycle has finished yet.")
        last = history[max(history, key=int)]
        started, finished = last["cycle-start-finish-times"]
        removed = _recovered_text(last.get("space-recovered") or {}, bool(last.get("expiration-enabled")))
        corrupt = len(last.get("corrupt-shares") or [])
        lines = [
            tags.p(f"Last cycle finished {_when(finished)} (took {abbreviate_time(finished - started)}): ", removed),
        ]
        if corrupt:
            lines.append(tags.p(f"Corrupt shares: {corrupt} (see ?t=json)"))
        return tag(*lines)

    def _expiring(self) -> bool:
        return bool(self._status.expiration and self._status.expiration["enabled"])


def _progress_text(progress: dict[str, Any] | None) -> str:
    if progress is None:
        return ""
    if progress.get("cycle-in-progress"):
        return f"Current crawl {progress.get('cycle-complete-percentage', 0.0):.1f}% complete"
    wait = progress.get("remaining-wait-time")
    return "Next crawl not scheduled" if wait is None else f"Next crawl in {abbreviate_time(wait)}"


def _recovered_text(recovered: dict[str, Any], enabled: bool) -> str:
    """What a cycle removed: ``actual-*`` with expiration on; with it off, what it would have (``configured-*``)."""
    prefix = "actual" if enabled else "configured"
    buckets = recovered.get(f"{prefix}-buckets", 0) or 0
    shares = recovered.get(f"{prefix}-shares", 0) or 0
    size = recovered.get(f"{prefix}-diskbytes", 0) or 0
    verb = "removed" if enabled else "would have removed (if expiration were enabled)"
    examined = recovered.get("examined-shares", 0) or 0
    return f"{verb} {shares} shares, {buckets} buckets ({abbreviate_space(size)}) of {examined} shares examined"
