"""The welcome page: is the grid up?  HTML for people, ``?t=json`` in Tahoe 1.20's shape for tools."""

from __future__ import annotations

import html
import json
import time
from typing import Any

from twisted.web.resource import Resource

import lafs
from lafs.web.context import GatewayContext


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
    return {"introducers": {"statuses": statuses}, "servers": servers}


class WelcomePage(Resource):
    isLeaf = True

    def __init__(self, context: GatewayContext) -> None:
        super().__init__()
        self.context = context

    def render_GET(self, request: Any) -> bytes:
        output = request.args.get(b"t", [b""])[0]
        if output == b"json":
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            return json.dumps(welcome_json(self.context), indent=1).encode("utf-8") + b"\n"
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return self._html().encode("utf-8")

    def _html(self) -> str:
        data = welcome_json(self.context)
        esc = html.escape
        connected = sum(1 for s in data["servers"] if s["connection_status"].lower().startswith("connected"))
        rows = "".join(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                esc(s["nickname"]),
                esc(s["nodeid"]),
                esc(s["connection_status"]),
                esc(_ago(s["last_received_data"])),
                esc(_space(s["available_space"])),
            )
            for s in data["servers"]
        )
        introducers = "".join(f"<li>{esc(status)}</li>" for status in data["introducers"]["statuses"]) or "<li>none</li>"
        return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Tahoe-LAFS - Welcome</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head>
<body><h1>Tahoe-LAFS grid status</h1>
<p>Node: <b>{esc(self.context.nickname)}</b> &middot; {esc(lafs.FULL_VERSION)}</p>
<h2>Introducers</h2><ul>{introducers}</ul>
<h2>Storage servers: {connected} of {len(data["servers"])} connected</h2>
<table><tr><th>Nickname</th><th>Node ID</th><th>Connection</th><th>Last seen</th><th>Available space</th></tr>
{rows}</table>
<h2>Upload a file</h2>
<form action="uri" method="post" enctype="multipart/form-data">
<input type="hidden" name="t" value="upload"><input type="file" name="file"> <input type="submit" value="Upload!">
</form>
<h2>View a file</h2>
<form action="uri" method="get"><input type="text" name="uri" size="60"> <input type="submit" value="View!"></form>
</body></html>
"""


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
