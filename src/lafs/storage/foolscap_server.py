"""The storage server on the wire: foolscap Referenceables with Tahoe's RemoteInterfaces.

The server's methods are coroutines; each ``remote_*`` hands foolscap a
Deferred for one, which foolscap waits on before answering.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from foolscap.api import Referenceable
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from lafs.interfaces import RIBucketReader, RIBucketWriter, RIStorageServer
from lafs.storage.immutable import BucketReader, BucketWriter
from lafs.storage.server import StorageServer

log = Logger()


@implementer(RIBucketWriter)
class FoolscapBucketWriter(Referenceable):
    """One share being uploaded; aborted if the uploader's connection drops before close()."""

    def __init__(self, writer: BucketWriter, canary: Any) -> None:
        self._writer = writer
        self._canary = canary
        self._disconnect_marker = None
        if canary is not None and hasattr(canary, "notifyOnDisconnect"):
            self._disconnect_marker = canary.notifyOnDisconnect(self._disconnected)

    def _disconnected(self) -> None:
        self._disconnect_marker = None
        Deferred.fromCoroutine(self._writer.abort()).addErrback(
            lambda failure: log.failure("aborting the upload of a disconnected client failed", failure)
        )

    def _forget_canary(self) -> None:
        if self._disconnect_marker is not None:
            try:
                self._canary.dontNotifyOnDisconnect(self._disconnect_marker)
            except Exception:
                pass
            self._disconnect_marker = None

    def remote_write(self, offset: int, data: bytes) -> Deferred[None]:
        return Deferred.fromCoroutine(self._writer.write(offset, data))

    def remote_close(self) -> Deferred[None]:
        self._forget_canary()
        return Deferred.fromCoroutine(self._writer.close())

    def remote_abort(self) -> Deferred[None]:
        self._forget_canary()
        return Deferred.fromCoroutine(self._writer.abort())


@implementer(RIBucketReader)
class FoolscapBucketReader(Referenceable):
    def __init__(self, server: StorageServer, reader: BucketReader) -> None:
        self._server = server
        self._reader = reader

    def remote_read(self, offset: int, length: int) -> Deferred[bytes]:
        return Deferred.fromCoroutine(self._reader.read(offset, length))

    def remote_advise_corrupt_share(self, reason: bytes) -> Deferred[None]:
        reader = self._reader
        return Deferred.fromCoroutine(
            self._server.advise_corrupt_share(b"immutable", reader.storage_index, reader.shnum, reason)
        )


@implementer(RIStorageServer)
class FoolscapStorageServer(Referenceable):
    """Adapts a StorageServer to ``RIStorageServer.tahoe.allmydata.com``."""

    def __init__(self, server: StorageServer) -> None:
        self._server = server

    def remote_get_version(self) -> dict[bytes, Any]:
        return self._server.get_version()

    def remote_allocate_buckets(
        self,
        storage_index: bytes,
        renew_secret: bytes,
        cancel_secret: bytes,
        sharenums: Iterable[int],
        allocated_size: int,
        canary: Any,
    ) -> Deferred[tuple[set[int], dict[int, FoolscapBucketWriter]]]:
        async def allocate() -> tuple[set[int], dict[int, FoolscapBucketWriter]]:
            already, writers = await self._server.allocate_buckets(
                storage_index, renew_secret, cancel_secret, sharenums, allocated_size
            )
            return already, {shnum: FoolscapBucketWriter(writer, canary) for shnum, writer in writers.items()}

        return Deferred.fromCoroutine(allocate())

    def remote_add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> Deferred[None]:
        # RIStorageServer's add_lease answers None, whether or not there were shares.
        added = Deferred.fromCoroutine(self._server.add_lease(storage_index, renew_secret, cancel_secret))
        return added.addCallback(lambda _: None)

    def remote_get_buckets(self, storage_index: bytes) -> Deferred[dict[int, FoolscapBucketReader]]:
        async def get() -> dict[int, FoolscapBucketReader]:
            readers = await self._server.get_buckets(storage_index)
            return {shnum: FoolscapBucketReader(self._server, reader) for shnum, reader in readers.items()}

        return Deferred.fromCoroutine(get())

    def remote_slot_readv(self, storage_index: bytes, shares: list[int], readv: list[tuple[int, int]]) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._server.slot_readv(storage_index, shares, readv))

    def remote_slot_testv_and_readv_and_writev(
        self, storage_index: bytes, secrets: Any, tw_vectors: Any, r_vector: Any
    ) -> Deferred[Any]:
        return Deferred.fromCoroutine(
            self._server.slot_testv_and_readv_and_writev(storage_index, secrets, tw_vectors, r_vector)
        )

    def remote_advise_corrupt_share(
        self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes
    ) -> Deferred[None]:
        return Deferred.fromCoroutine(self._server.advise_corrupt_share(share_type, storage_index, shnum, reason))
