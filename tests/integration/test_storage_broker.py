"""The storage broker against our storage servers over loopback foolscap: static servers,
connection tracking across server restarts, and fURL replacement by newer announcements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest_twisted
from foolscap.api import Tub

from lafs.client.storage_broker import ServerHandle, StorageBroker
from lafs.core import base32, crypto
from lafs.storage.announcement import permutation_seed_for, storage_announcement
from lafs.storage.foolscap_server import FoolscapStorageServer
from lafs.storage.server import StorageServer
from lafs.storage_client.foolscap import FoolscapConnector
from tests.integration.test_introducer import listening_tub
from tests.storage_grid import free_port, sleep, wait_for

STORAGE_V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"


@attrs.define
class RestartableServer:
    """A storage server whose Tub key, port and fURL survive a restart."""

    basedir: Path
    port: int
    server_id: str
    seed: str
    tub: Tub | None = None
    furl: str = ""

    def start(self) -> None:
        self.tub = listening_tub(self.basedir / "node.pem", self.port)
        server = StorageServer.on_disk(str(self.basedir / "storage"), base32.a2b(self.tub.getTubID()))
        server.setServiceParent(self.tub)
        furl_file = self.basedir / "storage.furl"
        self.furl = self.tub.registerReference(
            FoolscapStorageServer(server), furlFile=str(furl_file)
        )

    async def stop(self) -> None:
        if self.tub is not None and self.tub.running:
            await self.tub.stopService()

    def announcement(self, nickname: str = "") -> dict[str, Any]:
        return {
            "nickname": nickname or self.basedir.name,
            **storage_announcement(self.furl, self.seed),
        }


def new_server(basedir: Path) -> RestartableServer:
    basedir.mkdir(parents=True)
    public = crypto.ed25519_public_to_string(
        crypto.ed25519_public_from_private(crypto.ed25519_generate())
    )
    server = RestartableServer(
        basedir,
        free_port(),
        "v0-" + public[7:].decode(),
        permutation_seed_for(str(basedir), public),
    )
    server.start()
    return server


def client_tub(tmp_path: Path) -> Tub:
    tub = Tub(certFile=str(tmp_path / "client.pem"))
    tub.startService()
    return tub


@pytest_twisted.ensureDeferred
async def test_static_servers_connect_without_an_introducer_and_track_restarts(
    tmp_path: Path,
) -> None:
    servers = [new_server(tmp_path / f"s{i}") for i in range(2)]
    tub = client_tub(tmp_path)
    broker = StorageBroker([FoolscapConnector(tub)])
    try:
        # What a node reads from private/servers.yaml (facts §10.2).
        broker.set_static_servers(
            {s.server_id: {"ann": s.announcement(), "connections": {"tcp": "tcp"}} for s in servers}
        )
        assert [h.connection_status() for h in broker.all_servers()] == ["Trying to connect"] * 2
        broker.startService()
        await wait_for(lambda: len(broker.connected_servers()) == 2, "both static servers")
        first = broker.get_server(servers[0].server_id)
        assert first is not None
        assert first.connection_status() == f"Connected to tcp:127.0.0.1:{servers[0].port} via tcp"
        assert first.client is not None and first.client.version.available_space is not None
        assert first.application_version() == "tahoe-lafs/1.20.0" and first.nickname == "s0"
        assert first.permutation_seed == servers[0].server_id[3:].encode("ascii")
        assert first.last_connect_time is not None and first.last_loss_time is None
        changes: list[bool] = []
        first.on_status_change(lambda handle: changes.append(handle.is_connected()))

        await servers[0].stop()
        await wait_for(lambda: not first.is_connected(), "the broker to notice the lost server")
        assert first.last_loss_time is not None
        assert first.connection_status() == "Disconnected; trying to reconnect"
        assert [h.server_id for h in broker.connected_servers()] == [servers[1].server_id]
        servers[0].start()  # same key, port and swissnum
        await wait_for(first.is_connected, "the reconnection", timeout=30)
        assert changes == [False, True]
        assert first.last_connect_time >= first.last_loss_time
    finally:
        await broker.stopService()
        await tub.stopService()
        for server in servers:
            await server.stop()
    assert all(not h.is_connected() for h in broker.all_servers())


@pytest_twisted.ensureDeferred
async def test_newer_announcement_with_another_furl_replaces_the_connection(tmp_path: Path) -> None:
    old_home, new_home = new_server(tmp_path / "old"), new_server(tmp_path / "new")
    tub = client_tub(tmp_path)
    broker = StorageBroker([FoolscapConnector(tub)])
    broker.startService()
    try:
        server_id = old_home.server_id
        broker.got_announcement(server_id, {**old_home.announcement("moving"), "seqnum": 1})
        handle = broker.get_server(server_id)
        assert handle is not None
        await wait_for(handle.is_connected, "the first fURL")
        changes: list[ServerHandle] = []
        handle.on_status_change(changes.append)

        # Same fURL, newer details: the connection stays, the details change.
        broker.got_announcement(server_id, {**old_home.announcement("renamed"), "seqnum": 2})
        assert (
            broker.get_server(server_id) is handle
            and handle.nickname == "renamed"
            and handle.is_connected()
        )

        # The server moved: the broker drops the old connection and connects to the new fURL.
        broker.got_announcement(server_id, {**new_home.announcement("moved"), "seqnum": 3})
        current = broker.get_server(server_id)
        assert current is not None and current.furl == new_home.furl
        await wait_for(lambda: current.is_connected(), "the new fURL")
        assert current.connection_status() == f"Connected to tcp:127.0.0.1:{new_home.port} via tcp"
        assert not handle.is_connected()
        assert [h.server_id for h in broker.all_servers()] == [server_id]
        # Whoever watched the server keeps hearing about it.
        assert changes and changes[-1] is current and current.is_connected()
    finally:
        await broker.stopService()
        await tub.stopService()
        await old_home.stop()
        await new_home.stop()


@pytest_twisted.ensureDeferred
async def test_static_servers_win_and_unusable_announcements_are_ignored(tmp_path: Path) -> None:
    real, decoy = new_server(tmp_path / "real"), new_server(tmp_path / "decoy")
    tub = client_tub(tmp_path)
    broker = StorageBroker([FoolscapConnector(tub)])
    try:
        broker.set_static_servers({real.server_id: {"ann": real.announcement("static")}})
        broker.startService()
        broker.got_announcement(real.server_id, decoy.announcement("from-introducer"))
        broker.got_announcement(
            decoy.server_id, {"nickname": "no-furl", "anonymous-storage-NURLs": ["pb://x"]}
        )
        await wait_for(lambda: len(broker.connected_servers()) == 1, "the static server")
        [handle] = broker.all_servers()
        assert handle.nickname == "static" and handle.furl == real.furl
        await sleep(0.2)
        assert [h.server_id for h in broker.all_servers()] == [real.server_id]
    finally:
        await broker.stopService()
        await tub.stopService()
        await real.stop()
        await decoy.stop()


@pytest_twisted.ensureDeferred
async def test_unreachable_server_is_known_but_not_connected(tmp_path: Path) -> None:
    server = new_server(tmp_path / "gone")
    await server.stop()
    tub = client_tub(tmp_path)
    broker = StorageBroker([FoolscapConnector(tub)])
    broker.startService()
    try:
        broker.got_announcement(server.server_id, server.announcement())
        await sleep(0.3)
        [handle] = broker.all_servers()
        assert not handle.is_connected() and handle.connection_status() == "Trying to connect"
        assert broker.connected_servers() == [] and broker.permuted_servers(b"\x00" * 16) == []
        assert broker.permuted_servers(b"\x00" * 16, connected_only=False) == [handle]
    finally:
        await broker.stopService()
        await tub.stopService()
