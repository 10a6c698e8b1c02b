"""The server's side of an immutable upload and download: one object per share, over a backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from lafs.core.containers import LeaseInfo
from lafs.storage.backend import IncomingShare, ShareBackend
from lafs.storage.errors import BucketClosedError, DiskError

INACTIVE_WRITER_TIMEOUT = 30 * 60

log = Logger()


class BucketWriter:
    """Receives one share of an upload; it becomes visible only on close().

    The backend checks sizes and overlaps; this object adds what belongs to
    the protocol: the share's first lease, the inactivity timeout, and
    dropping a share the medium failed to store, so nothing partial remains.
    """

    def __init__(
        self,
        incoming: IncomingShare,
        lease: LeaseInfo,
        *,
        clock: Any,
        on_finish: Callable[[BucketWriter], None],
    ) -> None:
        self._incoming = incoming
        self.allocated_size = incoming.allocated_size
        self._lease = lease
        self._on_finish = on_finish
        self.finished = False
        self._timeout = clock.callLater(INACTIVE_WRITER_TIMEOUT, self._inactive)

    def _inactive(self) -> None:
        self._timeout = None
        defer.Deferred.fromCoroutine(self.abort()).addErrback(
            lambda failure: log.failure("aborting an inactive upload failed", failure)
        )

    def _check_open(self, action: str) -> None:
        if self.finished:
            raise BucketClosedError(f"cannot {action}: this share is already closed or aborted")

    async def write(self, offset: int, data: bytes) -> None:
        self._check_open("write")
        if self._timeout is not None:
            self._timeout.reset(INACTIVE_WRITER_TIMEOUT)
        try:
            await self._incoming.write(offset, data)
        except DiskError:
            # A share that could not be written whole is worthless.
            await self.abort()
            raise

    async def close(self) -> None:
        self._check_open("close")
        try:
            await self._incoming.commit(self._lease)
        except DiskError:
            await self.abort()
            raise
        self._finish()

    async def abort(self) -> None:
        if self.finished:
            return
        self._finish()
        await self._incoming.abort()

    def _finish(self) -> None:
        self.finished = True
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self._on_finish(self)


class BucketReader:
    """Reads one finished immutable share."""

    def __init__(self, backend: ShareBackend, storage_index: bytes, shnum: int) -> None:
        self._backend = backend
        self.storage_index = storage_index
        self.shnum = shnum

    async def read(self, offset: int, length: int) -> bytes:
        return await self._backend.read_share(self.storage_index, self.shnum, offset, length)
