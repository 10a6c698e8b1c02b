"""The mutable-files issue's acceptance walk-through, on a `tahoe local-grid` in a subprocess.

``tahoe put --format=MDMF`` of a 20 MiB file, ``tahoe put FILE CAP`` over it,
an HTTP ``PUT /uri/$CAP?offset=`` of a 4 KiB range (what ``curl -T`` sends),
and ``tahoe get``: each step gives back exactly the expected bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path
from urllib.parse import quote, urlsplit

from tests.cli.nodes import tahoe
from tests.cli.test_put_get import grid  # noqa: F401  (the module-scoped grid fixture)

MIB = 1024 * 1024


def put_file(web_url: str, target: str, path: Path) -> tuple[int, str]:
    """``curl -T FILE URL``: a PUT whose body is the file, streamed with a Content-Length."""
    parts = urlsplit(web_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        conn.putrequest("PUT", target)
        conn.putheader("Content-Length", str(path.stat().st_size))
        conn.endheaders()
        with path.open("rb") as f:
            while chunk := f.read(MIB):
                conn.send(chunk)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def got(web_url: str, cap: str, out: Path) -> str:
    tahoe("get", "-u", web_url, cap, str(out), timeout=300)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_twenty_mib_mdmf_put_overwrite_offset_put_and_get(grid: str, tmp_path: Path) -> None:  # noqa: F811
    original = tmp_path / "original"
    original.write_bytes(os.urandom(20 * MIB))
    cap = tahoe("put", "-u", grid, "--format=MDMF", str(original), timeout=300).stdout.strip()
    assert cap.startswith("URI:MDMF:")
    out = tmp_path / "out"
    assert got(grid, cap, out) == hashlib.sha256(original.read_bytes()).hexdigest()

    replacement = bytearray(os.urandom(20 * MIB + 12345))
    (tmp_path / "replacement").write_bytes(bytes(replacement))
    assert tahoe("put", "-u", grid, str(tmp_path / "replacement"), cap, timeout=300).stdout.strip() == cap
    assert got(grid, cap, out) == hashlib.sha256(replacement).hexdigest()

    # 4 KiB in the middle, straddling a segment boundary, then 4 KiB past the end (zeros fill the gap).
    for offset in [10 * MIB - 2048, len(replacement) + 100]:
        patch = tmp_path / "patch"
        patch.write_bytes(os.urandom(4096))
        status, body = put_file(grid, f"/uri/{quote(cap, safe='')}?offset={offset}", patch)
        assert status == 200, body
        if offset > len(replacement):
            replacement += b"\x00" * (offset - len(replacement))
        replacement[offset : offset + 4096] = patch.read_bytes()
        assert got(grid, cap, out) == hashlib.sha256(replacement).hexdigest()
    assert out.stat().st_size == 20 * MIB + 12345 + 100 + 4096
