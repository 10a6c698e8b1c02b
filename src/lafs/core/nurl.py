"""NURLs: where an HTTP storage server is and which certificate it must present.

``pb://<spki-hash>@<host>:<port>/<swissnum>#v=1`` (facts brief §12): the
spki-hash is the unpadded urlsafe base64 of SHA-256 over the DER
SubjectPublicKeyInfo of the server's certificate, 43 characters; the
swissnum is the one in the server's storage fURL; the ``v=1`` fragment marks
the HTTP protocol.
"""

from __future__ import annotations

import base64
import hashlib
import re

import attrs

from lafs.core.errors import FormatError

SPKI_HASH_LENGTH = 43
_NURL = re.compile(
    r"\Apb://(?P<spki>[A-Za-z0-9_-]{43})@(?P<host>\[[0-9a-fA-F:.]+\]|[^:/@\[\]]+):(?P<port>[0-9]{1,5})"
    r"/(?P<swissnum>[^/#?]+)#v=1\Z"
)


def spki_hash(spki_der: bytes) -> str:
    """The NURL form of a certificate's identity: unpadded urlsafe-b64(SHA256(SPKI DER))."""
    return base64.urlsafe_b64encode(hashlib.sha256(spki_der).digest()).rstrip(b"=").decode("ascii")


def spki_hash_bytes(encoded: str) -> bytes:
    """The 32-byte SHA-256 digest a NURL's spki-hash stands for."""
    if len(encoded) != SPKI_HASH_LENGTH:
        raise FormatError(f"an SPKI hash is {SPKI_HASH_LENGTH} characters, got {len(encoded)}")
    try:
        return base64.urlsafe_b64decode(encoded + "=")
    except ValueError:
        raise FormatError("an SPKI hash must be unpadded urlsafe base64") from None


@attrs.frozen
class NURL:
    """One ``pb://…#v=1`` location of an HTTP storage server."""

    spki_hash: str
    host: str
    port: int
    swissnum: str = attrs.field(repr=False)
    """The shared secret that authorizes requests: kept out of reprs and logs."""

    @classmethod
    def from_string(cls, text: str) -> NURL:
        match = _NURL.match(text)
        if match is None:
            raise FormatError("not a version-1 NURL (pb://<spki-hash>@<host>:<port>/<swissnum>#v=1)")
        port = int(match["port"])
        if not 0 < port < 65536:
            raise FormatError(f"NURL port {port} is out of range")
        spki_hash_bytes(match["spki"])
        host = match["host"]
        return cls(match["spki"], host[1:-1] if host.startswith("[") else host, port, match["swissnum"])

    def to_string(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"pb://{self.spki_hash}@{host}:{self.port}/{self.swissnum}#v=1"

    @property
    def address(self) -> str:
        """``host:port``, for status lines."""
        return f"{self.host}:{self.port}"


def nurls_for_hints(spki: str, location_hints: list[str], swissnum: str) -> list[str]:
    """The NURLs Tahoe 1.20 announces: one per ``tcp:HOST:PORT`` location hint (others cannot carry HTTP)."""
    nurls = []
    for hint in location_hints:
        parts = hint.split(":")
        if len(parts) == 3 and parts[0] == "tcp" and parts[2].isdigit():
            nurls.append(NURL(spki, parts[1], int(parts[2]), swissnum).to_string())
        elif len(parts) == 2 and parts[1].isdigit():  # foolscap's old "HOST:PORT" hint form
            nurls.append(NURL(spki, parts[0], int(parts[1]), swissnum).to_string())
    return nurls
