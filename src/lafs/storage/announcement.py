"""What a storage server tells the grid about itself."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lafs.core import base32
from lafs.core.errors import FormatError

PERMUTATION_SEED_FILE = "permutation-seed"


def permutation_seed_for(basedir: str, node_pubkey_string: bytes) -> str:
    """This server's permutation seed, made once and kept in ``BASEDIR/permutation-seed``.

    Tahoe 1.20 seeds with the base32 of the *text* of the node's public key
    (``b32(b"<52 b32 chars>")``); a server that already held shares from before
    key-based IDs keeps the seed it had.
    """
    path = os.path.join(basedir, PERMUTATION_SEED_FILE)
    if os.path.exists(path):
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    prefix = b"pub-v0-"
    if not node_pubkey_string.startswith(prefix):
        raise FormatError("node public key string must start with 'pub-v0-'")
    seed = base32.b2a(node_pubkey_string[len(prefix) :].strip())
    with open(path, "w", encoding="ascii") as f:
        f.write(seed + "\n")
    return seed


def storage_announcement(furl: str, permutation_seed: str, nurls: Sequence[str] = ()) -> dict[str, Any]:
    """The storage service's keys of an announcement (facts brief §8.2); NURLs only when HTTPS is served."""
    ann: dict[str, Any] = {"anonymous-storage-FURL": furl, "permutation-seed-base32": permutation_seed}
    if nurls:
        ann["anonymous-storage-NURLs"] = list(nurls)
    return ann
