"""Walking every share of a storage server slowly, a slice at a time, surviving restarts.

A crawler visits the 1024 two-character prefixes of ``shares/`` in text order
(``22`` first, ``zz`` last), and in each prefix the storage indexes in base32
order.  It works in *slices*: a slice ends when it has used ``cpu_slice``
seconds, or handled ``buckets_per_slice`` storage indexes, and the next one
starts after a sleep long enough that the crawler keeps to about
``allowed_cpu_fraction`` of the reactor's time.  A walk over all prefixes is
a *cycle*; cycles are numbered from 0 and a new one starts no sooner than
``minimum_cycle_time`` after the previous one started.

Progress is saved after every slice in a JSON state file with Tahoe 1.20's
keys (``version``, ``last-cycle-finished``, ``current-cycle``,
``last-complete-prefix``, ``last-complete-bucket``,
``current-cycle-start-time``) plus the subclass's own, so a restarted node
continues from the last finished storage index of the interrupted cycle.

Subclasses say what to do with each storage index (``process_bucket``), each
finished prefix (``finished_prefix``) and each finished cycle
(``finished_cycle``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.base import DelayedCall
from twisted.logger import Logger

from lafs.core import base32
from lafs.storage.backend import ShareBackend
from lafs.storage.paths import PREFIXES

log = Logger()

STATE_VERSION = 1


def write_json_atomically(path: str, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON, so a crash leaves the old file or the new one, never half."""
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(temporary, path)


def read_json(path: str) -> Any:
    """The JSON value in ``path``, or None when it is missing or unreadable (a crawler then starts afresh)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warn("ignoring unreadable crawler file {path}: {error}", path=path, error=str(e))
        return None


class ShareCrawler(service.Service):
    """The walking machinery; see the module docstring."""

    slow_start: float = 300.0
    """Seconds after start-up before the first slice, so a starting node is not slowed down."""
    minimum_cycle_time: float = 0.0
    cpu_slice: float = 0.1
    allowed_cpu_fraction: float = 0.1

    def __init__(
        self,
        backend: ShareBackend,
        state_path: str,
        *,
        clock: Any,
        buckets_per_slice: int = 1000,
        slow_start: float | None = None,
        minimum_cycle_time: float | None = None,
        cpu_slice: float | None = None,
        allowed_cpu_fraction: float | None = None,
    ) -> None:
        if buckets_per_slice < 1:
            raise ValueError(f"a crawler must handle at least one storage index per slice, not {buckets_per_slice}")
        if allowed_cpu_fraction is not None and not 0 < allowed_cpu_fraction <= 1:
            raise ValueError(f"allowed_cpu_fraction must be in (0, 1], not {allowed_cpu_fraction}")
        self.backend = backend
        self.state_path = state_path
        self.clock = clock
        self.buckets_per_slice = buckets_per_slice
        if slow_start is not None:
            self.slow_start = slow_start
        if minimum_cycle_time is not None:
            self.minimum_cycle_time = minimum_cycle_time
        if cpu_slice is not None:
            self.cpu_slice = cpu_slice
        if allowed_cpu_fraction is not None:
            self.allowed_cpu_fraction = allowed_cpu_fraction
        self.state: dict[str, Any] = self._load_state()
        self.slices = 0
        """Slices run since this object was made (tests watch the rate with it)."""
        self.next_wake_time: float | None = None
        self.last_slice_time: float | None = None
        """Seconds the last slice took."""
        self._timer: DelayedCall | None = None
        self._running_slice: defer.Deferred[None] | None = None
        self._stopping = False

    # --- state -----------------------------------------------------------------------------

    def initial_state(self) -> dict[str, Any]:
        """The subclass's own keys for a crawler that has never run."""
        return {}

    def _load_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "last-cycle-finished": None,
            "current-cycle": None,
            "last-complete-prefix": None,
            "last-complete-bucket": None,
            # As in Tahoe: before the first cycle this is when the crawler was made.
            "current-cycle-start-time": self.clock.seconds(),
            **self.initial_state(),
        }
        saved = read_json(self.state_path)
        if isinstance(saved, dict) and saved.get("version") == STATE_VERSION:
            state.update(saved)
        elif saved is not None:
            log.warn("ignoring crawler state {path} of an unknown version", path=self.state_path)
        if state["last-complete-prefix"] is not None and state["last-complete-prefix"] not in PREFIXES:
            # Not ours to guess where it was: restart this cycle from the first prefix.
            state["last-complete-prefix"] = state["last-complete-bucket"] = None
        return state

    def save_state(self) -> None:
        try:
            write_json_atomically(self.state_path, self.state)
        except OSError as e:
            # Losing progress only costs repeated work; the walk itself goes on.
            log.warn("cannot save crawler state {path}: {error}", path=self.state_path, error=str(e))

    # --- what subclasses do ------------------------------------------------------------------

    def started_cycle(self, cycle: int) -> None:
        """A cycle begins (``self.state`` already names it)."""

    async def process_bucket(self, cycle: int, prefix: str, storage_index: bytes) -> None:
        """Look at one storage index."""

    def finished_prefix(self, cycle: int, prefix: str, storage_indexes: Sequence[bytes]) -> None:
        """Every storage index of ``prefix`` has been processed (``storage_indexes``: all of them)."""

    def finished_cycle(self, cycle: int) -> None:
        """Every prefix has been walked (``self.state`` still names the cycle as current)."""

    # --- progress --------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """Where the walk is, for status pages: whether a cycle is under way, how far it is
        (percent of prefixes, only during a cycle), and when the next slice runs (Tahoe's keys)."""
        now = self.clock.seconds()
        in_progress = self.state["current-cycle"] is not None
        done = 0
        if in_progress and self.state["last-complete-prefix"] is not None:
            done = PREFIXES.index(self.state["last-complete-prefix"]) + 1
        progress: dict[str, Any] = {"cycle-in-progress": in_progress}
        if in_progress:
            progress["cycle-complete-percentage"] = 100.0 * done / len(PREFIXES)
        progress["next-crawl-time"] = self.next_wake_time
        progress["remaining-wait-time"] = None if self.next_wake_time is None else max(self.next_wake_time - now, 0.0)
        return progress

    # --- service ---------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopping = False
        self._schedule(self.slow_start)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.next_wake_time = None
        running = self._running_slice
        if running is None:
            self.save_state()
            return defer.succeed(None)
        # The slice under way notices ``running`` is False after its current storage index,
        # saves the state and ends.
        finished: defer.Deferred[None] = defer.Deferred()
        running.addBoth(lambda _: finished.callback(None))
        return finished

    def _schedule(self, delay: float) -> None:
        self.next_wake_time = self.clock.seconds() + delay
        self._timer = self.clock.callLater(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        self._running_slice = defer.Deferred.fromCoroutine(self._slice())
        self._running_slice.addErrback(self._slice_failed)
        self._running_slice.addBoth(self._slice_ended)

    def _slice_failed(self, failure: Any) -> None:
        log.failure("crawler slice failed; trying again later", failure, path=self.state_path)
        self.last_sleep = max(self.cpu_slice / self.allowed_cpu_fraction, 1.0)

    def _slice_ended(self, _: object) -> None:
        self._running_slice = None
        if self.running:
            self._schedule(self.last_sleep)

    async def run_slice(self) -> float:
        """Run one slice now, and answer how long the crawler would sleep after it (for tests
        and tools that drive a crawler by hand, without starting it)."""
        await self._slice()
        return self.last_sleep

    async def _slice(self) -> None:
        """Walk from the saved position until the slice's time or count runs out, the cycle
        ends, or the service stops; then save the state and choose the sleep before the next."""
        self.slices += 1
        started = self.clock.seconds()
        state = self.state
        handled = 0
        try:
            if state["current-cycle"] is None:
                last = state["last-cycle-finished"]
                new_cycle = 0 if last is None else int(last) + 1
                state["current-cycle"] = new_cycle
                state["current-cycle-start-time"] = started
                state["last-complete-prefix"] = state["last-complete-bucket"] = None
                self.started_cycle(new_cycle)
            cycle: int = state["current-cycle"]
            last_prefix = state["last-complete-prefix"]
            start_index = 0 if last_prefix is None else PREFIXES.index(last_prefix) + 1
            for prefix in PREFIXES[start_index:]:
                storage_indexes = await self.backend.list_storage_indexes(prefix)
                resume_after = state["last-complete-bucket"]
                if resume_after is not None and not resume_after.startswith(prefix):
                    resume_after = None
                for storage_index in storage_indexes:
                    if resume_after is not None and base32.b2a(storage_index) <= resume_after:
                        continue  # done before the last save
                    if handled >= self.buckets_per_slice or self._slice_is_over(started):
                        return
                    await self.process_bucket(cycle, prefix, storage_index)
                    state["last-complete-bucket"] = base32.b2a(storage_index)
                    handled += 1
                self.finished_prefix(cycle, prefix, storage_indexes)
                # last-complete-bucket stays: it is only used within its own prefix.
                state["last-complete-prefix"] = prefix
                if self._slice_is_over(started):
                    return
            self.finished_cycle(cycle)
            state["last-cycle-finished"] = cycle
            state["current-cycle"] = None
            state["last-complete-prefix"] = state["last-complete-bucket"] = None
        finally:
            self.save_state()
            now = self.clock.seconds()
            self.last_slice_time = now - started
            self.last_sleep = self._sleep_after(started, now)

    def _slice_is_over(self, started: float) -> bool:
        return self._stopping or self.clock.seconds() - started >= self.cpu_slice

    def _sleep_after(self, started: float, now: float) -> float:
        if self.state["current-cycle"] is None:
            # Between cycles: wait out the rest of the minimum cycle time.
            cycle_started = self.state["current-cycle-start-time"] or now
            return max(cycle_started + self.minimum_cycle_time - now, 0.0)
        # Sleep so that working ``elapsed`` seconds is ``allowed_cpu_fraction`` of the time.
        elapsed = now - started
        return elapsed * (1 - self.allowed_cpu_fraction) / self.allowed_cpu_fraction

    last_sleep: float = 0.0
