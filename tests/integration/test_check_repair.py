"""Checking, verifying and repairing files (LIT, CHK, SDMF, MDMF) on an in-process grid of 10 servers, 3-of-10."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import attrs
import pytest
import pytest_twisted

from lafs.client.nodemaker import ImmutableFileNode, LiteralFileNode
from lafs.core import base32, caps
from lafs.core.check_results import CheckResults
from lafs.core.codec import immutable_segment_layout
from lafs.core.params import ClientSecrets
from lafs.core.share_layout import ImmutableShareOffsets
from lafs.mutable.filenode import MutableFileNode
from tests.integration.test_immutable_engine import SECRET, SEGMENT, WORKERS, download, upload
from tests.mutable_grid import SEG, corrupt_field_offset, flip, read, share_bytes
from tests.storage_grid import Grid, grid

__all__ = ["grid"]  # the fixture

CHECKER_SECRETS = ClientSecrets(b"k" * 32, SECRET)
"""Another client's lease secret: its leases are new ones, next to the uploader's."""


def immutable_share_data(raw: bytes) -> bytes:
    """An immutable share file without its header and leases (a repair's allocate_buckets adds leases, as Tahoe's does)."""
    (leases,) = struct.unpack(">L", raw[8:12])
    return raw[12 : len(raw) - 72 * leases]


def holders(results: CheckResults) -> dict[str, set[int]]:
    placements: dict[str, set[int]] = {}
    for name, servers in results.sharemap.items():
        for server in servers:
            placements.setdefault(server, set()).add(int(name.rsplit("sh", 1)[-1]))
    return placements


def chk_node(grid: Grid, cap: caps.CHKFileCap, secrets: ClientSecrets = CHECKER_SECRETS) -> ImmutableFileNode:
    return ImmutableFileNode(cap, grid.permuted, WORKERS, secrets, happy=7)


async def uploaded(grid: Grid, data: bytes) -> caps.CHKFileCap:
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    return cap


@pytest_twisted.ensureDeferred
async def test_a_literal_file_is_always_healthy_and_has_no_storage_index() -> None:
    node = LiteralFileNode(caps.LiteralFileCap(b"tiny"))
    results = await node.check(verify=True, add_lease=True)
    assert results.healthy and results.to_json() == {
        "storage-index": "",
        "results": {"healthy": True},
    }
    repaired = await node.check_and_repair()
    assert not repaired.repair_attempted and repaired.post.healthy


def same_results(reported: CheckResults, checked: CheckResults) -> bool:
    """Equal but for the order the servers answered in."""
    def answered_in_any_order(results: CheckResults) -> CheckResults:
        return attrs.evolve(results, servers_responding=tuple(sorted(results.servers_responding)))

    return answered_in_any_order(reported) == answered_in_any_order(checked)


@pytest_twisted.ensureDeferred
async def test_a_healthy_immutable_file_reports_tahoes_counts(grid: Grid) -> None:
    cap = await uploaded(grid, os.urandom(3 * SEGMENT + 1))
    results = await chk_node(grid, cap).check()
    assert results.healthy and results.recoverable and results.summary == "Healthy"
    body = results.to_json()
    assert body["storage-index"] == base32.b2a(cap.get_storage_index())
    r = body["results"]
    assert (r["count-shares-good"], r["count-shares-needed"], r["count-shares-expected"]) == (
        10,
        3,
        10,
    )
    assert (r["count-happiness"], r["count-good-share-hosts"], r["count-corrupt-shares"]) == (
        10,
        10,
        0,
    )
    assert (
        r["count-wrong-shares"],
        r["count-recoverable-versions"],
        r["count-unrecoverable-versions"],
    ) == (0, 1, 0)
    assert sorted(r["sharemap"], key=int) == [str(n) for n in range(10)]
    assert sorted(r["servers-responding"]) == sorted(c.server_id for c in grid.clients)
    assert r["list-corrupt-shares"] == []


@pytest_twisted.ensureDeferred
async def test_immutable_repair_after_four_servers_are_replaced_restores_ten_happy_shares(grid: Grid, tmp_path: Path) -> None:
    data = os.urandom(5 * SEGMENT + 7)
    cap = await uploaded(grid, data)
    si = cap.get_storage_index()
    kept = {p: immutable_share_data(p.read_bytes()) for p in grid.share_files(si)}
    await grid.replace([0, 3, 5, 8])
    node = chk_node(grid, cap)
    before = await node.check()
    assert not before.healthy and before.recoverable
    assert before.summary == "Not Healthy: 6 shares (enc 3-of-10)"
    assert (before.count_shares_good, before.count_good_share_hosts, before.count_happiness) == (
        6,
        6,
        6,
    )

    repaired = await node.check_and_repair()
    assert repaired.repair_attempted and repaired.repair_successful, repaired.repair_problem
    assert repaired.pre == before
    post = repaired.post
    assert post.healthy and (
        post.count_shares_good,
        post.count_happiness,
        post.count_good_share_hosts,
    ) == (10, 10, 10)
    new_ids = {grid.clients[i].server_id for i in (0, 3, 5, 8)}
    assert set(holders(post)) >= new_ids, "the missing shares went to the servers without one"
    assert same_results(post, await node.check()), "the post-repair results are what a check then finds"
    for path, raw in kept.items():
        if path.exists():
            assert immutable_share_data(path.read_bytes()) == raw, "good shares are never touched"
    assert await download(grid, cap) == data

    again = await node.check_and_repair()
    assert not again.repair_attempted and again.post.healthy
    assert sorted(p.name for p in grid.share_files(si)) == sorted(str(n) for n in range(10))


@pytest_twisted.ensureDeferred
async def test_verify_finds_a_corrupt_block_reports_it_and_repair_replaces_the_share(
    grid: Grid,
) -> None:
    data = os.urandom(6 * SEGMENT + 5)
    cap = await uploaded(grid, data)
    si = cap.get_storage_index()
    victim = next(p for p in grid.share_files(si) if p.name == "4")
    raw = bytearray(victim.read_bytes())
    offsets = ImmutableShareOffsets.unpack(bytes(raw[12 : 12 + 0x44]))
    block_size = immutable_segment_layout(len(data), SEGMENT, 3, 10).block_size
    raw[12 + offsets.data + 5 * block_size] ^= 0xFF
    victim.write_bytes(bytes(raw))
    node = chk_node(grid, cap)
    assert (await node.check()).healthy, "a plain check does not read blocks"
    verified = await node.check(verify=True)
    assert not verified.healthy and verified.count_shares_good == 9
    holder = next(c for c in grid.clients if victim.is_relative_to(Path(c.server.backend.shares_dir)))
    assert verified.corrupt_shares == ((holder.server_id, si, 4),)
    assert verified.to_json()["results"]["list-corrupt-shares"] == [[holder.server_id, base32.b2a(si), 4]]
    advisories = list(Path(holder.server.backend.corruption_dir).glob("*"))
    assert len(advisories) == 1 and advisories[0].name.endswith(f"--{base32.b2a(si)}-4")

    repaired = await node.check_and_repair(verify=True)
    assert repaired.repair_attempted and repaired.repair_successful, repaired.repair_problem
    post = repaired.post
    assert post.healthy and post.count_shares_good == 10
    assert holder.server_id not in post.sharemap["4"], "a server never lets a share be rewritten: share 4 went elsewhere"
    fresh = await node.check(verify=True)
    assert same_results(post, fresh), "the corrupt copy is still there, and still reported"
    assert await download(grid, cap) == data
    assert not (await node.check_and_repair(verify=True)).repair_attempted


@pytest_twisted.ensureDeferred
async def test_an_unrecoverable_immutable_file_is_reported_and_its_repair_fails(grid: Grid, tmp_path: Path) -> None:
    cap = await uploaded(grid, os.urandom(2 * SEGMENT))
    await grid.replace(list(range(8)))
    node = chk_node(grid, cap)
    results = await node.check(verify=True)
    assert not results.recoverable and results.count_shares_good == 2
    assert (results.count_recoverable_versions, results.count_unrecoverable_versions) == (0, 1)
    repaired = await node.check_and_repair()
    assert repaired.repair_attempted and not repaired.repair_successful
    assert "only 2 good shares" in repaired.repair_problem


def count_add_lease_calls(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The server IDs of every add_lease call from now on, one entry per call."""
    calls: list[str] = []
    for client in grid.clients:
        original = client.add_lease

        async def counted(storage_index: bytes, renew: bytes, cancel: bytes, client=client, original=original) -> None:  # type: ignore[no-untyped-def]
            calls.append(client.server_id)
            await original(storage_index, renew, cancel)

        monkeypatch.setattr(client, "add_lease", counted)
    return calls


async def lease_counts(grid: Grid, si: bytes) -> list[int]:
    """How many leases each share of ``si`` holds, in the grid's server order."""
    return [len((await client.server.backend.get_leases(si, shnum)).leases) for client, shnum, _ in grid.shares(si)]


@pytest_twisted.ensureDeferred
async def test_add_lease_renews_every_share_with_one_call_per_server(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = await uploaded(grid, os.urandom(SEGMENT + 3))
    si = cap.get_storage_index()
    calls = count_add_lease_calls(grid, monkeypatch)
    await chk_node(grid, cap).check(add_lease=True)
    assert sorted(calls) == sorted(c.server_id for c in grid.clients)
    # Leases were added: every share now holds the uploader's and the checker's.
    counts = await lease_counts(grid, si)
    assert counts == [2] * 10
    await chk_node(grid, cap).check(add_lease=True)
    counts = await lease_counts(grid, si)
    assert counts == [2] * 10, "the same client renews its lease instead of adding another"


# --- mutable files -----------------------------------------------------------------------


def seqnums(results: CheckResults) -> set[str]:
    return {name.split("-")[0] for name in results.sharemap}


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_mutable_repair_after_four_servers_are_replaced_keeps_the_seqnum(grid: Grid, tmp_path: Path, mdmf: bool) -> None:
    data = os.urandom(2 * SEG + 100 if mdmf else 5000)
    node = await grid.context().create_mutable_file(data, mdmf=mdmf)
    si = node.get_storage_index()
    healthy = await node.check()
    assert healthy.healthy and healthy.summary == "Healthy" and seqnums(healthy) == {"seq1"}
    kept = {path: path.read_bytes() for _, _, path in grid.shares(si)}
    await grid.replace([1, 4, 6, 9])
    before = await node.check()
    assert not before.healthy and before.recoverable
    assert before.summary == "Unhealthy: 6 shares (enc 3-of-10)"
    assert (before.count_shares_good, before.count_happiness) == (6, 6)

    repaired = await node.check_and_repair()
    assert repaired.repair_attempted and repaired.repair_successful
    post = repaired.post
    assert post.healthy and post.count_shares_good == 10 and post.count_happiness == 10
    assert seqnums(post) == {"seq1"}, "an unchanged version is repaired under the same seqnum"
    assert set(holders(post)) >= {grid.clients[i].server_id for i in (1, 4, 6, 9)}
    for path, raw in kept.items():
        if path.exists():
            assert path.read_bytes() == raw, "good shares are never rewritten"
    assert await read(node) == data
    again = await node.check_and_repair()
    assert not again.repair_attempted and seqnums(again.post) == {"seq1"}


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_mutable_verify_and_repair_replace_corrupt_shares_in_place(grid: Grid, mdmf: bool) -> None:
    data = os.urandom(SEG + 500)
    node = await grid.context().create_mutable_file(data, mdmf=mdmf)
    si = node.get_storage_index()
    placed = grid.shares(si)
    for _, _, path in placed[:2]:
        flip(path, corrupt_field_offset(share_bytes(path), mdmf, "data"))
    assert (await node.check()).healthy
    verified = await node.check(verify=True)
    assert not verified.healthy and verified.count_shares_good == 8 and len(verified.corrupt_shares) == 2
    repaired = await node.check_and_repair(verify=True)
    assert repaired.repair_successful and repaired.post.count_shares_good == 10
    assert seqnums(repaired.post) == {"seq1"}
    assert await read(node) == data
    assert not (await node.check_and_repair(verify=True)).repair_attempted


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_a_mutable_file_with_two_versions_is_repaired_to_the_newest_only(grid: Grid, mdmf: bool) -> None:
    node = await grid.context().create_mutable_file(b"old contents " * 100, mdmf=mdmf)
    si = node.get_storage_index()
    stale = grid.clients[:3]
    old = {(c.server_id, n): p.read_bytes() for c, n, p in grid.shares(si) if c in stale}
    await node.overwrite(b"new contents " * 100)
    for c, n, p in grid.shares(si):
        if (c.server_id, n) in old:
            p.write_bytes(old[(c.server_id, n)])  # three servers roll back to seqnum 1
    before = await node.check()
    assert not before.healthy and before.count_wrong_shares == 3 and seqnums(before) == {"seq1", "seq2"}
    repaired = await node.check_and_repair()
    assert repaired.repair_successful
    assert seqnums(repaired.post) == {"seq3"} and repaired.post.count_shares_good == 10
    assert repaired.post.count_wrong_shares == 0 and repaired.post.count_recoverable_versions == 1
    assert await node.download_best_version() == b"new contents " * 100
    again = await node.check_and_repair()
    assert not again.repair_attempted and seqnums(again.post) == {"seq3"}


@pytest_twisted.ensureDeferred
async def test_a_read_only_mutable_node_checks_but_cannot_repair(grid: Grid, tmp_path: Path) -> None:
    node = await grid.context().create_mutable_file(b"x" * 100)
    reader = grid.context().node_for_cap(node.cap.get_readonly())  # type: ignore[arg-type]
    assert isinstance(reader, MutableFileNode)
    assert not (await reader.check_and_repair()).repair_attempted
    await grid.replace([0])
    result = await reader.check_and_repair()
    assert result.repair_attempted and not result.repair_successful and "write cap" in result.repair_problem


@pytest_twisted.ensureDeferred
async def test_mutable_add_lease_calls_each_server_once(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> None:
    node = await grid.context().create_mutable_file(b"y" * 1000)
    calls = count_add_lease_calls(grid, monkeypatch)
    assert (await node.check(add_lease=True)).healthy
    assert sorted(calls) == sorted(c.server_id for c in grid.clients)
