"""Immutable (CHK) upload: encrypt, segment, erasure-code, hash, place shares on servers, push.

Memory stays bounded by the segment size times the pipeline depth: the file
is read twice from its source (once for the convergent key, once to encode)
and never held whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from lafs.core import caps, hashes
from lafs.core.codec import ZfecCodec, immutable_segment_layout, pad_segment
from lafs.core.crypto import AESCTRStream
from lafs.core.errors import LafsError
from lafs.core.happiness import happiness, plan_placement
from lafs.core.hashes import BytesLike
from lafs.core.hashtree import HashTree
from lafs.core.share_layout import (
    UriExtension,
    allocated_size,
    immutable_share_offsets,
    num_share_hashes,
    pack_hashes,
    pack_share_hash_chain,
    pack_ueb_with_length,
)
from lafs.storage_client.interface import BucketWriterClient, ServerError, StorageServerClient

log = Logger()
WRITE_SEGMENTS = 4
"""Consecutive segments whose blocks go to each server in one write.

Every remote call costs both ends a fixed amount of CPU (the foolscap call
and its answer, reactor turns), so a few large writes beat many small ones:
on a 10-server loopback grid, writing 4 segments at a time cut the servers'
CPU per upload by about 40% and raised 128 MiB put from ~64 to ~85 MB/s."""
PIPELINE_WRITES = 1
"""How many runs of writes may await their answers while the next run is encoded.

One is enough to keep the servers busy; each more costs WRITE_SEGMENTS
encoded segments of memory (about 13 MiB for 1 MiB segments, 3-of-10)."""
HASH_READ_SIZE = 1024 * 1024


class UploadUnhappinessError(LafsError):
    """Shares could not be placed on enough distinct servers."""


class DataSource(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


@attrs.frozen
class UploadResult:
    cap: caps.LiteralFileCap | caps.CHKFileCap
    happiness: int = 0
    placements: dict[str, frozenset[int]] = attrs.field(factory=dict)


def convergence_hasher_for(size: int, needed: int, total: int, max_segment_size: int, secret: bytes) -> hashes.Sha256dHasher:
    """The hasher that, fed all ``size`` bytes of a file, yields the convergent key its upload uses."""
    segment_size = immutable_segment_layout(size, max_segment_size, needed, total).segment_size
    return hashes.convergence_hasher(needed, total, segment_size, secret)


def convergent_key(source: DataSource, needed: int, total: int, max_segment_size: int, secret: bytes) -> bytes:
    hasher = convergence_hasher_for(source.size, needed, total, max_segment_size, secret)
    for offset in range(0, source.size, HASH_READ_SIZE):
        hasher.update(source.read(offset, HASH_READ_SIZE))
    return hasher.digest()


class _Share:
    """One share being written to one server."""

    def __init__(self, shnum: int, server: StorageServerClient, writer: BucketWriterClient) -> None:
        self.shnum = shnum
        self.server = server
        self.writer = writer
        self.failed = False

    def write(self, offset: int, data: bytes) -> defer.Deferred[Any]:
        d = defer.Deferred.fromCoroutine(self.writer.write(offset, data))
        d.addErrback(self._failed)
        return d

    def _failed(self, failure: Any) -> None:
        if not self.failed:
            log.warn("share {n} on {s} failed: {e}", n=self.shnum, s=self.server.server_id, e=failure.getErrorMessage())
        self.failed = True


async def upload_immutable(
    source: DataSource,
    *,
    convergence_secret: bytes | None,
    needed: int,
    happy: int,
    total: int,
    servers_for: Callable[[bytes], Sequence[StorageServerClient]],
    lease_secret: bytes,
    max_segment_size: int = 1024 * 1024,
    convergent_key_hint: bytes | None = None,
    codec_factory: Callable[[int, int], ZfecCodec] = ZfecCodec,
) -> UploadResult:
    """Upload ``source``; return its cap.  ``servers_for(storage_index)`` gives servers in permuted order.

    ``convergent_key_hint`` is the key a ``convergence_hasher_for`` hasher gave for
    these very bytes (e.g. hashed while they arrived), saving a pass over the file;
    it is used only for convergent uploads.  ``codec_factory(needed, total)`` makes the
    erasure codec: plain zfec unless the caller has a faster parity coder (`lafs.isal`).
    """
    size = source.size
    if size <= caps.LIT_SIZE_THRESHOLD:
        return UploadResult(caps.LiteralFileCap(source.read(0, size)))
    layout = immutable_segment_layout(size, max_segment_size, needed, total)
    started = time.monotonic()
    if convergence_secret is None:
        key = os.urandom(16)
    elif convergent_key_hint is not None:
        key = convergent_key_hint
    else:
        key = await _in_thread(convergent_key, source, needed, total, max_segment_size, convergence_secret)
    storage_index = hashes.storage_index_hash(key)
    file_renew = hashes.file_renewal_secret_hash(hashes.my_renewal_secret_hash(lease_secret), storage_index)
    file_cancel = hashes.file_cancel_secret_hash(hashes.my_cancel_secret_hash(lease_secret), storage_index)
    secrets = _LeaseSecrets(file_renew, file_cancel)

    offsets = immutable_share_offsets(layout.block_size, layout.share_data_size, layout.num_segments, num_share_hashes(total))
    ueb_template = _ueb(layout, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32)
    share_size = allocated_size(offsets, len(ueb_template.to_bytes()))

    codec = codec_factory(needed, total)
    encryptor = AESCTRStream(key)
    crypttext_hasher = hashes.crypttext_hasher()
    segment_hashes: list[bytes] = []
    block_hashes: list[list[bytes]] = [[] for _ in range(total)]

    def encode_segments(first: int) -> _EncodedRun:
        # Runs in a worker thread: AES, coding and hashing release the GIL, so this
        # overlaps with the reactor pushing the previous run to the servers.
        run = _EncodedRun(first)
        parts: list[list[BytesLike]] = [[] for _ in range(total)]
        for segnum in range(first, min(first + WRITE_SEGMENTS, layout.num_segments)):
            offset, length = layout.segment_range(segnum)
            plaintext = source.read(offset, length)
            if len(plaintext) != length:
                raise LafsError(f"the file shrank while it was being uploaded (segment {segnum})")
            crypttext = encryptor.process(plaintext)
            crypttext_hasher.update(crypttext)
            run.segment_hashes.append(hashes.crypttext_segment_hash(crypttext))
            blocks = codec.encode(pad_segment(crypttext, needed))
            run.block_hashes.append([hashes.block_hash(block) for block in blocks])
            for shnum, block in enumerate(blocks):
                parts[shnum].append(block)
        for shnum in range(total):
            run.share_data.append(b"".join(parts[shnum]))
            parts[shnum] = []
        return run

    # One encoding thread, one run of segments ahead of the pushes, in order
    # (the AES stream and crypttext hash are sequential).
    from twisted.internet import reactor

    pool = ThreadPool(1, 1, name="lafs-encode")
    pool.start()

    def encode(first: int) -> defer.Deferred[_EncodedRun] | None:
        if first >= layout.num_segments:
            return None
        return threads.deferToThreadPool(reactor, pool, encode_segments, first)

    try:
        # Encoding needs no servers: the first run is encoded while the shares are placed.
        first_run = encode(0)
        assert first_run is not None
        try:
            servers = list(servers_for(storage_index))
            shares, existing = await _place_shares(servers, storage_index, secrets, share_size, needed, happy, total)
        except BaseException:
            first_run.addErrback(lambda _: None)
            raise
        placed = time.monotonic()
        try:
            last_writes = await _push_segments(
                first_run, encode, shares, existing, offsets.data, layout.block_size, segment_hashes, block_hashes, happy, needed
            )
        except BaseException:
            _abort(shares)
            raise
    finally:
        pool.stop()
    pushed = time.monotonic()
    crypttext_tree = HashTree(segment_hashes)
    block_trees = [HashTree(leaves) for leaves in block_hashes]
    share_tree = HashTree([tree.root for tree in block_trees])
    ueb = _ueb(layout, crypttext_hasher.digest(), crypttext_tree.root, share_tree.root)
    ueb_bytes = ueb.to_bytes()
    header = offsets.pack()
    tail_writes = []
    for share in shares:
        if share.failed:
            continue
        chain = [(i, share_tree[i]) for i in share_tree.needed_hashes(share.shnum, include_leaf=True)]
        pieces = [
            (0, header),
            (offsets.crypttext_hash_tree, pack_hashes(crypttext_tree)),
            (offsets.block_hashes, pack_hashes(block_trees[share.shnum])),
            (offsets.share_hashes, pack_share_hash_chain(chain)),
            (offsets.uri_extension, pack_ueb_with_length(offsets, ueb_bytes)),
        ]
        for where, data in pieces:
            tail_writes.append(share.write(where, data))
    # The last run's writes were not awaited: the tail follows them on each connection, in order.
    await defer.DeferredList(last_writes + tail_writes)
    closes = [defer.Deferred.fromCoroutine(_close(share)) for share in shares if not share.failed]
    await defer.DeferredList(closes)
    placements = _check_happiness(shares, existing, happy, needed)
    cap = caps.CHKFileCap(key, hashes.uri_extension_hash(ueb_bytes), needed, total, size)
    log.info(
        "uploaded {size} bytes: key and placement {a:.2f}s, segments {b:.2f}s, finish {c:.2f}s",
        size=size, a=placed - started, b=pushed - placed, c=time.monotonic() - pushed,
    )
    return UploadResult(cap, happiness(placements), {s: frozenset(n) for s, n in placements.items()})


@attrs.frozen
class _LeaseSecrets:
    """A file's lease secrets; each server gets its own, derived with its tubid as Tahoe does."""

    file_renew: bytes
    file_cancel: bytes

    def for_server(self, server: StorageServerClient) -> tuple[bytes, bytes]:
        seed = server.lease_seed
        return (
            hashes.bucket_renewal_secret_hash(self.file_renew, seed),
            hashes.bucket_cancel_secret_hash(self.file_cancel, seed),
        )


@attrs.define
class _EncodedRun:
    """WRITE_SEGMENTS consecutive segments, encoded: each share's blocks joined for one write."""

    first_segment: int
    share_data: list[bytes] = attrs.field(factory=list)
    segment_hashes: list[bytes] = attrs.field(factory=list)
    block_hashes: list[list[bytes]] = attrs.field(factory=list)
    """Per segment, the hash of each share's block."""


async def _push_segments(
    first_run: defer.Deferred[_EncodedRun],
    encode: Callable[[int], defer.Deferred[_EncodedRun] | None],
    shares: list[_Share],
    existing: dict[str, set[int]],
    data_offset: int,
    block_size: int,
    segment_hashes: list[bytes],
    block_hashes: list[list[bytes]],
    happy: int,
    needed: int,
) -> list[defer.Deferred[Any]]:
    """Send runs of encoded segments to their shares: PIPELINE_WRITES runs in flight while the next is encoded.

    Returns the last run's writes, still unanswered.
    """
    in_flight: list[list[defer.Deferred[Any]]] = []
    next_run: defer.Deferred[_EncodedRun] | None = first_run
    while next_run is not None:
        run = await next_run
        next_run = encode(run.first_segment + WRITE_SEGMENTS)
        segment_hashes.extend(run.segment_hashes)
        for hashes_of_blocks in run.block_hashes:
            for shnum, value in enumerate(hashes_of_blocks):
                block_hashes[shnum].append(value)
        offset = data_offset + run.first_segment * block_size
        share_data, run.share_data = run.share_data, []
        del run
        writes = []
        for share in shares:
            if not share.failed:
                writes.append(share.write(offset, share_data[share.shnum]))
            # The write holds its data until it is sent; dropping ours lets each go as soon as it is.
            share_data[share.shnum] = b""
        in_flight.append(writes)
        if next_run is None:
            break
        if len(in_flight) >= PIPELINE_WRITES:
            await defer.DeferredList(in_flight.pop(0))
        _check_happiness(shares, existing, happy, needed)
    for writes in in_flight[:-1]:
        await defer.DeferredList(writes)
    return in_flight[-1] if in_flight else []


async def _close(share: _Share) -> None:
    try:
        await share.writer.close()
    except ServerError as e:
        log.warn("closing share {n} on {s} failed: {e}", n=share.shnum, s=share.server.server_id, e=str(e))
        share.failed = True


def _ueb(layout: Any, crypttext_hash: bytes, crypttext_root: bytes, share_root: bytes) -> UriExtension:
    return UriExtension(
        codec_name=b"crs",
        codec_params=layout.codec_params(),
        tail_codec_params=layout.tail_codec_params(),
        size=layout.file_size,
        segment_size=layout.segment_size,
        num_segments=layout.num_segments,
        needed_shares=layout.needed,
        total_shares=layout.total,
        crypttext_hash=crypttext_hash,
        crypttext_root_hash=crypttext_root,
        share_root_hash=share_root,
    )


def _placements(shares: Sequence[_Share], existing: dict[str, set[int]]) -> dict[str, set[int]]:
    placements = {server: set(held) for server, held in existing.items()}
    for share in shares:
        if not share.failed:
            placements.setdefault(share.server.server_id, set()).add(share.shnum)
    return placements


def _check_happiness(shares: Sequence[_Share], existing: dict[str, set[int]], happy: int, needed: int) -> dict[str, set[int]]:
    placements = _placements(shares, existing)
    found = happiness(placements)
    if found < happy:
        for share in shares:
            if not share.failed:
                share.failed = True
                defer.Deferred.fromCoroutine(share.writer.abort()).addErrback(lambda _: None)
        raise UploadUnhappinessError(_unhappy_message(found, happy, needed))
    return placements


def _unhappy_message(found: int, happy: int, needed: int) -> str:
    return (
        f"shares could be placed or found on only {found} server(s); this upload needs them on at least "
        f"{happy} server(s) such that any {needed} of them have enough shares to recover the file"
    )


async def _place_shares(
    servers: Sequence[StorageServerClient],
    storage_index: bytes,
    secrets: _LeaseSecrets,
    share_size: int,
    needed: int,
    happy: int,
    total: int,
) -> tuple[list[_Share], dict[str, set[int]]]:
    """Ask servers for existing shares and allocate the rest as Tahoe's placement does (facts §9.2)."""
    candidates = list(servers)[: 2 * total] if len(servers) > 2 * total else list(servers)
    writable = [s for s in candidates if _fits(s, share_size)]
    # Existing shares: allocate_buckets with no share numbers reports what a server holds.
    queries = [defer.Deferred.fromCoroutine(s.allocate_buckets(storage_index, *secrets.for_server(s), set(), share_size)) for s in writable]
    answers = await defer.DeferredList(queries, consumeErrors=True)
    existing: dict[str, set[int]] = {}
    alive: list[StorageServerClient] = []
    for server, (ok, result) in zip(writable, answers, strict=True):
        if ok:
            alive.append(server)
            if result.already_have:
                existing[server.server_id] = set(result.already_have)
    shares: list[_Share] = []
    refused: set[str] = set()
    by_id = {s.server_id: s for s in alive}
    permuted_ids = [s.server_id for s in candidates]
    for _ in range(3):
        usable = {s.server_id for s in alive if s.server_id not in refused}
        held = _placements(shares, existing)
        plan = plan_placement(permuted_ids, usable, held, total)
        requests = [(by_id[server_id], wanted) for server_id, wanted in plan.items() if wanted]
        if not requests:
            break
        results = await defer.DeferredList(
            [
                defer.Deferred.fromCoroutine(s.allocate_buckets(storage_index, *secrets.for_server(s), w, share_size))
                for s, w in requests
            ],
            consumeErrors=True,
        )
        for (server, wanted), (ok, result) in zip(requests, results, strict=True):
            if not ok:
                refused.add(server.server_id)
                continue
            already, writers = result.already_have, result.writers
            if already:
                existing.setdefault(server.server_id, set()).update(already)
            for shnum, writer in writers.items():
                shares.append(_Share(shnum, server, writer))
            if wanted - set(writers) - set(already):
                # Out of space (or busy with another upload of these shares): place them elsewhere.
                refused.add(server.server_id)
        if happiness(_placements(shares, existing)) >= min(total, len(by_id)):
            break
    placed = set().union(*_placements(shares, existing).values()) if shares or existing else set()
    unplaced = set(range(total)) - placed
    found = happiness(_placements(shares, existing))
    if found < happy or unplaced:
        _abort(shares)
        if found >= happy and unplaced:
            raise UploadUnhappinessError(f"could not place shares {sorted(unplaced)} on any server")
        raise UploadUnhappinessError(_unhappy_message(found, happy, needed))
    return shares, existing


def _abort(shares: list[_Share]) -> None:
    """Tell the servers to throw these partial shares away (an upload that failed leaves none behind)."""
    for share in shares:
        defer.Deferred.fromCoroutine(share.writer.abort()).addErrback(lambda _: None)


def _fits(server: StorageServerClient, share_size: int) -> bool:
    try:
        return server.version.maximum_immutable_share_size >= share_size
    except ServerError:
        return False


async def _in_thread(function: Callable[..., bytes], *args: Any) -> bytes:
    return await threads.deferToThread(function, *args)
