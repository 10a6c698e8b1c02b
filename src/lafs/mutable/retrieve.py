"""Reading one version of a mutable file: fetch k verified shares, decode, decrypt, stream.

Each share used first has its whole block hash tree fetched and checked
against the signed root hash (through its share hash chain); then every
block is checked against that tree before it is decoded.  A share that fails
a check is reported to its server as corrupt, one whose server fails is
dropped, and another share of the same version takes its place.  MDMF range
reads fetch only the segments that hold the range.

Every read also fetches the share's leading bytes (its checkstring: version,
seqnum, root hash): a share another writer replaced since the servermap was
made no longer matches, and is dropped as changed, not reported as corrupt.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from lafs.core.codec import ZfecCodec
from lafs.core.errors import FormatError
from lafs.core.mutable_layout import (
    MDMF_SALT_SIZE,
    MDMF_VERSION,
    MutableVersionInfo,
    SDMFOffsets,
    mdmf_block_range,
)
from lafs.core.share_layout import unpack_hashes
from lafs.mutable.common import (
    SHARE_TYPE,
    CapKeys,
    FileChangedWhileReadingError,
    MutableFileError,
    NotEnoughSharesError,
    UnrecoverableFileError,
)
from lafs.mutable.encode import ShareCorruptError, block_leaf, check_block_tree, crypt, layout_of
from lafs.mutable.servermap import ServerMap, ShareRecord
from lafs.storage_client.interface import ServerError

log = Logger()

READ_SEGMENTS = 4
"""MDMF segments fetched from each share per round trip."""


class _Unreachable(Exception):
    pass


class VersionReader:
    """Reads segments of one version, switching shares as they fail."""

    def __init__(self, keys: CapKeys, servermap: ServerMap, info: MutableVersionInfo) -> None:
        self.keys = keys
        self.info = info
        self.layout = layout_of(info)
        self.codec = ZfecCodec(info.needed, info.total)
        by_shnum = servermap.shares_of(info)
        # One copy of each share number first (in the servermap's permuted order), extra copies after.
        firsts = [copies[0] for copies in by_shnum.values()]
        extras = [copy for copies in by_shnum.values() for copy in copies[1:]]
        self.candidates: list[ShareRecord] = firsts + extras
        self.checkstrings = servermap.checkstrings
        self.active: dict[int, tuple[ShareRecord, list[bytes]]] = {}
        self.corrupt = 0
        self.unreachable = 0
        self.changed = 0

    # --- share selection ------------------------------------------------------------

    def _drop(self, record: ShareRecord) -> None:
        current = self.active.get(record.shnum)
        if current is not None and current[0] is record:
            del self.active[record.shnum]

    def _fail(self, record: ShareRecord, reason: str, corrupt: bool) -> defer.Deferred[Any] | None:
        self._drop(record)
        if not corrupt:
            self.unreachable += 1
            return None
        self.corrupt += 1
        log.info("corrupt mutable share {shnum} on {server}: {reason}", shnum=record.shnum, server=record.server.server_id, reason=reason)
        d = defer.Deferred.fromCoroutine(
            record.server.advise_corrupt_share(SHARE_TYPE, self.keys.storage_index, record.shnum, reason.encode("utf-8"))
        )
        d.addErrback(lambda _: None)
        return d

    async def _read(self, record: ShareRecord, ranges: list[tuple[int, int]]) -> list[bytes] | None:
        """The pieces ``ranges`` of one share, or None when its server failed or the share has changed."""
        checkstring = self.checkstrings.get((record.server.server_id, record.shnum), b"")
        try:
            answer = await record.server.slot_readv(self.keys.storage_index, [record.shnum], [(0, len(checkstring)), *ranges])
        except ServerError as e:
            self._fail(record, str(e), corrupt=False)
            return None
        pieces = [bytes(p) for p in answer.get(record.shnum, [])]
        if not pieces or pieces[0] != checkstring:
            self._changed(record)
            return None
        return pieces[1:]

    def _changed(self, record: ShareRecord) -> None:
        self._drop(record)
        self.changed += 1
        log.info(
            "mutable share {shnum} on {server} changed since it was mapped", shnum=record.shnum, server=record.server.server_id
        )

    async def activate(self, record: ShareRecord) -> None:
        """Fetch and verify one share's block hash tree; on success the share becomes active."""
        start, length = record.block_hash_tree_range
        pieces = await self._read(record, [(start, length)])
        if pieces is None:
            return
        try:
            data = pieces[0] if pieces else b""
            if len(data) != length:
                raise ShareCorruptError(f"share {record.shnum}: block hash tree is truncated")
            leaves = check_block_tree(self.info, record.shnum, unpack_hashes(data), record.share_hash_chain)
        except (ShareCorruptError, FormatError) as e:
            await _settle(self._fail(record, str(e), corrupt=True))
            return
        if record.shnum not in self.active:
            self.active[record.shnum] = (record, leaves)

    async def ensure_active(self, exclude: Collection[int] = ()) -> None:
        """Have k shares with verified block trees, or raise NotEnoughSharesError."""
        k = self.info.needed
        while len(self.active) < k:
            wanted = k - len(self.active)
            batch: list[ShareRecord] = []
            while self.candidates and len(batch) < wanted:
                record = self.candidates.pop(0)
                if record.shnum in self.active or record.shnum in exclude or any(r.shnum == record.shnum for r in batch):
                    continue
                batch.append(record)
            if not batch:
                if self.changed:
                    raise FileChangedWhileReadingError(
                        f"the file changed while it was being read: {self.changed} share(s) of version seqnum "
                        f"{self.info.seqnum} were replaced by another writer ({len(self.active)} usable, need {k})"
                    )
                raise NotEnoughSharesError(
                    f"ran out of good shares of version seqnum {self.info.seqnum}: "
                    f"{len(self.active)} usable, need {k} ({self.corrupt} corrupt, {self.unreachable} unreachable)",
                    found=len(self.active),
                    needed=k,
                )
            await defer.DeferredList([defer.Deferred.fromCoroutine(self.activate(r)) for r in batch], consumeErrors=True)

    # --- blocks -----------------------------------------------------------------------

    def _ranges(self, record: ShareRecord, first: int, last: int) -> list[tuple[int, int]]:
        layout = self.layout
        if isinstance(record.offsets, SDMFOffsets):
            return [(record.offsets.share_data, record.offsets.enc_privkey - record.offsets.share_data)]
        return [
            mdmf_block_range(seg, layout.num_segments, layout.block_size, layout.tail_block_size)
            for seg in range(first, last + 1)
        ]

    async def fetch_blocks(self, shnum: int, first: int, last: int) -> list[tuple[bytes, bytes]] | None:
        """Verified (salt, block) of each segment in [first, last] from one active share, or None if it failed."""
        record, leaves = self.active[shnum]
        layout = self.layout
        pieces = await self._read(record, self._ranges(record, first, last))
        if pieces is None:
            return None
        out = []
        try:
            if len(pieces) != last - first + 1:
                raise ShareCorruptError(f"share {shnum}: server returned no data")
            for seg, piece in zip(range(first, last + 1), pieces, strict=True):
                expected = layout.tail_block_size if seg == layout.num_segments - 1 else layout.block_size
                if self.info.version == MDMF_VERSION:
                    salt, block = piece[:MDMF_SALT_SIZE], piece[MDMF_SALT_SIZE:]
                else:
                    salt, block = self.info.salt, piece
                if len(block) != expected:
                    raise ShareCorruptError(f"share {shnum}: block {seg} is {len(block)} bytes, expected {expected}")
                if block_leaf(self.info.version, salt, block) != leaves[seg]:
                    raise ShareCorruptError(f"share {shnum}: block {seg} does not match its block hash")
                out.append((salt, block))
        except ShareCorruptError as e:
            await _settle(self._fail(record, str(e), corrupt=True))
            return None
        return out

    async def segments(self, first: int, last: int) -> list[bytes]:
        """The plaintext of segments ``first`` .. ``last`` (the tail without its padding)."""
        readkey = self.keys.readkey
        if readkey is None:
            raise MutableFileError("a verify cap can check a mutable file's shares but cannot decrypt them")
        plaintexts = []
        for seg, (salt, padded) in zip(range(first, last + 1), await self.coded_segments(first, last), strict=True):
            _, seg_length = self.layout.segment_range(seg)
            plaintexts.append(crypt(readkey, salt, padded[:seg_length]))
        return plaintexts

    async def coded_segments(self, first: int, last: int) -> list[tuple[bytes, bytes]]:
        """(salt, padded crypttext) of segments ``first`` .. ``last``, decoded from k verified shares.

        Coding the padded crypttext again gives every share's blocks (a repair rebuilds shares so).
        """
        got: dict[int, list[tuple[bytes, bytes]]] = {}
        k = self.info.needed
        while len(got) < k:
            await self.ensure_active(exclude=set(got))
            todo = [shnum for shnum in self.active if shnum not in got][: k - len(got)]
            results = await defer.DeferredList(
                [defer.Deferred.fromCoroutine(self.fetch_blocks(shnum, first, last)) for shnum in todo], consumeErrors=True
            )
            for shnum, (ok, value) in zip(todo, results, strict=True):
                if ok and value is not None:
                    got[shnum] = value
        chosen = sorted(got)[:k]
        coded = []
        for i in range(last - first + 1):
            padded = self.codec.decode({shnum: got[shnum][i][1] for shnum in chosen})
            coded.append((got[chosen[0]][i][0], bytes(padded)))
        return coded


async def _settle(d: defer.Deferred[Any] | None) -> None:
    if d is not None:
        await d


def choose_version(servermap: ServerMap) -> MutableVersionInfo:
    info = servermap.best_recoverable_version()
    if info is None:
        versions = servermap.versions()
        found = max((len(v) for v in versions.values()), default=0)
        needed = max((i.needed for i in versions), default=0)
        raise UnrecoverableFileError(
            f"the mutable file cannot be recovered: {servermap.describe_unrecoverable()}", found=found, needed=needed
        )
    return info


async def retrieve(
    keys: CapKeys,
    servermap: ServerMap,
    sink: Callable[[bytes], Any],
    *,
    info: MutableVersionInfo | None = None,
    offset: int = 0,
    length: int | None = None,
    on_start: Callable[[], Any] | None = None,
) -> MutableVersionInfo:
    """Deliver plaintext bytes ``[offset, offset+length)`` of a version (default: the best one) to ``sink``.

    When ``sink`` returns a Deferred, nothing more is delivered until it fires.
    Returns the version read.
    """
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("a read offset and length cannot be negative")
    if info is None:
        info = choose_version(servermap)
    end = info.data_length if length is None else min(info.data_length, offset + length)
    reader = VersionReader(keys, servermap, info)
    if offset >= end:
        if on_start is not None:
            on_start()
        return info
    await reader.ensure_active()
    if on_start is not None:
        on_start()
    layout = reader.layout
    first = offset // layout.segment_size
    last = (end - 1) // layout.segment_size
    run = first
    while run <= last:
        run_last = min(last, run + READ_SEGMENTS - 1)
        for seg, plaintext in zip(range(run, run_last + 1), await reader.segments(run, run_last), strict=True):
            seg_start = seg * layout.segment_size
            lo = max(offset, seg_start) - seg_start
            hi = min(end, seg_start + len(plaintext)) - seg_start
            delivered = sink(plaintext[lo:hi])
            if isinstance(delivered, defer.Deferred):
                # A slow consumer: wait rather than hold more of the file in memory.
                await delivered
        run = run_last + 1
    return info


async def read_all(keys: CapKeys, servermap: ServerMap, info: MutableVersionInfo | None = None) -> tuple[bytes, MutableVersionInfo]:
    """The whole plaintext of a version (default: the best one)."""
    pieces: list[bytes] = []
    info = await retrieve(keys, servermap, pieces.append, info=info)
    return b"".join(pieces), info
