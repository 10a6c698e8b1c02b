"""The node's Tub: long strings arrive whole and exact, and foolscap's checks still apply."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from foolscap.api import Referenceable, RemoteInterface, StringConstraint
from foolscap.banana import Banana, int2b128
from foolscap.tokens import INT, OPEN, STRING
from hypothesis import given
from hypothesis import strategies as st
from zope.interface import implementer

from lafs import internals
from lafs.tub import (
    SEND_LIMIT,
    BulkTLSWriter,
    NodeTub,
    VocabularyTable,
    missing_string_bytes,
)
from tests.storage_grid import RemoteError, call, free_port

LIMIT = 3 * 1024 * 1024


class RIBulkSink(RemoteInterface):  # type: ignore[misc]
    __remote_name__ = "RIBulkSink.lafs.test"

    def take(data=StringConstraint(LIMIT)):  # type: ignore[no-untyped-def]
        return StringConstraint(64)  # type: ignore[no-any-return]


@implementer(RIBulkSink)
class BulkSink(Referenceable):  # type: ignore[misc]
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def remote_take(self, data: bytes) -> bytes:
        self.received.append(data)
        return str(len(data)).encode()


def header(length: int, token: bytes = STRING) -> bytes:
    pieces: list[bytes] = []
    int2b128(length, pieces.append)
    return b"".join(pieces) + token


@given(st.integers(0, 2**40), st.data())
def test_a_string_token_needs_exactly_the_rest_of_its_body(length: int, data: st.DataObject) -> None:
    buffered_body = data.draw(st.integers(0, min(length, 4096)))
    pending = header(length) + b"x" * buffered_body
    assert missing_string_bytes(pending[:65], len(pending)) == length - buffered_body


@given(st.integers(0, 2**40), st.sampled_from([INT, OPEN]))
def test_other_tokens_and_unfinished_headers_need_nothing_special(value: int, token: bytes) -> None:
    assert missing_string_bytes(header(value, token), 100) == 0
    unfinished = header(value)[:-1]
    assert missing_string_bytes(unfinished, len(unfinished)) == 0
    assert missing_string_bytes(b"", 0) == 0


class Unhashable(bytes):
    def __hash__(self) -> int:
        raise AssertionError("a long string was hashed")


def test_the_vocabulary_table_answers_for_long_strings_without_hashing_them() -> None:
    table = VocabularyTable()
    table[b"call"] = 0
    table[b"arguments"] = 1
    assert b"call" in table and b"arguments" in table and b"answer" not in table
    assert Unhashable(b"x" * 10) not in table
    table[b"y" * 10] = 2
    assert b"y" * 10 in table


@contextlib.asynccontextmanager
async def connected_sink() -> AsyncIterator[tuple[BulkSink, Any]]:
    """A BulkSink on one NodeTub and a reference to it from another, over loopback TLS."""
    server, client = NodeTub(), NodeTub()
    port = free_port()
    server.listenOn(f"tcp:{port}:interface=127.0.0.1")
    server.setLocation(f"tcp:127.0.0.1:{port}")
    sink = BulkSink()
    furl = server.registerReference(sink)
    server.startService()
    client.startService()
    try:
        yield sink, await client.getReference(furl)
    finally:
        await client.stopService()
        await server.stopService()


@pytest_twisted.ensureDeferred
async def test_long_strings_arrive_exact_and_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parses = 0
    original = Banana.handleData

    def counting(self: Banana, chunk: bytes) -> None:
        nonlocal parses
        parses += 1
        original(self, chunk)

    monkeypatch.setattr(Banana, "handleData", counting)
    async with connected_sink() as (sink, rref):
        broker = rref.tracker.broker
        assert broker.transport.SEND_LIMIT == SEND_LIMIT  # megabyte runs go out in few system calls
        assert isinstance(broker.transport.protocol.write.__self__, BulkTLSWriter)
        table = broker.outgoingVocabulary
        assert isinstance(table, VocabularyTable)
        assert b"arguments" in table  # foolscap negotiated its vocabulary into our table
        payloads = [os.urandom(size) for size in (LIMIT, 1, 0, 100_000, 2 * 1024 * 1024 + 17)]
        parses = 0
        for payload in payloads:
            assert await rref.callRemote("take", payload) == str(len(payload)).encode()
        assert sink.received == payloads
        # TLS delivers at most 16 KiB per piece: about 330 pieces were received.
        assert parses < 60


@pytest_twisted.ensureDeferred
async def test_an_oversized_string_is_still_refused_and_the_connection_survives() -> None:
    async with connected_sink() as (sink, rref):
        # Skip the caller's own schema check so that the receiving side must refuse it.
        oversized = os.urandom(LIMIT + 1)
        with pytest.raises(RemoteError, match="token too large"):
            await call(rref, "take", oversized, _useSchema=False)
        assert sink.received == []
        assert await rref.callRemote("take", b"after") == b"5"
        assert sink.received == [b"after"]


@pytest_twisted.ensureDeferred
async def test_a_calls_arguments_are_let_go_once_it_has_answered() -> None:
    # Without help they sit in a reference cycle until a full collection:
    # a storage server would hold on to every run of share data it was sent.
    async with connected_sink() as (sink, rref):
        gc.disable()
        try:
            for _ in range(3):
                await rref.callRemote("take", os.urandom(100_000))
            received, sink.received = sink.received, []
            holders = [type(holder).__name__ for data in received for holder in gc.get_referrers(data) if holder is not received]
        finally:
            gc.enable()
        assert holders == []


def sends_only(first_send: int, socket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``socket`` take ``first_send`` bytes of the next direct send, then nothing until Twisted writes."""
    original = socket.writeSomeData
    calls = 0

    def partial(data: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return original(data[:first_send])
        if calls == 2:
            return 0
        return original(data)

    monkeypatch.setattr(socket, "writeSomeData", partial)


@pytest_twisted.ensureDeferred
async def test_what_the_socket_does_not_take_at_once_follows_through_twisteds_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    async with connected_sink() as (sink, rref):
        payload = os.urandom(2 * 1024 * 1024 + 5)
        sends_only(1000, rref.tracker.broker.transport, monkeypatch)
        assert await rref.callRemote("take", payload) == str(len(payload)).encode()
        assert await rref.callRemote("take", b"next") == b"4"
        assert sink.received == [payload, b"next"]


class RefusingLibrary:
    """OpenSSL's functions as the writer calls them, except that SSL_write refuses after ``accepted`` calls."""

    def __init__(self, real: Any, accepted: int) -> None:
        self._real = real
        self._accepted = accepted

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def SSL_write(self, *args: Any) -> int:
        if self._accepted == 0:
            return -1
        self._accepted -= 1
        return int(self._real.SSL_write(*args))


@pytest_twisted.ensureDeferred
async def test_what_openssl_refuses_in_a_long_write_goes_through_twisteds_path(monkeypatch: pytest.MonkeyPatch) -> None:
    async with connected_sink() as (sink, rref):
        payload = os.urandom(3 * 1024 * 1024)
        monkeypatch.setattr(internals, "_lib", RefusingLibrary(internals._lib, accepted=2))
        assert await rref.callRemote("take", payload) == str(len(payload)).encode()
        assert sink.received == [payload]


def test_a_transport_without_tls_keeps_its_own_write() -> None:
    class Plain:
        def write(self, data: bytes) -> None: ...

    plain = Plain()
    assert BulkTLSWriter.install(plain) is False
    assert BulkTLSWriter.install(object()) is False
