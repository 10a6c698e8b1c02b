"""Deep traversal, deep-check (and repair), manifest and deep-stats over an in-process grid."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest_twisted

from lafs.client.deep import DeepStats, deep_check, deep_manifest, deep_size
from lafs.client.nodemaker import NodeMaker
from lafs.client.nodes import FileSource
from lafs.dirnode import DirectoryNode
from tests.integration.test_dirnode import maker
from tests.storage_grid import Grid, grid

__all__ = ["grid"]  # the fixture: every test runs in-process, over Foolscap and over HTTPS


async def upload(nm: NodeMaker, data: bytes) -> Any:
    node, _ = await nm.upload_immutable(FileSource(io.BytesIO(data)))
    return node


async def tree(nm: NodeMaker) -> tuple[DirectoryNode, dict[str, Any]]:
    """root/{big, small, mut, sub/{file2, loop -> sub}, shared -> sub, lost (shares gone)}."""
    root = await nm.create_directory()
    sub = await root.create_subdirectory("sub")
    big = await upload(nm, b"x" * 5000)
    small = await upload(nm, b"hi")
    file2 = await upload(nm, b"y" * 2000)
    lost = await upload(nm, b"z" * 3000)
    mut = await nm.create_mutable_file(FileSource(io.BytesIO(b"mutable")))
    await root.set_node("big", big)
    await root.set_node("small", small)
    await root.set_node("mut", mut)
    await root.set_node("lost", lost)
    await sub.set_node("file2", file2)
    await sub.set_node("loop", sub)
    await root.set_node("shared", sub)
    return root, {"sub": sub, "lost": lost, "big": big, "file2": file2, "mut": mut}


def empty(grid: Grid, storage_index: bytes) -> None:
    for _, _, path in grid.shares(storage_index):
        path.unlink()


@pytest_twisted.ensureDeferred
async def test_deep_check_visits_each_object_once_and_reports_the_unrecoverable(grid: Grid) -> None:
    nm = maker(grid)
    root, nodes = await tree(nm)
    empty(grid, nodes["lost"].get_storage_index())
    lines: list[dict[str, Any]] = []
    results = await deep_check(root, on_object=lines.append)
    paths = [tuple(line["path"]) for line in lines]
    # The cycle (sub/loop) and the second link to sub (shared) are not walked again.
    assert paths == [(), ("big",), ("lost",), ("mut",), ("small",), ("shared",), ("shared", "file2")]
    assert results.count_checked == 6  # the literal file has no shares to check
    data = results.to_json()
    assert data["count-objects-healthy"] == 5
    assert data["count-objects-unhealthy"] == 1
    [[path, check]] = data["list-unhealthy-files"]
    assert path == ["lost"] and check["results"]["recoverable"] is False
    by_path = {tuple(line["path"]): line for line in lines}
    assert by_path[("small",)]["check-results"] == {"storage-index": "", "results": {"healthy": True}}
    assert by_path[("big",)]["repaircap"] == by_path[("big",)]["verifycap"]
    assert data["stats"]["count-directories"] == 2


@pytest_twisted.ensureDeferred
async def test_an_unreadable_directory_is_reported_and_the_rest_still_checked(grid: Grid) -> None:
    nm = maker(grid)
    root, nodes = await tree(nm)
    empty(grid, nodes["sub"].get_storage_index())
    lines: list[dict[str, Any]] = []
    results = await deep_check(root, on_object=lines.append)
    assert [path for path, _ in results.unreadable] == [("shared",)]
    assert ["shared"] in [line["path"] for line in lines]
    assert results.to_json()["count-objects-unhealthy"] == 1
    assert results.to_json()["count-objects-healthy"] == 4


@pytest_twisted.ensureDeferred
async def test_repair_after_servers_were_emptied_then_a_second_run_is_healthy(grid: Grid) -> None:
    nm = maker(grid)
    root, _ = await tree(nm)
    # Seven of ten servers lose everything: every object is still recoverable (3-of-10) but unhealthy.
    for client in grid.clients[:7]:
        for path in Path(client.server.backend.shares_dir).rglob("*"):
            if path.is_file() and path.name.isdigit():
                path.unlink()
    first = (await deep_check(root, repair=True)).to_json()
    assert first["count-objects-unhealthy-pre-repair"] == first["count-objects-checked"] > 0
    assert first["count-repairs-attempted"] == first["count-repairs-successful"] == first["count-objects-checked"]
    assert first["count-objects-unhealthy-post-repair"] == 0
    second = (await deep_check(root, repair=True)).to_json()
    assert second["count-objects-healthy-pre-repair"] == second["count-objects-checked"]
    assert second["count-repairs-attempted"] == 0


@pytest_twisted.ensureDeferred
async def test_manifest_and_deep_stats(grid: Grid) -> None:
    nm = maker(grid)
    root, _ = await tree(nm)
    manifest = await deep_manifest(root)
    data = manifest.to_json()
    assert [path for path, _ in data["manifest"]] == [[], ["big"], ["lost"], ["mut"], ["small"], ["shared"], ["shared", "file2"]]
    assert len(data["storage-index"]) == 6
    stats = data["stats"]
    assert list(stats)[:2] == ["api-version", "count-immutable-files"]
    assert stats["count-immutable-files"] == 3
    assert stats["count-literal-files"] == 1
    assert stats["count-mutable-files"] == 1
    assert stats["count-files"] == 5
    assert stats["count-directories"] == 2
    assert stats["size-immutable-files"] == 10000
    assert stats["size-literal-files"] == 2
    assert stats["largest-immutable-file"] == 5000
    assert stats["largest-directory-children"] == 6
    assert stats["size-directories"] > stats["largest-directory"] > 0
    assert stats["size-files-histogram"] == [[1, 3, 1], [1001, 3162, 2], [3163, 10000, 1]]
    assert deep_size(stats) == 10000 + stats["size-directories"]


def test_histogram_buckets_are_tahoes() -> None:
    stats = DeepStats()
    buckets = [stats._bucket(size) for size in (0, 1, 3, 4, 10, 11, 31, 32, 100, 101, 5000)]
    assert buckets == [(0, 0), (1, 3), (1, 3), (4, 10), (4, 10), (11, 31), (11, 31), (32, 100), (32, 100), (101, 316), (3163, 10000)]
