"""Turning plaintext into the shares of one mutable version, and checking pieces of them (pure).

SDMF: the whole file is one segment, encrypted under one random salt (the IV).
MDMF: segments of ``next_multiple(128 KiB, k)`` bytes, each encrypted under its
own random salt; every share stores ``salt || block`` per segment and the
block hash covers both (facts 5.1-5.4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from lafs.core import crypto, hashes
from lafs.core.codec import SegmentLayout, ZfecCodec, mutable_segment_layout, pad_segment
from lafs.core.hashtree import (
    BadHashError,
    HashTree,
    IncompleteHashTree,
    NotEnoughHashesError,
    tree_size,
)
from lafs.core.mutable_layout import (
    MDMF_SALT_SIZE,
    MDMF_VERSION,
    SDMF_VERSION,
    MDMFShare,
    MutableVersionInfo,
    SDMFShare,
)
from lafs.mutable.common import WriteKeys

SaltSource = Callable[[], bytes]
"""Returns a fresh random 16-byte salt each call (``lambda: os.urandom(16)``)."""


def data_key(readkey: bytes, salt: bytes) -> bytes:
    return hashes.ssk_readkey_data_hash(salt, readkey)


def crypt(readkey: bytes, salt: bytes, data: bytes, offset: int = 0) -> bytes:
    """Encrypt or decrypt bytes that start ``offset`` bytes into the keystream of ``salt``."""
    return crypto.aes_ctr(data_key(readkey, salt), data, offset)


def block_leaf(version: int, salt: bytes, block: bytes) -> bytes:
    """A block's leaf in its share's block hash tree (MDMF hashes the salt with it)."""
    return hashes.block_hash(salt + block if version == MDMF_VERSION else block)


def layout_of(info: MutableVersionInfo) -> SegmentLayout:
    """How a version's data is cut into segments, from its signed encoding parameters."""
    mdmf = info.version == MDMF_VERSION
    return mutable_segment_layout(
        info.data_length, info.needed, info.total, mdmf=mdmf, max_segment_size=info.segment_size if mdmf else 131072
    )


def encode_segment(codec: ZfecCodec, readkey: bytes, salt: bytes, plaintext: bytes) -> list[bytes]:
    """The N blocks of one segment: encrypted (keystream from 0), zero-padded to a multiple of k, coded."""
    padded = pad_segment(crypt(readkey, salt, plaintext), codec.needed)
    return [bytes(block) for block in codec.encode(padded)]


def share_hash_tree(block_tree_roots: Sequence[bytes]) -> tuple[bytes, list[dict[int, bytes]]]:
    """The root hash R over the shares' block-tree roots, and each share's chain (without its own leaf)."""
    tree = HashTree(block_tree_roots)
    chains = [{i: tree[i] for i in tree.needed_hashes(shnum)} for shnum in range(len(block_tree_roots))]
    return tree.root, chains


@attrs.frozen
class EncodedVersion:
    """One version, ready to place: packed shares indexed by share number."""

    info: MutableVersionInfo
    shares: list[bytes]


def encode_sdmf(plaintext: bytes, keys: WriteKeys, seqnum: int, needed: int, total: int, salt: bytes) -> EncodedVersion:
    layout = mutable_segment_layout(len(plaintext), needed, total, mdmf=False)
    codec = ZfecCodec(needed, total)
    if layout.num_segments:
        blocks = encode_segment(codec, keys.readkey, salt, plaintext)
    else:
        blocks = [b""] * total
    trees = [HashTree([block_leaf(SDMF_VERSION, salt, block)] if layout.num_segments else []) for block in blocks]
    root, chains = share_hash_tree([tree.root for tree in trees])
    info = MutableVersionInfo(SDMF_VERSION, seqnum, root, salt, needed, total, layout.segment_size, len(plaintext))
    signature = crypto.rsa_sign(keys.private_key, info.signed_prefix())
    shares = [
        SDMFShare(info, keys.public_key, signature, chains[n], trees[n].as_list(), blocks[n], keys.enc_privkey).pack()
        for n in range(total)
    ]
    return EncodedVersion(info, shares)


@attrs.frozen
class EncodedSegments:
    """A run of MDMF segments: per segment its salt, and per share number its block."""

    first: int
    salts: list[bytes]
    blocks: list[list[bytes]]  # blocks[i][shnum] is share shnum's block of segment first+i

    def leaves(self, shnum: int) -> list[bytes]:
        return [block_leaf(MDMF_VERSION, salt, seg[shnum]) for salt, seg in zip(self.salts, self.blocks, strict=True)]

    def share_data(self, shnum: int) -> bytes:
        return b"".join(salt + seg[shnum] for salt, seg in zip(self.salts, self.blocks, strict=True))


def encode_mdmf_segments(
    plaintext: bytes, first: int, layout: SegmentLayout, readkey: bytes, salts: SaltSource
) -> EncodedSegments:
    """Encode ``plaintext``, which starts at segment ``first`` and ends at a segment end or the file's end."""
    codec = ZfecCodec(layout.needed, layout.total)
    segment_salts = []
    blocks = []
    for start in range(0, len(plaintext), layout.segment_size):
        salt = salts()
        if len(salt) != MDMF_SALT_SIZE:
            raise ValueError(f"an MDMF salt must be {MDMF_SALT_SIZE} bytes, got {len(salt)}")
        segment_salts.append(salt)
        blocks.append(encode_segment(codec, readkey, salt, plaintext[start : start + layout.segment_size]))
    return EncodedSegments(first, segment_salts, blocks)


def build_mdmf_version(
    keys: WriteKeys,
    seqnum: int,
    layout: SegmentLayout,
    leaves: Sequence[Sequence[bytes]],
) -> tuple[MutableVersionInfo, list[list[bytes]], list[dict[int, bytes]], bytes]:
    """Block trees, share chains and signature of an MDMF version whose block leaves are known.

    Returns (info, block trees as flat lists, chains, signature).
    """
    trees = [HashTree(list(share_leaves)) for share_leaves in leaves]
    root, chains = share_hash_tree([tree.root for tree in trees])
    info = MutableVersionInfo(
        MDMF_VERSION, seqnum, root, b"", layout.needed, layout.total, layout.segment_size, layout.file_size
    )
    signature = crypto.rsa_sign(keys.private_key, info.signed_prefix())
    return info, [tree.as_list() for tree in trees], chains, signature


def encode_mdmf(
    plaintext: bytes, keys: WriteKeys, seqnum: int, needed: int, total: int, salts: SaltSource
) -> EncodedVersion:
    layout = mutable_segment_layout(len(plaintext), needed, total, mdmf=True)
    segments = encode_mdmf_segments(plaintext, 0, layout, keys.readkey, salts)
    info, trees, chains, signature = build_mdmf_version(
        keys, seqnum, layout, [segments.leaves(n) for n in range(total)]
    )
    shares = [
        MDMFShare(
            info, keys.enc_privkey, chains[n], signature, keys.public_key, segments.share_data(n), trees[n]
        ).pack()
        for n in range(total)
    ]
    return EncodedVersion(info, shares)


# --- checks a reader makes --------------------------------------------------------------


class ShareCorruptError(Exception):
    """A piece of one share that fails verification (internal: the share is then dropped)."""


def check_block_tree(info: MutableVersionInfo, shnum: int, stored: Sequence[bytes], chain: dict[int, bytes]) -> list[bytes]:
    """Verify a share's whole stored block hash tree against the signed root; return its leaves.

    The stored tree must be a complete, self-consistent tree over the version's
    segments, and its root must chain to the root hash R through ``chain``.
    """
    layout = layout_of(info)
    if len(stored) != tree_size(layout.num_segments):
        raise ShareCorruptError(
            f"share {shnum}: block hash tree has {len(stored)} hashes, expected {tree_size(layout.num_segments)}"
        )
    first_leaf = len(stored) // 2
    leaves = list(stored[first_leaf : first_leaf + layout.num_segments])
    if HashTree(leaves).as_list() != list(stored):
        raise ShareCorruptError(f"share {shnum}: block hash tree is not consistent")
    share_tree = IncompleteHashTree(info.total)
    share_tree.set_hashes({0: info.root_hash})
    try:
        share_tree.set_hashes(hashes=chain, leaves={shnum: stored[0]})
    except (BadHashError, NotEnoughHashesError) as e:
        raise ShareCorruptError(f"share {shnum}: share hash chain does not lead to the signed root ({e})") from None
    except IndexError as e:
        raise ShareCorruptError(f"share {shnum}: share hash chain names nodes outside the tree ({e})") from None
    return leaves
