"""Signed introducer announcements (facts brief §8.2)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import crypto
from lafs.introducer.announcement import (
    BadAnnouncementError,
    server_id_for,
    sign_announcement,
    verify_announcement,
)

SEED = crypto.ed25519_private_from_string(b"priv-v0-lqcj746bqa4npkb6zpyc6esd74x3bl6mbcjgqend7cvtgmcpawhq")


def test_sign_and_verify() -> None:
    ann = {"version": 0, "service-name": "storage", "seqnum": 1, "anonymous-storage-FURL": "pb://x@y/z"}
    msg, sig, key = sign_announcement(ann, SEED)
    assert msg == json.dumps(ann).encode()
    assert sig.startswith(b"v0-") and key == b"v0-yzpqin3of3ep363lwzxwpvgai3ps43dao46k2jds5kw5ohhpcwhq"
    decoded, key_s = verify_announcement((msg, sig, key))
    assert decoded == ann and key_s == key.decode()
    assert server_id_for(crypto.ed25519_public_from_private(SEED)) == key_s


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda m, s, k: (m + b" ", s, k), "does not verify"),
        (lambda m, s, k: (m, b"", k), "unsigned"),
        (lambda m, s, k: (m, s[3:], k), "must start with 'v0-'"),
        (lambda m, s, k: (m, s, b"v0-" + b"a" * 52), "does not verify"),
        (lambda m, s, k: (m, b"v0-!!", k), "not base32"),
        (lambda m, s, k: (m, s), "triple"),
    ],
)
def test_bad_announcements_are_rejected(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    ann_t = sign_announcement({"service-name": "storage", "seqnum": 1}, SEED)
    with pytest.raises(BadAnnouncementError, match=message):
        verify_announcement(mangle(*ann_t))


def test_signed_non_json_is_rejected() -> None:
    msg = b"not json"
    public = crypto.ed25519_public_from_private(SEED)
    from lafs.core import base32

    ann_t = (msg, b"v0-" + base32.b2a_bytes(crypto.ed25519_sign(SEED, msg)), b"v0-" + base32.b2a_bytes(public))
    with pytest.raises(BadAnnouncementError, match="not JSON"):
        verify_announcement(ann_t)


@given(st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=20)), max_size=5))
def test_any_announcement_round_trips(ann: dict[str, object]) -> None:
    decoded, _ = verify_announcement(sign_announcement(ann, SEED))
    assert decoded == ann
