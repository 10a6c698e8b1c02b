"""The immutable share as a client writes it: header, offset table, hash regions and UEB.

Version 1 uses 32-bit fields; version 2 (64-bit fields) is used only when a
size or offset does not fit in 32 bits.  Offsets count from the start of the
share data (not the server's container).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping

import attrs

from lafs.core.errors import FormatError, NetstringError
from lafs.core.hashtree import tree_size
from lafs.core.netstring import netstring, parse_netstring

HASH_SIZE = 32
SHARE_HASH_PAIR_SIZE = 2 + HASH_SIZE
V1_HEADER = struct.Struct(">LLLLLLLLL")
V2_HEADER = struct.Struct(">LQQQQQQQQ")
MAX_UEB_LENGTH = 2000
"""A UEB length field at or above this is taken as corruption (real UEBs are ~320-420 bytes)."""

UEB_INTEGER_FIELDS = frozenset({"size", "segment_size", "num_segments", "needed_shares", "total_shares"})
_UEB_KEY = re.compile(rb"\A[a-zA-Z_\-]+\Z")


class ShareLayoutError(FormatError):
    """Immutable share bytes that do not follow Tahoe's layout."""


@attrs.frozen
class ImmutableShareOffsets:
    """The header of an immutable share: sizes and where each region starts."""

    version: int
    block_size: int
    data_size: int
    data: int
    plaintext_hash_tree: int
    crypttext_hash_tree: int
    block_hashes: int
    share_hashes: int
    uri_extension: int

    @property
    def header_size(self) -> int:
        return V1_HEADER.size if self.version == 1 else V2_HEADER.size

    @property
    def ueb_length_size(self) -> int:
        """Bytes of the length field in front of the UEB."""
        return 4 if self.version == 1 else 8

    def pack(self) -> bytes:
        fmt = V1_HEADER if self.version == 1 else V2_HEADER
        return fmt.pack(*attrs.astuple(self))

    @classmethod
    def unpack(cls, header: bytes) -> ImmutableShareOffsets:
        if len(header) < 4:
            raise ShareLayoutError(f"immutable share header is truncated ({len(header)} bytes)")
        (version,) = struct.unpack(">L", header[:4])
        if version not in (1, 2):
            raise ShareLayoutError(f"unknown immutable share layout version {version}")
        fmt = V1_HEADER if version == 1 else V2_HEADER
        if len(header) < fmt.size:
            raise ShareLayoutError(f"immutable share v{version} header needs {fmt.size} bytes, got {len(header)}")
        offsets = cls(*fmt.unpack(header[: fmt.size]))
        regions = [
            offsets.data,
            offsets.plaintext_hash_tree,
            offsets.crypttext_hash_tree,
            offsets.block_hashes,
            offsets.share_hashes,
            offsets.uri_extension,
        ]
        if offsets.data < fmt.size or regions != sorted(regions):
            raise ShareLayoutError("immutable share offsets are out of order (corrupt header)")
        return offsets

    def hash_tree_length(self, region: str) -> int:
        """Byte length of a hash region ("crypttext_hash_tree", "block_hashes", "share_hashes")."""
        following = {
            "plaintext_hash_tree": self.crypttext_hash_tree,
            "crypttext_hash_tree": self.block_hashes,
            "block_hashes": self.share_hashes,
            "share_hashes": self.uri_extension,
        }
        return following[region] - int(getattr(self, region))

    def block_range(self, segnum: int, num_segments: int, tail_block_size: int) -> tuple[int, int]:
        """(offset, length) of the block of segment ``segnum`` in this share."""
        if not 0 <= segnum < num_segments:
            raise ShareLayoutError(f"segment {segnum} is outside a share of {num_segments} segments")
        length = tail_block_size if segnum == num_segments - 1 else self.block_size
        return self.data + segnum * self.block_size, length


def num_share_hashes(total_shares: int) -> int:
    """How many (index, hash) pairs each share stores: its leaf plus one uncle per tree level."""
    depth = 0
    while (1 << depth) < total_shares:
        depth += 1
    return depth + 1


def immutable_share_offsets(
    block_size: int, data_size: int, num_segments: int, num_share_hash_pairs: int
) -> ImmutableShareOffsets:
    """Offsets for a share, version 1 unless a field needs 64 bits."""
    hash_tree_bytes = tree_size(num_segments) * HASH_SIZE
    for version, header in ((1, V1_HEADER), (2, V2_HEADER)):
        data = header.size
        plaintext = data + data_size
        crypttext = plaintext + hash_tree_bytes
        block_hashes = crypttext + hash_tree_bytes
        share_hashes = block_hashes + hash_tree_bytes
        uri_extension = share_hashes + num_share_hash_pairs * SHARE_HASH_PAIR_SIZE
        if version == 2 or max(block_size, data_size, uri_extension) < 2**32:
            return ImmutableShareOffsets(
                version, block_size, data_size, data, plaintext, crypttext, block_hashes, share_hashes, uri_extension
            )
    raise AssertionError("unreachable")


def allocated_size(offsets: ImmutableShareOffsets, ueb_length: int) -> int:
    """The share size to ask the server for in ``allocate_buckets``."""
    return offsets.uri_extension + offsets.ueb_length_size + ueb_length


def pack_ueb_with_length(offsets: ImmutableShareOffsets, ueb: bytes) -> bytes:
    fmt = ">L" if offsets.version == 1 else ">Q"
    return struct.pack(fmt, len(ueb)) + ueb


def unpack_ueb_length(offsets: ImmutableShareOffsets, data: bytes) -> int:
    """The UEB length from the length field at ``offsets.uri_extension``."""
    size = offsets.ueb_length_size
    if len(data) < size:
        raise ShareLayoutError(f"UEB length field is truncated ({len(data)} of {size} bytes)")
    (length,) = struct.unpack(">L" if size == 4 else ">Q", data[:size])
    if length >= MAX_UEB_LENGTH:
        raise ShareLayoutError(f"URI extension block length {length} is ridiculously large (corrupt share)")
    return int(length)


# --- hash lists --------------------------------------------------------------------------


def pack_hashes(hashes: Iterable[bytes]) -> bytes:
    """A flat hash tree (or any hash list) as stored: hashes back to back."""
    out = []
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise ShareLayoutError(f"a hash must be {HASH_SIZE} bytes, got {len(value)}")
        out.append(value)
    return b"".join(out)


def unpack_hashes(data: bytes) -> list[bytes]:
    if len(data) % HASH_SIZE:
        raise ShareLayoutError(f"hash list length {len(data)} is not a multiple of {HASH_SIZE}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def pack_share_hash_chain(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    out = []
    for index, value in pairs:
        if not 0 <= index < 2**16 or len(value) != HASH_SIZE:
            raise ShareLayoutError(f"bad share hash pair ({index}, {len(value)}-byte hash)")
        out.append(struct.pack(">H", index) + value)
    return b"".join(out)


def unpack_share_hash_chain(data: bytes) -> dict[int, bytes]:
    if len(data) % SHARE_HASH_PAIR_SIZE:
        raise ShareLayoutError(f"share hash chain length {len(data)} is not a multiple of {SHARE_HASH_PAIR_SIZE}")
    chain: dict[int, bytes] = {}
    for position in range(0, len(data), SHARE_HASH_PAIR_SIZE):
        (index,) = struct.unpack(">H", data[position : position + 2])
        chain[index] = data[position + 2 : position + SHARE_HASH_PAIR_SIZE]
    return chain


# --- URI extension block -----------------------------------------------------------------


def pack_ueb(fields: Mapping[str, int | bytes]) -> bytes:
    """Serialise UEB fields: sorted keys, each ``key:`` + netstring of the value."""
    out = []
    for key in sorted(fields):
        raw_key = key.encode("ascii")
        if not _UEB_KEY.match(raw_key):
            raise ShareLayoutError(f"UEB key {key!r} may hold only letters, '_' and '-'")
        value = fields[key]
        raw_value = b"%d" % value if isinstance(value, int) else value
        out.append(raw_key + b":" + netstring(raw_value))
    return b"".join(out)


def unpack_ueb(data: bytes) -> dict[str, int | bytes]:
    """Parse a UEB; the integer fields become ints, everything else stays bytes."""
    fields: dict[str, int | bytes] = {}
    position = 0
    while position < len(data):
        colon = data.find(b":", position)
        if colon < 0:
            raise ShareLayoutError("URI extension block: a key is not followed by ':'")
        raw_key = data[position:colon]
        if not _UEB_KEY.match(raw_key):
            raise ShareLayoutError(f"URI extension block: bad key {raw_key[:40]!r}")
        try:
            value, position = parse_netstring(data, colon + 1)
        except NetstringError as e:
            raise ShareLayoutError(f"URI extension block: bad value for {raw_key.decode()!r}: {e}") from None
        key = raw_key.decode("ascii")
        if key in UEB_INTEGER_FIELDS:
            if not value.isdigit():
                raise ShareLayoutError(f"URI extension block: {key} must be a decimal number")
            fields[key] = int(value)
        else:
            fields[key] = value
    return fields


@attrs.frozen
class UriExtension:
    """The eleven UEB fields Tahoe 1.20 writes."""

    codec_name: bytes
    codec_params: bytes
    tail_codec_params: bytes
    size: int
    segment_size: int
    num_segments: int
    needed_shares: int
    total_shares: int
    crypttext_hash: bytes
    crypttext_root_hash: bytes
    share_root_hash: bytes

    def to_bytes(self) -> bytes:
        return pack_ueb(attrs.asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> UriExtension:
        fields = unpack_ueb(data)
        values = {}
        for field in attrs.fields(cls):
            if field.name not in fields:
                raise ShareLayoutError(f"URI extension block lacks the {field.name!r} field")
            value = fields[field.name]
            wants_int = field.name in UEB_INTEGER_FIELDS
            if wants_int != isinstance(value, int):
                raise ShareLayoutError(f"URI extension block field {field.name!r} has the wrong type")
            if field.name.endswith("_hash") and len(value) != HASH_SIZE:  # type: ignore[arg-type]
                raise ShareLayoutError(f"URI extension block field {field.name!r} is not a 32-byte hash")
            values[field.name] = value
        return cls(**values)  # type: ignore[arg-type]
