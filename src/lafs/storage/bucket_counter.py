"""The bucket counter: how many storage indexes ("buckets") this server holds shares for.

It walks the prefixes like every crawler, counting each prefix's storage
indexes; at the end of a cycle the sum becomes ``last-complete-bucket-count``,
the "Total buckets" of the storage status page.  Its state file is
``storage/bucket_counter.state.json`` with the keys Tahoe 1.20 writes
(observed on the real program): the common crawler keys, ``bucket-counts``
(``{cycle: {prefix: count}}``), ``last-complete-bucket-count`` and
``storage-index-samples`` (``{prefix: [cycle, [b32 storage index, ...]]}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lafs.core import base32
from lafs.storage.crawler import ShareCrawler

STATE_FILE = "bucket_counter.state.json"


class BucketCounter(ShareCrawler):
    """Counts buckets; one cycle an hour at most, as in Tahoe."""

    slow_start = 300.0
    minimum_cycle_time = 60 * 60.0

    def initial_state(self) -> dict[str, Any]:
        return {"bucket-counts": {}, "last-complete-bucket-count": None, "storage-index-samples": {}}

    def started_cycle(self, cycle: int) -> None:
        # Only this cycle's counts and the last finished one's are worth keeping.
        counts = self.state["bucket-counts"]
        for old in [key for key in counts if key not in (str(cycle), str(cycle - 1))]:
            del counts[old]
        counts[str(cycle)] = {}

    def finished_prefix(self, cycle: int, prefix: str, storage_indexes: Sequence[bytes]) -> None:
        self.state["bucket-counts"].setdefault(str(cycle), {})[prefix] = len(storage_indexes)
        samples = self.state["storage-index-samples"]
        if not samples or prefix in samples:
            # Tahoe keeps a sample of one prefix's storage indexes, to tell a changed layout
            # from a changed population; the first prefix is as good as any.
            samples[prefix] = [cycle, [base32.b2a(si) for si in storage_indexes]]

    def finished_cycle(self, cycle: int) -> None:
        counts = self.state["bucket-counts"].get(str(cycle), {})
        self.state["last-complete-bucket-count"] = sum(counts.values())
        for old in [key for key in self.state["bucket-counts"] if key != str(cycle)]:
            del self.state["bucket-counts"][old]

    def bucket_count(self) -> int | None:
        """Buckets seen by the last complete cycle; None until one has finished."""
        count = self.state["last-complete-bucket-count"]
        return None if count is None else int(count)

    def status(self) -> dict[str, Any]:
        """The ``bucket-counter`` section of ``/storage?t=json``: the state, as Tahoe shows it."""
        return dict(self.state)
