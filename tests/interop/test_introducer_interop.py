"""Introduction across implementations, with our side running in the pytest reactor.

Real Tahoe 1.20 nodes join our IntroducerService; our IntroducerClient + StorageBroker join a real
introducer.  Blocking real-Tahoe calls run in threads so the reactor keeps serving meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest_twisted
from twisted.internet import threads

from lafs.core import base32
from tests.integration.test_introducer import GridNode, start_introducer, start_node
from tests.interop import harness
from tests.storage_grid import wait_for

T = TypeVar("T")


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    return await threads.deferToThread(function, *args)  # type: ignore[no-any-return]


def real_server_nicknames(web_url: str) -> dict[str, str]:
    """nickname -> connection status, as a real client's welcome page reports them."""
    try:
        servers = harness.get_json(web_url + "?t=json")["servers"]
    except (OSError, ValueError):
        return {}
    return {s["nickname"]: str(s["connection_status"]) for s in servers}


def real_connected(web_url: str, nickname: str) -> bool:
    # Foolscap servers say "Connected to ...", HTTPS (NURL) servers just "connected".
    return real_server_nicknames(web_url).get(nickname, "").lower().startswith("connected")


async def wait_for_real(predicate: Callable[[], bool], what: str, timeout: float = 90) -> None:
    """Poll a blocking predicate in a thread until it holds."""
    await wait_for_async(lambda: in_thread(predicate), what, timeout)


async def wait_for_async(check: Callable[[], Any], what: str, timeout: float) -> None:
    from twisted.internet import reactor, task

    waited = 0.0
    while not await check():
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await task.deferLater(reactor, 0.5, lambda: None)
        waited += 0.5


@pytest_twisted.ensureDeferred
async def test_real_nodes_join_our_introducer(tahoe_oracle: Path, tmp_path: Path) -> None:
    introducer = await start_introducer(tmp_path / "our-introducer")
    ours: list[GridNode] = []
    real: list[harness.RealNode] = []
    try:
        storage_dir, client_dir = tmp_path / "real-storage", tmp_path / "real-client"
        await in_thread(
            harness.create_real_storage_node, storage_dir, introducer.furl, "real-storage"
        )
        web_port = await in_thread(harness.create_real_client, client_dir, introducer.furl)
        real.append(harness.start_real_node(storage_dir))
        real.append(harness.start_real_node(client_dir))
        ours.append(
            await start_node(tmp_path / "our-storage", "our-storage", introducer.furl, publish=True)
        )
        ours.append(
            await start_node(tmp_path / "our-client", "our-client", introducer.furl, publish=False)
        )

        # Our introducer accepted the real node's signed announcement.
        pubkey_file = storage_dir / "node.pubkey"  # written by the real node as it starts
        await wait_for(pubkey_file.exists, "the real node's key", 60)
        real_pubkey = pubkey_file.read_text().strip()
        real_id = "v0-" + real_pubkey[len("pub-v0-") :]
        await wait_for(
            lambda: ("storage", real_id) in introducer.stored(), "the real announcement", 60
        )
        ann = introducer.stored()[("storage", real_id)]
        assert ann["nickname"] == "real-storage" and ann["my-version"] == "tahoe-lafs/1.20.0"
        assert ann["seqnum"] >= 1 and ann["anonymous-storage-FURL"].startswith("pb://")
        assert (
            ann["permutation-seed-base32"] == (storage_dir / "permutation-seed").read_text().strip()
        )
        assert base32.a2b(ann["permutation-seed-base32"]) == real_id[3:].encode("ascii")

        # Our broker connects to the real storage server it learnt about from our introducer.
        expected = {real_id, ours[0].server_id}
        await wait_for(
            lambda: ours[1].connected_ids() == expected, "our client to see both servers", 60
        )
        handle = ours[1].broker.get_server(real_id)
        assert handle is not None and handle.application_version() == "tahoe-lafs/1.20.0"
        assert handle.nickname == "real-storage" and handle.available_space() is not None

        # The real client got both announcements through our introducer and connected to both.
        web_url = f"http://127.0.0.1:{web_port}/"
        try:
            await wait_for_real(
                lambda: (
                    real_connected(web_url, "real-storage")
                    and real_connected(web_url, "our-storage")
                ),
                "the real client to connect to the real and our storage servers",
            )
        except AssertionError as e:
            raise AssertionError(
                f"{e}; the real client sees {real_server_nicknames(web_url)}"
            ) from None
        welcome = await in_thread(harness.get_json, web_url + "?t=json")
        assert welcome["introducers"]["statuses"][0].startswith("Connected")
        # Real nodes subscribe as well: the storage node (a client too) and the client.
        assert introducer.subscriber_count() >= 4
    finally:
        for node in ours:
            await node.stop()
        for node in real:
            await in_thread(node.stop)
        await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_we_join_a_real_introducer(real_grid: harness.RealGrid, tmp_path: Path) -> None:
    furl = real_grid.introducer_furl
    ours: list[GridNode] = []
    try:
        ours.append(
            await start_node(
                tmp_path / "our-storage", "our-storage-in-real-grid", furl, publish=True
            )
        )
        ours.append(await start_node(tmp_path / "our-client", "our-client", furl, publish=False))
        watcher = ours[1]
        real_count = len(real_grid.storage_nodes)
        # Our subscriber hears about every real storage server and connects to each.
        await wait_for(
            lambda: len(watcher.connected_ids()) == real_count + 1, "the real storage servers", 60
        )
        nicknames = {h.nickname for h in watcher.broker.connected_servers()}
        assert nicknames == {f"storage{i}" for i in range(real_count)} | {
            "our-storage-in-real-grid"
        }
        for handle in watcher.broker.connected_servers():
            assert handle.application_version() == "tahoe-lafs/1.20.0"
        assert watcher.client.connection_status().startswith("Connected to tcp:127.0.0.1:")
        # The real introducer relayed our signed announcement and the real client connected to us.
        await wait_for_real(
            lambda: real_connected(real_grid.web_url, "our-storage-in-real-grid"),
            "the real client to connect to us",
        )
    finally:
        for node in ours:
            await node.stop()
