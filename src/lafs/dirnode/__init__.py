"""lafs.dirnode: directories on top of mutable and immutable files."""

from lafs.dirnode.node import (
    DirectoryContext,
    DirectoryNode,
    DirectoryNotReadableError,
    DirectoryNotWritableError,
    PathNotDirectoryError,
    create_immutable_directory,
    create_mutable_directory,
)

__all__ = [
    "DirectoryContext",
    "DirectoryNode",
    "DirectoryNotReadableError",
    "DirectoryNotWritableError",
    "PathNotDirectoryError",
    "create_immutable_directory",
    "create_mutable_directory",
]
