"""Our introducer, introducer clients and storage brokers over loopback foolscap, in one reactor.

Publishers are our storage servers (tests/storage_grid.py) that also run an IntroducerClient and
a StorageBroker, as a client node does; raw foolscap callers check the wire behaviour (facts §8).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest_twisted
import yaml
from foolscap.api import Referenceable, Tub
from twisted.application.service import MultiService
from zope.interface import implementer

from lafs.client.storage_broker import StorageBroker
from lafs.core import base32, crypto
from lafs.interfaces import (
    RIIntroducerPublisherAndSubscriberService_v2,
    RIIntroducerSubscriberClient_v2,
)
from lafs.introducer.announcement import sign_announcement
from lafs.introducer.client import IntroducerClient
from lafs.introducer.server import IntroducerService
from lafs.storage.announcement import permutation_seed_for, storage_announcement
from lafs.storage_client.foolscap import FoolscapConnector
from tests.storage_grid import RunningServer, call, free_port, sleep, start_storage_server, wait_for

V2 = b"http://allmydata.org/tahoe/protocols/introducer/v2"


def listening_tub(cert_file: Path, port: int | None = None) -> Tub:
    """A Tub on 127.0.0.1 whose identity (and so every fURL) survives a restart."""
    tub = Tub(certFile=str(cert_file))
    port = port or free_port()
    tub.listenOn(f"tcp:{port}:interface=127.0.0.1")
    tub.setLocation(f"tcp:127.0.0.1:{port}")
    tub.startService()
    return tub


@attrs.define
class RunningIntroducer:
    basedir: Path
    port: int
    tub: Tub
    service: IntroducerService

    @property
    def furl(self) -> str:
        assert self.service.furl is not None
        return self.service.furl

    def stored(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {index: ann for index, (_, ann) in self.service.remote.announcements.items()}

    def subscriber_count(self, service_name: str = "storage") -> int:
        return len(self.service.remote.subscribers.get(service_name, {}))

    async def stop(self) -> None:
        await self.tub.stopService()


async def start_introducer(basedir: Path, port: int | None = None) -> RunningIntroducer:
    basedir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    tub = listening_tub(basedir / "node.pem", port)
    service = IntroducerService(tub, str(basedir))
    service.setServiceParent(tub)
    return RunningIntroducer(basedir, port, tub, service)


def counter() -> Callable[[], tuple[int, str]]:
    """A sequencer as the node's (``announcement-seqnum`` +1 per publish), kept in memory."""
    state = {"seqnum": 0}

    def next_seqnum() -> tuple[int, str]:
        state["seqnum"] += 1
        return state["seqnum"], base32.b2a(os.urandom(32))

    return next_seqnum


@attrs.define
class GridNode:
    """A node with an introducer client and a storage broker; a storage server if it publishes."""

    name: str
    tub: Tub
    client: IntroducerClient
    broker: StorageBroker
    server_id: str
    services: MultiService
    storage: RunningServer | None = None

    def connected_ids(self) -> set[str]:
        return {h.server_id for h in self.broker.connected_servers()}

    async def stop(self) -> None:
        # As in a node: the client and broker stop their reconnectors before the Tub goes.
        await self.services.stopService()
        await self.tub.stopService()


def attach(tub: Tub, client: IntroducerClient, broker: StorageBroker) -> MultiService:
    services = MultiService()
    broker.setServiceParent(services)
    client.setServiceParent(services)
    services.startService()
    return services


async def start_node(
    basedir: Path,
    name: str,
    introducer_furl: str,
    *,
    publish: bool,
    sequencer: Callable[[], tuple[int, str]] | None = None,
) -> GridNode:
    basedir.mkdir(parents=True, exist_ok=True)
    signing_seed = crypto.ed25519_generate()
    public_string = crypto.ed25519_public_to_string(
        crypto.ed25519_public_from_private(signing_seed)
    )
    server_id = "v0-" + public_string[len(b"pub-v0-") :].decode()
    storage: RunningServer | None = None
    if publish:
        storage = await start_storage_server(basedir / "server", name)
        tub = storage.tub
    else:
        tub = listening_tub(basedir / "node.pem")
    client = IntroducerClient(
        tub,
        introducer_furl,
        nickname=name,
        signing_seed=signing_seed,
        sequencer=sequencer or counter(),
        cache_path=str(basedir / "introducer_default_cache.yaml"),
    )
    broker = StorageBroker([FoolscapConnector(tub)])
    client.subscribe_to("storage", broker.got_announcement)
    if storage is not None:
        seed = permutation_seed_for(str(basedir), public_string)
        client.publish("storage", storage_announcement(storage.furl, seed))
    return GridNode(name, tub, client, broker, server_id, attach(tub, client, broker), storage)


@implementer(RIIntroducerSubscriberClient_v2)
class RecordingSubscriber(Referenceable):  # type: ignore[misc]
    """A bare subscriber that keeps every ``announce_v2`` batch it gets."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[bytes, bytes, bytes]]] = []

    def remote_announce_v2(self, announcements: Any) -> None:
        self.batches.append([tuple(a) for a in announcements])

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(t[0]) for batch in self.batches for t in batch]


class Canary(Referenceable):  # type: ignore[misc]
    pass


def raw_announcement(seed: bytes, seqnum: int, **extra: Any) -> tuple[bytes, bytes, bytes]:
    ann = {
        "version": 0,
        "nickname": "raw",
        "service-name": "storage",
        "seqnum": seqnum,
        "nonce": "n",
        **extra,
    }
    return sign_announcement(ann, seed)


SUBSCRIBER_INFO = {
    b"version": 0,
    b"nickname": "raw",
    b"app-versions": [],
    b"my-version": "tahoe-lafs/1.20.0",
    b"oldest-supported": "1.0.0",
}


# --- tests ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_three_publishers_and_a_subscriber_see_each_other(tmp_path: Path) -> None:
    introducer = await start_introducer(tmp_path / "introducer")
    nodes: list[GridNode] = []
    try:
        for index in range(3):
            nodes.append(
                await start_node(
                    tmp_path / f"s{index}", f"storage{index}", introducer.furl, publish=True
                )
            )
        watcher = await start_node(tmp_path / "client", "client", introducer.furl, publish=False)
        nodes.append(watcher)
        publisher_ids = {n.server_id for n in nodes[:3]}
        for node in nodes:
            await wait_for(
                lambda node=node: node.connected_ids() == publisher_ids,
                f"{node.name} to connect to all",
            )
        assert all(n.client.connected_to_introducer() for n in nodes)
        assert (
            watcher.client.connection_status()
            == f"Connected to tcp:127.0.0.1:{introducer.port} via tcp"
        )
        # The introducer holds one announcement per (service, key) and what each says is right.
        stored = introducer.stored()
        assert set(stored) == {("storage", server_id) for server_id in publisher_ids}
        for node in nodes[:3]:
            ann = stored[("storage", node.server_id)]
            assert node.storage is not None
            assert ann["anonymous-storage-FURL"] == node.storage.furl
            assert ann["nickname"] == node.name and ann["service-name"] == "storage"
            assert (
                ann["version"] == 0
                and ann["app-versions"] == []
                and ann["oldest-supported"] == "1.0.0"
            )
            assert ann["my-version"] == "tahoe-lafs/1.20.0" and ann["seqnum"] == 1
            assert base32.a2b(ann["permutation-seed-base32"]) == node.server_id[3:].encode("ascii")
        assert introducer.subscriber_count() == 4
        # The subscriber's view carries nicknames, versions and the storage servers' status lines.
        handles = {h.nickname: h for h in watcher.broker.connected_servers()}
        assert set(handles) == {"storage0", "storage1", "storage2"}
        for handle in handles.values():
            assert handle.application_version() == "tahoe-lafs/1.20.0"
            assert handle.connection_status().startswith("Connected to tcp:127.0.0.1:")
            assert handle.last_connect_time is not None and handle.available_space() is not None
    finally:
        for node in nodes:
            await node.stop()
        await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_introducer_loss_keeps_server_connections_and_restart_introduces_newcomers(
    tmp_path: Path,
) -> None:
    introducer = await start_introducer(tmp_path / "introducer")
    furl, port = introducer.furl, introducer.port
    nodes: list[GridNode] = []
    try:
        for index in range(2):
            nodes.append(
                await start_node(tmp_path / f"s{index}", f"storage{index}", furl, publish=True)
            )
        watcher = await start_node(tmp_path / "client", "client", furl, publish=False)
        first_ids = {n.server_id for n in nodes}
        await wait_for(lambda: watcher.connected_ids() == first_ids, "the first two servers")
        first_seqnums = {key: ann["seqnum"] for key, ann in introducer.stored().items()}

        await introducer.stop()
        await wait_for(
            lambda: not watcher.client.connected_to_introducer(), "the client to notice the loss"
        )
        assert watcher.client.connection_status() == "Disconnected; trying to reconnect"
        await sleep(0.5)
        assert (
            watcher.connected_ids() == first_ids
        )  # storage connections do not depend on the introducer

        introducer = await start_introducer(tmp_path / "introducer", port)
        assert (
            introducer.furl == furl
        )  # same Tub key and swissnum: everyone's configured fURL still works
        nodes.append(await start_node(tmp_path / "s2", "storage2", furl, publish=True))
        nodes.append(watcher)
        all_ids = first_ids | {nodes[2].server_id}
        for node in nodes:
            await wait_for(
                lambda node=node: node.connected_ids() == all_ids,
                f"{node.name} to see the newcomer",
            )
        # Reconnecting clients republished with a higher seqnum.
        await wait_for(
            lambda: len(introducer.stored()) == 3, "all three announcements at the new introducer"
        )
        for key, seqnum in first_seqnums.items():
            assert introducer.stored()[key]["seqnum"] > seqnum
        assert (
            watcher.client.connected_to_introducer() and watcher.client.last_loss_time is not None
        )
    finally:
        for node in nodes:
            await node.stop()
        await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_bad_announcements_are_ignored_and_seqnums_rule(tmp_path: Path) -> None:
    introducer = await start_introducer(tmp_path / "introducer")
    watcher = await start_node(tmp_path / "client", "client", introducer.furl, publish=False)
    seen: list[tuple[str, dict[str, Any]]] = []
    watcher.client.subscribe_to("storage", lambda key_s, ann: seen.append((key_s, ann)))
    raw_tub = Tub()
    raw_tub.startService()
    try:
        rref = await raw_tub.getReference(introducer.furl)
        await wait_for(lambda: introducer.subscriber_count() == 1, "the subscription")
        good, evil = crypto.ed25519_generate(), crypto.ed25519_generate()
        good_id = "v0-" + base32.b2a(crypto.ed25519_public_from_private(good))
        sentinel_seed = crypto.ed25519_generate()

        async def publish(ann_t: tuple[bytes, bytes, bytes]) -> None:
            assert await call(rref, "publish_v2", ann_t, Canary()) is None

        async def flush(seqnum: int) -> None:
            # Announcements travel in order: once this one arrived, every earlier one was handled.
            await publish(raw_announcement(sentinel_seed, seqnum, nickname="sentinel"))
            await wait_for(
                lambda: any(a["nickname"] == "sentinel" and a["seqnum"] == seqnum for _, a in seen),
                "sentinel",
            )

        msg, _, key = raw_announcement(good, 5, nickname="forged")
        _, evil_sig, _ = raw_announcement(evil, 5, nickname="forged")
        await publish((msg, evil_sig, key))  # someone else's signature under good's key
        await publish((msg, b"", key))  # unsigned
        await publish(
            (
                msg.replace(b"forged", b"f0rged"),
                raw_announcement(good, 5, nickname="forged")[1],
                key,
            )
        )
        await flush(1)
        assert [a["nickname"] for _, a in seen] == ["sentinel"]
        assert ("storage", good_id) not in introducer.stored()

        await publish(raw_announcement(good, 5, nickname="v5"))
        await publish(raw_announcement(good, 5, nickname="v5"))  # identical: ignored
        await publish(raw_announcement(good, 5, nickname="v5-again"))  # same seqnum: not newer
        await publish(raw_announcement(good, 4, nickname="v4"))  # older
        await publish(raw_announcement(good, 6, nickname="v6"))
        await flush(2)
        assert [a["nickname"] for k, a in seen if k == good_id] == ["v5", "v6"]
        assert introducer.stored()[("storage", good_id)]["nickname"] == "v6"
        # The client's cache holds what it accepted, in Tahoe's format.
        cache = yaml.safe_load(Path(watcher.client._cache_path).read_text())
        cached = {entry["key_s"]: entry["ann"] for entry in cache}
        assert cached[good_id]["nickname"] == "v6" and cached[good_id]["seqnum"] == 6
    finally:
        await raw_tub.stopService()
        await watcher.stop()
        await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_subscribe_version_duplicates_and_disconnects(tmp_path: Path) -> None:
    introducer = await start_introducer(tmp_path / "introducer")
    publisher = crypto.ed25519_generate()
    raw_tubs: list[Tub] = []
    try:
        tub = listening_tub(tmp_path / "raw.pem")
        raw_tubs.append(tub)
        rref = await tub.getReference(introducer.furl)
        version = await call(rref, "get_version")
        assert version == {V2: {}, b"application-version": b"tahoe-lafs/1.20.0"}
        await call(rref, "publish_v2", raw_announcement(publisher, 1, nickname="early"), Canary())
        await call(
            rref,
            "publish_v2",
            raw_announcement(publisher, 1, nickname="other", **{"service-name": "x"}),
            Canary(),
        )

        subscriber = RecordingSubscriber()
        await call(rref, "subscribe_v2", subscriber, b"storage", SUBSCRIBER_INFO)
        await call(
            rref, "subscribe_v2", subscriber, b"storage", SUBSCRIBER_INFO
        )  # duplicate: ignored
        await wait_for(lambda: len(subscriber.batches) >= 1, "the stored announcements")
        # Everything stored for the service arrives at once, only for the subscribed service.
        assert [a["nickname"] for a in subscriber.received()] == ["early"]
        await call(rref, "publish_v2", raw_announcement(publisher, 2, nickname="later"), Canary())
        await wait_for(lambda: len(subscriber.received()) >= 2, "the forwarded announcement")
        await sleep(0.2)
        assert [a["nickname"] for a in subscriber.received()] == ["early", "later"]
        assert [len(batch) for batch in subscriber.batches] == [1, 1]
        assert introducer.subscriber_count() == 1

        await tub.stopService()
        await wait_for(
            lambda: introducer.subscriber_count() == 0, "the introducer to drop the gone subscriber"
        )
        # Publishing with no subscribers left still works and is stored.
        tub2 = listening_tub(tmp_path / "raw2.pem")
        raw_tubs.append(tub2)
        rref2 = await tub2.getReference(introducer.furl)
        await call(rref2, "publish_v2", raw_announcement(publisher, 3, nickname="latest"), Canary())
        await wait_for(
            lambda: (
                introducer.stored()[
                    ("storage", "v0-" + base32.b2a(crypto.ed25519_public_from_private(publisher)))
                ]["nickname"]
                == "latest"
            ),
            "the stored replacement",
        )
    finally:
        for raw in raw_tubs:
            if raw.running:
                await raw.stopService()
        await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_cached_servers_are_used_before_the_introducer_answers(tmp_path: Path) -> None:
    introducer = await start_introducer(tmp_path / "introducer")
    nodes: list[GridNode] = []
    try:
        for index in range(2):
            nodes.append(
                await start_node(
                    tmp_path / f"s{index}", f"storage{index}", introducer.furl, publish=True
                )
            )
        watcher = await start_node(tmp_path / "client", "client", introducer.furl, publish=False)
        ids = {n.server_id for n in nodes}
        await wait_for(lambda: watcher.connected_ids() == ids, "the servers")
        cache_path = Path(watcher.client._cache_path)
        entries = yaml.safe_load(cache_path.read_text())
        assert {e["key_s"] for e in entries} == ids
        assert all(set(e) == {"ann", "key_s"} for e in entries)
        await watcher.stop()
        await introducer.stop()

        # A restarted client whose introducer is gone still finds the servers through its cache.
        tub = listening_tub(tmp_path / "client" / "node.pem")
        client = IntroducerClient(
            tub,
            introducer.furl,
            nickname="client",
            signing_seed=crypto.ed25519_generate(),
            sequencer=counter(),
            cache_path=str(cache_path),
        )
        broker = StorageBroker([FoolscapConnector(tub)])
        client.subscribe_to("storage", broker.got_announcement)
        nodes.append(
            GridNode("restarted", tub, client, broker, "none", attach(tub, client, broker))
        )
        await wait_for(lambda: nodes[-1].connected_ids() == ids, "the cached servers")
        assert not client.connected_to_introducer()
        assert client.connection_status() == "Trying to connect"
    finally:
        for node in nodes:
            await node.stop()
        if introducer.tub.running:
            await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_unreadable_cache_is_ignored(tmp_path: Path) -> None:
    introducer = await start_introducer(tmp_path / "introducer")
    cache_path = tmp_path / "cache.yaml"
    cache_path.write_text("{not: [valid yaml")
    tub = listening_tub(tmp_path / "node.pem")
    try:
        client = IntroducerClient(
            tub,
            introducer.furl,
            nickname="c",
            signing_seed=crypto.ed25519_generate(),
            sequencer=counter(),
            cache_path=str(cache_path),
        )
        client.startService()
        await wait_for(client.connected_to_introducer, "the introducer")
        await client.stopService()
    finally:
        await tub.stopService()
        await introducer.stop()


@pytest_twisted.ensureDeferred
async def test_furl_is_private_and_stable_and_the_legacy_file_moves(tmp_path: Path) -> None:
    basedir = tmp_path / "introducer"
    introducer = await start_introducer(basedir)
    furl = introducer.furl
    await introducer.stop()
    furl_file = basedir / "private" / "introducer.furl"
    assert furl_file.read_text().strip() == furl
    # An introducer made by an old Tahoe kept its fURL in BASEDIR; it moves to private/.
    furl_file.rename(basedir / "introducer.furl")
    introducer = await start_introducer(basedir, introducer.port)
    try:
        assert introducer.furl == furl
        assert not (basedir / "introducer.furl").exists() and furl_file.read_text().strip() == furl
    finally:
        await introducer.stop()


@implementer(RIIntroducerPublisherAndSubscriberService_v2)
class NotV2Introducer(Referenceable):  # type: ignore[misc]
    """Answers get_version without the v2 protocol key, as an introducer we cannot talk to."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def remote_get_version(self) -> dict[bytes, Any]:
        self.calls.append("get_version")
        return {b"application-version": b"tahoe-lafs/1.0"}

    def remote_publish_v2(self, ann_t: Any, canary: Any) -> None:
        self.calls.append("publish_v2")

    def remote_subscribe_v2(self, subscriber: Any, service_name: bytes, info: Any) -> None:
        self.calls.append("subscribe_v2")


@pytest_twisted.ensureDeferred
async def test_an_introducer_without_the_v2_protocol_is_not_used(tmp_path: Path) -> None:
    server_tub = listening_tub(tmp_path / "old.pem")
    fake = NotV2Introducer()
    furl = server_tub.registerReference(fake)
    tub = listening_tub(tmp_path / "node.pem")
    client = IntroducerClient(
        tub,
        furl,
        nickname="c",
        signing_seed=crypto.ed25519_generate(),
        sequencer=counter(),
        cache_path=str(tmp_path / "cache.yaml"),
    )
    client.publish("storage", {"anonymous-storage-FURL": "pb://x@tcp:127.0.0.1:1/y"})
    client.subscribe_to("storage", lambda key_s, ann: None)
    client.startService()
    try:
        await wait_for(lambda: fake.calls == ["get_version"], "the version check")
        await sleep(0.2)
        assert fake.calls == ["get_version"] and not client.connected_to_introducer()
    finally:
        await client.stopService()
        await tub.stopService()
        await server_tub.stopService()
