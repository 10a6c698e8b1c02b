"""The storage server: Tahoe's disk layout, share containers, leases and space accounting.

Methods mirror ``RIStorageServer`` with plain Python values; the foolscap
adapter in ``foolscap_server`` puts them on the wire.  Disk operations are
small and synchronous, as in Tahoe.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.application import service
from twisted.logger import Logger

import lafs
from lafs.core import base32
from lafs.core.containers import (
    LEASE_DURATION,
    MAX_MUTABLE_SHARE_SIZE,
    is_mutable_container,
)
from lafs.storage.errors import BadTestVectorError, DiskError, NoSuchLeaseError, StorageError
from lafs.storage.immutable import BucketReader, BucketWriter, ImmutableShare
from lafs.storage.mutable import MutableShare
from lafs.storage.paths import (
    check_share_number,
    remove_empty_dirs,
    share_numbers_in,
    storage_index_to_dir,
)

STORAGE_PROTOCOL_V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"

TestVector = Sequence[tuple[int, int, bytes, bytes]]
DataVector = Sequence[tuple[int, bytes]]
ReadVector = Sequence[tuple[int, int]]

log = Logger()


class StorageServer(service.MultiService):
    """Stores shares under ``storage_dir`` exactly as Tahoe-LAFS 1.20 does."""

    def __init__(
        self,
        storage_dir: str,
        nodeid: bytes,
        *,
        reserved_space: int = 0,
        readonly: bool = False,
        clock: Any = None,
        discard_storage: bool = False,
    ) -> None:
        super().__init__()
        self.setName("storage")
        if clock is None:
            from twisted.internet import reactor as clock
        self.storage_dir = os.path.abspath(storage_dir)
        self.shares_dir = os.path.join(self.storage_dir, "shares")
        self.incoming_dir = os.path.join(self.shares_dir, "incoming")
        self.corruption_dir = os.path.join(self.storage_dir, "corruption-advisories")
        self.nodeid = nodeid
        self.reserved_space = reserved_space
        self.readonly = readonly
        self.discard_storage = discard_storage
        self.clock = clock
        self._active_writers: dict[tuple[bytes, int], BucketWriter] = {}
        os.makedirs(self.shares_dir, exist_ok=True)
        os.makedirs(self.corruption_dir, exist_ok=True)
        # Half-written shares from before a restart can never be finished: their writers are gone.
        shutil.rmtree(self.incoming_dir, ignore_errors=True)
        os.makedirs(self.incoming_dir, exist_ok=True)

    def stopService(self) -> Any:
        for writer in list(self._active_writers.values()):
            writer.abort()
        return super().stopService()

    # --- space ---------------------------------------------------------------------------

    def disk_available(self) -> int:
        stats = os.statvfs(self.storage_dir)
        return int(stats.f_bavail * stats.f_frsize)

    def available_space(self) -> int:
        """Bytes this server will accept: free disk minus reserved space, 0 when read-only."""
        if self.readonly:
            return 0
        return max(self.disk_available() - self.reserved_space, 0)

    def _allocated_but_unwritten(self) -> int:
        return sum(writer.allocated_size for writer in self._active_writers.values())

    def get_version(self) -> dict[bytes, Any]:
        available = self.available_space()
        return {
            STORAGE_PROTOCOL_V1: {
                b"maximum-immutable-share-size": available,
                b"maximum-mutable-share-size": MAX_MUTABLE_SHARE_SIZE,
                b"available-space": available,
                b"tolerates-immutable-read-overrun": True,
                b"delete-mutable-shares-with-zero-length-writev": True,
                b"fills-holes-with-zero-bytes": True,
                b"prevents-read-past-end-of-share-data": True,
            },
            b"application-version": lafs.APPLICATION_VERSION.encode("ascii"),
        }

    # --- paths ---------------------------------------------------------------------------

    def _bucket_dir(self, storage_index: bytes) -> str:
        return os.path.join(self.shares_dir, storage_index_to_dir(storage_index))

    def _incoming_dir(self, storage_index: bytes) -> str:
        return os.path.join(self.incoming_dir, storage_index_to_dir(storage_index))

    def _expiration(self) -> int:
        return int(self.clock.seconds()) + LEASE_DURATION

    def _shares(self, storage_index: bytes) -> list[tuple[int, str]]:
        bucket = self._bucket_dir(storage_index)
        return [(shnum, os.path.join(bucket, str(shnum))) for shnum in share_numbers_in(bucket)]

    def _immutable_shares(self, storage_index: bytes) -> list[tuple[int, ImmutableShare]]:
        found = []
        for shnum, path in self._shares(storage_index):
            if not _is_mutable_file(path):
                found.append((shnum, ImmutableShare(path)))
        return found

    def _mutable_shares(self, storage_index: bytes) -> dict[int, MutableShare]:
        return {shnum: MutableShare(path) for shnum, path in self._shares(storage_index) if _is_mutable_file(path)}

    # --- immutable -----------------------------------------------------------------------

    def allocate_buckets(
        self,
        storage_index: bytes,
        renew_secret: bytes,
        cancel_secret: bytes,
        sharenums: Iterable[int],
        allocated_size: int,
    ) -> tuple[set[int], dict[int, BucketWriter]]:
        """Make writers for the requested shares this server lacks and has room for."""
        bucket = self._bucket_dir(storage_index)
        wanted = sorted({check_share_number(n) for n in sharenums})
        if allocated_size < 0:
            raise StorageError(f"allocated size must not be negative, got {allocated_size}")
        expiration = self._expiration()
        already = set()
        for shnum, share in self._immutable_shares(storage_index):
            already.add(shnum)
            share.add_or_renew_lease(renew_secret, cancel_secret, 0, expiration)
        remaining = self.available_space() - self._allocated_but_unwritten()
        writers: dict[int, BucketWriter] = {}
        for shnum in wanted:
            if shnum in already or (storage_index, shnum) in self._active_writers:
                continue
            if remaining < allocated_size:
                continue
            incoming = os.path.join(self._incoming_dir(storage_index), str(shnum))
            writer = BucketWriter(
                incoming,
                os.path.join(bucket, str(shnum)),
                allocated_size,
                (renew_secret, cancel_secret, expiration),
                storage_root=self.storage_dir,
                clock=self.clock,
                on_finish=self._writer_finished(storage_index, shnum),
            )
            self._active_writers[(storage_index, shnum)] = writer
            writers[shnum] = writer
            remaining -= allocated_size
        return already, writers

    def _writer_finished(self, storage_index: bytes, shnum: int) -> Callable[[BucketWriter], None]:
        def finished(writer: BucketWriter) -> None:
            self._active_writers.pop((storage_index, shnum), None)

        return finished

    def get_buckets(self, storage_index: bytes) -> dict[int, BucketReader]:
        return {
            shnum: BucketReader(share, storage_index, shnum) for shnum, share in self._immutable_shares(storage_index)
        }

    # --- leases --------------------------------------------------------------------------

    def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        expiration = self._expiration()
        for _shnum, path in self._shares(storage_index):
            if _is_mutable_file(path):
                MutableShare(path).add_or_renew_lease(renew_secret, cancel_secret, expiration, self.nodeid)
            else:
                ImmutableShare(path).add_or_renew_lease(renew_secret, cancel_secret, 1, expiration)

    def renew_lease(self, storage_index: bytes, renew_secret: bytes) -> None:
        expiration = self._expiration()
        renewed = False
        for _shnum, path in self._shares(storage_index):
            share: MutableShare | ImmutableShare = MutableShare(path) if _is_mutable_file(path) else ImmutableShare(path)
            try:
                share.renew_lease(renew_secret, expiration)
                renewed = True
            except NoSuchLeaseError:
                continue
        if not renewed:
            raise NoSuchLeaseError(
                f"no share of storage index {base32.b2a(storage_index)} has a lease with that renew secret"
            )

    # --- mutable -------------------------------------------------------------------------

    def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> dict[int, list[bytes]]:
        found = self._mutable_shares(storage_index)
        wanted = [check_share_number(n) for n in shares] or sorted(found)
        return {
            shnum: [found[shnum].read(offset, length) for offset, length in readv] for shnum in wanted if shnum in found
        }

    def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: Mapping[int, tuple[TestVector, DataVector, int | None]],
        read_vector: ReadVector,
    ) -> tuple[bool, dict[int, list[bytes]]]:
        write_enabler, renew_secret, cancel_secret = secrets
        bucket = self._bucket_dir(storage_index)
        existing = self._mutable_shares(storage_index)
        for share in existing.values():
            share.check_write_enabler(write_enabler)
        for shnum in tw_vectors:
            check_share_number(shnum)
        passed = all(
            _test_vector_passes(existing.get(shnum), testv) for shnum, (testv, _, _) in tw_vectors.items()
        )
        read_data = {shnum: [share.read(o, n) for o, n in read_vector] for shnum, share in existing.items()}
        if not passed:
            return False, read_data
        expiration = self._expiration()
        for shnum, (_, datav, new_length) in sorted(tw_vectors.items()):
            path = os.path.join(bucket, str(shnum))
            if new_length == 0:
                if shnum in existing:
                    os.remove(path)
                    remove_empty_dirs(bucket, self.shares_dir)
                continue
            try:
                if shnum in existing:
                    share = existing[shnum]
                else:
                    os.makedirs(bucket, exist_ok=True)
                    share = MutableShare.create(path, self.nodeid, write_enabler)
                share.writev(list(datav), new_length)
                share.add_or_renew_lease(renew_secret, cancel_secret, expiration, self.nodeid)
            except OSError as e:
                raise DiskError(f"cannot write mutable share {shnum} to disk: {e.strerror or e}") from None
        return True, read_data

    # --- corruption reports ---------------------------------------------------------------

    def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        """Record a client's report of a corrupt share for the operator, if we hold that share."""
        check_share_number(shnum)
        if shnum not in dict(self._shares(storage_index)):
            return
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)
        stamp = now.strftime("%Y-%m-%dT%H%M%S.%f")
        si_text = base32.b2a(storage_index)
        path = os.path.join(self.corruption_dir, f"{stamp}--{si_text}-{shnum}")
        kind = share_type.decode("utf-8", errors="replace")
        with open(path, "w", encoding="utf-8") as f:
            f.write("report: Share Corruption\n")
            f.write(f"type: {kind}\n")
            f.write(f"storage_index: {si_text}\n")
            f.write(f"share_number: {shnum}\n\n")
            f.write(reason.decode("utf-8", errors="replace"))
            f.write("\n")
        log.warn("corrupt {kind} share {si}-{shnum} reported", kind=kind, si=si_text, shnum=shnum)


def _is_mutable_file(path: str) -> bool:
    with open(path, "rb") as f:
        return is_mutable_container(f.read(32))


def _test_vector_passes(share: MutableShare | None, testv: TestVector) -> bool:
    for offset, length, operator, specimen in testv:
        if operator != b"eq":
            raise BadTestVectorError(f"test vector operator {operator!r} is not supported (only b'eq')")
        actual = share.read(offset, length) if share is not None else b""
        if actual != specimen:
            return False
    return True

