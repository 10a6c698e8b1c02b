"""The storage server's methods and every error path (facts brief §4.7, §5.6, §7).

Protocol behaviour runs over both share backends; what the disk must look
like (Tahoe's layout, byte for byte) runs over the disk backend only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from lafs.core import base32
from lafs.core.containers import (
    IMMUTABLE_HEADER,
    LEASE_DURATION,
    ImmutableContainerHeader,
    MutableContainerHeader,
)
from lafs.core.hashes import hashed_lease_secret
from lafs.core.sizes import SizeError, parse_abbreviated_size
from lafs.storage import errors
from lafs.storage.backend import SpaceStats
from lafs.storage.disk import DiskBackend
from lafs.storage.memory import MemoryBackend
from lafs.storage.server import STORAGE_PROTOCOL_V1, StorageServer

SI = b"\x01" * 16
SI_B32 = base32.b2a(SI)
RENEW, CANCEL = b"r" * 32, b"c" * 32
NODEID = b"n" * 20
WE = b"w" * 32

ServerFactory = Callable[..., StorageServer]


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture(params=["disk", "memory"])
def make_server(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> ServerFactory:
    """Builds servers over the parametrized backend; ``free`` fakes the free space it reports."""
    count = 0

    def make(free: int | None = None, **options: Any) -> StorageServer:
        nonlocal count
        count += 1
        options.setdefault("clock", clock)
        if request.param == "memory":
            return StorageServer(MemoryBackend(capacity=free), NODEID, **options)
        backend = DiskBackend.open(str(tmp_path / f"storage{count}"))
        if free is not None:
            backend.space = lambda: SpaceStats(total=free, free=free)  # type: ignore[method-assign]
        return StorageServer(backend, NODEID, **options)

    return make


@pytest.fixture
def server(make_server: ServerFactory) -> StorageServer:
    return make_server()


@pytest.fixture
def disk_server(tmp_path: Path, clock: Clock) -> StorageServer:
    return StorageServer.on_disk(str(tmp_path / "storage"), NODEID, clock=clock)


def disk(server: StorageServer) -> DiskBackend:
    assert isinstance(server.backend, DiskBackend)
    return server.backend


def share_path(server: StorageServer, shnum: int, si: bytes = SI) -> str:
    encoded = base32.b2a(si)
    return os.path.join(disk(server).storage_dir, "shares", encoded[:2], encoded, str(shnum))


async def upload(server: StorageServer, data: bytes, shnums: tuple[int, ...] = (0,)) -> None:
    _, writers = await server.allocate_buckets(SI, RENEW, CANCEL, shnums, len(data))
    for writer in writers.values():
        await writer.write(0, data)
        await writer.close()


async def leases(server: StorageServer, shnum: int, si: bytes = SI) -> list[Any]:
    return list((await server.backend.get_leases(si, shnum)).leases)


@pytest_twisted.ensureDeferred
async def test_immutable_round_trip(server: StorageServer, clock: Clock) -> None:
    already, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {0, 1}, 100)
    assert already == set() and set(writers) == {0, 1}
    await writers[0].write(0, b"a" * 60)
    await writers[0].write(60, b"b" * 40)
    assert await server.get_buckets(SI) == {}
    await writers[0].close()
    readers = await server.get_buckets(SI)
    assert set(readers) == {0}
    assert await readers[0].read(0, 100) == b"a" * 60 + b"b" * 40
    assert await readers[0].read(90, 50) == b"b" * 10
    assert await readers[0].read(200, 5) == b""
    (lease,) = await leases(server, 0)
    assert lease.owner_num == 0
    assert lease.renew_secret == hashed_lease_secret(RENEW)
    assert lease.expiration_time == int(clock.seconds()) + LEASE_DURATION
    await writers[1].abort()
    assert set(await server.get_buckets(SI)) == {0}


@pytest_twisted.ensureDeferred
async def test_immutable_layout_on_disk(disk_server: StorageServer) -> None:
    _, writers = await disk_server.allocate_buckets(SI, RENEW, CANCEL, {0, 1}, 100)
    incoming = os.path.join(disk(disk_server).storage_dir, "shares", "incoming", SI_B32[:2], SI_B32, "0")
    assert os.path.exists(incoming)
    await writers[0].write(0, b"a" * 100)
    await writers[0].close()
    assert not os.path.exists(incoming)
    raw = Path(share_path(disk_server, 0)).read_bytes()
    header = ImmutableContainerHeader.unpack(raw)
    assert (header.version, header.legacy_data_length, header.num_leases) == (2, 100, 1)
    assert len(raw) == IMMUTABLE_HEADER.size + 100 + 72
    await writers[1].abort()
    assert not os.path.exists(os.path.join(disk(disk_server).storage_dir, "shares", "incoming", SI_B32[:2]))


@pytest_twisted.ensureDeferred
async def test_alreadygot_lists_every_finished_share(server: StorageServer) -> None:
    await upload(server, b"x" * 10, (0, 3))
    already, writers = await server.allocate_buckets(SI, b"R" * 32, b"C" * 32, {0, 5}, 10)
    assert already == {0, 3}
    assert set(writers) == {5}
    # The second uploader's secrets became a second lease on the existing shares.
    assert len(await leases(server, 3)) == 2
    # A share being written by someone else is in neither set.
    already, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {5}, 10)
    assert 5 not in already and writers == {}


@pytest_twisted.ensureDeferred
async def test_write_errors(server: StorageServer) -> None:
    _, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10)
    writer = writers[0]
    with pytest.raises(errors.DataTooLargeError, match="past the allocated size 10"):
        await writer.write(5, b"123456")
    await writer.write(0, b"hello")
    await writer.write(2, b"llo")
    with pytest.raises(errors.ConflictingWriteError):
        await writer.write(0, b"HELLO")
    await writer.close()
    with pytest.raises(errors.BucketClosedError, match="already closed"):
        await writer.close()
    with pytest.raises(errors.BucketClosedError):
        await writer.write(0, b"x")
    # Bytes never written read as zeros: the share always holds its allocated size.
    assert await (await server.get_buckets(SI))[0].read(0, 10) == b"hello" + b"\x00" * 5


@pytest.mark.parametrize("bad", [b"short", b"x" * 17, b""])
@pytest_twisted.ensureDeferred
async def test_malformed_storage_index(server: StorageServer, bad: bytes) -> None:
    with pytest.raises(errors.BadStorageIndexError, match="16 bytes"):
        await server.allocate_buckets(bad, RENEW, CANCEL, {0}, 10)
    with pytest.raises(errors.BadStorageIndexError):
        await server.get_buckets(bad)
    with pytest.raises(errors.BadStorageIndexError):
        await server.slot_readv(bad, [], [(0, 10)])
    with pytest.raises(errors.BadStorageIndexError):
        await server.add_lease(bad, RENEW, CANCEL)


@pytest_twisted.ensureDeferred
async def test_bad_share_numbers(server: StorageServer) -> None:
    with pytest.raises(errors.BadShareNumberError):
        await server.allocate_buckets(SI, RENEW, CANCEL, {256}, 10)
    with pytest.raises(errors.BadShareNumberError):
        await server.allocate_buckets(SI, RENEW, CANCEL, {-1}, 10)


@pytest_twisted.ensureDeferred
async def test_reserved_space_and_readonly(make_server: ServerFactory) -> None:
    tight = make_server(free=1000, reserved_space=850)
    assert tight.available_space() == 150
    version = tight.get_version()[STORAGE_PROTOCOL_V1]
    assert version[b"available-space"] == 150
    assert version[b"maximum-immutable-share-size"] == 150
    # Each open allocation counts against the space left: two of 60 fit in 150, not three.
    _, writers = await tight.allocate_buckets(SI, RENEW, CANCEL, {0, 1, 2}, 60)
    assert len(writers) == 2
    for writer in writers.values():
        await writer.abort()
    assert len((await tight.allocate_buckets(SI, RENEW, CANCEL, {0, 1, 2}, 60))[1]) == 2
    readonly = make_server(readonly=True)
    assert readonly.available_space() == 0
    assert await readonly.allocate_buckets(SI, RENEW, CANCEL, {0}, 1) == (set(), {})
    full = make_server(free=1000, reserved_space=5000)
    assert full.get_version()[STORAGE_PROTOCOL_V1][b"available-space"] == 0


def test_unknown_space_is_advertised_as_2_to_the_64(clock: Clock) -> None:
    server = StorageServer(MemoryBackend(), NODEID, clock=clock)
    assert server.get_version()[STORAGE_PROTOCOL_V1][b"maximum-immutable-share-size"] == 2**64


def test_version_dict(server: StorageServer) -> None:
    version = server.get_version()
    assert version[b"application-version"] == b"tahoe-lafs/1.20.0"
    v1 = version[STORAGE_PROTOCOL_V1]
    assert v1[b"maximum-mutable-share-size"] == 69105000000000000
    assert v1[b"tolerates-immutable-read-overrun"] is True
    assert v1[b"fills-holes-with-zero-bytes"] is True


@pytest_twisted.ensureDeferred
async def test_restart_discards_incoming_and_keeps_finished(tmp_path: Path, clock: Clock) -> None:
    first = StorageServer.on_disk(str(tmp_path / "s"), NODEID, clock=clock)
    await upload(first, b"done", (0,))
    _, writers = await first.allocate_buckets(SI, RENEW, CANCEL, {1}, 10)
    await writers[1].write(0, b"half")
    second = StorageServer.on_disk(str(tmp_path / "s"), NODEID, clock=clock)
    assert set(await second.get_buckets(SI)) == {0}
    assert not os.path.exists(os.path.join(disk(second).storage_dir, "shares", "incoming", SI_B32[:2]))


@pytest_twisted.ensureDeferred
async def test_inactive_writer_is_aborted(server: StorageServer, clock: Clock) -> None:
    _, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10)
    clock.advance(29 * 60)
    await writers[0].write(0, b"x")
    clock.advance(29 * 60)
    assert not writers[0].finished
    clock.advance(2 * 60)
    assert writers[0].finished
    assert (await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10))[1]


@pytest_twisted.ensureDeferred
async def test_stopping_the_server_aborts_uploads(server: StorageServer) -> None:
    server.startService()
    _, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10)
    await server.stopService()
    assert writers[0].finished
    assert (await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10))[1]


@pytest_twisted.ensureDeferred
async def test_leases(server: StorageServer, clock: Clock) -> None:
    await upload(server, b"data", (0,))
    await server.add_lease(SI, b"R" * 32, b"C" * 32)
    assert [lease.owner_num for lease in await leases(server, 0)] == [0, 1]
    clock.advance(1000)
    await server.renew_lease(SI, RENEW)
    assert (await leases(server, 0))[0].expiration_time == int(clock.seconds()) + LEASE_DURATION
    with pytest.raises(errors.NoSuchLeaseError, match="renew secret"):
        await server.renew_lease(SI, b"?" * 32)
    await server.add_lease(b"\x09" * 16, RENEW, CANCEL)  # no shares: silently nothing


async def write_mutable(server: StorageServer, tw: dict, read: list | None = None, we: bytes = WE) -> tuple:  # type: ignore[type-arg]
    return await server.slot_testv_and_readv_and_writev(SI, (we, RENEW, CANCEL), tw, read or [])


@pytest_twisted.ensureDeferred
async def test_mutable_create_read_and_test_and_set(server: StorageServer) -> None:
    ok, reads = await write_mutable(server, {0: ([(0, 1, b"eq", b"")], [(0, b"version one")], None)}, [(0, 7)])
    assert ok and reads == {}
    assert await server.slot_readv(SI, [], [(0, 7), (8, 100)]) == {0: [b"version", b"one"]}
    ok, reads = await write_mutable(server, {0: ([(0, 7, b"eq", b"wrong!!")], [(0, b"XXXX")], None)}, [(0, 7)])
    assert not ok and reads == {0: [b"version"]}
    assert await server.slot_readv(SI, [0], [(0, 11)]) == {0: [b"version one"]}
    ok, _ = await write_mutable(server, {0: ([(0, 7, b"eq", b"version")], [(0, b"VERSION"), (20, b"!")], None)})
    assert ok
    assert await server.slot_readv(SI, [0], [(0, 100)]) == {0: [b"VERSION one" + b"\x00" * 9 + b"!"]}
    assert (await server.backend.mutable_write_enabler(SI, 0)).nodeid == NODEID
    assert [(lease.owner_num, lease.nodeid) for lease in await leases(server, 0)] == [(1, NODEID)]
    assert await server.slot_readv(b"\x07" * 16, [], [(0, 1)]) == {}
    # Immutable shares are not slots, and mutable ones are not buckets.
    await upload(server, b"imm", (3,))
    assert set(await server.slot_readv(SI, [], [(0, 1)])) == {0}
    assert set(await server.get_buckets(SI)) == {3}


@pytest_twisted.ensureDeferred
async def test_mutable_truncate_and_delete(server: StorageServer) -> None:
    await write_mutable(server, {0: ([], [(0, b"0123456789")], None), 1: ([], [(0, b"abc")], None)})
    await write_mutable(server, {0: ([], [], 4)})
    assert await server.slot_readv(SI, [0], [(0, 100)]) == {0: [b"0123"]}
    # After a truncation, bytes beyond the old end read back as zeros, not as the old data.
    await write_mutable(server, {0: ([], [(8, b"!")], None)})
    assert await server.slot_readv(SI, [0], [(0, 100)]) == {0: [b"0123\x00\x00\x00\x00!"]}
    await write_mutable(server, {0: ([], [], 0), 1: ([], [], 0)})
    assert await server.backend.list_shares(SI) == {}


@pytest_twisted.ensureDeferred
async def test_mutable_truncate_and_delete_on_disk(disk_server: StorageServer) -> None:
    await write_mutable(disk_server, {0: ([], [(0, b"0123456789")], None), 1: ([], [(0, b"abc")], None)})
    await write_mutable(disk_server, {0: ([], [], 4)})
    header = MutableContainerHeader.unpack(Path(share_path(disk_server, 0)).read_bytes())
    assert header.data_length == 4 and header.extra_lease_offset == 468 + 10
    assert header.write_enabler_nodeid == NODEID
    await write_mutable(disk_server, {0: ([], [], 0), 1: ([], [], 0)})
    assert not os.path.exists(os.path.dirname(share_path(disk_server, 0)))


@pytest_twisted.ensureDeferred
async def test_bad_write_enabler(server: StorageServer) -> None:
    await write_mutable(server, {0: ([], [(0, b"x")], None)})
    nodeid = base32.b2a(NODEID)
    with pytest.raises(errors.BadWriteEnablerError, match=f"recorded by nodeid '{nodeid}'"):
        await write_mutable(server, {0: ([], [(0, b"y")], None)}, we=b"W" * 32)
    assert await server.slot_readv(SI, [0], [(0, 1)]) == {0: [b"x"]}


@pytest_twisted.ensureDeferred
async def test_unsupported_test_operator(server: StorageServer) -> None:
    with pytest.raises(errors.BadTestVectorError, match="only b'eq'"):
        await write_mutable(server, {0: ([(0, 1, b"gt", b"")], [(0, b"x")], None)})


@pytest_twisted.ensureDeferred
async def test_mutable_write_past_the_maximum_changes_nothing(server: StorageServer) -> None:
    await write_mutable(server, {0: ([], [(0, b"keep")], None)})
    with pytest.raises(errors.MutableTooLargeError, match="outside the allowed share size"):
        await write_mutable(server, {0: ([], [(0, b"lost"), (69105 * 10**12, b"x")], None)})
    assert await server.slot_readv(SI, [0], [(0, 10)]) == {0: [b"keep"]}


@pytest_twisted.ensureDeferred
async def test_mutable_lease_slots_overflow(server: StorageServer) -> None:
    await write_mutable(server, {0: ([], [(0, b"x" * 50)], None)})
    for index in range(6):
        await server.add_lease(SI, bytes([index]) * 32, CANCEL)
    assert len(await leases(server, 0)) == 7
    # Growing the data moves the extra leases along with it.
    await write_mutable(server, {0: ([], [(100, b"y" * 10)], None)})
    assert len(await leases(server, 0)) == 7
    assert await server.slot_readv(SI, [0], [(0, 200)]) == {0: [b"x" * 50 + b"\x00" * 50 + b"y" * 10]}


@pytest_twisted.ensureDeferred
async def test_corruption_advisory(disk_server: StorageServer) -> None:
    await upload(disk_server, b"data", (2,))
    await disk_server.advise_corrupt_share(b"immutable", SI, 2, b"block hash mismatch")
    await disk_server.advise_corrupt_share(b"immutable", SI, 7, b"not held: ignored")
    corruption_dir = disk(disk_server).corruption_dir
    reports = os.listdir(corruption_dir)
    assert len(reports) == 1 and reports[0].endswith(f"--{SI_B32}-2")
    assert reports[0].startswith("2023-11-14T221320.000000--")
    text = Path(corruption_dir, reports[0]).read_text()
    assert "report: Share Corruption\ntype: immutable\n" in text
    assert f"storage_index: {SI_B32}\nshare_number: 2\n" in text and "block hash mismatch" in text


@pytest_twisted.ensureDeferred
async def test_corruption_advisory_in_memory(clock: Clock) -> None:
    backend = MemoryBackend()
    server = StorageServer(backend, NODEID, clock=clock)
    await upload(server, b"data", (2,))
    await server.advise_corrupt_share(b"immutable", SI, 2, b"block hash mismatch")
    await server.advise_corrupt_share(b"immutable", SI, 7, b"not held: ignored")
    assert [(a.shnum, a.reason, a.reported_at) for a in backend.advisories] == [
        (2, b"block hash mismatch", clock.seconds())
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("1G", 10**9), ("1GiB", 2**30), ("100MB", 10**8), ("1MiB", 2**20), ("512k", 512000), ("1234", 1234), ("2 TB", 2 * 10**12)],
)
def test_abbreviated_sizes(text: str, value: int) -> None:
    assert parse_abbreviated_size(text) == value


def test_bad_abbreviated_size() -> None:
    with pytest.raises(SizeError, match="not a size"):
        parse_abbreviated_size("lots")


@pytest_twisted.ensureDeferred
async def test_disk_errors_are_clear_and_leave_nothing_partial(
    disk_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    server = disk_server
    _, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 100)
    await writers[0].write(0, b"x" * 10)
    real_open = builtins.open

    def full_disk(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "+" in mode or "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", full_disk)
    with pytest.raises(errors.DiskError, match="No space left on device"):
        await writers[0].write(10, b"y" * 10)
    with pytest.raises(errors.DiskError, match=f"share {SI_B32}-0: No space left on device"):
        await write_mutable(server, {0: ([], [(0, b"data")], None)})
    monkeypatch.undo()
    assert writers[0].finished
    assert await server.get_buckets(SI) == {}
    assert not os.path.exists(os.path.join(disk(server).storage_dir, "shares", "incoming", SI_B32[:2]))
    # The server keeps serving.
    await upload(server, b"after the disk recovered")
    assert await (await server.get_buckets(SI))[0].read(0, 100) == b"after the disk recovered"


@pytest_twisted.ensureDeferred
async def test_a_full_memory_backend_fails_like_a_full_disk(clock: Clock) -> None:
    backend = MemoryBackend(capacity=150)
    server = StorageServer(backend, NODEID, clock=clock)
    _, writers = await server.allocate_buckets(SI, RENEW, CANCEL, {0}, 100)
    await writers[0].write(0, b"x" * 100)
    await server.slot_testv_and_readv_and_writev(b"\x02" * 16, (WE, RENEW, CANCEL), {0: ([], [(0, b"m" * 40)], None)}, [])
    with pytest.raises(errors.DiskError, match="no space left"):
        await server.slot_testv_and_readv_and_writev(
            b"\x02" * 16, (WE, RENEW, CANCEL), {0: ([], [(40, b"m" * 40)], None)}, []
        )
    await writers[0].abort()
    assert backend.incoming == set() and backend.space().free == 110


# What Tahoe 1.20's layout makes of one fixed history of requests: sha256 prefixes of every
# share file, recorded from the storage code before the backend seam existed.
GOLDEN_SHARE_FILES = {
    "ae/aeaqcaibaeaqcaibaeaqcaibae/0": "1d4d1feadac03cb1",
    "ae/aeaqcaibaeaqcaibaeaqcaibae/3": "ffacc107d4288f31",
    "ai/aibaeaqcaibaeaqcaibaeaqcai/0": "47949e21ada9eb11",
}


@pytest_twisted.ensureDeferred
async def test_disk_files_are_byte_identical_to_before(disk_server: StorageServer, clock: Clock) -> None:
    s, si2 = disk_server, b"\x02" * 16
    _, writers = await s.allocate_buckets(SI, RENEW, CANCEL, {0, 3}, 100)
    for shnum, writer in writers.items():
        await writer.write(0, bytes([shnum]) * 60)
        await writer.write(60, b"t" * 30)
        await writer.close()
    clock.advance(10)
    await (await s.allocate_buckets(SI, b"R" * 32, b"C" * 32, {0, 5}, 100))[1][5].abort()
    await s.add_lease(SI, b"A" * 32, b"B" * 32)
    clock.advance(10)
    await s.renew_lease(SI, RENEW)

    async def testv(tw: dict) -> None:  # type: ignore[type-arg]
        await s.slot_testv_and_readv_and_writev(si2, (WE, RENEW, CANCEL), tw, [])

    await testv({0: ([], [(0, b"hello"), (20, b"world")], None), 1: ([], [(0, b"x" * 30)], None)})
    for index in range(6):
        clock.advance(1)
        await s.add_lease(si2, bytes([index + 1]) * 32, CANCEL)
    await testv({0: ([(0, 5, b"eq", b"hello")], [(200, b"grown")], None)})
    await testv({0: ([], [], 100), 1: ([], [], 0)})
    clock.advance(5)
    await s.renew_lease(si2, bytes([3]) * 32)
    shares = Path(disk(s).shares_dir)
    found = {
        str(p.relative_to(shares)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(shares.rglob("*"))
        if p.is_file()
    }
    assert found == GOLDEN_SHARE_FILES
