"""Immutable share files: a writer for shares being uploaded, a reader and lease keeping for finished ones."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lafs.core.containers import (
    IMMUTABLE_HEADER,
    IMMUTABLE_LEASE,
    ImmutableContainerHeader,
    LeaseInfo,
    secrets_match,
    stored_secret,
    unpack_immutable_leases,
)
from lafs.storage.errors import (
    BucketClosedError,
    ConflictingWriteError,
    DataTooLargeError,
    DiskError,
    NoSuchLeaseError,
)
from lafs.storage.paths import remove_empty_dirs

INACTIVE_WRITER_TIMEOUT = 30 * 60


class ImmutableShare:
    """A finished immutable share file: its data and its leases."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            self.header = ImmutableContainerHeader.unpack(f.read(IMMUTABLE_HEADER.size))
        self.data_length = self.header.data_length(os.path.getsize(path))

    @classmethod
    def create(cls, path: str, allocated_size: int) -> None:
        with open(path, "wb") as f:
            f.write(ImmutableContainerHeader.new(allocated_size).pack())

    def read(self, offset: int, length: int) -> bytes:
        """Share data from ``offset``, truncated at the end of the data."""
        if offset < 0 or length < 0:
            return b""
        end = min(offset + length, self.data_length)
        if offset >= end:
            return b""
        with open(self.path, "rb") as f:
            f.seek(IMMUTABLE_HEADER.size + offset)
            return f.read(end - offset)

    def leases(self) -> list[LeaseInfo]:
        with open(self.path, "rb") as f:
            f.seek(IMMUTABLE_HEADER.size + self.data_length)
            return unpack_immutable_leases(f.read(self.header.num_leases * IMMUTABLE_LEASE.size))

    def _write_leases(self, leases: list[LeaseInfo]) -> None:
        with open(self.path, "r+b") as f:
            f.seek(0)
            f.write(ImmutableContainerHeader(self.header.version, self.header.legacy_data_length, len(leases)).pack())
            f.seek(IMMUTABLE_HEADER.size + self.data_length)
            f.write(b"".join(lease.pack_immutable() for lease in leases))
            f.truncate()
        self.header = ImmutableContainerHeader(self.header.version, self.header.legacy_data_length, len(leases))

    def add_or_renew_lease(self, renew_secret: bytes, cancel_secret: bytes, owner_num: int, expiration: int) -> None:
        leases = self.leases()
        version = self.header.version
        for index, lease in enumerate(leases):
            if secrets_match(version, lease.renew_secret, renew_secret):
                if expiration > lease.expiration_time:
                    leases[index] = LeaseInfo(lease.owner_num, lease.renew_secret, lease.cancel_secret, expiration)
                    self._write_leases(leases)
                return
        leases.append(
            LeaseInfo(owner_num, stored_secret(version, renew_secret), stored_secret(version, cancel_secret), expiration)
        )
        self._write_leases(leases)

    def renew_lease(self, renew_secret: bytes, expiration: int) -> None:
        leases = self.leases()
        for index, lease in enumerate(leases):
            if secrets_match(self.header.version, lease.renew_secret, renew_secret):
                if expiration > lease.expiration_time:
                    leases[index] = LeaseInfo(lease.owner_num, lease.renew_secret, lease.cancel_secret, expiration)
                    self._write_leases(leases)
                return
        raise NoSuchLeaseError("no lease on this share has that renew secret")


class BucketWriter:
    """Receives one share of an upload in ``incoming/``; it becomes visible only on close()."""

    def __init__(
        self,
        incoming_path: str,
        final_path: str,
        allocated_size: int,
        lease: tuple[bytes, bytes, int],
        *,
        storage_root: str,
        clock: Any,
        on_finish: Callable[[BucketWriter], None],
    ) -> None:
        self.incoming_path = incoming_path
        self.final_path = final_path
        self.allocated_size = allocated_size
        self._storage_root = storage_root
        self._on_finish = on_finish
        self._written: list[tuple[int, int]] = []
        self.finished = False
        os.makedirs(os.path.dirname(incoming_path), exist_ok=True)
        ImmutableShare.create(incoming_path, allocated_size)
        renew, cancel, expiration = lease
        self._lease = (renew, cancel, expiration)
        self._clock = clock
        self._timeout = clock.callLater(INACTIVE_WRITER_TIMEOUT, self._inactive)

    def _inactive(self) -> None:
        self._timeout = None
        self.abort()

    def _check_open(self, action: str) -> None:
        if self.finished:
            raise BucketClosedError(f"cannot {action}: this share is already closed or aborted")

    def write(self, offset: int, data: bytes) -> None:
        self._check_open("write")
        if offset < 0:
            raise DataTooLargeError(f"write at negative offset {offset}")
        end = offset + len(data)
        if end > self.allocated_size:
            raise DataTooLargeError(
                f"write of {len(data)} bytes at offset {offset} runs past the allocated size {self.allocated_size}"
            )
        if self._timeout is not None:
            self._timeout.reset(INACTIVE_WRITER_TIMEOUT)
        try:
            self._write(offset, end, data)
        except OSError as e:
            # A share that could not be written whole is worthless: drop it so nothing partial remains.
            self.abort()
            raise DiskError(f"cannot write the share to disk: {e.strerror or e}") from None
        if data:
            self._written.append((offset, end))

    def _write(self, offset: int, end: int, data: bytes) -> None:
        with open(self.incoming_path, "r+b") as f:
            for start, stop in self._written:
                overlap_start, overlap_end = max(start, offset), min(stop, end)
                if overlap_start < overlap_end:
                    f.seek(IMMUTABLE_HEADER.size + overlap_start)
                    if f.read(overlap_end - overlap_start) != data[overlap_start - offset : overlap_end - offset]:
                        raise ConflictingWriteError(
                            f"write at offset {offset} changes bytes {overlap_start}..{overlap_end} already written"
                        )
            f.seek(IMMUTABLE_HEADER.size + offset)
            f.write(data)

    def close(self) -> None:
        self._check_open("close")
        try:
            self._finish_file()
        except OSError as e:
            self.abort()
            raise DiskError(f"cannot finish the share on disk: {e.strerror or e}") from None
        self._finish()

    def _finish_file(self) -> None:
        with open(self.incoming_path, "r+b") as f:
            # Share data occupies exactly the allocated size; leases follow it.
            f.truncate(IMMUTABLE_HEADER.size + self.allocated_size)
        share = ImmutableShare(self.incoming_path)
        renew, cancel, expiration = self._lease
        share.add_or_renew_lease(renew, cancel, 0, expiration)
        os.makedirs(os.path.dirname(self.final_path), exist_ok=True)
        os.rename(self.incoming_path, self.final_path)

    def abort(self) -> None:
        if self.finished:
            return
        try:
            os.remove(self.incoming_path)
        except FileNotFoundError:
            pass
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        remove_empty_dirs(os.path.dirname(self.incoming_path), os.path.join(self._storage_root, "shares", "incoming"))
        self._on_finish(self)


class BucketReader:
    """Reads one finished immutable share."""

    def __init__(self, share: ImmutableShare, storage_index: bytes, shnum: int) -> None:
        self.share = share
        self.storage_index = storage_index
        self.shnum = shnum

    def read(self, offset: int, length: int) -> bytes:
        return self.share.read(offset, length)
