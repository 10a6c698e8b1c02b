"""Where shares live in the storage directory (Tahoe's layout), with every name validated."""

from __future__ import annotations

import os
import re

from lafs.core import base32
from lafs.storage.errors import BadShareNumberError, BadStorageIndexError

STORAGE_INDEX_SIZE = 16
_SHARE_NAME = re.compile(r"\A[0-9]+\Z")
_BUCKET_NAME = re.compile(r"\A[a-z2-7]{26}\Z")

PREFIXES: tuple[str, ...] = tuple(sorted(a + b for a in base32.ALPHABET for b in base32.ALPHABET))
"""The 1024 two-character prefix directories under ``shares/`` (the first 10 bits of a storage
index), sorted as text: the order the crawlers walk them in."""


def check_storage_index(storage_index: bytes) -> bytes:
    if not isinstance(storage_index, bytes) or len(storage_index) != STORAGE_INDEX_SIZE:
        size = len(storage_index) if isinstance(storage_index, bytes) else "non-bytes"
        raise BadStorageIndexError(f"a storage index must be {STORAGE_INDEX_SIZE} bytes, got {size}")
    return storage_index


def storage_index_to_dir(storage_index: bytes) -> str:
    """``<2-char prefix>/<b32 storage index>`` for a valid 16-byte storage index."""
    encoded = base32.b2a(check_storage_index(storage_index))
    return os.path.join(encoded[:2], encoded)


def check_prefix(prefix: str) -> str:
    if prefix not in _PREFIX_SET:
        raise BadStorageIndexError(f"{prefix!r} is not a storage-index prefix (two base32 characters, as in shares/<prefix>/)")
    return prefix


def bucket_names_in(prefix_dir: str, prefix: str) -> list[str]:
    """The base32 storage indexes of the bucket directories in a prefix directory, sorted
    (names that are not storage indexes of that prefix are ignored)."""
    try:
        names = os.listdir(prefix_dir)
    except FileNotFoundError:
        return []
    return sorted(name for name in names if _BUCKET_NAME.match(name) and name.startswith(prefix))


def check_share_number(shnum: int) -> int:
    if not isinstance(shnum, int) or isinstance(shnum, bool) or not 0 <= shnum <= 255:
        raise BadShareNumberError(f"a share number must be an integer 0..255, got {shnum!r}")
    return shnum


def share_numbers_in(bucket_dir: str) -> list[int]:
    """The share numbers of the share files in a bucket directory (other names are ignored)."""
    try:
        names = os.listdir(bucket_dir)
    except FileNotFoundError:
        return []
    return sorted(int(name) for name in names if _SHARE_NAME.match(name) and int(name) <= 255)


def remove_empty_dirs(path: str, stop_at: str) -> None:
    """Remove ``path`` and its parents while they are empty, never ``stop_at`` or above it."""
    stop_at = os.path.abspath(stop_at)
    path = os.path.abspath(path)
    while path.startswith(stop_at + os.sep):
        try:
            os.rmdir(path)
        except OSError:
            return
        path = os.path.dirname(path)


_PREFIX_SET = frozenset(PREFIXES)
