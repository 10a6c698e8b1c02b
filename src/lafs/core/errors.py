"""Error types raised by the pure core.  Each carries a message naming the problem."""

from __future__ import annotations


class LafsError(Exception):
    """Base class for every error lafs raises on purpose."""


class FormatError(LafsError, ValueError):
    """Bytes or text that do not follow a Tahoe format (base32, netstring, layout...)."""


class Base32Error(FormatError):
    """Text that is not valid Tahoe base32."""


class NetstringError(FormatError):
    """Bytes that are not a well-formed netstring."""
