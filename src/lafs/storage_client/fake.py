"""Storage clients for tests: one calling a StorageServer object in this process, and a wrapper that injects faults.

`InProcessStorageClient` calls go through the reactor once (so they
interleave like remote ones).  `FaultyStorageClient` wraps any storage client
(in-process, Foolscap or HTTP) so that tests can make it fail: ``stopped``
makes every call fail as if the server had died, ``fail_writes_after`` kills
the server after that many share writes.  ``reads`` counts the share reads
served, so tests can see which servers a download used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet import defer

from lafs.core.errors import LafsError
from lafs.storage_client.interface import (
    Allocation,
    BucketReaderClient,
    BucketWriterClient,
    ReadTestWriteResult,
    ReadVector,
    ServerRefusedError,
    ServerUnreachableError,
    ServerVersion,
    StorageServerClient,
    TestAndWriteVectors,
    WriteEnablerMismatchError,
)


class InProcessStorageClient:
    """A `StorageServerClient` for a ``lafs.storage.server.StorageServer`` in this process."""

    def __init__(self, server: Any, server_id: str, *, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.server = server
        self.server_id = server_id
        self.lease_seed = bytes(server.nodeid)
        self._reactor = reactor

    @property
    def version(self) -> ServerVersion:
        return ServerVersion.from_dict(self.server.get_version())

    async def _turn(self) -> None:
        """Yield to the reactor once, as a remote call would."""
        d: defer.Deferred[None] = defer.Deferred()
        self._reactor.callLater(0, d.callback, None)
        await d

    async def call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a server coroutine method, turning its errors into the interface's."""
        try:
            return await method(*args)
        except LafsError as e:
            type_name = type(e).__name__
            error = WriteEnablerMismatchError if type_name == "BadWriteEnablerError" else ServerRefusedError
            raise error(self.server_id, f"{type_name}: {e}", type_name) from None

    async def allocate_buckets(
        self,
        storage_index: bytes,
        renew_secret: bytes,
        cancel_secret: bytes,
        sharenums: Iterable[int],
        allocated_size: int,
    ) -> Allocation:
        await self._turn()
        already, writers = await self.call(
            self.server.allocate_buckets,
            storage_index,
            renew_secret,
            cancel_secret,
            sharenums,
            allocated_size,
        )
        buckets: dict[int, BucketWriterClient] = {n: _InProcessWriter(self, w) for n, w in writers.items()}
        return Allocation(frozenset(already), buckets)

    async def get_buckets(self, storage_index: bytes) -> Mapping[int, BucketReaderClient]:
        await self._turn()
        return {n: _InProcessReader(self, r) for n, r in (await self.call(self.server.get_buckets, storage_index)).items()}

    async def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        await self._turn()
        await self.call(self.server.add_lease, storage_index, renew_secret, cancel_secret)

    async def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> Mapping[int, Sequence[bytes]]:
        await self._turn()
        answer: Mapping[int, Sequence[bytes]] = await self.call(self.server.slot_readv, storage_index, list(shares), list(readv))
        return answer

    async def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: TestAndWriteVectors,
        read_vector: ReadVector,
    ) -> ReadTestWriteResult:
        await self._turn()
        success, reads = await self.call(
            self.server.slot_testv_and_readv_and_writev,
            storage_index,
            tuple(secrets),
            dict(tw_vectors),
            list(read_vector),
        )
        return ReadTestWriteResult(bool(success), reads)

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        await self._turn()
        await self.call(self.server.advise_corrupt_share, share_type, storage_index, shnum, reason)


class _InProcessWriter:
    def __init__(self, client: InProcessStorageClient, writer: Any) -> None:
        self._client = client
        self._writer = writer

    async def write(self, offset: int, data: bytes) -> None:
        await self._client._turn()
        await self._client.call(self._writer.write, offset, data)

    async def close(self) -> None:
        await self._client._turn()
        await self._client.call(self._writer.close)

    async def abort(self) -> None:
        await self._writer.abort()


class _InProcessReader:
    def __init__(self, client: InProcessStorageClient, reader: Any) -> None:
        self._client = client
        self._reader = reader

    async def read(self, offset: int, length: int) -> bytes:
        await self._client._turn()
        return bytes(await self._client.call(self._reader.read, offset, length))

    async def advise_corrupt_share(self, reason: bytes) -> None:
        await self._client._turn()
        reader = self._reader
        await self._client.call(
            self._client.server.advise_corrupt_share,
            b"immutable",
            reader.storage_index,
            reader.shnum,
            reason,
        )


class FaultyStorageClient:
    """Any `StorageServerClient`, with switches that make it fail as a dying server would.

    ``server`` is the StorageServer object behind it, kept for tests that
    look at or damage its share files.
    """

    def __init__(self, inner: StorageServerClient, server: Any = None) -> None:
        self.inner = inner
        self.server = server
        self.stopped = False
        self.fail_writes_after: int | None = None
        self.writes = 0
        self.reads = 0

    @property
    def server_id(self) -> str:
        return self.inner.server_id

    @property
    def lease_seed(self) -> bytes:
        return self.inner.lease_seed

    @property
    def version(self) -> ServerVersion:
        return self.inner.version

    def check_reachable(self) -> None:
        if self.stopped:
            raise ServerUnreachableError(self.server_id, "not reachable")

    async def _call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Call the wrapped client; the call fails if the server is down when it is made or when it answers."""
        self.check_reachable()
        answer = await method(*args)
        self.check_reachable()
        return answer

    async def allocate_buckets(
        self,
        storage_index: bytes,
        renew_secret: bytes,
        cancel_secret: bytes,
        sharenums: Iterable[int],
        allocated_size: int,
    ) -> Allocation:
        allocation: Allocation = await self._call(
            self.inner.allocate_buckets,
            storage_index,
            renew_secret,
            cancel_secret,
            sharenums,
            allocated_size,
        )
        writers: dict[int, BucketWriterClient] = {n: _FaultyWriter(self, w) for n, w in allocation.writers.items()}
        return Allocation(allocation.already_have, writers)

    async def get_buckets(self, storage_index: bytes) -> Mapping[int, BucketReaderClient]:
        readers = await self._call(self.inner.get_buckets, storage_index)
        return {n: _FaultyReader(self, r) for n, r in readers.items()}

    async def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        await self._call(self.inner.add_lease, storage_index, renew_secret, cancel_secret)

    async def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> Mapping[int, Sequence[bytes]]:
        answer: Mapping[int, Sequence[bytes]] = await self._call(self.inner.slot_readv, storage_index, shares, readv)
        return answer

    async def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: TestAndWriteVectors,
        read_vector: ReadVector,
    ) -> ReadTestWriteResult:
        result: ReadTestWriteResult = await self._call(
            self.inner.slot_testv_and_readv_and_writev,
            storage_index,
            secrets,
            tw_vectors,
            read_vector,
        )
        return result

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        await self._call(self.inner.advise_corrupt_share, share_type, storage_index, shnum, reason)


class _FaultyWriter:
    def __init__(self, client: FaultyStorageClient, writer: BucketWriterClient) -> None:
        self._client = client
        self._writer = writer

    async def write(self, offset: int, data: bytes) -> None:
        client = self._client
        client.check_reachable()
        client.writes += 1
        if client.fail_writes_after is not None and client.writes > client.fail_writes_after:
            client.stopped = True
            await self._writer.abort()
            client.check_reachable()
        await client._call(self._writer.write, offset, data)

    async def close(self) -> None:
        await self._client._call(self._writer.close)

    async def abort(self) -> None:
        await self._writer.abort()


class _FaultyReader:
    def __init__(self, client: FaultyStorageClient, reader: BucketReaderClient) -> None:
        self._client = client
        self._reader = reader

    async def read(self, offset: int, length: int) -> bytes:
        self._client.check_reachable()
        self._client.reads += 1
        data: bytes = await self._client._call(self._reader.read, offset, length)
        return data

    async def advise_corrupt_share(self, reason: bytes) -> None:
        await self._client._call(self._reader.advise_corrupt_share, reason)
