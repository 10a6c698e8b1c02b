"""Sizes as tahoe.cfg writes them: ``1G``, ``500MB``, ``1GiB``, ``1234``."""

from __future__ import annotations

import re

from lafs.core.errors import FormatError

_SIZE = re.compile(r"\A\s*(\d+)\s*([kmgtpe]?)(i?)(b?)\s*\Z", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


class SizeError(FormatError):
    """A size that is not a number with an optional K/M/G/T/P/E suffix."""


def parse_abbreviated_size(text: str) -> int:
    """``1G`` -> 10**9, ``1GiB`` -> 2**30, ``100MB``, ``512k``, ``1234`` (case-insensitive)."""
    match = _SIZE.match(text)
    if match is None:
        raise SizeError(f"{text!r} is not a size (expected e.g. 1G, 500MB, 1GiB or a number of bytes)")
    number, unit, binary, _ = match.groups()
    base = 1024 if binary else 1000
    power: int = base ** _POWERS[unit.lower()]  # mypy types int ** int as Any: the exponent could be negative
    return int(number) * power
