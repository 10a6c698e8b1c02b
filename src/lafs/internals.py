"""Every use lafs makes of private internals of Twisted, pyOpenSSL and foolscap, in one place.

Each of these saves real work (see lafs.tub and lafs.web.request for why), and
each can break with a new release of the library it reaches into.  Kept here,
they can be listed, and tests/unit/test_internals.py checks every one against
the installed versions, naming the package, version and attribute that went
missing; pyproject.toml bounds those packages below their next major version.
Where an internal is missing at run time, the callers fall back to the
libraries' public path (slower, equally correct).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from foolscap.broker import Broker
from OpenSSL import SSL
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import BufferingTLSTransport
from twisted.web._newclient import HTTP11ClientProtocol
from twisted.web._newclient import Request as HTTP11Request
from twisted.web.http_headers import Headers

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # a pyOpenSSL without these internals: Twisted's own TLS path is used
    _ffi = _lib = None

TLS_CONNECTION_ATTRIBUTES = ("_ssl", "_from_ssl")
"""pyOpenSSL ``SSL.Connection``: its ``SSL *`` and the memory BIO OpenSSL writes TLS records to."""
OPENSSL_FUNCTIONS = ("SSL_write", "BIO_get_mem_data", "BIO_read")
"""The OpenSSL functions called through pyOpenSSL's private cffi binding (``OpenSSL._util.lib``)."""
TLS_TRANSPORT_ATTRIBUTES = ("_tlsConnection", "_aggregator", "_handshakeDone", "_appSendBuffer", "_lostTLSConnection", "_producer", "_write")
"""Twisted ``BufferingTLSTransport``: its pyOpenSSL connection, small-write aggregator and state flags."""
SOCKET_ATTRIBUTES = ("_tempDataLen", "dataBuffer", "offset")
"""Twisted ``FileDescriptor``: how much it holds unsent."""


# --- Twisted's TLS transport and pyOpenSSL, for lafs.tub.BulkTLSWriter -----------------------------


class TLSHandles:
    """What encrypting straight through OpenSSL needs of one pyOpenSSL connection."""

    __slots__ = ("bio_data", "connection", "send_bio", "ssl")

    def __init__(self, connection: SSL.Connection) -> None:
        self.connection = connection
        self.ssl = connection._ssl
        self.send_bio = connection._from_ssl
        self.bio_data = _ffi.new("char **")  # where BIO_get_mem_data puts a pointer we do not use


def bulk_tls_handles(tls: object, socket: object) -> TLSHandles | None:
    """OpenSSL's handles of ``tls`` (Twisted's TLS layer over ``socket``) if every internal used is there, else None."""
    if _lib is None or not isinstance(tls, BufferingTLSTransport) or not isinstance(socket, FileDescriptor):
        return None
    connection = getattr(tls, "_tlsConnection", None)
    needed = [
        getattr(connection, "_ssl", None),
        getattr(connection, "_from_ssl", None),
        getattr(tls, "_aggregator", None),
        getattr(tls, "_handshakeDone", None),
        getattr(socket, "_tempDataLen", None),
        getattr(socket, "dataBuffer", None),
    ]
    if not isinstance(connection, SSL.Connection) or None in needed:
        return None
    return TLSHandles(connection)


def tls_is_idle(tls: BufferingTLSTransport) -> bool:
    """Twisted's TLS layer has nothing of its own to sort out: handshake done, no buffered data, not closing."""
    return not (
        tls._appSendBuffer
        or tls._lostTLSConnection
        or (tls.disconnecting and tls._producer is None)
        or not tls._handshakeDone
    )


def flush_small_writes(tls: BufferingTLSTransport) -> None:
    """Send what Twisted's TLS layer has gathered of short writes, so it goes before what follows."""
    tls._aggregator.flush()


def write_through_tls(tls: BufferingTLSTransport, data: bytes) -> None:
    """Encrypt and send ``data`` the way Twisted's TLS layer does, past its aggregator."""
    tls._write(data)


def socket_has_nothing_unsent(socket: FileDescriptor) -> bool:
    """Twisted's socket buffer is empty, so data may go to the socket directly without overtaking any."""
    return socket.offset == len(socket.dataBuffer) and not socket._tempDataLen


def encrypt_records(handles: TLSHandles, data: bytes, out: bytearray, room: int, step: int) -> tuple[int, int, bytes]:
    """TLS-encrypt ``data`` into ``out`` (``room`` bytes of it), at most ``step`` bytes per call into OpenSSL.

    Returns how many bytes of records were put in ``out``, how many bytes of
    ``data`` OpenSSL took, and records that did not fit (never expected: the
    room is more than TLS adds).
    """
    length = len(data)
    used = sent = 0
    overflow = b""
    ssl, send_bio, bio_data = handles.ssl, handles.send_bio, handles.bio_data
    with _ffi.from_buffer(out) as records, _ffi.from_buffer(data) as plaintext:
        while sent < length:
            taken = _lib.SSL_write(ssl, plaintext + sent, min(length - sent, step))
            if taken <= 0:
                break
            sent += taken
            waiting = _lib.BIO_get_mem_data(send_bio, bio_data)
            fits = min(waiting, room - used)
            used += _lib.BIO_read(send_bio, records + used, fits) if fits else 0
            if waiting > fits:
                overflow = handles.connection.bio_read(waiting - fits)
                break
    return used, sent, overflow


# --- foolscap -----------------------------------------------------------------------------------


class ArgumentReleasingBroker(Broker):
    """foolscap's Broker, letting go of an inbound call's arguments once the call has answered.

    Hooks foolscap's private ``_callFinished``; ``delivery.allargs`` is the
    unslicer that gathered the arguments (part of a reference cycle).
    """

    def _callFinished(self, result: Any, delivery: Any) -> None:
        try:
            super()._callFinished(result, delivery)
        finally:
            _release_arguments(delivery)

    def callFailed(self, failure: Any, reqID: int, delivery: Any = None) -> None:
        try:
            super().callFailed(failure, reqID, delivery)
        finally:
            if delivery is not None:
                _release_arguments(delivery)


def _release_arguments(delivery: Any) -> None:
    delivery.allargs.args = []
    delivery.allargs.kwargs = {}


def winning_hint(reconnector: Any) -> str | None:
    """The connection hint a foolscap Reconnector got through on, or None if it is not known."""
    try:
        hint = reconnector.getReconnectionInfo().connectionInfo.winningHint
    except AttributeError:
        return None
    return str(hint) if hint else None


# --- twisted.web ----------------------------------------------------------------------------------


def request_disconnected(request: Any) -> bool:
    """The client of this twisted.web request has gone (Twisted keeps this private)."""
    return bool(request._disconnected)


def channel_method(channel: Any) -> bytes | None:
    """The method of the request an HTTPChannel is receiving, known before its body arrives."""
    method = getattr(channel, "_command", None)
    return method if isinstance(method, bytes) else None


# --- Twisted TCP transports, for lafs.https.SharedPortEndpoint -------------------------------------


def set_transport_protocol(transport: Any, new_protocol: Any) -> None:
    """Make ``transport`` deliver its data and connection loss to ``new_protocol`` from now on.

    Twisted's TCP connections call ``self.protocol`` for every event (its own
    ``startTLS`` swaps it the same way); a shared port uses this to hand a
    connection on once its first bytes say which protocol it speaks.
    """
    if not hasattr(transport, "protocol"):
        raise TypeError(f"{type(transport).__name__} has no protocol attribute to hand the connection over with")
    transport.protocol = new_protocol


# --- twisted.web.client, for lafs.storage_client.http ---------------------------------------------


def http11_client(on_quiescent: Callable[[HTTP11ClientProtocol], None]) -> HTTP11ClientProtocol:
    """Twisted's HTTP/1.1 client protocol for one connection, used without an Agent or its pool.

    ``on_quiescent`` gets the protocol each time a response has been read
    whole and the connection can carry another request.  Agent and
    HTTPConnectionPool parse the URL, copy the headers, wrap the connection
    and set and cancel a timer for every request: a sixth of a storage
    client's CPU per request.  The protocol and its Request live in the
    private ``twisted.web._newclient``, which ``twisted.web.client``
    re-exports.
    """
    return HTTP11ClientProtocol(on_quiescent)


def http11_request(method: bytes, target: bytes, headers: Headers, body: Any) -> HTTP11Request:
    """A request for `http11_client` protocols: ``target`` is the path (with any query), ``headers`` must
    hold the one Host header, ``body`` is an IBodyProducer or None; the connection stays open after it."""
    return HTTP11Request(method, target, headers, body, persistent=True)
