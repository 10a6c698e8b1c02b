"""Automatic maintenance on an in-process grid, its schedule on a fake clock."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock

from lafs.client.maintenance import MaintenanceService
from lafs.client.nodes import FileSource
from lafs.config import MaintenanceSettings
from lafs.core.check_results import CheckResults
from tests.integration.test_dirnode import maker
from tests.storage_grid import Grid


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid(tmp_path / "grid")


def node_dir(tmp_path: Path, aliases: dict[str, str]) -> str:
    basedir = tmp_path / "node"
    (basedir / "private").mkdir(parents=True)
    (basedir / "private" / "aliases").write_text("".join(f"{name}: {cap}\n" for name, cap in aliases.items()))
    return str(basedir)


async def populated(grid: Grid) -> tuple[Any, list[Any]]:
    nm = maker(grid)
    root = await nm.create_directory()
    files = []
    for i in range(3):
        node, _ = await nm.upload_immutable(FileSource(io.BytesIO(bytes([i]) * 4000)))
        await root.set_node(f"f{i}", node)
        files.append(node)
    await root.set_node("small", (await nm.upload_immutable(FileSource(io.BytesIO(b"lit"))))[0])
    return root, files


async def finished(service: MaintenanceService) -> dict[str, Any]:
    running = service.run_in_progress
    assert running is not None, "no run under way"
    summary: dict[str, Any] = await running
    return summary


@pytest_twisted.ensureDeferred
async def test_the_schedule_fires_repairs_what_was_lost_and_then_finds_everything_healthy(
    grid: Grid, tmp_path: Path
) -> None:
    root, files = await populated(grid)
    basedir = node_dir(tmp_path, {"tahoe": root.get_uri()})
    # Half the servers lose everything they held of two files: still recoverable, not healthy.
    emptied = {c.server_id for c in grid.clients[:5]}
    for node in files[:2]:
        for client, _, path in grid.shares(node.get_storage_index()):
            if client.server_id in emptied:
                path.unlink()
    clock = Clock()
    clock.advance(1000)
    settings = MaintenanceSettings(targets=("tahoe:",), interval=3600, concurrency=2)
    service = MaintenanceService(settings, maker(grid).node_from_string, basedir, clock=clock, first_run_delay=60)
    service.startService()
    try:
        assert service.next_run == 1060
        clock.advance(59)
        assert service.run_in_progress is None
        clock.advance(1)
        first = await finished(service)
        assert first["started"] == 1060 and first["finished"] is not None
        assert first["targets"] == ["tahoe:"]
        assert first["checked"] == 4  # the directory and three files; the literal file has no shares
        assert first["healthy"] == 2
        assert first["repaired"] == 2
        assert first["unrecoverable"] == 0
        assert first["leases-renewed"] == 4
        assert first["errors"] == []
        for node in files:
            assert len(grid.shares(node.get_storage_index())) >= 10
        assert service.next_run == 1060 + 3600
        clock.advance(3600)
        second = await finished(service)
        assert (second["checked"], second["healthy"], second["repaired"]) == (4, 4, 0)
        # The last run is kept in memory and in the node directory.
        saved = json.loads((Path(basedir) / "maintenance.json").read_text())
        assert saved == second == service.status()["last-run"]
        status = service.status()
        assert status["running"] is False and status["skipped-turns"] == 0 and status["interval"] == 3600
    finally:
        await service.stopService()


class SlowFile:
    """A file whose check waits for the test to say so."""

    def __init__(self) -> None:
        self.gate: defer.Deferred[None] = defer.Deferred()
        self.calls = 0

    async def check_and_repair(self, *, add_lease: bool = False) -> CheckResults:
        self.calls += 1
        await self.gate
        return CheckResults(storage_index=b"s" * 16, healthy=True, recoverable=True, summary="Healthy")


@pytest_twisted.ensureDeferred
async def test_a_run_longer_than_the_interval_is_never_overlapped(tmp_path: Path) -> None:
    slow = SlowFile()
    clock = Clock()
    basedir = node_dir(tmp_path, {})
    settings = MaintenanceSettings(targets=("URI:CHK:secret:stuff:3:10:100",), interval=600)
    service = MaintenanceService(settings, lambda cap: slow, basedir, clock=clock, first_run_delay=0)
    service.startService()
    clock.advance(0)
    running = service.run_in_progress
    assert running is not None and slow.calls == 1
    clock.advance(600)
    clock.advance(600)
    assert service.run_in_progress is running and slow.calls == 1
    assert service.skipped == 2
    assert service.run_now() is None
    assert service.status()["running"] is True
    slow.gate.callback(None)
    summary = await running
    assert summary["checked"] == 1 and summary["healthy"] == 1
    assert summary["targets"] == ["URI:CHK:..."]  # caps are secrets: never shown whole
    clock.advance(600)
    assert service.run_in_progress is not None and slow.calls == 2
    await service.run_in_progress
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_errors_are_recorded_and_the_other_targets_still_run(grid: Grid, tmp_path: Path) -> None:
    root, _ = await populated(grid)
    basedir = node_dir(tmp_path, {"docs": root.get_uri()})
    clock = Clock()
    settings = MaintenanceSettings(targets=("missing:", "URI:CHK:notacap", "docs:"), interval=3600)
    service = MaintenanceService(settings, maker(grid).node_from_string, basedir, clock=clock, first_run_delay=0)
    summary = await service.run_now()  # type: ignore[misc]
    assert summary["checked"] == 4 and summary["healthy"] == 4
    [no_alias, bad_cap] = summary["errors"]
    assert no_alias.startswith("missing:: no such alias")
    assert bad_cap.startswith("URI:CHK:...: ") and "notacap" not in bad_cap


@pytest_twisted.ensureDeferred
async def test_a_restarted_service_waits_an_interval_from_the_last_run(grid: Grid, tmp_path: Path) -> None:
    root, _ = await populated(grid)
    basedir = node_dir(tmp_path, {"tahoe": root.get_uri()})
    clock = Clock()
    clock.advance(5000)
    settings = MaintenanceSettings(targets=("tahoe:",), interval=86400)
    service = MaintenanceService(settings, maker(grid).node_from_string, basedir, clock=clock)
    await service.run_now()  # type: ignore[misc]
    again = MaintenanceService(settings, maker(grid).node_from_string, basedir, clock=clock)
    assert again.last_run is not None and again.last_run["checked"] == 4
    again.startService()
    assert again.next_run == 5000 + 86400
    await again.stopService()


@pytest_twisted.ensureDeferred
async def test_the_pause_spaces_out_the_objects_on_the_clock(grid: Grid, tmp_path: Path) -> None:
    root, _ = await populated(grid)
    basedir = node_dir(tmp_path, {"tahoe": root.get_uri()})
    clock = Clock()
    settings = MaintenanceSettings(targets=("tahoe:",), interval=3600, concurrency=1, pause=2.0)
    service = MaintenanceService(settings, maker(grid).node_from_string, basedir, clock=clock)
    running = service.run_now()
    assert running is not None
    steps = 0
    while not running.called:
        clock.advance(2.0)
        steps += 1
        await task.deferLater(reactor, 0.02, lambda: None)
        assert steps < 500
    summary = await running
    assert summary["checked"] == 4
    assert summary["finished"] - summary["started"] >= 2.0 * 5  # five objects with shares or children, each paused
