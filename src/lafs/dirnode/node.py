"""Directory nodes: Tahoe-LAFS directories on top of mutable files (SDMF, MDMF) and immutable ones (CHK, LIT).

A mutable directory is a mutable file whose plaintext is ``pack_children``'s
output; every change is a read-modify-write through ``MutableFileNode.modify``,
so a change that loses a race with another client is tried again on the
version that won.  An immutable directory is an immutable file, written once
with children that must all be deep-immutable.

This package knows nothing of the client or web layers: what it needs from
them (turning a child's caps into a node, uploading and downloading an
immutable file) comes in a `DirectoryContext`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from lafs.core import caps
from lafs.core.check_results import CheckAndRepairResults, CheckResults
from lafs.core.dirnode_format import (
    Child,
    ChildCaps,
    DirectoryChildError,
    Metadata,
    NoSuchChildError,
    Overwrite,
    delete_child,
    describe_child,
    make_child,
    normalize_name,
    pack_children,
    rename_child,
    set_child,
    set_children,
    unpack_children,
)
from lafs.core.errors import LafsError
from lafs.mutable.common import UncoordinatedWriteError, WriteKeys
from lafs.mutable.filenode import MutableContext, MutableFileNode

__all__ = [
    "DirectoryContext",
    "DirectoryNode",
    "DirectoryNotReadableError",
    "DirectoryNotWritableError",
    "PathNotDirectoryError",
    "create_immutable_directory",
    "create_mutable_directory",
]


class DirectoryNotWritableError(LafsError):
    """A change asked of a directory reached through a read-only cap, or of an immutable directory."""


class DirectoryNotReadableError(LafsError):
    """A directory verify cap: it names the directory but holds no key to read it."""


class PathNotDirectoryError(LafsError):
    """A path step that needs a directory met a file (or an unknown node)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ChildNode(Protocol):
    """What a directory needs of a node it links: its caps."""

    def is_readonly(self) -> bool: ...

    def is_directory(self) -> bool: ...

    def get_uri(self) -> str | None: ...

    def get_readonly_uri(self) -> str | None: ...


@attrs.frozen
class DirectoryContext:
    """What one client's directories need from the layers around them."""

    mutable: MutableContext
    make_node: Callable[[ChildCaps], Any]
    """The node for a listed child (known cap, or an unknown one kept verbatim)."""
    upload_immutable: Callable[[bytes], Awaitable[caps.FileCap]]
    """Upload bytes as an immutable file with the client's convergence secret; its LIT or CHK cap."""
    download_immutable: Callable[[caps.CHKFileCap], Awaitable[bytes]]
    """The whole contents of a CHK file."""
    mutable_format: str = "SDMF"
    """What a new mutable directory is made as when nobody asks for a format (``[client]mutable.format``)."""
    now: Callable[[], float] = time.time
    """Link timestamps (``linkcrtime`` / ``linkmotime``) come from here."""
    file_node: Callable[[caps.FileCap], Any] | None = None
    """The file node for an immutable directory's backing CHK file (what checking it needs)."""


def _link_caps(node: ChildNode) -> tuple[str | None, str | None]:
    """(write cap, read cap) to store for a node: a read-only node gives no write cap."""
    read = node.get_readonly_uri()
    write = None if node.is_readonly() else node.get_uri()
    return write, read


class DirectoryNode:
    """A directory through its write, read or verify cap (``lafs.client.nodes.DirectoryNode``).

    Through a read-only cap every child is listed read-only, however it was
    stored: read-only access reaches the whole subtree.
    """

    def __init__(self, cap: caps.DirectoryCap, context: DirectoryContext) -> None:
        self.cap = cap
        self._context = context
        inner = cap.file_cap
        self._file: MutableFileNode | None = None
        self._writekey: bytes | None = None
        self.last_read_size: int | None = None
        """The size of the packed children the last read found (what deep-stats counts for directories)."""
        if isinstance(inner, caps.MutableWriteCap | caps.MutableReadCap):
            self._file = context.mutable.node_for_cap(inner)
        if isinstance(inner, caps.MutableWriteCap):
            self._writekey = inner.writekey

    # --- identity -------------------------------------------------------------------

    def is_directory(self) -> bool:
        return True

    def is_unknown(self) -> bool:
        return False

    def is_mutable(self) -> bool:
        return self.cap.is_mutable()

    def is_readonly(self) -> bool:
        return self.cap.is_readonly()

    def is_verifier(self) -> bool:
        return isinstance(self.cap.file_cap, caps.CHKFileVerifierCap | caps.MutableVerifierCap)

    @property
    def deep_immutable(self) -> bool:
        """DIR2-CHK and DIR2-LIT: written once, and every child immutable too."""
        return not self.cap.is_mutable()

    def format_name(self) -> str:
        """The backing file's format: SDMF, MDMF, or CHK for immutable directories."""
        inner = self.cap.file_cap
        if isinstance(inner, caps.MDMFWriteCap | caps.MDMFReadCap | caps.MDMFVerifierCap):
            return "MDMF"
        if isinstance(inner, caps.MutableCap):
            return "SDMF"
        return "CHK"

    def get_uri(self) -> str:
        return self.cap.to_string()

    def get_write_uri(self) -> str | None:
        return None if self.is_readonly() else self.cap.to_string()

    def get_readonly_uri(self) -> str:
        return self.cap.get_readonly().to_string()

    def get_verify_uri(self) -> str | None:
        verifier = self.cap.get_verify_cap()
        return None if verifier is None else verifier.to_string()

    def get_storage_index(self) -> bytes | None:
        return self.cap.get_storage_index()

    def get_size(self) -> None:
        return None

    def get_readonly(self) -> DirectoryNode:
        return DirectoryNode(self.cap.get_readonly(), self._context)

    # --- reading --------------------------------------------------------------------

    async def _contents(self) -> bytes:
        if self.is_verifier():
            raise DirectoryNotReadableError("a directory verify cap cannot be used to read the directory")
        if self._file is not None:
            contents = await self._file.download_best_version()
        else:
            inner = self.cap.file_cap
            if isinstance(inner, caps.LiteralFileCap):
                contents = inner.data
            else:
                assert isinstance(inner, caps.CHKFileCap)  # is_verifier() took the only other immutable kind
                contents = await self._context.download_immutable(inner)
        self.last_read_size = len(contents)
        return contents

    # --- checking -------------------------------------------------------------------

    def _backing_node(self) -> Any:
        """The file holding this directory, whose shares a check counts."""
        if self._file is not None:
            return self._file
        inner = self.cap.file_cap
        if isinstance(inner, caps.LiteralFileCap):
            return None
        if self._context.file_node is None:
            raise DirectoryNotReadableError("this directory was opened without a way to check its backing file")
        return self._context.file_node(inner)

    async def check(self, *, verify: bool = False, add_lease: bool = False) -> CheckResults:
        """Check the backing file's shares (a literal directory is always healthy)."""
        backing = self._backing_node()
        if backing is None:
            return CheckResults.literal()
        results: CheckResults = await backing.check(verify=verify, add_lease=add_lease)
        return results

    async def check_and_repair(self, *, verify: bool = False, add_lease: bool = False) -> CheckAndRepairResults:
        """Check the backing file and repair it when unhealthy."""
        backing = self._backing_node()
        if backing is None:
            literal = CheckResults.literal()
            return CheckAndRepairResults(literal, literal, repair_attempted=False, repair_successful=False)
        results: CheckAndRepairResults = await backing.check_and_repair(verify=verify, add_lease=add_lease)
        return results

    async def read_children(self) -> dict[str, Child]:
        """The stored entries, unknown and unreadable ones included (what a modification writes back)."""
        return unpack_children(await self._contents(), self._writekey, deep_immutable=self.deep_immutable)

    def _describe(self, child: Child) -> ChildCaps:
        return describe_child(child, deep_immutable=self.deep_immutable, writable=not self.is_readonly())

    def _listed(self, child: Child) -> tuple[Any, Metadata] | None:
        described = self._describe(child)
        if described.error is None and (described.write_uri or described.read_uri):
            return self._context.make_node(described), child.metadata
        return None

    async def list(self) -> dict[str, tuple[Any, Metadata]]:
        """name -> (node, metadata) for every child; as in Tahoe, a child whose caps are broken is left out."""
        result: dict[str, tuple[Any, Metadata]] = {}
        for name, child in (await self.read_children()).items():
            listed = self._listed(child)
            if listed is not None:
                result[name] = listed
        return result

    async def has_child(self, name: str) -> bool:
        try:
            await self.get_child_and_metadata(name)
        except NoSuchChildError:
            return False
        return True

    async def get_child_and_metadata(self, name: str) -> tuple[Any, Metadata]:
        """The listed child ``name`` (only that one is looked at, not every child as ``list`` does)."""
        name = normalize_name(name)
        child = (await self.read_children()).get(name)
        listed = None if child is None else self._listed(child)
        if listed is None:
            raise NoSuchChildError(name, f"No such child: {name}")
        return listed

    async def get(self, name: str) -> Any:
        node, _ = await self.get_child_and_metadata(name)
        return node

    async def get_child_at_path(self, path: Sequence[str]) -> Any:
        """The node at ``path`` (names, one per level) below this directory; this directory for an empty path."""
        node: Any = self
        for name in path:
            if not isinstance(node, DirectoryNode):
                raise PathNotDirectoryError(name, f"cannot look up {name!r}: its parent is not a directory")
            node = await node.get(name)
        return node

    # --- changing -------------------------------------------------------------------

    def _check_writable(self) -> MutableFileNode:
        if self.deep_immutable:
            raise DirectoryNotWritableError("an immutable directory cannot be changed")
        if self._file is None or self._writekey is None:
            raise DirectoryNotWritableError("this directory was opened through a read-only cap; it cannot be changed")
        return self._file

    async def _modify(self, change: Callable[[dict[str, Child], float], dict[str, Child]]) -> None:
        """Apply ``change`` to the current children and publish the result.

        A lost race with another writer makes ``modify`` read the winner's version
        and call ``change`` again.  If the change fails on that newer version (the
        child to remove is gone, the name to take is taken), what made it fail is
        the other writer: that is reported as the uncoordinated write it was.
        """
        file = self._check_writable()
        writekey = self._writekey
        attempts = 0

        def modifier(old: bytes) -> bytes:
            nonlocal attempts
            attempts += 1
            children = unpack_children(old, writekey)
            try:
                new = change(children, self._context.now())
            except DirectoryChildError as e:
                if attempts > 1:
                    raise UncoordinatedWriteError(
                        f"another client changed the directory at the same time, and this change no longer applies: {e}"
                    ) from e
                raise
            return pack_children(new, writekey)

        await file.modify(modifier)

    async def set_uri(
        self,
        name: str,
        write_uri: str | None,
        read_uri: str | None,
        metadata: Metadata | None = None,
        *,
        overwrite: Overwrite = True,
    ) -> Any:
        """Link the caps under ``name``; returns the node now linked there."""
        entry = make_child(name, write_uri, read_uri, metadata)
        self._check_writable()
        await self._modify(lambda children, now: set_child(children, entry, now=now, overwrite=overwrite))
        return self._context.make_node(describe_child(entry))

    async def set_node(self, name: str, node: ChildNode, metadata: Metadata | None = None, *, overwrite: Overwrite = True) -> Any:
        write, read = _link_caps(node)
        await self.set_uri(name, write, read, metadata, overwrite=overwrite)
        return node

    async def set_children(self, entries: Mapping[str, tuple[str | None, str | None, Metadata | None]], *, overwrite: Overwrite = True) -> None:
        """Link several children in one change: all of them, or (on a conflict) none."""
        new = [make_child(name, write, read, metadata) for name, (write, read, metadata) in entries.items()]
        self._check_writable()
        if new:
            await self._modify(lambda children, now: set_children(children, new, now=now, overwrite=overwrite))

    async def delete(self, name: str) -> Any:
        """Unlink ``name``; returns the node that was linked there."""
        name = normalize_name(name)
        removed: list[Child] = []

        def change(children: dict[str, Child], now: float) -> dict[str, Child]:
            remaining, child = delete_child(children, name)
            removed[:] = [child]
            return remaining

        await self._modify(change)
        return self._context.make_node(self._describe(removed[0]))

    async def rename(self, old_name: str, new_name: str, *, overwrite: Overwrite = True) -> None:
        """Move a link to another name in this directory, in one change."""
        await self._modify(
            lambda children, now: rename_child(children, old_name, new_name, now=now, overwrite=overwrite)
        )

    async def move_child_to(
        self, name: str, new_parent: DirectoryNode, new_name: str | None = None, *, overwrite: Overwrite = True
    ) -> None:
        """Move the link ``name`` into ``new_parent`` (as ``new_name``): linked there first, then unlinked here.

        The link keeps its caps (as stored, unknown ones too) and its user metadata.
        """
        new_name = name if new_name is None else new_name
        self._check_writable()
        new_parent._check_writable()
        if new_parent.get_storage_index() == self.get_storage_index():
            await self.rename(name, new_name, overwrite=overwrite)
            return
        name = normalize_name(name)
        children = await self.read_children()
        if name not in children:
            raise NoSuchChildError(name, f"No such child: {name}")
        moving = children[name]
        entry = Child(new_name, moving.ro_uri, moving.rw_uri, moving.metadata)
        await new_parent._modify(lambda kids, now: set_child(kids, entry, now=now, overwrite=overwrite))
        await self.delete(name)

    async def create_subdirectory(
        self,
        name: str,
        initial_children: Mapping[str, Child] | None = None,
        *,
        overwrite: Overwrite = True,
        mutable_format: str | None = None,
        metadata: Metadata | None = None,
    ) -> DirectoryNode:
        """Make a new mutable directory (with ``initial_children``) and link it here as ``name``."""
        make_child(name, None, "URI:DIR2-LIT:", metadata)  # refuse a bad name before making anything
        self._check_writable()
        new = await create_mutable_directory(self._context, initial_children, mutable_format=mutable_format)
        await self.set_node(name, new, metadata, overwrite=overwrite)
        return new


def _mdmf(context: DirectoryContext, mutable_format: str | None) -> bool:
    chosen = (mutable_format or context.mutable_format).upper()
    if chosen not in ("SDMF", "MDMF"):
        raise ValueError(f"{chosen} is not a mutable format (use SDMF or MDMF)")
    return chosen == "MDMF"


async def create_mutable_directory(
    context: DirectoryContext,
    children: Mapping[str, Child] | None = None,
    *,
    mutable_format: str | None = None,
    private_key: bytes | None = None,
) -> DirectoryNode:
    """Publish a new mutable directory holding ``children`` (their metadata stored as given, as Tahoe does)."""
    mdmf = _mdmf(context, mutable_format)
    if private_key is None:
        private_key = await context.mutable.new_private_key()
    # The contents are encrypted with the writekey, which the key decides: pack before publishing.
    writekey = WriteKeys.from_private_key(private_key).writekey
    contents = pack_children(dict(children or {}), writekey)
    file = await context.mutable.create_mutable_file(contents, mdmf=mdmf, private_key=private_key)
    inner = file.cap
    assert isinstance(inner, caps.MutableWriteCap)
    return DirectoryNode(caps.DirectoryCap(inner), context)


async def create_immutable_directory(context: DirectoryContext, children: Mapping[str, Child] | None = None) -> DirectoryNode:
    """Upload a new immutable directory (DIR2-CHK, or DIR2-LIT when small); every child must be deep-immutable."""
    contents = pack_children(dict(children or {}), None, deep_immutable=True)
    inner = await context.upload_immutable(contents)
    return DirectoryNode(caps.DirectoryCap(inner), context)
