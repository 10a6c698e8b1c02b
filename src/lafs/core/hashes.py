"""Every tagged hash Tahoe-LAFS 1.20 uses, byte-exact.

``tagged_hash(tag, value)`` is SHA256d(netstring(tag) || value), optionally
truncated; ``tagged_pair_hash`` hashes two netstring'd values under a tag.
The named functions below are what the rest of lafs calls; their tags are the
wire contract and must never change.
"""

from __future__ import annotations

import hashlib

from lafs.core.netstring import netstring

KEY_SIZE = 16
CRYPTO_VAL_SIZE = 32
HASH_SIZE = 32
SALT_SIZE = 16
STORAGE_INDEX_SIZE = 16

BytesLike = bytes | bytearray | memoryview
"""What the hashes accept as data: slices of a larger read need not be copied first."""


def sha256d(data: bytes) -> bytes:
    """SHA-256 applied twice."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def tagged_hash(tag: bytes, value: BytesLike, truncate_to: int | None = None) -> bytes:
    # Fed to a hasher rather than concatenated: values are often whole blocks or segments.
    hasher = Sha256dHasher(tag, truncate_to)
    hasher.update(value)
    return hasher.digest()


def tagged_pair_hash(tag: bytes, first: bytes, second: bytes, truncate_to: int | None = None) -> bytes:
    digest = sha256d(netstring(tag) + netstring(first) + netstring(second))
    return digest if truncate_to is None else digest[:truncate_to]


class Sha256dHasher:
    """Incremental tagged SHA256d, for hashing a file without holding it."""

    def __init__(self, tag: bytes, truncate_to: int | None = None) -> None:
        self._inner = hashlib.sha256(netstring(tag))
        self._truncate_to = truncate_to

    def update(self, data: BytesLike) -> None:
        self._inner.update(data)

    def digest(self) -> bytes:
        digest = hashlib.sha256(self._inner.digest()).digest()
        return digest if self._truncate_to is None else digest[: self._truncate_to]


# --- immutable files ------------------------------------------------------

TAG_CHK_STORAGE_INDEX = b"allmydata_immutable_key_to_storage_index_v1"
TAG_CONVERGENCE = b"allmydata_immutable_content_to_key_with_added_secret_v1+"
TAG_BLOCK = b"allmydata_encoded_subshare_v1"
TAG_UEB = b"allmydata_uri_extension_v1"
TAG_CRYPTTEXT = b"allmydata_crypttext_v1"
TAG_CRYPTTEXT_SEGMENT = b"allmydata_crypttext_segment_v1"
TAG_PLAINTEXT = b"allmydata_plaintext_v1"
TAG_PLAINTEXT_SEGMENT = b"allmydata_plaintext_segment_v1"


def storage_index_hash(key: bytes) -> bytes:
    """The 16-byte storage index of an immutable file encrypted with ``key``."""
    return tagged_hash(TAG_CHK_STORAGE_INDEX, key, STORAGE_INDEX_SIZE)


def convergence_tag(needed: int, total: int, segment_size: int, convergence_secret: bytes) -> bytes:
    """The composite tag under which a file's plaintext is hashed into its convergent key."""
    if not 1 <= needed <= total <= 256:
        raise ValueError(f"encoding parameters k={needed}, N={total} must satisfy 1 <= k <= N <= 256")
    params = b"%d,%d,%d" % (needed, total, segment_size)
    return TAG_CONVERGENCE + netstring(convergence_secret) + netstring(params)


def convergence_hasher(needed: int, total: int, segment_size: int, convergence_secret: bytes) -> Sha256dHasher:
    """A hasher that, fed the whole plaintext, yields the 16-byte convergent key."""
    return Sha256dHasher(convergence_tag(needed, total, segment_size, convergence_secret), KEY_SIZE)


def convergence_hash(needed: int, total: int, segment_size: int, data: bytes, convergence_secret: bytes) -> bytes:
    hasher = convergence_hasher(needed, total, segment_size, convergence_secret)
    hasher.update(data)
    return hasher.digest()


def block_hash(block: BytesLike) -> bytes:
    return tagged_hash(TAG_BLOCK, block)


def uri_extension_hash(packed_ueb: bytes) -> bytes:
    return tagged_hash(TAG_UEB, packed_ueb)


def crypttext_hash(ciphertext: bytes) -> bytes:
    return tagged_hash(TAG_CRYPTTEXT, ciphertext)


def crypttext_hasher() -> Sha256dHasher:
    return Sha256dHasher(TAG_CRYPTTEXT)


def crypttext_segment_hash(segment: BytesLike) -> bytes:
    return tagged_hash(TAG_CRYPTTEXT_SEGMENT, segment)


def plaintext_hash(plaintext: bytes) -> bytes:
    return tagged_hash(TAG_PLAINTEXT, plaintext)


def plaintext_segment_hash(segment: bytes) -> bytes:
    return tagged_hash(TAG_PLAINTEXT_SEGMENT, segment)


# --- lease secrets --------------------------------------------------------


def my_renewal_secret_hash(lease_secret: bytes) -> bytes:
    # Tahoe swaps the roles here: the secret is the netstring'd tag.
    return tagged_hash(lease_secret, b"allmydata_client_renewal_secret_v1")


def my_cancel_secret_hash(lease_secret: bytes) -> bytes:
    return tagged_hash(lease_secret, b"allmydata_client_cancel_secret_v1")


def file_renewal_secret_hash(client_renewal_secret: bytes, storage_index: bytes) -> bytes:
    return tagged_pair_hash(b"allmydata_file_renewal_secret_v1", client_renewal_secret, storage_index)


def file_cancel_secret_hash(client_cancel_secret: bytes, storage_index: bytes) -> bytes:
    return tagged_pair_hash(b"allmydata_file_cancel_secret_v1", client_cancel_secret, storage_index)


def bucket_renewal_secret_hash(file_renewal_secret: bytes, lease_seed: bytes) -> bytes:
    return tagged_pair_hash(b"allmydata_bucket_renewal_secret_v1", file_renewal_secret, lease_seed)


def bucket_cancel_secret_hash(file_cancel_secret: bytes, lease_seed: bytes) -> bytes:
    return tagged_pair_hash(b"allmydata_bucket_cancel_secret_v1", file_cancel_secret, lease_seed)


# --- mutable files --------------------------------------------------------


def ssk_writekey_hash(privkey_der: bytes) -> bytes:
    return tagged_hash(b"allmydata_mutable_privkey_to_writekey_v1", privkey_der, KEY_SIZE)


def ssk_readkey_hash(writekey: bytes) -> bytes:
    return tagged_hash(b"allmydata_mutable_writekey_to_readkey_v1", writekey, KEY_SIZE)


def ssk_storage_index_hash(readkey: bytes) -> bytes:
    return tagged_hash(b"allmydata_mutable_readkey_to_storage_index_v1", readkey, STORAGE_INDEX_SIZE)


def ssk_pubkey_fingerprint_hash(pubkey_der: bytes) -> bytes:
    return tagged_hash(b"allmydata_mutable_pubkey_to_fingerprint_v1", pubkey_der)


def ssk_readkey_data_hash(salt: bytes, readkey: bytes) -> bytes:
    return tagged_pair_hash(b"allmydata_mutable_readkey_to_datakey_v1", salt, readkey, KEY_SIZE)


def ssk_write_enabler_master_hash(writekey: bytes) -> bytes:
    return tagged_hash(b"allmydata_mutable_writekey_to_write_enabler_master_v1", writekey)


def ssk_write_enabler_hash(writekey: bytes, write_enabler_seed: bytes) -> bytes:
    """The write enabler for one server; the seed is that server's binary 20-byte tubid."""
    master = ssk_write_enabler_master_hash(writekey)
    return tagged_pair_hash(
        b"allmydata_mutable_write_enabler_master_and_nodeid_to_write_enabler_v1", master, write_enabler_seed
    )


# --- directories ----------------------------------------------------------


def mutable_rwcap_salt_hash(rw_uri: bytes) -> bytes:
    return tagged_hash(b"allmydata_dirnode_child_rwcap_to_salt_v1", rw_uri, KEY_SIZE)


def mutable_rwcap_key_hash(salt: bytes, dir_writekey: bytes) -> bytes:
    return tagged_pair_hash(
        b"allmydata_mutable_writekey_and_salt_to_dirnode_child_capkey_v1", salt, dir_writekey, KEY_SIZE
    )


def hmac(key: bytes, data: bytes) -> bytes:
    """Tahoe's dirnode MAC: an HMAC-like SHA-256 whose key is XORed but not padded."""
    outer_key = bytes(b ^ 0x5C for b in key)
    inner_key = bytes(b ^ 0x36 for b in key)
    inner = hashlib.sha256(inner_key + data).digest()
    return hashlib.sha256(outer_key + inner).digest()


# --- Merkle trees ---------------------------------------------------------


def empty_leaf_hash(position: int) -> bytes:
    return tagged_hash(b"Merkle tree empty leaf", b"%d" % position)


def internal_node_hash(left: bytes, right: bytes) -> bytes:
    return tagged_pair_hash(b"Merkle tree internal node", left, right)


# --- servers and misc -----------------------------------------------------


def permute_server_hash(storage_index: bytes, permutation_seed: bytes) -> bytes:
    """The key by which servers are ordered for a storage index (plain SHA-1)."""
    return hashlib.sha1(storage_index + permutation_seed).digest()


def hashed_lease_secret(secret: bytes) -> bytes:
    """How v2 containers store a lease secret: unkeyed BLAKE2b-256."""
    return hashlib.blake2b(secret, digest_size=32).digest()


def backupdb_dirhash(contents: bytes) -> bytes:
    return tagged_hash(b"allmydata_backupdb_dirhash_v1", contents)
