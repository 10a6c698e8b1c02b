"""Base32 and netstrings: known answers, strict rejection, hypothesis round-trips."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core.base32 import a2b, b2a, could_be_base32_encoded, encoded_length
from lafs.core.errors import Base32Error, NetstringError
from lafs.core.netstring import netstring, parse_netstring, split_netstrings


def test_known_answers() -> None:
    assert b2a(b"\x12\x34") == "ci2a"
    assert b2a(b"hello") == "nbswy3dp"
    assert a2b("ci2a") == b"\x12\x34"
    assert a2b(b"nbswy3dp") == b"hello"
    assert b2a(b"") == "" and a2b("") == b""


@pytest.mark.parametrize(
    "text,problem",
    [
        ("b0gus", "invalid base32 character '0'"),
        ("NBSWY3DP", "invalid base32 character 'N'"),
        ("abc", "invalid base32 length 3"),
        ("a", "invalid base32 length 1"),
        ("ci2b", "unused bits"),
        ("nbswy3dq", None),
    ],
)
def test_rejects_invalid(text: str, problem: str | None) -> None:
    """Invalid base32 raises Base32Error naming the problem, never a binascii error."""
    if problem is None:
        assert a2b(text)  # 'q' is a legal final character at length 8
        return
    with pytest.raises(Base32Error, match=problem):
        a2b(text)
    assert not could_be_base32_encoded(text)


def test_rejects_non_ascii_bytes() -> None:
    with pytest.raises(Base32Error, match="non-ASCII"):
        a2b(b"\xff\xfe")


@given(st.binary(max_size=200))
def test_base32_round_trip(data: bytes) -> None:
    text = b2a(data)
    assert len(text) == encoded_length(len(data))
    assert a2b(text) == data


@given(st.text(max_size=40))
def test_base32_garbage_raises_only_our_error(text: str) -> None:
    try:
        data = a2b(text)
    except Base32Error:
        return
    assert b2a(data) == text  # anything accepted is canonical


def test_netstring_known_answers() -> None:
    assert netstring(b"abc") == b"3:abc,"
    assert netstring(b"") == b"0:,"
    assert split_netstrings(b"3:abc,0:,") == [b"abc", b""]


@pytest.mark.parametrize(
    "data,problem",
    [
        (b"3abc,", "no ':'"),
        (b"03:abc,", "bad length"),
        (b"-3:abc,", "bad length"),
        (b"5:abc,", "data ends first"),
        (b"3:abcd", "not terminated"),
    ],
)
def test_netstring_rejects_malformed(data: bytes, problem: str) -> None:
    with pytest.raises(NetstringError, match=problem):
        parse_netstring(data)


def test_split_netstrings_checks_count() -> None:
    with pytest.raises(NetstringError, match="expected 3 netstrings, found 2"):
        split_netstrings(b"1:a,1:b,", count=3)


@given(st.lists(st.binary(max_size=50), max_size=10))
def test_netstring_round_trip(items: list[bytes]) -> None:
    assert split_netstrings(b"".join(netstring(i) for i in items)) == items


@given(st.binary(max_size=60))
def test_netstring_garbage_raises_only_our_error(data: bytes) -> None:
    try:
        split_netstrings(data)
    except NetstringError:
        pass
