"""The lease checker and the bucket counter, driven by a fake clock over real backends.

Expected shapes of the state files are those the real Tahoe 1.20 wrote when
run on hand-made shares (see the module docstrings of lafs.storage.*).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from lafs.config import ExpirationMode, ExpirationSettings
from lafs.core import base32
from lafs.core.containers import LEASE_DURATION, LeaseInfo
from lafs.core.hashes import hashed_lease_secret
from lafs.storage.backend import ShareBackend, ShareKind
from lafs.storage.bucket_counter import BucketCounter
from lafs.storage.disk import DiskBackend
from lafs.storage.errors import DiskError
from lafs.storage.lease_checker import LeaseChecker, empty_space_recovered
from lafs.storage.memory import MemoryBackend
from lafs.storage.paths import PREFIXES
from lafs.storage.server import StorageServer

DAY = 24 * 60 * 60
NOW = 1_800_000_000
NODEID = b"n" * 20
AGE = ExpirationSettings(enabled=True, mode=ExpirationMode.AGE)


def si(n: int) -> bytes:
    """Storage index ``n``; different ``n`` below 32 fall in different prefixes."""
    return bytes([n * 8]) + bytes([n]) * 15


def lease(renewed_days_ago: float, tag: int = 0, nodeid: bytes | None = None) -> LeaseInfo:
    """A lease renewed that many days before NOW, so expiring 31 days after that."""
    expiration = int(NOW - renewed_days_ago * DAY + LEASE_DURATION)
    return LeaseInfo(0, hashed_lease_secret(bytes([tag + 1]) * 32), hashed_lease_secret(b"c" * 32), expiration, nodeid)


async def immutable(backend: ShareBackend, n: int, leases: list[LeaseInfo], shnum: int = 0, size: int = 100) -> None:
    incoming = await backend.create_incoming(si(n), shnum, size)
    await incoming.write(0, b"i" * size)
    await incoming.commit(lease(0))
    await backend.put_leases(si(n), shnum, leases)


async def mutable(backend: ShareBackend, n: int, leases: list[LeaseInfo], shnum: int = 0) -> None:
    await backend.create_mutable(si(n), shnum, NODEID, b"w" * 32)
    await backend.write_mutable(si(n), shnum, [(0, b"m" * 200)], None)
    await backend.put_leases(si(n), shnum, [attrs_nodeid(x) for x in leases])


def attrs_nodeid(x: LeaseInfo) -> LeaseInfo:
    return LeaseInfo(x.owner_num, x.renew_secret, x.cancel_secret, x.expiration_time, NODEID)


def clock_at_now() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture(params=["disk", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> ShareBackend:
    if request.param == "memory":
        return MemoryBackend()
    return DiskBackend.open(str(tmp_path / "storage"))


def checker(backend: ShareBackend, tmp_path: Path, settings: ExpirationSettings, **options: Any) -> LeaseChecker:
    state_dir = tmp_path / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    return LeaseChecker(backend, str(state_dir), settings, clock=options.pop("clock", None) or clock_at_now(), **options)


async def run_cycle(crawler: LeaseChecker | BucketCounter) -> None:
    """Drive slices by hand until the cycle under way (or a new one) is finished."""
    finished = crawler.state["last-cycle-finished"]
    for _ in range(10_000):
        await crawler.run_slice()
        if crawler.state["last-cycle-finished"] != finished:
            return
    raise AssertionError("the cycle never finished")


def last_cycle(crawler: LeaseChecker) -> dict[str, Any]:
    entry: dict[str, Any] = crawler.history[str(crawler.state["last-cycle-finished"])]
    return entry


# --- what expires ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_age_mode_removes_expired_leases_and_shares_left_without_one(backend: ShareBackend, tmp_path: Path) -> None:
    await immutable(backend, 1, [lease(40)])  # expired 9 days ago
    await immutable(backend, 2, [lease(10)])  # live
    await immutable(backend, 3, [lease(40, 0), lease(5, 1)])  # one of each
    await immutable(backend, 4, [])  # no lease at all
    await mutable(backend, 5, [lease(40)])
    await mutable(backend, 6, [lease(1)])
    lc = checker(backend, tmp_path, AGE)
    await run_cycle(lc)
    assert await backend.list_shares(si(1)) == {}
    assert await backend.list_shares(si(2)) == {0: ShareKind.IMMUTABLE}
    assert (await backend.get_leases(si(3), 0)).leases == (lease(5, 1),)
    assert await backend.list_shares(si(4)) == {}
    assert await backend.list_shares(si(5)) == {}
    assert await backend.list_shares(si(6)) == {0: ShareKind.MUTABLE}
    recovered = last_cycle(lc)["space-recovered"]
    assert recovered["examined-buckets"] == 6 and recovered["examined-shares"] == 6
    assert recovered["actual-shares-immutable"] == 2 and recovered["actual-shares-mutable"] == 1
    assert recovered["actual-buckets"] == 3
    assert recovered["configured-shares"] == recovered["original-shares"] == 3
    assert last_cycle(lc)["leases-per-share-histogram"] == {"1": 4, "2": 1, "0": 1}


@pytest_twisted.ensureDeferred
async def test_the_override_duration_replaces_each_leases_own(backend: ShareBackend, tmp_path: Path) -> None:
    await immutable(backend, 1, [lease(40)])  # nominally expired, within 60 days
    await immutable(backend, 2, [lease(20)])  # nominally live, beyond 10 days
    await run_cycle(checker(backend, tmp_path, ExpirationSettings(enabled=True, override_lease_duration=60 * DAY)))
    assert await backend.list_shares(si(1)) == {0: ShareKind.IMMUTABLE}
    lc = checker(backend, tmp_path / "other", ExpirationSettings(enabled=True, override_lease_duration=10 * DAY))
    await run_cycle(lc)
    assert await backend.list_shares(si(1)) == {} and await backend.list_shares(si(2)) == {}
    # "original" still counts by the leases' own 31 days: only the first was due.
    assert last_cycle(lc)["space-recovered"]["original-shares"] == 1


@pytest_twisted.ensureDeferred
async def test_cutoff_date_mode_removes_leases_renewed_before_the_cutoff(backend: ShareBackend, tmp_path: Path) -> None:
    await immutable(backend, 1, [lease(12)])
    await mutable(backend, 2, [lease(8)])
    cutoff = ExpirationSettings(enabled=True, mode=ExpirationMode.CUTOFF_DATE, cutoff_date=NOW - 10 * DAY)
    lc = checker(backend, tmp_path, cutoff)
    await run_cycle(lc)
    assert await backend.list_shares(si(1)) == {}
    assert await backend.list_shares(si(2)) == {0: ShareKind.MUTABLE}
    assert last_cycle(lc)["configured-expiration-mode"] == ["cutoff-date", None, NOW - 10 * DAY, ["immutable", "mutable"]]


@pytest.mark.parametrize(("immutable_on", "mutable_on"), [(True, False), (False, True), (False, False)])
@pytest_twisted.ensureDeferred
async def test_only_the_configured_share_kinds_expire(
    backend: ShareBackend, tmp_path: Path, immutable_on: bool, mutable_on: bool
) -> None:
    await immutable(backend, 1, [lease(40)])
    await mutable(backend, 2, [lease(40)])
    await immutable(backend, 3, [lease(40), lease(1, 1)])
    settings = ExpirationSettings(enabled=True, immutable=immutable_on, mutable=mutable_on)
    lc = checker(backend, tmp_path, settings)
    await run_cycle(lc)
    assert (await backend.list_shares(si(1)) == {}) is immutable_on
    assert (await backend.list_shares(si(2)) == {}) is mutable_on
    assert len((await backend.get_leases(si(3), 0)).leases) == (1 if immutable_on else 2)
    recovered = last_cycle(lc)["space-recovered"]
    assert recovered["configured-shares-immutable"] == int(immutable_on)
    assert recovered["configured-shares-mutable"] == int(mutable_on)
    assert recovered["original-shares"] == 2  # what the leases' own durations say, whatever is configured


@pytest_twisted.ensureDeferred
async def test_disabled_expiration_deletes_nothing_but_reports_what_it_would(backend: ShareBackend, tmp_path: Path) -> None:
    await immutable(backend, 1, [lease(40)])
    await immutable(backend, 2, [lease(40), lease(3, 1)])
    await mutable(backend, 3, [])
    lc = checker(backend, tmp_path, ExpirationSettings(enabled=False))
    await run_cycle(lc)
    assert await backend.list_shares(si(1)) == {0: ShareKind.IMMUTABLE}
    assert len((await backend.get_leases(si(2), 0)).leases) == 2
    assert await backend.list_shares(si(3)) == {0: ShareKind.MUTABLE}
    entry = last_cycle(lc)
    assert entry["expiration-enabled"] is False
    recovered = entry["space-recovered"]
    assert recovered["configured-buckets"] == 2 and recovered["configured-shares"] == 2
    assert recovered["configured-sharebytes"] > 0
    assert all(value == 0 for key, value in recovered.items() if key.startswith("actual-"))


@pytest_twisted.ensureDeferred
async def test_a_share_being_uploaded_is_never_touched(tmp_path: Path) -> None:
    backend = DiskBackend.open(str(tmp_path / "storage"))
    await immutable(backend, 1, [lease(40)], shnum=0)
    upload = await backend.create_incoming(si(1), 1, 10)  # same storage index, still uploading
    other = await backend.create_incoming(si(2), 0, 10)
    await upload.write(0, b"0123456789")
    lc = checker(backend, tmp_path, AGE)
    await run_cycle(lc)
    assert await backend.list_shares(si(1)) == {}
    # Both uploads finish as if nothing had happened.
    await upload.commit(lease(0))
    await other.write(0, b"x" * 10)
    await other.commit(lease(0))
    assert await backend.list_shares(si(1)) == {1: ShareKind.IMMUTABLE}
    assert await backend.list_shares(si(2)) == {0: ShareKind.IMMUTABLE}
    assert last_cycle(lc)["space-recovered"]["examined-shares"] == 1


@pytest_twisted.ensureDeferred
async def test_a_share_that_cannot_be_read_is_reported_and_kept(tmp_path: Path) -> None:
    backend = DiskBackend.open(str(tmp_path / "storage"))
    await immutable(backend, 1, [lease(40)])
    bad = Path(backend.share_path(si(2), 4))
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00\x00\x00\x07garbage")  # an unknown container version
    lc = checker(backend, tmp_path, AGE)
    await run_cycle(lc)
    assert bad.exists()
    assert last_cycle(lc)["corrupt-shares"] == [[base32.b2a(si(2)), 4]]
    assert await backend.list_shares(si(1)) == {}


# --- walking ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_each_slice_handles_a_bounded_number_of_buckets(tmp_path: Path) -> None:
    backend = MemoryBackend()
    for n in range(1, 6):
        await immutable(backend, n, [lease(40)])
    lc = checker(backend, tmp_path, AGE, buckets_per_slice=2)
    await lc.run_slice()
    assert len(backend._shares) == 3
    assert lc.state["current-cycle"] == 0 and lc.state["last-complete-bucket"] == base32.b2a(si(2))
    await lc.run_slice()
    assert len(backend._shares) == 1
    await lc.run_slice()
    assert len(backend._shares) == 0 and lc.state["last-cycle-finished"] == 0


class SlowBackend(MemoryBackend):
    """Each look at a bucket takes 30 ms of the (fake) clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    async def list_shares(self, storage_index: bytes) -> dict[int, ShareKind]:
        self.clock.advance(0.03)
        return await super().list_shares(storage_index)


class SlowDisk(DiskBackend):
    """A disk whose every look at a bucket takes 10 ms of the (fake) clock, so slices have a length."""

    clock: Clock

    async def list_shares(self, storage_index: bytes) -> dict[int, ShareKind]:
        self.clock.advance(0.01)
        return await super().list_shares(storage_index)


def slow_disk(storage: str, clock: Clock) -> SlowDisk:
    backend = SlowDisk(storage)
    backend.clock = clock
    return backend


@pytest_twisted.ensureDeferred
async def test_the_service_yields_between_time_slices_and_sleeps_for_the_cpu_share(tmp_path: Path) -> None:
    clock = clock_at_now()
    backend = SlowBackend(clock)
    for n in range(1, 11):
        await immutable(backend, n, [lease(1)])
    lc = checker(backend, tmp_path, AGE, clock=clock, slow_start=10, cpu_slice=0.1, allowed_cpu_fraction=0.1)
    lc.startService()
    assert lc.slices == 0 and lc.progress()["remaining-wait-time"] == 10
    clock.advance(10)
    # Four buckets of 30 ms pass the 100 ms slice; then it sleeps nine times as long.
    assert lc.slices == 1 and lc.state["last-complete-bucket"] == base32.b2a(si(4))
    assert lc.last_slice_time == pytest.approx(0.12)
    (pending,) = clock.getDelayedCalls()
    assert pending.getTime() - clock.seconds() == pytest.approx(1.08)
    clock.advance(1.08)
    assert lc.slices == 2 and lc.state["last-complete-bucket"] == base32.b2a(si(8))
    clock.advance(1.08)
    assert lc.state["last-cycle-finished"] == 0
    # Between cycles it waits out the minimum cycle time.
    (pending,) = clock.getDelayedCalls()
    assert pending.getTime() - lc.state["current-cycle-start-time"] == pytest.approx(lc.minimum_cycle_time)
    await lc.stopService()
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_a_restarted_checker_continues_from_the_saved_position(tmp_path: Path) -> None:
    storage = str(tmp_path / "storage")
    backend = DiskBackend.open(storage)
    for n in range(1, 8):
        await immutable(backend, n, [lease(40)])
    clock = clock_at_now()
    first = LeaseChecker(slow_disk(storage, clock), storage, AGE, clock=clock, slow_start=0, buckets_per_slice=3)
    first.startService()
    clock.advance(0)
    assert first.slices == 1
    await first.stopService()
    saved = json.loads(Path(storage, "lease_checker.state.json").read_text())
    assert saved["current-cycle"] == 0 and saved["last-complete-bucket"] == base32.b2a(si(3))
    assert saved["cycle-to-date"]["space-recovered"]["examined-buckets"] == 3
    # The shares it deleted are gone; a new checker over the same directory goes on from there.
    second = LeaseChecker(slow_disk(storage, clock), storage, AGE, clock=clock, slow_start=0, buckets_per_slice=3)
    assert second.state["last-complete-bucket"] == base32.b2a(si(3))
    second.startService()
    clock.advance(0)
    assert second.state["last-complete-bucket"] == base32.b2a(si(6))
    clock.advance(1)
    await second.stopService()
    assert second.state["last-cycle-finished"] == 0
    recovered = last_cycle(second)["space-recovered"]
    assert recovered["examined-buckets"] == 7 and recovered["actual-buckets"] == 7
    history = json.loads(Path(storage, "lease_checker.history.json").read_text())
    assert list(history) == ["0"]


@pytest_twisted.ensureDeferred
async def test_stopping_mid_slice_saves_after_the_current_bucket(tmp_path: Path) -> None:
    clock = clock_at_now()
    backend = SlowBackend(clock)
    for n in range(1, 4):
        await immutable(backend, n, [lease(1)])
    lc = checker(backend, tmp_path, AGE, clock=clock, slow_start=0, cpu_slice=10)

    stopping: list[Any] = []
    original = backend.list_shares

    async def stop_during(storage_index: bytes) -> dict[int, ShareKind]:
        if storage_index == si(2) and not stopping:
            stopping.append(lc.stopService())
        return await original(storage_index)

    backend.list_shares = stop_during  # type: ignore[method-assign]
    lc.startService()
    clock.advance(0)
    await stopping[0]
    assert lc.state["last-complete-bucket"] == base32.b2a(si(2))
    assert json.loads(Path(lc.state_path).read_text())["last-complete-bucket"] == base32.b2a(si(2))


@pytest_twisted.ensureDeferred
async def test_history_keeps_the_last_ten_cycles(tmp_path: Path) -> None:
    backend = MemoryBackend()
    lc = checker(backend, tmp_path, AGE)
    for _ in range(12):
        await run_cycle(lc)
    assert sorted(lc.history, key=int) == [str(n) for n in range(2, 12)]


# --- state files and status ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_state_files_have_tahoes_keys(tmp_path: Path) -> None:
    storage = str(tmp_path / "storage")
    backend = DiskBackend.open(storage)
    await immutable(backend, 1, [lease(40)])
    await mutable(backend, 2, [lease(2)])
    share_blocks = sum(os.stat(p).st_blocks * 512 for p in Path(storage, "shares").rglob("*") if p.is_file())
    lc = LeaseChecker(backend, storage, AGE, clock=clock_at_now())
    await run_cycle(lc)
    state = json.loads(Path(storage, "lease_checker.state.json").read_text())
    assert set(state) == {
        "version", "last-cycle-finished", "current-cycle", "last-complete-prefix", "last-complete-bucket",
        "current-cycle-start-time", "history",
    }
    assert state["version"] == 1 and state["last-cycle-finished"] == 0 and state["current-cycle"] is None
    entry = json.loads(Path(storage, "lease_checker.history.json").read_text())["0"]
    assert list(entry) == [
        "cycle-start-finish-times", "expiration-enabled", "configured-expiration-mode", "lease-age-histogram",
        "leases-per-share-histogram", "corrupt-shares", "space-recovered",
    ]
    assert entry["configured-expiration-mode"] == ["age", None, None, ["immutable", "mutable"]]
    assert list(entry["space-recovered"]) == list(empty_space_recovered())
    assert len(entry["space-recovered"]) == 48
    # One-day bins of lease age: 40 days and 2 days.
    assert entry["lease-age-histogram"] == [[2 * DAY, 3 * DAY, 1], [40 * DAY, 41 * DAY, 1]]
    assert entry["space-recovered"]["examined-diskbytes"] == share_blocks


@pytest_twisted.ensureDeferred
async def test_the_bucket_counter_counts_buckets_per_prefix(tmp_path: Path) -> None:
    storage = str(tmp_path / "storage")
    backend = DiskBackend.open(storage)
    for n in (1, 2, 3):
        await immutable(backend, n, [lease(1)])
        await immutable(backend, n, [lease(1)], shnum=5)
    await mutable(backend, 4, [lease(1)])
    counter = BucketCounter(backend, os.path.join(storage, "bucket_counter.state.json"), clock=clock_at_now())
    assert counter.bucket_count() is None
    await run_cycle(counter)
    assert counter.bucket_count() == 4
    state = json.loads(Path(storage, "bucket_counter.state.json").read_text())
    assert set(state) == {
        "version", "last-cycle-finished", "current-cycle", "last-complete-prefix", "last-complete-bucket",
        "current-cycle-start-time", "bucket-counts", "last-complete-bucket-count", "storage-index-samples",
    }
    counts = state["bucket-counts"]["0"]
    assert len(counts) == 1024 and sum(counts.values()) == 4 and counts[base32.b2a(si(1))[:2]] == 1
    assert state["last-complete-bucket-count"] == 4
    assert state["storage-index-samples"] == {"22": [0, []]}


@pytest_twisted.ensureDeferred
async def test_the_server_runs_both_crawlers_and_reports_their_status(tmp_path: Path) -> None:
    clock = clock_at_now()
    storage = str(tmp_path / "storage")
    server = StorageServer.on_disk(storage, NODEID, clock=clock, expiration=AGE)
    await immutable(server.backend, 1, [lease(40)])
    await immutable(server.backend, 2, [lease(1)])
    assert server.lease_checker is not None and server.bucket_counter is not None
    assert {s.name for s in server} == {"lease-checker", "bucket-counter"}
    server.startService()
    status = server.crawler_status()
    assert status["total-buckets"] is None and status["lease-checker-progress"]["cycle-in-progress"] is False
    clock.advance(400)  # past both slow starts (300 s and 360 s)
    status = server.crawler_status()
    assert status["total-buckets"] == 2
    assert status["lease-checker"]["history"]["0"]["space-recovered"]["actual-shares"] == 1
    assert status["lease-checker-progress"]["estimated-time-per-cycle"] == 0
    assert status["expiration"]["enabled"] is True and status["expiration"]["mode"] == "age"
    assert await server.backend.list_shares(si(1)) == {}
    await server.stopService()
    assert Path(storage, "bucket_counter.state.json").exists()
    json.dumps(status)  # plain data, ready for the web layer


def test_expiration_is_off_unless_configured(tmp_path: Path) -> None:
    server = StorageServer.on_disk(str(tmp_path / "storage"), NODEID, clock=clock_at_now())
    assert server.lease_checker is not None and server.lease_checker.expiration.enabled is False


def test_a_bucket_counter_state_written_by_tahoe_is_read(tmp_path: Path) -> None:
    """tahoe_bucket_counter.state.json: what the real Tahoe 1.20 wrote after counting 9 buckets
    (the shares of lease_checker_history_producer.py.txt)."""
    data = Path(__file__).parent.parent / "unit" / "data" / "tahoe_bucket_counter.state.json"
    counter = BucketCounter(MemoryBackend(), str(data), clock=clock_at_now())
    assert counter.bucket_count() == 9
    assert counter.state["last-cycle-finished"] == 0 and counter.state["current-cycle"] is None


@pytest_twisted.ensureDeferred
async def test_an_unreadable_state_file_means_starting_afresh(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    backend = DiskBackend.open(str(storage))
    (storage / "lease_checker.state.json").write_text("{not json")
    (storage / "lease_checker.history.json").write_text("[]")
    lc = LeaseChecker(backend, str(storage), AGE, clock=clock_at_now())
    assert lc.state["current-cycle"] is None and lc.history == {}
    await run_cycle(lc)
    assert json.loads((storage / "lease_checker.state.json").read_text())["last-cycle-finished"] == 0


class FlakyBackend(MemoryBackend):
    """Listing fails the first time, as a disk error would."""

    failures = 1

    async def list_storage_indexes(self, prefix: str) -> list[bytes]:
        if self.failures:
            self.failures -= 1
            raise DiskError("cannot list shares/22: Input/output error")
        return await super().list_storage_indexes(prefix)


def test_a_failed_slice_is_logged_and_the_walk_goes_on_later(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock = clock_at_now()
        lc = checker(FlakyBackend(), tmp_path, AGE, clock=clock, slow_start=0)
        lc.startService()
        clock.advance(0)
        assert lc.state["last-cycle-finished"] is None
        assert any("crawler slice failed" in str(e.get("log_format")) for e in events)
        (pending,) = clock.getDelayedCalls()
        clock.advance(pending.getTime() - clock.seconds())
        assert lc.state["last-cycle-finished"] == 0
        lc.stopService()
    finally:
        globalLogPublisher.removeObserver(events.append)


@pytest_twisted.ensureDeferred
async def test_progress_shows_how_far_a_cycle_is(tmp_path: Path) -> None:
    clock = clock_at_now()
    backend = SlowBackend(clock)
    for n in range(1, 11):
        await immutable(backend, n, [lease(1)])
    lc = checker(backend, tmp_path, AGE, clock=clock, slow_start=5)
    lc.startService()
    assert lc.progress() == {
        "cycle-in-progress": False, "next-crawl-time": NOW + 5, "remaining-wait-time": 5, "estimated-time-per-cycle": None
    }
    clock.advance(5)
    progress = lc.progress()
    assert progress["cycle-in-progress"] is True
    # Four 30 ms buckets fill the first 100 ms slice; si(4) is in prefix "ea", done with it.
    assert progress["cycle-complete-percentage"] == pytest.approx(100 * (PREFIXES.index("ea") + 1) / 1024)
    await lc.stopService()


# --- against the real Tahoe ------------------------------------------------------------------

# The shares of tests/unit/data/lease_checker_history_producer.py.txt: (storage index byte,
# share number, kind, lease expirations in days from when they were made).
TAHOE_SHARES = [
    (1, 0, "immutable", [-10]),
    (2, 0, "immutable", [20]),
    (3, 0, "mutable", [-10]),
    (4, 0, "mutable", [20]),
    (5, 0, "immutable", [-10, 20]),
    (6, 0, "immutable", [-10]),
    (6, 3, "immutable", [-10]),
    (7, 0, "immutable", [-10]),
    (7, 1, "immutable", [5]),
    (8, 2, "immutable", []),
    (9, 0, "mutable", []),
]


async def tahoe_shares(backend: DiskBackend, made_at: int) -> None:
    for n, shnum, kind, offsets in TAHOE_SHARES:
        storage_index = bytes([n]) * 16
        mutable_share = kind == "mutable"
        leases = [
            LeaseInfo(int(mutable_share), bytes([i + 1]) * 32, bytes([i + 2]) * 32, made_at + offset * DAY,
                      b"N" * 20 if mutable_share else None)
            for i, offset in enumerate(offsets)
        ]
        if mutable_share:
            await backend.create_mutable(storage_index, shnum, b"N" * 20, b"W" * 32)
            await backend.write_mutable(storage_index, shnum, [(0, b"m" * (300 if n == 9 else 2000))], None)
        else:
            size = 500 if n == 8 else 1000
            incoming = await backend.create_incoming(storage_index, shnum, size)
            await incoming.write(0, b"x" * size)
            await incoming.commit(LeaseInfo(0, b"\x01" * 32, b"\x02" * 32, made_at))
        await backend.put_leases(storage_index, shnum, leases)


@pytest_twisted.ensureDeferred
async def test_cutoff_date_cycle_matches_the_real_tahoe(tmp_path: Path) -> None:
    """The history entry the real Tahoe 1.20 recorded over these shares, reproduced; only the
    times (ours run at another moment) and disk blocks (another file system) may differ.
    Tahoe leaves the two shares that never had a lease on disk although it counts them as
    freed; ours deletes them (lafs.storage.lease_checker says why)."""
    known = json.loads((Path(__file__).parent.parent / "unit" / "data" / "lease_checker_history.json").read_text())
    expected = known["history_entry"]
    made_at = NOW
    cutoff = NOW - (known["made_at"] - known["cutoff_date"])
    storage = str(tmp_path / "storage")
    backend = DiskBackend.open(storage)
    await tahoe_shares(backend, made_at)
    clock = Clock()
    clock.advance(NOW + 400)  # Tahoe's first crawl starts 6 minutes after start-up
    settings = ExpirationSettings(enabled=True, mode=ExpirationMode.CUTOFF_DATE, cutoff_date=cutoff)
    lc = LeaseChecker(backend, storage, settings, clock=clock)
    await run_cycle(lc)
    got = last_cycle(lc)
    assert list(got) == list(expected)
    assert got["configured-expiration-mode"] == ["cutoff-date", None, cutoff, ["immutable", "mutable"]]
    assert expected["configured-expiration-mode"] == ["cutoff-date", None, known["cutoff_date"], ["immutable", "mutable"]]
    for key in ("expiration-enabled", "lease-age-histogram", "leases-per-share-histogram", "corrupt-shares"):
        assert got[key] == expected[key], key
    no_blocks = {k: v for k, v in got["space-recovered"].items() if "diskbytes" not in k}
    assert no_blocks == {k: v for k, v in expected["space-recovered"].items() if "diskbytes" not in k}
    left = sorted(str(p.relative_to(tmp_path)) for p in Path(storage, "shares").rglob("*") if p.is_file())
    never_leased = {"storage/shares/ba/baeaqcaibaeaqcaibaeaqcaiba/2", "storage/shares/be/beeqscijbeeqscijbeeqscijbe/0"}
    assert left == sorted(set(known["files_left"]) - never_leased)
