"""The HTTP storage server endpoint by endpoint, over real loopback HTTPS, with the answers a 1.20 server gives.

Requests are built by hand (Twisted's Agent with the server's certificate
pinned) so that every header, status and body can be checked, including the
malformed ones a real client never sends.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import cbor2
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from lafs.core import base32
from lafs.core.nurl import NURL
from lafs.https import PinnedSPKIPolicy
from lafs.storage.http_server import HTTPError, HTTPStorageServer, Response, cbor_response
from lafs.storage_client import http as http_client
from lafs.storage_client.foolscap import FoolscapConnector
from lafs.storage_client.http import REQUEST_TIMEOUT, HTTPConnector, _BytesBody, _read_body
from lafs.storage_client.interface import (
    ServerRefusedError,
    ServerUnreachableError,
    StorageServerClient,
)
from lafs.tub import NodeTub
from tests.storage_grid import RunningServer, sleep, start_storage_server, wait_for

RENEW, CANCEL, UPLOAD, WE = b"r" * 32, b"c" * 32, b"u" * 32, b"w" * 32
CBOR = b"application/cbor"


def secret(kind: str, value: bytes) -> tuple[bytes, bytes]:
    return b"x-tahoe-authorization", kind.encode() + b" " + base64.b64encode(value)


LEASE = [secret("lease-renew-secret", RENEW), secret("lease-cancel-secret", CANCEL)]
ALLOCATE = [*LEASE, secret("upload-secret", UPLOAD)]
UPLOADING = [secret("upload-secret", UPLOAD)]
MUTABLE = [secret("write-enabler", WE), *LEASE]


@attrs.frozen
class Answer:
    status: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    def cbor(self) -> Any:
        assert self.header(b"content-type") == CBOR
        return cbor2.loads(self.body)


class RawClient:
    """Hand-built HTTPS requests to one server, its certificate pinned."""

    def __init__(self, nurl: NURL, *, pin: str | None = None) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.agent = Agent(reactor, PinnedSPKIPolicy(pin or nurl.spki_hash), pool=self.pool)
        self.base = f"https://{nurl.host}:{nurl.port}".encode()
        self.swissnum = nurl.swissnum.encode()

    async def request(
        self,
        method: bytes,
        path: str,
        body: bytes | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        auth: bool | bytes = True,
    ) -> Answer:
        sent = Headers()
        if auth is True:
            sent.addRawHeader(b"authorization", b"Tahoe-LAFS " + base64.b64encode(self.swissnum))
        elif auth:
            sent.addRawHeader(b"authorization", auth)
        for name, value in headers:
            sent.addRawHeader(name, value)
        producer: Any = _BytesBody(body) if body is not None else None
        response = await self.agent.request(method, self.base + path.encode(), sent, producer)
        return Answer(response.code, response.headers, await _read_body(response, reactor, REQUEST_TIMEOUT))

    async def cbor(self, method: bytes, path: str, value: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> Answer:
        return await self.request(method, path, cbor2.dumps(value), [(b"content-type", CBOR), *headers])


@attrs.define
class Fixture:
    running: RunningServer
    raw: RawClient
    nurl: NURL

    def si(self) -> tuple[bytes, str]:
        storage_index = os.urandom(16)
        return storage_index, base32.b2a(storage_index)


@asynccontextmanager
async def http_server(basedir: Path) -> AsyncIterator[Fixture]:
    running = await start_storage_server(basedir, "http", http=True)
    nurl = NURL.from_string(running.nurls[0])
    raw = RawClient(nurl)
    try:
        yield Fixture(running, raw, nurl)
    finally:
        await raw.pool.closeCachedConnections()
        await running.stop()


async def allocate(f: Fixture, si: str, shares: set[int], size: int, headers: Sequence[tuple[bytes, bytes]] = ALLOCATE) -> Answer:
    return await f.raw.cbor(b"POST", f"/storage/v1/immutable/{si}", {"share-numbers": shares, "allocated-size": size}, headers)


async def patch(f: Fixture, si: str, shnum: int, offset: int, data: bytes, total: int = 20,
                headers: Sequence[tuple[bytes, bytes]] = UPLOADING) -> Answer:
    content_range = b"bytes %d-%d/%d" % (offset, offset + len(data) - 1, total)
    return await f.raw.request(
        b"PATCH", f"/storage/v1/immutable/{si}/{shnum}", data,
        [(b"content-range", content_range), (b"content-type", b"application/octet-stream"), *headers],
    )


async def upload(f: Fixture, si: str, shnum: int, data: bytes) -> None:
    assert (await allocate(f, si, {shnum}, len(data))).cbor()["allocated"] == {shnum}
    assert (await patch(f, si, shnum, 0, data, len(data))).status == 201


async def rtw(f: Fixture, si: str, vectors: Mapping[int, Any], read: Sequence[Any] = (),
              headers: Sequence[tuple[bytes, bytes]] = MUTABLE) -> Answer:
    body = {"test-write-vectors": dict(vectors), "read-vector": list(read)}
    return await f.raw.cbor(b"POST", f"/storage/v1/mutable/{si}/read-test-write", body, headers)


def write_vector(data: bytes, offset: int = 0, test: Sequence[Any] = (), new_length: int | None = None) -> dict[str, Any]:
    return {"test": list(test), "write": [{"offset": offset, "data": data}], "new-length": new_length}


# --- general -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_version_is_cbor_with_byte_keys_and_only_the_size_fields(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        answer = await f.raw.request(b"GET", "/storage/v1/version")
        assert answer.status == 200
        version = answer.cbor()
        v1 = version[b"http://allmydata.org/tahoe/protocols/storage/v1"]
        assert set(v1) == {b"maximum-immutable-share-size", b"maximum-mutable-share-size", b"available-space"}
        assert v1[b"maximum-mutable-share-size"] == 69105000000000000
        assert version[b"application-version"] == b"tahoe-lafs/1.20.0"


@pytest_twisted.ensureDeferred
async def test_requests_without_the_swissnum_are_unauthorized(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        for auth in (False, b"Tahoe-LAFS " + base64.b64encode(b"wrong"), b"Basic " + base64.b64encode(f.raw.swissnum), b"Tahoe-LAFS !!"):
            answer = await f.raw.request(b"GET", "/storage/v1/version", auth=auth)
            assert (answer.status, answer.body) == (401, b"Wrong Authorization header")
            assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/shares", auth=auth)).status == 401
        # an unauthorized allocation allocates nothing
        no_auth = await f.raw.request(
            b"POST", f"/storage/v1/immutable/{si}", cbor2.dumps({"share-numbers": {0}, "allocated-size": 5}),
            [(b"content-type", CBOR), *ALLOCATE], auth=False,
        )
        assert no_auth.status == 401
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/shares")).cbor() == set()


@pytest_twisted.ensureDeferred
async def test_unknown_paths_storage_indexes_and_methods(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        assert (await f.raw.request(b"GET", "/storage/v1/nothing")).status == 404
        assert (await f.raw.request(b"GET", "/nothing", auth=False)).status == 404
        assert (await f.raw.request(b"GET", "/storage/v1/immutable/abc/shares")).status == 404, "not a storage index"
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si.upper()}/shares")).status == 404
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/x")).status == 404
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/256")).status == 404
        assert (await f.raw.request(b"DELETE", f"/storage/v1/immutable/{si}/shares")).status == 405
        assert (await f.raw.request(b"GET", "/storage/v1/version", headers=[(b"accept", b"application/json")])).status == 406
        assert (await f.raw.request(b"GET", "/storage/v1/version", headers=[(b"accept", b"*/*")])).status == 200


# --- secrets --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_missing_or_malformed_secrets_are_bad_requests(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        cases = [
            LEASE,  # no upload secret
            [*ALLOCATE, secret("write-enabler", WE)],  # a kind this request does not take
            [*ALLOCATE, secret("upload-secret", b"v" * 32)],  # one kind twice
            [*LEASE, (b"x-tahoe-authorization", b"upload-secret")],  # no value
            [*LEASE, (b"x-tahoe-authorization", b"upload-secret %%%")],  # not base64
            [*LEASE, (b"x-tahoe-authorization", b"bogus")],
            [secret("lease-renew-secret", b"r" * 31), LEASE[1], UPLOADING[0]],  # a lease secret of the wrong size
        ]
        for headers in cases:
            answer = await allocate(f, si, {0}, 10, headers)
            assert answer.status == 400, headers
            assert b"secret" in answer.body or b"X-Tahoe-Authorization" in answer.body
        missing = await allocate(f, si, {0}, 10, LEASE)
        assert b"upload-secret" in missing.body, "the answer names the secrets expected"
        assert (await allocate(f, si, {0}, 10)).cbor()["allocated"] == {0}, "nothing was allocated by the bad requests"
        assert (await f.raw.request(b"PUT", f"/storage/v1/lease/{si}", headers=ALLOCATE)).status == 400
        assert (await rtw(f, si, {0: write_vector(b"x")}, headers=[*LEASE, secret("write-enabler", b"short")])).status == 400


# --- immutable -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_immutable_upload_in_chunks_reports_what_is_required(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        storage_index, si = f.si()
        answer = await allocate(f, si, {0, 3}, 20)
        assert answer.status == 200
        assert answer.cbor() == {"already-have": set(), "allocated": {0, 3}}
        first = await patch(f, si, 0, 0, b"a" * 10)
        assert (first.status, first.cbor()) == (200, {"required": [{"begin": 10, "end": 20}]})
        gap = await patch(f, si, 0, 15, b"c" * 3)
        assert gap.cbor() == {"required": [{"begin": 10, "end": 15}, {"begin": 18, "end": 20}]}
        same = await patch(f, si, 0, 5, b"a" * 5)
        assert same.status == 200, "rewriting bytes with the same bytes is allowed"
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/shares")).cbor() == set()
        being_written = await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/0", headers=[(b"range", b"bytes=0-5")])
        assert being_written.status == 404, "a share being written cannot be read"
        last = await patch(f, si, 0, 10, b"b" * 5 + b"c" * 3 + b"d" * 2)
        assert (last.status, last.cbor()) == (201, {"required": []})
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/shares")).cbor() == {0}
        assert (await patch(f, si, 0, 0, b"a")).status == 404, "a finished share takes no more writes"
        again = await allocate(f, si, {0, 1, 3}, 20)
        assert again.cbor() == {"already-have": {0}, "allocated": {1}}, "share 3 is still being uploaded"
        leases = await f.running.server.backend.get_leases(storage_index, 0)
        assert [lease.owner_num for lease in leases.leases] == [0]


@pytest_twisted.ensureDeferred
async def test_bad_upload_chunks(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        await allocate(f, si, {0}, 20)
        await patch(f, si, 0, 0, b"a" * 10)
        conflict = await patch(f, si, 0, 5, b"b" * 10)
        assert conflict.status == 409, "a rewrite with different bytes conflicts"
        past_end = await patch(f, si, 0, 15, b"x" * 10)
        assert past_end.status == 416 and b"allocated size" in past_end.body
        no_range = await f.raw.request(b"PATCH", f"/storage/v1/immutable/{si}/0", b"x", UPLOADING)
        assert no_range.status == 416
        short_body = await f.raw.request(
            b"PATCH", f"/storage/v1/immutable/{si}/0", b"xy", [(b"content-range", b"bytes 10-12/20"), *UPLOADING]
        )
        assert short_body.status == 400
        wrong_secret = await patch(f, si, 0, 10, b"x" * 10, headers=[secret("upload-secret", b"v" * 32)])
        assert wrong_secret.status == 401
        assert (await patch(f, si, 0, 10, b"x" * 10, headers=[])).status == 400
        assert (await patch(f, si, 7, 0, b"x")).status == 404, "share 7 was never allocated"
        done = await patch(f, si, 0, 10, b"z" * 10)
        assert done.status == 201, "the failed chunks changed nothing"
        read = await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/0")
        assert (read.status, read.body) == (200, b"a" * 10 + b"z" * 10)


@pytest_twisted.ensureDeferred
async def test_abort(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        await allocate(f, si, {1, 2}, 20)
        await patch(f, si, 1, 0, b"a" * 10)
        wrong = await f.raw.request(b"PUT", f"/storage/v1/immutable/{si}/1/abort", headers=[secret("upload-secret", b"v" * 32)])
        assert wrong.status == 401
        assert (await f.raw.request(b"PUT", f"/storage/v1/immutable/{si}/1/abort")).status == 400
        assert (await f.raw.request(b"PUT", f"/storage/v1/immutable/{si}/1/abort", headers=UPLOADING)).status == 200
        assert (await f.raw.request(b"PUT", f"/storage/v1/immutable/{si}/1/abort", headers=UPLOADING)).status == 404
        assert (await patch(f, si, 1, 10, b"a" * 10)).status == 404, "an aborted upload takes no writes"
        assert (await allocate(f, si, {1}, 20)).cbor()["allocated"] == {1}, "an aborted share can be uploaded again"
        await patch(f, si, 2, 0, b"b" * 20)
        finished = await f.raw.request(b"PUT", f"/storage/v1/immutable/{si}/2/abort", headers=UPLOADING)
        assert finished.status == 405, "a finished share cannot be aborted"
        assert (await f.raw.request(b"PUT", f"/storage/v1/immutable/{si}/9/abort", headers=UPLOADING)).status == 404


@pytest_twisted.ensureDeferred
async def test_allocation_bodies_are_checked(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        path = f"/storage/v1/immutable/{si}"
        bad_bodies: list[Any] = [
            {"share-numbers": [0, 1], "allocated-size": 20},  # a list, not a set
            {"share-numbers": set(range(257)), "allocated-size": 20},  # more than 256
            {"share-numbers": {0}, "allocated-size": -1},
            {"share-numbers": {0}, "allocated-size": 20, "extra": 1},
            {"share-numbers": {0}},
            {"share-numbers": {-1}, "allocated-size": 20},
            {"share-numbers": {256}, "allocated-size": 20},
            [1, 2],
        ]
        for body in bad_bodies:
            answer = await f.raw.cbor(b"POST", path, body, ALLOCATE)
            assert answer.status == 400, body
            assert answer.body, "the answer says what is wrong"
        malformed = await f.raw.request(b"POST", path, b"\xff\xfe", [(b"content-type", CBOR), *ALLOCATE])
        assert malformed.status == 400 and b"CBOR" in malformed.body
        json = await f.raw.request(b"POST", path, b"{}", [(b"content-type", b"application/json"), *ALLOCATE])
        assert json.status == 415
        huge = await f.raw.request(b"POST", path, b"\x00" * 100_000, [(b"content-type", CBOR), *ALLOCATE])
        assert huge.status == 413
        no_content_type = await f.raw.request(
            b"POST", path, cbor2.dumps({"share-numbers": {0}, "allocated-size": 5}), ALLOCATE
        )
        assert no_content_type.status == 200, "CBOR is assumed when no Content-Type is given"


@pytest_twisted.ensureDeferred
async def test_ranged_immutable_reads(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        await upload(f, si, 0, bytes(range(20)))
        path = f"/storage/v1/immutable/{si}/0"

        async def read(range_header: bytes | None) -> Answer:
            return await f.raw.request(b"GET", path, headers=[(b"range", range_header)] if range_header else [])

        middle = await read(b"bytes=5-14")
        assert (middle.status, middle.body, middle.header(b"content-range")) == (206, bytes(range(5, 15)), b"bytes 5-14/*")
        assert middle.header(b"content-type") == b"application/octet-stream"
        tail = await read(b"bytes=15-40")
        assert (tail.status, tail.body, tail.header(b"content-range")) == (206, bytes(range(15, 20)), b"bytes 15-19/*")
        past = await read(b"bytes=20-40")
        assert (past.status, past.body) == (204, b"")
        whole = await read(None)
        assert (whole.status, whole.body) == (200, bytes(range(20)))
        for unsupported in (b"bytes=5-", b"bytes=-5", b"bytes=1-2,4-5", b"bytes=5-2", b"junk"):
            assert (await read(unsupported)).status == 416, unsupported
        assert (await f.raw.request(b"GET", f"/storage/v1/immutable/{si}/1")).status == 404


@pytest_twisted.ensureDeferred
async def test_leases(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        storage_index, si = f.si()
        await upload(f, si, 0, b"x" * 10)
        other = [secret("lease-renew-secret", b"R" * 32), secret("lease-cancel-secret", b"C" * 32)]
        answer = await f.raw.request(b"PUT", f"/storage/v1/lease/{si}", headers=other)
        assert (answer.status, answer.body) == (204, b"")
        assert len((await f.running.server.backend.get_leases(storage_index, 0)).leases) == 2
        _, empty = f.si()
        assert (await f.raw.request(b"PUT", f"/storage/v1/lease/{empty}", headers=LEASE)).status == 404
        assert (await f.raw.request(b"PUT", f"/storage/v1/lease/{si}", headers=LEASE[:1])).status == 400


@pytest_twisted.ensureDeferred
async def test_corruption_advisories(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        await upload(f, si, 0, b"x" * 10)
        path = f"/storage/v1/immutable/{si}"
        assert (await f.raw.cbor(b"POST", f"{path}/0/corrupt", {"reason": "test"})).status == 200
        assert (await f.raw.cbor(b"POST", f"{path}/7/corrupt", {"reason": "test"})).status == 404
        for bad in ({"reason": ""}, {"reason": b"bytes"}, {"reason": "x" * 32766}, {"why": "x"}, 0):
            assert (await f.raw.cbor(b"POST", f"{path}/0/corrupt", bad)).status == 400, bad
        reports = os.listdir(f.running.server.backend.corruption_dir)  # type: ignore[attr-defined]
        assert len(reports) == 1 and reports[0].endswith(f"--{si}-0")
        report = (Path(f.running.server.backend.corruption_dir) / reports[0]).read_text()  # type: ignore[attr-defined]
        assert "type: immutable" in report and report.rstrip().endswith("test")


# --- mutable ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mutable_read_test_write_and_reads(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        storage_index, si = f.si()
        create = write_vector(b"hello", test=[{"offset": 0, "size": 1, "specimen": b""}])
        created = await rtw(f, si, {2: create})
        assert (created.status, created.cbor()) == (200, {"success": True, "data": {}})
        again = await rtw(f, si, {2: create}, [{"offset": 0, "size": 5}])
        assert again.cbor() == {"success": False, "data": {2: [b"hello"]}}
        path = f"/storage/v1/mutable/{si}"
        read = await f.raw.request(b"GET", f"{path}/2", headers=[(b"range", b"bytes=1-3")])
        assert (read.status, read.body, read.header(b"content-range")) == (206, b"ell", b"bytes 1-3/*")
        assert (await f.raw.request(b"GET", f"{path}/2")).body == b"hello"
        assert (await f.raw.request(b"GET", f"{path}/2", headers=[(b"range", b"bytes=9-20")])).status == 204
        assert (await f.raw.request(b"GET", f"{path}/7", headers=[(b"range", b"bytes=0-4")])).status == 404
        assert (await f.raw.request(b"GET", f"{path}/shares")).cbor() == {2}
        wrong = await rtw(f, si, {2: write_vector(b"x")}, headers=[secret("write-enabler", b"W" * 32), *LEASE])
        assert wrong.status == 401 and b"write enabler" in wrong.body
        assert (await f.raw.request(b"GET", f"{path}/2")).body == b"hello"
        assert (await f.raw.cbor(b"POST", f"{path}/2/corrupt", {"reason": "bad"})).status == 200
        assert (await f.raw.cbor(b"POST", f"{path}/9/corrupt", {"reason": "bad"})).status == 404
        deleted = await rtw(f, si, {2: {"test": [], "write": [], "new-length": 0}})
        assert deleted.cbor()["success"] is True
        assert (await f.raw.request(b"GET", f"{path}/shares")).cbor() == set()
        assert await f.running.server.backend.list_shares(storage_index) == {}


@pytest_twisted.ensureDeferred
async def test_mutable_shares_list_only_mutable_shares(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        await upload(f, si, 0, b"x" * 10)
        assert (await f.raw.request(b"GET", f"/storage/v1/mutable/{si}/shares")).cbor() == set()


@pytest_twisted.ensureDeferred
async def test_read_test_write_bodies_are_checked(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        _, si = f.si()
        ok_read = [{"offset": 0, "size": 1}] * 30
        assert (await rtw(f, si, {}, ok_read)).status == 200, "30 read vectors are allowed"
        bad: list[tuple[Mapping[int, Any], Sequence[Any]]] = [
            ({}, [{"offset": 0, "size": 1}] * 31),
            ({0: {"test": [{"offset": 0, "size": 1, "specimen": b""}] * 31, "write": [], "new-length": None}}, []),
            ({0: {"test": [], "write": []}}, []),
            ({0: {"test": [], "write": [], "new-length": None, "x": 1}}, []),
            ({0: {"test": [], "write": [{"offset": 0, "data": "text"}], "new-length": None}}, []),
            ({0: {"test": [{"offset": -1, "size": 1, "specimen": b""}], "write": [], "new-length": None}}, []),
            ({300: write_vector(b"x")}, []),
        ]
        for vectors, read in bad:
            assert (await rtw(f, si, vectors, read)).status == 400, (vectors, read)
        missing_keys = await f.raw.cbor(b"POST", f"/storage/v1/mutable/{si}/read-test-write", {}, MUTABLE)
        assert missing_keys.status == 400 and b"read-vector" in missing_keys.body
        assert (await f.raw.request(b"GET", f"/storage/v1/mutable/{si}/shares")).cbor() == set(), "nothing was written"


# --- TLS, the shared port, and the client --------------------------------------------------------


# --- the batch extension ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_batch_extension_answers_for_many_storage_indexes_in_one_request(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        immutable, si = f.si()
        await upload(f, si, 3, b"x" * 10)
        mutable, msi = f.si()
        await rtw(f, msi, {1: write_vector(b"hello", test=[{"offset": 0, "size": 1, "specimen": b""}])})
        empty, _ = f.si()
        batch = "/lafs/storage/v1/"

        shares = await f.raw.cbor(b"POST", batch + "immutable-shares", [immutable, mutable, empty])
        assert (shares.status, shares.cbor()) == (200, [{3}, set(), set()])
        leases = await f.raw.cbor(
            b"POST", batch + "leases", [[immutable, b"R" * 32, b"C" * 32], [empty, b"R" * 32, b"C" * 32], [mutable, RENEW, CANCEL]]
        )
        assert leases.cbor() == [True, False, True]
        assert len((await f.running.server.backend.get_leases(immutable, 3)).leases) == 2
        assert len((await f.running.server.backend.get_leases(mutable, 1)).leases) == 1, "the same secrets renew"
        reads = await f.raw.cbor(
            b"POST", batch + "mutable-reads", [[mutable, [], [[0, 5], [1, 2]]], [immutable, [], [[0, 1]]], [mutable, [7], [[0, 1]]]]
        )
        assert reads.cbor() == [{1: [b"hello", b"el"]}, {}, {}]
        one_refused = (await f.raw.cbor(b"POST", batch + "mutable-reads", [[mutable, [300], [[0, 1]]], [mutable, [1], [[0, 1]]]])).cbor()
        assert one_refused[1] == {1: [b"h"]} and "share number" in one_refused[0]["error"].lower()
        blocks = await f.raw.cbor(
            b"POST", batch + "immutable-reads", [[immutable, 3, 2, 5], [immutable, 3, 8, 100], [immutable, 3, 10, 5], [immutable, 4, 0, 1]]
        )
        assert blocks.cbor()[:3] == [b"xxxxx", b"xx", b""]
        assert blocks.cbor()[3]["kind"] == "NoSuchShareError"

        for path, body in (
            ("immutable-shares", [b"short"]),
            ("immutable-shares", [immutable] * 257),
            ("immutable-shares", {"storage-indexes": [immutable]}),
            ("leases", [[immutable, b"R" * 31, b"C" * 32]]),
            ("leases", [immutable]),
            ("mutable-reads", [[mutable, [], [[0, 70000]]]]),
            ("mutable-reads", [[mutable, [-1], [[0, 1]]]]),
            ("immutable-reads", [[immutable, 3, 0, 70000]]),
            ("immutable-reads", [[immutable, 3, 0]]),
        ):
            answer = await f.raw.cbor(b"POST", batch + path, body)
            assert answer.status == 400 and answer.body, (path, body)
        assert (await f.raw.request(b"GET", batch + "leases")).status == 405
        assert (await f.raw.request(b"POST", batch + "nothing", b"")).status == 404
        unauthorized = await f.raw.request(b"POST", batch + "immutable-shares", cbor2.dumps([immutable]), auth=False)
        assert unauthorized.status == 401


@asynccontextmanager
async def connected_client(f: Fixture) -> AsyncIterator[StorageServerClient]:
    clients: list[StorageServerClient] = []
    connection = HTTPConnector(reactor).connect(f.running.server_id, f.running.announcement(), clients.append, lambda c: None)
    try:
        await wait_for(lambda: bool(clients), "the http client")
        yield clients[0]
    finally:
        connection.stop()


@pytest_twisted.ensureDeferred
async def test_the_client_batches_calls_made_together_and_goes_one_by_one_to_a_server_without_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routed: list[bytes] = []
    route = HTTPStorageServer._route

    def recording(self: HTTPStorageServer, method: bytes, path: bytes) -> Any:
        routed.append(path)
        return route(self, method, path)

    monkeypatch.setattr(HTTPStorageServer, "_route", recording)
    async with http_server(tmp_path) as f:
        files = [f.si() for _ in range(20)]
        for _, si in files:
            await upload(f, si, 0, b"immutable")
        mutables = [f.si() for _ in range(5)]
        for _, msi in mutables:
            await rtw(f, msi, {2: write_vector(b"mutable data", test=[{"offset": 0, "size": 1, "specimen": b""}])})

        async def all_at_once(client: StorageServerClient) -> list[Any]:
            calls = [client.get_buckets(storage_index) for storage_index, _ in files]
            calls += [client.add_lease(storage_index, b"R" * 32, b"C" * 32) for storage_index, _ in files]
            calls += [client.slot_readv(storage_index, [], [(0, 7), (8, 4)]) for storage_index, _ in mutables]
            calls += [client.get_buckets(os.urandom(16))]
            answers = list(await defer.gatherResults([defer.Deferred.fromCoroutine(c) for c in calls]))
            readers = [r[0] for r in answers[:20]]
            answers += await defer.gatherResults([defer.Deferred.fromCoroutine(r.read(2, 5)) for r in readers])
            return answers

        def expected(answers: list[Any]) -> None:
            assert [set(readers) for readers in answers[:20]] == [{0}] * 20
            assert answers[20:40] == [None] * 20
            assert answers[40:45] == [{2: [b"mutable", b"data"]}] * 5
            assert answers[45] == {}
            assert answers[46:] == [b"immutable"[2:7]] * 20

        async with connected_client(f) as client:
            routed.clear()
            expected(await all_at_once(client))
            assert all(path.startswith(b"/lafs/storage/v1/") for path in routed), routed
            assert len(routed) <= 4 * http_client.BATCHES_OUT + 1, "a few batched requests, not one per call"
            for storage_index, _ in files:
                assert len((await f.running.server.backend.get_leases(storage_index, 0)).leases) == 2
            with pytest.raises(ServerRefusedError) as refused:  # as over Foolscap: the one item fails
                await client.slot_readv(mutables[0][0], [300], [(0, 1)])
            assert refused.value.remote_type == "BadShareNumberError"

        def without_batches(self: HTTPStorageServer, method: bytes, path: bytes) -> Any:
            routed.append(path)
            if path.startswith(b"/lafs/"):
                raise HTTPError(404, "no such resource")  # as a Tahoe server answers
            return route(self, method, path)

        monkeypatch.setattr(HTTPStorageServer, "_route", without_batches)
        async with connected_client(f) as client:
            routed.clear()
            expected(await all_at_once(client))
            tried = [path for path in routed if path.startswith(b"/lafs/")]
            assert 1 <= len(tried) <= 3 * http_client.BATCHES_OUT, "each kind is tried until the first 404, then never again"
            one_by_one = 20 + 20 + 5 * 3 + 1 + 20
            assert len(routed) - len(tried) == one_by_one, "then one request per call (a mutable read lists, then reads)"
            routed.clear()
            assert set(await client.get_buckets(files[0][0])) == {0}
            assert routed == [f"/storage/v1/immutable/{files[0][1]}/shares".encode()]


@pytest_twisted.ensureDeferred
async def test_a_batched_answer_that_makes_no_sense_fails_its_calls_and_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def too_short(self: HTTPStorageServer, request: Any) -> Response:
        return cbor_response([{0}])

    async def not_sets(self: HTTPStorageServer, request: Any) -> Response:
        return cbor_response(["share 0"] * len(cbor2.loads(request.content.getvalue())))

    async with http_server(tmp_path) as f:
        storage_index, si = f.si()
        await upload(f, si, 0, b"immutable")
        async with connected_client(f) as client:
            monkeypatch.setattr(HTTPStorageServer, "batch_immutable_shares", too_short)
            calls = [defer.Deferred.fromCoroutine(client.get_buckets(storage_index)) for _ in range(3)]
            failures = [failure for ok, failure in await defer.DeferredList(calls, consumeErrors=True) if not ok]
            assert len(failures) == 3 and all(f.check(ServerRefusedError) for f in failures)
            assert "expected 3 answers" in str(failures[0].value)
            monkeypatch.setattr(HTTPStorageServer, "batch_immutable_shares", not_sets)
            with pytest.raises(ServerRefusedError, match="unexpected answer"):
                await client.get_buckets(storage_index)
            # The client still takes the server to serve batches: its other kinds go on as batches.
            await client.add_lease(storage_index, RENEW, CANCEL)
            assert len((await f.running.server.backend.get_leases(storage_index, 0)).leases) == 1


@pytest_twisted.ensureDeferred
async def test_a_client_pinning_another_certificate_refuses_the_server(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        wrong_pin = base64.urlsafe_b64encode(b"\x00" * 32).rstrip(b"=").decode()
        imposter = RawClient(f.nurl, pin=wrong_pin)
        with pytest.raises(Exception) as caught:
            await imposter.request(b"GET", "/storage/v1/version")
        assert "SSL" in repr(caught.value) or "certificate" in repr(caught.value).lower()
        await imposter.pool.closeCachedConnections()
        # and the storage client never reports such a server connected
        wrong = NURL(wrong_pin, f.nurl.host, f.nurl.port, f.nurl.swissnum).to_string()
        announcement = {**f.running.announcement(), "anonymous-storage-NURLs": [wrong]}
        connected: list[StorageServerClient] = []
        connection = HTTPConnector(reactor).connect(f.running.server_id, announcement, connected.append, lambda c: None)
        d: defer.Deferred[None] = defer.Deferred()
        reactor.callLater(1.5, d.callback, None)  # type: ignore[attr-defined]
        await d
        connection.stop()
        assert connected == []


@pytest_twisted.ensureDeferred
async def test_foolscap_and_https_share_the_port(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        assert f.running.furl.split("@")[1].split("/")[0] == f"tcp:{f.nurl.host}:{f.nurl.port}"
        tub = NodeTub()
        tub.startService()
        clients: list[StorageServerClient] = []
        connection = FoolscapConnector(tub).connect(f.running.server_id, f.running.announcement(), clients.append, lambda c: None)
        try:
            await wait_for(lambda: bool(clients), "the foolscap client on the shared port")
            storage_index, si = f.si()
            await upload(f, si, 4, b"over http")
            readers = await clients[0].get_buckets(storage_index)
            assert await readers[4].read(0, 100) == b"over http"
        finally:
            connection.stop()
            await tub.stopService()


@pytest_twisted.ensureDeferred
async def test_the_connector_takes_announcements_with_nurls_and_seeds_leases_from_the_furl(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        connector = HTTPConnector(reactor)
        announcement = f.running.announcement()
        assert connector.accepts(announcement)
        assert not connector.accepts({"anonymous-storage-FURL": f.running.furl})
        assert not connector.accepts({**announcement, "anonymous-storage-NURLs": []})
        assert not connector.accepts({**announcement, "anonymous-storage-NURLs": ["pb://nonsense#v=1"]})
        clients: list[StorageServerClient] = []
        connection = connector.connect(f.running.server_id, announcement, clients.append, lambda c: None)
        try:
            await wait_for(lambda: bool(clients), "the http client")
            assert clients[0].lease_seed == f.running.tubid
            assert connection.describe() == "connected"
        finally:
            connection.stop()


@pytest_twisted.ensureDeferred
async def test_a_request_that_cannot_reach_the_server_reports_it_lost(tmp_path: Path) -> None:
    running = await start_storage_server(tmp_path, "http", http=True)
    clients: list[StorageServerClient] = []
    lost: list[StorageServerClient] = []
    connection = HTTPConnector(reactor).connect(running.server_id, running.announcement(), clients.append, lost.append)
    try:
        await wait_for(lambda: bool(clients), "the http client")
        await running.stop()
        with pytest.raises(ServerUnreachableError):
            await clients[0].get_buckets(os.urandom(16))
        assert lost == clients, "the broker hears that the server is gone"
        assert connection.describe() == "Trying to connect"
    finally:
        connection.stop()


class Throttle:
    """How many more bytes of answers a `ThrottledProxy` passes on (None: all of them)."""

    allowance: int | None = None


def throttled_proxy(target_port: int, throttle: Throttle, connections: list[object] | None = None) -> Any:
    """A TCP proxy to 127.0.0.1:``target_port`` that drops server-to-client bytes beyond the throttle's allowance
    (and appends each connection it is given to ``connections``)."""
    from twisted.protocols import portforward

    class Client(portforward.ProxyClient):
        def dataReceived(self, data: bytes) -> None:
            if throttle.allowance is not None:
                data, throttle.allowance = data[: throttle.allowance], max(0, throttle.allowance - len(data))
            if data:
                super().dataReceived(data)

    class ClientFactory(portforward.ProxyClientFactory):
        protocol = Client

    class Server(portforward.ProxyServer):
        clientProtocolFactory = ClientFactory

        def connectionMade(self) -> None:
            if connections is not None:
                connections.append(self)
            super().connectionMade()

    factory = portforward.ProxyFactory("127.0.0.1", target_port)
    factory.protocol = Server
    return reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]


@asynccontextmanager
async def client_through_proxy(
    f: Fixture, throttle: Throttle, opened: list[object] | None = None
) -> AsyncIterator[tuple[list[StorageServerClient], list[StorageServerClient]]]:
    """A connection (0.5 s timeout) to ``f``'s server through a `throttled_proxy`, once connected: the
    clients it has reported connected, and those it has reported lost."""
    proxy = throttled_proxy(f.nurl.port, throttle, opened)
    via_proxy = NURL(f.nurl.spki_hash, "127.0.0.1", proxy.getHost().port, f.nurl.swissnum).to_string()
    announcement = {**f.running.announcement(), "anonymous-storage-NURLs": [via_proxy]}
    connected: list[StorageServerClient] = []
    lost: list[StorageServerClient] = []
    connection = HTTPConnector(reactor, timeout=0.5).connect(f.running.server_id, announcement, connected.append, lost.append)
    try:
        await wait_for(lambda: bool(connected), "the client through the proxy")
        yield connected, lost
    finally:
        connection.stop()
        await proxy.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_server_that_stops_answering_fails_calls_within_the_timeout_and_is_reconnected(tmp_path: Path) -> None:
    async with http_server(tmp_path) as f:
        throttle = Throttle()
        async with client_through_proxy(f, throttle) as (connected, lost):
            client = connected[0]
            storage_index, si = f.si()
            await upload(f, si, 1, os.urandom(3 * 1024 * 1024))
            throttle.allowance = 0  # no answer at all: the headers never come
            with pytest.raises(ServerUnreachableError, match=r"no answer within 0\.5 s"):
                await client.get_buckets(storage_index)
            assert lost == [client]

            throttle.allowance = None
            await wait_for(lambda: len(connected) == 2, "the client to reconnect")
            client = connected[1]
            readers = await client.get_buckets(storage_index)
            throttle.allowance = 64 * 1024  # the headers and a little of the body, then nothing
            with pytest.raises(ServerUnreachableError, match=r"no answer within 0\.5 s"):
                await readers[1].read(0, 3 * 1024 * 1024)
            assert lost[-1] is client


@pytest_twisted.ensureDeferred
async def test_requests_beyond_the_limit_wait_their_turn_and_fail_at_once_when_the_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_REQUESTS connections, reused; ones the server closed are dropped; when the server stops
    answering, the requests queued behind the ones in flight fail with them."""
    monkeypatch.setattr(http_client, "MAX_REQUESTS", 3)
    monkeypatch.setattr(http_client, "BATCHED_READ_LIMIT", 0)  # one request per read
    async with http_server(tmp_path) as f:
        throttle = Throttle()
        opened: list[object] = []
        async with client_through_proxy(f, throttle, opened) as (connected, lost):
            client = connected[0]
            storage_index, si = f.si()
            await upload(f, si, 1, b"share data")
            reader = (await client.get_buckets(storage_index))[1]
            answers = await defer.gatherResults([defer.Deferred.fromCoroutine(reader.read(0, 5)) for _ in range(12)])
            assert answers == [b"share"] * 12
            assert len(opened) <= 3, "never more connections than requests allowed in flight"

            # Connections the server side closes while idle are not used again, and nothing is reported lost.
            for proxied in opened:
                proxied.transport.loseConnection()  # type: ignore[attr-defined]
            await sleep(0.1)
            assert set(await client.get_buckets(storage_index)) == {1}
            await client.add_lease(storage_index, RENEW, CANCEL)
            assert not lost

            reader = (await client.get_buckets(storage_index))[1]
            throttle.allowance = 0
            calls = [defer.Deferred.fromCoroutine(reader.read(0, 5)) for _ in range(9)]
            failures = [str(failure.value) for ok, failure in await defer.DeferredList(calls, consumeErrors=True) if not ok]
            assert len(failures) == 9
            waited = [m for m in failures if "an earlier request got no answer within 0.5 s" in m]
            assert len(waited) == 6, "the requests waiting their turn fail with the first ones, not 0.5 s later each"
            assert all("no answer within 0.5 s" in m for m in failures)
