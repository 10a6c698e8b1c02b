"""Checking and repairing across implementations, on one mixed grid: real Tahoe 1.20 storage servers, a real
client and ours (both 2-of-5, happy 3).  Each checks what the other wrote with the same counts, each repairs
what the other wrote, and what one repaired the other reads and finds healthy."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lafs.core import base32, caps
from tests.cli.nodes import connected, start_node, stop_pids, tahoe, wait_for
from tests.interop import harness

FORMATS = ["CHK", "SDMF", "MDMF"]


@pytest.fixture(scope="module")
def mixed_grid() -> Iterator[harness.RealGrid]:
    base = Path(tempfile.mkdtemp(prefix="lafs-check-grid-"))
    try:
        with harness.real_grid_running(base, num_storage=5, needed=2, happy=3, total=5) as grid:
            yield grid
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def our_url(mixed_grid: harness.RealGrid, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    client = tmp_path_factory.mktemp("ours") / "client"
    web_port = harness.free_port()
    tahoe(
        "create-client",
        f"--introducer={mixed_grid.introducer_furl}",
        f"--webport=tcp:{web_port}:interface=127.0.0.1",
        "--shares-needed=2", "--shares-happy=3", "--shares-total=5",
        str(client),
    )
    pids: list[int] = []
    start_node(client, pids)
    try:
        web_url = f"http://127.0.0.1:{web_port}/"
        wait_for(lambda: connected(web_url) == len(mixed_grid.storage_nodes), 90, "the real storage servers")
        yield web_url
    finally:
        stop_pids(pids)


def bucket(grid: harness.RealGrid, index: int, cap: str) -> Path:
    si = caps.from_string(cap).get_storage_index()
    assert si is not None
    encoded = base32.b2a(si)
    return grid.storage_nodes[index].basedir / "storage" / "shares" / encoded[:2] / encoded


def lose_shares(grid: harness.RealGrid, cap: str, *indexes: int) -> None:
    for index in indexes:
        shutil.rmtree(bucket(grid, index, cap), ignore_errors=True)


def real_check(grid: harness.RealGrid, cap: str, *flags: str) -> dict[str, Any]:
    return json.loads(grid.cli("check", "--raw", *flags, cap).stdout)  # type: ignore[no-any-return]


def our_check(url: str, cap: str, *flags: str) -> dict[str, Any]:
    return json.loads(tahoe("check", "-u", url, "--raw", *flags, cap).stdout)  # type: ignore[no-any-return]


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """Check results with their lists sorted: the order servers answered in is not part of the contract."""
    results = dict(body["results"])
    results["servers-responding"] = sorted(results["servers-responding"])
    results["sharemap"] = {k: sorted(v) for k, v in results["sharemap"].items()}
    return {"storage-index": body["storage-index"], "summary": body["summary"], "results": results}


def put_real(grid: harness.RealGrid, data: bytes, fmt: str) -> str:
    return grid.cli("put", f"--format={fmt}", "-", input=data.decode("latin-1")).stdout.strip()


def put_ours(url: str, tmp_path: Path, data: bytes, fmt: str) -> str:
    source = tmp_path / "source"
    source.write_bytes(data)
    return tahoe("put", "-u", url, f"--format={fmt}", str(source)).stdout.strip()


@pytest.mark.parametrize("fmt", FORMATS)
def test_we_check_and_repair_what_real_tahoe_wrote(mixed_grid: harness.RealGrid, our_url: str, fmt: str) -> None:
    data = bytes(range(97, 123)) * 400
    cap = put_real(mixed_grid, data, fmt)
    assert comparable(our_check(our_url, cap)) == comparable(real_check(mixed_grid, cap))
    lose_shares(mixed_grid, cap, 0, 1)
    theirs, ours = real_check(mixed_grid, cap), our_check(our_url, cap)
    assert comparable(ours) == comparable(theirs)
    assert not ours["results"]["healthy"] and ours["results"]["count-shares-good"] == 3

    repaired = our_check(our_url, cap, "--repair")
    assert repaired["repair-attempted"] and repaired["repair-successful"]
    after = real_check(mixed_grid, cap)
    assert after["results"]["healthy"] and after["results"]["count-shares-good"] == 5
    if fmt != "CHK":
        # We repaired the unchanged version under its own seqnum: the real Tahoe sees one version, seq1.
        assert {name.split("-")[0] for name in after["results"]["sharemap"]} == {"seq1"}
    assert comparable(our_check(our_url, cap)) == comparable(after)
    assert mixed_grid.cli("get", cap).stdout.encode("latin-1") == data
    assert not our_check(our_url, cap, "--repair")["repair-attempted"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_real_tahoe_checks_and_repairs_what_we_wrote(
    mixed_grid: harness.RealGrid, our_url: str, tmp_path: Path, fmt: str
) -> None:
    data = os.urandom(7000)
    cap = put_ours(our_url, tmp_path, data, fmt)
    assert comparable(real_check(mixed_grid, cap)) == comparable(our_check(our_url, cap))
    lose_shares(mixed_grid, cap, 2, 3)
    assert comparable(real_check(mixed_grid, cap)) == comparable(our_check(our_url, cap))
    out = mixed_grid.cli("check", "--repair", cap).stdout
    assert out.startswith("Summary: not healthy\n") and out.endswith(" repair successful\n")
    ours = our_check(our_url, cap)
    assert ours["results"]["healthy"] and ours["results"]["count-shares-good"] == 5
    assert comparable(ours) == comparable(real_check(mixed_grid, cap))
    got = tmp_path / "got"
    tahoe("get", "-u", our_url, cap, str(got))
    assert got.read_bytes() == data


def test_the_cli_prints_what_real_tahoe_prints(mixed_grid: harness.RealGrid, our_url: str) -> None:
    cap = put_real(mixed_grid, b"z" * 3000, "CHK")
    lose_shares(mixed_grid, cap, 4)
    for flags in ([], ["--verify"], ["--add-lease"]):
        theirs = mixed_grid.cli("check", *flags, cap).stdout
        assert tahoe("check", "-u", our_url, *flags, cap).stdout == theirs, flags
    lit = "URI:LIT:oruw46i"
    assert tahoe("check", "-u", our_url, lit).stdout == mixed_grid.cli("check", lit).stdout
