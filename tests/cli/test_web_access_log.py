"""A running node's logs never show a cap, its keys or its storage index, whatever the gateway was asked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from lafs.core import base32, caps
from tests.cli.nodes import connected, free_port, log_files, stop_pids, wait_for

BOUNDARY = "log-test-boundary"


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def form(payload: bytes) -> tuple[bytes, dict[str, str]]:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.bin"\r\n\r\n'.encode()
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def secrets_of(cap_text: str) -> set[str]:
    """Every string that would give away the file: the cap (plain and URL-escaped), each of its
    secret fields, its verify cap and its storage index."""
    cap = caps.from_string_strict(cap_text)
    found = {cap_text, quote(cap_text, safe=""), cap_text.replace(":", "%3A")}
    fields = cap_text.split(":")
    # URI:CHK:key:ueb-hash:k:N:size, URI:LIT:data: the base32 fields are the secrets.
    found.update(field for field in fields[2:4] if not field.isdigit() and len(field) >= 20)
    verifier = cap.get_verify_cap()
    if verifier is not None:
        found.add(verifier.to_string())
    si = cap.get_storage_index()
    if si is not None:
        found.add(base32.b2a(si))
    return found


def test_the_logs_never_show_a_cap(tmp_path: Path) -> None:
    base = tmp_path / "g"
    port = free_port()
    grid = subprocess.Popen(
        [sys.executable, "-m", "lafs", "local-grid", "--storage-nodes", "3", "--webport", str(port), str(base)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    secrets: set[str] = set()
    try:
        wait_for(lambda: connected(url) == 3, 90, "the local grid")
        data = os.urandom(100_000)
        status, cap_bytes = http("PUT", url + "uri", data)
        assert status == 200
        chk = cap_bytes.decode()
        status, lit_bytes = http("PUT", url + "uri", b"a literal file")
        lit = lit_bytes.decode()
        assert chk.startswith("URI:CHK:") and lit.startswith("URI:LIT:")
        body, headers = form(os.urandom(3000))
        status, page = http("POST", url + "uri?t=upload", body, headers)
        found = re.search(rb"URI: <tt><span>(URI:CHK:[^<]+)</span>", page)
        assert status == 200 and found is not None
        posted = found.group(1).decode()
        # A file nobody stored, so a download fails (410) naming what it looked for.
        missing = f"URI:CHK:{base32.b2a(os.urandom(16))}:{base32.b2a(os.urandom(32))}:3:6:100000"
        for cap in (chk, lit, posted, missing):
            secrets |= secrets_of(cap)

        q = quote(chk, safe="")
        status, got = http("GET", url + "uri/" + q)
        assert status == 200 and got == data
        assert http("GET", url + "uri/" + q, headers={"Range": "bytes=10-99"}) == (206, data[10:100])
        assert http("HEAD", url + "uri/" + q)[0] == 200
        assert http("GET", url + "uri?uri=" + q) == (200, data)  # a redirect, followed
        assert http("GET", url + "named/" + q + "/notes.txt") == (200, data)
        assert http("GET", url + "file/" + q + "/a.bin")[0] == 200
        assert http("GET", url + "cap/" + quote(lit, safe=""))[1] == b"a literal file"
        for t in ("json", "info", "uri", "readonly-uri"):
            assert http("GET", url + "uri/" + q + "?t=" + t)[0] == 200, t
        # Errors: their answers may name the cap to its sender, the log must not.
        assert http("GET", url + "uri/" + quote(missing, safe=""))[0] == 410
        assert http("GET", url + "uri/" + q + "/child")[0] == 400
        assert http("GET", url + "uri/" + quote(chk.rsplit(":", 1)[0] + ":x", safe=""))[0] == 400
        verifier = caps.from_string_strict(chk).get_verify_cap()
        assert verifier is not None
        assert http("GET", url + "uri/" + quote(verifier.to_string(), safe=""))[0] == 400
        assert http("GET", url + "?t=" + q)[0] == 400  # a cap where no cap belongs
        assert http("PUT", url + "named/" + q + "/x", b"x")[0] == 400
        assert http("DELETE", url + "uri/" + q)[0] == 501  # Twisted: a method no resource here takes
        # A cap in when_done=, and in a Referer header.
        status, _ = http("POST", url + "uri?t=upload&when_done=" + quote("/uri/" + chk + "?t=json"), *form(b"y" * 100))
        assert status == 200
        assert http("GET", url + "?t=json", headers={"Referer": url + "uri/" + q})[0] == 200
    finally:
        stop_pids([grid.pid])
        grid.wait(30)
    output = grid.stdout.read().decode("utf-8", "replace") if grid.stdout else ""

    logs = {str(path): path.read_text("utf-8", "replace") for path in log_files(base)}
    everything = "\n".join(logs.values())
    # The access log is there (so the search below is looking at it), with its caps censored.
    assert "GET /uri/[CENSORED]" in everything and "GET /named/[CENSORED]" in everything
    assert "/uri?uri=[CENSORED]" in everything
    for name, text in {**logs, "the local-grid output": output}.items():
        leaked = sorted(secret for secret in secrets if secret.lower() in text.lower())
        assert not leaked, f"{name} shows {leaked}"
