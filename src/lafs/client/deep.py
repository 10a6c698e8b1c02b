"""Deep operations over a directory graph: traversal, deep-check (with repair and leases), manifest, deep-stats.

The walk follows Tahoe's order (a directory, then its files, then its
subdirectories, children by sorted name) and visits every object once: a
node already seen by its verify cap (a cycle, a subtree linked twice) is not
visited again.  Literal files have no verify cap and are visited at each link,
and unknown nodes are reported but never opened, as in Tahoe.  Unlike Tahoe, a
directory that cannot be read does not end the operation: it is reported
(`DeepResults.errors`) and its subtree skipped, so one lost directory does not
hide the health of everything else.  Objects are worked on ``concurrency`` at
a time, each as soon as the listing naming it arrives (up to LOOKAHEAD ahead of
the walk); results are still recorded in walk order, so streamed output does
not depend on timing.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import defer

from lafs.client.nodemaker import ImmutableFileNode, LiteralFileNode, UnknownNode
from lafs.core import base32
from lafs.core.check_results import CheckAndRepairResults, CheckResults
from lafs.core.errors import LafsError
from lafs.dirnode import DirectoryNode
from lafs.mutable.filenode import MutableFileNode

Path = tuple[str, ...]

CHECK_CONCURRENCY = 80
"""Objects a deep-check works on at once: each is a few small requests to every server, and a server
handles a batch of them for less than one at a time (the storage client keeps at most MAX_REQUESTS in
flight per server and queues the rest)."""
REPAIR_CONCURRENCY = 40
"""Objects a deep-check with repair works on at once: a repair holds some segments of its file."""


class OperationCancelledError(LafsError):
    """A deep operation was cancelled (``POST /operations/$HANDLE?t=cancel``)."""


@attrs.define
class Monitor:
    """Progress of one deep operation, and its cancel switch (what ``/operations/`` shows)."""

    cancelled: bool = False
    finished: bool = False
    visited: int = 0

    def cancel(self) -> None:
        self.cancelled = True

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise OperationCancelledError("the operation was cancelled")


Work = Callable[[Any, Path], Awaitable[Any]]
"""What to do at one node (a check, nothing): runs concurrently with its siblings'."""
Record = Callable[[Any, Path, Any], None]
"""Called in walk order with a node, its path and what its work returned."""


def verify_cap_of(node: Any) -> str | None:
    """What identifies an object for visiting it once: its verify cap (None for literal files and unknown nodes)."""
    if isinstance(node, UnknownNode):
        return None
    cap: str | None = node.get_verify_uri()
    return cap


LOOKAHEAD = 1000
"""Objects whose work may begin before the walk reaches them (bounding what a deep walk holds)."""


@attrs.define
class _Begun:
    """One object's work under way, and for a directory its listing."""

    work: defer.Deferred[Any]
    listing: defer.Deferred[Any] | None = None

    def forget(self) -> None:
        """Silence the failures of work the walk will never wait for (it was cancelled or failed)."""
        for d in (self.work, self.listing):
            if d is not None:
                d.addErrback(lambda _: None)


async def deep_traverse(
    root: DirectoryNode,
    work: Work,
    record: Record,
    *,
    monitor: Monitor | None = None,
    concurrency: int = 10,
    on_unreadable: Callable[[Path, Exception], None] | None = None,
    on_directory: Callable[[DirectoryNode, dict[str, tuple[Any, dict[str, Any]]]], None] | None = None,
) -> None:
    """Walk the graph below ``root``: ``work`` then ``record`` each object once.

    Records come in walk order (a directory, its files, then its
    subdirectories' walks, names sorted), but the work does not wait for the
    walk: as soon as a directory's listing arrives its children's work
    begins (up to LOOKAHEAD objects ahead), so the servers are kept busy
    across directories instead of draining at each directory's slowest file.
    The walk alone decides which path an object shared by several is
    recorded under.
    """
    monitor = monitor or Monitor()
    semaphore = defer.DeferredSemaphore(max(1, concurrency))
    found: set[str | None] = {verify_cap_of(root)}
    early: dict[str, _Begun] = {}
    """Work begun ahead of the walk, by verify cap; the walk takes it from here when it gets there."""

    async def visit(node: Any, path: Path) -> Any:
        monitor.raise_if_cancelled()
        result = await semaphore.run(lambda: defer.Deferred.fromCoroutine(_run(work, node, path)))
        monitor.visited += 1
        return result

    def begin(node: Any, path: Path) -> _Begun:
        begun = _Begun(defer.Deferred.fromCoroutine(visit(node, path)))
        if isinstance(node, DirectoryNode):
            # Its own work (a check) and its listing are independent: both at once.
            begun.listing = semaphore.run(lambda: defer.Deferred.fromCoroutine(node.list()))
            begun.listing.addCallback(begin_children, path)
        return begun

    def begin_children(children: dict[str, tuple[Any, dict[str, Any]]], path: Path) -> Any:
        for name, (child, _metadata) in sorted(children.items()):
            if len(early) >= LOOKAHEAD or monitor.cancelled:
                break
            verifier = verify_cap_of(child)
            if verifier is not None and verifier not in found and verifier not in early:
                early[verifier] = begin(child, (*path, name))
        return children

    def claim(child: Any, child_path: Path, verifier: str | None) -> _Begun:
        begun = early.pop(verifier, None) if verifier is not None else None
        return begun if begun is not None else begin(child, child_path)

    async def walk_directory(node: DirectoryNode, path: Path, begun: _Begun) -> None:
        assert begun.listing is not None
        try:
            children = await begun.listing
        except LafsError as e:
            record(node, path, await begun.work)
            if on_unreadable is not None:
                on_unreadable(path, e)
            return
        record(node, path, await begun.work)
        if on_directory is not None:
            on_directory(node, children)
        files: list[tuple[Any, Path, _Begun]] = []
        directories: list[tuple[DirectoryNode, Path, _Begun]] = []
        for name, (child, _metadata) in sorted(children.items()):
            child_path = (*path, name)
            verifier = verify_cap_of(child)
            if isinstance(child, UnknownNode):
                files.append((child, child_path, begin(child, child_path)))
                continue
            if verifier is not None and verifier in found:
                continue
            found.add(verifier)
            claimed = claim(child, child_path, verifier)
            if isinstance(child, DirectoryNode):
                directories.append((child, child_path, claimed))
            else:
                files.append((child, child_path, claimed))
        try:
            for child, child_path, claimed in files:
                record(child, child_path, await claimed.work)
            for child, child_path, claimed in directories:
                monitor.raise_if_cancelled()
                await walk_directory(child, child_path, claimed)
        except BaseException:
            for _, _, begun_child in [*files, *directories]:
                begun_child.forget()  # harmless on the ones already awaited
            raise

    try:
        await walk_directory(root, (), begin(root, ()))
    finally:
        for begun in early.values():
            begun.forget()
        early.clear()
    monitor.finished = True


async def _run(work: Work, node: Any, path: Path) -> Any:
    return await work(node, path)


async def _nothing(node: Any, path: Path) -> None:
    return None


# --- deep-stats -------------------------------------------------------------------------


def _next_power_of_k(n: int, k: float) -> float:
    """The smallest power of ``k`` at least ``n`` (Tahoe's mathutil.next_power_of_k)."""
    x = 0 if n == 0 else int(math.log(n, k) + 0.5)
    return k ** (x + 1) if k**x < n else k**x


class DeepStats:
    """Tahoe's deep-stats counters: files by kind and size, directories and their sizes, a size histogram."""

    # Tahoe 1.20's keys in its order (seen from a running node): it has no size-mutable-files,
    # although webapi.rst names one, and it adds largest-directory-children.
    KEYS = (
        "api-version",
        "count-immutable-files",
        "count-mutable-files",
        "count-literal-files",
        "count-files",
        "count-directories",
        "count-unknown",
        "size-immutable-files",
        "size-literal-files",
        "size-directories",
        "largest-directory",
        "largest-directory-children",
        "largest-immutable-file",
    )

    def __init__(self) -> None:
        self.stats: dict[str, int] = dict.fromkeys(self.KEYS, 0)
        self.stats["api-version"] = 1
        self.histogram: dict[tuple[int, int], int] = {}
        # Two buckets per decade, as Tahoe draws them: (0,0), (1,3), (4,10), (11,31), ...
        self._buckets: list[tuple[int, int]] = [(0, 0), (1, 3)]

    def _add(self, key: str, value: int = 1) -> None:
        self.stats[key] += value

    def _max(self, key: str, value: int) -> None:
        self.stats[key] = max(self.stats[key], value)

    def _bucket(self, size: int) -> tuple[int, int]:
        i = 0
        while True:
            if i >= len(self._buckets):
                lower = self._buckets[i - 1][1] + 1
                self._buckets.append((lower, int(_next_power_of_k(lower, math.sqrt(10)))))
            low, high = self._buckets[i]
            if low <= size <= high:
                return low, high
            i += 1

    def add_node(self, node: Any) -> None:
        if isinstance(node, UnknownNode):
            self._add("count-unknown")
        elif isinstance(node, DirectoryNode):
            self._add("count-directories")
        elif isinstance(node, MutableFileNode):
            # As in Tahoe, a mutable file's size would need the grid: it is counted, not sized.
            self._add("count-files")
            self._add("count-mutable-files")
        elif isinstance(node, LiteralFileNode | ImmutableFileNode):
            size = node.get_size()
            self._add("count-files")
            bucket = self._bucket(size)
            self.histogram[bucket] = self.histogram.get(bucket, 0) + 1
            if isinstance(node, LiteralFileNode):
                self._add("count-literal-files")
                self._add("size-literal-files", size)
            else:
                self._add("count-immutable-files")
                self._add("size-immutable-files", size)
                self._max("largest-immutable-file", size)

    def enter_directory(self, node: DirectoryNode, children: dict[str, Any]) -> None:
        if node.last_read_size is not None:
            self._add("size-directories", node.last_read_size)
            self._max("largest-directory", node.last_read_size)
        self._max("largest-directory-children", len(children))

    def results(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.stats)
        out["size-files-histogram"] = sorted([low, high, count] for (low, high), count in self.histogram.items())
        return out


# --- per-object descriptions ------------------------------------------------------------------


def node_type(node: Any) -> str:
    if isinstance(node, DirectoryNode):
        return "directory"
    if isinstance(node, UnknownNode):
        return "unknown"
    return "file"


def repair_cap_of(node: Any) -> str | None:
    """The cap a repair needs: the write cap of a mutable object (a repair publishes), else the read cap."""
    if isinstance(node, UnknownNode):
        return None
    if node.is_mutable():
        # A mutable repair publishes: it needs the write cap, and a read cap cannot repair.
        return None if node.is_readonly() else node.get_uri()
    # An immutable object is repaired from its shares alone: its verify cap is enough.
    return verify_cap_of(node)


def manifest_entry(node: Any, path: Path) -> dict[str, Any]:
    """One ``t=stream-manifest`` line (also the start of a ``t=stream-deep-check`` line)."""
    si = None if isinstance(node, UnknownNode) else node.get_storage_index()
    return {
        "path": list(path),
        "cap": node.get_uri(),
        "type": node_type(node),
        "verifycap": verify_cap_of(node) or "",
        "repaircap": repair_cap_of(node) or "",
        "storage-index": base32.b2a(si) if si else "",
    }


# --- deep-check ---------------------------------------------------------------------------------


@attrs.define
class DeepCheckResults:
    """Totals of a deep-check (with or without repair), and each object's results by path."""

    root_storage_index: bytes | None
    repair: bool
    results: dict[Path, CheckResults | CheckAndRepairResults] = attrs.field(factory=dict)
    unreadable: list[tuple[Path, str]] = attrs.field(factory=list)
    stats: DeepStats = attrs.field(factory=DeepStats)

    def add(self, path: Path, result: CheckResults | CheckAndRepairResults) -> None:
        pre = result.pre if isinstance(result, CheckAndRepairResults) else result
        if pre.is_literal():
            return  # Tahoe counts only objects with shares: a literal file has none to check
        self.results[path] = result

    def _pre(self) -> list[CheckResults]:
        return [r.pre if isinstance(r, CheckAndRepairResults) else r for r in self.results.values()]

    def _post(self) -> list[CheckResults]:
        return [r.post if isinstance(r, CheckAndRepairResults) else r for r in self.results.values()]

    @property
    def count_checked(self) -> int:
        return len(self.results)

    def count_repairs(self) -> tuple[int, int]:
        """(attempted, successful)."""
        attempted = [r for r in self.results.values() if isinstance(r, CheckAndRepairResults) and r.repair_attempted]
        return len(attempted), sum(1 for r in attempted if r.repair_successful)

    @staticmethod
    def _corrupt(results: list[CheckResults]) -> list[list[Any]]:
        return [[server, base32.b2a(si), shnum] for r in results for server, si, shnum in r.corrupt_shares]

    def to_json(self, finished: bool = True) -> dict[str, Any]:
        """Tahoe's ``t=start-deep-check`` JSON (``/operations/$HANDLE?output=JSON``)."""
        root = base32.b2a(self.root_storage_index) if self.root_storage_index else ""
        pre, post = self._pre(), self._post()
        data: dict[str, Any] = {"finished": finished, "root-storage-index": root, "count-objects-checked": self.count_checked}
        if not self.repair:
            data["count-objects-healthy"] = sum(1 for r in pre if r.healthy)
            data["count-objects-unhealthy"] = sum(1 for r in pre if not r.healthy)
            data["count-corrupt-shares"] = sum(len(r.corrupt_shares) for r in pre)
            data["list-corrupt-shares"] = self._corrupt(pre)
            data["list-unhealthy-files"] = [
                [list(path), r.to_json()] for path, r in self.results.items() if isinstance(r, CheckResults) and not r.healthy
            ]
        else:
            attempted, successful = self.count_repairs()
            data["count-objects-healthy-pre-repair"] = sum(1 for r in pre if r.healthy)
            data["count-objects-unhealthy-pre-repair"] = sum(1 for r in pre if not r.healthy)
            data["count-objects-healthy-post-repair"] = sum(1 for r in post if r.healthy)
            data["count-objects-unhealthy-post-repair"] = sum(1 for r in post if not r.healthy)
            data["count-repairs-attempted"] = attempted
            data["count-repairs-successful"] = successful
            data["count-repairs-unsuccessful"] = attempted - successful
            data["count-corrupt-shares-pre-repair"] = sum(len(r.corrupt_shares) for r in pre)
            data["count-corrupt-shares-post-repair"] = sum(len(r.corrupt_shares) for r in post)
            data["list-corrupt-shares"] = self._corrupt(pre)
            data["list-remaining-corrupt-shares"] = self._corrupt(post)
            data["list-unhealthy-files"] = [
                [list(path), r.post.to_json()]
                for path, r in self.results.items()
                if isinstance(r, CheckAndRepairResults) and not r.post.healthy
            ]
        # Tahoe shows the stats only once the walk is over.
        data["stats"] = self.stats.results() if finished else {}
        return data


async def deep_check(
    root: DirectoryNode,
    *,
    verify: bool = False,
    repair: bool = False,
    add_lease: bool = False,
    monitor: Monitor | None = None,
    on_object: Callable[[dict[str, Any]], None] | None = None,
    concurrency: int | None = None,
    results: DeepCheckResults | None = None,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> DeepCheckResults:
    """Check (``repair``: and repair) every object below ``root`` once; ``on_object`` gets each stream line.

    ``results``, when given, is filled in as the walk goes (what a status page shows meanwhile).
    ``pace``, when given, is awaited before each object is checked (a rate limit).
    """
    totals = results if results is not None else DeepCheckResults(root.get_storage_index(), repair)

    async def work(node: Any, path: Path) -> CheckResults | CheckAndRepairResults | None:
        if isinstance(node, UnknownNode) or not hasattr(node, "check"):
            return None
        if pace is not None:
            await pace()
        if repair:
            result: CheckResults | CheckAndRepairResults = await node.check_and_repair(verify=verify, add_lease=add_lease)
        else:
            result = await node.check(verify=verify, add_lease=add_lease)
        return result

    def record(node: Any, path: Path, result: CheckResults | CheckAndRepairResults | None) -> None:
        totals.stats.add_node(node)
        line = manifest_entry(node, path)
        if result is not None:
            totals.add(path, result)
            if isinstance(result, CheckAndRepairResults):
                if result.pre.is_literal():
                    line["check-results"] = result.pre.to_json()
                else:
                    line["check-and-repair-results"] = result.to_json()
            else:
                line["check-results"] = result.to_json()
        if on_object is not None:
            on_object(line)

    def unreadable(path: Path, error: Exception) -> None:
        totals.unreadable.append((path, str(error)))

    if concurrency is None:
        concurrency = REPAIR_CONCURRENCY if repair else CHECK_CONCURRENCY
    await deep_traverse(
        root, work, record, monitor=monitor, concurrency=concurrency, on_unreadable=unreadable,
        on_directory=totals.stats.enter_directory,
    )
    return totals


# --- manifest and stats ------------------------------------------------------------------------


@attrs.define
class ManifestResults:
    """Every object below a directory: (path, cap) and the verify caps and storage indexes, plus deep-stats."""

    root_storage_index: bytes | None
    entries: list[dict[str, Any]] = attrs.field(factory=list)
    stats: DeepStats = attrs.field(factory=DeepStats)
    unreadable: list[tuple[Path, str]] = attrs.field(factory=list)

    def to_json(self, finished: bool = True) -> dict[str, Any]:
        """Tahoe's ``t=start-manifest`` JSON (the lists only once finished, as Tahoe's).

        Tahoe lists verify caps and storage indexes in its set's order; they are sorted here.
        """
        data: dict[str, Any] = {
            "stats": self.stats.results(),
            "finished": finished,
            "origin": base32.b2a(self.root_storage_index) if self.root_storage_index else "",
        }
        if finished:
            data["manifest"] = [[e["path"], e["cap"]] for e in self.entries]
            data["verifycaps"] = sorted({e["verifycap"] for e in self.entries if e["verifycap"]})
            data["storage-index"] = sorted({e["storage-index"] for e in self.entries if e["storage-index"]})
        return data


async def deep_manifest(
    root: DirectoryNode,
    *,
    monitor: Monitor | None = None,
    on_object: Callable[[dict[str, Any]], None] | None = None,
    results: ManifestResults | None = None,
) -> ManifestResults:
    """The manifest of everything below ``root`` (also what deep-stats and deep-size walk)."""
    results = results if results is not None else ManifestResults(root.get_storage_index())

    def record(node: Any, path: Path, _: None) -> None:
        results.stats.add_node(node)
        entry = manifest_entry(node, path)
        results.entries.append(entry)
        if on_object is not None:
            on_object(entry)

    def unreadable(path: Path, error: Exception) -> None:
        results.unreadable.append((path, str(error)))

    await deep_traverse(
        root, _nothing, record, monitor=monitor, on_unreadable=unreadable, on_directory=results.stats.enter_directory
    )
    return results


def deep_size(stats: dict[str, Any]) -> int:
    """Tahoe's deep-size: the bytes of immutable and mutable files and of directories."""
    return int(stats["size-immutable-files"] + stats.get("size-mutable-files", 0) + stats["size-directories"])
