"""What the web layer and frontends hold: a node per cap, with the operations its kind allows.

The node maker (``client.nodemaker``) turns caps into these; nobody above
``client/`` looks at cap classes to decide what a cap can do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from lafs.core import caps


class DataSource(Protocol):
    """Bytes to upload, read in pieces (a spooled request body, a local file)."""

    size: int

    def read(self, offset: int, length: int) -> bytes: ...


class FileSource:
    """A seekable binary file, or the ``size`` bytes of it from ``start``, as a `DataSource`."""

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


Sink = Callable[[bytes], Any]
"""Receives file bytes in order; when it returns a Deferred, nothing more is delivered until it fires."""


class FileNode(Protocol):
    """A file (literal, immutable or mutable), readable through its cap."""

    cap: caps.FileCap

    def is_mutable(self) -> bool: ...

    def is_readonly(self) -> bool: ...

    def is_directory(self) -> bool: ...

    def format_name(self) -> str:
        """``"CHK"`` (literal and immutable files), ``"SDMF"`` or ``"MDMF"``."""

    def get_uri(self) -> str: ...

    def get_readonly_uri(self) -> str: ...

    def get_verify_uri(self) -> str | None: ...

    def get_storage_index(self) -> bytes | None: ...

    def get_size(self) -> int | None:
        """The size when it is known without asking the grid (immutable files), else None."""

    async def get_current_size(self) -> int:
        """The size of the current version (asks the grid for mutable files)."""

    async def read(
        self, sink: Sink, offset: int = 0, length: int | None = None, on_start: Callable[[], Any] | None = None
    ) -> None:
        """Deliver bytes ``[offset, offset+length)`` to ``sink``; ``on_start`` runs once the file is found, before the first byte."""


class DirectoryNode(Protocol):
    """A directory, as far as this version knows one: its caps (listing and changing come with dirnodes)."""

    cap: caps.DirectoryCap

    def is_mutable(self) -> bool: ...

    def is_readonly(self) -> bool: ...

    def get_uri(self) -> str: ...

    def get_readonly_uri(self) -> str: ...

    def get_verify_uri(self) -> str | None: ...

    def get_storage_index(self) -> bytes | None: ...


class MutableFileNode(FileNode, Protocol):
    """A mutable file: through a write cap it can be replaced, and (MDMF) updated in place."""

    async def overwrite(self, source: DataSource) -> None:
        """Replace the contents (a new version with the next sequence number)."""

    async def update(self, offset: int, source: DataSource) -> None:
        """Write ``source`` at ``offset`` (past the end extends the file); MDMF only."""
