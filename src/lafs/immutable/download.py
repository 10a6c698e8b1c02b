"""Immutable (CHK) download: find shares, verify everything against the cap, decode, decrypt, stream.

Every byte used is checked before use: the UEB against the cap, each share's
block-hash tree against the share-hash tree in the UEB, each block against its
share's tree, each decoded segment against the crypttext hash tree.  A share
that fails any check, or whose server fails, is dropped (and reported as
corrupt when it is corrupt) and another share takes its place for the same
segment, without starting over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from lafs.client.storage_client import BucketReaderClient, ServerError, StorageServerClient
from lafs.core import caps, hashes
from lafs.core.codec import ZfecCodec, immutable_segment_layout
from lafs.core.crypto import AESCTRStream
from lafs.core.errors import FormatError, LafsError
from lafs.core.hashtree import BadHashError, IncompleteHashTree, NotEnoughHashesError
from lafs.core.share_layout import (
    V2_HEADER,
    ImmutableShareOffsets,
    ShareLayoutError,
    UriExtension,
    unpack_hashes,
    unpack_share_hash_chain,
    unpack_ueb_length,
)

log = Logger()


class NotEnoughSharesError(LafsError):
    """Too few good shares could be found to rebuild the file."""


class _BadShare(Exception):
    """A share that failed a check; carries whether it is corrupt (worth reporting) or just unreachable."""

    def __init__(self, message: str, corrupt: bool) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class _ShareSource:
    """One share on one server, with its verified hash trees."""

    def __init__(self, shnum: int, server: StorageServerClient, reader: BucketReaderClient) -> None:
        self.shnum = shnum
        self.server = server
        self.reader = reader
        self.offsets: ImmutableShareOffsets | None = None
        self.block_tree: IncompleteHashTree | None = None

    async def read(self, offset: int, length: int) -> bytes:
        try:
            return await self.reader.read(offset, length)
        except ServerError as e:
            raise _BadShare(str(e), corrupt=False) from None

    async def header(self) -> ImmutableShareOffsets:
        if self.offsets is None:
            raw = await self.read(0, V2_HEADER.size)
            try:
                self.offsets = ImmutableShareOffsets.unpack(raw)
            except ShareLayoutError as e:
                raise _BadShare(f"share {self.shnum}: {e}", corrupt=True) from None
        return self.offsets

    async def ueb_bytes(self) -> bytes:
        offsets = await self.header()
        length_field = await self.read(offsets.uri_extension, offsets.ueb_length_size)
        try:
            length = unpack_ueb_length(offsets, length_field)
        except ShareLayoutError as e:
            raise _BadShare(f"share {self.shnum}: {e}", corrupt=True) from None
        return await self.read(offsets.uri_extension + offsets.ueb_length_size, length)


class _Download:
    def __init__(self, cap: caps.CHKFileCap, servers: Sequence[StorageServerClient]) -> None:
        self.cap = cap
        self.servers = list(servers)
        self.storage_index = cap.get_storage_index()
        self.candidates: dict[int, list[_ShareSource]] = {}
        self.active: dict[int, _ShareSource] = {}
        self.ueb: UriExtension | None = None
        self.share_tree = IncompleteHashTree(cap.total)
        self.crypttext_tree: IncompleteHashTree | None = None
        self.codec = ZfecCodec(cap.needed, cap.total)
        self.found_shares = 0
        self.arrival_rank: dict[str, int] = {}

    async def locate(self) -> None:
        """Ask every server for its shares; servers that answer first are used first."""
        arrivals: list[tuple[StorageServerClient, dict[int, BucketReaderClient]]] = []

        def arrived(readers: dict[int, BucketReaderClient], server: StorageServerClient) -> None:
            arrivals.append((server, readers))

        queries = []
        for server in self.servers:
            d = defer.Deferred.fromCoroutine(server.get_buckets(self.storage_index))
            d.addCallback(arrived, server)
            queries.append(d)
        await defer.DeferredList(queries, consumeErrors=True)
        for server, readers in arrivals:
            for shnum, reader in sorted(readers.items()):
                if 0 <= shnum < self.cap.total:
                    self.candidates.setdefault(shnum, []).append(_ShareSource(shnum, server, reader))
        self.arrival_rank = {server.server_id: rank for rank, (server, _) in enumerate(arrivals)}
        self.found_shares = len(self.candidates)
        if self.found_shares < self.cap.needed:
            raise NotEnoughSharesError(self._shortfall())

    def _shortfall(self) -> str:
        good = len(self.active) + sum(1 for shnum, c in self.candidates.items() if c and shnum not in self.active)
        return (
            f"not enough shares to rebuild the file: found {self.found_shares} distinct share(s) "
            f"({good} still usable) on {len(self.servers)} server(s) asked; {self.cap.needed} are needed"
        )

    async def _drop(self, source: _ShareSource, problem: _BadShare) -> None:
        log.warn("dropping share {n} on {s}: {p}", n=source.shnum, s=source.server.server_id, p=str(problem))
        if self.active.get(source.shnum) is source:
            del self.active[source.shnum]
        if problem.corrupt:
            try:
                await source.server.advise_corrupt_share(b"immutable", self.storage_index, source.shnum, str(problem).encode())
            except ServerError:
                pass

    async def load_ueb(self) -> UriExtension:
        while self.ueb is None:
            source = self._next_candidate(exclude=set())
            if source is None:
                raise NotEnoughSharesError("no share holds a URI extension block that matches the cap: " + self._shortfall())
            try:
                data = await source.ueb_bytes()
                if hashes.uri_extension_hash(data) != self.cap.ueb_hash:
                    raise _BadShare(f"share {source.shnum}: URI extension block does not match the cap", corrupt=True)
                ueb = UriExtension.from_bytes(data)
                if (ueb.size, ueb.needed_shares, ueb.total_shares) != (self.cap.size, self.cap.needed, self.cap.total):
                    raise _BadShare(f"share {source.shnum}: URI extension block disagrees with the cap", corrupt=True)
                self.ueb = ueb
                self.share_tree.set_hashes({0: ueb.share_root_hash})
                layout = immutable_segment_layout(self.cap.size, ueb.segment_size, self.cap.needed, self.cap.total)
                if layout.num_segments != ueb.num_segments:
                    raise _BadShare("URI extension block has an inconsistent segment count", corrupt=True)
                self.crypttext_tree = IncompleteHashTree(ueb.num_segments)
                self.crypttext_tree.set_hashes({0: ueb.crypttext_root_hash})
                self.layout = layout
            except (_BadShare, FormatError) as e:
                problem = e if isinstance(e, _BadShare) else _BadShare(str(e), corrupt=True)
                self._discard(source)
                await self._drop(source, problem)
        return self.ueb

    def _next_candidate(self, exclude: set[int]) -> _ShareSource | None:
        """The not-yet-used share on the quickest server to answer, preferring servers not used yet."""
        busy = {source.server.server_id for source in self.active.values()}
        options = [
            sources[0]
            for shnum, sources in self.candidates.items()
            if sources and shnum not in self.active and shnum not in exclude
        ]
        if not options:
            return None
        return min(
            options,
            key=lambda s: (s.server.server_id in busy, self.arrival_rank.get(s.server.server_id, 0), s.shnum),
        )

    def _discard(self, source: _ShareSource) -> None:
        sources = self.candidates.get(source.shnum, [])
        if source in sources:
            sources.remove(source)

    async def activate(self, source: _ShareSource) -> None:
        """Fetch and verify a share's hash trees so its blocks can be checked."""
        assert self.ueb is not None and self.crypttext_tree is not None
        offsets = await source.header()
        tree_bytes = await source.read(offsets.block_hashes, offsets.share_hashes - offsets.block_hashes)
        chain_bytes = await source.read(offsets.share_hashes, offsets.uri_extension - offsets.share_hashes)
        try:
            block_hashes = unpack_hashes(tree_bytes)
            chain = unpack_share_hash_chain(chain_bytes)
            chain.pop(self.share_tree.get_leaf_index(source.shnum), None)
            self.share_tree.set_hashes(chain, leaves={source.shnum: block_hashes[0]})
            tree = IncompleteHashTree(self.ueb.num_segments)
            if len(block_hashes) != len(tree):
                raise _BadShare(f"share {source.shnum}: block hash tree has the wrong size", corrupt=True)
            tree.set_hashes(dict(enumerate(block_hashes)))
            if not self.crypttext_tree[len(self.crypttext_tree) - 1]:
                crypttext_bytes = await source.read(offsets.crypttext_hash_tree, offsets.block_hashes - offsets.crypttext_hash_tree)
                self.crypttext_tree.set_hashes(dict(enumerate(unpack_hashes(crypttext_bytes))))
        except (BadHashError, NotEnoughHashesError, FormatError, IndexError) as e:
            raise _BadShare(f"share {source.shnum}: hash trees do not verify: {e}", corrupt=True) from None
        source.offsets = offsets
        source.block_tree = tree
        self.active[source.shnum] = source

    async def ensure_active(self) -> None:
        while len(self.active) < self.cap.needed:
            source = self._next_candidate(exclude=set())
            if source is None:
                raise NotEnoughSharesError(self._shortfall())
            self._discard(source)
            try:
                await self.activate(source)
            except _BadShare as problem:
                await self._drop(source, problem)

    async def fetch_block(self, source: _ShareSource, segnum: int) -> tuple[int, bytes]:
        assert source.offsets is not None and source.block_tree is not None
        where, length = source.offsets.block_range(segnum, self.layout.num_segments, self.layout.tail_block_size)
        block = await source.read(where, length)
        if len(block) != length or hashes.block_hash(block) != source.block_tree.get_leaf(segnum):
            raise _BadShare(f"share {source.shnum}: block {segnum} does not match its hash", corrupt=True)
        return source.shnum, block

    async def segment(self, segnum: int) -> bytes:
        """The verified crypttext of one segment (unpadded)."""
        assert self.crypttext_tree is not None
        while True:
            await self.ensure_active()
            chosen = sorted(self.active.values(), key=lambda s: s.shnum)[: self.cap.needed]
            results = await defer.DeferredList(
                [defer.Deferred.fromCoroutine(self.fetch_block(s, segnum)) for s in chosen], consumeErrors=True
            )
            blocks: dict[int, bytes] = {}
            for source, (ok, value) in zip(chosen, results, strict=True):
                if ok:
                    blocks[value[0]] = value[1]
                else:
                    failure: Any = value
                    error = failure.value
                    problem = error if isinstance(error, _BadShare) else _BadShare(str(error), corrupt=False)
                    await self._drop(source, problem)
            if len(blocks) < self.cap.needed:
                continue
            padded = await _decode_in_thread(self.codec, blocks)
            _, length = self.layout.segment_range(segnum)
            crypttext = padded[:length]
            if hashes.crypttext_segment_hash(crypttext) != self.crypttext_tree.get_leaf(segnum):
                # Every block verified, so the crypttext tree itself must be bad: nothing to retry with.
                raise LafsError(f"segment {segnum} does not match the crypttext hash tree; the file cannot be verified")
            return crypttext


async def _decode_in_thread(codec: ZfecCodec, blocks: dict[int, bytes]) -> bytes:
    return codec.decode(blocks)


async def download_immutable(
    cap: caps.CHKFileCap,
    servers: Sequence[StorageServerClient],
    *,
    sink: Callable[[bytes], Any],
    offset: int = 0,
    length: int | None = None,
    on_start: Callable[[], Any] | None = None,
) -> None:
    """Write the plaintext bytes ``[offset, offset+length)`` of the file to ``sink``, segment by segment.

    When ``sink`` returns a Deferred, the next segment is delivered only after it fires.
    ``on_start`` is called once the shares are found and verified, before the first byte.
    """
    if length is None:
        length = cap.size - offset
    end = min(cap.size, offset + length)
    if offset >= end:
        return
    download = _Download(cap, servers)
    await download.locate()
    await download.load_ueb()
    await download.ensure_active()
    if on_start is not None:
        on_start()
    layout = download.layout
    first = offset // layout.segment_size
    last = (end - 1) // layout.segment_size
    key = cap.key
    pending: defer.Deferred[bytes] | None = defer.Deferred.fromCoroutine(download.segment(first))
    for segnum in range(first, last + 1):
        assert pending is not None
        crypttext = await pending
        # Fetch the next segment while this one is decrypted and delivered.
        pending = defer.Deferred.fromCoroutine(download.segment(segnum + 1)) if segnum < last else None
        segment_start = segnum * layout.segment_size
        plaintext = AESCTRStream(key, segment_start).process(crypttext)
        lo = max(offset, segment_start) - segment_start
        hi = min(end, segment_start + len(plaintext)) - segment_start
        delivered = sink(plaintext[lo:hi])
        if isinstance(delivered, defer.Deferred):
            # The consumer is slow: wait for it rather than buffering the file in memory.
            await delivered
