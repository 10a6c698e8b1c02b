"""Immutable files across implementations: the same caps as real Tahoe 1.20, and each reads the other's uploads."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli.nodes import connected, start_node, stop_pids, tahoe, wait_for
from tests.interop import harness

SIZES = [56, 1000, 131073, 1024 * 1024, 1024 * 1024 + 1, 2 * 1024 * 1024 + 12345]


@pytest.fixture(scope="module")
def our_client(real_grid: harness.RealGrid, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Our client node on the real grid, with the real client's convergence secret and encoding."""
    client = tmp_path_factory.mktemp("ours") / "client"
    web_port = harness.free_port()
    tahoe(
        "create-client",
        f"--introducer={real_grid.introducer_furl}",
        f"--webport=tcp:{web_port}:interface=127.0.0.1",
        "--shares-needed=1", "--shares-happy=1", "--shares-total=3",
        str(client),
    )
    secret = (real_grid.client_dir / "private" / "convergence").read_text()
    (client / "private").mkdir(exist_ok=True)
    (client / "private" / "convergence").write_text(secret)
    pids: list[int] = []
    start_node(client, pids)
    try:
        web_url = f"http://127.0.0.1:{web_port}/"
        wait_for(lambda: connected(web_url) == len(real_grid.storage_nodes), 90, "the real storage servers")
        yield str(client)
    finally:
        stop_pids(pids)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("files")
    made = {}
    for size in SIZES:
        path = base / f"f{size}"
        path.write_bytes(os.urandom(size))
        made[size] = path
    return made


def test_same_caps_as_real_tahoe(real_grid: harness.RealGrid, our_client: str, files: dict[int, Path]) -> None:
    for size, path in files.items():
        real_cap = real_grid.cli("put", str(path)).stdout.strip()
        our_cap = tahoe("-d", our_client, "put", str(path)).stdout.strip()
        assert our_cap == real_cap, f"size {size}"


def test_real_tahoe_reads_what_we_upload(real_grid: harness.RealGrid, our_client: str, tmp_path: Path) -> None:
    source = tmp_path / "ours.bin"
    source.write_bytes(os.urandom(1_500_000))
    # Fresh random bytes: the real grid cannot already hold these shares.
    cap = tahoe("-d", our_client, "put", str(source)).stdout.strip()
    out = tmp_path / "real-read.bin"
    real_grid.cli("get", cap, str(out))
    assert out.read_bytes() == source.read_bytes()


def test_we_read_what_real_tahoe_uploads(real_grid: harness.RealGrid, our_client: str, tmp_path: Path) -> None:
    source = tmp_path / "real.bin"
    source.write_bytes(os.urandom(2_500_000))
    cap = real_grid.cli("put", str(source)).stdout.strip()
    out = tmp_path / "our-read.bin"
    tahoe("-d", our_client, "get", cap, str(out))
    assert out.read_bytes() == source.read_bytes()
    # A range read through our gateway.
    url = (Path(our_client) / "node.url").read_text().strip() + "uri/" + cap.replace(":", "%3A")
    request = urllib.request.Request(url, headers={"Range": "bytes=1000000-1000099"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 206
        assert response.read() == source.read_bytes()[1000000:1000100]


RANGES = [
    "bytes=10-20", "bytes=10-", "bytes=-5", "bytes=-0", "bytes=-2000000", "bytes=10-3000000", "bytes= 10-20",
    "bytes=1 -3", "bytes=+1-3", "bytes=0-0,5-6", "bytes=1-3,5-2", "bytes=1-1,", "bytes=5-2", "bytes=abc",
    "bytes=", "bytes=-", "bytes=1-2-3", "Bytes=10-12", "items=0-5", "bytes=999999-", "bytes=999999-1000005",
]


@pytest.mark.parametrize("size", [20, 1_000_000])
def test_range_headers_are_read_as_real_tahoe_reads_them(real_grid: harness.RealGrid, our_client: str, size: int) -> None:
    data = os.urandom(size)
    real_url = real_grid.web_url
    our_url = (Path(our_client) / "node.url").read_text().strip()

    def fetch(base: str, cap: str, header: str) -> tuple[int, bytes, str | None]:
        request = urllib.request.Request(base + "uri/" + cap.replace(":", "%3A"), headers={"Range": header})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), response.headers.get("content-range")
        except urllib.error.HTTPError as e:
            return e.code, e.read().strip(), None

    put = urllib.request.Request(real_url + "uri", data=data, method="PUT")
    with urllib.request.urlopen(put, timeout=60) as response:
        cap = response.read().decode()
    for header in RANGES:
        assert fetch(our_url, cap, header) == fetch(real_url, cap, header), header


def test_download_headers_match_real_tahoe(real_grid: harness.RealGrid, our_client: str) -> None:
    real_url = real_grid.web_url
    our_url = (Path(our_client) / "node.url").read_text().strip()
    put = urllib.request.Request(real_url + "uri", data=os.urandom(5000), method="PUT")
    with urllib.request.urlopen(put, timeout=60) as response:
        path = "uri/" + response.read().decode().replace(":", "%3A")
    compared = ("content-type", "content-encoding", "content-length", "etag", "x-frame-options", "referrer-policy")

    def fetch(base: str, suffix: str, headers: dict[str, str]) -> tuple[int, dict[str, str | None]]:
        request = urllib.request.Request(base + path + suffix, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, got = response.status, response.headers
        except urllib.error.HTTPError as e:
            status, got = e.code, e.headers
        return status, {name: got.get(name) for name in compared if status < 400 or name.startswith(("x-", "ref"))}

    etag = fetch(real_url, "", {})[1]["etag"]
    assert etag
    for suffix, headers in [
        ("", {}), ("?filename=a.jpg", {}), ("?filename=A.PDF", {}), ("?filename=a.tar.gz", {}), ("?filename=noext", {}),
        ("?t=json", {}), ("?t=uri", {}), ("?t=readonly-uri", {}), ("", {"If-None-Match": etag}), ("/child", {}),
    ]:
        assert fetch(our_url, suffix, headers) == fetch(real_url, suffix, headers), (suffix, headers)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_form_uploads_answer_as_real_tahoe_does(real_grid: harness.RealGrid, our_client: str) -> None:
    payload = os.urandom(3000)
    boundary = "interop-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'.encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    opener = urllib.request.build_opener(_NoRedirects)
    our_url = (Path(our_client) / "node.url").read_text().strip()

    def post(base: str, query: str) -> tuple[int, str | None, str | None, bytes]:
        request = urllib.request.Request(base + "uri" + query, data=body, method="POST", headers=headers)
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, response.headers.get("location"), response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("location"), e.headers.get_content_type(), b""

    theirs, ours = post(real_grid.web_url, "?t=upload"), post(our_url, "?t=upload")
    assert theirs[0] == ours[0] == 200 and theirs[2] == ours[2] == "text/html"
    their_cap = re.search(rb"URI:CHK:[a-z0-9]+:[a-z0-9]+:1:3:3000", theirs[3])
    assert their_cap is not None and their_cap.group(0) in ours[3]
    for query in ("?t=upload&when_done=/done", "?t=upload&when_done=next%3Fcap%3D%25(uri)s"):
        theirs, ours = post(real_grid.web_url, query), post(our_url, query)
        assert (theirs[0], theirs[1]) == (ours[0], ours[1].replace(our_url, real_grid.web_url) if ours[1] else None), query


def test_named_urls_serve_as_real_tahoe_does(real_grid: harness.RealGrid, our_client: str) -> None:
    data = os.urandom(4000)
    put = urllib.request.Request(real_grid.web_url + "uri", data=data, method="PUT")
    with urllib.request.urlopen(put, timeout=60) as response:
        quoted = response.read().decode().replace(":", "%3A")
    our_url = (Path(our_client) / "node.url").read_text().strip()

    def fetch(base: str, path: str, method: str = "GET") -> tuple[int, str | None, bytes]:
        request = urllib.request.Request(base + path, method=method, data=b"x" if method == "PUT" else None)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.headers.get("content-type"), response.read()
        except urllib.error.HTTPError as e:
            return e.code, None, b""

    for path, method in [
        (f"named/{quoted}/photo.jpg", "GET"), (f"named/{quoted}/dir/notes.txt", "GET"), (f"file/{quoted}/a.pdf", "GET"),
        (f"named/{quoted}/photo.jpg", "HEAD"), (f"named/{quoted}/x.txt", "PUT"), ("named/", "GET"),
    ]:
        assert fetch(our_url, path, method) == fetch(real_grid.web_url, path, method), (path, method)
