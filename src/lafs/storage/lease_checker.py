"""The lease checker: garbage collection of shares whose leases have all expired.

Every storage index is visited once per cycle (see ``lafs.storage.crawler``).
For each finished share the checker reads its leases and decides, for each
lease, whether it has expired

* by its own duration ("original": the expiration time written in it has passed),
* by the configured rule ("configured", ``[storage]expire.*``): in age mode,
  renewal time + the override duration (or the lease's own duration) is
  before now; in cutoff-date mode, the renewal time is before the cutoff.
  A lease's renewal time is its expiration time minus 31 days, the only
  duration Tahoe grants.

When expiration is enabled and the share's kind (immutable / mutable) is
configured for it, the expired leases are removed; a share left with no
lease (including one that had none) is deleted ("actual").  When expiration
is disabled the checker still walks and counts what it *would* remove.
Shares being uploaded are never listed by the backend, so never touched.

Counts, as Tahoe 1.20 records them (shapes observed in its state files):
``examined-*`` for everything looked at, and ``original-*``,
``configured-*``, ``actual-*`` for what each rule frees, each in buckets,
shares, sharebytes (container size) and diskbytes (blocks on the medium),
in total and split ``-mutable`` / ``-immutable``; a bucket counts when every
one of its shares goes, and then its own diskbytes (the bucket directory's
blocks) count too.  Also ``lease-age-histogram`` (one-day bins),
``leases-per-share-histogram`` and ``corrupt-shares``.

``lease_checker.state.json`` holds the crawler position and, during a cycle,
``cycle-to-date``; ``lease_checker.history.json`` holds the last ten
finished cycles, keyed by cycle number.

Where this differs from the real Tahoe 1.20 (observed by running it over
hand-made shares; in cutoff-date mode its history entry is reproduced exactly,
tests/integration/test_lease_crawler.py):

* A share that has no lease at all is deleted here.  Tahoe counts it as
  freed (``actual-*``) but leaves the file, so the space it reports is never
  recovered; deleting it makes the report true.
* In age mode without ``expire.override_lease_duration``, Tahoe 1.20 expires
  no lease whose 31 days have run out (it counts only lease-less shares as
  expired), contrary to its documentation; here such leases expire as
  documented.
* Tahoe counts a lease-less share as configured / actually freed even when
  its kind is not configured to expire; here the kind switches apply to it.

The checker's read-modify-write of a share's leases runs between two awaits
of backend calls that, for the disk and memory backends, never suspend; so
no lease renewal can slip in between and be lost.  A backend that does
suspend needs the server to serialise lease updates per storage index.
"""

from __future__ import annotations

import os
from typing import Any

from lafs.config import ExpirationMode, ExpirationSettings
from lafs.core import base32
from lafs.core.containers import LEASE_DURATION, LeaseInfo
from lafs.core.errors import LafsError
from lafs.storage.backend import ShareBackend, ShareKind
from lafs.storage.crawler import ShareCrawler, log, read_json, write_json_atomically
from lafs.storage.errors import NoSuchShareError

STATE_FILE = "lease_checker.state.json"
HISTORY_FILE = "lease_checker.history.json"
HISTORY_CYCLES = 10
AGE_BIN = 24 * 60 * 60
"""Width of the lease-age histogram's bins, in seconds."""

_RULES = ("actual", "original", "configured", "examined")
_MEASURES = ("buckets", "shares", "sharebytes", "diskbytes")


def empty_space_recovered() -> dict[str, int]:
    """Every counter at zero, in the order Tahoe writes them."""
    return {
        f"{rule}-{measure}{kind}": 0 for rule in _RULES for measure in _MEASURES for kind in ("", "-mutable", "-immutable")
    }


def renewal_time(lease: LeaseInfo) -> int:
    """When the lease was granted or last renewed: Tahoe grants every lease for 31 days."""
    return lease.expiration_time - LEASE_DURATION


def expired_by_own_duration(lease: LeaseInfo, now: float) -> bool:
    return lease.expiration_time < now


def expired_by_settings(settings: ExpirationSettings, lease: LeaseInfo, now: float) -> bool:
    """Whether the configured rule (``expire.mode`` and its keys) counts the lease as expired."""
    if settings.mode is ExpirationMode.CUTOFF_DATE:
        assert settings.cutoff_date is not None  # ExpirationSettings guarantees it in this mode
        return renewal_time(lease) < settings.cutoff_date
    if settings.override_lease_duration is not None:
        return renewal_time(lease) + settings.override_lease_duration < now
    return expired_by_own_duration(lease, now)


def configured_mode(settings: ExpirationSettings) -> list[Any]:
    """The ``configured-expiration-mode`` of a history entry: mode, override seconds, cutoff
    seconds, the share kinds that expire."""
    kinds = [name for name, on in (("immutable", settings.immutable), ("mutable", settings.mutable)) if on]
    return [settings.mode.value, settings.override_lease_duration, settings.cutoff_date, kinds]


class LeaseChecker(ShareCrawler):
    """Expires leases and deletes unleased shares, slowly; see the module docstring."""

    slow_start = 360.0
    minimum_cycle_time = 12 * 60 * 60.0

    def __init__(
        self,
        backend: ShareBackend,
        state_dir: str,
        expiration: ExpirationSettings,
        *,
        clock: Any,
        **options: Any,
    ) -> None:
        self.expiration = expiration
        self.history_path = os.path.join(state_dir, HISTORY_FILE)
        super().__init__(backend, os.path.join(state_dir, STATE_FILE), clock=clock, **options)
        saved = read_json(self.history_path)
        self.history: dict[str, Any] = saved if isinstance(saved, dict) else {}

    # --- a cycle -------------------------------------------------------------------------

    def started_cycle(self, cycle: int) -> None:
        self.state["cycle-to-date"] = {
            "corrupt-shares": [],
            "space-recovered": empty_space_recovered(),
            "lease-age-histogram": [],
            "leases-per-share-histogram": {},
        }

    def _to_date(self) -> dict[str, Any]:
        if "cycle-to-date" not in self.state:
            # A state file from before a cycle-to-date was kept: count from here.
            self.started_cycle(self.state["current-cycle"])
        to_date: dict[str, Any] = self.state["cycle-to-date"]
        return to_date

    def finished_cycle(self, cycle: int) -> None:
        to_date = self._to_date()
        entry = {
            "cycle-start-finish-times": [self.state["current-cycle-start-time"], self.clock.seconds()],
            "expiration-enabled": self.expiration.enabled,
            "configured-expiration-mode": configured_mode(self.expiration),
            "lease-age-histogram": sorted(to_date["lease-age-histogram"]),
            "leases-per-share-histogram": to_date["leases-per-share-histogram"],
            "corrupt-shares": to_date["corrupt-shares"],
            "space-recovered": to_date["space-recovered"],
        }
        self.history[str(cycle)] = entry
        for old in sorted(self.history, key=int)[:-HISTORY_CYCLES]:
            del self.history[old]
        del self.state["cycle-to-date"]
        try:
            write_json_atomically(self.history_path, self.history)
        except OSError as e:
            log.warn("cannot save lease checker history {path}: {error}", path=self.history_path, error=str(e))

    def save_state(self) -> None:
        # Tahoe's state file carries a copy of the history too.
        self.state["history"] = self.history
        super().save_state()

    # --- a bucket ------------------------------------------------------------------------

    async def process_bucket(self, cycle: int, prefix: str, storage_index: bytes) -> None:
        shares = await self.backend.list_shares(storage_index)
        if not shares:
            return
        now = self.clock.seconds()
        to_date = self._to_date()
        # A bucket's kind is its shares' kind (a storage index is either immutable or mutable).
        bucket_kind = "-mutable" if ShareKind.MUTABLE in shares.values() else "-immutable"
        bucket_goes = {"original": True, "configured": True, "actual": True}
        # Measured now: once the last share goes, so does the bucket.
        bucket_disk = await self.backend.bucket_disk_size(storage_index)
        examined = 0
        for shnum, kind in shares.items():
            outcome = await self._process_share(storage_index, shnum, kind, now, to_date)
            if outcome is None:
                bucket_goes = dict.fromkeys(bucket_goes, False)
                continue
            examined += 1
            for rule, goes in outcome.items():
                bucket_goes[rule] = bucket_goes[rule] and goes
        if examined:
            self._count(to_date, "examined", bucket_kind, buckets=1)
        for rule, goes in bucket_goes.items():
            if goes and examined:
                self._count(to_date, rule, bucket_kind, buckets=1, diskbytes=bucket_disk)

    async def _process_share(
        self, storage_index: bytes, shnum: int, kind: ShareKind, now: float, to_date: dict[str, Any]
    ) -> dict[str, bool] | None:
        """Count one share and, if so configured, expire its leases; answer which rules free it,
        or None when it vanished or could not be read."""
        try:
            size = await self.backend.share_size(storage_index, shnum)
            stored = await self.backend.get_leases(storage_index, shnum)
        except NoSuchShareError:
            return None  # deleted since the listing (a mutable write of length 0)
        except LafsError:
            # A share we cannot parse is the operator's to look at, never ours to delete.
            to_date["corrupt-shares"].append([base32.b2a(storage_index), shnum])
            return None
        suffix = "-mutable" if kind is ShareKind.MUTABLE else "-immutable"
        leases = stored.leases
        self._count(to_date, "examined", suffix, shares=1, sharebytes=size.size, diskbytes=size.disk)
        histogram = to_date["leases-per-share-histogram"]
        histogram[str(len(leases))] = histogram.get(str(len(leases)), 0) + 1
        for lease in leases:
            self._add_age(to_date, now - renewal_time(lease))
        live = [lease for lease in leases if not expired_by_settings(self.expiration, lease, now)]
        kind_expires = self.expiration.immutable if kind is ShareKind.IMMUTABLE else self.expiration.mutable
        goes = {
            "original": all(expired_by_own_duration(lease, now) for lease in leases),
            "configured": kind_expires and not live,
            "actual": False,
        }
        if self.expiration.enabled and kind_expires:
            try:
                if not live:
                    await self.backend.delete_share(storage_index, shnum)
                    goes["actual"] = True
                elif len(live) < len(leases):
                    await self.backend.put_leases(storage_index, shnum, live)
            except NoSuchShareError:
                pass  # deleted meanwhile: nothing left to expire
        for rule in ("original", "configured", "actual"):
            if goes[rule]:
                self._count(to_date, rule, suffix, shares=1, sharebytes=size.size, diskbytes=size.disk)
        return goes

    @staticmethod
    def _count(to_date: dict[str, Any], rule: str, suffix: str, **amounts: int) -> None:
        recovered = to_date["space-recovered"]
        for measure, amount in amounts.items():
            if amount:
                recovered[f"{rule}-{measure}"] += amount
                recovered[f"{rule}-{measure}{suffix}"] += amount

    @staticmethod
    def _add_age(to_date: dict[str, Any], age: float) -> None:
        low = int(max(age, 0) // AGE_BIN) * AGE_BIN
        for entry in to_date["lease-age-histogram"]:
            if entry[0] == low:
                entry[2] += 1
                return
        to_date["lease-age-histogram"].append([low, low + AGE_BIN, 1])

    # --- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``lease-checker`` section of ``/storage?t=json``: state plus history."""
        return {**self.state, "history": self.history}

    def progress(self) -> dict[str, Any]:
        """The ``lease-checker-progress`` section: Tahoe's keys, plus how far the cycle is."""
        progress = super().progress()
        estimate = None
        last = self.history.get(str(self.state["last-cycle-finished"])) if self.history else None
        if last is not None:
            started, finished = last["cycle-start-finish-times"]
            estimate = finished - started
        progress["estimated-time-per-cycle"] = estimate
        return progress

    def expiration_summary(self) -> dict[str, Any]:
        """What the status page says of the configuration: on or off, and the rule."""
        return {
            "enabled": self.expiration.enabled,
            "mode": self.expiration.mode.value,
            "override-lease-duration": self.expiration.override_lease_duration,
            "cutoff-date": self.expiration.cutoff_date,
            "sharetypes": configured_mode(self.expiration)[3],
        }
