"""What ``tahoe debug dump-share`` prints, as a pure function of the share file's bytes.

No I/O here: the CLI reads (or maps) the file and passes its bytes, the
absolute path it was given and the current time.  The line formats follow
the output of the real Tahoe 1.20 (observed on real shares; see
tests/unit/data/dump_share_producer.py.txt), including its quirks: SDMF
share-hash-chain indices are sorted as strings, MDMF ones as numbers;
immutable leases "expire", mutable ones "expires".

Tahoe takes the storage index for the verify cap from the name of the
directory holding the share (as on a server: ``shares/<prefix>/<SI>/<shnum>``).
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Callable
from typing import Protocol

from lafs.core import base32, caps, hashes
from lafs.core.containers import (
    EXTRA_LEASE_COUNT,
    IMMUTABLE_HEADER,
    IMMUTABLE_LEASE,
    MUTABLE_DATA_OFFSET,
    MUTABLE_HEADER,
    MUTABLE_LEASE,
    MUTABLE_LEASE_SLOTS,
    ImmutableContainerHeader,
    LeaseInfo,
    MutableContainerHeader,
    is_mutable_container,
    mutable_lease_slot_offset,
)
from lafs.core.errors import FormatError
from lafs.core.mutable_layout import (
    MDMF_HEADER_SIZE,
    MDMF_VERSION,
    SDMF_HEADER_SIZE,
    SDMF_VERSION,
    MDMFOffsets,
    MutableVersionInfo,
    SDMFOffsets,
    unpack_prefix,
)
from lafs.core.mutable_layout import SDMF_OFFSETS as SDMF_OFFSETS_STRUCT
from lafs.core.mutable_layout import SDMF_PREFIX as SDMF_PREFIX_STRUCT
from lafs.core.share_layout import (
    HASH_SIZE,
    SHARE_HASH_PAIR_SIZE,
    ImmutableShareOffsets,
    unpack_ueb,
    unpack_ueb_length,
)

DAY = 24 * 60 * 60

# The UEB fields Tahoe shows, in its three groups; "size" is shown as "file_size".
_UEB_GROUPS: tuple[tuple[str, ...], ...] = (
    ("version", "size", "num_segments", "segment_size", "needed_shares", "total_shares"),
    ("codec_name", "codec_params", "tail_codec_params"),
    ("plaintext_hash", "plaintext_root_hash", "crypttext_hash", "crypttext_root_hash", "share_root_hash", "UEB_hash"),
)
_UEB_DISPLAY_NAMES = {"size": "file_size"}
_UEB_HASH_FIELDS = frozenset(_UEB_GROUPS[2])


class DumpShareError(FormatError):
    """The file is not a share dump-share can read (not a container, truncated, corrupt)."""


class ShareBytes(Protocol):
    """Bytes or an mmap of the share file: dump-share only needs its length and slices."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> bytes: ...


def dump_share_lines(
    data: ShareBytes, path: str, now: float, *, offsets: bool = False, leases_only: bool = False
) -> list[str]:
    """The lines ``tahoe debug dump-share`` prints for the share file ``data`` found at ``path``.

    ``path`` should be absolute (Tahoe prints the absolute path); ``now`` is
    seconds since the epoch, for the lease expiry lines.
    """
    try:
        if is_mutable_container(data[:32]):
            body = _mutable_lines(data, path, now, offsets)
        else:
            body = _immutable_lines(data, path, now, offsets, leases_only)
    except FormatError as e:
        # One message naming the file and the problem; the CLI prints it as one line.
        raise DumpShareError(f"{path}: {e}") from None
    return [f"share filename: {quote_path(path)}", *body]


def quote_path(path: str) -> str:
    """Quote a path as Tahoe does: single quotes, or double quotes when the path holds a single quote."""
    return repr(path)


def storage_index_from_path(path: str) -> bytes | None:
    """The storage index named by the share's parent directory, or None when it names none."""
    name = posixpath.basename(posixpath.dirname(path))
    try:
        storage_index = base32.a2b(name)
    except FormatError:
        return None
    return storage_index if len(storage_index) == 16 else None


def _verify_cap_text(path: str, make: Callable[[bytes], str]) -> str:
    """The verify cap made from the path's storage index, or why there is none.

    Tahoe fails with a traceback when the share is not in a directory named
    by its storage index; we say so in place of the cap instead.
    """
    storage_index = storage_index_from_path(path)
    if storage_index is None:
        parent = posixpath.basename(posixpath.dirname(path))
        return f"(unknown: the parent directory {parent!r} is not a storage index)"
    return make(storage_index)


def _expiry_text(expiration_time: int, now: float) -> str:
    # Tahoe formats the float difference with %d (truncation toward zero) and
    # gives whole days only for leases that have not expired.
    remaining = expiration_time - now
    if remaining > 0:
        return f"{int(remaining)}s ({int(remaining / DAY)} days)"
    return f"{int(remaining)}s"


def _need(data: ShareBytes, end: int, what: str) -> None:
    if len(data) < end:
        raise DumpShareError(f"share file is truncated: {what} needs {end} bytes, the file has {len(data)}")


# --- immutable ---------------------------------------------------------------------------


def _immutable_lines(data: ShareBytes, path: str, now: float, show_offsets: bool, leases_only: bool) -> list[str]:
    _need(data, IMMUTABLE_HEADER.size, "the container header")
    header_bytes = data[: IMMUTABLE_HEADER.size]
    (version,) = struct.unpack(">L", header_bytes[:4])
    if version not in (1, 2):
        raise DumpShareError(
            "not a share file: it starts with neither a mutable container magic "
            f"nor an immutable container version (1 or 2), but {version}"
        )
    header = ImmutableContainerHeader.unpack(header_bytes)
    lease_offset = header.lease_offset(len(data))
    leases = [
        LeaseInfo.unpack_immutable(data[at : at + IMMUTABLE_LEASE.size])
        for at in range(lease_offset, lease_offset + header.num_leases * IMMUTABLE_LEASE.size, IMMUTABLE_LEASE.size)
    ]
    lines: list[str] = []
    if not leases_only:
        lines.extend(_chk_lines(data, path, show_offsets, lease_offset))
    lines.append("")
    if leases:
        for number, lease in enumerate(leases):
            lines.append(f" Lease #{number}: owner={lease.owner_num}, expire in {_expiry_text(lease.expiration_time, now)}")
    else:
        lines.append(" No leases.")
    lines.append("")
    return lines


def _chk_lines(data: ShareBytes, path: str, show_offsets: bool, lease_offset: int) -> list[str]:
    # Share-data offsets count from the end of the container header; read only
    # the pieces needed, so a mapped multi-gigabyte share is never copied whole.
    base = IMMUTABLE_HEADER.size
    offsets = ImmutableShareOffsets.unpack(data[base : min(lease_offset, base + 0x44)])
    length_at = base + offsets.uri_extension
    if length_at + offsets.ueb_length_size > lease_offset:
        raise DumpShareError("share file is truncated: the URI extension block lies past the end of the share data")
    ueb_length = unpack_ueb_length(offsets, data[length_at : length_at + offsets.ueb_length_size])
    ueb_at = length_at + offsets.ueb_length_size
    if ueb_at + ueb_length > lease_offset:
        raise DumpShareError("share file is truncated: the URI extension block is cut short")
    ueb_bytes = data[ueb_at : ueb_at + ueb_length]
    fields: dict[str, int | bytes] = dict(unpack_ueb(ueb_bytes))
    for key in ("needed_shares", "total_shares", "size"):
        if not isinstance(fields.get(key), int):
            raise DumpShareError(f"URI extension block lacks the {key!r} field (corrupt share)")
    ueb_hash = hashes.uri_extension_hash(ueb_bytes)
    shown: dict[str, int | bytes] = {**fields, "version": offsets.version, "UEB_hash": ueb_hash}

    lines: list[str] = []
    # Tahoe separates the groups with blank lines, and puts any other UEB
    # keys after one more blank line under "LEFTOVER:".
    for number, group in enumerate(_UEB_GROUPS):
        if number:
            lines.append("")
        for key in group:
            if key in shown:
                lines.append(f"{_UEB_DISPLAY_NAMES.get(key, key):>20}: {_ueb_value(key, shown[key])}")
    grouped = {key for group in _UEB_GROUPS for key in group}
    leftover = sorted(set(shown) - grouped)
    if leftover:
        lines.extend(["", "LEFTOVER:"])
        lines.extend(f"{key:>20}: {_ueb_value(key, shown[key])}" for key in leftover)

    def make(storage_index: bytes) -> str:
        return caps.CHKFileVerifierCap(
            storage_index, ueb_hash, int(fields["needed_shares"]), int(fields["total_shares"]), int(fields["size"])
        ).to_string()

    lines.append(f"{'verify-cap':>20}: {_verify_cap_text(path, make)}")
    lines.append("")
    lines.append(" Size of data within the share:")
    # Sizes from the offset table: the header's own block/data size fields are not used.
    lines.append(f"{'data':>20}: {offsets.plaintext_hash_tree - offsets.data}")
    lines.append(f"{'uri-extension':>20}: {ueb_length}")
    lines.append(f"{'validation':>20}: {offsets.uri_extension - offsets.plaintext_hash_tree}")
    if show_offsets:
        lines.append("")
        lines.append(" Section Offsets:")
        lines.append(f"{'share data':>20}: {base}")
        for label, value in (
            ("block data", offsets.data),
            ("plaintext_hash_tree", offsets.plaintext_hash_tree),
            ("crypttext_hash_tree", offsets.crypttext_hash_tree),
            ("block_hashes", offsets.block_hashes),
            ("share_hashes", offsets.share_hashes),
            ("uri_extension", offsets.uri_extension),
        ):
            lines.append(f"{label:>22}: {base + value}   (0x{base + value:x})")
        lines.append(f"{'leases':>20}: {lease_offset}")
    return lines


def _ueb_value(key: str, value: int | bytes) -> str:
    if isinstance(value, int):
        return str(value)
    if key in _UEB_HASH_FIELDS:
        return base32.b2a(value)
    return value.decode("utf-8", errors="backslashreplace")


# --- mutable -----------------------------------------------------------------------------


def _mutable_lines(data: ShareBytes, path: str, now: float, show_offsets: bool) -> list[str]:
    _need(data, MUTABLE_DATA_OFFSET, "the mutable container header and lease slots")
    header = MutableContainerHeader.unpack(data[: MUTABLE_HEADER.size])
    extra_at = header.extra_lease_offset
    _need(data, extra_at + EXTRA_LEASE_COUNT.size, "the extra-lease count")
    (num_extra,) = EXTRA_LEASE_COUNT.unpack(data[extra_at : extra_at + EXTRA_LEASE_COUNT.size])
    first_extra = extra_at + EXTRA_LEASE_COUNT.size
    _need(data, first_extra + num_extra * MUTABLE_LEASE.size, f"{num_extra} extra leases")

    numbered: list[tuple[int, LeaseInfo]] = []
    for slot in range(MUTABLE_LEASE_SLOTS):
        at = mutable_lease_slot_offset(slot)
        numbered.append((slot, LeaseInfo.unpack_mutable(data[at : at + MUTABLE_LEASE.size])))
    for index in range(num_extra):
        at = first_extra + index * MUTABLE_LEASE.size
        numbered.append((MUTABLE_LEASE_SLOTS + index, LeaseInfo.unpack_mutable(data[at : at + MUTABLE_LEASE.size])))
    # Tahoe lists every lease whose owner number is not 0, keeping its slot number.
    leases = [(number, lease) for number, lease in numbered if lease.owner_num != 0]

    share = data[MUTABLE_DATA_OFFSET : MUTABLE_DATA_OFFSET + header.data_length]
    version = share[0] if share else None
    share_type = {SDMF_VERSION: "SDMF", MDMF_VERSION: "MDMF"}.get(version if version is not None else -1, "unknown")

    lines = [
        "",
        "Mutable slot found:",
        f" share_type: {share_type}",
        f" write_enabler: {base32.b2a(header.write_enabler)}",
        f" WE for nodeid: {base32.b2a(header.write_enabler_nodeid)}",
        f" num_extra_leases: {num_extra}",
        f" container_size: {extra_at - MUTABLE_DATA_OFFSET}",
        f" data_length: {header.data_length}",
    ]
    # Version-2 containers store the lease secrets hashed, and Tahoe says so.
    secret_prefix = "hash:" if header.version == 2 else ""
    if leases:
        for number, lease in leases:
            lines.extend(
                [
                    "",
                    f" Lease #{number}:",
                    f"  ownerid: {lease.owner_num}",
                    f"  expires in {_expiry_text(lease.expiration_time, now)}",
                    f"  renew_secret: {secret_prefix}{base32.b2a(lease.renew_secret)}",
                    f"  cancel_secret: {secret_prefix}{base32.b2a(lease.cancel_secret)}",
                    f"  secrets are for nodeid: {base32.b2a(lease.nodeid or b'')}",
                ]
            )
    else:
        lines.append("No leases.")
    lines.append("")
    if share_type == "SDMF":
        lines.extend(_sdmf_lines(share, path, show_offsets, extra_at))
        lines.append("")
    elif share_type == "MDMF":
        lines.extend(_mdmf_lines(share, path, show_offsets, extra_at))
        lines.append("")
    return lines


def _mutable_verify_cap(path: str, cls: type[caps.MutableVerifierCap], pubkey: bytes) -> str:
    fingerprint = hashes.ssk_pubkey_fingerprint_hash(pubkey)

    def make(storage_index: bytes) -> str:
        return cls(storage_index, fingerprint).to_string()

    return _verify_cap_text(path, make)


def _chain_indices(region: bytes) -> list[int]:
    if len(region) % SHARE_HASH_PAIR_SIZE:
        raise DumpShareError("the share hash chain is not a whole number of (index, hash) pairs (corrupt share)")
    return [struct.unpack(">H", region[at : at + 2])[0] for at in range(0, len(region), SHARE_HASH_PAIR_SIZE)]


def _hash_count(region_length: int) -> int:
    if region_length % HASH_SIZE:
        raise DumpShareError("the block hash tree is not a whole number of hashes (corrupt share)")
    return region_length // HASH_SIZE


def _info_lines(info: MutableVersionInfo) -> list[str]:
    lines = [f"  seqnum: {info.seqnum}", f"  root_hash: {base32.b2a(info.root_hash)}"]
    if info.version == SDMF_VERSION:
        lines.append(f"  IV: {base32.b2a(info.salt)}")
    lines.extend(
        [
            f"  required_shares: {info.needed}",
            f"  total_shares: {info.total}",
            f"  segsize: {info.segment_size}",
            f"  datalen: {info.data_length}",
        ]
    )
    return lines


def _sdmf_lines(share: bytes, path: str, show_offsets: bool, extra_at: int) -> list[str]:
    if len(share) < SDMF_HEADER_SIZE:
        raise DumpShareError(f"SDMF share is truncated: its header needs {SDMF_HEADER_SIZE} bytes, got {len(share)}")
    info = unpack_prefix(share)
    o = SDMFOffsets(*SDMF_OFFSETS_STRUCT.unpack(share[SDMF_PREFIX_STRUCT.size : SDMF_HEADER_SIZE]))
    ordered = [SDMF_HEADER_SIZE, o.signature, o.share_hash_chain, o.block_hash_tree, o.share_data, o.enc_privkey, o.eof]
    if ordered != sorted(ordered) or o.eof > len(share):
        raise DumpShareError("SDMF share offsets are out of order or past the end of the share (corrupt share)")
    pubkey = share[SDMF_HEADER_SIZE : o.signature]
    # Tahoe keeps the chain in a dict and joins its keys as strings, sorted as strings.
    chain = sorted(str(index) for index in _chain_indices(share[o.share_hash_chain : o.block_hash_tree]))
    lines = [
        " SDMF contents:",
        *_info_lines(info),
        f"  enc_privkey: {o.eof - o.enc_privkey} bytes",
        f"  pubkey: {len(pubkey)} bytes",
        f"  signature: {o.share_hash_chain - o.signature} bytes",
        f"  share_hash_chain: {','.join(chain)}",
        f"  block_hash_tree: {_hash_count(o.share_data - o.block_hash_tree)} nodes",
        f"  verify-cap: {_mutable_verify_cap(path, caps.SSKVerifierCap, pubkey)}",
    ]
    if show_offsets:
        base = MUTABLE_DATA_OFFSET
        lines.extend(["", " Section Offsets:"])
        lines.extend(_offset_line(f"{label:>20}", value) for label, value in (("first lease", MUTABLE_HEADER.size), ("share data", base)))
        for label, value in (
            ("seqnum", 1),
            ("root_hash", 9),
            ("signature", o.signature),
            ("share_hash_chain", o.share_hash_chain),
            ("block_hash_tree", o.block_hash_tree),
            ("block data", o.share_data),
            ("enc_privkey", o.enc_privkey),
            ("end of share data", o.eof),
        ):
            lines.append(_offset_line(f"{label:>22}", base + value))
        lines.append(_offset_line(f"{'extra leases':>20}", extra_at + EXTRA_LEASE_COUNT.size))
    return lines


def _mdmf_lines(share: bytes, path: str, show_offsets: bool, extra_at: int) -> list[str]:
    if len(share) < MDMF_HEADER_SIZE:
        raise DumpShareError(f"MDMF share is truncated: its header needs {MDMF_HEADER_SIZE} bytes, got {len(share)}")
    info = unpack_prefix(share)
    o = MDMFOffsets.unpack(share)
    if o.eof > len(share):
        raise DumpShareError("MDMF share offsets point past the end of the share (corrupt share)")
    pubkey = share[o.verification_key : o.verification_key_end]
    # MDMF chains are listed in numeric order whatever their order in the file.
    chain = sorted(_chain_indices(share[o.share_hash_chain : o.signature]))
    lines = [
        " MDMF contents:",
        *_info_lines(info),
        f"  enc_privkey: {o.share_hash_chain - o.enc_privkey} bytes",
        f"  pubkey: {len(pubkey)} bytes",
        f"  signature: {o.verification_key - o.signature} bytes",
        f"  share_hash_chain: {','.join(str(index) for index in chain)}",
        f"  block_hash_tree: {_hash_count(o.eof - o.block_hash_tree)} nodes",
        f"  verify-cap: {_mutable_verify_cap(path, caps.MDMFVerifierCap, pubkey)}",
    ]
    if show_offsets:
        base = MUTABLE_DATA_OFFSET
        lines.extend(["", " Section Offsets:"])
        lines.append(_offset_line("  first lease", MUTABLE_HEADER.size))
        lines.append(_offset_line("  share data", base))
        for label, value in (
            ("seqnum", 1),
            ("root_hash", 9),
            ("enc_privkey", o.enc_privkey),
            ("share_hash_chain", o.share_hash_chain),
            ("signature", o.signature),
            ("pubkey", o.verification_key),
            ("end of pubkey", o.verification_key_end),
            ("block data", o.share_data),
            ("block_hash_tree", o.block_hash_tree),
            ("end of share data", o.eof),
        ):
            lines.append(_offset_line(f"    {label}", base + value))
        lines.append(_offset_line("  extra leases", extra_at + EXTRA_LEASE_COUNT.size))
    return lines


def _offset_line(label: str, value: int) -> str:
    return f"{label}: {value}   (0x{value:x})"


__all__ = ["DumpShareError", "ShareBytes", "dump_share_lines", "quote_path", "storage_index_from_path"]
