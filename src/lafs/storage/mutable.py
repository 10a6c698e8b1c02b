"""Mutable share containers: write-enabler protected, written in place, with up to four+ leases."""

from __future__ import annotations

import hmac
import os
from typing import BinaryIO

from lafs.core import base32
from lafs.core.containers import (
    EXTRA_LEASE_COUNT,
    MAX_MUTABLE_SHARE_SIZE,
    MUTABLE_DATA_OFFSET,
    MUTABLE_HEADER,
    MUTABLE_LEASE,
    MUTABLE_LEASE_SLOTS,
    LeaseInfo,
    MutableContainerHeader,
    mutable_lease_slot_offset,
    secrets_match,
    stored_secret,
    unpack_mutable_leases,
)
from lafs.storage.errors import BadWriteEnablerError, MutableTooLargeError, NoSuchLeaseError


class MutableShare:
    """One mutable share file."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            self.header = MutableContainerHeader.unpack(f.read(MUTABLE_HEADER.size))

    @classmethod
    def create(cls, path: str, nodeid: bytes, write_enabler: bytes) -> MutableShare:
        header = MutableContainerHeader.new(nodeid, write_enabler)
        with open(path, "wb") as f:
            f.write(header.pack())
            f.write(b"\x00" * (MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size))
            f.write(EXTRA_LEASE_COUNT.pack(0))
        return cls(path)

    @property
    def data_length(self) -> int:
        return self.header.data_length

    @property
    def container_size(self) -> int:
        """The largest data extent ever written (the container never shrinks)."""
        return self.header.extra_lease_offset - MUTABLE_DATA_OFFSET

    def check_write_enabler(self, write_enabler: bytes) -> None:
        if not hmac.compare_digest(self.header.write_enabler, write_enabler):
            nodeid = base32.b2a(self.header.write_enabler_nodeid)
            raise BadWriteEnablerError(f"The write enabler was recorded by nodeid '{nodeid}'.")

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.data_length)
        if offset < 0 or offset >= end:
            return b""
        with open(self.path, "rb") as f:
            f.seek(MUTABLE_DATA_OFFSET + offset)
            return f.read(end - offset)

    def _write_header(self, f: BinaryIO, header: MutableContainerHeader) -> None:
        f.seek(0)
        f.write(header.pack())
        self.header = header

    def _extra_leases(self, f: BinaryIO) -> list[LeaseInfo]:
        f.seek(self.header.extra_lease_offset)
        raw = f.read(EXTRA_LEASE_COUNT.size)
        count = EXTRA_LEASE_COUNT.unpack(raw)[0] if len(raw) == EXTRA_LEASE_COUNT.size else 0
        return unpack_mutable_leases(f.read(count * MUTABLE_LEASE.size))

    def writev(self, datav: list[tuple[int, bytes]], new_length: int | None) -> None:
        """Apply writes in order (holes read as zeros), then truncate the data length if asked."""
        with open(self.path, "r+b") as f:
            header = self.header
            for offset, data in datav:
                end = offset + len(data)
                if offset < 0 or end > MAX_MUTABLE_SHARE_SIZE:
                    raise MutableTooLargeError(f"mutable write to {offset}..{end} is outside the allowed share size")
                if end > header.extra_lease_offset - MUTABLE_DATA_OFFSET:
                    header = self._grow(f, header, end)
                if offset > header.data_length:
                    f.seek(MUTABLE_DATA_OFFSET + header.data_length)
                    f.write(b"\x00" * (offset - header.data_length))
                f.seek(MUTABLE_DATA_OFFSET + offset)
                f.write(data)
                if end > header.data_length:
                    header = MutableContainerHeader(
                        header.magic, header.write_enabler_nodeid, header.write_enabler, end, header.extra_lease_offset
                    )
            if new_length is not None and new_length < header.data_length:
                header = MutableContainerHeader(
                    header.magic, header.write_enabler_nodeid, header.write_enabler, new_length, header.extra_lease_offset
                )
            self._write_header(f, header)

    def _grow(self, f: BinaryIO, header: MutableContainerHeader, new_size: int) -> MutableContainerHeader:
        """Move the extra-lease block to just past ``new_size`` bytes of data, zeroing its old place."""
        self.header = header
        extra = self._extra_leases(f)
        old_offset = header.extra_lease_offset
        new_offset = MUTABLE_DATA_OFFSET + new_size
        f.seek(old_offset)
        f.write(b"\x00" * (EXTRA_LEASE_COUNT.size + len(extra) * MUTABLE_LEASE.size))
        f.seek(new_offset)
        f.write(EXTRA_LEASE_COUNT.pack(len(extra)) + b"".join(lease.pack_mutable() for lease in extra))
        f.truncate()
        return MutableContainerHeader(
            header.magic, header.write_enabler_nodeid, header.write_enabler, header.data_length, new_offset
        )

    # --- leases ------------------------------------------------------------------------

    def leases(self) -> list[LeaseInfo]:
        """All leases: the four slots (empty ones left out) then the extra ones."""
        with open(self.path, "rb") as f:
            f.seek(MUTABLE_HEADER.size)
            slots = unpack_mutable_leases(f.read(MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size))
            extra = self._extra_leases(f)
        return [lease for lease in slots if not lease.is_empty_slot()] + extra

    def add_or_renew_lease(self, renew_secret: bytes, cancel_secret: bytes, expiration: int, nodeid: bytes) -> None:
        version = self.header.version
        with open(self.path, "r+b") as f:
            f.seek(MUTABLE_HEADER.size)
            slots = unpack_mutable_leases(f.read(MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size))
            extra = self._extra_leases(f)
            if self._renew_in(f, slots, extra, renew_secret, expiration):
                return
            lease = LeaseInfo(1, stored_secret(version, renew_secret), stored_secret(version, cancel_secret), expiration, nodeid)
            for slot, existing in enumerate(slots):
                if existing.is_empty_slot():
                    f.seek(mutable_lease_slot_offset(slot))
                    f.write(lease.pack_mutable())
                    return
            extra.append(lease)
            f.seek(self.header.extra_lease_offset)
            f.write(EXTRA_LEASE_COUNT.pack(len(extra)) + b"".join(x.pack_mutable() for x in extra))

    def renew_lease(self, renew_secret: bytes, expiration: int) -> None:
        with open(self.path, "r+b") as f:
            f.seek(MUTABLE_HEADER.size)
            slots = unpack_mutable_leases(f.read(MUTABLE_LEASE_SLOTS * MUTABLE_LEASE.size))
            extra = self._extra_leases(f)
            if not self._renew_in(f, slots, extra, renew_secret, expiration):
                raise NoSuchLeaseError("no lease on this share has that renew secret")

    def _renew_in(
        self, f: BinaryIO, slots: list[LeaseInfo], extra: list[LeaseInfo], renew_secret: bytes, expiration: int
    ) -> bool:
        version = self.header.version
        for index, lease in enumerate(slots + extra):
            if lease.is_empty_slot() or not secrets_match(version, lease.renew_secret, renew_secret):
                continue
            if expiration > lease.expiration_time:
                renewed = LeaseInfo(lease.owner_num, lease.renew_secret, lease.cancel_secret, expiration, lease.nodeid)
                if index < MUTABLE_LEASE_SLOTS:
                    position = mutable_lease_slot_offset(index)
                else:
                    position = (
                        self.header.extra_lease_offset
                        + EXTRA_LEASE_COUNT.size
                        + (index - MUTABLE_LEASE_SLOTS) * MUTABLE_LEASE.size
                    )
                f.seek(position)
                f.write(renewed.pack_mutable())
            return True
        return False


def remove_share(path: str) -> None:
    os.remove(path)
