"""The gateway spools and hashes a PUT body in a worker thread while it arrives."""

from __future__ import annotations

import errno
import io
import os

import pytest
import pytest_twisted
from twisted.web import http

from lafs.immutable.upload import convergence_hasher_for, convergent_key
from lafs.web import request as web_request
from lafs.web.common import WebError
from lafs.web.request import HashingBody
from lafs.web.unlinked import UnlinkedUploads

SECRET = b"s" * 32


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")


def body_for(data_size: int, spool: object, producer: object = None) -> HashingBody:
    return HashingBody(spool, convergence_hasher_for(data_size, 3, 10, 128 * 1024, SECRET), data_size, producer)


@pytest_twisted.ensureDeferred
async def test_spooled_body_and_key_match_the_file() -> None:
    data = os.urandom(3 * web_request.HAND_OFF_BYTES + 12345)
    spool = io.BytesIO()
    body = body_for(len(data), spool)
    for start in range(0, len(data), 65536):
        body.write(data[start : start + 65536])
    await body.finished()
    assert spool.getvalue() == data
    assert body.convergent_key() == convergent_key(BytesSource(data), 3, 10, 128 * 1024, SECRET)


@pytest_twisted.ensureDeferred
async def test_no_key_before_the_body_is_all_spooled() -> None:
    data = os.urandom(2 * web_request.HAND_OFF_BYTES)
    body = body_for(len(data), io.BytesIO())
    body.write(data)
    assert body.convergent_key() is None
    await body.finished()
    assert body.convergent_key() is not None


@pytest_twisted.ensureDeferred
async def test_reading_pauses_while_the_spool_lags_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_request, "MAX_UNSPOOLED_BYTES", 2 * web_request.HAND_OFF_BYTES)
    producer = Producer()
    data = os.urandom(8 * web_request.HAND_OFF_BYTES)
    body = body_for(len(data), io.BytesIO(), producer)
    # Everything arrives at once, faster than any thread can spool it.
    for start in range(0, len(data), web_request.HAND_OFF_BYTES):
        body.write(data[start : start + web_request.HAND_OFF_BYTES])
    assert producer.calls == ["pause"]
    await body.finished()
    assert producer.calls == ["pause", "resume"]
    assert body.convergent_key() is not None


class FullDisk(io.BytesIO):
    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest_twisted.ensureDeferred
async def test_a_full_disk_is_reported_not_uploaded() -> None:
    data = os.urandom(web_request.HAND_OFF_BYTES + 1)
    body = body_for(len(data), FullDisk())
    body.write(data)
    await body.finished()
    assert body.spool_error == "No space left on device"
    assert body.convergent_key() is None
    with pytest.raises(WebError) as caught:
        await UnlinkedUploads(node_maker=None, broker=None).upload(None, body)  # type: ignore[arg-type]
    assert caught.value.code == http.INSUFFICIENT_STORAGE_SPACE
    assert "could not spool the upload: No space left on device" in str(caught.value)
