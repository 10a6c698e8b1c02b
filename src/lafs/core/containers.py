"""The storage server's on-disk containers around share data, and their lease records.

Immutable container: ``>LLL`` header (version, legacy data length, lease
count), the share data, then 72-byte lease records.  Mutable container: a
32-byte magic, the write enabler and its server's nodeid, the data length,
the offset of the extra-lease area, four 92-byte lease slots, then the data.
Version 2 of both stores lease secrets hashed (BLAKE2b-256), version 1 in clear.
"""

from __future__ import annotations

import hmac
import struct

import attrs

from lafs.core.errors import FormatError
from lafs.core.hashes import hashed_lease_secret

LEASE_DURATION = 31 * 24 * 60 * 60
"""Seconds a new or renewed lease lasts (DEFAULT_RENEWAL_TIME)."""

IMMUTABLE_HEADER = struct.Struct(">LLL")
IMMUTABLE_LEASE = struct.Struct(">L32s32sL")
MUTABLE_LEASE = struct.Struct(">LL32s32s20s")
MUTABLE_HEADER = struct.Struct(">32s20s32sQQ")
MUTABLE_MAGIC_V1 = b"Tahoe mutable container v1\n" + b"\x75\x09\x44\x03\x8e"
MUTABLE_MAGIC_V2 = b"Tahoe mutable container v2\n" + b"\xc3\x55\x21\x99\x25"
MUTABLE_LEASE_SLOTS = 4
MUTABLE_DATA_OFFSET = MUTABLE_HEADER.size + MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size
EXTRA_LEASE_COUNT = struct.Struct(">L")
MAX_MUTABLE_SHARE_SIZE = 69105 * 1000 * 1000 * 1000 * 1000


class ContainerError(FormatError):
    """A share file that is not a well-formed Tahoe container."""


@attrs.frozen
class LeaseInfo:
    """One lease on a share.  Secrets are as stored: hashed in version-2 containers."""

    owner_num: int
    renew_secret: bytes
    cancel_secret: bytes
    expiration_time: int
    nodeid: bytes | None = None

    def pack_immutable(self) -> bytes:
        return IMMUTABLE_LEASE.pack(self.owner_num, self.renew_secret, self.cancel_secret, int(self.expiration_time))

    @classmethod
    def unpack_immutable(cls, data: bytes) -> LeaseInfo:
        if len(data) != IMMUTABLE_LEASE.size:
            raise ContainerError(f"an immutable lease record is {IMMUTABLE_LEASE.size} bytes, got {len(data)}")
        owner, renew, cancel, expiry = IMMUTABLE_LEASE.unpack(data)
        return cls(owner, renew, cancel, expiry)

    def pack_mutable(self) -> bytes:
        return MUTABLE_LEASE.pack(
            self.owner_num, int(self.expiration_time), self.renew_secret, self.cancel_secret, self.nodeid or b"\x00" * 20
        )

    @classmethod
    def unpack_mutable(cls, data: bytes) -> LeaseInfo:
        if len(data) != MUTABLE_LEASE.size:
            raise ContainerError(f"a mutable lease record is {MUTABLE_LEASE.size} bytes, got {len(data)}")
        owner, expiry, renew, cancel, nodeid = MUTABLE_LEASE.unpack(data)
        return cls(owner, renew, cancel, expiry, nodeid)

    def is_empty_slot(self) -> bool:
        return self.owner_num == 0 and self.renew_secret == b"\x00" * 32


def stored_secret(container_version: int, secret: bytes) -> bytes:
    """A lease secret the way a container of this version stores it."""
    return hashed_lease_secret(secret) if container_version == 2 else secret


def secrets_match(container_version: int, stored: bytes, presented: bytes) -> bool:
    """Compare a presented (clear) secret with a stored one, in constant time."""
    return hmac.compare_digest(stored, stored_secret(container_version, presented))


# --- immutable ---------------------------------------------------------------------------


@attrs.frozen
class ImmutableContainerHeader:
    version: int
    legacy_data_length: int
    num_leases: int

    def pack(self) -> bytes:
        return IMMUTABLE_HEADER.pack(self.version, self.legacy_data_length, self.num_leases)

    @classmethod
    def new(cls, allocated_size: int, num_leases: int = 0) -> ImmutableContainerHeader:
        return cls(2, min(2**32 - 1, allocated_size), num_leases)

    @classmethod
    def unpack(cls, data: bytes) -> ImmutableContainerHeader:
        if len(data) < IMMUTABLE_HEADER.size:
            raise ContainerError(f"immutable container header is truncated ({len(data)} bytes)")
        version, length, leases = IMMUTABLE_HEADER.unpack(data[: IMMUTABLE_HEADER.size])
        if version not in (1, 2):
            raise ContainerError(f"unknown immutable container version {version}")
        return cls(version, length, leases)

    def data_length(self, file_size: int) -> int:
        """Share data bytes in a container file of ``file_size`` bytes."""
        length = file_size - IMMUTABLE_HEADER.size - self.num_leases * IMMUTABLE_LEASE.size
        if length < 0:
            raise ContainerError(
                f"immutable container of {file_size} bytes is too short for {self.num_leases} leases"
            )
        return length

    def lease_offset(self, file_size: int) -> int:
        return IMMUTABLE_HEADER.size + self.data_length(file_size)


def unpack_immutable_leases(data: bytes) -> list[LeaseInfo]:
    if len(data) % IMMUTABLE_LEASE.size:
        raise ContainerError("immutable lease area is not a whole number of records")
    return [
        LeaseInfo.unpack_immutable(data[i : i + IMMUTABLE_LEASE.size]) for i in range(0, len(data), IMMUTABLE_LEASE.size)
    ]


# --- mutable -----------------------------------------------------------------------------


@attrs.frozen
class MutableContainerHeader:
    magic: bytes
    write_enabler_nodeid: bytes
    write_enabler: bytes
    data_length: int
    extra_lease_offset: int

    @property
    def version(self) -> int:
        return 1 if self.magic == MUTABLE_MAGIC_V1 else 2

    def pack(self) -> bytes:
        return MUTABLE_HEADER.pack(
            self.magic, self.write_enabler_nodeid, self.write_enabler, self.data_length, self.extra_lease_offset
        )

    @classmethod
    def new(cls, nodeid: bytes, write_enabler: bytes) -> MutableContainerHeader:
        if len(nodeid) != 20 or len(write_enabler) != 32:
            raise ContainerError("a mutable container needs a 20-byte nodeid and a 32-byte write enabler")
        return cls(MUTABLE_MAGIC_V2, nodeid, write_enabler, 0, MUTABLE_DATA_OFFSET)

    @classmethod
    def unpack(cls, data: bytes) -> MutableContainerHeader:
        if len(data) < MUTABLE_HEADER.size:
            raise ContainerError(f"mutable container header is truncated ({len(data)} bytes)")
        header = cls(*MUTABLE_HEADER.unpack(data[: MUTABLE_HEADER.size]))
        if header.magic not in (MUTABLE_MAGIC_V1, MUTABLE_MAGIC_V2):
            raise ContainerError("not a mutable container (bad magic)")
        if header.extra_lease_offset < MUTABLE_DATA_OFFSET + header.data_length:
            raise ContainerError("mutable container extra-lease offset lies inside the share data (corrupt)")
        return header


def is_mutable_container(prefix: bytes) -> bool:
    """True when a file starting with ``prefix`` (32+ bytes) is a mutable container."""
    return prefix[:32] in (MUTABLE_MAGIC_V1, MUTABLE_MAGIC_V2)


def mutable_lease_slot_offset(slot: int) -> int:
    if not 0 <= slot < MUTABLE_LEASE_SLOTS:
        raise ContainerError(f"mutable containers have lease slots 0-3, not {slot}")
    return MUTABLE_HEADER.size + slot * MUTABLE_LEASE.size


def unpack_mutable_leases(data: bytes) -> list[LeaseInfo]:
    if len(data) % MUTABLE_LEASE.size:
        raise ContainerError("mutable lease area is not a whole number of records")
    return [LeaseInfo.unpack_mutable(data[i : i + MUTABLE_LEASE.size]) for i in range(0, len(data), MUTABLE_LEASE.size)]
