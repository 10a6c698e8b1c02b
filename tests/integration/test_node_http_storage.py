"""Nodes built by build_node serve HTTP storage on the Tub port, announce NURLs, and choose HTTP as 1.20 does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
import yaml
from twisted.internet import reactor

from lafs.core.nurl import NURL
from lafs.https import pem_spki_hash
from lafs.node import Node, build_node
from lafs.storage.announcement import storage_announcement
from tests.storage_grid import free_port, wait_for


def make_node_dir(basedir: Path, *, storage: bool, client_extra: str = "", storage_extra: str = "") -> int:
    port = free_port()
    basedir.mkdir(parents=True)
    (basedir / "private").mkdir()
    (basedir / "tahoe-client.tac").write_text("# lafs\n")
    (basedir / "tahoe.cfg").write_text(
        "[node]\nnickname = n\nweb.port =\n"
        f"tub.port = tcp:{port}:interface=127.0.0.1\ntub.location = tcp:127.0.0.1:{port}\n"
        f"[client]\nshares.needed = 1\nshares.happy = 1\nshares.total = 1\n{client_extra}"
        f"[storage]\nenabled = {'true' if storage else 'false'}\n{storage_extra}"
    )
    return port


def announcement_of(node: Node) -> dict[str, Any]:
    assert node.storage_furl is not None and node._permutation_seed is not None
    return {"nickname": "n", **storage_announcement(node.storage_furl, node._permutation_seed, node.storage_nurls)}


async def stop(*nodes: Node) -> None:
    for node in nodes:
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_a_storage_node_announces_a_nurl_for_its_tub_port(tmp_path: Path) -> None:
    port = make_node_dir(tmp_path / "server", storage=True)
    server = build_node(str(tmp_path / "server"), reactor=reactor)
    server.startService()
    try:
        assert len(server.storage_nurls) == 1
        nurl = NURL.from_string(server.storage_nurls[0])
        pem = (tmp_path / "server" / "private" / "node.pem").read_bytes()
        assert (nurl.host, nurl.port) == ("127.0.0.1", port)
        assert nurl.spki_hash == pem_spki_hash(pem)
        assert server.storage_furl is not None and server.storage_furl.endswith("/" + nurl.swissnum)
    finally:
        await stop(server)
    again = build_node(str(tmp_path / "server"), reactor=reactor)
    again.startService()
    try:
        assert again.storage_nurls == server.storage_nurls, "the swissnum and certificate are kept across restarts"
    finally:
        await stop(again)


@pytest_twisted.ensureDeferred
async def test_clients_use_http_unless_forced_to_foolscap(tmp_path: Path) -> None:
    make_node_dir(tmp_path / "server", storage=True)
    server = build_node(str(tmp_path / "server"), reactor=reactor)
    server.startService()
    clients = []
    try:
        for name, extra in (("http", ""), ("foolscap", "force_foolscap = true\n")):
            basedir = tmp_path / name
            make_node_dir(basedir, storage=False, client_extra=extra)
            servers = {"storage": {server.identity.server_id: {"ann": announcement_of(server)}}}
            (basedir / "private" / "servers.yaml").write_text(yaml.safe_dump(servers))
            client = build_node(str(basedir), reactor=reactor)
            client.startService()
            clients.append(client)
        http_broker, foolscap_broker = (c.storage_broker for c in clients)
        assert http_broker is not None and foolscap_broker is not None
        await wait_for(lambda: bool(http_broker.connected_servers() and foolscap_broker.connected_servers()), "both clients")
        assert http_broker.connected_servers()[0].connection_status() == "connected"
        assert foolscap_broker.connected_servers()[0].connection_status().endswith(" via tcp")
    finally:
        await stop(*clients, server)


@pytest_twisted.ensureDeferred
async def test_storage_force_foolscap_serves_and_announces_no_https(tmp_path: Path) -> None:
    make_node_dir(tmp_path / "server", storage=True, storage_extra="force_foolscap = true\n")
    server = build_node(str(tmp_path / "server"), reactor=reactor)
    server.startService()
    try:
        assert server.storage_nurls == [] and server.https is None
        assert "anonymous-storage-NURLs" not in announcement_of(server)
    finally:
        await stop(server)
