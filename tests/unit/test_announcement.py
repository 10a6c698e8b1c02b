"""Announcement signing checked against vectors made and checked by the real Tahoe-LAFS 1.20.

The vectors come from ``tests/unit/data/announcement_vectors_producer.py.txt`` (its first lines
say how to run it): Tahoe's ``sign_to_foolscap`` output, our ``sign_announcement`` output as
``unsign_from_foolscap`` judged it, and mangled triples with Tahoe's verdict on each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lafs.core import base32, crypto
from lafs.introducer.announcement import (
    BadAnnouncementError,
    sign_announcement,
    verify_announcement,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "announcement_vectors.json").read_text())


def as_input(entry: dict[str, Any]) -> dict[str, Any]:
    ann = dict(entry["ann"])
    for key in entry["bytes_values"]:
        ann[key] = ann[key].encode("utf-8")
    return ann


def as_triple(parts: list[str]) -> tuple[bytes, bytes, bytes]:
    return parts[0].encode("utf-8"), parts[1].encode("ascii"), parts[2].encode("ascii")


def vector_id(vector: dict[str, Any]) -> str:
    return f"{vector['private_key'][8:14]}-{vector['input']['ann']['service-name']}-{vector['input']['ann']['seqnum']}"


@pytest.mark.parametrize("vector", VECTORS["tahoe_signed"], ids=vector_id)
def test_tahoe_signed_announcements_verify(vector: dict[str, Any]) -> None:
    ann, key_s = verify_announcement(as_triple(vector["triple"]))
    assert ann == vector["tahoe_verdict"]["ann"]
    assert key_s == vector["tahoe_verdict"]["key_s"]


@pytest.mark.parametrize("vector", VECTORS["tahoe_signed"], ids=vector_id)
def test_we_sign_byte_for_byte_as_tahoe(vector: dict[str, Any]) -> None:
    # Ed25519 is deterministic, so the same key and announcement give the same triple.
    seed = crypto.ed25519_private_from_string(vector["private_key"].encode("ascii"))
    assert sign_announcement(as_input(vector["input"]), seed) == as_triple(vector["triple"])


@pytest.mark.parametrize("vector", VECTORS["lafs_signed_checked_by_tahoe"], ids=vector_id)
def test_tahoe_accepted_our_signatures(vector: dict[str, Any]) -> None:
    verdict = vector["tahoe_verdict"]
    assert verdict["accepted"], verdict
    # What Tahoe decoded is what the announcer meant (bytes arrive as str).
    expected = vector["input"]["ann"]
    assert verdict["ann"] == expected
    assert verify_announcement(as_triple(vector["triple"])) == (expected, verdict["key_s"])


@pytest.mark.parametrize("vector", VECTORS["mangled"], ids=lambda v: v["name"])
def test_we_reject_exactly_what_tahoe_rejects(vector: dict[str, Any]) -> None:
    triple = as_triple(vector["triple"])
    verdict = vector["tahoe_verdict"]
    if verdict["accepted"]:
        assert verify_announcement(triple) == (verdict["ann"], verdict["key_s"])
    else:
        with pytest.raises(BadAnnouncementError):
            verify_announcement(triple)


def test_rejection_messages_name_the_problem() -> None:
    by_name = {v["name"]: as_triple(v["triple"]) for v in VECTORS["mangled"]}
    expected = {
        "message_changed": "does not verify",
        "unsigned_empty_signature": "unsigned",
        "no_key": "unsigned",
        "signature_without_v0": "'v0-'",
        "key_with_pub_prefix": "'v0-'",
        "signed_non_json": "not JSON",
    }
    for name, message in expected.items():
        with pytest.raises(BadAnnouncementError, match=message):
            verify_announcement(by_name[name])


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        b"msg",
        (b"m", b"v0-a"),
        (b"m", "v0-aa", b"v0-aa"),
        (b"m", b"v0-aa", b"v0-aa", b"x"),
        [1, 2, 3],
    ],
)
def test_malformed_triples_raise_our_error(garbage: Any) -> None:
    with pytest.raises(BadAnnouncementError):
        verify_announcement(garbage)


def test_signed_json_that_is_not_an_object_is_rejected() -> None:
    seed = crypto.ed25519_private_from_string(
        VECTORS["tahoe_signed"][0]["private_key"].encode("ascii")
    )
    key = sign_announcement({"x": 1}, seed)[2]
    list_msg = b"[1, 2]"
    list_sig = b"v0-" + base32.b2a_bytes(crypto.ed25519_sign(seed, list_msg))
    with pytest.raises(BadAnnouncementError, match="not a JSON object"):
        verify_announcement((list_msg, list_sig, key))
