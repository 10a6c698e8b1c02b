"""Repairing a mutable file: back to N good shares of one version.

When the grid holds only the newest recoverable version (some shares lost or
corrupt), the missing shares of *that* version are rebuilt and written: the
same seqnum, root hash and signature, so readers see nothing change and a
second repair finds nothing to do (Tahoe ticket #1209).  Erasure coding is
deterministic, so decoding k shares' blocks and coding them again gives every
share's blocks; the rebuilt share hash tree must reach the signed root hash,
or nothing is written.  When the grid holds shares of several versions, the
newest recoverable one is published again under a new seqnum over every share
found, so that only one version remains.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.logger import Logger

from lafs.core.hashtree import HashTree
from lafs.core.mutable_layout import MDMF_VERSION, MDMFShare, MutableVersionInfo, SDMFShare
from lafs.mutable.common import (
    CapKeys,
    MutableFileError,
    NotEnoughServersError,
    WriteKeys,
    checkstring_size,
)
from lafs.mutable.encode import block_leaf, share_hash_tree
from lafs.mutable.publish import (
    ShareWrites,
    _raise_if_unsuccessful,
    _test_vector,
    _write_all,
    _WriteOutcome,
)
from lafs.mutable.retrieve import READ_SEGMENTS, VersionReader
from lafs.mutable.servermap import ServerMap
from lafs.storage_client.interface import StorageServerClient

log = Logger()


class RepairError(MutableFileError):
    """The shares of a version could not be rebuilt as they were."""


def only_version_present(servermap: ServerMap, info: MutableVersionInfo, bad: Sequence[tuple[str, int]] = ()) -> bool:
    """Whether every share on the grid is a share of ``info`` or a corrupt one (nothing of any other version)."""
    corrupt = {(server_id, shnum) for server_id, shnum, _ in servermap.corrupt} | set(bad)
    good = {(r.server.server_id, r.shnum) for r in servermap.shares if r.info == info}
    return all(key in good or key in corrupt for key in servermap.checkstrings) and not any(
        r.info != info for r in servermap.shares
    )


async def rebuild_shares(keys: CapKeys, servermap: ServerMap, info: MutableVersionInfo, write_keys: WriteKeys) -> list[bytes]:
    """Every share of version ``info``, rebuilt byte for byte from k of its good shares."""
    reader = VersionReader(keys, servermap, info)
    layout = reader.layout
    total = info.total
    # salts[seg], blocks[seg][shnum]
    salts: list[bytes] = []
    blocks: list[list[bytes]] = []
    for first in range(0, layout.num_segments, READ_SEGMENTS):
        last = min(layout.num_segments - 1, first + READ_SEGMENTS - 1)
        for salt, padded in await reader.coded_segments(first, last):
            salts.append(salt)
            blocks.append([bytes(b) for b in reader.codec.encode(padded)])
    trees = [HashTree([block_leaf(info.version, salts[s], blocks[s][n]) for s in range(len(blocks))]) for n in range(total)]
    root, chains = share_hash_tree([tree.root for tree in trees])
    if root != info.root_hash:
        raise RepairError(
            f"the shares of version seqnum {info.seqnum} rebuilt from its good shares do not reach its signed "
            "root hash; nothing was written"
        )
    record = servermap.shares_of(info)[next(iter(servermap.shares_of(info)))][0]
    enc_privkey = next((r.enc_privkey for r in servermap.shares if r.info == info and r.enc_privkey), None)
    if enc_privkey is None:
        enc_privkey = write_keys.enc_privkey
    shares = []
    for n in range(total):
        if info.version == MDMF_VERSION:
            data = b"".join(salts[s] + blocks[s][n] for s in range(len(blocks)))
            share = MDMFShare(
                info, enc_privkey, chains[n], record.signature, record.verification_key, data, trees[n].as_list()
            ).pack()
        else:
            data = blocks[0][n] if blocks else b""
            share = SDMFShare(
                info, record.verification_key, record.signature, chains[n], trees[n].as_list(), data, enc_privkey
            ).pack()
        shares.append(share)
    return shares


def _homes(servermap: ServerMap, info: MutableVersionInfo, shnums: Sequence[int]) -> list[tuple[StorageServerClient, int]]:
    """Servers for the share numbers that have no copy at all: ones holding no share of the file first, in ring order."""
    failed = servermap.failed_servers
    load: dict[str, int] = {}
    for server_id, _ in servermap.checkstrings:
        load[server_id] = load.get(server_id, 0) + 1
    ring = [s for s in servermap.servers if s.server_id not in failed]
    if shnums and not ring:
        raise NotEnoughServersError("no storage server answered, so the missing shares cannot be placed")
    placed = []
    for shnum in shnums:
        server = min(ring, key=lambda s: (load.get(s.server_id, 0), ring.index(s)))
        load[server.server_id] = load.get(server.server_id, 0) + 1
        placed.append((server, shnum))
    return placed


async def repair_version_in_place(
    keys: CapKeys,
    write_keys: WriteKeys,
    servermap: ServerMap,
    info: MutableVersionInfo,
    good: set[tuple[str, int]],
    lease_secret: bytes,
) -> int:
    """Write the shares of ``info`` that have no good copy; return how many were written.

    ``good`` holds (server ID, share number) of the copies that passed every
    check made; every other copy of a share of ``info`` on the grid is
    corrupt and is overwritten where it is, and share numbers with no copy at
    all go to the servers holding the fewest shares.
    """
    shares = await rebuild_shares(keys, servermap, info, write_keys)
    good_numbers = {shnum for _, shnum in good}
    by_id = {s.server_id: s for s in servermap.servers}
    targets: list[tuple[StorageServerClient, int]] = []
    for (server_id, shnum) in sorted(servermap.checkstrings):
        if (server_id, shnum) not in good and shnum < info.total and server_id in by_id:
            targets.append((by_id[server_id], shnum))
    covered = good_numbers | {shnum for _, shnum in targets}
    targets += _homes(servermap, info, [n for n in range(info.total) if n not in covered])
    plan: dict[str, tuple[StorageServerClient, dict[int, tuple[list[tuple[int, int, bytes, bytes]], list[tuple[int, bytes]]]]]] = {}
    for server, shnum in targets:
        checkstring = servermap.checkstrings.get((server.server_id, shnum))
        testv = list(_test_vector(checkstring))
        plan.setdefault(server.server_id, (server, {}))[1][shnum] = (testv, [(0, shares[shnum])])
    if not plan:
        return 0
    typed: dict[str, tuple[StorageServerClient, ShareWrites]] = {k: (s, w) for k, (s, w) in plan.items()}
    outcome = _WriteOutcome(dict(servermap.checkstrings), info.checkstring())
    await _write_all(keys.storage_index, write_keys.writekey, lease_secret, typed, checkstring_size(info.version), outcome)
    if outcome.refused or outcome.surprises:
        _raise_if_unsuccessful(outcome, info)
    if outcome.failed_servers:
        log.info("{n} servers failed while missing shares were written", n=len(outcome.failed_servers))
    return len(outcome.placed)
