"""Immutable (CHK) download: find shares, verify everything against the cap, decode, decrypt, stream.

Every byte used is checked before use: the UEB against the cap, each share's
block-hash tree against the share-hash tree in the UEB, each block against its
share's tree, each decoded segment against the crypttext hash tree.  A share
that fails any check, or whose server fails, is dropped (and reported as
corrupt when it is corrupt) and another share takes its place for the same
segment, without starting over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

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
from lafs.storage_client.interface import BucketReaderClient, ServerError, StorageServerClient
from lafs.workers import Workers

log = Logger()
READ_SEGMENTS = 4
"""Consecutive segments whose blocks are read from each share in one call.

As for uploads (``upload.WRITE_SEGMENTS``), each remote call has a fixed cost
on both ends, so a download reads runs of blocks and fetches the next run
while the current ones are decrypted and delivered."""
RUNS_AHEAD = 2
"""Runs requested at once: the next run's blocks arrive while the current one is verified."""


class NotEnoughSharesError(LafsError):
    """Too few good shares could be found to rebuild the file."""


class BadShare(Exception):
    """A share that failed a check; carries whether it is corrupt (worth reporting) or just unreachable."""

    def __init__(self, message: str, corrupt: bool) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class ShareSource:
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
            raise BadShare(str(e), corrupt=False) from None

    async def header(self) -> ImmutableShareOffsets:
        if self.offsets is None:
            raw = await self.read(0, V2_HEADER.size)
            try:
                self.offsets = ImmutableShareOffsets.unpack(raw)
            except ShareLayoutError as e:
                raise BadShare(f"share {self.shnum}: {e}", corrupt=True) from None
        return self.offsets

    async def ueb_bytes(self) -> bytes:
        offsets = await self.header()
        length_field = await self.read(offsets.uri_extension, offsets.ueb_length_size)
        try:
            length = unpack_ueb_length(offsets, length_field)
        except ShareLayoutError as e:
            raise BadShare(f"share {self.shnum}: {e}", corrupt=True) from None
        return await self.read(offsets.uri_extension + offsets.ueb_length_size, length)


class ImmutableDownload:
    """One CHK file on the grid, in phases a download, a checker and a verifier share.

    ``locate`` asks every server which shares it holds; ``load_ueb`` finds a URI
    extension block that matches the cap; ``ensure_active`` verifies the hash
    trees of k shares; ``segments`` fetches, verifies and decodes runs of
    segments; ``verify_share`` checks every block of one share.
    """

    def __init__(self, cap: caps.CHKFileCap, servers: Sequence[StorageServerClient], workers: Workers) -> None:
        self.cap = cap
        self.servers = list(servers)
        self.storage_index = cap.get_storage_index()
        self.candidates: dict[int, list[ShareSource]] = {}
        self.active: dict[int, ShareSource] = {}
        self.ueb: UriExtension | None = None
        self.share_tree = IncompleteHashTree(cap.total)
        self.crypttext_tree: IncompleteHashTree | None = None
        self.codec = ZfecCodec(cap.needed, cap.total)
        self.found_shares = 0
        self.arrival_rank: dict[str, int] = {}
        self._workers = workers

    async def locate(self) -> None:
        """Ask every server for its shares; servers that answer first are used first."""
        arrivals: list[tuple[StorageServerClient, Mapping[int, BucketReaderClient]]] = []

        def arrived(readers: Mapping[int, BucketReaderClient], server: StorageServerClient) -> None:
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
                    self.candidates.setdefault(shnum, []).append(ShareSource(shnum, server, reader))
        self.arrival_rank = {server.server_id: rank for rank, (server, _) in enumerate(arrivals)}
        self.found_shares = len(self.candidates)
        if self.found_shares < self.cap.needed:
            raise NotEnoughSharesError(self._shortfall())

    def seed(self, sources: Sequence[tuple[StorageServerClient, int, BucketReaderClient]]) -> None:
        """Take shares someone else located (server, share number, reader; quickest server first) instead of asking."""
        for server, shnum, reader in sources:
            if 0 <= shnum < self.cap.total:
                self.candidates.setdefault(shnum, []).append(ShareSource(shnum, server, reader))
            self.arrival_rank.setdefault(server.server_id, len(self.arrival_rank))
        self.found_shares = len(self.candidates)
        if self.found_shares < self.cap.needed:
            raise NotEnoughSharesError(self._shortfall())

    def _shortfall(self) -> str:
        good = len(self.active) + sum(1 for shnum, c in self.candidates.items() if c and shnum not in self.active)
        return (
            f"not enough shares to rebuild the file: found {self.found_shares} distinct share(s) "
            f"({good} still usable) on {len(self.servers)} server(s) asked; {self.cap.needed} "
            f"{'is' if self.cap.needed == 1 else 'are'} needed"
        )

    async def _drop(self, source: ShareSource, problem: BadShare) -> None:
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
                    raise BadShare(f"share {source.shnum}: URI extension block does not match the cap", corrupt=True)
                ueb = UriExtension.from_bytes(data)
                if (ueb.size, ueb.needed_shares, ueb.total_shares) != (self.cap.size, self.cap.needed, self.cap.total):
                    raise BadShare(f"share {source.shnum}: URI extension block disagrees with the cap", corrupt=True)
                self.ueb = ueb
                self.share_tree.set_hashes({0: ueb.share_root_hash})
                layout = immutable_segment_layout(self.cap.size, ueb.segment_size, self.cap.needed, self.cap.total)
                if layout.num_segments != ueb.num_segments:
                    raise BadShare("URI extension block has an inconsistent segment count", corrupt=True)
                self.crypttext_tree = IncompleteHashTree(ueb.num_segments)
                self.crypttext_tree.set_hashes({0: ueb.crypttext_root_hash})
                self.layout = layout
            except (BadShare, FormatError) as e:
                problem = e if isinstance(e, BadShare) else BadShare(str(e), corrupt=True)
                self._discard(source)
                await self._drop(source, problem)
        return self.ueb

    def _next_candidate(self, exclude: set[int]) -> ShareSource | None:
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

    def _discard(self, source: ShareSource) -> None:
        sources = self.candidates.get(source.shnum, [])
        if source in sources:
            sources.remove(source)

    async def activate(self, source: ShareSource) -> None:
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
                raise BadShare(f"share {source.shnum}: block hash tree has the wrong size", corrupt=True)
            tree.set_hashes(dict(enumerate(block_hashes)))
            if not self.crypttext_tree[len(self.crypttext_tree) - 1]:
                crypttext_bytes = await source.read(offsets.crypttext_hash_tree, offsets.block_hashes - offsets.crypttext_hash_tree)
                self.crypttext_tree.set_hashes(dict(enumerate(unpack_hashes(crypttext_bytes))))
        except (BadHashError, NotEnoughHashesError, FormatError, IndexError) as e:
            raise BadShare(f"share {source.shnum}: hash trees do not verify: {e}", corrupt=True) from None
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
            except BadShare as problem:
                await self._drop(source, problem)

    async def fetch_blocks(self, source: ShareSource, first: int, last: int) -> list[memoryview]:
        """One share's (unverified) blocks for segments ``first..last``, read in one call."""
        assert source.offsets is not None
        ranges = [
            source.offsets.block_range(segnum, self.layout.num_segments, self.layout.tail_block_size)
            for segnum in range(first, last + 1)
        ]
        start = ranges[0][0]
        length = ranges[-1][0] + ranges[-1][1] - start
        data = memoryview(await source.read(start, length))
        if len(data) != length:
            raise BadShare(f"share {source.shnum}: blocks {first}..{last} are cut short", corrupt=True)
        return [data[where - start : where - start + size] for where, size in ranges]

    async def segments(self, first: int, last: int) -> list[bytes]:
        """The verified crypttext (unpadded) of segments ``first..last``."""
        fetched: dict[int, tuple[ShareSource, list[memoryview]]] = {}
        while True:
            while len(fetched) < self.cap.needed:
                await self.ensure_active()
                # Shares already read stay; only the ones that failed are replaced.
                chosen = [s for s in sorted(self.active.values(), key=lambda s: s.shnum) if s.shnum not in fetched]
                chosen = chosen[: self.cap.needed - len(fetched)]
                results = await defer.DeferredList(
                    [defer.Deferred.fromCoroutine(self.fetch_blocks(s, first, last)) for s in chosen], consumeErrors=True
                )
                for source, (ok, value) in zip(chosen, results, strict=True):
                    if ok:
                        fetched[source.shnum] = (source, value)
                    else:
                        failure: Any = value
                        error = failure.value
                        problem = error if isinstance(error, BadShare) else BadShare(str(error), corrupt=False)
                        await self._drop(source, problem)
            # Hashing and decoding run in a thread (hashlib and zfec release the GIL),
            # overlapping with the reactor receiving the next run.
            bad, crypttexts = await self._workers.run(self._verify_and_decode, fetched, first, last)
            if not bad:
                return crypttexts
            for shnum, message in bad.items():
                source, _ = fetched.pop(shnum)
                await self._drop(source, BadShare(message, corrupt=True))

    async def verify_share(self, source: ShareSource) -> None:
        """Check every block of one share against its verified hash trees; raise BadShare if any fails.

        Needs ``load_ueb`` first.  Reads the share's blocks READ_SEGMENTS at a time.
        """
        await self.activate(source)
        try:
            num_segments = self.layout.num_segments
            for first in range(0, num_segments, READ_SEGMENTS):
                last = min(num_segments, first + READ_SEGMENTS) - 1
                blocks = await self.fetch_blocks(source, first, last)
                assert source.block_tree is not None
                for segnum, block in zip(range(first, last + 1), blocks, strict=True):
                    if hashes.block_hash(block) != source.block_tree.get_leaf(segnum):
                        raise BadShare(f"share {source.shnum}: block {segnum} does not match its hash", corrupt=True)
        finally:
            self.active.pop(source.shnum, None)

    def _verify_and_decode(
        self, fetched: dict[int, tuple[ShareSource, list[memoryview]]], first: int, last: int
    ) -> tuple[dict[int, str], list[bytes]]:
        """Shares whose blocks fail their hashes (by number, with why); else the checked crypttexts."""
        assert self.crypttext_tree is not None
        bad = {}
        for shnum, (source, blocks) in fetched.items():
            assert source.block_tree is not None
            for segnum, block in zip(range(first, last + 1), blocks, strict=True):
                if hashes.block_hash(block) != source.block_tree.get_leaf(segnum):
                    bad[shnum] = f"share {shnum}: block {segnum} does not match its hash"
                    break
        if bad:
            return bad, []
        crypttexts = []
        for index, segnum in enumerate(range(first, last + 1)):
            padded = self.codec.decode({shnum: blocks[index] for shnum, (_, blocks) in fetched.items()})
            _, length = self.layout.segment_range(segnum)
            crypttext = padded[:length]
            if hashes.crypttext_segment_hash(crypttext) != self.crypttext_tree.get_leaf(segnum):
                # Every block verified, so the crypttext tree itself must be bad: nothing to retry with.
                raise LafsError(f"segment {segnum} does not match the crypttext hash tree; the file cannot be verified")
            crypttexts.append(crypttext)
        return {}, crypttexts


async def download_immutable(
    cap: caps.CHKFileCap,
    servers: Sequence[StorageServerClient],
    *,
    sink: Callable[[bytes], Any],
    workers: Workers,
    offset: int = 0,
    length: int | None = None,
    on_start: Callable[[], Any] | None = None,
    download: ImmutableDownload | None = None,
) -> None:
    """Write the plaintext bytes ``[offset, offset+length)`` of the file to ``sink``, segment by segment.

    When ``sink`` returns a Deferred, the next segment is delivered only after it fires.
    ``on_start`` is called once the shares are found and verified, before the first byte.
    ``download``, when given, is one whose shares were already located (a repair's).
    """
    if length is None:
        length = cap.size - offset
    end = min(cap.size, offset + length)
    if offset >= end:
        return
    if download is None:
        download = ImmutableDownload(cap, servers, workers)
        await download.locate()
    await download.load_ueb()
    await download.ensure_active()
    if on_start is not None:
        on_start()
    layout = download.layout
    first = offset // layout.segment_size
    last = (end - 1) // layout.segment_size

    next_run_first = first

    def fetch_next_run() -> defer.Deferred[list[bytes]] | None:
        nonlocal next_run_first
        run_first = next_run_first
        if run_first > last:
            return None
        next_run_first = min(last, run_first + READ_SEGMENTS - 1) + 1
        return defer.Deferred.fromCoroutine(download.segments(run_first, next_run_first - 1))

    key = cap.key
    segnum = first
    # Runs in flight: while one is verified and delivered, the next ones are on their way.
    pending = [d for d in (fetch_next_run() for _ in range(RUNS_AHEAD)) if d is not None]
    try:
        while pending:
            crypttexts = await pending.pop(0)
            following = fetch_next_run()
            if following is not None:
                pending.append(following)
            for crypttext in crypttexts:
                segment_start = segnum * layout.segment_size
                plaintext = AESCTRStream(key, segment_start).process(crypttext)
                lo = max(offset, segment_start) - segment_start
                hi = min(end, segment_start + len(plaintext)) - segment_start
                delivered = sink(plaintext[lo:hi])
                if isinstance(delivered, defer.Deferred):
                    # The consumer is slow: wait for it rather than buffering the file in memory.
                    await delivered
                segnum += 1
    finally:
        # If delivery stopped early (the consumer went away), runs still in flight have nobody to report to.
        for abandoned in pending:
            abandoned.addErrback(lambda _: None)
