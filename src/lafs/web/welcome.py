"""The welcome page: is the grid up?  HTML for people, ``?t=json`` in Tahoe 1.20's shape for tools."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.web.resource import Resource
from twisted.web.template import Element, renderer, tags

import lafs
from lafs.web.common import Dispatch, HandlerResult, Rendered
from lafs.web.context import GatewayContext
from lafs.web.html import send_page, template


def welcome_json(context: GatewayContext) -> dict[str, Any]:
    statuses = context.introducer_statuses()
    servers = []
    broker = context.storage_broker
    for handle in broker.all_servers() if broker is not None else []:
        servers.append(
            {
                "nodeid": handle.server_id,
                "connection_status": handle.connection_status(),
                "available_space": handle.available_space(),
                "nickname": handle.nickname,
                "version": handle.application_version(),
                "last_received_data": handle.last_received_data,
            }
        )
    data: dict[str, Any] = {"introducers": {"statuses": statuses}, "servers": servers}
    if context.maintenance_status is not None:
        data["maintenance"] = context.maintenance_status()  # lafs's own; only when configured
    return data


class WelcomePage(Resource):
    isLeaf = True

    def __init__(self, context: GatewayContext) -> None:
        super().__init__()
        self.context = context
        self.operations = Dispatch("/", {(b"GET", ""): self._page, (b"GET", "json"): self._json})

    def render(self, request: Any) -> Rendered:
        return self.operations.render(request)

    def _json(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps(welcome_json(self.context), indent=1).encode("utf-8") + b"\n"

    def _page(self, request: Any) -> HandlerResult:
        return send_page(request, WelcomeElement(self.context.nickname, welcome_json(self.context)))


def _connected(server: dict[str, Any]) -> bool:
    return bool(server["connection_status"].lower().startswith("connected"))


class WelcomeElement(Element):
    loader = template("welcome.xml")

    def __init__(self, nickname: str, status: dict[str, Any]) -> None:
        super().__init__()
        self._nickname = nickname
        self._status = status

    @renderer
    def nickname(self, request: Any, tag: Any) -> Any:
        return tag(self._nickname)

    @renderer
    def version(self, request: Any, tag: Any) -> Any:
        return tag(lafs.FULL_VERSION)

    @renderer
    def introducers(self, request: Any, tag: Any) -> Any:
        statuses = self._status["introducers"]["statuses"] or ["none"]
        return [tag.clone()(status) for status in statuses]

    @renderer
    def servers_summary(self, request: Any, tag: Any) -> Any:
        servers = self._status["servers"]
        connected = sum(1 for s in servers if _connected(s))
        return tag(f"Storage servers: {connected} of {len(servers)} connected")

    @renderer
    def servers(self, request: Any, tag: Any) -> Any:
        rows = []
        for s in self._status["servers"]:
            state = "connected" if _connected(s) else "disconnected"
            rows.append(
                tag.clone().fillSlots(
                    nickname=s["nickname"] or "",
                    nodeid=tags.code(s["nodeid"]),
                    connection=tags.span(s["connection_status"], class_=state),
                    last_seen=_ago(s["last_received_data"]),
                    space=_space(s["available_space"]),
                )
            )
        return rows

    @renderer
    def maintenance(self, request: Any, tag: Any) -> Any:
        status = self._status.get("maintenance")
        if status is None:
            return ""
        return tag(tags.h2("Automatic maintenance"), tags.p(maintenance_text(status)))


def maintenance_text(status: dict[str, Any]) -> str:
    """One line on the automatic maintenance: under way, or the last run's totals."""
    targets = ", ".join(status["targets"])
    if status["running"]:
        done = status["current-run"] or {}
        return f"Running over {targets}: {done.get('checked', 0)} checked so far."
    last = status["last-run"]
    if last is None:
        text = f"Targets {targets}: no run yet."
    else:
        text = (
            f"Last run over {targets} finished {_ago(last['finished'])}: {last['checked']} checked, "
            f"{last['healthy']} healthy, {last['repaired']} repaired, {last['unrecoverable']} unrecoverable, "
            f"{last['leases-renewed']} leases renewed, {len(last['errors'])} errors."
        )
    if status["next-run"] is not None:
        text += f" Next run in {max(0, int(status['next-run'] - time.time()))}s."
    return text


def _ago(when: float | None) -> str:
    if when is None:
        return "never"
    seconds = max(0, int(time.time() - when))
    return f"{seconds}s ago"


def _space(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000:
            return f"{size} {unit}"
        size //= 1000
    return f"{size} EB"
