"""Test helper: an in-process grid of storage servers for the mutable engine, and share-file surgery."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.internet.task import Clock

from lafs.core import base32, hashes
from lafs.core.mutable_layout import MDMFShare, SDMFShare
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.mutable.filenode import MutableContext, MutableFileNode
from lafs.mutable.keys import KeyPool
from lafs.storage.server import StorageServer
from lafs.storage_client.fake import InProcessStorageClient

CONTAINER_DATA = 468  # where share data starts in a mutable container file (facts 5.6)
SEG = 131073  # the MDMF segment size for k=3
KIB128 = 128 * 1024


class Grid:
    def __init__(self, base: Path, count: int = 10) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        self.clients = [
            InProcessStorageClient(StorageServer.on_disk(str(base / f"s{i}"), bytes([i + 1]) * 20, clock=clock), f"v0-server{i:02d}")
            for i in range(count)
        ]

    def permuted(self, storage_index: bytes) -> list[InProcessStorageClient]:
        return sorted(self.clients, key=lambda c: hashes.permute_server_hash(storage_index, c.server_id.encode()))

    def share_path(self, client: InProcessStorageClient, storage_index: bytes, shnum: int) -> Path:
        encoded = base32.b2a(storage_index)
        return Path(client.server.backend.shares_dir) / encoded[:2] / encoded / str(shnum)

    def shares(self, storage_index: bytes) -> list[tuple[InProcessStorageClient, int, Path]]:
        found = []
        for client in self.clients:
            encoded = base32.b2a(storage_index)
            bucket = Path(client.server.backend.shares_dir) / encoded[:2] / encoded
            found += [(client, int(p.name), p) for p in sorted(bucket.glob("[0-9]*"))]
        return found

    def advisories(self) -> list[str]:
        out = []
        for client in self.clients:
            directory = Path(client.server.backend.corruption_dir)
            out += [p.name for p in directory.glob("*")] if directory.exists() else []
        return out

    def context(self) -> MutableContext:
        return MutableContext(
            servers_for=self.permuted,
            secrets=ClientSecrets(b"l" * 32, b"c" * 32),
            params=EncodingParameters(3, 7, 10),
            reactor=reactor,
            key_pool=KEYS,
        )


KEYS = KeyPool(reactor, size=2)


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid(tmp_path)


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
