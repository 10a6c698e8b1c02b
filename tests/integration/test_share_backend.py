"""The ShareBackend contract, checked on every backend: the disk one and the memory one.

Each backend fixture also says how to make its medium full and how to see
what an upload left behind, so the failure paths are checked too.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted

from lafs.core import base32
from lafs.core.containers import LeaseInfo
from lafs.core.hashes import hashed_lease_secret
from lafs.storage import errors
from lafs.storage.backend import (
    NEW_CONTAINER_VERSION,
    CorruptionAdvisory,
    ShareBackend,
    ShareKind,
    ShareLeases,
    SpaceStats,
)
from lafs.storage.disk import DiskBackend
from lafs.storage.memory import MemoryBackend

SI = b"\x05" * 16
OTHER_SI = b"\x06" * 16
NODEID = b"n" * 20
WE = b"w" * 32


def lease(n: int, nodeid: bytes | None = None) -> LeaseInfo:
    return LeaseInfo(1, hashed_lease_secret(bytes([n]) * 32), hashed_lease_secret(b"c" * 32), 1_700_000_000 + n, nodeid)


@attrs.define
class Subject:
    backend: ShareBackend
    fill: Callable[[], None]
    """Make every later write fail as on a full medium."""
    leftovers: Callable[[], list[Any]]
    """What remains of uploads that never committed."""
    advisories: Callable[[], list[str]]
    """The corruption reports recorded, as text."""


@pytest.fixture(params=["disk", "memory"])
def subject(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Subject:
    if request.param == "memory":
        memory = MemoryBackend()

        def fill_memory() -> None:
            memory.capacity = memory.used

        return Subject(
            memory,
            fill_memory,
            lambda: list(memory.incoming),
            lambda: [a.reason.decode() for a in memory.advisories],
        )
    backend = DiskBackend.open(str(tmp_path / "storage"))
    real_open = builtins.open

    def full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "+" in mode or "w" in mode or "a" in mode:
            raise OSError(28, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    return Subject(
        backend,
        lambda: monkeypatch.setattr(builtins, "open", full_disk),
        lambda: [p for p in Path(backend.incoming_dir).rglob("*")],
        lambda: [p.read_text() for p in Path(backend.corruption_dir).iterdir()],
    )


async def finished_share(backend: ShareBackend, data: bytes, shnum: int = 0, si: bytes = SI) -> None:
    incoming = await backend.create_incoming(si, shnum, len(data))
    await incoming.write(0, data)
    await incoming.commit(lease(0))


# --- incoming immutable shares ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_incoming_share_is_invisible_until_committed(subject: Subject) -> None:
    backend = subject.backend
    assert await backend.list_shares(SI) == {}
    incoming = await backend.create_incoming(SI, 3, 10)
    assert incoming.allocated_size == 10
    await incoming.write(0, b"01234")
    await incoming.write(5, b"56789")
    assert await backend.list_shares(SI) == {}
    await incoming.commit(lease(7))
    assert await backend.list_shares(SI) == {3: ShareKind.IMMUTABLE}
    assert await backend.list_shares(OTHER_SI) == {}
    assert await backend.read_share(SI, 3, 0, 10) == b"0123456789"
    leases = await backend.get_leases(SI, 3)
    assert leases.container_version == NEW_CONTAINER_VERSION and leases.leases == (lease(7),)
    assert subject.leftovers() == []


@pytest_twisted.ensureDeferred
async def test_unwritten_bytes_of_a_share_are_zero(subject: Subject) -> None:
    incoming = await subject.backend.create_incoming(SI, 0, 8)
    await incoming.write(2, b"ab")
    await incoming.commit(lease(0))
    assert await subject.backend.read_share(SI, 0, 0, 100) == b"\x00\x00ab\x00\x00\x00\x00"


@pytest_twisted.ensureDeferred
async def test_writes_past_the_allocated_size_are_refused(subject: Subject) -> None:
    incoming = await subject.backend.create_incoming(SI, 0, 10)
    with pytest.raises(errors.DataTooLargeError, match="runs past the allocated size 10"):
        await incoming.write(8, b"abc")
    with pytest.raises(errors.DataTooLargeError, match="negative offset"):
        await incoming.write(-1, b"a")
    await incoming.write(7, b"abc")  # exactly to the end is fine
    await incoming.commit(lease(0))
    assert await subject.backend.read_share(SI, 0, 7, 10) == b"abc"


@pytest_twisted.ensureDeferred
async def test_overlapping_writes_must_agree(subject: Subject) -> None:
    incoming = await subject.backend.create_incoming(SI, 0, 30)
    await incoming.write(0, b"aaaaa")
    await incoming.write(10, b"bbbbb")
    await incoming.write(3, b"aa\x00\x00\x00\x00\x00bb")  # overlaps both with the same bytes
    with pytest.raises(errors.ConflictingWriteError, match=r"write at offset 5 changes bytes 5\.\.12 already written"):
        await incoming.write(5, b"\x00" * 5 + b"XX")
    with pytest.raises(errors.ConflictingWriteError):
        await incoming.write(14, b"Z")
    await incoming.write(15, b"c")  # right after a written range: no overlap
    await incoming.commit(lease(0))
    assert await subject.backend.read_share(SI, 0, 0, 16) == b"aaaaa" + b"\x00" * 5 + b"bbbbbc"


@pytest_twisted.ensureDeferred
async def test_a_closed_share_takes_no_more_calls(subject: Subject) -> None:
    aborted = await subject.backend.create_incoming(SI, 0, 10)
    await aborted.write(0, b"x")
    await aborted.abort()
    await aborted.abort()  # again: nothing to do
    with pytest.raises(errors.BucketClosedError, match="already closed or aborted"):
        await aborted.commit(lease(0))
    with pytest.raises(errors.BucketClosedError):
        await aborted.write(1, b"y")
    assert await subject.backend.list_shares(SI) == {}
    assert subject.leftovers() == []
    committed = await subject.backend.create_incoming(SI, 1, 1)
    await committed.write(0, b"z")
    await committed.commit(lease(0))
    with pytest.raises(errors.BucketClosedError):
        await committed.commit(lease(0))
    with pytest.raises(errors.BucketClosedError):
        await committed.write(0, b"z")
    await committed.abort()  # a finished share stays
    assert await subject.backend.read_share(SI, 1, 0, 1) == b"z"


@pytest_twisted.ensureDeferred
async def test_reads_are_truncated_at_the_end_of_the_data(subject: Subject) -> None:
    await finished_share(subject.backend, b"0123456789")
    read = subject.backend.read_share
    assert await read(SI, 0, 8, 100) == b"89"
    assert await read(SI, 0, 10, 1) == b""
    assert await read(SI, 0, 1000, 1) == b""
    assert await read(SI, 0, 3, 0) == b""
    assert await read(SI, 0, -1, 5) == b""


@pytest_twisted.ensureDeferred
async def test_unknown_shares_are_named_in_the_error(subject: Subject) -> None:
    backend = subject.backend
    calls: list[Callable[[], Any]] = [
        lambda: backend.read_share(SI, 4, 0, 1),
        lambda: backend.get_leases(SI, 4),
        lambda: backend.put_leases(SI, 4, []),
        lambda: backend.delete_share(SI, 4),
        lambda: backend.mutable_write_enabler(SI, 4),
        lambda: backend.write_mutable(SI, 4, [(0, b"x")], None),
    ]
    for call in calls:
        with pytest.raises(errors.NoSuchShareError, match="share aucqkbifaucqkbifaucqkbifau-4 does not exist"):
            await call()


# --- mutable shares --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mutable_share_holds_its_write_enabler(subject: Subject) -> None:
    backend = subject.backend
    await backend.create_mutable(SI, 2, NODEID, WE)
    assert await backend.list_shares(SI) == {2: ShareKind.MUTABLE}
    record = await backend.mutable_write_enabler(SI, 2)
    assert (record.nodeid, record.write_enabler) == (NODEID, WE)
    assert WE not in repr(record).encode()
    assert await backend.read_share(SI, 2, 0, 10) == b""
    assert (await backend.get_leases(SI, 2)).leases == ()


@pytest_twisted.ensureDeferred
async def test_mutable_writes_fill_holes_with_zeros_and_truncate(subject: Subject) -> None:
    backend = subject.backend
    await backend.create_mutable(SI, 0, NODEID, WE)
    await backend.write_mutable(SI, 0, [(0, b"head"), (10, b"tail")], None)
    assert await backend.read_share(SI, 0, 0, 100) == b"head" + b"\x00" * 6 + b"tail"
    await backend.write_mutable(SI, 0, [(2, b"AD")], None)  # in place, inside the data
    assert await backend.read_share(SI, 0, 0, 4) == b"heAD"
    await backend.write_mutable(SI, 0, [], 3)
    assert await backend.read_share(SI, 0, 0, 100) == b"heA"
    await backend.write_mutable(SI, 0, [(6, b"!")], 100)  # a longer new_length does not extend
    assert await backend.read_share(SI, 0, 0, 100) == b"heA\x00\x00\x00!"
    await backend.write_mutable(SI, 0, [(0, b"0123456789")], 2)  # writes first, then the cut
    assert await backend.read_share(SI, 0, 0, 100) == b"01"


@pytest_twisted.ensureDeferred
async def test_an_immutable_share_is_not_a_mutable_one(subject: Subject) -> None:
    await finished_share(subject.backend, b"data")
    with pytest.raises(errors.StorageError, match="is not a mutable share"):
        await subject.backend.mutable_write_enabler(SI, 0)
    with pytest.raises(errors.StorageError, match="is not a mutable share"):
        await subject.backend.write_mutable(SI, 0, [(0, b"x")], None)


# --- leases ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_lease_records_round_trip_on_immutable_shares(subject: Subject) -> None:
    backend = subject.backend
    await finished_share(backend, b"payload")
    await backend.put_leases(SI, 0, [lease(0), lease(1), lease(2)])
    assert (await backend.get_leases(SI, 0)).leases == (lease(0), lease(1), lease(2))
    await backend.put_leases(SI, 0, [lease(2)])
    assert (await backend.get_leases(SI, 0)).leases == (lease(2),)
    # Lease records never spill into the share data.
    assert await backend.read_share(SI, 0, 0, 1000) == b"payload"


@pytest_twisted.ensureDeferred
async def test_lease_records_round_trip_on_mutable_shares(subject: Subject) -> None:
    backend = subject.backend
    await backend.create_mutable(SI, 0, NODEID, WE)
    await backend.write_mutable(SI, 0, [(0, b"m" * 20)], None)
    many = [lease(n, NODEID) for n in range(7)]  # four slots and three extra records
    await backend.put_leases(SI, 0, many)
    assert (await backend.get_leases(SI, 0)).leases == tuple(many)
    await backend.write_mutable(SI, 0, [(500, b"grown")], None)
    assert (await backend.get_leases(SI, 0)).leases == tuple(many)
    await backend.put_leases(SI, 0, many[:2])
    assert (await backend.get_leases(SI, 0)).leases == tuple(many[:2])
    assert await backend.read_share(SI, 0, 0, 20) == b"m" * 20
    assert await backend.read_share(SI, 0, 495, 100) == b"\x00" * 5 + b"grown"


@pytest_twisted.ensureDeferred
async def test_update_leases_changes_them_in_one_step_or_leaves_them(subject: Subject) -> None:
    backend = subject.backend
    await finished_share(backend, b"payload")
    await backend.create_mutable(SI, 1, NODEID, WE)
    await backend.write_mutable(SI, 1, [(0, b"m" * 20)], None)
    nodeids = {0: None, 1: NODEID}  # immutable lease records carry no node ID
    for shnum, nodeid in nodeids.items():
        initial = (await backend.get_leases(SI, shnum)).leases  # what the upload's commit left
        seen: list[tuple[LeaseInfo, ...]] = []

        def add_one(current: ShareLeases, nodeid: bytes | None = nodeid, seen: list[Any] = seen) -> list[LeaseInfo]:
            seen.append(current.leases)
            return [*current.leases, lease(len(current.leases), nodeid)]

        for _ in range(6):  # past the mutable container's four slots
            assert await backend.update_leases(SI, shnum, add_one)
        expected = initial + tuple(lease(n, nodeid) for n in range(len(initial), len(initial) + 6))
        assert seen[5] == expected[:-1]
        assert (await backend.get_leases(SI, shnum)).leases == expected
        assert not await backend.update_leases(SI, shnum, lambda current: None)
        assert (await backend.get_leases(SI, shnum)).leases == expected
        assert await backend.update_leases(SI, shnum, lambda current: list(current.leases[-2:]))
        assert (await backend.get_leases(SI, shnum)).leases == expected[-2:]
    assert await backend.read_share(SI, 0, 0, 1000) == b"payload"
    assert await backend.read_share(SI, 1, 0, 1000) == b"m" * 20
    with pytest.raises(errors.NoSuchShareError):
        await backend.update_leases(SI, 7, lambda current: None)
    assert (await backend.get_leases(SI, 0)).kind is ShareKind.IMMUTABLE
    assert (await backend.get_leases(SI, 1)).kind is ShareKind.MUTABLE
    assert await backend.share_numbers(SI) == sorted(await backend.list_shares(SI)) == [0, 1]
    assert await backend.share_numbers(OTHER_SI) == []


# --- deletion, space, advisories -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_delete_removes_only_that_share(subject: Subject) -> None:
    backend = subject.backend
    await finished_share(backend, b"a", 0)
    await backend.create_mutable(SI, 1, NODEID, WE)
    await finished_share(backend, b"b", 0, OTHER_SI)
    await backend.delete_share(SI, 0)
    assert await backend.list_shares(SI) == {1: ShareKind.MUTABLE}
    await backend.delete_share(SI, 1)
    assert await backend.list_shares(SI) == {}
    assert await backend.read_share(OTHER_SI, 0, 0, 1) == b"b"
    # The share number is free for a new share.
    await finished_share(backend, b"again", 0)
    assert await backend.read_share(SI, 0, 0, 10) == b"again"


def test_space_is_reported_in_bytes(subject: Subject) -> None:
    space = subject.backend.space()
    assert isinstance(space, SpaceStats)
    if space.total is not None and space.free is not None:
        assert 0 <= space.free <= space.total


@pytest_twisted.ensureDeferred
async def test_corruption_advisories_are_kept(subject: Subject) -> None:
    await subject.backend.record_corruption_advisory(
        CorruptionAdvisory(b"immutable", SI, 3, b"hash mismatch in block 7", 1_700_000_000.5)
    )
    (report,) = subject.advisories()
    assert "hash mismatch in block 7" in report


# --- a failing medium ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_failed_write_can_be_aborted_and_leaves_nothing(subject: Subject) -> None:
    backend = subject.backend
    incoming = await backend.create_incoming(SI, 0, 100)
    await incoming.write(0, b"x" * 10)
    subject.fill()
    with pytest.raises(errors.DiskError, match=r"share (incoming )?aucqkbifaucqkbifaucqkbifau-0: [Nn]o space left"):
        await incoming.write(10, b"y" * 10)
    await incoming.abort()
    assert subject.leftovers() == []
    assert await backend.list_shares(SI) == {}


@pytest_twisted.ensureDeferred
async def test_a_full_medium_refuses_mutable_writes_with_disk_error(subject: Subject) -> None:
    backend = subject.backend
    await backend.create_mutable(SI, 0, NODEID, WE)
    await backend.write_mutable(SI, 0, [(0, b"before")], None)
    subject.fill()
    with pytest.raises(errors.DiskError, match="share aucqkbifaucqkbifaucqkbifau-0"):
        await backend.write_mutable(SI, 0, [(0, b"after the disk filled up")], None)
    assert await backend.read_share(SI, 0, 0, 100) == b"before"


@pytest_twisted.ensureDeferred
async def test_shares_can_be_read_while_the_medium_is_full(subject: Subject) -> None:
    await finished_share(subject.backend, b"still here")
    subject.fill()
    assert await subject.backend.read_share(SI, 0, 0, 100) == b"still here"
    assert await subject.backend.list_shares(SI) == {0: ShareKind.IMMUTABLE}


def test_disk_layout_names(tmp_path: Path) -> None:
    backend = DiskBackend.open(str(tmp_path / "s"))
    assert backend.share_path(SI, 7) == os.path.join(
        str(tmp_path / "s"), "shares", "au", "aucqkbifaucqkbifaucqkbifau", "7"
    )
    assert sorted(os.listdir(tmp_path / "s")) == ["corruption-advisories", "shares"]
    assert os.listdir(tmp_path / "s" / "shares") == ["incoming"]


# --- enumeration, for the crawlers -----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_storage_indexes_are_listed_by_prefix_in_base32_order(subject: Subject) -> None:
    backend = subject.backend
    same_prefix = [bytes([0x05, 0x40 + n]) + b"\x00" * 14 for n in (3, 1, 2)]
    assert len({base32.b2a(si)[:2] for si in same_prefix}) == 1
    for si in same_prefix:
        await finished_share(backend, b"x", 0, si)
    await backend.create_mutable(OTHER_SI, 2, NODEID, WE)
    prefix = base32.b2a(same_prefix[0])[:2]
    assert await backend.list_storage_indexes(prefix) == sorted(same_prefix, key=base32.b2a)
    assert await backend.list_storage_indexes(base32.b2a(OTHER_SI)[:2]) == [OTHER_SI]
    assert await backend.list_storage_indexes("zz") == []


@pytest_twisted.ensureDeferred
async def test_uploads_under_way_are_not_listed(subject: Subject) -> None:
    incoming = await subject.backend.create_incoming(SI, 0, 4)
    assert await subject.backend.list_storage_indexes(base32.b2a(SI)[:2]) == []
    await incoming.abort()


@pytest_twisted.ensureDeferred
async def test_a_bad_prefix_is_refused_by_name(subject: Subject) -> None:
    with pytest.raises(errors.BadStorageIndexError, match="'incoming' is not a storage-index prefix"):
        await subject.backend.list_storage_indexes("incoming")


@pytest_twisted.ensureDeferred
async def test_share_size_covers_at_least_the_data(subject: Subject) -> None:
    backend = subject.backend
    await finished_share(backend, b"d" * 1000, 1)
    size = await backend.share_size(SI, 1)
    assert size.size >= 1000 and size.disk >= 0
    with pytest.raises(errors.NoSuchShareError, match="does not exist"):
        await backend.share_size(SI, 2)
    assert await backend.bucket_disk_size(SI) >= 0
    assert await backend.bucket_disk_size(OTHER_SI) == 0
