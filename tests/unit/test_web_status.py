"""The status tracker behind ``/status``: what it remembers, for how long, and what it reports."""

from __future__ import annotations

from lafs.web.status import CountingSource, StatusTracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    size = 10

    def read(self, offset: int, length: int) -> bytes:
        return b"x" * max(0, min(length, self.size - offset))


def test_an_operation_moves_from_active_to_recent_with_its_progress_and_speed() -> None:
    clock = Clock()
    tracker = StatusTracker(clock)
    upload = tracker.start("upload", 10)
    source = CountingSource(Source(), upload)
    source.read(0, 4)
    clock.now += 2
    assert tracker.active() == [upload] and tracker.recent() == []
    assert upload.progress() == 0.4 and upload.speed() == 2.0
    assert upload.to_json()["active"] is True
    tracker.finish(upload)
    assert tracker.active() == [] and tracker.recent() == [upload]
    assert upload.progress() == 1.0 and upload.outcome == "done" and upload.done_bytes == 10
    assert tracker.get(upload.number) is upload and tracker.get(999) is None


def test_a_failed_operation_keeps_how_far_it_got() -> None:
    tracker = StatusTracker(Clock())
    download = tracker.start("download", 100)
    download.advance(25)
    tracker.finish(download, "failed: NotEnoughSharesError")
    assert download.progress() == 0.25 and not download.active
    assert download.to_json()["status"] == "failed: NotEnoughSharesError"


def test_the_history_is_bounded_per_kind() -> None:
    tracker = StatusTracker(Clock(), recent_limit=3)
    for _ in range(10):
        tracker.finish(tracker.start("upload", 1))
    retrieve = tracker.start("retrieve", 1)
    tracker.finish(retrieve)
    recent = tracker.recent()
    assert [op.kind for op in recent] == ["retrieve", "upload", "upload", "upload"]
    assert [op.number for op in recent] == [11, 10, 9, 8]  # newest first


def test_an_operation_names_its_file_by_storage_index_only() -> None:
    tracker = StatusTracker(Clock())
    publish = tracker.start("publish", None)
    publish.identify(b"\x00" * 16)
    assert publish.storage_index == "a" * 26
    assert publish.progress() == 0.0 and "URI:" not in str(publish.to_json())
