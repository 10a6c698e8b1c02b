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
from twisted.logger import Logger

from lafs.core import caps
from lafs.core.check_results import CheckAndRepairResults, CheckResults
from lafs.core.codec import mutable_segment_layout
from lafs.core.mutable_layout import MDMF_VERSION, MutableVersionInfo
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.mutable.checker import check
from lafs.mutable.common import (
    CapKeys,
    FileChangedWhileReadingError,
    NotWriteableError,
    PrivateKeyError,
    UncoordinatedWriteError,
    WriteKeys,
    lease_secrets,
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
from lafs.mutable.repair import only_version_present, repair_version_in_place
from lafs.mutable.retrieve import choose_version, read_all, retrieve
from lafs.mutable.servermap import ServerMap, ServersFor, update_servermap
from lafs.storage_client.interface import ServerError, StorageServerClient

log = Logger()

READ_CHUNK = 1024 * 1024
READ_RETRIES = 2
"""Times a read starts again on the newest version when another writer replaced the one it was reading."""
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

    async def new_private_key(self) -> bytes:
        """An RSA key for a new mutable file (from the pool when there is one).

        Directories need it before publishing: their contents are encrypted
        with the writekey the key determines.
        """
        if self.key_pool is not None:
            return await self.key_pool.get()
        return await threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), generate_private_key)

    async def create_mutable_file(
        self, source: Source | bytes = b"", *, mdmf: bool = False, private_key: bytes | None = None
    ) -> MutableFileNode:
        """Publish a new mutable file (seqnum 1) and return its write node."""
        if private_key is None:
            private_key = await self.new_private_key()
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
        """Deliver the newest version's bytes ``[offset, offset+length)`` to ``sink``.

        When another writer replaces the version before any of it was
        delivered, the newest version is mapped and read instead (up to
        READ_RETRIES times); after that the read fails rather than mix versions.
        """
        delivered = False
        started = False

        def deliver(data: bytes) -> Any:
            nonlocal delivered
            delivered = delivered or bool(data)
            return sink(data)

        def start() -> None:
            nonlocal started
            if not started and on_start is not None:
                on_start()
            started = True

        for attempt in range(READ_RETRIES + 1):
            try:
                await retrieve(self._keys, await self.get_servermap(), deliver, offset=offset, length=length, on_start=start)
                return
            except FileChangedWhileReadingError:
                if delivered or attempt == READ_RETRIES:
                    raise

    async def download_best_version(self) -> bytes:
        pieces: list[bytes] = []
        await self.read(pieces.append)
        return b"".join(pieces)

    # --- checking ---------------------------------------------------------------------

    async def _add_leases(self, servermap: ServerMap) -> None:
        """One ``add_lease`` per server that answered: it renews (or adds) our lease on every share it holds."""
        lease_secret = self._context.secrets.lease_secret
        storage_index = self._keys.storage_index
        answering = [s for s in servermap.servers if s.server_id not in servermap.failed_servers]

        async def one(server: StorageServerClient) -> None:
            renew, cancel = lease_secrets(storage_index, lease_secret, server)
            try:
                await server.add_lease(storage_index, renew, cancel)
            except ServerError as e:
                log.info("add_lease on {s} failed: {e}", s=server.server_id, e=str(e))

        await defer.DeferredList([defer.Deferred.fromCoroutine(one(s)) for s in answering], consumeErrors=True)

    async def check(self, *, verify: bool = False, add_lease: bool = False) -> CheckResults:
        """The file's health; ``verify`` also fetches and checks every block of the best version;
        ``add_lease`` renews this client's lease on every share."""
        servermap = await self.get_servermap()
        if add_lease:
            await self._add_leases(servermap)
        return (await check(self._keys, servermap, verify=verify)).results()

    async def check_and_repair(self, *, verify: bool = False, add_lease: bool = False) -> CheckAndRepairResults:
        """Check, and repair an unhealthy but recoverable file (needs the write cap).

        When the grid holds shares of the newest recoverable version only (some
        missing or corrupt), the missing ones are rebuilt and written under the
        same seqnum; when it holds several versions, the newest recoverable one
        is published again under the next seqnum over every share, so only it
        remains.  A healthy file is left alone.
        """
        if self._keys.writekey is None:
            pre = await self.check(verify=verify, add_lease=add_lease)
            if pre.healthy:
                return CheckAndRepairResults(pre, pre, False, False)
            problem = f"this {self.format_name()} file was opened through a read-only cap; repairing it needs the write cap"
            return CheckAndRepairResults(pre, pre, True, False, problem)

        async def operation() -> CheckAndRepairResults:
            servermap = await self.get_servermap(for_writing=True)
            if add_lease:
                await self._add_leases(servermap)
            found = await check(self._keys, servermap, verify=verify)
            pre = found.results()
            if found.healthy:
                return CheckAndRepairResults(pre, pre, False, False)
            info = found.best_version
            if info is None:
                return CheckAndRepairResults(pre, pre, True, False, "no version of the file is recoverable")
            keys = await self._write_keys(servermap)
            bad = [(server_id, shnum) for server_id, shnum, _ in found.corrupt_shares]
            if only_version_present(servermap, info, bad):
                good = {(server_id, shnum) for shnum, ids in found.sharemap.items() for server_id in ids}
                await repair_version_in_place(self._keys, keys, servermap, info, good, self._context.secrets.lease_secret)
            else:
                data, _ = await read_all(self._keys, servermap, info)
                await self._publish(keys, servermap, data, servermap.highest_seqnum() + 1, info.needed, info.total)
            post = (await check(self._keys, await self.get_servermap(), verify=verify)).results()
            return CheckAndRepairResults(pre, post, True, post.healthy)

        result: CheckAndRepairResults = await self._locked(operation)
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
