"""The storage-client interface that immutable/, mutable/ and dirnode/ use; never a socket directly.

``FoolscapStorageClient`` speaks ``RIStorageServer`` over a foolscap
RemoteReference; ``InProcessStorageClient`` calls a ``StorageServer`` object
in this process (for tests), with switches that simulate failures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet import defer

from lafs.core.errors import LafsError

STORAGE_V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"


class ServerError(LafsError):
    """A storage server failed a request or went away."""


class BucketWriterClient(Protocol):
    async def write(self, offset: int, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def abort(self) -> None: ...


class BucketReaderClient(Protocol):
    async def read(self, offset: int, length: int) -> bytes: ...

    async def advise_corrupt_share(self, reason: bytes) -> None: ...


class StorageServerClient(Protocol):
    server_id: str
    lease_seed: bytes
    """The server's binary tubid: Tahoe mixes it into each server's lease secrets."""

    def maximum_immutable_share_size(self) -> int: ...

    async def allocate_buckets(
        self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes, sharenums: Iterable[int], allocated_size: int
    ) -> tuple[set[int], dict[int, BucketWriterClient]]: ...

    async def get_buckets(self, storage_index: bytes) -> dict[int, BucketReaderClient]: ...

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None: ...


def _remote_failure(server_id: str) -> Callable[[Any], None]:
    def convert(failure: Any) -> None:
        raise ServerError(f"server {server_id}: {failure.type}: {failure.value}")

    return convert


def _start_call(rref: Any, server_id: str, method: str, *args: Any) -> defer.Deferred[Any]:
    try:
        d = rref.callRemote(method, *args)
    except Exception as e:  # DeadReferenceError is raised synchronously by foolscap
        return defer.fail(ServerError(f"server {server_id}: {e}"))
    return d.addErrback(_remote_failure(server_id))


async def _call(rref: Any, server_id: str, method: str, *args: Any) -> Any:
    return await _start_call(rref, server_id, method, *args)


class _FoolscapBucket:
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


def _canary() -> Any:
    """The Referenceable sent with ``allocate_buckets``: if our connection drops, the server aborts the upload."""
    from foolscap.api import Referenceable

    class Canary(Referenceable):
        pass

    return Canary()


class FoolscapStorageClient:
    def __init__(self, rref: Any, server_id: str, version: dict[bytes, Any] | None = None, furl: str = "") -> None:
        self._rref = rref
        self.server_id = server_id
        self.version = version or {}
        self.lease_seed = tubid_from_furl(furl)

    def maximum_immutable_share_size(self) -> int:
        v1 = self.version.get(STORAGE_V1, {})
        value = v1.get(b"maximum-immutable-share-size")
        return int(value) if isinstance(value, int) else 2**64

    async def allocate_buckets(
        self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes, sharenums: Iterable[int], allocated_size: int
    ) -> tuple[set[int], dict[int, BucketWriterClient]]:
        already, writers = await _call(
            self._rref, self.server_id, "allocate_buckets", storage_index, renew_secret, cancel_secret,
            set(sharenums), allocated_size, _canary(),
        )
        return set(already), {n: _FoolscapBucket(w, self.server_id) for n, w in writers.items()}

    async def get_buckets(self, storage_index: bytes) -> dict[int, BucketReaderClient]:
        readers = await _call(self._rref, self.server_id, "get_buckets", storage_index)
        return {n: _FoolscapBucket(r, self.server_id) for n, r in readers.items()}

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        await _call(self._rref, self.server_id, "advise_corrupt_share", share_type, storage_index, shnum, reason)


def tubid_from_furl(furl: str) -> bytes:
    """The binary tubid named by ``pb://<tubid>@hints/swissnum`` (empty when it cannot be read)."""
    from lafs.core import base32
    from lafs.core.errors import Base32Error

    if not furl.startswith("pb://") or "@" not in furl:
        return b""
    try:
        return base32.a2b(furl[len("pb://") : furl.index("@")][:32])
    except Base32Error:
        return b""


async def _turn() -> None:
    """Yield to the reactor once, so in-process calls interleave like remote ones."""
    from twisted.internet import reactor as default_reactor

    reactor: Any = default_reactor
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0, d.callback, None)
    await d


class InProcessStorageClient:
    """Calls a StorageServer directly.  ``stopped`` makes every call fail as if the server died.

    ``reads`` counts the share reads served, so tests can see which servers a download used.
    """

    def __init__(self, server: Any, server_id: str) -> None:
        self.server = server
        self.server_id = server_id
        self.lease_seed = bytes(server.nodeid)
        self.stopped = False
        self.fail_writes_after: int | None = None
        self._writes = 0
        self.reads = 0

    def _check(self) -> None:
        if self.stopped:
            raise ServerError(f"server {self.server_id} is not reachable")

    def maximum_immutable_share_size(self) -> int:
        self._check()
        return int(self.server.available_space())

    async def allocate_buckets(
        self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes, sharenums: Iterable[int], allocated_size: int
    ) -> tuple[set[int], dict[int, BucketWriterClient]]:
        await _turn()
        self._check()
        already, writers = self.server.allocate_buckets(storage_index, renew_secret, cancel_secret, sharenums, allocated_size)
        return set(already), {n: _InProcessWriter(self, w) for n, w in writers.items()}

    async def get_buckets(self, storage_index: bytes) -> dict[int, BucketReaderClient]:
        await _turn()
        self._check()
        return {n: _InProcessReader(self, r) for n, r in self.server.get_buckets(storage_index).items()}

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        await _turn()
        self._check()
        self.server.advise_corrupt_share(share_type, storage_index, shnum, reason)


class _InProcessWriter:
    def __init__(self, client: InProcessStorageClient, writer: Any) -> None:
        self._client = client
        self._writer = writer

    async def write(self, offset: int, data: bytes) -> None:
        await _turn()
        client = self._client
        client._check()
        client._writes += 1
        if client.fail_writes_after is not None and client._writes > client.fail_writes_after:
            client.stopped = True
            self._writer.abort()
            client._check()
        self._wrap(self._writer.write, offset, data)

    async def close(self) -> None:
        await _turn()
        self._client._check()
        self._wrap(self._writer.close)

    async def abort(self) -> None:
        self._writer.abort()

    def _wrap(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except LafsError as e:
            raise ServerError(f"server {self._client.server_id}: {e}") from None


class _InProcessReader:
    def __init__(self, client: InProcessStorageClient, reader: Any) -> None:
        self._client = client
        self._reader = reader

    async def read(self, offset: int, length: int) -> bytes:
        await _turn()
        self._client._check()
        self._client.reads += 1
        return bytes(self._reader.read(offset, length))

    async def advise_corrupt_share(self, reason: bytes) -> None:
        await _turn()
        self._client._check()
        self._client.server.advise_corrupt_share(b"immutable", self._reader.storage_index, self._reader.shnum, reason)
