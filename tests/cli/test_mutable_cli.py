"""Mutable files through the CLI and the web API, end to end on a `tahoe local-grid` in a subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.cli.nodes import tahoe
from tests.cli.test_put_get import grid, http  # noqa: F401  (the module-scoped grid fixture)

MDMF_SEGMENT = 128 * 1024


def json_of(grid_url: str, cap: str) -> dict[str, object]:
    status, body, _ = http("GET", f"{grid_url}uri/{quote(cap, safe='')}?t=json")
    assert status == 200, body
    kind, info = json.loads(body)
    assert kind == "filenode"
    return dict(info)


def get(grid_url: str, cap: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    status, body, _ = http("GET", f"{grid_url}uri/{quote(cap, safe='')}", headers=headers)
    return status, body


@pytest.mark.parametrize("flags, fmt", [(["--mutable"], "SDMF"), (["--format=SDMF"], "SDMF"), (["--format=MDMF"], "MDMF")])
def test_put_mutable_then_overwrite_and_get(grid: str, tmp_path: Path, flags: list[str], fmt: str) -> None:  # noqa: F811
    first = tmp_path / "first"
    first.write_bytes(os.urandom(3 * MDMF_SEGMENT + 17))
    cap = tahoe("put", "-u", grid, *flags, str(first)).stdout.strip()
    assert cap.startswith("URI:MDMF:" if fmt == "MDMF" else "URI:SSK:")
    info = json_of(grid, cap)
    assert (info["mutable"], info["format"], info["size"], info["rw_uri"]) == (True, fmt, first.stat().st_size, cap)
    assert str(info["ro_uri"]).startswith("URI:MDMF-RO:" if fmt == "MDMF" else "URI:SSK-RO:")
    second = tmp_path / "second"
    second.write_bytes(os.urandom(1000))
    assert tahoe("put", "-u", grid, str(second), cap).stdout.strip() == cap
    out = tmp_path / "out"
    tahoe("get", "-u", grid, cap, str(out))
    assert out.read_bytes() == second.read_bytes()
    tahoe("get", "-u", grid, str(info["ro_uri"]), str(out))
    assert out.read_bytes() == second.read_bytes()
    status, body = get(grid, cap, {"Range": "bytes=10-19"})
    assert (status, body) == (206, second.read_bytes()[10:20])


def test_mdmf_updates_in_place_through_offset(grid: str) -> None:  # noqa: F811
    original = os.urandom(2 * MDMF_SEGMENT + 100)
    status, cap_bytes, _ = http("PUT", f"{grid}uri?format=MDMF", original)
    assert status == 200
    cap = cap_bytes.decode()
    expected = bytearray(original)
    for offset, size in [(0, 10), (MDMF_SEGMENT - 5, 4096), (len(original) - 3, 10), (len(original) + 20, 5)]:
        patch = os.urandom(size)
        status, body, _ = http("PUT", f"{grid}uri/{quote(cap, safe='')}?offset={offset}", patch)
        assert status == 200, body
        if offset > len(expected):
            expected += b"\x00" * (offset - len(expected))
        expected[offset : offset + size] = patch
        assert get(grid, cap) == (200, bytes(expected))
    assert json_of(grid, cap)["size"] == len(expected)


def test_form_uploads_make_and_replace_mutable_files(grid: str) -> None:  # noqa: F811
    status, body, _ = http("POST", f"{grid}uri?t=upload&format=mdmf&file=hello")
    assert status == 200, body
    cap = body.decode()
    assert cap.startswith("URI:MDMF:") and get(grid, cap) == (200, b"hello")
    status, body, _ = http("POST", f"{grid}uri/{quote(cap, safe='')}?t=upload&file=bye")
    assert (status, body.decode()) == (200, cap)
    assert get(grid, cap) == (200, b"bye")


def test_bad_writes_are_refused_and_change_nothing(grid: str, tmp_path: Path) -> None:  # noqa: F811
    status, sdmf, _ = http("PUT", f"{grid}uri?mutable=true", b"sdmf contents")
    assert status == 200
    sdmf_cap = sdmf.decode()
    status, mdmf, _ = http("PUT", f"{grid}uri?format=MDMF", b"mdmf contents")
    mdmf_cap = mdmf.decode()
    readonly = str(json_of(grid, mdmf_cap)["ro_uri"])
    cases = [
        (f"uri/{quote(sdmf_cap, safe='')}?offset=0", "needs an MDMF file"),
        (f"uri/{quote(mdmf_cap, safe='')}?offset=-1", "negative"),
        (f"uri/{quote(mdmf_cap, safe='')}?offset=ten", "not a whole number"),
        (f"uri/{quote(readonly, safe='')}", "read-only cap"),
        (f"uri/{quote(readonly, safe='')}?offset=0", "read-only cap"),
        ("uri/URI%3AMDMF%3Anot-a-cap", "Invalid cap"),
        (f"uri/{quote(mdmf_cap[:-4], safe='')}", "Invalid cap"),
    ]
    for path, message in cases:
        status, body, _ = http("PUT", grid + path, b"XXXX")
        assert status == 400 and message in body.decode(), (path, status, body)
    assert get(grid, sdmf_cap) == (200, b"sdmf contents")
    assert get(grid, mdmf_cap) == (200, b"mdmf contents")
    chk = tmp_path / "chk"
    chk.write_bytes(os.urandom(100))
    chk_cap = tahoe("put", "-u", grid, str(chk)).stdout.strip()
    status, body, _ = http("PUT", f"{grid}uri/{quote(chk_cap, safe='')}", b"new")
    assert status == 400 and "immutable" in body.decode()


def test_cli_refuses_what_cannot_be_written(grid: str, tmp_path: Path) -> None:  # noqa: F811
    local = tmp_path / "f"
    local.write_bytes(b"data")
    status, mdmf, _ = http("PUT", f"{grid}uri?format=MDMF", b"mdmf contents")
    assert status == 200
    readonly = str(json_of(grid, mdmf.decode())["ro_uri"])
    for args, message in [
        (["put", str(local), readonly], "not a mutable file's write cap"),
        (["put", "--format=CHK", "--mutable", str(local)], "contradict"),
        (["put", "--format=XYZ", str(local)], "--format must be"),
        (["put", "--mutable", str(local), mdmf.decode()], "cannot be used to replace"),
        (["get", "URI:SSK:garbage"], "Invalid cap"),
    ]:
        result = tahoe(args[0], "-u", grid, *args[1:], check=False)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr
