"""NURLs and the HTTP storage server's pure parsers: known answers, rejection, hypothesis round-trips."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core.errors import FormatError
from lafs.core.nurl import NURL, nurls_for_hints, spki_hash, spki_hash_bytes
from lafs.storage.http_server import HTTPError, _Upload, parse_content_range, parse_range

# A NURL a real Tahoe 1.20 storage node announced (its introducer cache).
REAL = "pb://Ps6nw0zncyjBHjS0IMVR-dXN81ZhTC_yIeXXYoNENHM@127.0.0.1:59969/lphcbmqcpswhsczrt4dfsckflpqn7j3z#v=1"

spki_hashes = st.binary(min_size=32, max_size=32).map(lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode())
hosts = st.one_of(
    st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?\Z"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
swissnums = st.from_regex(r"\A[a-z2-7]{1,52}\Z")


def test_a_real_nurl_parses() -> None:
    nurl = NURL.from_string(REAL)
    assert (nurl.spki_hash, nurl.host, nurl.port) == ("Ps6nw0zncyjBHjS0IMVR-dXN81ZhTC_yIeXXYoNENHM", "127.0.0.1", 59969)
    assert nurl.swissnum == "lphcbmqcpswhsczrt4dfsckflpqn7j3z"
    assert nurl.to_string() == REAL
    assert nurl.swissnum not in repr(nurl), "the swissnum is a secret"


def test_spki_hash_is_unpadded_urlsafe_sha256() -> None:
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"spki").digest()).rstrip(b"=").decode()
    assert spki_hash(b"spki") == expected and len(expected) == 43
    assert spki_hash_bytes(expected) == hashlib.sha256(b"spki").digest()


@pytest.mark.parametrize(
    "text",
    [
        REAL.replace("#v=1", ""),  # a fURL, not a NURL
        REAL.replace("#v=1", "#v=2"),
        REAL.replace("pb://", "http://"),
        REAL.replace("Ps6nw0", "Ps6nw"),  # hash too short
        REAL.replace(":59969", ""),
        REAL.replace(":59969", ":99999"),
        REAL.replace("/lphcbmqcpswhsczrt4dfsckflpqn7j3z", "/"),  # no swissnum
        "",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(FormatError):
        NURL.from_string(text)


@given(spki_hashes, hosts, st.integers(1, 65535), swissnums)
def test_nurls_round_trip(spki: str, host: str, port: int, swissnum: str) -> None:
    nurl = NURL(spki, host, port, swissnum)
    assert NURL.from_string(nurl.to_string()) == nurl


@given(st.text(max_size=120))
def test_garbage_raises_only_format_error(text: str) -> None:
    try:
        NURL.from_string(text)
    except FormatError:
        pass


def test_one_nurl_per_tcp_hint() -> None:
    spki = spki_hash(b"x")
    hints = ["tcp:127.0.0.1:1234", "tor:abc.onion:80", "example.net:99"]
    assert nurls_for_hints(spki, hints, "swiss") == [
        f"pb://{spki}@127.0.0.1:1234/swiss#v=1",
        f"pb://{spki}@example.net:99/swiss#v=1",
    ]


def test_ranges() -> None:
    assert parse_range(None) is None
    assert parse_range(b"bytes=5-14") == (5, 10)
    assert parse_content_range(b"bytes 0-9/20") == (0, 10)
    assert parse_content_range(b"bytes 0-9/*") == (0, 10)
    for bad in (b"bytes=5-", b"bytes=-5", b"bytes=1-2,4-5", b"bytes=5-2", b"items=1-2"):
        with pytest.raises(HTTPError) as caught:
            parse_range(bad)
        assert caught.value.status == 416
    for bad_content in (None, b"bytes 9-0/20", b"bytes 0-9", b"0-9/20"):
        with pytest.raises(HTTPError):
            parse_content_range(bad_content)


class _Writer:
    allocated_size = 64
    finished = False


@given(st.lists(st.tuples(st.integers(0, 63), st.integers(1, 64)), max_size=20))
def test_required_ranges_are_exactly_what_is_missing(writes: list[tuple[int, int]]) -> None:
    upload = _Upload(b"secret", _Writer())  # type: ignore[arg-type]
    have: set[int] = set()
    for begin, length in writes:
        end = min(begin + length, 64)
        upload.add(begin, end)
        have.update(range(begin, end))
    missing = {i for gap in upload.required() for i in range(gap["begin"], gap["end"])}
    assert missing == set(range(64)) - have
    assert all(gap["begin"] < gap["end"] for gap in upload.required())
