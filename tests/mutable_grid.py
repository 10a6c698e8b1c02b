"""Test helper: share-file surgery for the mutable engine's tests (the grid is `tests.storage_grid.Grid`)."""

from __future__ import annotations

import struct
from pathlib import Path

from lafs.core.mutable_layout import MDMFShare, SDMFShare
from lafs.mutable.filenode import MutableFileNode

CONTAINER_DATA = 468  # where share data starts in a mutable container file (facts 5.6)
SEG = 131073  # the MDMF segment size for k=3
KIB128 = 128 * 1024


def share_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    (length,) = struct.unpack(">Q", raw[84:92])
    return raw[CONTAINER_DATA : CONTAINER_DATA + length]


def patch_share(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(CONTAINER_DATA + offset)
        f.write(data)


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(CONTAINER_DATA + offset)
        byte = f.read(1)
        f.seek(CONTAINER_DATA + offset)
        f.write(bytes([byte[0] ^ 0x40]))


async def read(node: MutableFileNode, offset: int = 0, length: int | None = None) -> bytes:
    out: list[bytes] = []
    await node.read(out.append, offset, length)
    return b"".join(out)


def corrupt_field_offset(share: bytes, mdmf: bool, field: str) -> int:
    """The offset (in share data) of a byte inside ``field``."""
    if mdmf:
        o = MDMFShare.unpack(share).offsets()
        return {
            "data": o.share_data + 16 + 5,
            "salt": o.share_data + 3,
            "signature": o.signature + 10,
            "verification_key": o.verification_key + 40,
            "share_hash_chain": o.share_hash_chain + 5,
            "block_hash_tree": o.block_hash_tree + 3,
            "seqnum": 8,
        }[field]
    parsed = SDMFShare.unpack(share)
    vk = 107
    sig = vk + len(parsed.verification_key)
    chain = sig + len(parsed.signature)
    tree = chain + 34 * len(parsed.share_hash_chain)
    data = tree + 32 * len(parsed.block_hash_tree)
    return {
        "data": data + 5,
        "salt": 41 + 3,
        "signature": sig + 10,
        "verification_key": vk + 40,
        "share_hash_chain": chain + 5,
        "block_hash_tree": tree + 3,
        "seqnum": 8,
    }[field]
