"""Netstrings: ``b"%d:%s," % (len(s), s)``."""

from __future__ import annotations

from lafs.core.errors import NetstringError


def netstring(data: bytes) -> bytes:
    """Wrap ``data`` in a netstring."""
    return b"%d:%s," % (len(data), data)


def parse_netstring(data: bytes, position: int = 0) -> tuple[bytes, int]:
    """Read one netstring starting at ``position``; return (payload, position after it)."""
    colon = data.find(b":", position)
    if colon == -1:
        raise NetstringError(f"netstring at offset {position} has no ':' after its length")
    digits = data[position:colon]
    if not digits or not digits.isdigit() or (len(digits) > 1 and digits[0:1] == b"0"):
        raise NetstringError(f"netstring at offset {position} has a bad length field {digits[:20]!r}")
    length = int(digits)
    end = colon + 1 + length
    if end + 1 > len(data):
        raise NetstringError(f"netstring at offset {position} claims {length} bytes but the data ends first")
    if data[end : end + 1] != b",":
        raise NetstringError(f"netstring at offset {position} is not terminated by ','")
    return data[colon + 1 : end], end + 1


def split_netstrings(data: bytes, count: int | None = None) -> list[bytes]:
    """Parse consecutive netstrings filling ``data`` exactly (``count`` of them, if given)."""
    items: list[bytes] = []
    position = 0
    while position < len(data):
        item, position = parse_netstring(data, position)
        items.append(item)
    if count is not None and len(items) != count:
        raise NetstringError(f"expected {count} netstrings, found {len(items)}")
    return items
