"""Tahoe's base32: RFC 4648 base32, lower-case, with the '=' padding stripped.

Decoding is strict: only the lower-case alphabet is accepted, the length must be
one an encoder can produce, and the unused low bits of the last character must
be zero, so every accepted string has exactly one byte-string meaning.
"""

from __future__ import annotations

import base64
import functools
import re

from lafs.core.errors import Base32Error

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

# For an encoded length L, (L % 8) decides how many bits of the last character
# are padding; those must be zero.  Map L % 8 -> characters allowed last.
_LAST_CHAR_BY_LENGTH_MOD_8 = {
    0: ALPHABET,
    2: "aqiyemu4",
    4: "aq",
    5: "aqiyemu4cgkosw26",
    7: "aqiy",
}
_PAD_BY_LENGTH_MOD_8 = {0: "", 2: "======", 4: "====", 5: "===", 7: "="}
_VALID_CHARS = re.compile(r"\A[a-z2-7]*\Z")


# The standard library's base32 is pure Python (~1 us per 5 bytes); directory listings turn
# the same caps to and from text over and over, so short strings' results are kept.
_CACHED_UP_TO = 128


def b2a(data: bytes) -> str:
    """Encode bytes as Tahoe base32 text."""
    if type(data) is bytes and len(data) <= _CACHED_UP_TO:
        return _b2a_cached(data)
    return _b2a(data)


def _b2a(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


_b2a_cached = functools.lru_cache(maxsize=1 << 16)(_b2a)


def b2a_bytes(data: bytes) -> bytes:
    """Encode bytes as Tahoe base32, returned as ASCII bytes."""
    return b2a(data).encode("ascii")


def could_be_base32_encoded(text: str | bytes) -> bool:
    """True when ``text`` is a string some byte string encodes to."""
    try:
        a2b(text)
    except Base32Error:
        return False
    return True


def a2b(text: str | bytes) -> bytes:
    """Decode Tahoe base32 text (str or ASCII bytes); raise Base32Error if invalid."""
    if type(text) in (str, bytes) and len(text) <= _CACHED_UP_TO * 2:
        return _a2b_cached(text)
    return _a2b(text)


def _a2b(text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise Base32Error("base32 text contains non-ASCII bytes") from None
    if not _VALID_CHARS.match(text):
        bad = next(c for c in text if c not in ALPHABET)
        raise Base32Error(f"invalid base32 character {bad!r} (Tahoe base32 is lower-case a-z, 2-7)")
    remainder = len(text) % 8
    if remainder not in _LAST_CHAR_BY_LENGTH_MOD_8:
        raise Base32Error(f"invalid base32 length {len(text)} (no byte string encodes to it)")
    if text and text[-1] not in _LAST_CHAR_BY_LENGTH_MOD_8[remainder]:
        raise Base32Error("invalid base32: the unused bits of the last character are not zero")
    return base64.b32decode(text.upper() + _PAD_BY_LENGTH_MOD_8[remainder])


_a2b_cached = functools.lru_cache(maxsize=1 << 16)(_a2b)


def encoded_length(byte_count: int) -> int:
    """How many base32 characters encode ``byte_count`` bytes."""
    return (byte_count * 8 + 4) // 5
