"""The seam between the storage server's protocol logic and where shares are kept.

Split of duties:

* The **server** (``lafs.storage.server``) owns the protocol: which shares an
  upload may allocate, space accounting, test vectors, write enablers, which
  lease to add or renew (and the secret hashing that goes with it),
  inactivity timeouts.  It talks to a backend in share numbers, byte ranges
  of share *data* and lease records (``LeaseInfo``), never in files.
* A **backend** owns the container: how share data, its lease records and a
  mutable share's write enabler are laid out and stored.  The disk backend
  (``lafs.storage.disk``) writes Tahoe's container files byte for byte; the
  memory backend keeps plain Python values; a cloud backend may keep data in
  objects and leases elsewhere.

Putting the container format below the seam, rather than handing the
backend opaque container bytes to patch in place, is what lets an object
store fit: it never has to emulate seek-and-write on a file, and lease
updates do not rewrite share data.

Every method that may do I/O is ``async``.  ``space()`` alone is synchronous:
``get_version`` answers from it without a round trip, and a backend that
cannot know its free space reports ``None`` (the server then advertises
2**64, as Tahoe does).

There is no "remove empty directories" call: containers that exist only to
hold shares (Tahoe's bucket directories) are the backend's to tidy, inside
``commit``, ``abort`` and ``delete_share``, so the server never learns of them.

Callers pass validated storage indexes (16 bytes) and share numbers (0..255).
A backend reports a failing medium (full disk, I/O error) as
``DiskError`` naming the share, and an unknown share as ``NoSuchShareError``.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import attrs

from lafs.core.containers import LeaseInfo
from lafs.storage.errors import BucketClosedError, DataTooLargeError

NEW_CONTAINER_VERSION = 2
"""The container version every backend creates: lease secrets are stored hashed."""


class ShareKind(enum.Enum):
    IMMUTABLE = "immutable"
    MUTABLE = "mutable"


@attrs.frozen
class SpaceStats:
    """Total and free bytes of the medium; ``None`` when the backend cannot tell."""

    total: int | None
    free: int | None
    """What an unprivileged process may use (``statvfs`` ``f_bavail``)."""
    free_for_root: int | None = None
    """Including blocks kept for the superuser (``f_bfree``); None: the same as ``free``."""


@attrs.frozen
class ShareSize:
    """What one finished share occupies: its container's bytes, and the medium's bytes for it.

    The lease checker reports both (Tahoe's "sharebytes" and "diskbytes"); a
    backend that cannot tell the medium's allocation gives ``disk == size``.
    """

    size: int
    disk: int


@attrs.frozen
class ShareLeases:
    """The lease records of one share as stored, with the container version that says how to compare secrets."""

    container_version: int
    leases: tuple[LeaseInfo, ...]
    kind: ShareKind = ShareKind.IMMUTABLE


@attrs.frozen
class WriteEnablerRecord:
    """A mutable share's write enabler and the nodeid of the server that recorded it."""

    nodeid: bytes
    write_enabler: bytes = attrs.field(repr=False)


@attrs.frozen
class CorruptionAdvisory:
    """A client's report that one of our shares is corrupt."""

    share_type: bytes
    storage_index: bytes
    shnum: int
    reason: bytes
    reported_at: float
    """POSIX seconds, from the server's clock."""


class IncomingShare(Protocol):
    """An immutable share being uploaded: invisible to ``list_shares`` until ``commit``.

    ``write`` raises ``DataTooLargeError`` past ``allocated_size`` and
    ``ConflictingWriteError`` when it would change bytes written before.
    After ``commit`` or ``abort`` every call but ``abort`` raises
    ``BucketClosedError``; ``abort`` is idempotent and never raises for a
    share that is already gone.  A failed ``write`` or ``commit`` leaves the
    share open so that the caller can ``abort`` it.
    """

    @property
    def allocated_size(self) -> int: ...

    async def write(self, offset: int, data: bytes) -> None: ...

    async def commit(self, lease: LeaseInfo) -> None:
        """Make the share final with ``allocated_size`` bytes of data (unwritten bytes are zero) and one lease."""
        ...

    async def abort(self) -> None: ...


LeaseChange = Callable[[ShareLeases], Sequence[LeaseInfo] | None]
"""What to make of a share's leases: the new records, or None to leave them as they are."""


class ShareBackend(Protocol):
    """Where a storage server keeps its shares."""

    def space(self) -> SpaceStats: ...

    async def list_shares(self, storage_index: bytes) -> dict[int, ShareKind]:
        """The finished shares of a storage index (``{}`` when it has none)."""
        ...

    async def share_numbers(self, storage_index: bytes) -> list[int]:
        """The numbers of the shares `list_shares` lists, sorted, found without opening them."""
        ...

    async def list_storage_indexes(self, prefix: str) -> list[bytes]:
        """The storage indexes holding finished shares whose base32 form starts with ``prefix``
        (two base32 characters), in order of that base32 form.

        This is how the crawlers walk every share a little at a time; uploads
        under way are never listed.  A storage index may be listed that has
        just lost its last share: ``list_shares`` then answers ``{}``.
        """
        ...

    async def share_size(self, storage_index: bytes, shnum: int) -> ShareSize:
        """The space a finished share takes (for the lease checker's accounting)."""
        ...

    async def bucket_disk_size(self, storage_index: bytes) -> int:
        """Bytes the medium spends on a storage index's container itself, apart from its shares
        (a Tahoe bucket directory's own blocks), 0 when there is no such thing.  The lease
        checker counts them as freed with the last share, as Tahoe does."""
        ...

    async def create_incoming(self, storage_index: bytes, shnum: int, allocated_size: int) -> IncomingShare:
        """Start an immutable share.  The server makes sure only one upload per share is under way."""
        ...

    async def read_share(self, storage_index: bytes, shnum: int, offset: int, length: int) -> bytes:
        """Share data (either kind) from ``offset``, truncated at its end, ``b""`` past it."""
        ...

    async def create_mutable(self, storage_index: bytes, shnum: int, nodeid: bytes, write_enabler: bytes) -> None:
        """A new empty mutable share holding ``write_enabler``, recorded by server ``nodeid``."""
        ...

    async def mutable_write_enabler(self, storage_index: bytes, shnum: int) -> WriteEnablerRecord: ...

    async def write_mutable(
        self, storage_index: bytes, shnum: int, datav: Sequence[tuple[int, bytes]], new_length: int | None
    ) -> None:
        """Apply the writes in order (a write past the end zero-fills the gap), then cut the data
        to ``new_length`` if that is shorter.  The server has checked every write's bounds."""
        ...

    async def get_leases(self, storage_index: bytes, shnum: int) -> ShareLeases: ...

    async def put_leases(self, storage_index: bytes, shnum: int, leases: Sequence[LeaseInfo]) -> None:
        """Replace a finished share's lease records (secrets as stored, see ``ShareLeases``)."""
        ...

    async def update_leases(self, storage_index: bytes, shnum: int, change: LeaseChange) -> bool:
        """`get_leases`, then `put_leases` of what ``change`` makes of them unless it returns None, the
        share opened once; whether ``change`` returned leases."""
        ...

    async def delete_share(self, storage_index: bytes, shnum: int) -> None:
        """Remove a finished share, and whatever held only it (Tahoe's empty bucket directories)."""
        ...

    async def record_corruption_advisory(self, advisory: CorruptionAdvisory) -> None: ...


# --- helpers every IncomingShare implementation shares --------------------------------------


def check_incoming_write(closed: bool, allocated_size: int, offset: int, length: int) -> None:
    """The checks a write to an incoming share must pass before it touches any byte."""
    if closed:
        raise BucketClosedError("cannot write: this share is already closed or aborted")
    if offset < 0:
        raise DataTooLargeError(f"write at negative offset {offset}")
    if offset + length > allocated_size:
        raise DataTooLargeError(
            f"write of {length} bytes at offset {offset} runs past the allocated size {allocated_size}"
        )


class WrittenRanges:
    """The byte ranges written so far, kept merged so sequential uploads cost one range."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlapping(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """The parts of ``start..end`` that were written before."""
        index = bisect.bisect_right(self._ends, start)
        while index < len(self._starts) and self._starts[index] < end:
            yield max(start, self._starts[index]), min(end, self._ends[index])
            index += 1

    def add(self, start: int, end: int) -> None:
        if start >= end:
            return
        first = bisect.bisect_left(self._ends, start)
        last = bisect.bisect_right(self._starts, end)
        if first < last:
            start = min(start, self._starts[first])
            end = max(end, self._ends[last - 1])
        self._starts[first:last] = [start]
        self._ends[first:last] = [end]
