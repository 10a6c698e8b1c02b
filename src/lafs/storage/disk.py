"""The disk share backend: Tahoe-LAFS 1.20's storage directory, byte for byte.

``<storage_dir>/shares/<2-char prefix>/<b32 SI>/<shnum>`` holds finished
shares as Tahoe containers (``lafs.core.containers``); uploads grow in
``shares/incoming/`` under the same names and are renamed into place when
they finish; reports go to ``corruption-advisories/``.  File operations are
small and synchronous, as in Tahoe: each call opens the share file once.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from collections.abc import Iterator, Sequence
from typing import BinaryIO, cast

from lafs.core import base32
from lafs.core.containers import (
    EXTRA_LEASE_COUNT,
    IMMUTABLE_HEADER,
    IMMUTABLE_LEASE,
    MUTABLE_DATA_OFFSET,
    MUTABLE_HEADER,
    MUTABLE_LEASE,
    MUTABLE_LEASE_SLOTS,
    ImmutableContainerHeader,
    LeaseInfo,
    MutableContainerHeader,
    is_mutable_container,
    mutable_lease_slot_offset,
    unpack_immutable_leases,
    unpack_mutable_leases,
)
from lafs.storage.backend import (
    CorruptionAdvisory,
    LeaseChange,
    ShareKind,
    ShareLeases,
    ShareSize,
    SpaceStats,
    WriteEnablerRecord,
    WrittenRanges,
    check_incoming_write,
)
from lafs.storage.errors import (
    BucketClosedError,
    ConflictingWriteError,
    DiskError,
    NoSuchShareError,
    StorageError,
)
from lafs.storage.paths import (
    bucket_names_in,
    check_prefix,
    remove_empty_dirs,
    share_numbers_in,
    storage_index_to_dir,
)

_EMPTY_SLOT = LeaseInfo(0, b"\x00" * 32, b"\x00" * 32, 0, b"\x00" * 20)


def _share_name(storage_index: bytes, shnum: int) -> str:
    return f"{base32.b2a(storage_index)}-{shnum}"


@contextlib.contextmanager
def _share_file(path: str, name: str, mode: str, buffering: int = -1) -> Iterator[BinaryIO]:
    """One share file, open; OS failures become storage errors that name the share.

    ``buffering=0`` for a few small reads and writes: no buffer to fill, and no
    isatty and seek system calls to set one up.
    """
    try:
        f = cast(BinaryIO, open(path, mode, buffering=buffering))
    except FileNotFoundError:
        raise NoSuchShareError(f"share {name} does not exist") from None
    except OSError as e:
        raise DiskError(f"cannot open share {name}: {e.strerror or e}") from None
    try:
        with f:
            yield f
    except OSError as e:
        action = "read" if mode == "rb" else "write"
        raise DiskError(f"cannot {action} share {name}: {e.strerror or e}") from None


def _read_header(f: BinaryIO) -> tuple[ShareKind, int, int]:
    """Kind, data offset and data length of the container open in ``f``."""
    prefix = f.read(MUTABLE_HEADER.size)
    if is_mutable_container(prefix):
        return ShareKind.MUTABLE, MUTABLE_DATA_OFFSET, MutableContainerHeader.unpack(prefix).data_length
    header = ImmutableContainerHeader.unpack(prefix[: IMMUTABLE_HEADER.size])
    return ShareKind.IMMUTABLE, IMMUTABLE_HEADER.size, header.data_length(os.fstat(f.fileno()).st_size)


class DiskBackend:
    """Shares in a Tahoe storage directory."""

    def __init__(self, storage_dir: str) -> None:
        self.storage_dir = os.path.abspath(storage_dir)
        self.shares_dir = os.path.join(self.storage_dir, "shares")
        self.incoming_dir = os.path.join(self.shares_dir, "incoming")
        self.corruption_dir = os.path.join(self.storage_dir, "corruption-advisories")

    @classmethod
    def open(cls, storage_dir: str) -> DiskBackend:
        """Make the directories, and drop uploads a previous run left unfinished (their writers are gone)."""
        backend = cls(storage_dir)
        os.makedirs(backend.shares_dir, exist_ok=True)
        os.makedirs(backend.corruption_dir, exist_ok=True)
        shutil.rmtree(backend.incoming_dir, ignore_errors=True)
        os.makedirs(backend.incoming_dir, exist_ok=True)
        return backend

    def share_path(self, storage_index: bytes, shnum: int) -> str:
        return os.path.join(self.shares_dir, storage_index_to_dir(storage_index), str(shnum))

    def _open(
        self, storage_index: bytes, shnum: int, mode: str, buffering: int = -1
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        return _share_file(self.share_path(storage_index, shnum), _share_name(storage_index, shnum), mode, buffering)

    def space(self) -> SpaceStats:
        stats = os.statvfs(self.storage_dir)
        return SpaceStats(
            total=int(stats.f_blocks * stats.f_frsize),
            free=int(stats.f_bavail * stats.f_frsize),
            free_for_root=int(stats.f_bfree * stats.f_frsize),
        )

    async def share_numbers(self, storage_index: bytes) -> list[int]:
        return share_numbers_in(os.path.join(self.shares_dir, storage_index_to_dir(storage_index)))

    async def list_shares(self, storage_index: bytes) -> dict[int, ShareKind]:
        found = {}
        for shnum in await self.share_numbers(storage_index):
            try:
                with self._open(storage_index, shnum, "rb", buffering=0) as f:
                    prefix = f.read(32)
            except NoSuchShareError:
                continue  # deleted since the listing
            found[shnum] = ShareKind.MUTABLE if is_mutable_container(prefix) else ShareKind.IMMUTABLE
        return found

    async def list_storage_indexes(self, prefix: str) -> list[bytes]:
        # incoming/ is not a prefix, so uploads under way are never walked.
        return [base32.a2b(name) for name in bucket_names_in(os.path.join(self.shares_dir, check_prefix(prefix)), prefix)]

    async def share_size(self, storage_index: bytes, shnum: int) -> ShareSize:
        name = _share_name(storage_index, shnum)
        try:
            stats = os.stat(self.share_path(storage_index, shnum))
        except FileNotFoundError:
            raise NoSuchShareError(f"share {name} does not exist") from None
        except OSError as e:
            raise DiskError(f"cannot look at share {name}: {e.strerror or e}") from None
        # st_blocks counts 512-byte units on every POSIX system, whatever the block size.
        return ShareSize(size=stats.st_size, disk=stats.st_blocks * 512)

    async def bucket_disk_size(self, storage_index: bytes) -> int:
        try:
            return os.stat(os.path.join(self.shares_dir, storage_index_to_dir(storage_index))).st_blocks * 512
        except OSError:
            return 0  # gone, or unreadable: nothing we can count

    # --- immutable --------------------------------------------------------------------------

    async def create_incoming(self, storage_index: bytes, shnum: int, allocated_size: int) -> DiskIncomingShare:
        relative = os.path.join(storage_index_to_dir(storage_index), str(shnum))
        incoming = os.path.join(self.incoming_dir, relative)
        name = _share_name(storage_index, shnum)
        try:
            os.makedirs(os.path.dirname(incoming), exist_ok=True)
            with open(incoming, "wb") as f:
                f.write(ImmutableContainerHeader.new(allocated_size).pack())
        except OSError as e:
            remove_empty_dirs(os.path.dirname(incoming), self.incoming_dir)
            raise DiskError(f"cannot create incoming share {name}: {e.strerror or e}") from None
        return DiskIncomingShare(self, incoming, os.path.join(self.shares_dir, relative), name, allocated_size)

    async def read_share(self, storage_index: bytes, shnum: int, offset: int, length: int) -> bytes:
        with self._open(storage_index, shnum, "rb") as f:
            _kind, data_offset, data_length = _read_header(f)
            end = min(offset + length, data_length)
            if offset < 0 or length < 0 or offset >= end:
                return b""
            f.seek(data_offset + offset)
            return f.read(end - offset)

    # --- mutable ----------------------------------------------------------------------------

    async def create_mutable(self, storage_index: bytes, shnum: int, nodeid: bytes, write_enabler: bytes) -> None:
        header = MutableContainerHeader.new(nodeid, write_enabler)
        path = self.share_path(storage_index, shnum)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as e:
            raise DiskError(f"cannot create mutable share {_share_name(storage_index, shnum)}: {e.strerror or e}") from None
        with _share_file(path, _share_name(storage_index, shnum), "wb") as f:
            f.write(header.pack() + b"\x00" * (MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size) + EXTRA_LEASE_COUNT.pack(0))

    def _mutable_header(self, f: BinaryIO, storage_index: bytes, shnum: int) -> MutableContainerHeader:
        prefix = f.read(MUTABLE_HEADER.size)
        if not is_mutable_container(prefix):
            raise StorageError(f"share {_share_name(storage_index, shnum)} is not a mutable share")
        return MutableContainerHeader.unpack(prefix)

    async def mutable_write_enabler(self, storage_index: bytes, shnum: int) -> WriteEnablerRecord:
        with self._open(storage_index, shnum, "rb") as f:
            header = self._mutable_header(f, storage_index, shnum)
        return WriteEnablerRecord(header.write_enabler_nodeid, header.write_enabler)

    async def write_mutable(
        self, storage_index: bytes, shnum: int, datav: Sequence[tuple[int, bytes]], new_length: int | None
    ) -> None:
        with self._open(storage_index, shnum, "r+b") as f:
            header = self._mutable_header(f, storage_index, shnum)
            for offset, data in datav:
                end = offset + len(data)
                if end > header.extra_lease_offset - MUTABLE_DATA_OFFSET:
                    header = _grow(f, header, end)
                if offset > header.data_length:
                    f.seek(MUTABLE_DATA_OFFSET + header.data_length)
                    f.write(b"\x00" * (offset - header.data_length))
                f.seek(MUTABLE_DATA_OFFSET + offset)
                f.write(data)
                if end > header.data_length:
                    header = _with_data_length(header, end)
            if new_length is not None and new_length < header.data_length:
                header = _with_data_length(header, new_length)
            f.seek(0)
            f.write(header.pack())

    # --- leases -----------------------------------------------------------------------------

    async def get_leases(self, storage_index: bytes, shnum: int) -> ShareLeases:
        with self._open(storage_index, shnum, "rb", buffering=0) as f:
            return _read_leases(f, _lease_header(f))

    async def put_leases(self, storage_index: bytes, shnum: int, leases: Sequence[LeaseInfo]) -> None:
        with self._open(storage_index, shnum, "r+b", buffering=0) as f:
            _write_leases(f, _lease_header(f), leases)

    async def update_leases(self, storage_index: bytes, shnum: int, change: LeaseChange) -> bool:
        with self._open(storage_index, shnum, "r+b", buffering=0) as f:
            header = _lease_header(f)
            leases = change(_read_leases(f, header))
            if leases is None:
                return False
            _write_leases(f, header, leases)
            return True

    # --- the rest ---------------------------------------------------------------------------

    async def delete_share(self, storage_index: bytes, shnum: int) -> None:
        path = self.share_path(storage_index, shnum)
        try:
            os.remove(path)
        except FileNotFoundError:
            raise NoSuchShareError(f"share {_share_name(storage_index, shnum)} does not exist") from None
        except OSError as e:
            raise DiskError(f"cannot delete share {_share_name(storage_index, shnum)}: {e.strerror or e}") from None
        remove_empty_dirs(os.path.dirname(path), self.shares_dir)

    async def record_corruption_advisory(self, advisory: CorruptionAdvisory) -> None:
        now = datetime.datetime.fromtimestamp(advisory.reported_at, datetime.UTC)
        si_text = base32.b2a(advisory.storage_index)
        path = os.path.join(self.corruption_dir, f"{now.strftime('%Y-%m-%dT%H%M%S.%f')}--{si_text}-{advisory.shnum}")
        text = (
            "report: Share Corruption\n"
            f"type: {advisory.share_type.decode('utf-8', errors='replace')}\n"
            f"storage_index: {si_text}\n"
            f"share_number: {advisory.shnum}\n\n"
            f"{advisory.reason.decode('utf-8', errors='replace')}\n"
        )
        try:
            os.makedirs(self.corruption_dir, exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise DiskError(f"cannot record a corruption advisory in {self.corruption_dir}: {e.strerror or e}") from None


class DiskIncomingShare:
    """An upload growing in ``shares/incoming/``; ``commit`` renames it into the bucket."""

    def __init__(self, backend: DiskBackend, incoming_path: str, final_path: str, name: str, allocated_size: int) -> None:
        self._backend = backend
        self.incoming_path = incoming_path
        self.final_path = final_path
        self._name = name
        self._allocated_size = allocated_size
        self._written = WrittenRanges()
        self._closed = False

    @property
    def allocated_size(self) -> int:
        return self._allocated_size

    async def write(self, offset: int, data: bytes) -> None:
        check_incoming_write(self._closed, self._allocated_size, offset, len(data))
        end = offset + len(data)
        with _share_file(self.incoming_path, f"incoming {self._name}", "r+b") as f:
            for start, stop in self._written.overlapping(offset, end):
                f.seek(IMMUTABLE_HEADER.size + start)
                if f.read(stop - start) != data[start - offset : stop - offset]:
                    raise ConflictingWriteError(
                        f"write at offset {offset} changes bytes {start}..{stop} already written"
                    )
            f.seek(IMMUTABLE_HEADER.size + offset)
            f.write(data)
        self._written.add(offset, end)

    async def commit(self, lease: LeaseInfo) -> None:
        if self._closed:
            raise BucketClosedError("cannot close: this share is already closed or aborted")
        with _share_file(self.incoming_path, f"incoming {self._name}", "r+b") as f:
            # Share data occupies exactly the allocated size; the lease follows it.
            data_end = IMMUTABLE_HEADER.size + self._allocated_size
            f.truncate(data_end)
            f.write(ImmutableContainerHeader.new(self._allocated_size, num_leases=1).pack())
            f.seek(data_end)
            f.write(lease.pack_immutable())
        try:
            os.makedirs(os.path.dirname(self.final_path), exist_ok=True)
            os.rename(self.incoming_path, self.final_path)
        except OSError as e:
            raise DiskError(f"cannot move share {self._name} into place: {e.strerror or e}") from None
        self._closed = True
        self._tidy()

    async def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            os.remove(self.incoming_path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise DiskError(f"cannot remove incoming share {self._name}: {e.strerror or e}") from None
        finally:
            self._tidy()

    def _tidy(self) -> None:
        remove_empty_dirs(os.path.dirname(self.incoming_path), self._backend.incoming_dir)


# --- mutable container details ------------------------------------------------------------


def _with_data_length(header: MutableContainerHeader, length: int) -> MutableContainerHeader:
    return MutableContainerHeader(
        header.magic, header.write_enabler_nodeid, header.write_enabler, length, header.extra_lease_offset
    )


def _lease_header(f: BinaryIO) -> MutableContainerHeader | ImmutableContainerHeader:
    """The container header of the share open in ``f`` (at its start): where its leases are."""
    prefix = f.read(MUTABLE_HEADER.size)
    if is_mutable_container(prefix):
        return MutableContainerHeader.unpack(prefix)
    return ImmutableContainerHeader.unpack(prefix[: IMMUTABLE_HEADER.size])


def _read_leases(f: BinaryIO, header: MutableContainerHeader | ImmutableContainerHeader) -> ShareLeases:
    if isinstance(header, MutableContainerHeader):
        slots = _mutable_slots(f)
        leases = [lease for lease in slots if not lease.is_empty_slot()] + _extra_leases(f, header)
        return ShareLeases(header.version, tuple(leases), ShareKind.MUTABLE)
    f.seek(header.lease_offset(os.fstat(f.fileno()).st_size))
    raw = f.read(header.num_leases * IMMUTABLE_LEASE.size)
    return ShareLeases(header.version, tuple(unpack_immutable_leases(raw)))


def _write_leases(f: BinaryIO, header: MutableContainerHeader | ImmutableContainerHeader, leases: Sequence[LeaseInfo]) -> None:
    """Replace the share's leases (``header`` as `_lease_header` read it)."""
    if isinstance(header, MutableContainerHeader):
        _put_mutable_leases(f, header, leases)
        return
    lease_offset = header.lease_offset(os.fstat(f.fileno()).st_size)
    f.seek(0)
    f.write(ImmutableContainerHeader(header.version, header.legacy_data_length, len(leases)).pack())
    f.seek(lease_offset)
    f.write(b"".join(lease.pack_immutable() for lease in leases))
    f.truncate()


def _mutable_slots(f: BinaryIO) -> list[LeaseInfo]:
    f.seek(MUTABLE_HEADER.size)
    return unpack_mutable_leases(f.read(MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size))


def _extra_leases(f: BinaryIO, header: MutableContainerHeader) -> list[LeaseInfo]:
    f.seek(header.extra_lease_offset)
    raw = f.read(EXTRA_LEASE_COUNT.size)
    count = EXTRA_LEASE_COUNT.unpack(raw)[0] if len(raw) == EXTRA_LEASE_COUNT.size else 0
    return unpack_mutable_leases(f.read(count * MUTABLE_LEASE.size))


def _grow(f: BinaryIO, header: MutableContainerHeader, new_size: int) -> MutableContainerHeader:
    """Move the extra-lease block to just past ``new_size`` bytes of data, zeroing its old place."""
    extra = _extra_leases(f, header)
    f.seek(header.extra_lease_offset)
    f.write(b"\x00" * (EXTRA_LEASE_COUNT.size + len(extra) * MUTABLE_LEASE.size))
    new_offset = MUTABLE_DATA_OFFSET + new_size
    f.seek(new_offset)
    f.write(EXTRA_LEASE_COUNT.pack(len(extra)) + b"".join(lease.pack_mutable() for lease in extra))
    f.truncate()
    return MutableContainerHeader(
        header.magic, header.write_enabler_nodeid, header.write_enabler, header.data_length, new_offset
    )


def _put_mutable_leases(f: BinaryIO, header: MutableContainerHeader, leases: Sequence[LeaseInfo]) -> None:
    """Leases that were in slots keep their slots; new ones take the first free slots, as in Tahoe,
    and the rest go to the extra-lease block after the data."""
    slots = _mutable_slots(f)
    order = [i for i, s in enumerate(slots) if not s.is_empty_slot()] + [i for i, s in enumerate(slots) if s.is_empty_slot()]
    new_slots = [_EMPTY_SLOT] * MUTABLE_LEASE_SLOTS
    for slot, lease in zip(order, leases, strict=False):
        new_slots[slot] = lease
    f.seek(mutable_lease_slot_offset(0))
    f.write(b"".join(lease.pack_mutable() for lease in new_slots))
    extra = leases[MUTABLE_LEASE_SLOTS:]
    f.seek(header.extra_lease_offset)
    f.write(EXTRA_LEASE_COUNT.pack(len(extra)) + b"".join(lease.pack_mutable() for lease in extra))
    f.truncate()
