"""Which servers hold which shares of which versions of a mutable file.

Every server the caller's ``servers_for`` returns is asked (one ``slot_readv``
each, in parallel) for the head of each share it holds: the signed prefix,
the offsets, the verification key, the signature and the share hash chain
(and, for writers, the encrypted private key).  A share counts only when its
verification key hashes to the cap's fingerprint and its signature verifies;
anything else is reported to its server as corrupt and ignored.

The best version is the recoverable one (at least k distinct good shares)
with the highest sequence number, so a server that rolled back to an older
version cannot drag readers back while the newer one is recoverable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from lafs.core import crypto, hashes
from lafs.core.codec import CodecError
from lafs.core.errors import FormatError
from lafs.core.mutable_layout import (
    SDMF_HEADER_SIZE,
    SDMF_OFFSETS,
    SDMF_PREFIX,
    SDMF_VERSION,
    MDMFOffsets,
    MutableShareLayoutError,
    MutableVersionInfo,
    SDMFOffsets,
    unpack_prefix,
)
from lafs.core.share_layout import unpack_share_hash_chain
from lafs.mutable.common import SHARE_TYPE, CapKeys, checkstring_size, decrypt_private_key
from lafs.mutable.encode import layout_of
from lafs.storage_client.interface import ServerError, StorageServerClient

log = Logger()

INITIAL_READ = 4000
"""Bytes read from the start of every share: all an MDMF share's key material lies below 2167, and an
SDMF share's (for N up to 255) well below this, so one round trip usually suffices."""

ServersFor = Callable[[bytes], Sequence[StorageServerClient]]
"""Returns the servers to use for a storage index, in permuted-ring order (facts 9.1)."""
_Reporter = Callable[[StorageServerClient, int, str], Awaitable[None]]


@attrs.frozen(eq=False)
class ShareRecord:
    """One share that passed the signature checks."""

    server: StorageServerClient
    shnum: int
    info: MutableVersionInfo
    offsets: SDMFOffsets | MDMFOffsets
    verification_key: bytes
    signature: bytes
    share_hash_chain: dict[int, bytes]
    enc_privkey: bytes | None

    @property
    def block_hash_tree_range(self) -> tuple[int, int]:
        o = self.offsets
        if isinstance(o, SDMFOffsets):
            return o.block_hash_tree, o.share_data - o.block_hash_tree
        return o.block_hash_tree, o.eof - o.block_hash_tree


@attrs.define
class ServerMap:
    """The result of one update: the good shares, what each server holds, who failed."""

    storage_index: bytes
    servers: list[StorageServerClient]
    """Every server asked, in permuted order."""
    shares: list[ShareRecord] = attrs.Factory(list)
    checkstrings: dict[tuple[str, int], bytes] = attrs.Factory(dict)
    """Leading bytes of *every* share found (good or not), which a writer must test before replacing it."""
    failed_servers: set[str] = attrs.Factory(set)
    corrupt: list[tuple[str, int, str]] = attrs.Factory(list)
    """(server id, share number, reason) of every share that failed verification."""
    private_key: bytes | None = attrs.field(default=None, repr=False)

    def versions(self) -> dict[MutableVersionInfo, dict[int, list[ShareRecord]]]:
        found: dict[MutableVersionInfo, dict[int, list[ShareRecord]]] = {}
        for record in self.shares:
            found.setdefault(record.info, {}).setdefault(record.shnum, []).append(record)
        return found

    def recoverable_versions(self) -> list[MutableVersionInfo]:
        return [info for info, by_shnum in self.versions().items() if len(by_shnum) >= info.needed]

    def best_recoverable_version(self) -> MutableVersionInfo | None:
        candidates = self.recoverable_versions()
        if not candidates:
            return None
        # Highest seqnum wins; the root hash breaks ties (two writers raced to the same seqnum), as in Tahoe.
        return max(candidates, key=lambda info: (info.seqnum, info.root_hash))

    def highest_seqnum(self) -> int:
        """The highest sequence number seen in any share, recoverable or not (0 when none)."""
        return max((record.info.seqnum for record in self.shares), default=0)

    def shares_of(self, info: MutableVersionInfo) -> dict[int, list[ShareRecord]]:
        return self.versions().get(info, {})

    def describe_unrecoverable(self) -> str:
        """Why no version can be recovered, naming shares found and needed."""
        versions = self.versions()
        if not versions:
            if self.corrupt:
                return f"no good share of the file was found ({len(self.corrupt)} corrupt shares ignored)"
            asked = len(self.servers) - len(self.failed_servers)
            return f"no share of the file was found on the {asked} servers that answered"
        best = max(versions, key=lambda info: (info.seqnum, info.root_hash))
        found = len(versions[best])
        return (
            f"found {found} distinct shares of the newest version (seqnum {best.seqnum}), "
            f"need {best.needed} to recover it"
        )


def _verify_head(
    keys: CapKeys, server: StorageServerClient, shnum: int, data: bytes
) -> tuple[ShareRecord | None, int | None]:
    """Check a share head; return its record, or (None, bytes needed) when the head was too short.

    Raises FormatError or BadSignatureError when the share is bad.
    """
    info = unpack_prefix(data)
    offsets: SDMFOffsets | MDMFOffsets
    if info.version == SDMF_VERSION:
        if len(data) < SDMF_HEADER_SIZE:
            raise MutableShareLayoutError("SDMF share is shorter than its header")
        offsets = SDMFOffsets(*SDMF_OFFSETS.unpack(data[SDMF_PREFIX.size : SDMF_HEADER_SIZE]))
        ordered = attrs.astuple(offsets)
        if ordered[0] < SDMF_HEADER_SIZE or list(ordered) != sorted(ordered):
            raise MutableShareLayoutError("SDMF share offsets are out of order")
        vk = (SDMF_HEADER_SIZE, offsets.signature)
        sig = (offsets.signature, offsets.share_hash_chain)
        chain = (offsets.share_hash_chain, offsets.block_hash_tree)
        epk = (offsets.enc_privkey, offsets.eof)
        head_end = offsets.block_hash_tree
    else:
        offsets = MDMFOffsets.unpack(data)
        vk = (offsets.verification_key, offsets.verification_key_end)
        sig = (offsets.signature, offsets.verification_key)
        chain = (offsets.share_hash_chain, offsets.signature)
        epk = (offsets.enc_privkey, offsets.share_hash_chain)
        head_end = offsets.verification_key_end
    if head_end > len(data):
        if len(data) < INITIAL_READ:
            raise MutableShareLayoutError("share ends before its verification key and signature")
        return None, head_end
    verification_key = data[vk[0] : vk[1]]
    if hashes.ssk_pubkey_fingerprint_hash(verification_key) != keys.fingerprint:
        raise MutableShareLayoutError("verification key does not match the cap's fingerprint")
    signature = data[sig[0] : sig[1]]
    crypto.rsa_verify(verification_key, info.signed_prefix(), signature)
    try:
        layout = layout_of(info)
    except CodecError as e:
        raise MutableShareLayoutError(f"signed encoding parameters are unusable: {e}") from None
    if layout.segment_size != info.segment_size or (info.data_length and not info.segment_size):
        raise MutableShareLayoutError(f"signed segment size {info.segment_size} does not fit k={info.needed}")
    share_chain = unpack_share_hash_chain(data[chain[0] : chain[1]])
    enc_privkey = data[epk[0] : epk[1]] if epk[1] <= len(data) else None
    return ShareRecord(server, shnum, info, offsets, verification_key, signature, share_chain, enc_privkey), None


async def update_servermap(
    keys: CapKeys,
    servers: Sequence[StorageServerClient],
    *,
    want_private_key: bool = False,
) -> ServerMap:
    """Ask every server about the file's shares; with ``want_private_key``, also recover the signing key."""
    servermap = ServerMap(keys.storage_index, list(servers))

    async def report(server: StorageServerClient, shnum: int, reason: str) -> None:
        servermap.corrupt.append((server.server_id, shnum, reason))
        log.info("corrupt mutable share {shnum} on {server}: {reason}", shnum=shnum, server=server.server_id, reason=reason)
        try:
            await server.advise_corrupt_share(SHARE_TYPE, keys.storage_index, shnum, reason.encode("utf-8"))
        except ServerError:
            pass

    async def query(server: StorageServerClient) -> None:
        try:
            answer = await server.slot_readv(keys.storage_index, [], [(0, INITIAL_READ)])
        except ServerError:
            servermap.failed_servers.add(server.server_id)
            return
        for shnum, pieces in sorted(answer.items()):
            data = bytes(pieces[0]) if pieces else b""
            size = checkstring_size(data[0]) if data else 1
            servermap.checkstrings[(server.server_id, shnum)] = data[:size]
            try:
                record, need = _verify_head(keys, server, shnum, data)
                if record is None and need is not None:
                    more = await server.slot_readv(keys.storage_index, [shnum], [(0, need)])
                    record, _ = _verify_head(keys, server, shnum, bytes(more.get(shnum, [b""])[0]))
            except ServerError:
                servermap.failed_servers.add(server.server_id)
                return
            except (FormatError, crypto.BadSignatureError) as e:
                await report(server, shnum, str(e))
                continue
            if record is not None:
                servermap.shares.append(record)

    await defer.DeferredList([defer.Deferred.fromCoroutine(query(s)) for s in servers], consumeErrors=True)
    # Keep the permuted order of servers in the share list: readers prefer shares in that order.
    rank = {server.server_id: i for i, server in enumerate(servers)}
    servermap.shares.sort(key=lambda r: (rank.get(r.server.server_id, len(rank)), r.shnum))
    if want_private_key and keys.writekey is not None:
        await _find_private_key(servermap, keys.writekey, report)
    return servermap


async def _find_private_key(servermap: ServerMap, writekey: bytes, report: _Reporter) -> None:
    for record in servermap.shares:
        enc = record.enc_privkey
        if enc is None:
            start, end = (
                (record.offsets.enc_privkey, record.offsets.eof)
                if isinstance(record.offsets, SDMFOffsets)
                else (record.offsets.enc_privkey, record.offsets.share_hash_chain)
            )
            try:
                answer = await record.server.slot_readv(servermap.storage_index, [record.shnum], [(start, end - start)])
            except ServerError:
                continue
            enc = bytes(answer.get(record.shnum, [b""])[0])
        private = decrypt_private_key(writekey, enc)
        if private is None:
            await report(record.server, record.shnum, "encrypted private key does not match the write cap")
            continue
        servermap.private_key = private
        return
