"""The storage-client interface's contract, run against every implementation of it.

Each test gets a `StorageServerClient` for a fresh storage server: over real
loopback Foolscap (``FoolscapConnector`` through a Tub, as a node connects),
over loopback HTTPS (``HTTPConnector``, the server on the Tub's shared port)
and in-process (``InProcessStorageClient``).  A new protocol adds a kind to
``KINDS`` and must pass the same tests.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor

from lafs.storage.server import StorageServer
from lafs.storage_client.fake import FaultyStorageClient, InProcessStorageClient
from lafs.storage_client.foolscap import FoolscapConnector
from lafs.storage_client.http import HTTPConnector
from lafs.storage_client.interface import (
    ServerRefusedError,
    ServerUnreachableError,
    StorageServerClient,
    WriteEnablerMismatchError,
)
from lafs.tub import NodeTub
from tests.storage_grid import start_storage_server, wait_for

KINDS = ["foolscap", "http", "in-process"]
RENEW, CANCEL, WRITE_ENABLER = b"r" * 32, b"c" * 32, b"w" * 32
SECRETS = (WRITE_ENABLER, RENEW, CANCEL)


@attrs.define
class ServerUnderTest:
    client: StorageServerClient
    server: StorageServer
    make_unreachable: Callable[[], Awaitable[Any]]
    """Stop the server (or cut the connection) so that calls can no longer reach it."""


@asynccontextmanager
async def server_under_test(kind: str, basedir: Path) -> AsyncIterator[ServerUnderTest]:
    if kind == "in-process":
        server = StorageServer.on_disk(str(basedir / "storage"), b"\x01" * 20)
        fake = FaultyStorageClient(InProcessStorageClient(server, "v0-in-process"), server)

        async def stop_fake() -> None:
            fake.stopped = True

        yield ServerUnderTest(fake, server, stop_fake)
        return
    running = await start_storage_server(basedir, "contract", http=kind == "http")
    client_tub = NodeTub()
    client_tub.startService()
    connected: list[StorageServerClient] = []
    connector = HTTPConnector(reactor) if kind == "http" else FoolscapConnector(client_tub)
    connection = connector.connect(running.server_id, running.announcement(), connected.append, lambda client: None)
    try:
        await wait_for(lambda: bool(connected), f"the {kind} storage client")
        yield ServerUnderTest(connected[0], running.server, running.stop)
    finally:
        connection.stop()
        await client_tub.stopService()
        if running.tub.running:
            await running.stop()


async def upload_share(client: StorageServerClient, storage_index: bytes, shnum: int, data: bytes) -> None:
    allocation = await client.allocate_buckets(storage_index, RENEW, CANCEL, {shnum}, len(data))
    writer = allocation.writers[shnum]
    await writer.write(0, data)
    await writer.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_version_describes_the_server(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        version = s.client.version
        assert version.application_version == "tahoe-lafs/1.20.0"
        assert version.available_space is not None and version.available_space > 0
        assert version.maximum_immutable_share_size == version.available_space
        assert version.maximum_mutable_share_size == 69105000000000000
        assert len(s.client.lease_seed) == 20 and s.client.server_id


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_immutable_shares_round_trip(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        allocation = await s.client.allocate_buckets(si, RENEW, CANCEL, {0, 1}, 100)
        assert allocation.already_have == frozenset() and set(allocation.writers) == {0, 1}
        for shnum, writer in allocation.writers.items():
            await writer.write(0, bytes([shnum]) * 60)
            await writer.write(60, bytes([shnum]) * 40)
            await writer.close()
        readers = await s.client.get_buckets(si)
        assert set(readers) == {0, 1}
        assert await readers[1].read(10, 5) == b"\x01" * 5
        assert await readers[1].read(95, 50) == b"\x01" * 5, "a read past the end is cut short"
        assert await readers[0].read(200, 5) == b""
        again = await s.client.allocate_buckets(si, RENEW, CANCEL, {1, 2}, 100)
        assert again.already_have == frozenset({0, 1}) and set(again.writers) == {2}
        await again.writers[2].abort()
        assert set(await s.client.get_buckets(si)) == {0, 1}, "an aborted share never appears"
        assert await s.client.get_buckets(os.urandom(16)) == {}


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_bad_immutable_writes_are_refused_with_the_servers_reason(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        allocation = await s.client.allocate_buckets(si, RENEW, CANCEL, {0}, 10)
        writer = allocation.writers[0]
        with pytest.raises(ServerRefusedError) as too_long:
            await writer.write(5, b"x" * 6)
        assert too_long.value.remote_type == "DataTooLargeError"
        await writer.write(0, b"a" * 5)
        with pytest.raises(ServerRefusedError) as conflict:
            await writer.write(0, b"b" * 5)
        assert conflict.value.remote_type == "ConflictingWriteError"
        await writer.write(5, b"c" * 5)
        await writer.close()
        with pytest.raises(ServerRefusedError):
            await writer.write(0, b"a")
        with pytest.raises(ServerRefusedError) as bad_index:
            await s.client.get_buckets(b"too short")
        assert "storage index" in str(bad_index.value) or bad_index.value.remote_type


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_leases_and_corruption_reports(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        await upload_share(s.client, si, 3, b"d" * 50)
        await s.client.add_lease(si, b"R" * 32, b"C" * 32)
        await s.client.add_lease(os.urandom(16), RENEW, CANCEL)  # no shares: nothing happens
        assert len((await s.server.backend.get_leases(si, 3)).leases) == 2
        readers = await s.client.get_buckets(si)
        await readers[3].advise_corrupt_share(b"bad block 0")
        await s.client.advise_corrupt_share(b"immutable", si, 3, b"bad block 1")
        await s.client.advise_corrupt_share(b"immutable", si, 7, b"a share it lacks")
        reports = sorted(os.listdir(s.server.backend.corruption_dir))  # type: ignore[attr-defined]
        assert len(reports) == 2


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_mutable_slots_test_read_and_write(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        assert await s.client.slot_readv(si, [], [(0, 10)]) == {}
        created = await s.client.slot_testv_and_readv_and_writev(
            si, SECRETS, {0: ([(0, 1, b"eq", b"")], [(0, b"hello")], None), 1: ([], [(0, b"world!")], None)}, [(0, 3)]
        )
        assert created.success and dict(created.reads) == {}
        assert dict(await s.client.slot_readv(si, [], [(0, 5), (3, 10)])) == {0: [b"hello", b"lo"], 1: [b"world", b"ld!"]}
        assert dict(await s.client.slot_readv(si, [1], [(1, 2)])) == {1: [b"or"]}
        stale = await s.client.slot_testv_and_readv_and_writev(
            si, SECRETS, {0: ([(0, 5, b"eq", b"HELLO")], [(0, b"bye")], None)}, [(0, 5)]
        )
        assert not stale.success
        assert dict(stale.reads) == {0: [b"hello"], 1: [b"world"]}, "the reads come from before any write"
        holes = await s.client.slot_testv_and_readv_and_writev(
            si, SECRETS, {0: ([(0, 5, b"eq", b"hello")], [(8, b"!")], None)}, []
        )
        assert holes.success
        assert dict(await s.client.slot_readv(si, [0], [(0, 20)])) == {0: [b"hello\x00\x00\x00!"]}
        deleted = await s.client.slot_testv_and_readv_and_writev(si, SECRETS, {1: ([], [], 0)}, [])
        assert deleted.success
        assert set(await s.client.slot_readv(si, [], [(0, 1)])) == {0}


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_a_wrong_write_enabler_is_its_own_error(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        assert (await s.client.slot_testv_and_readv_and_writev(si, SECRETS, {0: ([], [(0, b"x")], None)}, [])).success
        with pytest.raises(WriteEnablerMismatchError) as caught:
            await s.client.slot_testv_and_readv_and_writev(si, (b"W" * 32, RENEW, CANCEL), {0: ([], [(0, b"y")], None)}, [])
        assert "write enabler was recorded by nodeid" in str(caught.value)
        assert dict(await s.client.slot_readv(si, [0], [(0, 1)])) == {0: [b"x"]}


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_fails_every_call_the_same_way(kind: str, tmp_path: Path) -> None:
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        await upload_share(s.client, si, 0, b"z" * 20)
        readers = await s.client.get_buckets(si)
        await s.make_unreachable()
        calls = [
            lambda: s.client.get_buckets(si),
            lambda: s.client.allocate_buckets(si, RENEW, CANCEL, {1}, 10),
            lambda: s.client.add_lease(si, RENEW, CANCEL),
            lambda: s.client.slot_readv(si, [], [(0, 1)]),
            lambda: s.client.slot_testv_and_readv_and_writev(si, SECRETS, {}, []),
            lambda: s.client.advise_corrupt_share(b"immutable", si, 0, b"x"),
            lambda: readers[0].read(0, 5),
        ]
        for make_call in calls:
            with pytest.raises(ServerUnreachableError) as caught:
                await make_call()
            assert caught.value.server_id == s.client.server_id


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_a_share_closed_with_a_gap_reads_zeros_there(kind: str, tmp_path: Path) -> None:
    """Tahoe's uploader never writes the plaintext hash tree region; the closed share holds zeros there."""
    async with server_under_test(kind, tmp_path) as s:
        si = os.urandom(16)
        allocation = await s.client.allocate_buckets(si, RENEW, CANCEL, {0}, 30)
        writer = allocation.writers[0]
        await writer.write(0, b"a" * 10)
        await writer.write(20, b"b" * 10)
        await writer.close()
        readers = await s.client.get_buckets(si)
        assert await readers[0].read(0, 30) == b"a" * 10 + b"\x00" * 10 + b"b" * 10
