"""The storage server over HTTPS: Tahoe 1.20's "Great Black Swamp" protocol.

A sibling of ``foolscap_server``: it parses a request, authorizes it (the
swissnum in ``Authorization``, secrets in ``X-Tahoe-Authorization``),
converts CBOR to plain values and delegates to the same `StorageServer`.
Status codes and bodies follow what a 1.20 server answers (facts brief
§12.1); where 1.20 fails with a 500 (a write past the allocated size, a
reason that is not text) this server answers with the 4xx the error calls for.

Upload state is the one thing HTTP adds: a Foolscap upload holds a
reference to its bucket writer, an HTTP upload names its share and proves
itself with the upload secret it allocated with, and the server tracks which
ranges of the share have arrived so it can say what is still ``required``
and close the share when nothing is.
"""

from __future__ import annotations

import base64
import hmac
import io
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import cbor2
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from lafs.core import base32
from lafs.core.containers import MAX_MUTABLE_SHARE_SIZE
from lafs.storage.errors import (
    BadShareNumberError,
    BadStorageIndexError,
    BadWriteEnablerError,
    BucketClosedError,
    ConflictingWriteError,
    DataTooLargeError,
    DiskError,
    MutableTooLargeError,
    NoSpaceError,
    NoSuchShareError,
    StorageError,
)
from lafs.storage.immutable import BucketWriter
from lafs.storage.server import STORAGE_PROTOCOL_V1, StorageServer

log = Logger()

CBOR = b"application/cbor"
OCTET_STREAM = b"application/octet-stream"
MAX_SHARE_NUMBERS = 256
MAX_TEST_VECTORS = 30
MAX_READ_VECTORS = 30
MAX_REASON_LENGTH = 32765
"""Characters in a corruption report's reason (the spec's limit)."""
MAX_SMALL_BODY = 64 * 1024
"""Bytes of CBOR an allocation or corruption report may take (the largest valid one is about 33 KB)."""
MAX_BODY = 2**31
"""Bytes of any request body; a longer one is refused without being kept."""
LEASE_SECRET_SIZE = 32
MAX_BATCH = 256
"""Items in one request of the batch extension (`/lafs/storage/v1/...`)."""
MAX_BATCH_READ = 64 * 1024
"""Bytes one item of a batched read may ask for, per share (bigger reads go one per request)."""
RENEW, CANCEL, UPLOAD, WRITE_ENABLER = "lease-renew-secret", "lease-cancel-secret", "upload-secret", "write-enabler"
SECRET_KINDS = frozenset({RENEW, CANCEL, UPLOAD, WRITE_ENABLER})

_STORAGE_INDEX = re.compile(r"\A[a-z2-7]{26}\Z")
_SHARE_NUMBER = re.compile(r"\A[0-9]{1,3}\Z")
_CONTENT_RANGE = re.compile(rb"\Abytes ([0-9]+)-([0-9]+)/([0-9]+|\*)\Z")
_RANGE = re.compile(rb"\Abytes=([0-9]+)-([0-9]+)\Z")


class HTTPError(Exception):
    """An answer other than success, with the plain-text reason sent as its body."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


ERROR_STATUS: tuple[tuple[type[StorageError], int], ...] = (
    (ConflictingWriteError, 409),
    (BadWriteEnablerError, 401),
    (DataTooLargeError, 416),
    (BucketClosedError, 404),
    (NoSuchShareError, 404),
    (MutableTooLargeError, 413),
    (NoSpaceError, 507),
    (DiskError, 500),
    (BadShareNumberError, 400),
    (BadStorageIndexError, 400),
    (StorageError, 400),
)
"""How each storage error is answered, most specific first (the one table that maps them)."""


def status_for(error: StorageError) -> int:
    for error_type, status in ERROR_STATUS:
        if isinstance(error, error_type):
            return status
    return 500


@attrs.define
class Response:
    status: int
    body: bytes = b""
    content_type: bytes | None = None
    headers: Mapping[bytes, bytes] = attrs.field(factory=dict)


def cbor_response(value: Any, status: int = 200) -> Response:
    return Response(status, cbor2.dumps(value), CBOR)


# --- parsing ----------------------------------------------------------------------------------------


def parse_storage_index(text: str) -> bytes:
    """The storage index of a URL segment (26 base32 characters); anything else names no resource (404)."""
    if not _STORAGE_INDEX.match(text):
        raise HTTPError(404, "not a storage index (26 lowercase base32 characters)")
    return base32.a2b(text)


def parse_share_number(text: str) -> int:
    if not _SHARE_NUMBER.match(text) or int(text) > 255:
        raise HTTPError(404, "not a share number (0..255)")
    return int(text)


def is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64


def _check_map(value: object, keys: frozenset[str], where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise HTTPError(400, f"{where}: expected a map with keys {sorted(keys)}")
    found = set(value)
    if found != keys:
        problems = []
        if keys - found:
            problems.append(f"missing keys {sorted(keys - found)}")
        if found - keys:
            problems.append(f"unexpected keys {sorted(map(repr, found - keys))}")
        raise HTTPError(400, f"{where}: " + "; ".join(problems))
    return value


def _check_uint(value: object, where: str) -> int:
    if not is_uint(value):
        raise HTTPError(400, f"{where}: expected an unsigned integer, got {type(value).__name__}")
    return int(value)  # type: ignore[call-overload]


def _check_bytes(value: object, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise HTTPError(400, f"{where}: expected a byte string, got {type(value).__name__}")
    return value


def _check_list(value: object, where: str, most: int | None = None) -> list[Any]:
    if not isinstance(value, list):
        raise HTTPError(400, f"{where}: expected an array, got {type(value).__name__}")
    if most is not None and len(value) > most:
        raise HTTPError(400, f"{where}: at most {most} items allowed, got {len(value)}")
    return value


def parse_allocation(body: object) -> tuple[set[int], int]:
    fields = _check_map(body, frozenset({"share-numbers", "allocated-size"}), "allocation")
    numbers = fields["share-numbers"]
    if not isinstance(numbers, (set, frozenset)):
        raise HTTPError(400, "share-numbers: expected a set (CBOR tag 258)")
    if len(numbers) > MAX_SHARE_NUMBERS:
        raise HTTPError(400, f"share-numbers: at most {MAX_SHARE_NUMBERS} items allowed, got {len(numbers)}")
    return {_check_uint(n, "share-numbers") for n in numbers}, _check_uint(fields["allocated-size"], "allocated-size")


def _check_storage_index_bytes(value: object, where: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 16:
        raise HTTPError(400, f"{where}: expected a 16-byte storage index")
    return value


def _check_secret(value: object, where: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != LEASE_SECRET_SIZE:
        raise HTTPError(400, f"{where}: expected a {LEASE_SECRET_SIZE}-byte secret")
    return value


def parse_batch_storage_indexes(body: object) -> list[bytes]:
    """A batched share query: an array of storage indexes."""
    return [_check_storage_index_bytes(si, "storage indexes") for si in _check_list(body, "storage indexes", MAX_BATCH)]


def parse_batch_leases(body: object) -> list[tuple[bytes, bytes, bytes]]:
    """A batched lease request: an array of [storage index, renew secret, cancel secret]."""
    leases = []
    for item in _check_list(body, "leases", MAX_BATCH):
        if not isinstance(item, list) or len(item) != 3:
            raise HTTPError(400, "leases: expected [storage index, renew secret, cancel secret] items")
        leases.append((_check_storage_index_bytes(item[0], "leases"), _check_secret(item[1], "lease renew secret"),
                       _check_secret(item[2], "lease cancel secret")))
    return leases


def parse_batch_mutable_reads(body: object) -> list[tuple[bytes, list[int], list[tuple[int, int]]]]:
    """A batched mutable read: an array of [storage index, share numbers (empty: all), [[offset, size], ...]]."""
    reads = []
    for item in _check_list(body, "mutable reads", MAX_BATCH):
        if not isinstance(item, list) or len(item) != 3:
            raise HTTPError(400, "mutable reads: expected [storage index, share numbers, read vector] items")
        si = _check_storage_index_bytes(item[0], "mutable reads")
        shares = [_check_uint(n, "mutable reads share number") for n in _check_list(item[1], "share numbers", MAX_SHARE_NUMBERS)]
        vector = []
        for read in _check_list(item[2], "read vector", MAX_READ_VECTORS):
            if not isinstance(read, list) or len(read) != 2:
                raise HTTPError(400, "read vector: expected [offset, size] items")
            vector.append((_check_uint(read[0], "read offset"), _check_uint(read[1], "read size")))
        if sum(size for _, size in vector) * max(len(shares), 1) > MAX_BATCH_READ:
            raise HTTPError(400, f"mutable reads: an item may read at most {MAX_BATCH_READ} bytes")
        reads.append((si, shares, vector))
    return reads


def parse_batch_immutable_reads(body: object) -> list[tuple[bytes, int, int, int]]:
    """A batched immutable read: an array of [storage index, share number, offset, size]."""
    reads = []
    for item in _check_list(body, "immutable reads", MAX_BATCH):
        if not isinstance(item, list) or len(item) != 4:
            raise HTTPError(400, "immutable reads: expected [storage index, share number, offset, size] items")
        si = _check_storage_index_bytes(item[0], "immutable reads")
        shnum, offset, size = (_check_uint(value, "immutable reads") for value in item[1:])
        if size > MAX_BATCH_READ:
            raise HTTPError(400, f"immutable reads: an item may read at most {MAX_BATCH_READ} bytes")
        reads.append((si, shnum, offset, size))
    return reads


def parse_reason(body: object) -> bytes:
    reason = _check_map(body, frozenset({"reason"}), "corruption report")["reason"]
    if not isinstance(reason, str) or not 1 <= len(reason) <= MAX_REASON_LENGTH:
        raise HTTPError(400, f"reason: expected text of 1..{MAX_REASON_LENGTH} characters")
    return reason.encode("utf-8")


ReadTestWrite = tuple[
    dict[int, tuple[list[tuple[int, int, bytes, bytes]], list[tuple[int, bytes]], int | None]], list[tuple[int, int]]
]


def _parse_read_vector(value: object, where: str) -> list[tuple[int, int]]:
    vector = []
    for item in _check_list(value, where, MAX_READ_VECTORS):
        read = _check_map(item, frozenset({"offset", "size"}), where)
        vector.append((_check_uint(read["offset"], f"{where} offset"), _check_uint(read["size"], f"{where} size")))
    return vector


def parse_read_test_write(body: object) -> ReadTestWrite:
    fields = _check_map(body, frozenset({"test-write-vectors", "read-vector"}), "read-test-write")
    vectors = fields["test-write-vectors"]
    if not isinstance(vectors, dict):
        raise HTTPError(400, "test-write-vectors: expected a map of share numbers")
    if len(vectors) > MAX_SHARE_NUMBERS:
        raise HTTPError(400, f"test-write-vectors: at most {MAX_SHARE_NUMBERS} shares allowed")
    tw_vectors = {}
    for shnum, entry in vectors.items():
        shnum = _check_uint(shnum, "test-write-vectors share number")
        parts = _check_map(entry, frozenset({"test", "write", "new-length"}), "test-write-vectors")
        tests = []
        for test in _check_list(parts["test"], "test", MAX_TEST_VECTORS):
            test = _check_map(test, frozenset({"offset", "size", "specimen"}), "test")
            # HTTP test vectors are all equality tests (the only operator Tahoe supports).
            tests.append((_check_uint(test["offset"], "test offset"), _check_uint(test["size"], "test size"), b"eq",
                          _check_bytes(test["specimen"], "test specimen")))
        writes = []
        for write in _check_list(parts["write"], "write"):
            write = _check_map(write, frozenset({"offset", "data"}), "write")
            writes.append((_check_uint(write["offset"], "write offset"), _check_bytes(write["data"], "write data")))
        new_length = parts["new-length"]
        if new_length is not None:
            new_length = _check_uint(new_length, "new-length")
        tw_vectors[shnum] = (tests, writes, new_length)
    return tw_vectors, _parse_read_vector(fields["read-vector"], "read-vector")


def parse_range(header: bytes | None) -> tuple[int, int] | None:
    """``(offset, length)`` of a ``Range: bytes=A-B`` header, None without one; 416 for any other form."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or int(match[2]) < int(match[1]):
        raise HTTPError(416, "only one closed range is supported (Range: bytes=FIRST-LAST)")
    return int(match[1]), int(match[2]) - int(match[1]) + 1


def parse_content_range(header: bytes | None) -> tuple[int, int]:
    """``(offset, end)`` (end exclusive) of an upload chunk's ``Content-Range: bytes A-B/TOTAL``."""
    match = _CONTENT_RANGE.match((header or b"").strip())
    if match is None or int(match[2]) < int(match[1]):
        raise HTTPError(416, "an upload chunk needs Content-Range: bytes FIRST-LAST/TOTAL")
    return int(match[1]), int(match[2]) + 1


def _accepts_cbor(request: Request) -> bool:
    accept = request.getHeader(b"accept")
    if accept is None:
        return True
    types = {part.split(b";")[0].strip().lower() for part in accept.split(b",")}
    return bool(types & {CBOR, b"application/*", b"*/*"})


def _secrets(request: Request, required: frozenset[str]) -> dict[str, bytes]:
    """The X-Tahoe-Authorization secrets, exactly the ``required`` kinds; 400 for anything else."""
    found: dict[str, bytes] = {}
    for header in request.requestHeaders.getRawHeaders(b"x-tahoe-authorization", []):
        kind_bytes, _, encoded = header.strip().partition(b" ")
        kind = kind_bytes.decode("ascii", "replace")
        try:
            value = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            value = b""
        if kind not in SECRET_KINDS or kind in found or not value:
            raise HTTPError(400, f"malformed X-Tahoe-Authorization header (expected {_kinds(required)}, each once)")
        found[kind] = value
    if set(found) != required:
        raise HTTPError(400, f"Expected {_kinds(required)} in X-Tahoe-Authorization headers, got {_kinds(found)}")
    for kind in (RENEW, CANCEL, WRITE_ENABLER):
        if kind in found and len(found[kind]) != LEASE_SECRET_SIZE:
            raise HTTPError(400, f"{kind} must be {LEASE_SECRET_SIZE} bytes long")
    return found


def _kinds(kinds: Any) -> str:
    return "[" + ", ".join(sorted(kinds)) + "]"


# --- uploads ----------------------------------------------------------------------------------------


@attrs.define
class _Upload:
    """One share being uploaded over HTTP: its writer, who may write it, and what has arrived."""

    secret: bytes = attrs.field(repr=False)
    writer: BucketWriter
    received: list[tuple[int, int]] = attrs.field(factory=list)
    """Disjoint, sorted [begin, end) ranges written so far."""
    lock: defer.DeferredLock = attrs.field(factory=defer.DeferredLock)

    def add(self, begin: int, end: int) -> None:
        merged: list[tuple[int, int]] = []
        for b, e in sorted([*self.received, (begin, end)]):
            if merged and b <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((b, e))
        self.received = merged

    def required(self) -> list[dict[str, int]]:
        """The ranges still missing, as ``{begin, end}`` maps (end exclusive)."""
        gaps, position = [], 0
        for begin, end in self.received:
            if begin > position:
                gaps.append({"begin": position, "end": begin})
            position = max(position, end)
        if position < self.writer.allocated_size:
            gaps.append({"begin": position, "end": self.writer.allocated_size})
        return gaps


# --- the server ---------------------------------------------------------------------------------------


Handler = Callable[..., Awaitable[Response]]


class HTTPStorageServer:
    """Serves one `StorageServer` over HTTP to clients that know ``swissnum`` (the storage fURL's)."""

    def __init__(self, server: StorageServer, swissnum: bytes) -> None:
        self._server = server
        self._swissnum = swissnum
        self._expected_authorization = b"Tahoe-LAFS " + base64.b64encode(swissnum)
        self._uploads: dict[tuple[bytes, int], _Upload] = {}

    def site(self, reactor: Any = None) -> Site:
        site = _StorageSite(self, reactor)
        site.displayTracebacks = False
        return site

    # --- routing and authorization ------------------------------------------------------------

    def _route(self, method: bytes, path: bytes) -> tuple[Handler, tuple[Any, ...]]:
        segments = path.decode("ascii", "replace").split("/")
        if segments[:3] == ["", "storage", "v1"]:
            rest = segments[3:]
        elif segments[:4] == ["", "lafs", "storage", "v1"]:
            rest = ["lafs", *segments[4:]]  # our batch extension: many storage indexes per request
        else:
            raise HTTPError(404, "no such resource")
        routes: dict[bytes, Handler] = {}
        args: tuple[Any, ...] = ()
        match rest:
            case ["lafs", "immutable-shares"]:
                routes = {b"POST": self.batch_immutable_shares}
            case ["lafs", "leases"]:
                routes = {b"POST": self.batch_leases}
            case ["lafs", "mutable-reads"]:
                routes = {b"POST": self.batch_mutable_reads}
            case ["lafs", "immutable-reads"]:
                routes = {b"POST": self.batch_immutable_reads}
            case ["version"]:
                routes = {b"GET": self.version}
            case ["lease", si]:
                routes, args = {b"PUT": self.add_lease}, (parse_storage_index(si),)
            case ["immutable", si]:
                routes, args = {b"POST": self.allocate}, (parse_storage_index(si),)
            case ["immutable", si, "shares"]:
                routes, args = {b"GET": self.immutable_shares}, (parse_storage_index(si),)
            case ["immutable", si, shnum]:
                routes = {b"PATCH": self.write_chunk, b"GET": self.read_immutable}
                args = (parse_storage_index(si), parse_share_number(shnum))
            case ["immutable", si, shnum, "abort"]:
                routes, args = {b"PUT": self.abort}, (parse_storage_index(si), parse_share_number(shnum))
            case ["immutable", si, shnum, "corrupt"]:
                routes, args = {b"POST": self.immutable_corrupt}, (parse_storage_index(si), parse_share_number(shnum))
            case ["mutable", si, "read-test-write"]:
                routes, args = {b"POST": self.read_test_write}, (parse_storage_index(si),)
            case ["mutable", si, "shares"]:
                routes, args = {b"GET": self.mutable_shares}, (parse_storage_index(si),)
            case ["mutable", si, shnum]:
                routes, args = {b"GET": self.read_mutable}, (parse_storage_index(si), parse_share_number(shnum))
            case ["mutable", si, shnum, "corrupt"]:
                routes, args = {b"POST": self.mutable_corrupt}, (parse_storage_index(si), parse_share_number(shnum))
            case _:
                raise HTTPError(404, "no such resource")
        handler = routes.get(method)
        if handler is None:
            raise HTTPError(405, f"allowed methods: {', '.join(m.decode() for m in routes)}")
        return handler, args

    def authorized(self, header: bytes | None) -> bool:
        """Whether an ``Authorization`` header carries this server's swissnum."""
        if header is not None and hmac.compare_digest(header, self._expected_authorization):
            return True  # as every client writes it; other spellings of the base64 are decoded
        scheme, _, credentials = (header or b"").partition(b" ")
        try:
            presented = base64.b64decode(credentials.strip(), validate=True)
        except ValueError:
            return False
        return scheme == b"Tahoe-LAFS" and hmac.compare_digest(presented, self._swissnum)

    def _authorize(self, request: Request) -> None:
        known = getattr(request, "authorized", None)  # what _StorageRequest found when the headers were in
        if not (known if known is not None else self.authorized(request.getHeader(b"authorization"))):
            raise HTTPError(401, "Wrong Authorization header")

    async def handle(self, request: Request) -> Response:
        try:
            handler, args = self._route(request.method or b"", request.path or b"")
            self._authorize(request)
            if getattr(request.content, "discarded", False):
                raise HTTPError(413, f"request bodies are limited to {MAX_BODY} bytes")
            return await handler(request, *args)
        except HTTPError as e:
            return Response(e.status, e.message.encode("utf-8"), b"text/plain; charset=utf-8" if e.message else None)
        except StorageError as e:
            status = status_for(e)
            if status == 500:
                log.error("storage request failed: {error}", error=str(e))
            return Response(status, str(e).encode("utf-8"), b"text/plain; charset=utf-8")

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _cbor_body(request: Request, limit: int) -> Any:
        content_type = request.getHeader(b"content-type")
        if content_type is not None and content_type.split(b";")[0].strip().lower() != CBOR:
            raise HTTPError(415, "request bodies must be application/cbor")
        if not _accepts_cbor(request):
            raise HTTPError(406, "this server answers only in application/cbor")
        body = _body_of(request)
        if len(body) > limit:
            raise HTTPError(413, f"this request's body is limited to {limit} bytes")
        try:
            return cbor2.loads(body)
        except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as e:
            raise HTTPError(400, f"malformed CBOR body: {e}") from None

    @staticmethod
    def _want_cbor(request: Request) -> None:
        if not _accepts_cbor(request):
            raise HTTPError(406, "this server answers only in application/cbor")

    def _live_upload(self, storage_index: bytes, shnum: int) -> _Upload | None:
        key = (storage_index, shnum)
        upload = self._uploads.get(key)
        if upload is not None and upload.writer.finished:
            del self._uploads[key]  # timed out, or finished another way
            return None
        return upload

    # --- general ----------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        self._want_cbor(request)
        version = self._server.get_version()
        v1 = version[STORAGE_PROTOCOL_V1]
        # 1.20 sends only the three size keys over HTTP (the others describe Foolscap-era behaviour).
        keys = (b"maximum-immutable-share-size", b"maximum-mutable-share-size", b"available-space")
        return cbor_response(
            {STORAGE_PROTOCOL_V1: {key: v1[key] for key in keys}, b"application-version": version[b"application-version"]}
        )

    async def add_lease(self, request: Request, storage_index: bytes) -> Response:
        secrets = _secrets(request, frozenset({RENEW, CANCEL}))
        if not await self._server.add_lease(storage_index, secrets[RENEW], secrets[CANCEL]):
            raise HTTPError(404, "no shares of this storage index")
        return Response(204)

    # --- the batch extension: one request for many storage indexes ---------------------------

    async def batch_immutable_shares(self, request: Request) -> Response:
        storage_indexes = parse_batch_storage_indexes(self._cbor_body(request, MAX_SMALL_BODY))
        return cbor_response([await _item(self._immutable_share_set(si)) for si in storage_indexes])

    async def _immutable_share_set(self, storage_index: bytes) -> set[int]:
        return set(await self._server.get_buckets(storage_index))

    async def batch_leases(self, request: Request) -> Response:
        leases = parse_batch_leases(self._cbor_body(request, MAX_SMALL_BODY))
        return cbor_response([await _item(self._server.add_lease(*lease)) for lease in leases])

    async def batch_mutable_reads(self, request: Request) -> Response:
        reads = parse_batch_mutable_reads(self._cbor_body(request, MAX_SMALL_BODY))
        return cbor_response([await _item(self._server.slot_readv(*read)) for read in reads])

    async def batch_immutable_reads(self, request: Request) -> Response:
        reads = parse_batch_immutable_reads(self._cbor_body(request, MAX_SMALL_BODY))
        return cbor_response([await _item(self._read_finished_share(*read)) for read in reads])

    async def _read_finished_share(self, storage_index: bytes, shnum: int, offset: int, length: int) -> bytes:
        reader = (await self._server.get_buckets(storage_index)).get(shnum)
        if reader is None:
            raise NoSuchShareError(f"no finished immutable share {shnum} of this storage index")
        return await reader.read(offset, length)

    # --- immutable ----------------------------------------------------------------------------

    async def allocate(self, request: Request, storage_index: bytes) -> Response:
        secrets = _secrets(request, frozenset({RENEW, CANCEL, UPLOAD}))
        sharenums, allocated_size = parse_allocation(self._cbor_body(request, MAX_SMALL_BODY))
        already, writers = await self._server.allocate_buckets(
            storage_index, secrets[RENEW], secrets[CANCEL], sharenums, allocated_size
        )
        # Forget uploads that ended without us (the writers' inactivity timeout); few are open at once.
        for key in [key for key, upload in self._uploads.items() if upload.writer.finished]:
            del self._uploads[key]
        for shnum, writer in writers.items():
            self._uploads[(storage_index, shnum)] = _Upload(secrets[UPLOAD], writer)
        return cbor_response({"already-have": set(already), "allocated": set(writers)})

    def _upload_for(self, request: Request, storage_index: bytes, shnum: int) -> _Upload:
        secret = _secrets(request, frozenset({UPLOAD}))[UPLOAD]
        upload = self._live_upload(storage_index, shnum)
        if upload is None:
            raise HTTPError(404, f"no upload of share {shnum} of this storage index is in progress")
        if not hmac.compare_digest(upload.secret, secret):
            raise HTTPError(401, "wrong upload secret")
        return upload

    async def write_chunk(self, request: Request, storage_index: bytes, shnum: int) -> Response:
        upload = self._upload_for(request, storage_index, shnum)
        begin, end = parse_content_range(request.getHeader(b"content-range"))
        data = _body_of(request)
        if len(data) != end - begin:
            raise HTTPError(400, f"Content-Range says {end - begin} bytes, the body has {len(data)}")
        if end > upload.writer.allocated_size:
            raise HTTPError(416, f"bytes {begin}-{end - 1} lie past the share's allocated size of {upload.writer.allocated_size}")
        # One chunk of a share at a time, so that the chunk completing it closes it exactly once.
        await upload.lock.acquire()
        try:
            if upload.writer.finished:
                raise HTTPError(404, f"no upload of share {shnum} of this storage index is in progress")
            await upload.writer.write(begin, data)
            del data
            upload.add(begin, end)
            required = upload.required()
            if required:
                return cbor_response({"required": required})
            self._uploads.pop((storage_index, shnum), None)
            await upload.writer.close()
            return cbor_response({"required": []}, 201)
        finally:
            upload.lock.release()

    async def abort(self, request: Request, storage_index: bytes, shnum: int) -> Response:
        secret = _secrets(request, frozenset({UPLOAD}))[UPLOAD]
        upload = self._live_upload(storage_index, shnum)
        if upload is None:
            if shnum in await self._server.get_buckets(storage_index):
                raise HTTPError(405, f"share {shnum} of this storage index is finished: it can no longer be aborted")
            raise HTTPError(404, f"no upload of share {shnum} of this storage index is in progress")
        if not hmac.compare_digest(upload.secret, secret):
            raise HTTPError(401, "wrong upload secret")
        self._uploads.pop((storage_index, shnum), None)
        await upload.writer.abort()
        return Response(200)

    async def immutable_shares(self, request: Request, storage_index: bytes) -> Response:
        self._want_cbor(request)
        return cbor_response(set(await self._server.get_buckets(storage_index)))

    async def read_immutable(self, request: Request, storage_index: bytes, shnum: int) -> Response:
        wanted = parse_range(request.getHeader(b"range"))
        offset, length = wanted if wanted is not None else (0, 2**63)
        return _share_data(await self._read_finished_share(storage_index, shnum, offset, length), offset, wanted is not None)

    async def immutable_corrupt(self, request: Request, storage_index: bytes, shnum: int) -> Response:
        reason = parse_reason(self._cbor_body(request, MAX_SMALL_BODY))
        if shnum not in await self._server.get_buckets(storage_index):
            raise HTTPError(404, f"no immutable share {shnum} of this storage index")
        await self._server.advise_corrupt_share(b"immutable", storage_index, shnum, reason)
        return Response(200)

    # --- mutable --------------------------------------------------------------------------------

    async def read_test_write(self, request: Request, storage_index: bytes) -> Response:
        secrets = _secrets(request, frozenset({WRITE_ENABLER, RENEW, CANCEL}))
        tw_vectors, read_vector = parse_read_test_write(self._cbor_body(request, MAX_BODY))
        try:
            success, data = await self._server.slot_testv_and_readv_and_writev(
                storage_index, (secrets[WRITE_ENABLER], secrets[RENEW], secrets[CANCEL]), tw_vectors, read_vector
            )
        except BadWriteEnablerError as e:
            raise HTTPError(401, str(e)) from None
        return cbor_response({"success": success, "data": data})

    async def mutable_shares(self, request: Request, storage_index: bytes) -> Response:
        self._want_cbor(request)
        return cbor_response(set(await self._server.slot_readv(storage_index, [], [])))

    async def read_mutable(self, request: Request, storage_index: bytes, shnum: int) -> Response:
        wanted = parse_range(request.getHeader(b"range"))
        offset, length = wanted if wanted is not None else (0, MAX_MUTABLE_SHARE_SIZE)
        found = await self._server.slot_readv(storage_index, [shnum], [(offset, length)])
        if shnum not in found:
            raise HTTPError(404, f"no mutable share {shnum} of this storage index")
        return _share_data(found[shnum][0], offset, wanted is not None)

    async def mutable_corrupt(self, request: Request, storage_index: bytes, shnum: int) -> Response:
        reason = parse_reason(self._cbor_body(request, MAX_SMALL_BODY))
        if shnum not in await self._server.slot_readv(storage_index, [shnum], []):
            raise HTTPError(404, f"no mutable share {shnum} of this storage index")
        await self._server.advise_corrupt_share(b"mutable", storage_index, shnum, reason)
        return Response(200)


async def _item(work: Awaitable[Any]) -> Any:
    """One item's answer in a batch: its value, or ``{"error": reason, "kind": error name}`` when the storage
    server refused it."""
    try:
        return await work
    except StorageError as e:
        if status_for(e) == 500:
            log.error("storage request failed: {error}", error=str(e))
        return {"error": str(e), "kind": type(e).__name__}


def _share_data(data: bytes, offset: int, ranged: bool) -> Response:
    """A share read's answer as 1.20 gives it: 204 when empty, 206 with ``bytes A-B/*`` for a range."""
    if not data:
        return Response(204, b"", OCTET_STREAM)
    if not ranged:
        return Response(200, data, OCTET_STREAM)
    return Response(206, data, OCTET_STREAM, {b"content-range": b"bytes %d-%d/*" % (offset, offset + len(data) - 1)})


# --- twisted.web glue ---------------------------------------------------------------------------------


class _BoundedBody(io.BytesIO):
    """A request body kept in memory (share chunks go straight to the backend), dropped past MAX_BODY.

    ``discarded``: the body was not kept (too long, or the request is unauthorized).
    """

    discarded = False

    def write(self, data: Any) -> int:
        if self.discarded:
            return len(data)
        if self.tell() + len(data) > MAX_BODY:
            self.discarded = True
            self.seek(0)
            self.truncate()
            return len(data)
        return super().write(data)


class _StorageRequest(Request):
    authorized: bool | None = None
    """Whether the headers carry the swissnum, once they are in."""

    def gotLength(self, length: int | None) -> None:
        body = _BoundedBody()
        site = getattr(self.channel, "site", None)
        # The headers are in: a request without the swissnum gets its 401 without its body being kept.
        if isinstance(site, _StorageSite):
            self.authorized = site.storage.authorized(self.getHeader(b"authorization"))
        unauthorized = self.authorized is False
        if unauthorized or (length is not None and length > MAX_BODY):
            body.discarded = True
        content: Any = body
        self.content = content


def _body_of(request: Request) -> bytes:
    content: Any = request.content
    return content.getvalue() if isinstance(content, io.BytesIO) else b""


class _StorageSite(Site):
    def __init__(self, storage: HTTPStorageServer, reactor: Any) -> None:
        super().__init__(_StorageResource(storage), requestFactory=_StorageRequest, reactor=reactor)
        self.storage = storage


class _StorageResource(Resource):
    isLeaf = True

    def __init__(self, server: HTTPStorageServer) -> None:
        super().__init__()
        self._server = server

    def render(self, request: Request) -> Any:
        finished: list[object] = []

        def gone(result: object) -> None:
            finished.append(result)

        request.notifyFinish().addBoth(gone)
        answered = defer.Deferred.fromCoroutine(self._server.handle(request))

        def respond(response: Response) -> None:
            if finished:
                return  # the client went away
            request.setResponseCode(response.status)
            if response.content_type is not None:
                request.setHeader(b"content-type", response.content_type)
            for name, value in response.headers.items():
                request.setHeader(name, value)
            if response.status not in (204, 304):
                request.setHeader(b"content-length", b"%d" % len(response.body))
                if response.body:
                    request.write(response.body)
            request.finish()

        def failed(failure: Failure) -> None:
            log.failure("an HTTP storage request failed", failure)
            respond(Response(500, b"internal server error", b"text/plain; charset=utf-8"))

        answered.addCallback(respond).addErrback(failed)
        return NOT_DONE_YET
