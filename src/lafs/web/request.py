"""The gateway's HTTP request: uploaded bodies are hashed for their convergent key while they arrive."""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from lafs.core.caps import LIT_SIZE_THRESHOLD
from lafs.core.hashes import Sha256dHasher


class HashingBody:
    """A request body spool that feeds each byte to a convergence hasher as it arrives.

    A CHK upload needs its convergent key before it can encrypt a byte, and the
    key is a hash of the whole file; hashing while the body is received spares
    the uploader a whole pass over the spooled file afterwards.
    """

    def __init__(self, spool: Any, hasher: Sha256dHasher, expected_length: int) -> None:
        self._spool = spool
        self._hasher = hasher
        self._expected_length = expected_length
        self._received = 0

    def write(self, data: bytes) -> None:
        self._spool.write(data)
        self._hasher.update(data)
        self._received += len(data)

    def convergent_key(self) -> bytes | None:
        """The key for the whole body, or None if the body is not the length it declared."""
        return self._hasher.digest() if self._received == self._expected_length else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spool, name)


class GatewayRequest(Request):
    """A request whose uploaded body (PUT with a Content-Length) is hashed as it arrives."""

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        # The channel knows the method before the body arrives; the request learns it only after.
        channel: Any = self.channel
        method = getattr(channel, "_command", None)
        if length is None or length <= LIT_SIZE_THRESHOLD or method != b"PUT":
            return
        files = getattr(channel.site.node, "files", None)
        if files is not None:
            body: Any = HashingBody(self.content, files.convergence_hasher(length), length)
            self.content = body


class GatewaySite(Site):
    """The gateway's Site: its requests can reach the node (for the upload encoding)."""

    def __init__(self, resource: Resource, node: Any) -> None:
        super().__init__(resource, requestFactory=GatewayRequest)
        self.node = node
