"""SDMF (version 0) and MDMF (version 1) mutable share layouts (facts brief §5.3, §5.4)."""

from __future__ import annotations

import struct

import attrs

from lafs.core.errors import FormatError
from lafs.core.share_layout import HASH_SIZE, pack_share_hash_chain, unpack_share_hash_chain

SDMF_VERSION = 0
MDMF_VERSION = 1
SDMF_PREFIX = struct.Struct(">BQ32s16sBBQQ")  # the signed part: 75 bytes
SDMF_OFFSETS = struct.Struct(">LLLLQQ")
SDMF_HEADER_SIZE = SDMF_PREFIX.size + SDMF_OFFSETS.size  # 107
SDMF_CHECKSTRING = struct.Struct(">BQ32s16s")  # 57 bytes
MDMF_PREFIX = struct.Struct(">BQ32sBBQQ")  # the signed part: 59 bytes
MDMF_OFFSETS = struct.Struct(">QQQQQQQQ")
MDMF_HEADER_SIZE = MDMF_PREFIX.size + MDMF_OFFSETS.size  # 123
MDMF_CHECKSTRING = struct.Struct(">BQ32s")  # 41 bytes
MDMF_SALT_SIZE = 16
# Space reserved ahead of MDMF share data for the variable-size key/signature fields.
MDMF_PRIVATE_KEY_SIZE = 1220
MDMF_SIGNATURE_SIZE = 260
MDMF_VERIFICATION_KEY_SIZE = 292
MDMF_SHARE_HASH_CHAIN_SIZE = 8 * (2 + HASH_SIZE)
MDMF_DATA_OFFSET = (
    MDMF_HEADER_SIZE + MDMF_PRIVATE_KEY_SIZE + MDMF_SIGNATURE_SIZE + MDMF_VERIFICATION_KEY_SIZE + MDMF_SHARE_HASH_CHAIN_SIZE
)


class MutableShareLayoutError(FormatError):
    """Mutable share bytes that do not follow the SDMF or MDMF layout."""


@attrs.frozen
class MutableVersionInfo:
    """What identifies one version of a mutable file (the signed prefix)."""

    version: int
    seqnum: int
    root_hash: bytes
    salt: bytes  # SDMF IV; b"" for MDMF (salts are per segment)
    needed: int
    total: int
    segment_size: int
    data_length: int

    def signed_prefix(self) -> bytes:
        if self.version == SDMF_VERSION:
            return SDMF_PREFIX.pack(
                0, self.seqnum, self.root_hash, self.salt, self.needed, self.total, self.segment_size, self.data_length
            )
        return MDMF_PREFIX.pack(1, self.seqnum, self.root_hash, self.needed, self.total, self.segment_size, self.data_length)

    def checkstring(self) -> bytes:
        if self.version == SDMF_VERSION:
            return SDMF_CHECKSTRING.pack(0, self.seqnum, self.root_hash, self.salt)
        return MDMF_CHECKSTRING.pack(1, self.seqnum, self.root_hash)


def share_version(data: bytes) -> int:
    if not data:
        raise MutableShareLayoutError("empty mutable share")
    if data[0] not in (SDMF_VERSION, MDMF_VERSION):
        raise MutableShareLayoutError(f"unknown mutable share version byte {data[0]}")
    return data[0]


def unpack_prefix(data: bytes) -> MutableVersionInfo:
    """The version info from the first bytes of an SDMF or MDMF share."""
    version = share_version(data)
    fmt = SDMF_PREFIX if version == SDMF_VERSION else MDMF_PREFIX
    if len(data) < fmt.size:
        raise MutableShareLayoutError(f"mutable share prefix needs {fmt.size} bytes, got {len(data)}")
    fields = fmt.unpack(data[: fmt.size])
    if version == SDMF_VERSION:
        _, seqnum, root, salt, k, n, segsize, datalen = fields
    else:
        _, seqnum, root, k, n, segsize, datalen = fields
        salt = b""
    if not 1 <= k <= n:
        raise MutableShareLayoutError(f"mutable share has bad encoding parameters k={k} N={n}")
    return MutableVersionInfo(version, seqnum, root, salt, k, n, segsize, datalen)


@attrs.frozen
class SDMFOffsets:
    signature: int
    share_hash_chain: int
    block_hash_tree: int
    share_data: int
    enc_privkey: int
    eof: int


@attrs.frozen
class SDMFShare:
    """A whole SDMF share."""

    info: MutableVersionInfo
    verification_key: bytes
    signature: bytes
    share_hash_chain: dict[int, bytes]
    block_hash_tree: list[bytes]
    share_data: bytes
    enc_privkey: bytes

    def pack(self) -> bytes:
        chain = pack_share_hash_chain(sorted(self.share_hash_chain.items()))
        tree = b"".join(self.block_hash_tree)
        signature_at = SDMF_HEADER_SIZE + len(self.verification_key)
        chain_at = signature_at + len(self.signature)
        tree_at = chain_at + len(chain)
        data_at = tree_at + len(tree)
        privkey_at = data_at + len(self.share_data)
        eof = privkey_at + len(self.enc_privkey)
        offsets = SDMF_OFFSETS.pack(signature_at, chain_at, tree_at, data_at, privkey_at, eof)
        return b"".join(
            [self.info.signed_prefix(), offsets, self.verification_key, self.signature, chain, tree, self.share_data, self.enc_privkey]
        )

    @classmethod
    def unpack(cls, data: bytes) -> SDMFShare:
        info = unpack_prefix(data)
        if info.version != SDMF_VERSION:
            raise MutableShareLayoutError("not an SDMF share (version byte is not 0)")
        if len(data) < SDMF_HEADER_SIZE:
            raise MutableShareLayoutError(f"SDMF header needs {SDMF_HEADER_SIZE} bytes, got {len(data)}")
        offsets = SDMFOffsets(*SDMF_OFFSETS.unpack(data[SDMF_PREFIX.size : SDMF_HEADER_SIZE]))
        ordered = attrs.astuple(offsets)
        if ordered[0] < SDMF_HEADER_SIZE or list(ordered) != sorted(ordered) or offsets.eof > len(data):
            raise MutableShareLayoutError("SDMF share offsets are out of order or past the end (corrupt share)")
        tree_bytes = data[offsets.block_hash_tree : offsets.share_data]
        if len(tree_bytes) % HASH_SIZE:
            raise MutableShareLayoutError("SDMF block hash tree is not a whole number of hashes")
        try:
            chain = unpack_share_hash_chain(data[offsets.share_hash_chain : offsets.block_hash_tree])
        except FormatError as e:
            raise MutableShareLayoutError(f"SDMF share hash chain: {e}") from None
        return cls(
            info=info,
            verification_key=data[SDMF_HEADER_SIZE : offsets.signature],
            signature=data[offsets.signature : offsets.share_hash_chain],
            share_hash_chain=chain,
            block_hash_tree=[tree_bytes[i : i + HASH_SIZE] for i in range(0, len(tree_bytes), HASH_SIZE)],
            share_data=data[offsets.share_data : offsets.enc_privkey],
            enc_privkey=data[offsets.enc_privkey : offsets.eof],
        )


@attrs.frozen
class MDMFOffsets:
    enc_privkey: int
    share_hash_chain: int
    signature: int
    verification_key: int
    verification_key_end: int
    share_data: int
    block_hash_tree: int
    eof: int

    def pack(self) -> bytes:
        return MDMF_OFFSETS.pack(*attrs.astuple(self))

    @classmethod
    def unpack(cls, data: bytes) -> MDMFOffsets:
        if len(data) < MDMF_HEADER_SIZE:
            raise MutableShareLayoutError(f"MDMF header needs {MDMF_HEADER_SIZE} bytes, got {len(data)}")
        offsets = cls(*MDMF_OFFSETS.unpack(data[MDMF_PREFIX.size : MDMF_HEADER_SIZE]))
        ordered = attrs.astuple(offsets)
        if offsets.enc_privkey != MDMF_HEADER_SIZE or list(ordered) != sorted(ordered):
            raise MutableShareLayoutError("MDMF share offsets are out of order (corrupt share)")
        return offsets


def mdmf_offsets(
    enc_privkey_size: int,
    num_share_hash_pairs: int,
    signature_size: int,
    verification_key_size: int,
    share_data_size: int,
    block_hash_tree_size: int,
) -> MDMFOffsets:
    """The MDMF offset table: key material packed tightly from byte 123, share data at 2167."""
    chain_at = MDMF_HEADER_SIZE + enc_privkey_size
    signature_at = chain_at + num_share_hash_pairs * (2 + HASH_SIZE)
    vk_at = signature_at + signature_size
    vk_end = vk_at + verification_key_size
    if vk_end > MDMF_DATA_OFFSET:
        raise MutableShareLayoutError("MDMF key material does not fit in the space reserved ahead of the data")
    tree_at = MDMF_DATA_OFFSET + share_data_size
    return MDMFOffsets(
        MDMF_HEADER_SIZE, chain_at, signature_at, vk_at, vk_end, MDMF_DATA_OFFSET, tree_at, tree_at + block_hash_tree_size
    )


def mdmf_block_range(segnum: int, num_segments: int, block_size: int, tail_block_size: int) -> tuple[int, int]:
    """(offset, length) of ``salt || block`` for segment ``segnum`` in an MDMF share."""
    if not 0 <= segnum < num_segments:
        raise MutableShareLayoutError(f"segment {segnum} is outside a share of {num_segments} segments")
    stride = MDMF_SALT_SIZE + block_size
    length = MDMF_SALT_SIZE + (tail_block_size if segnum == num_segments - 1 else block_size)
    return MDMF_DATA_OFFSET + segnum * stride, length


@attrs.frozen
class MDMFShare:
    """A whole MDMF share; ``share_data`` is every segment's ``salt || block`` back to back."""

    info: MutableVersionInfo
    enc_privkey: bytes
    share_hash_chain: dict[int, bytes]
    signature: bytes
    verification_key: bytes
    share_data: bytes
    block_hash_tree: list[bytes]

    def offsets(self) -> MDMFOffsets:
        return mdmf_offsets(
            len(self.enc_privkey),
            len(self.share_hash_chain),
            len(self.signature),
            len(self.verification_key),
            len(self.share_data),
            HASH_SIZE * len(self.block_hash_tree),
        )

    def pack(self) -> bytes:
        offsets = self.offsets()
        head = b"".join(
            [
                self.info.signed_prefix(),
                offsets.pack(),
                self.enc_privkey,
                pack_share_hash_chain(sorted(self.share_hash_chain.items())),
                self.signature,
                self.verification_key,
            ]
        )
        # Tahoe leaves the rest of the reserved area unwritten; on disk that reads as zeros.
        return b"".join([head, b"\x00" * (MDMF_DATA_OFFSET - len(head)), self.share_data, *self.block_hash_tree])

    @classmethod
    def unpack(cls, data: bytes) -> MDMFShare:
        info = unpack_prefix(data)
        if info.version != MDMF_VERSION:
            raise MutableShareLayoutError("not an MDMF share (version byte is not 1)")
        o = MDMFOffsets.unpack(data)
        if o.eof > len(data):
            raise MutableShareLayoutError("MDMF share offsets run past the end (corrupt share)")
        tree_bytes = data[o.block_hash_tree : o.eof]
        if len(tree_bytes) % HASH_SIZE:
            raise MutableShareLayoutError("MDMF block hash tree is not a whole number of hashes")
        try:
            chain = unpack_share_hash_chain(data[o.share_hash_chain : o.signature])
        except FormatError as e:
            raise MutableShareLayoutError(f"MDMF share hash chain: {e}") from None
        return cls(
            info=info,
            enc_privkey=data[o.enc_privkey : o.share_hash_chain],
            share_hash_chain=chain,
            signature=data[o.signature : o.verification_key],
            verification_key=data[o.verification_key : o.verification_key_end],
            share_data=data[o.share_data : o.block_hash_tree],
            block_hash_tree=[tree_bytes[i : i + HASH_SIZE] for i in range(0, len(tree_bytes), HASH_SIZE)],
        )
