"""Deep-check and repair across implementations, on one mixed grid: three real Tahoe 1.20 storage servers
and two of ours, a real client and ours (2-of-5, happy 3).

Each client writes the same shape of tree (directories, CHK, SDMF, MDMF and LIT files, a subdirectory
linked twice and a cycle); two servers, one of each kind, lose every share of it; both clients' deep-checks
agree object by object; the other implementation's ``deep-check --repair`` repairs all of it, the writer's
own deep-check then finds every object healthy with five shares, a second repair has nothing to do, and
every file reads back byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from lafs.core import base32
from tests.cli.nodes import connected, listen_args, start_node, stop_pids, tahoe, wait_for
from tests.interop import harness

Run = Callable[..., str]
"""A ``tahoe`` command of one implementation, against its own client; returns stdout."""


@attrs.define
class MixedGrid:
    real: harness.RealGrid
    our_url: str
    storage_dirs: list[Path]
    """Every storage node's directory: the three real ones, then our two."""

    def real_cli(self, *args: str) -> str:
        return self.real.cli(*args).stdout

    def our_cli(self, *args: str) -> str:
        return tahoe(args[0], "-u", self.our_url, *args[1:], timeout=300).stdout


@pytest.fixture(scope="module")
def mixed(tahoe_oracle: Path) -> Iterator[MixedGrid]:
    base = Path(tempfile.mkdtemp(prefix="lafs-deep-check-grid-"))
    pids: list[int] = []
    try:
        with harness.real_grid_running(base, num_storage=3, needed=2, happy=3, total=5) as real:
            furl = real.introducer_furl
            ours = []
            for index in range(2):
                node = base / f"our-storage{index}"
                tahoe("create-node", *listen_args(), "--webport=none", f"--nickname=ours{index}", f"--introducer={furl}", str(node))
                ours.append(node)
            client = base / "our-client"
            web_port = harness.free_port()
            tahoe(
                "create-client", f"--introducer={furl}", f"--webport=tcp:{web_port}:interface=127.0.0.1",
                "--shares-needed=2", "--shares-happy=3", "--shares-total=5", str(client),
            )
            for node in [*ours, client]:
                start_node(node, pids)
            our_url = f"http://127.0.0.1:{web_port}/"
            wait_for(lambda: connected(our_url) == 5, 90, "our client to reach all five servers")
            wait_for(lambda: connected(real.web_url) == 5, 90, "the real client to reach all five servers")
            yield MixedGrid(real, our_url, [node.basedir for node in real.storage_nodes] + ours)
    finally:
        stop_pids(pids)
        shutil.rmtree(base, ignore_errors=True)


FILES = {
    "file0": os.urandom(3000),
    "file1": os.urandom(70_000),
    "sub/file2": b"shared subdirectory file\n" * 40,
    "sub/tiny": b"a literal file",
}
MUTABLE = {"sub/sdmf": ("SDMF", os.urandom(5000)), "mdmf": ("MDMF", os.urandom(9000))}


def write_tree(run: Run, tmp_path: Path) -> str:
    """The test tree, written through one implementation; returns the root directory's write cap."""
    root = run("mkdir").strip()
    run("mkdir", f"{root}/sub")
    for name, data in FILES.items():
        source = tmp_path / name.replace("/", "-")
        source.write_bytes(data)
        run("put", str(source), f"{root}/{name}")
    for name, (fmt, data) in MUTABLE.items():
        source = tmp_path / name.replace("/", "-")
        source.write_bytes(data)
        run("put", f"--format={fmt}", str(source), f"{root}/{name}")
    run("ln", f"{root}/sub", f"{root}/sub-again")  # a shared subdirectory: checked once
    run("ln", root, f"{root}/sub/up")  # a cycle
    return root


OBJECTS = 8
"""The tree's distinct objects: two directories, four immutable files (one a LIT), two mutable ones."""


def lose_shares(grid: MixedGrid, run: Run, root: str, *servers: int) -> int:
    """Delete every share of the tree from ``servers``; returns how many share files went."""
    lost = 0
    for line in run("manifest", "--storage-index", root).split():
        encoded = line.strip()
        base32.a2b(encoded)  # a storage index, nothing else
        for index in servers:
            bucket = grid.storage_dirs[index] / "storage" / "shares" / encoded[:2] / encoded
            lost += len(list(bucket.glob("[0-9]*")))
            shutil.rmtree(bucket, ignore_errors=True)
    return lost


def per_object(run: Run, root: str, *flags: str) -> dict[tuple[str, ...], tuple[bool, int]]:
    """Each object's (healthy, good shares) from a ``deep-check --raw``; LIT files have no counts."""
    found = {}
    for line in run("deep-check", "--raw", *flags, root).splitlines():
        unit = json.loads(line)
        if unit.get("type") == "stats":
            continue
        results = unit["check-results"]["results"] if "check-results" in unit else unit["post-repair-results"]["results"]
        found[tuple(unit["path"])] = (bool(results["healthy"]), int(results.get("count-shares-good", 0)))
    return found


def read_back(run: Run, root: str, tmp_path: Path) -> None:
    expected = {**FILES, **{name: data for name, (_, data) in MUTABLE.items()}}
    for name, data in expected.items():
        target = tmp_path / "got"
        run("get", f"{root}/{name}", str(target))
        assert target.read_bytes() == data, name


def deep_check_repair_round(grid: MixedGrid, writer: Run, repairer: Run, tmp_path: Path) -> dict[str, str]:
    """Write through ``writer``, damage, repair through ``repairer``; returns the outputs seen."""
    root = write_tree(writer, tmp_path)
    healthy = writer("deep-check", root)
    assert repairer("deep-check", root) == healthy
    assert healthy == f"done: {OBJECTS} objects checked, {OBJECTS} healthy, 0 unhealthy\n"

    assert lose_shares(grid, writer, root, 0, 3) == 2 * (OBJECTS - 1)
    by_writer, by_repairer = per_object(writer, root), per_object(repairer, root)
    assert by_writer == by_repairer
    assert len(by_writer) == OBJECTS
    assert sorted(by_writer.values()) == [(False, 3)] * (OBJECTS - 1) + [(True, 0)]
    unhealthy = writer("deep-check", root)
    assert repairer("deep-check", root) == unhealthy

    repaired = repairer("deep-check", "--repair", root)
    assert per_object(writer, root) == {path: (True, 0 if good == 0 else 5) for path, (_, good) in by_writer.items()}
    again = repairer("deep-check", "--repair", root)
    assert again == writer("deep-check", "--repair", root)
    read_back(repairer, root, tmp_path)
    read_back(writer, root, tmp_path)
    return {"unhealthy": unhealthy, "repaired": repaired, "again": again}


def test_each_deep_check_repairs_what_the_other_wrote_and_prints_the_same(mixed: MixedGrid, tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "real").mkdir()
    real_repairs_ours = deep_check_repair_round(mixed, mixed.our_cli, mixed.real_cli, tmp_path / "ours")
    ours_repairs_real = deep_check_repair_round(mixed, mixed.real_cli, mixed.our_cli, tmp_path / "real")
    # The same shape of tree with the same damage: the same words from both, including the repair lines.
    assert ours_repairs_real == real_repairs_ours
    assert real_repairs_ours["repaired"] == " repair successful\n" * (OBJECTS - 1) + (
        f"done: {OBJECTS} objects checked\n"
        f" pre-repair: 1 healthy, {OBJECTS - 1} unhealthy\n"
        f" {OBJECTS - 1} repairs attempted, {OBJECTS - 1} successful, 0 failed\n"
        f" post-repair: {OBJECTS} healthy, 0 unhealthy\n"
    )


def test_deep_commands_print_what_real_tahoe_prints_over_a_wide_directory(mixed: MixedGrid) -> None:
    """231 objects: the ``N objects checked..`` lines every hundred objects, with and without -v."""
    children = {f"f{i}": ["filenode", {"ro_uri": "URI:LIT:" + base32.b2a(b"x%d" % i)}] for i in range(230)}
    request = urllib.request.Request(
        mixed.our_url + "uri?t=mkdir-with-children", data=json.dumps(children).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        root = response.read().decode().strip()
    for args in (
        ["deep-check"],
        ["deep-check", "-v"],
        ["deep-check", "--repair"],
        ["deep-check", "-v", "--repair"],
        ["deep-check", "--verify", "--add-lease"],
        ["manifest", "--storage-index"],
        ["manifest"],
        ["stats"],
    ):
        theirs = mixed.real_cli(*args, root)
        assert mixed.our_cli(*args, root) == theirs, args
        if args[0] == "deep-check":
            assert "100 objects checked..\n" in theirs and "200 objects checked..\n" in theirs
