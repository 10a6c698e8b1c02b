"""What the web layer and frontends hold: a node per cap, with the operations its kind allows.

The node maker (``client.nodemaker``) turns caps into these; nobody above
``client/`` looks at cap classes to decide what a cap can do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
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
    """A directory (``lafs.dirnode.DirectoryNode``): mutable (SDMF/MDMF) or immutable (DIR2-CHK/LIT).

    Children are listed as nodes (unknown caps as ``UnknownNode``) with their
    metadata.  Changes need a write cap of a mutable directory (else
    ``DirectoryNotWritableError``); a change that loses a race with another
    writer is retried on the winner's version, and reported as
    ``UncoordinatedWriteError`` only when it no longer applies there.  Names
    are NFC-normalized; a new link's name may not be empty or hold '/'.
    ``overwrite`` is Tahoe's replace rule: True, False or ``"only-files"``.
    """

    cap: caps.DirectoryCap

    def is_mutable(self) -> bool: ...

    def is_readonly(self) -> bool: ...

    def is_directory(self) -> bool: ...

    def format_name(self) -> str:
        """The backing file's format: ``"SDMF"``, ``"MDMF"``, or ``"CHK"`` (immutable directories)."""

    def get_uri(self) -> str: ...

    def get_readonly_uri(self) -> str: ...

    def get_verify_uri(self) -> str | None: ...

    def get_storage_index(self) -> bytes | None: ...

    def get_size(self) -> int | None: ...

    def get_readonly(self) -> DirectoryNode: ...

    async def list(self) -> dict[str, tuple[Any, dict[str, Any]]]:
        """name -> (child node, metadata); through a read-only cap every child is read-only."""

    async def get(self, name: str) -> Any:
        """The child node (``NoSuchChildError`` when absent)."""

    async def get_child_and_metadata(self, name: str) -> tuple[Any, dict[str, Any]]: ...

    async def get_child_at_path(self, path: Sequence[str]) -> Any:
        """The node at a path of names below this directory."""

    async def set_uri(
        self, name: str, write_uri: str | None, read_uri: str | None, metadata: dict[str, Any] | None = None,
        *, overwrite: bool | str = True,
    ) -> Any:
        """Link caps under ``name`` (``ExistingChildError`` when ``overwrite`` forbids); returns the child node."""

    async def set_node(self, name: str, node: Any, metadata: dict[str, Any] | None = None, *, overwrite: bool | str = True) -> Any: ...

    async def set_children(
        self, entries: Mapping[str, tuple[str | None, str | None, dict[str, Any] | None]], *, overwrite: bool | str = True
    ) -> None:
        """Link name -> (write cap, read cap, metadata) in one change: all, or none."""

    async def delete(self, name: str) -> Any:
        """Unlink ``name``; returns the node that was there."""

    async def rename(self, old_name: str, new_name: str, *, overwrite: bool | str = True) -> None: ...

    async def move_child_to(self, name: str, new_parent: Any, new_name: str | None = None, *, overwrite: bool | str = True) -> None:
        """Link ``name`` into ``new_parent`` (as ``new_name``), then unlink it here."""

    async def create_subdirectory(
        self, name: str, initial_children: Mapping[str, Any] | None = None, *, overwrite: bool | str = True,
        mutable_format: str | None = None, metadata: dict[str, Any] | None = None,
    ) -> DirectoryNode:
        """A new mutable directory linked here as ``name``."""


class MutableFileNode(FileNode, Protocol):
    """A mutable file: through a write cap it can be replaced, and (MDMF) updated in place."""

    async def overwrite(self, source: DataSource) -> None:
        """Replace the contents (a new version with the next sequence number)."""

    async def update(self, offset: int, source: DataSource) -> None:
        """Write ``source`` at ``offset`` (past the end extends the file); MDMF only."""
