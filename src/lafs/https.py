"""TLS for the HTTP storage protocol: the node's certificate, SPKI pinning, and one port for Foolscap and HTTPS.

Tahoe 1.20 serves Foolscap and HTTPS on the Tub's port.  A Foolscap client
opens with the plaintext ``GET /id/`` of its negotiation; an HTTPS client
opens with a TLS ClientHello (first byte 0x16).  `SharedPortEndpoint` wraps
the endpoint a Tub listens on, reads the first bytes of every connection and
hands the connection to foolscap's negotiation or to a TLS-wrapped web site.

Clients trust no certificate authority: a server is who its NURL says when
the SHA-256 of its certificate's SubjectPublicKeyInfo matches the NURL's
spki-hash (`PinnedSPKIPolicy`).  Expiry and signatures are not checked,
as Foolscap does not check them for the same certificates.
"""

from __future__ import annotations

import hmac
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from OpenSSL import SSL
from twisted.internet import defer, interfaces, protocol, ssl
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from lafs import internals
from lafs.core.nurl import spki_hash, spki_hash_bytes

FOOLSCAP_PREFIX = b"GET /id/"
"""How every Foolscap negotiation begins; anything else on a shared port is taken for TLS."""
FIRST_BYTES_TIMEOUT = 60.0
"""Seconds a connection may stay silent before it is dropped (neither protocol has started yet)."""


def certificate_spki_hash(certificate: x509.Certificate) -> str:
    """The NURL spki-hash of ``certificate``."""
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return spki_hash(spki)


def pem_spki_hash(pem: bytes) -> str:
    """The NURL spki-hash of the (first) certificate in ``pem``, such as a node's ``private/node.pem``."""
    return certificate_spki_hash(x509.load_pem_x509_certificate(pem))


def server_tls_options(pem: bytes) -> Any:
    """Twisted TLS server options presenting the certificate and key in ``pem``; no client certificates asked."""
    return ssl.PrivateCertificate.loadPEM(pem).options()


# --- one port for Foolscap and HTTPS ------------------------------------------------------------


class HTTPSHandoff:
    """Where a shared port sends its HTTPS connections; the site is set once the storage server exists.

    Until then (or on nodes without storage) a TLS connection is closed at once.
    """

    def __init__(self) -> None:
        self.factory: Any = None

    def serve(self, site: Any, pem: bytes) -> None:
        """Answer HTTPS connections with ``site``, presenting the certificate in ``pem``."""
        self.factory = TLSMemoryBIOFactory(server_tls_options(pem), False, site)


class _Sniffer(protocol.Protocol):
    """A new connection on a shared port, until its first bytes say which protocol it speaks."""

    def __init__(self, factory: _SharingFactory, addr: Any) -> None:
        self._factory = factory
        self._addr = addr
        self._received = b""
        self._timeout: Any = None

    def connectionMade(self) -> None:
        self._timeout = self._factory.reactor.callLater(FIRST_BYTES_TIMEOUT, self._silent)

    def _silent(self) -> None:
        self._timeout = None
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self._received += data
        received = self._received
        if len(received) < len(FOOLSCAP_PREFIX) and FOOLSCAP_PREFIX.startswith(received):
            return  # may still be Foolscap: wait for more
        self._stop_timer()
        if received.startswith(FOOLSCAP_PREFIX):
            target = self._factory.foolscap.buildProtocol(self._addr)
        elif self._factory.https.factory is not None:
            target = self._factory.https.factory.buildProtocol(self._addr)
            if target is not None:
                self._factory.track(target)
        else:
            target = None
        transport: Any = self.transport
        if target is None:
            transport.loseConnection()
            return
        self._received = b""
        internals.set_transport_protocol(transport, target)
        target.makeConnection(transport)
        target.dataReceived(received)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None


class _SharingFactory(protocol.Factory):
    def __init__(self, foolscap: protocol.Factory, https: HTTPSHandoff, reactor: Any) -> None:
        self.foolscap = foolscap
        self.https = https
        self.reactor = reactor
        self._https_connections: set[Any] = set()

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        return _Sniffer(self, addr)

    def track(self, tls_protocol: Any) -> None:
        """Remember an HTTPS connection, so that it can be closed when the port stops."""
        connections = self._https_connections
        connections.add(tls_protocol)
        lost = tls_protocol.connectionLost

        def connection_lost(reason: Failure) -> None:
            connections.discard(tls_protocol)
            lost(reason)

        tls_protocol.connectionLost = connection_lost

    def close_https_connections(self) -> None:
        for tls_protocol in list(self._https_connections):
            transport = tls_protocol.transport
            if transport is not None:
                transport.abortConnection()

    def startFactory(self) -> None:
        self.foolscap.doStart()

    def stopFactory(self) -> None:
        self.foolscap.doStop()


@implementer(interfaces.IListeningPort)
class _SharedListeningPort:
    """The listening port; stopping it also ends its HTTPS connections (Foolscap ends its own)."""

    def __init__(self, port: Any, factory: _SharingFactory) -> None:
        self._port = port
        self._factory = factory

    def startListening(self) -> None:
        self._port.startListening()

    def stopListening(self) -> Any:
        self._factory.close_https_connections()
        return self._port.stopListening()

    def getHost(self) -> Any:
        return self._port.getHost()


@implementer(interfaces.IStreamServerEndpoint)
class SharedPortEndpoint:
    """Listens on ``inner`` for a Tub, handing connections that do not speak Foolscap to ``https``."""

    def __init__(self, inner: Any, https: HTTPSHandoff, reactor: Any) -> None:
        self._inner = inner
        self._https = https
        self._reactor = reactor

    def listen(self, foolscap_factory: protocol.Factory) -> defer.Deferred[Any]:
        factory = _SharingFactory(foolscap_factory, self._https, self._reactor)
        listening: defer.Deferred[Any] = self._inner.listen(factory)
        return listening.addCallback(lambda port: _SharedListeningPort(port, factory))

    def __str__(self) -> str:
        return f"{self._inner} (Foolscap and HTTPS)"


# --- the client's side: pin the server's certificate -----------------------------------------------


@implementer(interfaces.IOpenSSLClientConnectionCreator)
class _PinnedConnectionCreator:
    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        connection.set_connect_state()
        return connection


@implementer(IPolicyForHTTPS)
class PinnedSPKIPolicy:
    """TLS for an HTTPS client that accepts exactly the certificates whose SPKI hash is ``expected``.

    No certificate authority, host name or expiry check: the hash is the server's identity.
    A server presenting another key fails the handshake.
    """

    def __init__(self, expected: str) -> None:
        self._expected = spki_hash_bytes(expected)
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        self._context = context

    def _verify(self, connection: SSL.Connection, certificate: Any, errno: int, depth: int, ok: int) -> bool:
        if depth != 0:
            return True  # only the server's own certificate is pinned; anything it chains to is irrelevant
        presented = spki_hash_bytes(certificate_spki_hash(certificate.to_cryptography()))
        return hmac.compare_digest(presented, self._expected)

    def creatorForNetloc(self, hostname: bytes, port: int) -> _PinnedConnectionCreator:
        return _PinnedConnectionCreator(self._context)
