"""The storage server over real loopback foolscap: concurrency, errors, and dropped uploaders."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import pytest_twisted
from foolscap.api import Referenceable
from twisted.internet import defer, task

from lafs.core import base32
from lafs.tub import NodeTub
from tests.storage_grid import RemoteError, RunningServer, call, start_storage_server

RENEW, CANCEL = b"r" * 32, b"c" * 32


class Canary(Referenceable):  # type: ignore[misc]
    pass


async def connect(server: RunningServer) -> tuple[NodeTub, object]:
    tub = NodeTub()
    tub.startService()
    rref = await tub.getReference(server.furl)
    return tub, rref


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_upload_and_read_over_foolscap(tmp_path: Path) -> None:
    server = await start_storage_server(tmp_path / "s", "s0")
    client_tub, rref = await connect(server)
    try:
        version = await call(rref, "get_version")
        assert version[b"application-version"] == b"tahoe-lafs/1.20.0"
        si = os.urandom(16)
        already, writers = await call(
            rref, "allocate_buckets", si, RENEW, CANCEL, {0, 1}, 1000, Canary()
        )
        assert already == set() and set(writers) == {0, 1}
        for shnum, writer in writers.items():
            await call(writer, "write", 0, bytes([shnum]) * 1000)
            await call(writer, "close")
        readers = await call(rref, "get_buckets", si)
        assert set(readers) == {0, 1}
        assert await call(readers[1], "read", 10, 5) == b"\x01" * 5
        await call(readers[1], "advise_corrupt_share", b"test report")
        assert len(os.listdir(server.server.backend.corruption_dir)) == 1
        ok, reads = await call(
            rref,
            "slot_testv_and_readv_and_writev",
            si[::-1],
            (b"w" * 32, RENEW, CANCEL),
            {0: ([(0, 1, b"eq", b"")], [(0, b"mutable")], None)},
            [(0, 3)],
        )
        assert ok and reads == {}
        assert await call(rref, "slot_readv", si[::-1], [], [(0, 7)]) == {0: [b"mutable"]}
    finally:
        await client_tub.stopService()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_errors_reach_the_caller_and_the_server_keeps_serving(tmp_path: Path) -> None:
    server = await start_storage_server(tmp_path / "s", "s0")
    client_tub, rref = await connect(server)
    try:
        with pytest.raises(RemoteError, match="16 bytes"):
            await call(rref, "get_buckets", b"short-index")
        si = os.urandom(16)
        _, writers = await call(rref, "allocate_buckets", si, RENEW, CANCEL, {0}, 10, Canary())
        with pytest.raises(RemoteError, match="past the allocated size"):
            await call(writers[0], "write", 5, b"0123456789")
        await call(writers[0], "write", 0, b"0123456789")
        await call(writers[0], "close")
        with pytest.raises(RemoteError, match="already closed"):
            await call(writers[0], "close")
        await call(
            rref,
            "slot_testv_and_readv_and_writev",
            si,
            (b"w" * 32, RENEW, CANCEL),
            {0: ([], [(0, b"x")], None)},
            [],
        )
        with pytest.raises(RemoteError, match="write enabler was recorded by nodeid"):
            await call(
                rref,
                "slot_testv_and_readv_and_writev",
                si,
                (b"W" * 32, RENEW, CANCEL),
                {0: ([], [(0, b"y")], None)},
                [],
            )
        assert await call(rref, "get_version")
    finally:
        await client_tub.stopService()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_many_concurrent_writers_and_readers(tmp_path: Path) -> None:
    server = await start_storage_server(tmp_path / "s", "s0")
    tubs_and_refs = [await connect(server) for _ in range(4)]
    try:
        payloads = {os.urandom(16): os.urandom(20000) for _ in range(12)}

        async def upload(rref: object, si: bytes, data: bytes) -> None:
            _, writers = await call(
                rref, "allocate_buckets", si, RENEW, CANCEL, {0, 1, 2}, len(data), Canary()
            )
            for offset in range(0, len(data), 4096):
                await defer.gatherResults(
                    [
                        w.callRemote("write", offset, data[offset : offset + 4096])
                        for w in writers.values()
                    ]
                )
            await defer.gatherResults([w.callRemote("close") for w in writers.values()])

        await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(upload(tubs_and_refs[i % 4][1], si, data))
                for i, (si, data) in enumerate(payloads.items())
            ]
        )

        async def check(rref: object, si: bytes, data: bytes) -> None:
            readers = await call(rref, "get_buckets", si)
            assert set(readers) == {0, 1, 2}
            for reader in readers.values():
                assert await call(reader, "read", 0, len(data) + 10) == data

        await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(check(tubs_and_refs[(i + 1) % 4][1], si, data))
                for i, (si, data) in enumerate(payloads.items())
            ]
        )
    finally:
        for tub, _ in tubs_and_refs:
            await tub.stopService()
        await server.stop()


@pytest_twisted.ensureDeferred
async def test_dropped_uploader_leaves_nothing_visible(tmp_path: Path) -> None:
    server = await start_storage_server(tmp_path / "s", "s0")
    client_tub, rref = await connect(server)
    si = os.urandom(16)
    _, writers = await call(rref, "allocate_buckets", si, RENEW, CANCEL, {0, 1}, 100000, Canary())
    await call(writers[0], "write", 0, b"x" * 50000)
    await client_tub.stopService()  # the uploader's connection drops mid-upload
    incoming = os.path.join(server.server.backend.incoming_dir, base32.b2a(si)[:2])
    for _ in range(50):
        if not os.path.exists(incoming):
            break
        await sleep(0.1)
    try:
        assert not os.path.exists(incoming)
        assert await server.server.get_buckets(si) == {}
        # The share numbers are free again for the next uploader.
        client_tub, rref = await connect(server)
        already, writers = await call(
            rref, "allocate_buckets", si, RENEW, CANCEL, {0, 1}, 10, Canary()
        )
        assert already == set() and set(writers) == {0, 1}
        await client_tub.stopService()
    finally:
        await server.stop()


def test_asyncio_not_needed() -> None:
    # The storage code runs on Twisted alone; asyncio is never imported by it.
    import lafs.storage.server as server_module

    assert "asyncio" not in vars(server_module)
    assert asyncio is not None
