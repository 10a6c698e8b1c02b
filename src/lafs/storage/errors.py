"""Errors a storage server reports to its callers; each message names the problem."""

from __future__ import annotations

from lafs.core.errors import LafsError


class StorageError(LafsError):
    """A storage request that cannot be carried out."""


class BadStorageIndexError(StorageError):
    """A storage index that is not 16 bytes."""


class BadShareNumberError(StorageError):
    """A share number outside 0..255."""


class DataTooLargeError(StorageError):
    """A write past the size allocated for a share."""


class ConflictingWriteError(StorageError):
    """A write that overlaps earlier bytes of the share with different bytes."""


class BucketClosedError(StorageError):
    """A write, close or abort on a share that is already finished or aborted."""


class BadWriteEnablerError(StorageError):
    """A mutable write whose write enabler does not match the share's."""


class BadTestVectorError(StorageError):
    """A test vector with an unsupported operator."""


class NoSpaceError(StorageError):
    """Not enough space left on the server for the request."""


class NoSuchLeaseError(StorageError):
    """A lease renewal for which no share holds a matching lease."""


class MutableTooLargeError(StorageError):
    """A mutable write past the maximum mutable share size."""


class DiskError(StorageError):
    """The server's disk failed a read or write (for example, it is full)."""


class NoSuchShareError(StorageError):
    """A request for a share the server does not hold."""
