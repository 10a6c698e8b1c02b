"""`tahoe check` and `POST /uri/$FILECAP?t=check` end to end, on a `tahoe local-grid` (5 servers, 3-of-10) in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from lafs.core import base32, caps
from tests.cli.nodes import local_grid, tahoe
from tests.cli.test_put_get import http


@pytest.fixture(scope="module")
def grid_with_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    base = tmp_path_factory.mktemp("checkgrid")
    with local_grid(base, 5) as url:
        yield url, base


def share_dirs(base: Path, cap: str) -> list[Path]:
    """The bucket directory of the file on every storage node that holds shares of it."""
    parsed = caps.from_string(cap)
    si = parsed.get_storage_index()
    assert si is not None
    encoded = base32.b2a(si)
    return sorted(p for p in base.glob(f"**/storage/shares/{encoded[:2]}/{encoded}") if p.is_dir())


def post_check(url: str, cap: str, args: str) -> tuple[int, bytes, dict[str, str]]:
    return http("POST", f"{url}uri/{quote(cap, safe='')}?t=check&{args}", b"")


def put(url: str, data: bytes, fmt: str = "") -> str:
    status, body, _ = http("PUT", f"{url}uri" + (f"?format={fmt}" if fmt else ""), data)
    assert status == 200, body
    return body.decode()


def test_check_a_healthy_immutable_file_in_json_and_on_the_cli(grid_with_dir: tuple[str, Path]) -> None:
    url, _ = grid_with_dir
    cap = put(url, os.urandom(10_000))
    status, body, headers = post_check(url, cap, "output=JSON")
    assert status == 200 and headers["Content-Type"] == "text/plain"
    data = json.loads(body)
    si = base32.b2a(caps.from_string(cap).get_storage_index())  # type: ignore[arg-type]
    assert data["storage-index"] == si and data["summary"] == "Healthy"
    results = data["results"]
    assert list(results) == [
        "count-happiness", "count-shares-good", "count-shares-needed", "count-shares-expected",
        "count-good-share-hosts", "count-corrupt-shares", "list-corrupt-shares", "servers-responding",
        "sharemap", "count-wrong-shares", "count-recoverable-versions", "count-unrecoverable-versions",
        "healthy", "recoverable",
    ]
    assert (results["count-shares-good"], results["count-happiness"], results["count-good-share-hosts"]) == (10, 5, 5)
    assert len(results["servers-responding"]) == 5 and all(s.startswith("v0-") for s in results["servers-responding"])
    out = tahoe("check", "-u", url, cap).stdout
    assert out == f"Summary: Healthy\n storage index: {si}\n good-shares: 10 (encoding is 3-of-10)\n wrong-shares: 0\n"
    raw = tahoe("check", "-u", url, "--raw", "--verify", "--add-lease", cap).stdout
    assert json.loads(raw) == data


def test_check_a_literal_file(grid_with_dir: tuple[str, Path]) -> None:
    url, _ = grid_with_dir
    cap = put(url, b"tiny")
    status, body, _ = post_check(url, cap, "output=JSON&repair=true")
    assert status == 200 and json.loads(body) == {"storage-index": "", "results": {"healthy": True}}
    for flags in ([], ["--repair"], ["--verify", "--add-lease"]):
        assert tahoe("check", "-u", url, *flags, cap).stdout == "Summary: Healthy (LIT)\n storage index: \n"
    status, page, _ = post_check(url, cap, "return_to=/back")
    assert status == 200 and b"File Check Results for LIT file" in page and b'href="/back"' in page


def test_repair_through_the_cli_after_a_server_lost_its_shares(grid_with_dir: tuple[str, Path]) -> None:
    url, base = grid_with_dir
    data = os.urandom(200_000)
    cap = put(url, data)
    si = base32.b2a(caps.from_string(cap).get_storage_index())  # type: ignore[arg-type]
    dirs = share_dirs(base, cap)
    assert len(dirs) == 5
    shutil.rmtree(dirs[0])
    summary = tahoe("check", "-u", url, cap).stdout
    assert summary.startswith("Summary: Not Healthy: 8 shares (enc 3-of-10)\n")
    repaired = tahoe("check", "-u", url, "--repair", cap).stdout
    assert repaired == (
        f"Summary: not healthy\n storage index: {si}\n good-shares: 8 (encoding is 3-of-10)\n"
        " wrong-shares: 0\n repair successful\n"
    )
    again = tahoe("check", "-u", url, "--repair", cap).stdout
    assert again == f"Summary: healthy\n storage index: {si}\n good-shares: 10 (encoding is 3-of-10)\n wrong-shares: 0\n"
    status, body, _ = http("GET", f"{url}uri/{quote(cap, safe='')}")
    assert status == 200 and body == data


@pytest.mark.parametrize("fmt", ["SDMF", "MDMF"])
def test_mutable_repair_through_the_web_keeps_the_seqnum(grid_with_dir: tuple[str, Path], fmt: str) -> None:
    url, base = grid_with_dir
    cap = put(url, os.urandom(5000), fmt)
    shutil.rmtree(share_dirs(base, cap)[0])
    status, body, _ = post_check(url, cap, "output=JSON&repair=true")
    assert status == 200, body
    data = json.loads(body)
    assert data["repair-attempted"] and data["repair-successful"]
    pre, post = data["pre-repair-results"], data["post-repair-results"]
    assert pre["summary"] == "Unhealthy: 8 shares (enc 3-of-10)" and not pre["results"]["healthy"]
    assert post["results"]["count-shares-good"] == 10 and post["summary"] == "Healthy"
    assert {name.split("-")[0] for name in post["results"]["sharemap"]} == {"seq1"}
    assert all(re.fullmatch(r"seq1-[a-z2-7]{4}-sh\d", name) for name in post["results"]["sharemap"])
    status, page, headers = post_check(url, cap, "repair=true&return_to=/uri")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"File Check-And-Repair Results for SI=" in page and b"No repair necessary" in page


def test_the_info_page_offers_a_check_form_and_the_form_posts_a_check(grid_with_dir: tuple[str, Path]) -> None:
    url, _ = grid_with_dir
    cap = put(url, os.urandom(2000))
    status, page, _ = http("GET", f"{url}uri/{quote(cap, safe='')}?t=info")
    assert status == 200
    for field in (b'name="verify"', b'name="repair"', b'name="add-lease"', b'value="check"'):
        assert field in page
    boundary = "xyzzy"
    form = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (("t", "check"), ("verify", "on"), ("output", "JSON"))
    ) + f"--{boundary}--\r\n"
    status, body, _ = http(
        "POST", f"{url}uri/{quote(cap, safe='')}", form.encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200, body
    assert json.loads(body)["results"]["healthy"] is True


def test_check_errors(grid_with_dir: tuple[str, Path]) -> None:
    url, _ = grid_with_dir
    result = tahoe("check", "-u", url, "URI:CHK:aaaa:bbbb:3:10:100", check=False)
    # A malformed cap is refused before anything is sent, in one line that does not repeat it.
    assert result.returncode == 1 and "Invalid cap" in result.stderr and "aaaa" not in result.stderr
    assert result.stderr.count("\n") == 1
    status, body, _ = post_check(url, put(url, os.urandom(100)), "verify=maybe")
    assert status == 400 and b"verify=" in body


def test_deep_check_repair_prints_each_repair_and_survives_an_unrecoverable_file(grid_with_dir: tuple[str, Path]) -> None:
    """Real 1.20 stops with a traceback at an unrecoverable file; ours reports its repair as failed and goes on.
    A repair's outcome has its own line, with -v or without, as Tahoe prints it."""
    url, base = grid_with_dir
    status, body, _ = http("POST", f"{url}uri?t=mkdir", b"")
    assert status == 200, body
    root = body.decode()
    children = {}
    for name in ("damaged", "lost"):
        children[name] = put(url, os.urandom(20_000))
        status, body, _ = http("PUT", f"{url}uri/{quote(root, safe='')}/{name}?t=uri", children[name].encode())
        assert status in (200, 201), body
    shutil.rmtree(share_dirs(base, children["damaged"])[0])
    for directory in share_dirs(base, children["lost"])[:4]:
        shutil.rmtree(directory)
    out = tahoe("deep-check", "-u", url, "--repair", root).stdout
    assert sorted(out.splitlines()[:2]) == [" repair failed", " repair successful"]
    assert out.splitlines(True)[2:] == [
        "done: 3 objects checked\n",
        " pre-repair: 1 healthy, 2 unhealthy\n",
        " 2 repairs attempted, 1 successful, 1 failed\n",
        " post-repair: 2 healthy, 1 unhealthy\n",
    ]
    out = tahoe("deep-check", "-v", "-u", url, "--repair", root).stdout
    assert out.startswith("'<root>': healthy\n")
    assert "'damaged': healthy\n" in out, "repaired by the first run"
    assert "'lost': not healthy\n repair failed\n" in out
    assert out.endswith(" 1 repairs attempted, 0 successful, 1 failed\n post-repair: 2 healthy, 1 unhealthy\n")
