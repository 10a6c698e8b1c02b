"""Writing a version of a mutable file: place shares, write them with test vectors, detect races.

Placement follows Tahoe: every share the server map found (of any version)
is rewritten where it is; share numbers left over go one per server in
permuted-ring order, to the servers holding the fewest shares first,
wrapping around when there are fewer servers than shares.  Every write
carries a test vector on the checkstring the map saw (or "no share yet"),
so a write that lost a race with another writer is refused by the server
and reported as `UncoordinatedWriteError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from lafs.core.codec import SegmentLayout, mutable_segment_layout
from lafs.core.mutable_layout import (
    MDMF_CHECKSTRING,
    MDMF_PREFIX,
    MDMF_SALT_SIZE,
    MDMF_VERSION,
    MDMFOffsets,
    MutableVersionInfo,
    mdmf_block_range,
    mdmf_offsets,
)
from lafs.core.share_layout import HASH_SIZE, pack_hashes, pack_share_hash_chain, unpack_hashes
from lafs.mutable.common import (
    CapKeys,
    NotEnoughServersError,
    UncoordinatedWriteError,
    WriteKeys,
    checkstring_size,
    write_secrets,
)
from lafs.mutable.encode import (
    EncodedSegments,
    EncodedVersion,
    SaltSource,
    ShareCorruptError,
    build_mdmf_version,
    check_block_tree,
    encode_mdmf_segments,
)
from lafs.mutable.retrieve import VersionReader
from lafs.mutable.servermap import ServerMap
from lafs.storage_client.interface import ServerError, StorageServerClient, TestVector

log = Logger()

NEW_SHARE_TEST: TestVector = [(0, 1, b"eq", b"")]
"""Passes only when the share does not exist yet (reading a missing share gives b"")."""


def _test_vector(checkstring: bytes | None) -> TestVector:
    if checkstring is None:
        return NEW_SHARE_TEST
    return [(0, len(checkstring), b"eq", checkstring)]


def place_shares(servermap: ServerMap, total: int) -> list[tuple[StorageServerClient, int]]:
    """(server, share number) pairs to write: existing shares in place, the rest spread over the ring."""
    by_id = {server.server_id: server for server in servermap.servers}
    goal = [
        (by_id[server_id], shnum)
        for (server_id, shnum) in servermap.checkstrings
        if shnum < total and server_id in by_id and server_id not in servermap.failed_servers
    ]
    held = {shnum for _, shnum in goal}
    homeless = [shnum for shnum in range(total) if shnum not in held]
    counts: dict[str, int] = {}
    for server, _ in goal:
        counts[server.server_id] = counts.get(server.server_id, 0) + 1
    ring = [
        (counts.get(server.server_id, 0), index, server)
        for index, server in enumerate(servermap.servers)
        if server.server_id not in servermap.failed_servers
    ]
    ring.sort(key=lambda entry: (entry[0], entry[1]))
    if homeless and not ring:
        raise NotEnoughServersError("no storage server answered, so the file's shares cannot be placed")
    for i, shnum in enumerate(homeless):
        goal.append((ring[i % len(ring)][2], shnum))
    return goal


@attrs.define
class _WriteOutcome:
    known: dict[tuple[str, int], bytes]
    """The checkstring expected on each (server, share) we know of; updated as our writes land."""
    new_checkstring: bytes
    placed: set[tuple[str, int]] = attrs.Factory(set)
    failed_servers: set[str] = attrs.Factory(set)
    refused: list[str] = attrs.Factory(list)
    """Servers whose test vectors failed: someone else wrote the file meanwhile."""
    surprises: list[str] = attrs.Factory(list)
    """Servers holding a share we did not write and did not know of (another writer's)."""

    def check_reads(self, server_id: str, written: set[int], reads: Mapping[int, Sequence[bytes]]) -> None:
        for shnum, pieces in reads.items():
            if shnum in written:
                continue  # tested by our own test vector
            seen = bytes(pieces[0]) if pieces else b""
            expected = self.known.get((server_id, shnum))
            size = min(len(seen), len(expected or b""))
            if expected is None or seen[:size] != expected[:size]:
                self.surprises.append(server_id)
                return


ShareWrites = Mapping[int, tuple[TestVector, Sequence[tuple[int, bytes]]]]


async def _write_all(
    storage_index: bytes,
    writekey: bytes,
    lease_secret: bytes,
    plan: Mapping[str, tuple[StorageServerClient, ShareWrites]],
    read_size: int,
    outcome: _WriteOutcome,
) -> None:
    """One ``slot_testv_and_readv_and_writev`` per server, all in parallel."""

    async def write_one(server: StorageServerClient, writes: ShareWrites) -> None:
        secrets = write_secrets(writekey, storage_index, lease_secret, server)
        vectors = {shnum: (testv, list(datav), None) for shnum, (testv, datav) in writes.items()}
        try:
            result = await server.slot_testv_and_readv_and_writev(storage_index, secrets, vectors, [(0, read_size)])
        except ServerError as e:
            log.info("mutable write to {server} failed: {error}", server=server.server_id, error=str(e))
            outcome.failed_servers.add(server.server_id)
            return
        if not result.success:
            outcome.refused.append(server.server_id)
            return
        outcome.check_reads(server.server_id, set(writes), result.reads)
        for shnum in writes:
            outcome.placed.add((server.server_id, shnum))
            outcome.known[(server.server_id, shnum)] = outcome.new_checkstring

    await defer.DeferredList(
        [defer.Deferred.fromCoroutine(write_one(server, writes)) for server, writes in plan.values()],
        consumeErrors=True,
    )


def _raise_if_unsuccessful(outcome: _WriteOutcome, info: MutableVersionInfo) -> None:
    if outcome.refused:
        raise UncoordinatedWriteError(
            f"another writer changed the file while version seqnum {info.seqnum} was being written "
            f"({len(outcome.refused)} servers refused the write because their shares had changed); "
            "read the file again before writing"
        )
    if outcome.surprises:
        raise UncoordinatedWriteError(
            f"another writer changed the file while version seqnum {info.seqnum} was being written "
            f"({len(outcome.surprises)} servers hold shares this writer did not know of); "
            "read the file again before writing"
        )
    distinct = {shnum for _, shnum in outcome.placed}
    if len(distinct) < info.needed:
        raise NotEnoughServersError(
            f"only {len(distinct)} distinct shares of the new version were written, "
            f"{info.needed} are needed to read it ({len(outcome.failed_servers)} servers failed)"
        )


async def publish_version(
    encoded: EncodedVersion, keys: WriteKeys, servermap: ServerMap, lease_secret: bytes
) -> None:
    """Write every share of ``encoded``, replacing whatever the server map found."""
    info = encoded.info
    outcome = _WriteOutcome(dict(servermap.checkstrings), info.checkstring())
    pending = place_shares(servermap, info.total)
    tried: set[tuple[str, int]] = set()
    available = [s for s in servermap.servers if s.server_id not in servermap.failed_servers]
    while pending:
        plan: dict[str, tuple[StorageServerClient, dict[int, tuple[TestVector, Sequence[tuple[int, bytes]]]]]] = {}
        for server, shnum in pending:
            tried.add((server.server_id, shnum))
            checkstring = servermap.checkstrings.get((server.server_id, shnum))
            plan.setdefault(server.server_id, (server, {}))[1][shnum] = (
                _test_vector(checkstring),
                [(0, encoded.shares[shnum])],
            )
        await _write_all(
            keys.storage_index, keys.writekey, lease_secret, plan, checkstring_size(info.version), outcome
        )
        if outcome.refused:
            break
        # Shares whose server failed go to the next servers that have not yet been tried for them.
        placed_shnums = {shnum for _, shnum in outcome.placed}
        available = [s for s in available if s.server_id not in outcome.failed_servers]
        pending = []
        homeless = sorted({shnum for _, shnum in tried} - placed_shnums)
        load: dict[str, int] = {}
        for server_id, _ in outcome.placed:
            load[server_id] = load.get(server_id, 0) + 1
        ring = sorted(available, key=lambda s: load.get(s.server_id, 0))
        for shnum in homeless:
            for server in ring:
                if (server.server_id, shnum) not in tried:
                    pending.append((server, shnum))
                    load[server.server_id] = load.get(server.server_id, 0) + 1
                    ring.sort(key=lambda s: load.get(s.server_id, 0))
                    break
    _raise_if_unsuccessful(outcome, info)


STREAM_SEGMENTS = 8
"""MDMF segments (1 MiB of plaintext at 128 KiB each) encoded and written per call when a new file is streamed."""

BLANK_HEADER_TEST: TestVector = [(0, MDMF_CHECKSTRING.size, b"eq", b"\x00" * MDMF_CHECKSTRING.size)]
"""Passes while a share being streamed has no header yet (only its blocks were written)."""


async def publish_new_mdmf(
    keys: WriteKeys,
    servermap: ServerMap,
    layout: SegmentLayout,
    read_segments: Callable[[int, int], Awaitable[EncodedSegments]],
    lease_secret: bytes,
) -> MutableVersionInfo:
    """Publish seqnum 1 of a new MDMF file a run of segments at a time, never holding the whole file.

    Only for a fresh key: nobody can know the cap yet, so shares holding
    blocks but no header (they read as an SDMF share of seqnum 0 with no
    valid signature, which readers skip) are seen by no one.  The first write
    to each share tests that it does not exist; later ones that its header is
    still blank; the last one writes the hash trees, keys and signed header.
    ``read_segments(first, last)`` encodes segments ``first..last``.  A
    server that fails loses its shares for this version, as in Tahoe;
    fewer than k shares left is an error.
    """
    plan: dict[str, tuple[StorageServerClient, list[int]]] = {}
    for server, shnum in place_shares(servermap, layout.total):
        plan.setdefault(server.server_id, (server, []))[1].append(shnum)
    leaves: list[list[bytes]] = [[] for _ in range(layout.total)]
    failed: set[str] = set()
    started: set[str] = set()

    async def write_run(encoded: EncodedSegments) -> None:
        writes_plan: dict[str, tuple[StorageServerClient, ShareWrites]] = {}
        for server_id, (server, shnums) in plan.items():
            if server_id in failed:
                continue
            test = BLANK_HEADER_TEST if server_id in started else NEW_SHARE_TEST
            share_writes = {}
            for shnum in shnums:
                datav = []
                for i, seg in enumerate(range(encoded.first, encoded.first + len(encoded.salts))):
                    at, _ = mdmf_block_range(seg, layout.num_segments, layout.block_size, layout.tail_block_size)
                    datav.append((at, encoded.salts[i] + encoded.blocks[i][shnum]))
                share_writes[shnum] = (test, datav)
            writes_plan[server_id] = (server, share_writes)
        outcome = _WriteOutcome({}, b"")
        await _write_all(keys.storage_index, keys.writekey, lease_secret, writes_plan, MDMF_CHECKSTRING.size, outcome)
        if outcome.refused or outcome.surprises:
            raise UncoordinatedWriteError(
                "another writer wrote shares of a brand new mutable file while it was being published"
            )
        failed.update(outcome.failed_servers)
        started.update(writes_plan)
        if len({n for sid, (_, shnums) in plan.items() if sid not in failed for n in shnums}) < layout.needed:
            raise NotEnoughServersError(
                f"{len(failed)} servers failed while a new mutable file was being written; "
                f"fewer than the {layout.needed} shares needed to read it are left"
            )

    # Encode the next run (in a worker thread, by ``read_segments``) while the last one is being written.
    first = 0
    pending = read_segments(0, min(layout.num_segments, STREAM_SEGMENTS) - 1)
    while first < layout.num_segments:
        encoded = await pending
        for shnum in range(layout.total):
            leaves[shnum].extend(encoded.leaves(shnum))
        first += len(encoded.salts)
        writing = defer.Deferred.fromCoroutine(write_run(encoded))
        del encoded
        if first < layout.num_segments:
            pending = read_segments(first, min(layout.num_segments, first + STREAM_SEGMENTS) - 1)
        await writing

    info, trees, chains, signature = build_mdmf_version(keys, 1, layout, leaves)
    data_size = (layout.num_segments - 1) * (MDMF_SALT_SIZE + layout.block_size) + MDMF_SALT_SIZE + layout.tail_block_size
    final_plan: dict[str, tuple[StorageServerClient, ShareWrites]] = {}
    for server_id, (server, shnums) in plan.items():
        if server_id in failed:
            continue
        final_plan[server_id] = (
            server,
            {
                shnum: (
                    BLANK_HEADER_TEST,
                    _mdmf_metadata_writes(
                        keys, info, data_size, trees[shnum], pack_share_hash_chain(sorted(chains[shnum].items())), signature
                    ),
                )
                for shnum in shnums
            },
        )
    outcome = _WriteOutcome({}, info.checkstring())
    await _write_all(keys.storage_index, keys.writekey, lease_secret, final_plan, MDMF_CHECKSTRING.size, outcome)
    _raise_if_unsuccessful(outcome, info)
    return info


def _mdmf_metadata_writes(
    keys: WriteKeys, info: MutableVersionInfo, data_size: int, tree: list[bytes], chain: bytes, signature: bytes
) -> list[tuple[int, bytes]]:
    """Everything of an MDMF share but its blocks: hash tree, key material, offsets, and the signed prefix last."""
    offsets: MDMFOffsets = mdmf_offsets(
        len(keys.enc_privkey), len(chain) // (2 + HASH_SIZE), len(signature), len(keys.public_key), data_size, 32 * len(tree)
    )
    return [
        (offsets.block_hash_tree, pack_hashes(tree)),
        (offsets.enc_privkey, keys.enc_privkey),
        (offsets.share_hash_chain, chain),
        (offsets.signature, signature),
        (offsets.verification_key, keys.public_key),
        (MDMF_PREFIX.size, offsets.pack()),
        # The new signed prefix (and so the checkstring) last, in the order Tahoe writes them.
        (0, info.signed_prefix()),
    ]


# --- MDMF in-place update ----------------------------------------------------------------


async def _old_block_leaves(
    keys: CapKeys, servermap: ServerMap, info: MutableVersionInfo
) -> dict[int, list[bytes]] | None:
    """The verified block-hash leaves of every share number, or None if some share cannot be read."""
    leaves: dict[int, list[bytes]] = {}
    for shnum, copies in sorted(servermap.shares_of(info).items()):
        for record in copies:
            start, length = record.block_hash_tree_range
            try:
                answer = await record.server.slot_readv(keys.storage_index, [shnum], [(start, length)])
                data = bytes(answer.get(shnum, [b""])[0])
                leaves[shnum] = check_block_tree(info, shnum, unpack_hashes(data), record.share_hash_chain)
                break
            except (ServerError, ShareCorruptError, ValueError):
                continue
    if set(leaves) != set(range(info.total)):
        return None
    return leaves


async def update_in_place(
    keys: WriteKeys,
    servermap: ServerMap,
    info: MutableVersionInfo,
    offset: int,
    data: bytes,
    lease_secret: bytes,
    salts: SaltSource,
) -> bool:
    """Write ``data`` at ``offset`` of MDMF version ``info``, re-encoding only the segments it touches.

    Returns False, having written nothing, when an in-place update is not
    possible (some share number has no readable copy, or the servers hold
    shares of other versions too); the caller then republishes the whole file.
    """
    if info.version != MDMF_VERSION or info.data_length == 0:
        return False
    good = {(r.server.server_id, r.shnum) for r in servermap.shares if r.info == info}
    if set(servermap.checkstrings) - good:
        return False
    cap_keys = CapKeys(keys.readkey, keys.storage_index, keys.fingerprint, keys.writekey, True)
    old_leaves = await _old_block_leaves(cap_keys, servermap, info)
    if old_leaves is None:
        return False
    segsize = info.segment_size
    old_len = info.data_length
    end = offset + len(data)
    new_len = max(old_len, end)
    lo = min(offset, old_len)  # bytes from here on change (zeros fill any gap past the old end)
    if end <= lo:
        return True
    first, last = lo // segsize, (end - 1) // segsize
    region_start = first * segsize
    region_end = min(new_len, (last + 1) * segsize)

    # Old bytes the new data does not cover, at either end of the region, are read back
    # (verified) from the old version; a segment the new data covers whole is not read at all.
    reader = VersionReader(cap_keys, servermap, info)
    region = bytearray(region_end - region_start)
    wanted = set()
    if region_start < lo:
        wanted.add(first)
    if end < min(old_len, region_end):
        wanted.add(last)
    for seg in sorted(wanted):
        (plain,) = await reader.segments(seg, seg)
        at = seg * segsize - region_start
        region[at : at + len(plain)] = plain
    region[offset - region_start : end - region_start] = data

    layout = mutable_segment_layout(new_len, info.needed, info.total, mdmf=True, max_segment_size=segsize)
    encoded = encode_mdmf_segments(bytes(region), first, layout, keys.readkey, salts)
    all_leaves = []
    for shnum in range(info.total):
        share_leaves = old_leaves[shnum][:first] + encoded.leaves(shnum)
        share_leaves += old_leaves[shnum][len(share_leaves) :]
        all_leaves.append(share_leaves)
    new_info, trees, chains, signature = build_mdmf_version(keys, info.seqnum + 1, layout, all_leaves)
    data_size = (layout.num_segments - 1) * (16 + layout.block_size) + 16 + layout.tail_block_size

    plan: dict[str, tuple[StorageServerClient, dict[int, tuple[TestVector, Sequence[tuple[int, bytes]]]]]] = {}
    for record in servermap.shares:
        if record.info != info:
            continue
        shnum = record.shnum
        chain = pack_share_hash_chain(sorted(chains[shnum].items()))
        writes: list[tuple[int, bytes]] = []
        for i, seg in enumerate(range(first, last + 1)):
            at, _ = mdmf_block_range(seg, layout.num_segments, layout.block_size, layout.tail_block_size)
            writes.append((at, encoded.salts[i] + encoded.blocks[i][shnum]))
        writes += _mdmf_metadata_writes(keys, new_info, data_size, trees[shnum], chain, signature)
        plan.setdefault(record.server.server_id, (record.server, {}))[1][shnum] = (
            _test_vector(info.checkstring()),
            writes,
        )
    outcome = _WriteOutcome(dict(servermap.checkstrings), new_info.checkstring())
    await _write_all(keys.storage_index, keys.writekey, lease_secret, plan, MDMF_CHECKSTRING.size, outcome)
    _raise_if_unsuccessful(outcome, new_info)
    return True

