"""``/storage`` and ``/storage?t=json`` on nodes built by build_node; the welcome page's maintenance key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.web.client import Agent, readBody

from lafs.node import Node, build_node
from tests.integration.test_node_http_storage import make_node_dir

# Tahoe 1.20's keys, read from a real storage node's /storage?t=json.
TAHOE_TOP_KEYS = {"stats", "bucket-counter", "lease-checker", "lease-checker-progress"}
TAHOE_STATS_KEYS = {
    "storage_server.allocated", "storage_server.reserved_space", "storage_server.disk_total",
    "storage_server.disk_used", "storage_server.disk_free_for_root", "storage_server.disk_free_for_nonroot",
    "storage_server.disk_avail", "storage_server.accepting_immutable_shares",
}
TAHOE_PROGRESS_KEYS = {"cycle-in-progress", "next-crawl-time", "remaining-wait-time", "estimated-time-per-cycle"}


def web_node(tmp_path: Path, name: str, *, storage: bool, client_extra: str = "", storage_extra: str = "") -> Node:
    basedir = tmp_path / name
    make_node_dir(basedir, storage=storage, client_extra=client_extra, storage_extra=storage_extra)
    cfg = basedir / "tahoe.cfg"
    cfg.write_text(cfg.read_text().replace("web.port =\n", "web.port = tcp:0:interface=127.0.0.1\n"))
    node = build_node(str(basedir), reactor=reactor)
    node.startService()
    return node


async def get(node: Node, path: str) -> tuple[int, bytes]:
    url = await node.when_web_listening()
    response = await Agent(reactor).request(b"GET", (url.rstrip("/") + path).encode())
    return response.code, await readBody(response)


async def get_json(node: Node, path: str) -> Any:
    code, body = await get(node, path)
    assert code == 200, body
    return json.loads(body)


@pytest_twisted.ensureDeferred
async def test_storage_json_has_tahoes_keys_and_the_servers_space(tmp_path: Path) -> None:
    node = web_node(tmp_path, "server", storage=True, storage_extra="reserved_space = 1M\n")
    try:
        data = await get_json(node, "/storage?t=json")
        assert TAHOE_TOP_KEYS <= set(data)
        stats = data["stats"]
        assert set(stats) == TAHOE_STATS_KEYS
        assert stats["storage_server.reserved_space"] == 1_000_000
        assert stats["storage_server.allocated"] == 0
        assert stats["storage_server.accepting_immutable_shares"] == 1
        total, free_root = stats["storage_server.disk_total"], stats["storage_server.disk_free_for_root"]
        assert stats["storage_server.disk_used"] == total - free_root
        assert stats["storage_server.disk_avail"] == stats["storage_server.disk_free_for_nonroot"] - 1_000_000
        assert set(data["lease-checker-progress"]) >= TAHOE_PROGRESS_KEYS
        assert "history" in data["lease-checker"]
        assert "last-complete-bucket-count" in data["bucket-counter"]
        assert data["expiration"]["enabled"] is False
        code, page = await get(node, "/storage")
        assert code == 200
        text = page.decode()
        assert "Storage Server Status" in text and "Accepting new shares: <span>Yes</span>" in text
        assert "Total buckets: <span>Not computed yet</span>" in text
        assert "Expiration Disabled: scan-only mode, no leases will be removed" in text
        assert "No cycle has finished yet." in text
        assert "(1000000)" in text  # the reserved space, exactly
    finally:
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_a_read_only_server_says_it_accepts_nothing(tmp_path: Path) -> None:
    node = web_node(tmp_path, "server", storage=True, storage_extra="readonly = true\n")
    try:
        data = await get_json(node, "/storage?t=json")
        assert data["stats"]["storage_server.accepting_immutable_shares"] == 0
        assert data["stats"]["storage_server.disk_avail"] == 0
        _, page = await get(node, "/storage")
        assert b"Accepting new shares: <span>No</span>" in page
    finally:
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_storage_is_a_404_on_a_node_without_a_storage_server(tmp_path: Path) -> None:
    node = web_node(tmp_path, "client", storage=False)
    try:
        for path in ("/storage", "/storage?t=json"):
            code, body = await get(node, path)
            assert code == 404
            assert b"No storage server is running on this node" in body
        welcome = await get_json(node, "/?t=json")
        assert "maintenance" not in welcome  # off unless configured: Tahoe's keys only
    finally:
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_configured_maintenance_shows_on_the_welcome_page(tmp_path: Path) -> None:
    node = web_node(
        tmp_path, "client", storage=False,
        client_extra="maintenance.targets = tahoe:\nmaintenance.interval = 1 day\n",
    )
    try:
        assert node.maintenance is not None and node.maintenance.parent is node
        welcome = await get_json(node, "/?t=json")
        assert {"introducers", "servers"} <= set(welcome)
        status = welcome["maintenance"]
        assert status["targets"] == ["tahoe:"] and status["interval"] == 86400
        assert status["running"] is False and status["last-run"] is None and status["next-run"] is not None
        _, page = await get(node, "/")
        assert b"Automatic maintenance" in page and b"no run yet" in page
    finally:
        await node.stopService()
