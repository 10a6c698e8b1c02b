"""`tahoe put`/`get` and the /uri web API end to end, against a `tahoe local-grid` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.nodes import free_port, local_grid, tahoe


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_grid(tmp_path_factory.mktemp("grid"), 5) as url:
        yield url


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


@pytest.mark.parametrize("size", [0, 1, 55, 56, 1024 * 1024 + 1])
def test_put_get_round_trip(grid: str, tmp_path: Path, size: int) -> None:
    source = tmp_path / "in"
    source.write_bytes(os.urandom(size))
    cap = tahoe("put", "-u", grid, str(source)).stdout.strip()
    assert cap.startswith("URI:LIT:" if size <= 55 else "URI:CHK:")
    out = tmp_path / "out"
    tahoe("get", "-u", grid, cap, str(out))
    assert out.read_bytes() == source.read_bytes()


def test_put_from_stdin_and_get_to_stdout(grid: str) -> None:
    data = os.urandom(300_000)
    put = subprocess.run([sys.executable, "-m", "lafs", "put", "-u", grid, "-"], input=data, capture_output=True, timeout=120)
    assert put.returncode == 0, put.stderr
    cap = put.stdout.decode().strip()
    get = subprocess.run([sys.executable, "-m", "lafs", "get", "-u", grid, cap], capture_output=True, timeout=120)
    assert get.returncode == 0 and get.stdout == data


def test_web_api_shapes_and_ranges(grid: str) -> None:
    data = os.urandom(200_000)
    status, body, _ = http("PUT", grid + "uri", data)
    assert status == 200
    cap = body.decode()
    quoted = cap.replace(":", "%3A")
    status, body, headers = http("GET", grid + "uri/" + quoted, headers={"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    status, body, _ = http("GET", grid + "uri/" + quoted, headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    # As in Tahoe 1.20: a range starting past the end is 416, a range that cannot
    # be satisfied at all (or does not parse) is ignored and the whole file sent.
    status, message, _ = http("GET", grid + "uri/" + quoted, headers={"Range": "bytes=999999-1000000"})
    assert status == 416 and b"First beyond end of file" in message
    for ignored in ("bytes=999999-", "bytes=5-2", "bytes=abc", "items=0-5"):
        status, body, _ = http("GET", grid + "uri/" + quoted, headers={"Range": ignored})
        assert status == 200 and body == data, ignored
    status, body, _ = http("GET", grid + "uri/" + quoted + "?t=json")
    kind, info = json.loads(body)
    assert kind == "filenode" and info["size"] == len(data) and info["format"] == "CHK" and not info["mutable"]
    assert info["ro_uri"] == cap and info["verify_uri"].startswith("URI:CHK-Verifier:")
    status, body, _ = http("GET", grid + "uri/" + quoted + "?t=info")
    assert status == 200 and b"Storage index" in body
    status, body, headers = http("GET", grid + "uri/" + quoted)
    assert status == 200 and body == data and headers["Content-Length"] == str(len(data))


def test_form_upload(grid: str) -> None:
    boundary = "lafsboundary"
    payload = os.urandom(5000)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    status, page, headers = http("POST", grid + "uri?t=upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    # Like Tahoe, a form upload without when_done= answers with an upload results page.
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"File Uploaded" in page and b"placed on" in page
    found = re.search(rb"URI: <tt><span>(URI:CHK:[^<]+)</span>", page)
    assert found is not None
    status, data, _ = http("GET", grid + "uri/" + found.group(1).decode())
    assert data == payload


def test_a_large_form_upload_is_read_from_the_spool(grid: str) -> None:
    # Over Twisted's in-memory limit, so spooled to a file; 't' comes as a form field, as browsers send it.
    boundary = "----lafs-form-boundary"
    payload = os.urandom(3 * 1024 * 1024 + 7)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nupload\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    # when_done= redirects (urllib follows it), with %(uri)s replaced by the new cap.
    status, data, _ = http(
        "POST", grid + "uri?when_done=/uri/%25(uri)s", body, {"Content-Type": f'multipart/form-data; boundary="{boundary}"'}
    )
    assert status == 200 and data == payload


def test_a_malformed_form_upload_is_refused_with_a_reason(grid: str) -> None:
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n" + b"x" * 200000
    status, message, _ = http("POST", grid + "uri?t=upload", body, {"Content-Type": "multipart/form-data; boundary=b"})
    assert status == 400 and b"without its closing boundary" in message
    status, message, _ = http("POST", grid + "uri?t=upload", b"x", {"Content-Type": "multipart/form-data"})
    assert status == 400 and b"needs a boundary" in message


def test_errors(grid: str, tmp_path: Path) -> None:
    status, body, _ = http("GET", grid + "uri/URI%3ACHK%3Anot-a-cap")
    assert status == 400 and b"CHK cap" in body
    missing = "URI:CHK:" + "a" * 26 + ":" + "a" * 52 + ":3:10:100000"
    status, body, _ = http("GET", grid + "uri/" + missing.replace(":", "%3A"))
    assert status == 410
    assert b"found 0 distinct share(s)" in body and b"3 are needed" in body
    result = tahoe("get", "-u", grid, missing, check=False)
    assert result.returncode == 1 and "410" in result.stderr and "Traceback" not in result.stderr
    result = tahoe("get", "-u", grid, "URI:CHK:garbage", check=False)
    assert result.returncode == 1 and "400" in result.stderr
    result = tahoe("put", "-u", grid, str(tmp_path / "no-such-file"), check=False)
    assert result.returncode == 1 and "cannot read" in result.stderr
    result = tahoe("get", "-u", f"http://127.0.0.1:{free_port()}/", missing, check=False)
    assert result.returncode == 1 and "not running" in result.stderr
