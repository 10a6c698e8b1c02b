"""The storage-client interface over Tahoe 1.20's HTTP storage protocol ("Great Black Swamp").

A server announces ``anonymous-storage-NURLs``; we reach it over HTTPS,
trusting exactly the certificate whose SPKI hash the NURL names, and send
the NURL's swissnum with every request.  Connections are kept open and
reused (one pool per server).  The lease seed still comes from the tubid of
the announced fURL, as Tahoe's does (facts brief §12).

HTTP has no standing connection to lose, so "connected" means the last
request got through: a request that cannot reach the server reports the
client lost, and the connection polls ``/storage/v1/version`` (backing off)
until the server answers again.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import attrs
import cbor2
from OpenSSL import SSL
from twisted.internet import defer, protocol
from twisted.internet import error as internet_error
from twisted.internet.abstract import FileDescriptor
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from lafs import internals
from lafs.core import base32
from lafs.core.errors import FormatError
from lafs.core.nurl import NURL
from lafs.https import PinnedSPKIPolicy
from lafs.storage_client.foolscap import tubid_from_furl
from lafs.storage_client.interface import (
    Allocation,
    BucketReaderClient,
    BucketWriterClient,
    ConnectedCallback,
    LostCallback,
    ReadTestWriteResult,
    ReadVector,
    ServerError,
    ServerRefusedError,
    ServerUnreachableError,
    ServerVersion,
    TestAndWriteVectors,
    WriteEnablerMismatchError,
)
from lafs.tub import SEND_LIMIT, BulkTLSWriter

log = Logger()

CBOR = b"application/cbor"
STORAGE_INDEX_SIZE = 16
MAX_REASON_LENGTH = 32765
MAX_REQUESTS = 32
"""Requests in flight to one server at once, so connections open to it (HTTP/1.1 carries one request at
a time); more wait their turn.  A server answers one request at a time, so beyond a few in flight the
rest only queue there, and each new connection costs both ends ~0.9 ms of CPU for its TLS handshake:
a deep-check with no limit opened ~100 connections to every server, and the handshakes were a fifth
of its time."""
BATCH_PATH = b"/lafs/storage/v1/"
"""Where a lafs server serves the batch extension: one request for many storage indexes."""
MAX_BATCH = 256
"""Items in one batched request (the server's limit)."""
BATCHES_OUT = 4
"""Batched requests of one kind out to one server at once; calls made meanwhile wait and go in the next."""
BATCHED_READ_LIMIT = 16 * 1024
"""Bytes per share a read may ask for and still be batched (the server takes up to 64 KiB): a small file's
blocks and hash trees, a directory's share, but not a big file's blocks, which stream better alone."""
CONNECT_TIMEOUT = 30
IDLE_CONNECTION_TIMEOUT = 240.0
"""Seconds an unused connection is kept open (as long as Twisted's HTTPConnectionPool keeps one)."""
REQUEST_TIMEOUT = 60.0
"""Seconds a request may wait for its answer's headers, and then for each further piece of its body,
before the server is taken as unreachable: a server that hangs (stopped, or cut off without a reset)
must fail the calls to it rather than hold an upload or download forever."""
SLOWEST_SEND = 8 * 1024
"""Bytes per second a request body is allowed to take on top of REQUEST_TIMEOUT: the answer comes only
once the body is sent, and an upload's runs of blocks (megabytes) share a home uplink ten ways."""
ZERO_FILL_CHUNK = 1024 * 1024
RETRY_INITIAL, RETRY_FACTOR, RETRY_MAX = 1.0, 2.0, 60.0
"""Seconds between attempts to reach a server that is down: like foolscap's Reconnector."""
TRANSPORT_FAILURES = (
    internet_error.ConnectError,
    internet_error.ConnectingCancelledError,
    internet_error.ConnectionLost,
    internet_error.ConnectionDone,
    internet_error.TimeoutError,
    ResponseFailed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
    RequestNotSent,
    SSL.Error,
    OSError,
    defer.CancelledError,
    defer.TimeoutError,
)
"""What a request that never got its answer fails with: the server is taken as unreachable."""
STATUS_CONNECTED = "connected"
"""What Tahoe 1.20's ``/?t=json`` says of a server it reaches over HTTP."""


@implementer(IBodyProducer)
class _BytesBody:
    """A request body already in memory, handed to the connection in one write."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    started = False

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self.started = True
        consumer.write(self._data)
        self._data = b""
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _BodyCollector(protocol.Protocol):
    """Gathers a response body (twisted's readBody warns about TLS transports and adds nothing we need),
    dropping the connection when none of it arrives for ``timeout`` seconds."""

    def __init__(self, finished: defer.Deferred[bytes], reactor: Any, timeout: float) -> None:
        self._finished = finished
        self._parts: list[bytes] = []
        self._timeout = timeout
        self._timed_out = False
        self._idle = reactor.callLater(timeout, self._give_up)

    def dataReceived(self, data: bytes) -> None:
        self._parts.append(data)
        if self._idle.active():
            self._idle.reset(self._timeout)

    def _give_up(self) -> None:
        self._timed_out = True
        transport: Any = self.transport  # the response's TransportProxyProducer
        transport.loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if self._idle.active():
            self._idle.cancel()
        if self._timed_out:
            self._finished.errback(defer.TimeoutError(f"the answer stopped for {self._timeout:g} s"))
        elif reason.check(ResponseDone):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)
        self._parts = []


def _read_body(response: Any, reactor: Any, timeout: float) -> defer.Deferred[bytes]:
    finished: defer.Deferred[bytes] = defer.Deferred()
    response.deliverBody(_BodyCollector(finished, reactor, timeout))
    return finished


@attrs.frozen
class _Answer:
    status: int
    body: bytes
    headers: Headers

    def text(self) -> str:
        return self.body[:2000].decode("utf-8", "replace").strip()

    def cbor(self) -> Any:
        try:
            return cbor2.loads(self.body)
        except (cbor2.CBORDecodeError, ValueError, TypeError) as e:
            raise ValueError(f"the server's answer is not valid CBOR: {e}") from None


class _BulkTLSEndpoint:
    def __init__(self, tls: Any) -> None:
        self._tls = tls

    def connect(self, factory: protocol.Factory) -> defer.Deferred[Any]:
        def bulk_writes(connected: Any) -> Any:
            tls = connected.transport  # the HTTP protocol's transport is the TLS layer, over the TCP connection
            socket = tls.transport
            if isinstance(socket, FileDescriptor):
                socket.SEND_LIMIT = SEND_LIMIT
            BulkTLSWriter.install(socket, tls)
            return connected

        d: defer.Deferred[Any] = self._tls.connect(factory)
        return d.addCallback(bulk_writes)


class _Connections:
    """Open connections to one server, each carrying one request at a time (HTTP/1.1 does not pipeline).

    The connection used last is handed out first, so a few busy connections
    stay warm rather than dozens cycling cold (that cost both ends a tenth
    more CPU); at most ``limit`` idle ones are kept, each closed after
    ``idle_timeout`` seconds unused.  One timer sweeps them all, rather than
    one per connection set and cancelled around every request.
    """

    def __init__(self, reactor: Any, endpoint: _BulkTLSEndpoint, limit: int, idle_timeout: float) -> None:
        self._reactor = reactor
        self._endpoint = endpoint
        self._limit = limit
        self._idle_timeout = idle_timeout
        self._idle: list[tuple[Any, float]] = []
        """(protocol, when it went idle), oldest first."""
        self._sweep: Any = None
        self._factory = _ClientFactory(self._put)
        self._in_flight = 0
        self._waiting: list[defer.Deferred[None]] = []

    async def turn(self) -> None:
        """Wait until fewer than ``limit`` requests are in flight, and count one more (`done` ends it)."""
        while self._in_flight >= self._limit:
            waiter: defer.Deferred[None] = defer.Deferred(self._waiting.remove)
            self._waiting.append(waiter)
            await waiter
        self._in_flight += 1

    def done(self) -> None:
        self._in_flight -= 1
        if self._waiting:
            self._waiting.pop(0).callback(None)

    def fail_waiting(self, error: Exception) -> None:
        """The server is unreachable: the requests waiting their turn fail now rather than each in turn."""
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.errback(error)

    async def get(self) -> tuple[Any, bool]:
        """A connection ready for a request, and whether it has carried one before (it may have been
        closed by the server meanwhile: a request on it can fail before reaching the server)."""
        while self._idle:
            connection, _ = self._idle.pop()
            if connection.state == "QUIESCENT":
                return connection, True
        return await self.new(), False

    async def new(self) -> Any:
        return await self._endpoint.connect(self._factory)

    def _put(self, connection: Any) -> None:
        if len(self._idle) >= self._limit:
            self._idle.pop(0)[0].transport.loseConnection()
        self._idle.append((connection, self._reactor.seconds()))
        if self._sweep is None:
            self._sweep = self._reactor.callLater(self._idle_timeout, self._close_unused)

    def _close_unused(self) -> None:
        self._sweep = None
        now = self._reactor.seconds()
        while self._idle and now - self._idle[0][1] >= self._idle_timeout:
            self._idle.pop(0)[0].transport.loseConnection()
        if self._idle:
            self._sweep = self._reactor.callLater(self._idle[0][1] + self._idle_timeout - now, self._close_unused)

    def close(self) -> defer.Deferred[Any]:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self._idle = self._idle, []
        return defer.gatherResults([connection.abort() for connection, _ in idle]).addCallback(lambda _: None)


class _Batcher:
    """Calls of one kind to one server, sent together.

    A call goes out at the next turn of the reactor, with every other call
    made in that turn, as one batched request.  While ``BATCHES_OUT`` of them
    are out, calls wait, and go together when one comes back: under load
    the batches grow by themselves, and a lone call waits for nothing.
    ``send`` answers a list of items with a list of results, an exception
    in the place of each item that failed.
    """

    def __init__(self, reactor: Any, send: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        self._reactor = reactor
        self._send = send
        self._queue: list[tuple[Any, defer.Deferred[Any]]] = []
        self._out = 0
        self._flush_call: Any = None

    async def call(self, item: Any) -> Any:
        waiter: defer.Deferred[Any] = defer.Deferred()
        self._queue.append((item, waiter))
        if self._flush_call is None and self._out < BATCHES_OUT:
            self._flush_call = self._reactor.callLater(0, self._flush)
        return await waiter

    def _flush(self) -> None:
        self._flush_call = None
        while self._queue and self._out < BATCHES_OUT:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._out += 1
            defer.Deferred.fromCoroutine(self._send_batch(batch))

    async def _send_batch(self, batch: list[tuple[Any, defer.Deferred[Any]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as e:
            results = [e] * len(batch)
        finally:
            self._out -= 1
        for (_, waiter), result in zip(batch, results, strict=True):
            if waiter.called:
                continue  # its caller gave up waiting
            if isinstance(result, Exception):
                waiter.errback(result)
            else:
                waiter.callback(result)
        if self._queue and self._flush_call is None:
            self._flush()


class _Unreachable(Exception):
    """Why a request waiting its turn was failed: the server was found unreachable meanwhile."""


class _ClientFactory(protocol.Factory):
    noisy = False  # a storage client opens many connections: no "Starting factory" for each

    def __init__(self, on_quiescent: Callable[[Any], None]) -> None:
        self._on_quiescent = on_quiescent

    def buildProtocol(self, addr: Any) -> Any:
        return internals.http11_client(self._on_quiescent)


def _may_retry(method: bytes, producer: _BytesBody | None, error: Exception) -> bool:
    """Whether a request that failed on a reused connection may go again on a new one: when it was never
    sent, or (as Twisted's pool does) when it is a GET without a body and was not cancelled."""
    if isinstance(error, RequestNotSent):
        return producer is None or not producer.started
    reasons = getattr(error, "reasons", [])
    cancelled = any(isinstance(r, Failure) and r.check(defer.CancelledError) for r in reasons)
    return method in (b"GET", b"HEAD") and producer is None and not cancelled


class _HTTP:
    """Requests to one server: pinned TLS, the swissnum, persistent connections."""

    def __init__(
        self, reactor: Any, nurl: NURL, server_id: str, on_unreachable: Callable[[], None], timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self._reactor = reactor
        self._timeout = timeout
        tcp: Any = HostnameEndpoint(reactor, nurl.host, nurl.port, timeout=CONNECT_TIMEOUT)
        creator: Any = PinnedSPKIPolicy(nurl.spki_hash).creatorForNetloc(nurl.host.encode("idna"), nurl.port)
        self._connections = _Connections(
            reactor, _BulkTLSEndpoint(wrapClientTLS(creator, tcp)), MAX_REQUESTS, IDLE_CONNECTION_TIMEOUT
        )
        host = f"[{nurl.host}]" if ":" in nurl.host else nurl.host
        self._host = (host if nurl.port == 443 else f"{host}:{nurl.port}").encode("idna")
        self._base = b"/storage/v1/"
        self._authorization = b"Tahoe-LAFS " + base64.b64encode(nurl.swissnum.encode("ascii"))
        self.server_id = server_id
        self._on_unreachable = on_unreachable

    async def _send(self, method: bytes, target: bytes, headers: Headers, producer: _BytesBody | None) -> Any:
        connection, reused = await self._connections.get()
        try:
            return await connection.request(internals.http11_request(method, target, headers, producer))
        except (RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived) as e:
            if not (reused and _may_retry(method, producer, e)):
                raise
        # The server had closed the idle connection: once more, on a new one.
        connection = await self._connections.new()
        return await connection.request(internals.http11_request(method, target, headers, producer))

    async def request(
        self,
        method: bytes,
        path: str,
        *,
        secrets: Sequence[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        content_type: bytes | None = None,
        headers: Mapping[bytes, bytes] | None = None,
        base: bytes | None = None,
    ) -> _Answer:
        sent = Headers({b"host": [self._host], b"authorization": [self._authorization]})
        for kind, value in secrets:
            sent.addRawHeader(b"x-tahoe-authorization", kind + b" " + base64.b64encode(value))
        if content_type is not None:
            sent.addRawHeader(b"content-type", content_type)
        for name, value in (headers or {}).items():
            sent.addRawHeader(name, value)
        producer = _BytesBody(body) if body is not None else None
        del body
        what = f"{method.decode()} {path.split('/')[0]}"
        try:
            await self._connections.turn()
        except _Unreachable as e:
            raise ServerUnreachableError(self.server_id, f"{what}: {e}") from None
        timed_out = False
        try:
            target = (base or self._base) + path.encode("ascii")
            pending = defer.Deferred.fromCoroutine(self._send(method, target, sent, producer))
            # The headers must come within the timeout, and time to send the body (the body collector times
            # each piece of the answer's body).
            too_late = self._reactor.callLater(self._timeout + (producer.length if producer else 0) / SLOWEST_SEND, pending.cancel)
            try:
                response = await pending
            finally:
                timed_out = not too_late.active()
                if not timed_out:
                    too_late.cancel()
            data = await _read_body(response, self._reactor, self._timeout)
        except TRANSPORT_FAILURES as e:
            reason = f"no answer within {self._timeout:g} s" if timed_out or isinstance(e, defer.TimeoutError) else _describe_failure(e)
            self._connections.fail_waiting(_Unreachable(f"an earlier request got {reason}"))
            self._on_unreachable()
            raise ServerUnreachableError(self.server_id, f"{what}: {reason}") from None
        finally:
            self._connections.done()
        return _Answer(response.code, data, response.headers)

    async def cbor_request(
        self, method: bytes, path: str, value: Any, *, secrets: Sequence[tuple[bytes, bytes]] = (), base: bytes | None = None
    ) -> _Answer:
        return await self.request(
            method, path, secrets=secrets, body=cbor2.dumps(value), content_type=CBOR, headers={b"accept": CBOR}, base=base
        )

    def refused(self, answer: _Answer, what: str, remote_type: str = "") -> ServerRefusedError:
        text = answer.text()
        return ServerRefusedError(
            self.server_id, f"{what}: HTTP {answer.status}" + (f": {text}" if text else ""), remote_type or f"HTTP{answer.status}"
        )

    def decode(self, answer: _Answer, what: str) -> Any:
        try:
            return answer.cbor()
        except ValueError as e:
            raise ServerRefusedError(self.server_id, f"{what}: {e}", "BadAnswer") from None

    def close(self) -> defer.Deferred[Any]:
        return self._connections.close()


def _describe_failure(error: Exception) -> str:
    """A transport failure's name and reason (Twisted wraps the real cause in lists of Failures)."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        inner = reasons[0]
        value = getattr(inner, "value", inner)
        return f"{type(error).__name__}: {type(value).__name__}: {value}"
    return f"{type(error).__name__}: {error}"


def _add_range(ranges: list[tuple[int, int]], begin: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` (disjoint, sorted, end exclusive) with [begin, end) merged in."""
    merged: list[tuple[int, int]] = []
    for b, e in sorted([*ranges, (begin, end)]):
        if merged and b <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((b, e))
    return merged


def _check_storage_index(server_id: str, storage_index: bytes) -> str:
    if not isinstance(storage_index, bytes) or len(storage_index) != STORAGE_INDEX_SIZE:
        raise ServerRefusedError(server_id, f"a storage index must be {STORAGE_INDEX_SIZE} bytes", "BadStorageIndexError")
    return base32.b2a(storage_index)


def _data(value: Any) -> bytes:
    if not isinstance(value, bytes):
        raise ValueError("expected a byte string")
    return value


def _mutable_reads(value: Any) -> dict[int, list[bytes]]:
    if not isinstance(value, dict):
        raise ValueError("expected a map of share numbers")
    reads = {}
    for shnum, data in value.items():
        if not isinstance(shnum, int) or not isinstance(data, list) or not all(isinstance(d, bytes) for d in data):
            raise ValueError("expected share numbers and lists of byte strings")
        reads[shnum] = data
    return reads


def _share_set(value: Any) -> frozenset[int]:
    if not isinstance(value, (set, frozenset, list)) or not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        raise ValueError("expected a set of share numbers")
    return frozenset(value)


class _HTTPBucketWriter:
    """One immutable share being uploaded: each write is a PATCH; the server closes the share when it is whole."""

    def __init__(self, http: _HTTP, si: str, shnum: int, upload_secret: bytes, allocated_size: int) -> None:
        self._http = http
        self._path = f"immutable/{si}/{shnum}"
        self._secrets = [(b"upload-secret", upload_secret)]
        self._allocated_size = allocated_size
        self._complete = False
        self._pending: set[defer.Deferred[None]] = set()
        self._written: list[tuple[int, int]] = []
        """Disjoint sorted [begin, end) ranges the server has taken."""

    async def write(self, offset: int, data: bytes) -> None:
        if not data:
            return  # a Content-Range cannot say "no bytes"; writing nothing changes nothing
        if offset < 0:
            raise ServerRefusedError(self._http.server_id, f"cannot write at offset {offset}", "DataTooLargeError")
        written = defer.Deferred.fromCoroutine(self._patch(offset, data))
        del data
        self._pending.add(written)
        try:
            await written
        finally:
            self._pending.discard(written)

    async def _patch(self, offset: int, data: bytes) -> None:
        end = offset + len(data) - 1
        headers = {b"content-range": b"bytes %d-%d/%d" % (offset, end, self._allocated_size),
                   b"content-type": b"application/octet-stream"}
        sending = self._http.request(b"PATCH", self._path, secrets=self._secrets, body=data, headers=headers)
        del data  # the request lets go of it once it is sent, long before the answer comes
        answer = await sending
        if answer.status == 201:
            self._complete = True
        elif answer.status != 200:
            kind = {409: "ConflictingWriteError", 416: "DataTooLargeError", 404: "BucketClosedError"}.get(answer.status, "")
            raise self._http.refused(answer, f"writing bytes {offset}-{end} of {self._path}", kind)
        self._written = _add_range(self._written, offset, end + 1)

    async def close(self) -> None:
        """Finish the share: the server closes it once every byte is there, so any gap left is written as zeros.

        Over Foolscap a gap (Tahoe's unused plaintext hash tree region) reads
        back as zeros from the share file; writing them gives the same share.
        """
        if self._pending:
            await defer.DeferredList(list(self._pending), consumeErrors=True)
        position = 0
        gaps = []
        for begin, end in [*self._written, (self._allocated_size, self._allocated_size)]:
            if begin > position:
                gaps.append((position, begin))
            position = max(position, end)
        for begin, end in gaps:
            if self._complete:
                break
            for start in range(begin, end, ZERO_FILL_CHUNK):
                await self._patch(start, bytes(min(ZERO_FILL_CHUNK, end - start)))
        if not self._complete:
            raise ServerRefusedError(
                self._http.server_id,
                f"cannot close {self._path}: the server has not received all {self._allocated_size} bytes",
                "IncompleteShareError",
            )

    async def abort(self) -> None:
        answer = await self._http.request(b"PUT", self._path + "/abort", secrets=self._secrets)
        # 404/405: no upload in progress (already aborted, or finished): nothing is left to abort.
        if answer.status not in (200, 404, 405):
            raise self._http.refused(answer, f"aborting {self._path}")


class _HTTPBucketReader:
    """One finished immutable share: each read is a ranged GET, or a part of a batch (`HTTPStorageClient`)."""

    def __init__(self, http: _HTTP, client: HTTPStorageClient, si: str, shnum: int, storage_index: bytes) -> None:
        self._http = http
        self._client = client
        self._si = si
        self._shnum = shnum
        self._storage_index = storage_index

    async def read(self, offset: int, length: int) -> bytes:
        return await self._client.read_immutable(self._storage_index, self._shnum, offset, length)

    async def advise_corrupt_share(self, reason: bytes) -> None:
        await _advise_corrupt(self._http, f"immutable/{self._si}/{self._shnum}", reason)


async def _ranged_read(http: _HTTP, path: str, offset: int, length: int) -> bytes:
    if offset < 0 or length < 0:
        raise ServerRefusedError(http.server_id, f"cannot read {length} bytes at offset {offset}", "BadReadError")
    if length == 0:
        return b""
    answer = await http.request(b"GET", path, headers={b"range": b"bytes=%d-%d" % (offset, offset + length - 1)})
    if answer.status == 204:
        return b""
    if answer.status not in (200, 206):
        raise http.refused(answer, f"reading {path}", "NoSuchShareError" if answer.status == 404 else "")
    return answer.body[:length]


async def _advise_corrupt(http: _HTTP, path: str, reason: bytes) -> None:
    text = reason.decode("utf-8", "replace")[:MAX_REASON_LENGTH] or "(no reason given)"
    answer = await http.cbor_request(b"POST", path + "/corrupt", {"reason": text})
    # 404: the server lacks the share, and (as over Foolscap) the report is simply dropped.
    if answer.status not in (200, 404):
        raise http.refused(answer, f"reporting {path} corrupt")


class HTTPStorageClient:
    """One server reached over HTTPS, as a `StorageServerClient`."""

    def __init__(self, http: _HTTP, server_id: str, version: ServerVersion, lease_seed: bytes, reactor: Any) -> None:
        self._http = http
        self.server_id = server_id
        self.version = version
        self.lease_seed = lease_seed
        self._batching: bool | None = None
        """Whether the server serves the batch extension: None until it is first asked."""
        self._share_queries = _Batcher(reactor, self._query_shares)
        self._leases = _Batcher(reactor, self._add_leases)
        self._mutable_reads = _Batcher(reactor, self._read_mutables)
        self._immutable_reads = _Batcher(reactor, self._read_immutables)

    # --- the batch extension: calls made at the same time go in one request (a lafs server's) ---------

    async def _batched(
        self,
        path: str,
        items: list[Any],
        body: list[Any],
        convert: Callable[[Any], Any],
        one_by_one: Callable[[Any], Coroutine[Any, Any, Any]],
        what: str,
    ) -> list[Any]:
        """Each item's result (or the `ServerError` it failed with), from one batched request, or from one
        request per item where the server does not serve the extension (a Tahoe server: 404)."""
        if self._batching is not False:
            answer = await self._http.cbor_request(b"POST", path, body, base=BATCH_PATH)
            if answer.status in (404, 405):
                self._batching = False
                log.info("storage server {s} has no batch requests: one request per call", s=self.server_id)
            elif answer.status != 200:
                raise self._http.refused(answer, what)
            else:
                self._batching = True
                values = self._http.decode(answer, what)
                if not isinstance(values, list) or len(values) != len(items):
                    raise ServerRefusedError(self.server_id, f"{what}: expected {len(items)} answers", "BadAnswer")
                return [self._batch_item(value, convert, what) for value in values]
        results: list[tuple[bool, Any]] = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(one_by_one(item)) for item in items], consumeErrors=True
        )
        return [value if ok else value.value for ok, value in results]

    def _batch_item(self, value: Any, convert: Callable[[Any], Any], what: str) -> Any:
        if isinstance(value, dict) and "error" in value:
            kind = value.get("kind")
            return ServerRefusedError(
                self.server_id, f"{what}: {str(value['error'])[:2000]}", kind if isinstance(kind, str) else "StorageError"
            )
        try:
            return convert(value)
        except (TypeError, ValueError, AttributeError) as e:
            return ServerRefusedError(self.server_id, f"{what}: unexpected answer ({e})", "BadAnswer")

    async def _query_shares(self, storage_indexes: list[bytes]) -> list[Any]:
        return await self._batched(
            "immutable-shares", storage_indexes, storage_indexes, _share_set, self._immutable_shares, "listing immutable shares"
        )

    async def _add_leases(self, leases: list[tuple[bytes, bytes, bytes]]) -> list[Any]:
        return await self._batched(
            "leases", leases, [list(lease) for lease in leases], bool, lambda lease: self._add_lease(*lease), "adding a lease"
        )

    async def read_immutable(self, storage_index: bytes, shnum: int, offset: int, length: int) -> bytes:
        if self._batching is False or not (offset >= 0 and 0 < length <= BATCHED_READ_LIMIT):
            return await self._read_one_immutable(storage_index, shnum, offset, length)
        data: bytes = await self._immutable_reads.call((storage_index, shnum, offset, length))
        return data

    async def _read_one_immutable(self, storage_index: bytes, shnum: int, offset: int, length: int) -> bytes:
        return await _ranged_read(self._http, f"immutable/{base32.b2a(storage_index)}/{shnum}", offset, length)

    async def _read_immutables(self, reads: list[tuple[bytes, int, int, int]]) -> list[Any]:
        return await self._batched(
            "immutable-reads", reads, [list(read) for read in reads], _data,
            lambda read: self._read_one_immutable(*read),
            "reading immutable shares",
        )

    async def _read_mutables(self, reads: list[tuple[bytes, Sequence[int], ReadVector]]) -> list[Any]:
        body = [[si, list(shares), [list(read) for read in readv]] for si, shares, readv in reads]
        return await self._batched(
            "mutable-reads", reads, body, _mutable_reads, lambda read: self._slot_readv(*read), "reading mutable shares"
        )

    async def allocate_buckets(
        self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes, sharenums: Iterable[int], allocated_size: int
    ) -> Allocation:
        si = _check_storage_index(self.server_id, storage_index)
        upload_secret = os.urandom(32)  # one per upload to one server, as the spec asks
        secrets = [(b"lease-renew-secret", renew_secret), (b"lease-cancel-secret", cancel_secret), (b"upload-secret", upload_secret)]
        answer = await self._http.cbor_request(
            b"POST", f"immutable/{si}", {"share-numbers": set(sharenums), "allocated-size": allocated_size}, secrets=secrets
        )
        if answer.status != 200:
            raise self._http.refused(answer, "allocating shares")
        value = self._http.decode(answer, "allocating shares")
        try:
            already, allocated = _share_set(value["already-have"]), _share_set(value["allocated"])
        except (TypeError, KeyError, ValueError) as e:
            raise ServerRefusedError(self.server_id, f"allocating shares: unexpected answer ({e})", "BadAnswer") from None
        writers: dict[int, BucketWriterClient] = {
            shnum: _HTTPBucketWriter(self._http, si, shnum, upload_secret, allocated_size) for shnum in allocated
        }
        return Allocation(already, writers)

    async def get_buckets(self, storage_index: bytes) -> Mapping[int, BucketReaderClient]:
        si = _check_storage_index(self.server_id, storage_index)
        if self._batching is False:
            shares = await self._immutable_shares(storage_index)
        else:
            shares = await self._share_queries.call(storage_index)
        return {shnum: _HTTPBucketReader(self._http, self, si, shnum, storage_index) for shnum in sorted(shares)}

    async def _immutable_shares(self, storage_index: bytes) -> frozenset[int]:
        si = base32.b2a(storage_index)
        answer = await self._http.request(b"GET", f"immutable/{si}/shares", headers={b"accept": CBOR})
        if answer.status != 200:
            raise self._http.refused(answer, "listing immutable shares")
        try:
            return _share_set(self._http.decode(answer, "listing immutable shares"))
        except ValueError as e:
            raise ServerRefusedError(self.server_id, f"listing immutable shares: {e}", "BadAnswer") from None

    async def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        _check_storage_index(self.server_id, storage_index)
        if self._batching is False:
            await self._add_lease(storage_index, renew_secret, cancel_secret)
        else:
            await self._leases.call((storage_index, renew_secret, cancel_secret))

    async def _add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> bool:
        secrets = [(b"lease-renew-secret", renew_secret), (b"lease-cancel-secret", cancel_secret)]
        answer = await self._http.request(b"PUT", f"lease/{base32.b2a(storage_index)}", secrets=secrets)
        # 404: no shares to lease, which Foolscap's add_lease also passes over in silence.
        if answer.status not in (200, 204, 404):
            raise self._http.refused(answer, "adding a lease")
        return answer.status != 404

    async def _mutable_shares(self, si: str) -> frozenset[int]:
        answer = await self._http.request(b"GET", f"mutable/{si}/shares", headers={b"accept": CBOR})
        if answer.status != 200:
            raise self._http.refused(answer, "listing mutable shares")
        try:
            return _share_set(self._http.decode(answer, "listing mutable shares"))
        except ValueError as e:
            raise ServerRefusedError(self.server_id, f"listing mutable shares: {e}", "BadAnswer") from None

    async def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> Mapping[int, Sequence[bytes]]:
        _check_storage_index(self.server_id, storage_index)
        batchable = (
            all(offset >= 0 and length >= 0 for offset, length in readv)
            and all(n >= 0 for n in shares)
            and sum(n for _, n in readv) <= BATCHED_READ_LIMIT
        )
        if self._batching is False or not batchable:
            return await self._slot_readv(storage_index, shares, readv)
        result: Mapping[int, Sequence[bytes]] = await self._mutable_reads.call((storage_index, shares, readv))
        return result

    async def _slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> Mapping[int, Sequence[bytes]]:
        si = base32.b2a(storage_index)
        wanted = sorted(set(shares)) if shares else sorted(await self._mutable_shares(si))

        async def read_share(shnum: int) -> list[bytes] | None:
            path = f"mutable/{si}/{shnum}"
            try:
                # the first read also says whether the share exists; the rest go out together
                first = [await _ranged_read(self._http, path, *readv[0])] if readv else []
                if not readv:
                    await _ranged_read(self._http, path, 0, 1)
            except ServerRefusedError as e:
                if e.remote_type == "NoSuchShareError":
                    return None
                raise
            rest = [defer.Deferred.fromCoroutine(_ranged_read(self._http, path, o, n)) for o, n in readv[1:]]
            return first + list(await defer.gatherResults(rest, consumeErrors=True)) if rest else first

        reads = [defer.Deferred.fromCoroutine(read_share(shnum)) for shnum in wanted]
        try:
            results = await defer.gatherResults(reads, consumeErrors=True)
        except defer.FirstError as e:
            raise e.subFailure.value from None
        return {shnum: data for shnum, data in zip(wanted, results, strict=True) if data is not None}

    async def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: TestAndWriteVectors,
        read_vector: ReadVector,
    ) -> ReadTestWriteResult:
        si = _check_storage_index(self.server_id, storage_index)
        write_enabler, renew_secret, cancel_secret = secrets
        vectors = {}
        for shnum, (testv, datav, new_length) in tw_vectors.items():
            tests = []
            for offset, length, operator, specimen in testv:
                if operator != b"eq":
                    raise ServerRefusedError(
                        self.server_id, f"test vector operator {operator!r} is not supported (only b'eq')", "BadTestVectorError"
                    )
                tests.append({"offset": offset, "size": length, "specimen": specimen})
            writes = [{"offset": offset, "data": data} for offset, data in datav]
            vectors[shnum] = {"test": tests, "write": writes, "new-length": new_length}
        body = {"test-write-vectors": vectors, "read-vector": [{"offset": o, "size": n} for o, n in read_vector]}
        sent_secrets = [(b"write-enabler", write_enabler), (b"lease-renew-secret", renew_secret), (b"lease-cancel-secret", cancel_secret)]
        answer = await self._http.cbor_request(b"POST", f"mutable/{si}/read-test-write", body, secrets=sent_secrets)
        if answer.status == 401:
            text = answer.text() or "the write enabler does not match the share's"
            raise WriteEnablerMismatchError(self.server_id, f"BadWriteEnablerError: {text}", "BadWriteEnablerError")
        if answer.status != 200:
            raise self._http.refused(answer, "read-test-write")
        value = self._http.decode(answer, "read-test-write")
        try:
            reads = {int(n): [bytes(d) for d in data] for n, data in value["data"].items()}
            return ReadTestWriteResult(bool(value["success"]), reads)
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise ServerRefusedError(self.server_id, f"read-test-write: unexpected answer ({e})", "BadAnswer") from None

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None:
        si = _check_storage_index(self.server_id, storage_index)
        kind = "mutable" if share_type == b"mutable" else "immutable"
        await _advise_corrupt(self._http, f"{kind}/{si}/{shnum}", reason)


async def fetch_version(http: _HTTP) -> ServerVersion:
    answer = await http.request(b"GET", "version", headers={b"accept": CBOR})
    if answer.status != 200:
        raise http.refused(answer, "asking for the version")
    value = http.decode(answer, "asking for the version")
    if not isinstance(value, dict):
        raise ServerRefusedError(http.server_id, "the version answer is not a map", "BadAnswer")
    return ServerVersion.from_dict(value)


def first_nurl(announcement: Mapping[str, Any]) -> NURL | None:
    """The first usable version-1 NURL of a storage announcement, if any."""
    nurls = announcement.get("anonymous-storage-NURLs")
    if not isinstance(nurls, list):
        return None
    for text in nurls:
        if isinstance(text, str):
            try:
                return NURL.from_string(text)
            except FormatError:
                continue
    return None


class _HTTPConnection:
    """Keeps one server reachable: a client while requests get through, polling while they do not."""

    def __init__(
        self,
        reactor: Any,
        server_id: str,
        nurl: NURL,
        lease_seed: bytes,
        connected: ConnectedCallback,
        lost: LostCallback,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._reactor = reactor
        self._server_id = server_id
        self._nurl = nurl
        self._lease_seed = lease_seed
        self._connected = connected
        self._lost = lost
        self._http = _HTTP(reactor, nurl, server_id, self._unreachable, timeout)
        self._client: HTTPStorageClient | None = None
        self._retry_call: Any = None
        self._delay = RETRY_INITIAL
        self._stopped = False
        self._attempting = False

    def start(self) -> None:
        self._attempt()

    def _attempt(self) -> None:
        self._retry_call = None
        if self._stopped or self._attempting:
            return
        self._attempting = True
        defer.Deferred.fromCoroutine(self._try_version())

    async def _try_version(self) -> None:
        try:
            version = await fetch_version(self._http)
        except ServerError as e:
            self._attempting = False
            if not self._stopped:
                log.info("storage server {id} not reachable over HTTP: {e}", id=self._server_id, e=str(e))
                self._retry_call = self._reactor.callLater(self._delay, self._attempt)
                self._delay = min(self._delay * RETRY_FACTOR, RETRY_MAX)
            return
        self._attempting = False
        if self._stopped:
            return
        self._delay = RETRY_INITIAL
        self._client = HTTPStorageClient(self._http, self._server_id, version, self._lease_seed, self._reactor)
        self._connected(self._client)

    def _unreachable(self) -> None:
        client, self._client = self._client, None
        if client is not None and not self._stopped:
            self._lost(client)
            if self._retry_call is None and not self._attempting:
                self._retry_call = self._reactor.callLater(self._delay, self._attempt)

    def stop(self) -> None:
        self._stopped = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        self._http.close()

    def describe(self) -> str:
        return STATUS_CONNECTED if self._client is not None else "Trying to connect"


class HTTPConnector:
    """Connects over HTTPS to servers whose announcement lists ``anonymous-storage-NURLs``."""

    def __init__(self, reactor: Any, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self._reactor = reactor
        self._timeout = timeout

    def accepts(self, announcement: Mapping[str, Any]) -> bool:
        return first_nurl(announcement) is not None

    def connect(
        self, server_id: str, announcement: Mapping[str, Any], connected: ConnectedCallback, lost: LostCallback
    ) -> _HTTPConnection:
        nurl = first_nurl(announcement)
        if nurl is None:
            raise ValueError(f"server {server_id} announced no usable NURL")
        furl = announcement.get("anonymous-storage-FURL")
        lease_seed = tubid_from_furl(furl) if isinstance(furl, str) else b""
        connection = _HTTPConnection(self._reactor, server_id, nurl, lease_seed, connected, lost, self._timeout)
        connection.start()
        return connection


__all__ = ["HTTPConnector", "HTTPStorageClient", "first_nurl"]
