"""The storage-client interface over Foolscap's ``RIStorageServer``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from foolscap.api import DeadReferenceError, Referenceable
from twisted.internet import defer
from twisted.logger import Logger

from lafs.core import base32
from lafs.core.errors import Base32Error
from lafs.storage_client.interface import (
    Allocation,
    BucketReaderClient,
    BucketWriterClient,
    ConnectedCallback,
    LostCallback,
    ReadTestWriteResult,
    ReadVector,
    ServerError,
    ServerRefusedError,
    ServerUnreachableError,
    ServerVersion,
    TestAndWriteVectors,
    WriteEnablerMismatchError,
)
from lafs.tub import winning_hint

log = Logger()
_LOST_CONNECTION_TYPES = ("DeadReferenceError", "PBConnectionLost", "ConnectionLost", "ConnectionDone")


def _convert_failure(server_id: str) -> Any:
    def convert(failure: Any) -> None:
        type_name = str(getattr(failure.type, "__name__", failure.type)).rsplit(".", 1)[-1]
        message = f"{type_name}: {failure.value}"
        if any(name in type_name for name in _LOST_CONNECTION_TYPES):
            raise ServerUnreachableError(server_id, message)
        if type_name == "BadWriteEnablerError":
            raise WriteEnablerMismatchError(server_id, message, type_name)
        raise ServerRefusedError(server_id, message, type_name)

    return convert


def _start_call(rref: Any, server_id: str, method: str, *args: Any) -> defer.Deferred[Any]:
    try:
        d = rref.callRemote(method, *args)
    except DeadReferenceError as e:  # foolscap raises it synchronously on a dead connection
        return defer.fail(ServerUnreachableError(server_id, str(e)))
    except Exception as e:  # an argument that breaks the schema is refused before it is sent
        return defer.fail(ServerRefusedError(server_id, f"{type(e).__name__}: {e}", type(e).__name__))
    return d.addErrback(_convert_failure(server_id))


async def _call(rref: Any, server_id: str, method: str, *args: Any) -> Any:
    return await _start_call(rref, server_id, method, *args)


class _FoolscapBucket:
    """An ``RIBucketWriter`` or ``RIBucketReader``."""

    def __init__(self, rref: Any, server_id: str) -> None:
        self._rref = rref
        self._server_id = server_id

    async def write(self, offset: int, data: bytes) -> None:
        sent = _start_call(self._rref, self._server_id, "write", offset, data)
        # foolscap keeps what it has yet to send; holding the data until the answer would keep every write in memory twice as long.
        del data
        await sent

    async def close(self) -> None:
        await _call(self._rref, self._server_id, "close")

    async def abort(self) -> None:
        await _call(self._rref, self._server_id, "abort")

    async def read(self, offset: int, length: int) -> bytes:
        return bytes(await _call(self._rref, self._server_id, "read", offset, length))

    async def advise_corrupt_share(self, reason: bytes) -> None:
        await _call(self._rref, self._server_id, "advise_corrupt_share", reason)


class _Canary(Referenceable):
    """Sent with ``allocate_buckets``: if our connection drops, the server aborts the upload."""


class FoolscapStorageClient:
    """One server's ``RIStorageServer`` reference, as a `StorageServerClient`."""

    def __init__(self, rref: Any, server_id: str, version: ServerVersion, lease_seed: bytes) -> None:
        self._rref = rref
        self.server_id = server_id
        self.version = version
        self.lease_seed = lease_seed

    async def allocate_buckets(
        self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes, sharenums: Iterable[int], allocated_size: int
    ) -> Allocation:
        already, writers = await _call(
            self._rref, self.server_id, "allocate_buckets", storage_index, renew_secret, cancel_secret,
            set(sharenums), allocated_size, _Canary(),
        )
        buckets: dict[int, BucketWriterClient] = {n: _FoolscapBucket(w, self.server_id) for n, w in writers.items()}
        return Allocation(frozenset(already), buckets)

    async def get_buckets(self, storage_index: bytes) -> Mapping[int, BucketReaderClient]:
        readers = await _call(self._rref, self.server_id, "get_buckets", storage_index)
        return {n: _FoolscapBucket(r, self.server_id) for n, r in readers.items()}

    async def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        await _call(self._rref, self.server_id, "add_lease", storage_index, renew_secret, cancel_secret)

    async def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> Mapping[int, Sequence[bytes]]:
        answer = await _call(self._rref, self.server_id, "slot_readv", storage_index, list(shares), list(readv))
        return {int(n): [bytes(d) for d in data] for n, data in answer.items()}

    async def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: TestAndWriteVectors,
        read_vector: ReadVector,
    ) -> ReadTestWriteResult:
        vectors = {
            shnum: ([tuple(t) for t in testv], [tuple(d) for d in datav], new_length)
            for shnum, (testv, datav, new_length) in tw_vectors.items()
        }
        success, reads = await _call(
            self._rref, self.server_id, "slot_testv_and_readv_and_writev", storage_index, tuple(secrets), vectors, list(read_vector)
        )
        return ReadTestWriteResult(bool(success), {int(n): [bytes(d) for d in data] for n, data in reads.items()})

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        await _call(self._rref, self.server_id, "advise_corrupt_share", share_type, storage_index, shnum, reason)


def tubid_from_furl(furl: str) -> bytes:
    """The binary tubid named by ``pb://<tubid>@hints/swissnum`` (empty when it cannot be read)."""
    if not furl.startswith("pb://") or "@" not in furl:
        return b""
    try:
        return base32.a2b(furl[len("pb://") : furl.index("@")][:32])
    except Base32Error:
        return b""


class _FoolscapConnection:
    def __init__(self, server_id: str, reconnector: Any, connected: ConnectedCallback, lost: LostCallback, lease_seed: bytes) -> None:
        self._server_id = server_id
        self._reconnector = reconnector
        self._connected = connected
        self._lost = lost
        self._lease_seed = lease_seed
        self._stopped = False

    def got_reference(self, rref: Any) -> None:
        d = rref.callRemote("get_version")

        def got_version(version: dict[bytes, Any]) -> None:
            if self._stopped:
                return  # stopped (or replaced by a newer fURL) while get_version was on its way
            client = FoolscapStorageClient(rref, self._server_id, ServerVersion.from_dict(version), self._lease_seed)
            rref.notifyOnDisconnect(self._lost, client)
            self._connected(client)

        d.addCallback(got_version)
        d.addErrback(lambda f: log.warn("storage server {id} failed get_version: {e}", id=self._server_id, e=f.getErrorMessage()))

    def stop(self) -> None:
        self._stopped = True
        if self._reconnector is not None:
            self._reconnector.stopConnecting()
            self._reconnector = None

    def describe(self) -> str:
        return f"Connected to {winning_hint(self._reconnector, 'the server')} via tcp"


class FoolscapConnector:
    """Connects through a Tub to servers that announce an ``anonymous-storage-FURL``."""

    def __init__(self, tub: Any) -> None:
        self._tub = tub

    def accepts(self, announcement: Mapping[str, Any]) -> bool:
        return isinstance(announcement.get("anonymous-storage-FURL"), str)

    def connect(
        self, server_id: str, announcement: Mapping[str, Any], connected: ConnectedCallback, lost: LostCallback
    ) -> _FoolscapConnection:
        furl = str(announcement["anonymous-storage-FURL"])
        connection = _FoolscapConnection(server_id, None, connected, lost, tubid_from_furl(furl))
        connection._reconnector = self._tub.connectTo(furl, connection.got_reference)
        return connection


__all__ = ["FoolscapConnector", "FoolscapStorageClient", "ServerError", "tubid_from_furl"]
