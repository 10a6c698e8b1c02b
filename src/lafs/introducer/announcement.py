"""Signed announcements: ``(msg, sig, key)`` with an Ed25519 signature over the JSON message."""

from __future__ import annotations

import json
from typing import Any

from lafs.core import base32, crypto
from lafs.core.errors import Base32Error, LafsError

SIGNATURE_PREFIX = b"v0-"


class BadAnnouncementError(LafsError):
    """An announcement that is unsigned, badly signed or malformed."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, set | frozenset | tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {_jsonable(k): _jsonable(v) for k, v in value.items()}
    return value


def server_id_for(public_key: bytes) -> str:
    """The ``v0-<b32 key>`` ID that names a node in announcements."""
    return "v0-" + base32.b2a(public_key)


def sign_announcement(ann: dict[str, Any], signing_seed: bytes) -> tuple[bytes, bytes, bytes]:
    msg = json.dumps(_jsonable(ann)).encode("utf-8")
    signature = crypto.ed25519_sign(signing_seed, msg)
    public = crypto.ed25519_public_from_private(signing_seed)
    return msg, SIGNATURE_PREFIX + base32.b2a_bytes(signature), SIGNATURE_PREFIX + base32.b2a_bytes(public)


def verify_announcement(ann_t: Any) -> tuple[dict[str, Any], str]:
    """Check the signature; return the announcement and the announcer's server ID."""
    if not isinstance(ann_t, tuple | list) or len(ann_t) != 3:
        raise BadAnnouncementError("an announcement must be a (message, signature, key) triple")
    msg, sig, key = ann_t
    if not all(isinstance(part, bytes) for part in (msg, sig, key)):
        raise BadAnnouncementError("announcement parts must be bytes")
    if not sig or not key:
        raise BadAnnouncementError("unsigned announcement")
    if not sig.startswith(SIGNATURE_PREFIX) or not key.startswith(SIGNATURE_PREFIX):
        raise BadAnnouncementError("announcement signature and key must start with 'v0-'")
    try:
        signature = base32.a2b(sig[len(SIGNATURE_PREFIX) :])
        public = base32.a2b(key[len(SIGNATURE_PREFIX) :])
    except Base32Error as e:
        raise BadAnnouncementError(f"announcement signature or key is not base32: {e}") from None
    try:
        crypto.ed25519_verify(public, msg, signature)
    except (crypto.BadSignatureError, crypto.KeyFormatError) as e:
        raise BadAnnouncementError(f"announcement signature does not verify: {e}") from None
    try:
        ann = json.loads(msg.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadAnnouncementError("announcement message is not JSON") from None
    if not isinstance(ann, dict):
        raise BadAnnouncementError("announcement message is not a JSON object")
    return ann, key.decode("ascii")


def replaces(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether announcement ``new`` may replace ``old`` from the same announcer: a strictly greater seqnum."""
    new_seq, old_seq = new.get("seqnum"), old.get("seqnum")
    if not isinstance(new_seq, int):
        return False
    return not isinstance(old_seq, int) or new_seq > old_seq
