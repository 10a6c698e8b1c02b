"""Mutable files through two gateways on one grid: the real Tahoe 1.20 client and ours, same storage servers.

A real grid (introducer, five real storage nodes, a real client, 3-of-5) gets
our client as a second gateway, introduced by the same introducer.  Each side
writes SDMF and MDMF files through its own web API (create, overwrite, and
for MDMF ``PUT ?offset=``), and the other side reads every version back
byte-exact through its web API, whole and by ``Range``.  Caps made on either
side are checked by the other's cap parser (the real ``tahoe debug dump-cap``,
and our own parser on the real client's caps).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest

from lafs.core import base32, caps
from tests.cli.nodes import stop_pids
from tests.interop import harness

SEG = 128 * 1024
SIZES = [0, 1, 56, SEG - 1, SEG, SEG + 1, 1024 * 1024]
NEEDED, HAPPY, TOTAL, SERVERS = 3, 4, 5, 5


@attrs.define
class TwoGateways:
    real: harness.RealGrid
    ours_url: str

    @property
    def theirs_url(self) -> str:
        return self.real.web_url


def _lafs(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "lafs", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"lafs {' '.join(args)} exited {result.returncode}:\n{result.stderr}")


@pytest.fixture(scope="module")
def gateways(tahoe_oracle: Path) -> Iterator[TwoGateways]:
    base = Path(tempfile.mkdtemp(prefix="lafs-two-gateways-"))
    our_pid: int | None = None
    try:
        (base / "real").mkdir()
        with harness.real_grid_running(base / "real", num_storage=SERVERS, needed=NEEDED, happy=HAPPY, total=TOTAL) as real:
            ours = base / "ours"
            port = harness.free_port()
            _lafs(
                "create-client", f"--introducer={real.introducer_furl}", f"--webport=tcp:{port}:interface=127.0.0.1",
                f"--shares-needed={NEEDED}", f"--shares-happy={HAPPY}", f"--shares-total={TOTAL}", str(ours),
            )
            _lafs("start", str(ours))
            our_pid = int((ours / "running.process").read_text())
            url = f"http://127.0.0.1:{port}/"
            harness.wait_for_servers(url, SERVERS, 120)
            yield TwoGateways(real, url)
    finally:
        if our_pid is not None:
            stop_pids([our_pid])
        shutil.rmtree(base, ignore_errors=True)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def create(gateway: str, fmt: str, data: bytes) -> str:
    status, body = http("PUT", f"{gateway}uri?format={fmt}", data)
    assert status == 200, body
    return body.decode().strip()


def write(gateway: str, cap: str, data: bytes, offset: int | None = None) -> None:
    query = "" if offset is None else f"?offset={offset}"
    status, body = http("PUT", f"{gateway}uri/{quote(cap, safe='')}{query}", data)
    assert status == 200, (status, body)


def assert_reads(gateway: str, cap: str, expected: bytes) -> None:
    """The whole file and a few ranges through ``gateway``, by the write cap and by the read-only cap."""
    readonly = str(caps.from_string_strict(cap).get_readonly().to_string())
    for which in (cap, readonly):
        url = f"{gateway}uri/{quote(which, safe='')}"
        status, body = http("GET", url)
        assert status == 200 and body == expected, (which, status, len(body), len(expected))
        if not expected:
            continue
        size = len(expected)
        for first, last in {(0, 0), (size // 2, min(size - 1, size // 2 + 5000)), (max(0, size - 7), size - 1)}:
            status, body = http("GET", url, headers={"Range": f"bytes={first}-{last}"})
            assert (status, body) == (206, expected[first : last + 1]), (which, first, last, status)


def patch(data: bytearray, offset: int, new: bytes) -> None:
    if offset > len(data):
        data += b"\x00" * (offset - len(data))
    data[offset : offset + len(new)] = new


@pytest.mark.parametrize("fmt", ["SDMF", "MDMF"])
def test_we_read_every_version_the_real_client_writes(gateways: TwoGateways, fmt: str) -> None:
    theirs, ours = gateways.theirs_url, gateways.ours_url
    for size in SIZES:
        data = bytearray(os.urandom(size))
        cap = create(theirs, fmt, bytes(data))
        assert cap.startswith("URI:MDMF:" if fmt == "MDMF" else "URI:SSK:")
        assert_reads(ours, cap, bytes(data))
        # An overwrite that changes the size (and so the segment count).
        data = bytearray(os.urandom(size + SEG // 2 + 3))
        write(theirs, cap, bytes(data))
        assert_reads(ours, cap, bytes(data))
        if fmt == "MDMF":
            # In place: within a segment, across a segment boundary (or up to the end), and growing the
            # file from its end.  (Real Tahoe answers 500 to an offset past the end, which ours fills with zeros.)
            for offset, length in [(len(data) // 2, 4096), (min(SEG, len(data)) - 10, 20), (len(data), 1000)]:
                offset = min(offset, len(data))
                new = os.urandom(length)
                write(theirs, cap, new, offset)
                patch(data, offset, new)
                assert_reads(ours, cap, bytes(data))


@pytest.mark.parametrize("fmt", ["SDMF", "MDMF"])
def test_real_client_reads_and_modifies_what_we_write(gateways: TwoGateways, fmt: str) -> None:
    theirs, ours = gateways.theirs_url, gateways.ours_url
    # 2 MiB + 5 is 17 MDMF segments: our gateway streams a new file in three runs of writes.
    for size in [0, 56, SEG + 1, 2 * 1024 * 1024 + 5]:
        data = bytearray(os.urandom(size))
        cap = create(ours, fmt, bytes(data))
        assert_reads(theirs, cap, bytes(data))
        data = bytearray(os.urandom(size // 2 + 2 * SEG + 1))
        write(ours, cap, bytes(data))
        assert_reads(theirs, cap, bytes(data))
        if fmt == "MDMF":
            new = os.urandom(4096)
            write(ours, cap, new, SEG - 100)
            patch(data, SEG - 100, new)
            assert_reads(theirs, cap, bytes(data))
        # The real client changes it; we read its version, then change it again and it reads ours.
        if fmt == "MDMF":
            new = os.urandom(5000)
            write(theirs, cap, new, len(data) - 1000)
            patch(data, len(data) - 1000, new)
        else:
            data = bytearray(os.urandom(size + 10))
            write(theirs, cap, bytes(data))
        assert_reads(ours, cap, bytes(data))
        data = bytearray(os.urandom(1000))
        write(ours, cap, bytes(data))
        assert_reads(theirs, cap, bytes(data))


def dump_cap_fields(text: str) -> dict[str, str]:
    """``name: value`` lines of a ``dump-cap`` answer, by name (indentation and order differ between the two)."""
    fields = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*([a-z -]+): (\S+)", line)
        if match:
            fields[match.group(1)] = match.group(2)
    return fields


def test_caps_parse_on_both_sides(gateways: TwoGateways) -> None:
    from lafs.cli.debug import describe_cap

    theirs, ours = gateways.theirs_url, gateways.ours_url
    made = {(side, fmt): create(url, fmt, b"x" * 100) for side, url in [("ours", ours), ("theirs", theirs)] for fmt in ["SDMF", "MDMF"]}
    for (side, fmt), write_cap in made.items():
        assert write_cap.startswith("URI:MDMF:" if fmt == "MDMF" else "URI:SSK:"), (side, write_cap)
        cap = caps.from_string_strict(write_cap)
        verifier = cap.get_verify_cap()
        assert verifier is not None
        family = [cap, cap.get_readonly(), verifier]
        for member in family:
            text = member.to_string()
            assert caps.from_string_strict(text).to_string() == text
            real = dump_cap_fields(harness.run_tahoe("debug", "dump-cap", text).stdout)
            assert real and "storage index" in real, (side, text)
            mine = dump_cap_fields("\n".join(describe_cap(member)))
            assert {name: mine.get(name) for name in real} == real, (side, text)
            storage_index = cap.get_storage_index()
            assert storage_index is not None and real["storage index"] == base32.b2a(storage_index)
        # Each gateway derives the same read-only and verify caps from the write cap.
        for url in (ours, theirs):
            status, body = http("GET", f"{url}uri/{quote(write_cap, safe='')}?t=readonly-uri")
            assert (status, body.decode()) == (200, family[1].to_string()), (side, url)
        assert_reads(ours if side == "theirs" else theirs, write_cap, b"x" * 100)
