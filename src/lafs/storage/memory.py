"""The memory share backend: the same contract as the disk one, with shares in Python objects.

For tests and throwaway grids.  ``capacity`` bounds the bytes of share data
held (finished and incoming); a write that would pass it fails with
``DiskError``, as a full disk does.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from lafs.core import base32
from lafs.core.containers import LeaseInfo
from lafs.storage.backend import (
    NEW_CONTAINER_VERSION,
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
from lafs.storage.paths import check_prefix


@attrs.define(eq=False)
class _Share:
    kind: ShareKind
    data: bytearray
    leases: list[LeaseInfo] = attrs.Factory(list)
    write_enabler: WriteEnablerRecord | None = None


def _share_name(storage_index: bytes, shnum: int) -> str:
    return f"{base32.b2a(storage_index)}-{shnum}"


class MemoryBackend:
    """Shares in a dict, keyed by storage index then share number."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.advisories: list[CorruptionAdvisory] = []
        self._shares: dict[bytes, dict[int, _Share]] = {}
        self._used = 0
        self.incoming: set[MemoryIncomingShare] = set()
        """Uploads under way, so tests can see that nothing partial is left."""

    @property
    def used(self) -> int:
        """Bytes of share data held, finished and incoming."""
        return self._used

    def space(self) -> SpaceStats:
        if self.capacity is None:
            return SpaceStats(total=None, free=None)
        return SpaceStats(total=self.capacity, free=max(self.capacity - self._used, 0))

    def _claim(self, more: int, what: str) -> None:
        if more > 0 and self.capacity is not None and self._used + more > self.capacity:
            raise DiskError(f"cannot {what}: no space left in the memory backend ({self.capacity} bytes)")
        self._used += more

    def _release(self, fewer: int) -> None:
        self._used -= fewer

    def _share(self, storage_index: bytes, shnum: int) -> _Share:
        share = self._shares.get(storage_index, {}).get(shnum)
        if share is None:
            raise NoSuchShareError(f"share {_share_name(storage_index, shnum)} does not exist")
        return share

    def _mutable(self, storage_index: bytes, shnum: int) -> _Share:
        share = self._share(storage_index, shnum)
        if share.kind is not ShareKind.MUTABLE:
            raise StorageError(f"share {_share_name(storage_index, shnum)} is not a mutable share")
        return share

    async def share_numbers(self, storage_index: bytes) -> list[int]:
        return sorted(self._shares.get(storage_index, {}))

    async def list_shares(self, storage_index: bytes) -> dict[int, ShareKind]:
        return {shnum: share.kind for shnum, share in sorted(self._shares.get(storage_index, {}).items())}

    async def list_storage_indexes(self, prefix: str) -> list[bytes]:
        check_prefix(prefix)
        named = sorted((base32.b2a(si), si) for si in self._shares)
        return [si for name, si in named if name.startswith(prefix)]

    async def share_size(self, storage_index: bytes, shnum: int) -> ShareSize:
        size = len(self._share(storage_index, shnum).data)
        return ShareSize(size=size, disk=size)

    async def bucket_disk_size(self, storage_index: bytes) -> int:
        return 0

    async def create_incoming(self, storage_index: bytes, shnum: int, allocated_size: int) -> MemoryIncomingShare:
        incoming = MemoryIncomingShare(self, storage_index, shnum, allocated_size)
        self.incoming.add(incoming)
        return incoming

    def _finish(self, incoming: MemoryIncomingShare, share: _Share | None) -> None:
        self.incoming.discard(incoming)
        if share is not None:
            self._shares.setdefault(incoming.storage_index, {})[incoming.shnum] = share

    async def read_share(self, storage_index: bytes, shnum: int, offset: int, length: int) -> bytes:
        data = self._share(storage_index, shnum).data
        if offset < 0 or length < 0:
            return b""
        return bytes(data[offset : offset + length])

    async def create_mutable(self, storage_index: bytes, shnum: int, nodeid: bytes, write_enabler: bytes) -> None:
        record = WriteEnablerRecord(nodeid, write_enabler)
        self._shares.setdefault(storage_index, {})[shnum] = _Share(ShareKind.MUTABLE, bytearray(), write_enabler=record)

    async def mutable_write_enabler(self, storage_index: bytes, shnum: int) -> WriteEnablerRecord:
        record = self._mutable(storage_index, shnum).write_enabler
        assert record is not None  # every mutable _Share is made with one
        return record

    async def write_mutable(
        self, storage_index: bytes, shnum: int, datav: Sequence[tuple[int, bytes]], new_length: int | None
    ) -> None:
        data = self._mutable(storage_index, shnum).data
        growth = max((offset + len(piece) for offset, piece in datav), default=0) - len(data)
        self._claim(max(growth, 0), f"write mutable share {_share_name(storage_index, shnum)}")
        for offset, piece in datav:
            if offset > len(data):
                data.extend(bytes(offset - len(data)))
            data[offset : offset + len(piece)] = piece
        if new_length is not None and new_length < len(data):
            self._release(len(data) - new_length)
            del data[new_length:]

    async def get_leases(self, storage_index: bytes, shnum: int) -> ShareLeases:
        share = self._share(storage_index, shnum)
        return ShareLeases(NEW_CONTAINER_VERSION, tuple(share.leases), share.kind)

    async def put_leases(self, storage_index: bytes, shnum: int, leases: Sequence[LeaseInfo]) -> None:
        self._share(storage_index, shnum).leases = list(leases)

    async def update_leases(self, storage_index: bytes, shnum: int, change: LeaseChange) -> bool:
        share = self._share(storage_index, shnum)
        leases = change(ShareLeases(NEW_CONTAINER_VERSION, tuple(share.leases), share.kind))
        if leases is None:
            return False
        share.leases = list(leases)
        return True

    async def delete_share(self, storage_index: bytes, shnum: int) -> None:
        share = self._share(storage_index, shnum)
        bucket = self._shares[storage_index]
        del bucket[shnum]
        if not bucket:
            del self._shares[storage_index]
        self._release(len(share.data))

    async def record_corruption_advisory(self, advisory: CorruptionAdvisory) -> None:
        self.advisories.append(advisory)


class MemoryIncomingShare:
    def __init__(self, backend: MemoryBackend, storage_index: bytes, shnum: int, allocated_size: int) -> None:
        self._backend = backend
        self.storage_index = storage_index
        self.shnum = shnum
        self._allocated_size = allocated_size
        self._data = bytearray()
        self._written = WrittenRanges()
        self._closed = False

    @property
    def allocated_size(self) -> int:
        return self._allocated_size

    async def write(self, offset: int, data: bytes) -> None:
        check_incoming_write(self._closed, self._allocated_size, offset, len(data))
        end = offset + len(data)
        buffer = self._data
        for start, stop in self._written.overlapping(offset, end):
            if buffer[start:stop] != data[start - offset : stop - offset]:
                raise ConflictingWriteError(f"write at offset {offset} changes bytes {start}..{stop} already written")
        if end > len(buffer):
            self._backend._claim(end - len(buffer), f"write share {_share_name(self.storage_index, self.shnum)}")
            if offset > len(buffer):
                buffer.extend(bytes(offset - len(buffer)))
        buffer[offset:end] = data
        self._written.add(offset, end)

    async def commit(self, lease: LeaseInfo) -> None:
        if self._closed:
            raise BucketClosedError("cannot close: this share is already closed or aborted")
        missing = self._allocated_size - len(self._data)
        self._backend._claim(missing, f"finish share {_share_name(self.storage_index, self.shnum)}")
        self._data.extend(bytes(missing))
        self._closed = True
        self._backend._finish(self, _Share(ShareKind.IMMUTABLE, self._data, [lease]))

    async def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._backend._release(len(self._data))
        self._data = bytearray()
        self._backend._finish(self, None)
