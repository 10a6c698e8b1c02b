"""The storage server: Tahoe's storage protocol over a share backend.

Methods mirror ``RIStorageServer`` with plain Python values; the foolscap
adapter in ``foolscap_server`` puts them on the wire.  Where shares live is
the backend's business (``lafs.storage.backend``); this module decides what
may be stored, which leases shares carry, and how much space is left.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

import lafs
from lafs.config import ExpirationSettings
from lafs.core import base32
from lafs.core.containers import (
    LEASE_DURATION,
    MAX_MUTABLE_SHARE_SIZE,
    LeaseInfo,
    secrets_match,
    stored_secret,
)
from lafs.storage import bucket_counter
from lafs.storage.backend import (
    NEW_CONTAINER_VERSION,
    CorruptionAdvisory,
    ShareBackend,
    ShareKind,
    ShareLeases,
)
from lafs.storage.bucket_counter import BucketCounter
from lafs.storage.disk import DiskBackend
from lafs.storage.errors import (
    BadTestVectorError,
    BadWriteEnablerError,
    MutableTooLargeError,
    NoSuchLeaseError,
    NoSuchShareError,
    StorageError,
)
from lafs.storage.immutable import BucketReader, BucketWriter
from lafs.storage.lease_checker import LeaseChecker
from lafs.storage.paths import check_share_number, check_storage_index

STORAGE_PROTOCOL_V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"
UNKNOWN_SPACE = 2**64
"""What Tahoe advertises when the backend cannot tell its free space."""

TestVector = Sequence[tuple[int, int, bytes, bytes]]
DataVector = Sequence[tuple[int, bytes]]
ReadVector = Sequence[tuple[int, int]]

log = Logger()


class StorageServer(service.MultiService):
    """Tahoe-LAFS 1.20's storage server, keeping its shares in ``backend``."""

    def __init__(
        self,
        backend: ShareBackend,
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
        self.backend = backend
        self.nodeid = nodeid
        self.reserved_space = reserved_space
        self.readonly = readonly
        self.discard_storage = discard_storage
        self.clock = clock
        # Bytes promised to uploads under way, per share; entries appear before the backend
        # is asked for the share, so a second upload of it is refused even mid-allocation.
        self._allocations: dict[tuple[bytes, int], int] = {}
        self._writers: dict[tuple[bytes, int], BucketWriter] = {}
        self._mutable_locks: dict[bytes, defer.DeferredLock] = {}
        self.bucket_counter: BucketCounter | None = None
        self.lease_checker: LeaseChecker | None = None

    @classmethod
    def on_disk(
        cls, storage_dir: str, nodeid: bytes, *, expiration: ExpirationSettings | None = None, **options: Any
    ) -> StorageServer:
        """A server over Tahoe's storage directory layout in ``storage_dir``, with its bucket
        counter and lease checker keeping their state there (as Tahoe does)."""
        server = cls(DiskBackend.open(storage_dir), nodeid, **options)
        server.add_crawlers(storage_dir, expiration or ExpirationSettings())
        return server

    def add_crawlers(self, state_dir: str, expiration: ExpirationSettings, **crawler_options: Any) -> None:
        """Walk this server's shares with a bucket counter and a lease checker, child services
        of this one, their state files in ``state_dir``.  ``crawler_options`` go to both
        (``slow_start``, ``buckets_per_slice``, ... as ``ShareCrawler`` takes them)."""
        self.bucket_counter = BucketCounter(
            self.backend, os.path.join(state_dir, bucket_counter.STATE_FILE), clock=self.clock, **crawler_options
        )
        self.bucket_counter.setName("bucket-counter")
        self.bucket_counter.setServiceParent(self)
        self.lease_checker = LeaseChecker(self.backend, state_dir, expiration, clock=self.clock, **crawler_options)
        self.lease_checker.setName("lease-checker")
        self.lease_checker.setServiceParent(self)

    def crawler_status(self) -> dict[str, Any]:
        """The crawler sections of Tahoe's ``/storage?t=json`` (``bucket-counter``,
        ``lease-checker``, ``lease-checker-progress``), plus ``expiration`` (the configured rule)
        and ``total-buckets`` for the status page; None where this server runs no crawlers."""
        counter, checker = self.bucket_counter, self.lease_checker
        return {
            "bucket-counter": None if counter is None else counter.status(),
            "total-buckets": None if counter is None else counter.bucket_count(),
            "bucket-counter-progress": None if counter is None else counter.progress(),
            "lease-checker": None if checker is None else checker.status(),
            "lease-checker-progress": None if checker is None else checker.progress(),
            "expiration": None if checker is None else checker.expiration_summary(),
        }

    def status_json(self) -> dict[str, Any]:
        """Tahoe 1.20's ``/storage?t=json``: ``stats`` (space, in Tahoe's ``storage_server.*`` keys),
        ``bucket-counter``, ``lease-checker``, ``lease-checker-progress``; plus lafs's
        ``bucket-counter-progress`` and ``expiration``.  Space the backend cannot tell is None."""
        space = self.backend.space()
        free_for_root = space.free_for_root if space.free_for_root is not None else space.free
        available = self.available_space()
        stats: dict[str, Any] = {
            "storage_server.allocated": sum(self._allocations.values()),
            "storage_server.reserved_space": self.reserved_space,
            "storage_server.disk_total": space.total,
            "storage_server.disk_used": (
                None if space.total is None or free_for_root is None else space.total - free_for_root
            ),
            "storage_server.disk_free_for_root": free_for_root,
            "storage_server.disk_free_for_nonroot": space.free,
            "storage_server.disk_avail": None if space.free is None else available,
            "storage_server.accepting_immutable_shares": int(not self.readonly and available > 0),
        }
        crawlers = self.crawler_status()
        data: dict[str, Any] = {"stats": stats}
        for key in ("bucket-counter", "lease-checker", "lease-checker-progress", "bucket-counter-progress", "expiration"):
            if crawlers[key] is not None:
                data[key] = crawlers[key]
        return data

    def stopService(self) -> Any:
        aborts = [defer.Deferred.fromCoroutine(writer.abort()) for writer in list(self._writers.values())]
        stopped = super().stopService()
        return defer.gatherResults([*aborts, defer.maybeDeferred(lambda: stopped)], consumeErrors=True)

    # --- space ---------------------------------------------------------------------------

    def available_space(self) -> int:
        """Bytes this server will accept: free space minus reserved space, 0 when read-only."""
        if self.readonly:
            return 0
        free = self.backend.space().free
        if free is None:
            return UNKNOWN_SPACE
        return max(free - self.reserved_space, 0)

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

    def _expiration(self) -> int:
        return int(self.clock.seconds()) + LEASE_DURATION

    # --- immutable -----------------------------------------------------------------------

    async def allocate_buckets(
        self,
        storage_index: bytes,
        renew_secret: bytes,
        cancel_secret: bytes,
        sharenums: Iterable[int],
        allocated_size: int,
    ) -> tuple[set[int], dict[int, BucketWriter]]:
        """Make writers for the requested shares this server lacks and has room for."""
        check_storage_index(storage_index)
        wanted = sorted({check_share_number(n) for n in sharenums})
        if allocated_size < 0:
            raise StorageError(f"allocated size must not be negative, got {allocated_size}")
        expiration = self._expiration()
        shares = await self.backend.list_shares(storage_index)
        already = {shnum for shnum, kind in shares.items() if kind is ShareKind.IMMUTABLE}
        for shnum in sorted(already):
            await self._add_or_renew_lease(storage_index, shnum, renew_secret, cancel_secret, 0, expiration)
        remaining = self.available_space() - sum(self._allocations.values())
        chosen = []
        for shnum in wanted:
            key = (storage_index, shnum)
            if shnum in shares or key in self._allocations or remaining < allocated_size:
                continue
            self._allocations[key] = allocated_size
            chosen.append(shnum)
            remaining -= allocated_size
        first_lease = LeaseInfo(
            0,
            stored_secret(NEW_CONTAINER_VERSION, renew_secret),
            stored_secret(NEW_CONTAINER_VERSION, cancel_secret),
            expiration,
        )
        writers: dict[int, BucketWriter] = {}
        try:
            for shnum in chosen:
                key = (storage_index, shnum)
                incoming = await self.backend.create_incoming(storage_index, shnum, allocated_size)
                writers[shnum] = self._writers[key] = BucketWriter(
                    incoming, first_lease, clock=self.clock, on_finish=self._writer_finished(key)
                )
        except BaseException:
            for shnum in chosen:
                if shnum not in writers:
                    self._allocations.pop((storage_index, shnum), None)
            for writer in writers.values():
                await writer.abort()
            raise
        return already, writers

    def _writer_finished(self, key: tuple[bytes, int]) -> Callable[[BucketWriter], None]:
        def finished(writer: BucketWriter) -> None:
            self._allocations.pop(key, None)
            self._writers.pop(key, None)

        return finished

    async def get_buckets(self, storage_index: bytes) -> dict[int, BucketReader]:
        check_storage_index(storage_index)
        shares = await self.backend.list_shares(storage_index)
        return {
            shnum: BucketReader(self.backend, storage_index, shnum)
            for shnum, kind in shares.items()
            if kind is ShareKind.IMMUTABLE
        }

    # --- leases --------------------------------------------------------------------------

    async def _add_or_renew_lease(
        self,
        storage_index: bytes,
        shnum: int,
        renew_secret: bytes,
        cancel_secret: bytes,
        owner_num: int,
        expiration: int,
    ) -> None:
        """A mutable share's new lease records this server's node ID, as Tahoe's do; an immutable one's none."""

        def add_or_renew(current: ShareLeases) -> list[LeaseInfo] | None:
            leases = _renewed(current, renew_secret, expiration)
            if leases is None:
                version = current.container_version
                nodeid = self.nodeid if current.kind is ShareKind.MUTABLE else None
                lease = LeaseInfo(
                    owner_num, stored_secret(version, renew_secret), stored_secret(version, cancel_secret), expiration, nodeid
                )
                leases = [*current.leases, lease]
            return leases if leases != list(current.leases) else None

        await self.backend.update_leases(storage_index, shnum, add_or_renew)

    async def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> bool:
        """Add or renew a lease on every share of the storage index; False when it has none."""
        check_storage_index(storage_index)
        expiration = self._expiration()
        found = False
        # By number only: each share is opened once, to update its leases (which tells its kind).
        for shnum in await self.backend.share_numbers(storage_index):
            try:
                await self._add_or_renew_lease(storage_index, shnum, renew_secret, cancel_secret, 1, expiration)
            except NoSuchShareError:
                continue  # deleted since the listing
            found = True
        return found

    async def renew_lease(self, storage_index: bytes, renew_secret: bytes) -> None:
        check_storage_index(storage_index)
        expiration = self._expiration()
        renewed = False

        def renew(current: ShareLeases) -> list[LeaseInfo] | None:
            nonlocal renewed
            leases = _renewed(current, renew_secret, expiration)
            if leases is None:
                return None
            renewed = True
            return leases if leases != list(current.leases) else None

        for shnum in await self.backend.list_shares(storage_index):
            await self.backend.update_leases(storage_index, shnum, renew)
        if not renewed:
            raise NoSuchLeaseError(
                f"no share of storage index {base32.b2a(storage_index)} has a lease with that renew secret"
            )

    # --- mutable -------------------------------------------------------------------------

    async def _mutable_shares(self, storage_index: bytes) -> list[int]:
        shares = await self.backend.list_shares(storage_index)
        return [shnum for shnum, kind in shares.items() if kind is ShareKind.MUTABLE]

    async def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> dict[int, list[bytes]]:
        check_storage_index(storage_index)
        found = await self._mutable_shares(storage_index)
        wanted = [check_share_number(n) for n in shares] or found
        read = self.backend.read_share
        return {
            shnum: [await read(storage_index, shnum, offset, length) for offset, length in readv]
            for shnum in wanted
            if shnum in found
        }

    async def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: Mapping[int, tuple[TestVector, DataVector, int | None]],
        read_vector: ReadVector,
    ) -> tuple[bool, dict[int, list[bytes]]]:
        check_storage_index(storage_index)
        # Test and write must not interleave with another writer of the same slot; a
        # backend may suspend between its calls.
        lock = self._mutable_locks.setdefault(storage_index, defer.DeferredLock())
        await lock.acquire()
        try:
            return await self._test_and_write(storage_index, secrets, tw_vectors, read_vector)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._mutable_locks.pop(storage_index, None)

    async def _test_and_write(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: Mapping[int, tuple[TestVector, DataVector, int | None]],
        read_vector: ReadVector,
    ) -> tuple[bool, dict[int, list[bytes]]]:
        write_enabler, renew_secret, cancel_secret = secrets
        backend = self.backend
        existing = await self._mutable_shares(storage_index)
        for shnum in existing:
            record = await backend.mutable_write_enabler(storage_index, shnum)
            if not hmac.compare_digest(record.write_enabler, write_enabler):
                raise BadWriteEnablerError(
                    f"The write enabler was recorded by nodeid '{base32.b2a(record.nodeid)}'."
                )
        for shnum in tw_vectors:
            check_share_number(shnum)
        passed = True
        for shnum, (testv, _, _) in tw_vectors.items():
            if not await self._test_vector_passes(storage_index, shnum if shnum in existing else None, testv):
                passed = False
                break
        read_data = {
            shnum: [await backend.read_share(storage_index, shnum, o, n) for o, n in read_vector] for shnum in existing
        }
        if not passed:
            return False, read_data
        # Checked before anything is written, so a bad write leaves every share as it was.
        for _, datav, _ in tw_vectors.values():
            for offset, data in datav:
                if offset < 0 or offset + len(data) > MAX_MUTABLE_SHARE_SIZE:
                    raise MutableTooLargeError(
                        f"mutable write to {offset}..{offset + len(data)} is outside the allowed share size"
                    )
        expiration = self._expiration()
        for shnum, (_, datav, new_length) in sorted(tw_vectors.items()):
            if new_length == 0:
                if shnum in existing:
                    await backend.delete_share(storage_index, shnum)
                continue
            if shnum not in existing:
                await backend.create_mutable(storage_index, shnum, self.nodeid, write_enabler)
            await backend.write_mutable(storage_index, shnum, datav, new_length)
            await self._add_or_renew_lease(storage_index, shnum, renew_secret, cancel_secret, 1, expiration)
        return True, read_data

    async def _test_vector_passes(self, storage_index: bytes, shnum: int | None, testv: TestVector) -> bool:
        for offset, length, operator, specimen in testv:
            if operator != b"eq":
                raise BadTestVectorError(f"test vector operator {operator!r} is not supported (only b'eq')")
            actual = b"" if shnum is None else await self.backend.read_share(storage_index, shnum, offset, length)
            if actual != specimen:
                return False
        return True

    # --- corruption reports ---------------------------------------------------------------

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        """Record a client's report of a corrupt share for the operator, if we hold that share."""
        check_storage_index(storage_index)
        check_share_number(shnum)
        if shnum not in await self.backend.list_shares(storage_index):
            return
        advisory = CorruptionAdvisory(share_type, storage_index, shnum, reason, self.clock.seconds())
        await self.backend.record_corruption_advisory(advisory)
        log.warn(
            "corrupt {kind} share {si}-{shnum} reported",
            kind=share_type.decode("utf-8", errors="replace"),
            si=base32.b2a(storage_index),
            shnum=shnum,
        )


def _renewed(current: ShareLeases, renew_secret: bytes, expiration: int) -> list[LeaseInfo] | None:
    """The leases with the one matching ``renew_secret`` extended to ``expiration`` (never shortened),
    or None when no lease matches."""
    leases = list(current.leases)
    for index, lease in enumerate(leases):
        if secrets_match(current.container_version, lease.renew_secret, renew_secret):
            if expiration > lease.expiration_time:
                leases[index] = attrs.evolve(lease, expiration_time=expiration)
            return leases
    return None
