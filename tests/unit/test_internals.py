"""The private internals lafs.internals relies on exist, and behave as it expects, in the installed libraries.

A failure here names the package, its version and the attribute: check what
the new release did there before raising the bound in pyproject.toml.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from typing import Any

import pytest
from foolscap.broker import Broker
from foolscap.call import ArgumentUnslicer, InboundDelivery
from foolscap.crypto import createCertificate
from foolscap.info import ConnectionInfo
from foolscap.reconnector import Reconnector
from OpenSSL import SSL
from twisted.internet import protocol, ssl
from twisted.internet.abstract import FileDescriptor
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.web import http

from lafs import internals


def missing(package: str, what: str) -> str:
    version = importlib.metadata.version(package)
    return f"{package} {version} no longer has {what}, which lafs.internals relies on (see its module docstring)"


def require(package: str, owner: object, attributes: tuple[str, ...], owner_name: str) -> None:
    for attribute in attributes:
        assert hasattr(owner, attribute), missing(package, f"{owner_name}.{attribute}")


def test_pyopenssl_private_binding() -> None:
    try:
        util = importlib.import_module("OpenSSL._util")
    except ImportError:
        pytest.fail(missing("pyOpenSSL", "the module OpenSSL._util"))
    require("pyOpenSSL", util, ("ffi", "lib"), "OpenSSL._util")
    require("pyOpenSSL", util.lib, internals.OPENSSL_FUNCTIONS, "OpenSSL._util.lib")
    assert internals._lib is util.lib, missing("pyOpenSSL", "OpenSSL._util.lib as lafs.internals imports it")
    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    require("pyOpenSSL", connection, internals.TLS_CONNECTION_ATTRIBUTES, "SSL.Connection")


class Received(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


def handshaken_tls_pair() -> tuple[BufferingTLSTransport, BufferingTLSTransport, StringTransport, Received]:
    """A client and a server TLS transport of Twisted's over in-memory transports, handshake done."""
    received = Received()
    server_factory = TLSMemoryBIOFactory(createCertificate().options(), False, protocol.Factory.forProtocol(lambda: received), Clock())
    client_factory = TLSMemoryBIOFactory(ssl.CertificateOptions(), True, protocol.Factory.forProtocol(protocol.Protocol), Clock())
    server, client = server_factory.buildProtocol(None), client_factory.buildProtocol(None)
    assert isinstance(client, BufferingTLSTransport), missing("twisted", "TLSMemoryBIOFactory.protocol = BufferingTLSTransport")
    server_wire, client_wire = StringTransport(), StringTransport()
    server.makeConnection(server_wire)
    client.makeConnection(client_wire)
    for _ in range(20):
        for wire, peer in ((client_wire, server), (server_wire, client)):
            data = wire.value()
            wire.clear()
            if data:
                peer.dataReceived(data)
    require("twisted", client, internals.TLS_TRANSPORT_ATTRIBUTES, "BufferingTLSTransport")
    assert client._handshakeDone and server._handshakeDone, missing("twisted", "a working BufferingTLSTransport._handshakeDone")
    return client, server, client_wire, received  # type: ignore[return-value]


def deliver(wire: StringTransport, peer: Any) -> None:
    data = wire.value()
    wire.clear()
    peer.dataReceived(data)


def test_twisted_tls_transport_and_direct_encryption() -> None:
    """What BulkTLSWriter reads of Twisted's TLS layer is there, and records made past it decrypt at the peer."""
    client, server, client_wire, received = handshaken_tls_pair()
    assert isinstance(client._tlsConnection, SSL.Connection), missing("twisted", "BufferingTLSTransport._tlsConnection (an SSL.Connection)")
    assert internals.tls_is_idle(client)
    client.write(b"small ")
    internals.flush_small_writes(client)
    deliver(client_wire, server)
    assert received.data == b"small ", missing("twisted", "BufferingTLSTransport._aggregator.flush()")

    handles = internals.TLSHandles(client._tlsConnection)
    data = bytes(range(256)) * 1024
    out = bytearray(len(data) + 64 * 1024)
    used, sent, overflow = internals.encrypt_records(handles, data, out, len(out), 64 * 1024)
    assert (sent, overflow) == (len(data), b"")
    server.dataReceived(bytes(out[:used]))
    assert received.data == b"small " + data

    internals.write_through_tls(client, b" tail")
    deliver(client_wire, server)
    assert received.data.endswith(b" tail"), missing("twisted", "BufferingTLSTransport._write()")

    client.loseConnection()
    assert not internals.tls_is_idle(client), missing("twisted", "BufferingTLSTransport._lostTLSConnection/disconnecting/_producer")


def test_twisted_socket_buffer() -> None:
    socket = FileDescriptor(reactor=MemoryReactor())
    require("twisted", socket, internals.SOCKET_ATTRIBUTES, "FileDescriptor")
    assert internals.socket_has_nothing_unsent(socket)
    socket.connected = 1
    socket.write(b"waiting")
    assert not internals.socket_has_nothing_unsent(socket), missing("twisted", "FileDescriptor._tempDataLen counting unsent data")


def test_foolscap_broker_hooks() -> None:
    parameters = list(inspect.signature(Broker._callFinished).parameters)
    assert parameters == ["self", "res", "delivery"], missing("foolscap", "Broker._callFinished(res, delivery)")
    parameters = list(inspect.signature(Broker.callFailed).parameters)
    assert parameters[:4] == ["self", "f", "reqID", "delivery"], missing("foolscap", "Broker.callFailed(f, reqID, delivery=None)")
    allargs = ArgumentUnslicer()  # its args and kwargs appear once it starts gathering
    delivery = InboundDelivery(None, 1, None, None, "take", None, allargs)
    assert delivery.allargs is allargs, missing("foolscap", "InboundDelivery.allargs")
    allargs.args, allargs.kwargs = [b"data"], {"key": b"data"}
    internals._release_arguments(delivery)
    assert (allargs.args, allargs.kwargs) == ([], {})


def test_foolscap_banana_state_the_bulk_broker_uses() -> None:
    """Not private by name, but undocumented: the receive buffer, skipBytes and the outgoing vocabulary."""
    broker = Broker(None)
    broker.initSend()
    broker.initReceive()
    require("foolscap", broker, ("buffer", "skipBytes", "outgoingVocabulary", "outgoingVocabTableWasReplaced"), "Broker")
    require("foolscap", broker.buffer, ("append", "appendleft", "popleft"), "Banana.buffer")


def test_foolscap_reconnector_winning_hint() -> None:
    reconnector = Reconnector("pb://tubid@tcp:example.net:1234/name", lambda rref: None, (), {})
    assert internals.winning_hint(reconnector) is None  # never connected: no connection info yet
    info = ConnectionInfo()
    info.winningHint = "tcp:example.net:1234"
    reconnector.getReconnectionInfo()._set_connection_info(info)
    assert internals.winning_hint(reconnector) == "tcp:example.net:1234", missing(
        "foolscap", "Reconnector.getReconnectionInfo().connectionInfo.winningHint"
    )


def test_twisted_web_request_and_channel() -> None:
    methods: list[bytes | None] = []

    class Probe(http.Request):
        def gotLength(self, length: int | None) -> None:
            methods.append(internals.channel_method(self.channel))
            super().gotLength(length)

    channel = http.HTTPChannel()
    channel.requestFactory = Probe  # type: ignore[assignment]
    channel.makeConnection(StringTransport())
    channel.dataReceived(b"PUT /uri HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n")
    assert methods == [b"PUT"], missing("twisted", "HTTPChannel._command, set before the body arrives")

    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())
    request = http.Request(channel)
    assert hasattr(request, "_disconnected"), missing("twisted", "Request._disconnected")
    assert not internals.request_disconnected(request)
    request.connectionLost(Failure(ConnectionError("gone")))
    assert internals.request_disconnected(request), missing("twisted", "Request._disconnected set when the client goes")


def test_twisted_tcp_transport_protocol_can_be_replaced() -> None:
    """A TCP connection's ``protocol`` is what it delivers to: replacing it hands the connection on."""
    from twisted.internet import tcp

    assert "protocol" in inspect.getsource(tcp.Connection._dataReceived), missing(
        "twisted", "tcp.Connection._dataReceived delivering to self.protocol"
    )
    assert "self.protocol" in inspect.getsource(tcp.Connection.connectionLost), missing(
        "twisted", "tcp.Connection.connectionLost telling self.protocol"
    )

    class Transport:
        protocol: object = None

    transport = Transport()
    first, second = protocol.Protocol(), protocol.Protocol()
    transport.protocol = first
    internals.set_transport_protocol(transport, second)
    assert transport.protocol is second
    with pytest.raises(TypeError, match="no protocol attribute"):
        internals.set_transport_protocol(object(), second)


def test_twisted_web_http11_client_and_request() -> None:
    from twisted.web import client

    calls: list[object] = []
    connection = internals.http11_client(calls.append)
    assert isinstance(connection, client.HTTP11ClientProtocol), missing("twisted", "twisted.web._newclient.HTTP11ClientProtocol")
    assert connection.state == "QUIESCENT", missing("twisted", "HTTP11ClientProtocol.state")
    transport = StringTransport()
    connection.makeConnection(transport)
    headers = client.Headers({b"host": [b"example:1"]})
    answered = connection.request(internals.http11_request(b"GET", b"/storage/v1/version", headers, None))
    assert transport.value().startswith(b"GET /storage/v1/version HTTP/1.1\r\n")
    assert b"Connection: close" not in transport.value(), "the request asks for a persistent connection"
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    response = answered.result
    body: list[bytes] = []

    class Collect(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            body.append(data)

    response.deliverBody(Collect())
    assert body == [b"ok"] and calls == [connection], missing("twisted", "HTTP11ClientProtocol's quiescent callback")
