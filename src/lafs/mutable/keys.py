"""RSA key generation for new mutable files, off the reactor thread, with a small pool kept ready.

Keys are made with the ``cryptography`` package (OpenSSL), several times
faster than pycryptodome, and serialised as Tahoe does: PKCS#8 DER, unencrypted.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer, threads

from lafs.core.crypto import RSA_KEY_SIZE


def generate_private_key() -> bytes:
    """A new 2048-bit RSA key (e = 65537) as PKCS#8 DER. Blocking: ~0.05 s of CPU."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class KeyPool:
    """Keeps up to ``size`` fresh keys generated in the reactor's thread pool.

    ``get`` returns a ready key at once when there is one, otherwise waits
    for the next; either way the pool is refilled in the background.  Keys
    are used once and never logged.
    """

    def __init__(self, reactor: Any, size: int = 2) -> None:
        self._reactor = reactor
        self._size = size
        self._ready: list[bytes] = []
        self._waiting: list[defer.Deferred[bytes]] = []
        self._generating = 0

    def _refill(self) -> None:
        while len(self._ready) + self._generating < self._size + len(self._waiting):
            self._generating += 1
            d: defer.Deferred[bytes] = threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), generate_private_key
            )
            d.addBoth(self._generated)

    def _generated(self, result: Any) -> None:
        self._generating -= 1
        if isinstance(result, bytes):
            if self._waiting:
                self._waiting.pop(0).callback(result)
            else:
                self._ready.append(result)
        elif self._waiting:
            # Generation itself failed (it should not): hand the failure to a waiter rather than retrying forever.
            self._waiting.pop(0).errback(result)

    def start(self) -> None:
        """Begin filling the pool (call once the reactor runs)."""
        self._refill()

    async def get(self) -> bytes:
        if self._ready:
            key = self._ready.pop(0)
            self._refill()
            return key
        d: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append(d)
        self._refill()
        return await d
