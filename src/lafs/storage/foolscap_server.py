"""The storage server on the wire: foolscap Referenceables with Tahoe's RemoteInterfaces."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from foolscap.api import Referenceable
from zope.interface import implementer

from lafs.interfaces import RIBucketReader, RIBucketWriter, RIStorageServer
from lafs.storage.immutable import BucketReader, BucketWriter
from lafs.storage.server import StorageServer


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
        self._writer.abort()

    def _forget_canary(self) -> None:
        if self._disconnect_marker is not None:
            try:
                self._canary.dontNotifyOnDisconnect(self._disconnect_marker)
            except Exception:
                pass
            self._disconnect_marker = None

    def remote_write(self, offset: int, data: bytes) -> None:
        self._writer.write(offset, data)

    def remote_close(self) -> None:
        self._forget_canary()
        self._writer.close()

    def remote_abort(self) -> None:
        self._forget_canary()
        self._writer.abort()


@implementer(RIBucketReader)
class FoolscapBucketReader(Referenceable):
    def __init__(self, server: StorageServer, reader: BucketReader) -> None:
        self._server = server
        self._reader = reader

    def remote_read(self, offset: int, length: int) -> bytes:
        return self._reader.read(offset, length)

    def remote_advise_corrupt_share(self, reason: bytes) -> None:
        self._server.advise_corrupt_share(b"immutable", self._reader.storage_index, self._reader.shnum, reason)


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
    ) -> tuple[set[int], dict[int, FoolscapBucketWriter]]:
        already, writers = self._server.allocate_buckets(
            storage_index, renew_secret, cancel_secret, sharenums, allocated_size
        )
        return already, {shnum: FoolscapBucketWriter(writer, canary) for shnum, writer in writers.items()}

    def remote_add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        self._server.add_lease(storage_index, renew_secret, cancel_secret)

    def remote_get_buckets(self, storage_index: bytes) -> dict[int, FoolscapBucketReader]:
        return {
            shnum: FoolscapBucketReader(self._server, reader)
            for shnum, reader in self._server.get_buckets(storage_index).items()
        }

    def remote_slot_readv(self, storage_index: bytes, shares: list[int], readv: list[tuple[int, int]]) -> Any:
        return self._server.slot_readv(storage_index, shares, readv)

    def remote_slot_testv_and_readv_and_writev(
        self, storage_index: bytes, secrets: Any, tw_vectors: Any, r_vector: Any
    ) -> Any:
        return self._server.slot_testv_and_readv_and_writev(storage_index, secrets, tw_vectors, r_vector)

    def remote_advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        self._server.advise_corrupt_share(share_type, storage_index, shnum, reason)
