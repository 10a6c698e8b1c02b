"""Mutable file nodes (SDMF and MDMF) and the per-client context that makes them.

A `MutableContext` holds what every mutable operation of one client needs:
the server selector, the client's secrets, its encoding parameters, a key
pool, the reactor, and one lock per storage index, so that two modifications
of one file through this client (through any number of node objects) run one
after the other instead of racing each other on the grid.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet import defer, task, threads

from lafs.core import caps
from lafs.core.codec import mutable_segment_layout
from lafs.core.mutable_layout import MDMF_VERSION, MutableVersionInfo
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.mutable.checker import MutableCheckResults, check
from lafs.mutable.common import (
    CapKeys,
    NotWriteableError,
    PrivateKeyError,
    UncoordinatedWriteError,
    WriteKeys,
)
from lafs.mutable.encode import (
    EncodedSegments,
    EncodedVersion,
    encode_mdmf,
    encode_mdmf_segments,
    encode_sdmf,
)
from lafs.mutable.keys import KeyPool, generate_private_key
from lafs.mutable.publish import publish_new_mdmf, publish_version, update_in_place
from lafs.mutable.retrieve import choose_version, read_all, retrieve
from lafs.mutable.servermap import ServerMap, ServersFor, update_servermap

READ_CHUNK = 1024 * 1024
MODIFY_RETRIES = 4
MODIFY_BACKOFF = 0.2
"""Seconds before the first retry of a modification that lost a race; doubled for each further one."""


class Source(Protocol):
    """What new contents are read from (``lafs.client.nodes.DataSource``)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...


@attrs.frozen
class BytesSource:
    """A `Source` over bytes in memory."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def _read_source(source: Source | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    return b"".join(source.read(at, min(READ_CHUNK, source.size - at)) for at in range(0, source.size, READ_CHUNK))


MutableCap = caps.MutableWriteCap | caps.MutableReadCap


@attrs.define
class MutableContext:
    """Everything one client's mutable files share."""

    servers_for: ServersFor
    secrets: ClientSecrets
    params: EncodingParameters
    reactor: Any
    key_pool: KeyPool | None = None
    random_bytes: Callable[[int], bytes] = os.urandom
    _locks: dict[bytes, defer.DeferredLock] = attrs.field(factory=dict, init=False)

    def lock_for(self, storage_index: bytes) -> defer.DeferredLock:
        """The one lock that serializes this client's modifications of a file."""
        lock = self._locks.get(storage_index)
        if lock is None:
            lock = self._locks[storage_index] = defer.DeferredLock()
        return lock

    def node_for_cap(self, cap: MutableCap) -> MutableFileNode:
        return MutableFileNode(cap, self)

    async def _new_private_key(self) -> bytes:
        if self.key_pool is not None:
            return await self.key_pool.get()
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), generate_private_key)

    async def create_mutable_file(
        self, source: Source | bytes = b"", *, mdmf: bool = False, private_key: bytes | None = None
    ) -> MutableFileNode:
        """Publish a new mutable file (seqnum 1) and return its write node."""
        if private_key is None:
            private_key = await self._new_private_key()
        keys = WriteKeys.from_private_key(private_key)
        node = MutableFileNode(keys.write_cap(mdmf), self)
        servers = list(self.servers_for(keys.storage_index))
        # A fresh key: nobody can hold shares of it yet, so there is nothing to ask the servers first.
        servermap = ServerMap(keys.storage_index, servers)
        size = len(source) if isinstance(source, bytes) else source.size
        if mdmf and size > 0:
            await self._stream_new_mdmf(keys, servermap, BytesSource(source) if isinstance(source, bytes) else source)
        else:
            await node._publish(keys, servermap, _read_source(source), 1, self.params.needed, self.params.total)
        return node

    async def _stream_new_mdmf(self, keys: WriteKeys, servermap: ServerMap, source: Source) -> None:
        """A new MDMF file read, encoded and written a run of segments at a time (memory stays small)."""
        layout = mutable_segment_layout(source.size, self.params.needed, self.params.total, mdmf=True)
        random_bytes = self.random_bytes

        def encode(first: int, last: int) -> EncodedSegments:
            start = first * layout.segment_size
            plaintext = source.read(start, min(source.size, (last + 1) * layout.segment_size) - start)
            return encode_mdmf_segments(plaintext, first, layout, keys.readkey, lambda: random_bytes(16))

        def read_segments(first: int, last: int) -> defer.Deferred[EncodedSegments]:
            # Reading, encrypting, coding and hashing a run takes a while: off the reactor thread.
            return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), encode, first, last)

        await publish_new_mdmf(keys, servermap, layout, read_segments, self.secrets.lease_secret)


class MutableFileNode:
    """An SDMF or MDMF file through its write or read cap (``lafs.client.nodes.MutableFileNode``)."""

    def __init__(self, cap: MutableCap, context: MutableContext) -> None:
        # Typed as any file cap to satisfy the FileNode protocol's attribute; _cap keeps the precise type.
        self.cap: caps.FileCap = cap
        self._cap = cap
        self._context = context
        self._keys = CapKeys.from_cap(cap)

    # --- identity -------------------------------------------------------------------

    def is_mutable(self) -> bool:
        return True

    def is_readonly(self) -> bool:
        return self._cap.is_readonly()

    def is_directory(self) -> bool:
        return False

    def format_name(self) -> str:
        return "MDMF" if self._keys.mdmf else "SDMF"

    def get_uri(self) -> str:
        return self._cap.to_string()

    def get_readonly_uri(self) -> str:
        return self._cap.get_readonly().to_string()

    def get_verify_uri(self) -> str:
        return self._cap.get_verify_cap().to_string()

    def get_storage_index(self) -> bytes:
        return self._keys.storage_index

    def get_size(self) -> None:
        return None

    def get_readonly(self) -> MutableFileNode:
        return MutableFileNode(self._cap.get_readonly(), self._context)

    # --- reading --------------------------------------------------------------------

    async def get_servermap(self, *, for_writing: bool = False) -> ServerMap:
        servers = list(self._context.servers_for(self._keys.storage_index))
        return await update_servermap(self._keys, servers, want_private_key=for_writing)

    async def get_current_size(self) -> int:
        return choose_version(await self.get_servermap()).data_length

    async def read(
        self,
        sink: Callable[[bytes], Any],
        offset: int = 0,
        length: int | None = None,
        on_start: Callable[[], Any] | None = None,
    ) -> None:
        await retrieve(self._keys, await self.get_servermap(), sink, offset=offset, length=length, on_start=on_start)

    async def download_best_version(self) -> bytes:
        data, _ = await read_all(self._keys, await self.get_servermap())
        return data

    # --- checking ---------------------------------------------------------------------

    async def check(self, *, verify: bool = False) -> MutableCheckResults:
        """The file's health; ``verify`` also fetches and checks every block of the best version."""
        return await check(self._keys, await self.get_servermap(), verify=verify)

    async def repair(self, *, verify: bool = False) -> tuple[MutableCheckResults, bool]:
        """Check, and if unhealthy but recoverable, republish the best version (next seqnum) over every share.

        Returns (the results before repair, whether a repair was made).
        """
        self._check_writeable()

        async def operation() -> tuple[MutableCheckResults, bool]:
            servermap = await self.get_servermap(for_writing=True)
            results = await check(self._keys, servermap, verify=verify)
            if results.healthy or results.best_version is None:
                return results, False
            keys = await self._write_keys(servermap)
            info = results.best_version
            data, _ = await read_all(self._keys, servermap, info)
            await self._publish(keys, servermap, data, servermap.highest_seqnum() + 1, info.needed, info.total)
            return results, True

        result: tuple[MutableCheckResults, bool] = await self._locked(operation)
        return result

    # --- writing --------------------------------------------------------------------

    def _check_writeable(self) -> None:
        if self._keys.writekey is None:
            raise NotWriteableError(f"this {self.format_name()} file was opened through a read-only cap; it cannot be changed")

    async def _write_keys(self, servermap: ServerMap) -> WriteKeys:
        if servermap.private_key is None:
            raise PrivateKeyError(
                "the file's signing key could not be recovered from any share "
                f"({servermap.describe_unrecoverable()})"
            )
        return WriteKeys.from_private_key(servermap.private_key)

    async def _publish(
        self, keys: WriteKeys, servermap: ServerMap, data: bytes, seqnum: int, needed: int, total: int
    ) -> MutableVersionInfo:
        random_bytes = self._context.random_bytes
        mdmf = self._keys.mdmf

        def encode() -> EncodedVersion:
            if mdmf:
                return encode_mdmf(data, keys, seqnum, needed, total, lambda: random_bytes(16))
            return encode_sdmf(data, keys, seqnum, needed, total, random_bytes(16))

        # Coding, encrypting, hashing and signing a large file takes a while: keep the reactor free meanwhile.
        reactor = self._context.reactor
        encoded = await threads.deferToThreadPool(reactor, reactor.getThreadPool(), encode)
        await publish_version(encoded, keys, servermap, self._context.secrets.lease_secret)
        return encoded.info

    async def _locked(self, operation: Callable[[], Any]) -> Any:
        self._check_writeable()
        lock = self._context.lock_for(self._keys.storage_index)
        await lock.acquire()
        try:
            return await operation()
        finally:
            lock.release()

    def _encoding(self, servermap: ServerMap) -> tuple[int, int]:
        # A file keeps the encoding it was made with, as in Tahoe; a file with no shares left gets ours.
        best = servermap.best_recoverable_version()
        if best is not None:
            return best.needed, best.total
        return self._context.params.needed, self._context.params.total

    async def overwrite(self, source: Source | bytes) -> None:
        """Replace the contents: a new version with the next sequence number."""
        data = _read_source(source)

        async def operation() -> None:
            servermap = await self.get_servermap(for_writing=True)
            keys = await self._write_keys(servermap)
            await self._publish(keys, servermap, data, servermap.highest_seqnum() + 1, *self._encoding(servermap))

        await self._locked(operation)

    async def update(self, offset: int, source: Source | bytes) -> None:
        """Write ``source`` at ``offset``; past the end extends the file (zeros fill any gap).

        MDMF re-encodes only the touched segments.  SDMF (one segment) and
        MDMF files whose shares cannot all be patched are read and republished whole.
        """
        if offset < 0:
            raise ValueError("an update offset cannot be negative")
        data = _read_source(source)

        async def operation() -> None:
            servermap = await self.get_servermap(for_writing=True)
            keys = await self._write_keys(servermap)
            info = choose_version(servermap)
            if info.version == MDMF_VERSION and info.seqnum == servermap.highest_seqnum():
                salts = self._context.random_bytes
                if await update_in_place(
                    keys, servermap, info, offset, data, self._context.secrets.lease_secret, lambda: salts(16)
                ):
                    return
            old, _ = await read_all(self._keys, servermap, info)
            new = bytearray(old)
            if offset > len(new):
                new += b"\x00" * (offset - len(new))
            new[offset : offset + len(data)] = data
            await self._publish(keys, servermap, bytes(new), servermap.highest_seqnum() + 1, info.needed, info.total)

        await self._locked(operation)

    async def modify(self, modifier: Callable[[bytes], bytes | None], *, retries: int = MODIFY_RETRIES) -> None:
        """Replace the contents with ``modifier(current contents)``; None or unchanged bytes write nothing.

        When another writer got in first (`UncoordinatedWriteError`), the
        file is read again and ``modifier`` applied to the new contents, up to
        ``retries`` more times, after a growing, randomised pause (so that two
        writers that collided do not collide again).
        """

        async def operation() -> None:
            servermap = await self.get_servermap(for_writing=True)
            keys = await self._write_keys(servermap)
            old, info = await read_all(self._keys, servermap)
            new = modifier(old)
            if new is None or new == old:
                return
            await self._publish(keys, servermap, new, servermap.highest_seqnum() + 1, info.needed, info.total)

        for attempt in range(retries + 1):
            try:
                await self._locked(operation)
                return
            except UncoordinatedWriteError:
                if attempt == retries:
                    raise
            jitter = int.from_bytes(self._context.random_bytes(2), "big") / 65536
            await task.deferLater(self._context.reactor, MODIFY_BACKOFF * (2**attempt) * (0.5 + jitter), lambda: None)
