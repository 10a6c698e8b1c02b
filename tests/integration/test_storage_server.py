"""The storage server's methods and every error path, on a real disk (facts brief §4.7, §5.6, §7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
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
from lafs.storage.immutable import ImmutableShare
from lafs.storage.mutable import MutableShare
from lafs.storage.server import STORAGE_PROTOCOL_V1, StorageServer

SI = b"\x01" * 16
SI_B32 = base32.b2a(SI)
RENEW, CANCEL = b"r" * 32, b"c" * 32
NODEID = b"n" * 20
WE = b"w" * 32


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture
def server(tmp_path: Path, clock: Clock) -> StorageServer:
    return StorageServer(str(tmp_path / "storage"), NODEID, clock=clock)


def share_path(server: StorageServer, shnum: int, si: bytes = SI) -> str:
    encoded = base32.b2a(si)
    return os.path.join(server.storage_dir, "shares", encoded[:2], encoded, str(shnum))


def upload(server: StorageServer, data: bytes, shnums: tuple[int, ...] = (0,)) -> None:
    _, writers = server.allocate_buckets(SI, RENEW, CANCEL, shnums, len(data))
    for writer in writers.values():
        writer.write(0, data)
        writer.close()


def test_immutable_round_trip_and_layout(server: StorageServer, clock: Clock) -> None:
    already, writers = server.allocate_buckets(SI, RENEW, CANCEL, {0, 1}, 100)
    assert already == set() and set(writers) == {0, 1}
    incoming = os.path.join(server.storage_dir, "shares", "incoming", SI_B32[:2], SI_B32, "0")
    assert os.path.exists(incoming)
    writers[0].write(0, b"a" * 60)
    writers[0].write(60, b"b" * 40)
    assert server.get_buckets(SI) == {}
    writers[0].close()
    assert not os.path.exists(incoming)
    readers = server.get_buckets(SI)
    assert set(readers) == {0}
    assert readers[0].read(0, 100) == b"a" * 60 + b"b" * 40
    assert readers[0].read(90, 50) == b"b" * 10
    assert readers[0].read(200, 5) == b""
    raw = Path(share_path(server, 0)).read_bytes()
    header = ImmutableContainerHeader.unpack(raw)
    assert (header.version, header.legacy_data_length, header.num_leases) == (2, 100, 1)
    assert len(raw) == IMMUTABLE_HEADER.size + 100 + 72
    lease = ImmutableShare(share_path(server, 0)).leases()[0]
    assert lease.owner_num == 0
    assert lease.renew_secret == hashed_lease_secret(RENEW)
    assert lease.expiration_time == int(clock.seconds()) + LEASE_DURATION
    writers[1].abort()
    assert set(server.get_buckets(SI)) == {0}
    assert not os.path.exists(os.path.join(server.storage_dir, "shares", "incoming", SI_B32[:2]))


def test_alreadygot_lists_every_finished_share(server: StorageServer) -> None:
    upload(server, b"x" * 10, (0, 3))
    already, writers = server.allocate_buckets(SI, b"R" * 32, b"C" * 32, {0, 5}, 10)
    assert already == {0, 3}
    assert set(writers) == {5}
    # The second uploader's secrets became a second lease on the existing shares.
    assert len(ImmutableShare(share_path(server, 3)).leases()) == 2
    # A share being written by someone else is in neither set.
    already, writers = server.allocate_buckets(SI, RENEW, CANCEL, {5}, 10)
    assert 5 not in already and writers == {}


def test_write_errors(server: StorageServer) -> None:
    _, writers = server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10)
    writer = writers[0]
    with pytest.raises(errors.DataTooLargeError, match="past the allocated size 10"):
        writer.write(5, b"123456")
    writer.write(0, b"hello")
    writer.write(2, b"llo")
    with pytest.raises(errors.ConflictingWriteError):
        writer.write(0, b"HELLO")
    writer.close()
    with pytest.raises(errors.BucketClosedError, match="already closed"):
        writer.close()
    with pytest.raises(errors.BucketClosedError):
        writer.write(0, b"x")


@pytest.mark.parametrize("bad", [b"short", b"x" * 17, b""])
def test_malformed_storage_index(server: StorageServer, bad: bytes) -> None:
    with pytest.raises(errors.BadStorageIndexError, match="16 bytes"):
        server.allocate_buckets(bad, RENEW, CANCEL, {0}, 10)
    with pytest.raises(errors.BadStorageIndexError):
        server.get_buckets(bad)
    with pytest.raises(errors.BadStorageIndexError):
        server.slot_readv(bad, [], [(0, 10)])


def test_bad_share_numbers(server: StorageServer) -> None:
    with pytest.raises(errors.BadShareNumberError):
        server.allocate_buckets(SI, RENEW, CANCEL, {256}, 10)
    with pytest.raises(errors.BadShareNumberError):
        server.allocate_buckets(SI, RENEW, CANCEL, {-1}, 10)


def test_reserved_space_and_readonly(tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StorageServer, "disk_available", lambda self: 1000)
    tight = StorageServer(str(tmp_path / "tight"), NODEID, clock=clock, reserved_space=850)
    assert tight.available_space() == 150
    version = tight.get_version()[STORAGE_PROTOCOL_V1]
    assert version[b"available-space"] == 150
    assert version[b"maximum-immutable-share-size"] == 150
    # Each open allocation counts against the space left: two of 60 fit in 150, not three.
    _, writers = tight.allocate_buckets(SI, RENEW, CANCEL, {0, 1, 2}, 60)
    assert len(writers) == 2
    for writer in writers.values():
        writer.abort()
    assert len(tight.allocate_buckets(SI, RENEW, CANCEL, {0, 1, 2}, 60)[1]) == 2
    readonly = StorageServer(str(tmp_path / "ro"), NODEID, clock=clock, readonly=True)
    assert readonly.available_space() == 0
    assert readonly.allocate_buckets(SI, RENEW, CANCEL, {0}, 1) == (set(), {})
    full = StorageServer(str(tmp_path / "full"), NODEID, clock=clock, reserved_space=5000)
    assert full.get_version()[STORAGE_PROTOCOL_V1][b"available-space"] == 0


def test_version_dict(server: StorageServer) -> None:
    version = server.get_version()
    assert version[b"application-version"] == b"tahoe-lafs/1.20.0"
    v1 = version[STORAGE_PROTOCOL_V1]
    assert v1[b"maximum-mutable-share-size"] == 69105000000000000
    assert v1[b"tolerates-immutable-read-overrun"] is True
    assert v1[b"fills-holes-with-zero-bytes"] is True


def test_restart_discards_incoming_and_keeps_finished(tmp_path: Path, clock: Clock) -> None:
    first = StorageServer(str(tmp_path / "s"), NODEID, clock=clock)
    upload(first, b"done", (0,))
    _, writers = first.allocate_buckets(SI, RENEW, CANCEL, {1}, 10)
    writers[1].write(0, b"half")
    second = StorageServer(str(tmp_path / "s"), NODEID, clock=clock)
    assert set(second.get_buckets(SI)) == {0}
    assert not os.path.exists(os.path.join(second.storage_dir, "shares", "incoming", SI_B32[:2]))


def test_inactive_writer_is_aborted(server: StorageServer, clock: Clock) -> None:
    _, writers = server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10)
    clock.advance(29 * 60)
    writers[0].write(0, b"x")
    clock.advance(29 * 60)
    assert not writers[0].finished
    clock.advance(2 * 60)
    assert writers[0].finished
    assert server.allocate_buckets(SI, RENEW, CANCEL, {0}, 10)[1]


def test_leases(server: StorageServer, clock: Clock) -> None:
    upload(server, b"data", (0,))
    server.add_lease(SI, b"R" * 32, b"C" * 32)
    leases = ImmutableShare(share_path(server, 0)).leases()
    assert [lease.owner_num for lease in leases] == [0, 1]
    clock.advance(1000)
    server.renew_lease(SI, RENEW)
    assert ImmutableShare(share_path(server, 0)).leases()[0].expiration_time == int(clock.seconds()) + LEASE_DURATION
    with pytest.raises(errors.NoSuchLeaseError, match="renew secret"):
        server.renew_lease(SI, b"?" * 32)
    server.add_lease(b"\x09" * 16, RENEW, CANCEL)  # no shares: silently nothing


def write_mutable(server: StorageServer, tw: dict, read: list | None = None, we: bytes = WE) -> tuple:  # type: ignore[type-arg]
    return server.slot_testv_and_readv_and_writev(SI, (we, RENEW, CANCEL), tw, read or [])


def test_mutable_create_read_and_test_and_set(server: StorageServer) -> None:
    ok, reads = write_mutable(server, {0: ([(0, 1, b"eq", b"")], [(0, b"version one")], None)}, [(0, 7)])
    assert ok and reads == {}
    assert server.slot_readv(SI, [], [(0, 7), (8, 100)]) == {0: [b"version", b"one"]}
    ok, reads = write_mutable(server, {0: ([(0, 7, b"eq", b"wrong!!")], [(0, b"XXXX")], None)}, [(0, 7)])
    assert not ok and reads == {0: [b"version"]}
    assert server.slot_readv(SI, [0], [(0, 11)]) == {0: [b"version one"]}
    ok, _ = write_mutable(server, {0: ([(0, 7, b"eq", b"version")], [(0, b"VERSION"), (20, b"!")], None)})
    assert ok
    assert server.slot_readv(SI, [0], [(0, 100)]) == {0: [b"VERSION one" + b"\x00" * 9 + b"!"]}
    share = MutableShare(share_path(server, 0))
    assert share.header.write_enabler_nodeid == NODEID
    assert [lease.owner_num for lease in share.leases()] == [1]
    assert server.slot_readv(b"\x07" * 16, [], [(0, 1)]) == {}


def test_mutable_truncate_and_delete(server: StorageServer) -> None:
    write_mutable(server, {0: ([], [(0, b"0123456789")], None), 1: ([], [(0, b"abc")], None)})
    write_mutable(server, {0: ([], [], 4)})
    assert server.slot_readv(SI, [0], [(0, 100)]) == {0: [b"0123"]}
    header = MutableContainerHeader.unpack(Path(share_path(server, 0)).read_bytes())
    assert header.data_length == 4 and header.extra_lease_offset == 468 + 10
    write_mutable(server, {0: ([], [], 0), 1: ([], [], 0)})
    assert not os.path.exists(os.path.dirname(share_path(server, 0)))


def test_bad_write_enabler(server: StorageServer) -> None:
    write_mutable(server, {0: ([], [(0, b"x")], None)})
    nodeid = base32.b2a(NODEID)
    with pytest.raises(errors.BadWriteEnablerError, match=f"recorded by nodeid '{nodeid}'"):
        write_mutable(server, {0: ([], [(0, b"y")], None)}, we=b"W" * 32)
    assert server.slot_readv(SI, [0], [(0, 1)]) == {0: [b"x"]}


def test_unsupported_test_operator(server: StorageServer) -> None:
    with pytest.raises(errors.BadTestVectorError, match="only b'eq'"):
        write_mutable(server, {0: ([(0, 1, b"gt", b"")], [(0, b"x")], None)})


def test_mutable_lease_slots_overflow(server: StorageServer) -> None:
    write_mutable(server, {0: ([], [(0, b"x" * 50)], None)})
    for index in range(6):
        server.add_lease(SI, bytes([index]) * 32, CANCEL)
    assert len(MutableShare(share_path(server, 0)).leases()) == 7
    # Growing the data moves the extra leases along with it.
    write_mutable(server, {0: ([], [(100, b"y" * 10)], None)})
    share = MutableShare(share_path(server, 0))
    assert len(share.leases()) == 7
    assert share.read(0, 200) == b"x" * 50 + b"\x00" * 50 + b"y" * 10


def test_corruption_advisory(server: StorageServer) -> None:
    upload(server, b"data", (2,))
    server.advise_corrupt_share(b"immutable", SI, 2, b"block hash mismatch")
    server.advise_corrupt_share(b"immutable", SI, 7, b"not held: ignored")
    reports = os.listdir(server.corruption_dir)
    assert len(reports) == 1 and reports[0].endswith(f"--{SI_B32}-2")
    text = Path(server.corruption_dir, reports[0]).read_text()
    assert "report: Share Corruption\ntype: immutable\n" in text
    assert f"storage_index: {SI_B32}\nshare_number: 2\n" in text and "block hash mismatch" in text


@pytest.mark.parametrize(
    ("text", "value"),
    [("1G", 10**9), ("1GiB", 2**30), ("100MB", 10**8), ("1MiB", 2**20), ("512k", 512000), ("1234", 1234), ("2 TB", 2 * 10**12)],
)
def test_abbreviated_sizes(text: str, value: int) -> None:
    assert parse_abbreviated_size(text) == value


def test_bad_abbreviated_size() -> None:
    with pytest.raises(SizeError, match="not a size"):
        parse_abbreviated_size("lots")


def test_disk_errors_are_clear_and_leave_nothing_partial(server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    _, writers = server.allocate_buckets(SI, RENEW, CANCEL, {0}, 100)
    writers[0].write(0, b"x" * 10)
    real_open = builtins.open

    def full_disk(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "+" in mode or "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", full_disk)
    with pytest.raises(errors.DiskError, match="No space left on device"):
        writers[0].write(10, b"y" * 10)
    with pytest.raises(errors.DiskError, match="mutable share 0"):
        write_mutable(server, {0: ([], [(0, b"data")], None)})
    monkeypatch.undo()
    assert writers[0].finished
    assert server.get_buckets(SI) == {}
    assert not os.path.exists(os.path.join(server.storage_dir, "shares", "incoming", SI_B32[:2]))
    # The server keeps serving.
    upload(server, b"after the disk recovered")
    assert server.get_buckets(SI)[0].read(0, 100) == b"after the disk recovered"
