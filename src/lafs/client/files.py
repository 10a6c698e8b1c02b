"""The client's file service: upload and download immutable files over the grid the broker knows."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO

from lafs import isal
from lafs.core import caps
from lafs.core.hashes import Sha256dHasher
from lafs.immutable.download import NotEnoughSharesError, download_immutable
from lafs.immutable.upload import (
    UploadResult,
    UploadUnhappinessError,
    convergence_hasher_for,
    upload_immutable,
)

__all__ = ["FileService", "FileSource", "NotEnoughSharesError", "UploadResult", "UploadUnhappinessError"]


class FileSource:
    """A seekable binary file, or the ``size`` bytes of it from ``start``, seen as
    ``size`` + ``read(offset, length)`` (what the uploader reads)."""

    def __init__(self, stream: Any, start: int = 0, size: int | None = None) -> None:
        self._stream = stream
        self._start = start
        if size is None:
            size = stream.seek(0, os.SEEK_END) - start
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        self._stream.seek(self._start + offset)
        data: bytes = self._stream.read(max(0, min(length, self.size - offset)))
        return data


class FileService:
    """What the web gateway and CLI need: ``upload(stream) -> cap`` and ``download(cap, write, ...)``."""

    def __init__(self, node: Any) -> None:
        self.node = node

    @property
    def encoding(self) -> tuple[int, int, int]:
        config = self.node.config
        return (
            config.get_int("client", "shares.needed", 3),
            config.get_int("client", "shares.happy", 7),
            config.get_int("client", "shares.total", 10),
        )

    @property
    def max_segment_size(self) -> int:
        return self.node.config.get_int("client", "shares._max_immutable_segment_size_for_testing", 1024 * 1024)

    def _servers(self, storage_index: bytes) -> list[Any]:
        return self.node.storage_broker.storage_clients(storage_index)

    def convergence_hasher(self, size: int) -> Sha256dHasher:
        """A hasher for a ``size``-byte file: its digest is the key ``upload`` would derive."""
        needed, _, total = self.encoding
        return convergence_hasher_for(size, needed, total, self.max_segment_size, self.node.convergence_secret)

    async def upload(
        self, stream: BinaryIO | FileSource, *, convergence: bool = True, key_hint: bytes | None = None
    ) -> UploadResult:
        """Upload ``stream``; ``key_hint`` is a ``convergence_hasher`` digest of its bytes, if known."""
        source = stream if isinstance(stream, FileSource) else FileSource(stream)
        needed, happy, total = self.encoding
        result = await upload_immutable(
            source,
            convergence_secret=self.node.convergence_secret if convergence else None,
            needed=needed,
            happy=happy,
            total=total,
            max_segment_size=self.max_segment_size,
            servers_for=self._servers,
            lease_secret=self.node.lease_secret,
            convergent_key_hint=key_hint,
            codec_factory=isal.codec,
        )
        return result

    async def download(
        self,
        cap: caps.CHKFileCap,
        write: Callable[[bytes], Any],
        *,
        offset: int = 0,
        length: int | None = None,
        on_start: Callable[[], Any] | None = None,
    ) -> None:
        await download_immutable(
            cap, self._servers(cap.get_storage_index()), sink=write, offset=offset, length=length, on_start=on_start
        )
