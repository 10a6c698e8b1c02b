"""What every part of the mutable engine shares: errors, key material, per-server secrets.

Everything here is pure: keys and randomness come in as arguments.
"""

from __future__ import annotations

import attrs

from lafs.core import caps, crypto, hashes
from lafs.core.errors import LafsError
from lafs.core.mutable_layout import MDMF_CHECKSTRING, MDMF_VERSION, SDMF_CHECKSTRING
from lafs.storage_client.interface import StorageServerClient

SHARE_TYPE = b"mutable"
"""The share type named in corruption advisories."""


class MutableFileError(LafsError):
    """Base class of the mutable engine's errors."""


class NotEnoughSharesError(MutableFileError):
    """Too few good shares of any version were found to rebuild the file."""

    def __init__(self, message: str, found: int = 0, needed: int = 0) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed


class UnrecoverableFileError(NotEnoughSharesError):
    """No version of the file can be recovered (possibly no share of it exists at all)."""


class UncoordinatedWriteError(MutableFileError):
    """Another writer changed the file while this one was writing it."""


class FileChangedWhileReadingError(UncoordinatedWriteError):
    """Another writer replaced the version being read, so too few of its shares are left to finish the read."""


class NotEnoughServersError(MutableFileError):
    """Too few servers accepted shares for the new version to be recoverable."""


class NotWriteableError(MutableFileError):
    """A write through a read-only cap."""


class PrivateKeyError(MutableFileError):
    """The signing key could not be recovered from any share."""


def checkstring_size(version: int) -> int:
    """How many leading bytes of a share identify its version (the publish test vector)."""
    return MDMF_CHECKSTRING.size if version == MDMF_VERSION else SDMF_CHECKSTRING.size


@attrs.frozen
class WriteKeys:
    """Everything derived from a mutable file's RSA private key (facts 2.2, 5.1)."""

    private_key: bytes = attrs.field(repr=False)
    public_key: bytes
    writekey: bytes = attrs.field(repr=False)
    readkey: bytes = attrs.field(repr=False)
    storage_index: bytes
    fingerprint: bytes
    enc_privkey: bytes = attrs.field(repr=False)

    @classmethod
    def from_private_key(cls, private_der: bytes) -> WriteKeys:
        private_der = crypto.rsa_private_der_canonical(private_der)
        public = crypto.rsa_public_der(private_der)
        writekey = hashes.ssk_writekey_hash(private_der)
        readkey = hashes.ssk_readkey_hash(writekey)
        return cls(
            private_key=private_der,
            public_key=public,
            writekey=writekey,
            readkey=readkey,
            storage_index=hashes.ssk_storage_index_hash(readkey),
            fingerprint=hashes.ssk_pubkey_fingerprint_hash(public),
            enc_privkey=crypto.aes_ctr(writekey, private_der),
        )

    def write_cap(self, mdmf: bool) -> caps.MutableWriteCap:
        cls: type[caps.MutableWriteCap] = caps.MDMFWriteCap if mdmf else caps.SSKWriteCap
        return cls(self.writekey, self.fingerprint)


def decrypt_private_key(writekey: bytes, enc_privkey: bytes) -> bytes | None:
    """The private key from a share's encrypted copy, or None unless it hashes back to ``writekey``."""
    candidate = crypto.aes_ctr(writekey, enc_privkey)
    if hashes.ssk_writekey_hash(candidate) != writekey:
        return None
    return candidate


@attrs.frozen
class CapKeys:
    """What a cap gives: a verify cap finds and checks shares, a read cap also decrypts, a write cap also signs."""

    readkey: bytes | None = attrs.field(repr=False)
    storage_index: bytes
    fingerprint: bytes
    writekey: bytes | None = attrs.field(repr=False, default=None)
    mdmf: bool = False

    @classmethod
    def from_cap(cls, cap: caps.MutableWriteCap | caps.MutableReadCap | caps.MutableVerifierCap) -> CapKeys:
        mdmf = isinstance(cap, caps.MDMFWriteCap | caps.MDMFReadCap | caps.MDMFVerifierCap)
        if isinstance(cap, caps.MutableWriteCap):
            read = cap.get_readonly()
            return cls(read.readkey, read.get_storage_index(), cap.fingerprint, cap.writekey, mdmf)
        if isinstance(cap, caps.MutableReadCap):
            return cls(cap.readkey, cap.get_storage_index(), cap.fingerprint, None, mdmf)
        return cls(None, cap.storage_index, cap.fingerprint, None, mdmf)


def lease_secrets(storage_index: bytes, lease_secret: bytes, server: StorageServerClient) -> tuple[bytes, bytes]:
    """(renew secret, cancel secret) of this client's lease on one server, derived as Tahoe does."""
    seed = server.lease_seed
    renew = hashes.bucket_renewal_secret_hash(
        hashes.file_renewal_secret_hash(hashes.my_renewal_secret_hash(lease_secret), storage_index), seed
    )
    cancel = hashes.bucket_cancel_secret_hash(
        hashes.file_cancel_secret_hash(hashes.my_cancel_secret_hash(lease_secret), storage_index), seed
    )
    return renew, cancel


def write_secrets(
    writekey: bytes, storage_index: bytes, lease_secret: bytes, server: StorageServerClient
) -> tuple[bytes, bytes, bytes]:
    """(write enabler, renew secret, cancel secret) for one server, derived as Tahoe does."""
    renew, cancel = lease_secrets(storage_index, lease_secret, server)
    return hashes.ssk_write_enabler_hash(writekey, server.lease_seed), renew, cancel
