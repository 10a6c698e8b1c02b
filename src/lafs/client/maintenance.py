"""Automatic maintenance (lafs's own, beyond Tahoe): deep-check with repair and add-lease over
configured targets on a schedule, so files stay alive without a cron job.

One run at a time: when the timer fires while a run is still going, that turn is skipped
(and counted), never started alongside.  Each object waits ``pause`` seconds before it is
checked and ``concurrency`` objects of a directory are worked on at once, so a run never floods
the grid.  The last run's summary is kept in memory and in ``BASEDIR/maintenance.json``;
the welcome page and ``/?t=json`` show it.  docs/maintenance.md describes the settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from lafs.client.deep import DeepCheckResults, deep_check
from lafs.config import MaintenanceSettings
from lafs.core.check_results import CheckAndRepairResults, CheckResults
from lafs.dirnode import DirectoryNode

log = Logger()

SUMMARY_FILE = "maintenance.json"
ALIASES_FILE = os.path.join("private", "aliases")
ROOT_DIR_CAP_FILE = os.path.join("private", "root_dir.cap")
FIRST_RUN_DELAY = 60.0
"""Seconds after start-up before a node that never ran maintenance runs it: time to find its servers."""


def read_aliases(basedir: str) -> dict[str, str]:
    """``private/aliases`` (``name: cap`` lines) and the ``tahoe`` alias of ``private/root_dir.cap``."""
    aliases: dict[str, str] = {}
    try:
        with open(os.path.join(basedir, ROOT_DIR_CAP_FILE), encoding="utf-8") as f:
            root = f.read().strip()
        if root:
            aliases["tahoe"] = root
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(basedir, ALIASES_FILE), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return aliases
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and ":" in line:
            name, cap = line.split(":", 1)
            aliases[name.strip()] = cap.strip()
    return aliases


def target_label(target: str) -> str:
    """A target as the summary names it: an alias as written, a cap only by its kind (caps are secrets)."""
    if target.startswith("URI:"):
        kind = target.split(":")[1] if target.count(":") > 1 else ""
        return f"URI:{kind}:..."
    return target


def _empty_totals() -> dict[str, int]:
    return {"checked": 0, "healthy": 0, "repaired": 0, "repairs-failed": 0, "unrecoverable": 0, "leases-renewed": 0}


class MaintenanceService(service.Service):
    """Runs maintenance every ``settings.interval`` seconds on ``clock``; a child of the node."""

    def __init__(
        self,
        settings: MaintenanceSettings,
        node_from_string: Callable[[str], Any],
        basedir: str,
        *,
        clock: Any,
        first_run_delay: float = FIRST_RUN_DELAY,
    ) -> None:
        self.setName("maintenance")
        self.settings = settings
        self._node_from_string = node_from_string
        self.basedir = basedir
        self.clock = clock
        self.first_run_delay = first_run_delay
        self.summary_path = os.path.join(basedir, SUMMARY_FILE)
        self.last_run: dict[str, Any] | None = self._load_summary()
        self.current: dict[str, Any] | None = None
        """The run under way (its totals so far), or None."""
        self.skipped = 0
        """Turns skipped because the previous run was still going."""
        self.next_run: float | None = None
        self._timer: Any = None
        self._running: defer.Deferred[Any] | None = None

    # --- schedule --------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        now = self.clock.seconds()
        when = now + self.first_run_delay
        if self.last_run is not None and isinstance(self.last_run.get("started"), (int, float)):
            when = max(when, self.last_run["started"] + self.settings.interval)
        self._schedule(when)

    def stopService(self) -> Any:
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.next_run = None
        if self._running is not None:
            # Let the run under way finish its current object; its summary is still saved.
            return self._running
        return defer.succeed(None)

    def _schedule(self, when: float) -> None:
        self.next_run = when
        self._timer = self.clock.callLater(max(when - self.clock.seconds(), 0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._schedule(self.clock.seconds() + self.settings.interval)
        if self._running is not None:
            self.skipped += 1
            log.info("maintenance: the previous run is still going; this turn is skipped")
            return
        self.run_now()

    @property
    def run_in_progress(self) -> defer.Deferred[Any] | None:
        """The run under way (fires with its summary), or None."""
        return self._running

    def run_now(self) -> defer.Deferred[dict[str, Any]] | None:
        """Start a run unless one is going (then None); fires with the run's summary."""
        if self._running is not None:
            return None
        d = defer.Deferred.fromCoroutine(self._run())

        def done(summary: Any) -> Any:
            self._running = None
            return summary

        d.addBoth(done)
        self._running = d
        return d

    # --- one run ---------------------------------------------------------------------------

    async def _pace(self) -> None:
        if self.settings.pause > 0:
            await task.deferLater(self.clock, self.settings.pause, lambda: None)

    async def _run(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "started": self.clock.seconds(),
            "finished": None,
            "targets": [target_label(t) for t in self.settings.targets],
            **_empty_totals(),
            "errors": [],
        }
        self.current = summary
        log.info("maintenance: run started over {count} target(s)", count=len(self.settings.targets))
        try:
            aliases = read_aliases(self.basedir)
        except OSError as e:
            aliases = {}
            summary["errors"].append(f"cannot read the aliases: {e.strerror}")
        for target in self.settings.targets:
            label = target_label(target)
            try:
                await self._maintain(target, aliases, summary)
            except Exception as e:  # one lost target must not stop the others
                summary["errors"].append(f"{label}: {type(e).__name__}: {_no_caps(str(e))}")
        summary["finished"] = self.clock.seconds()
        self.current = None
        self.last_run = summary
        self._save_summary(summary)
        log.info(
            "maintenance: run finished: {checked} checked, {repaired} repaired, {unrecoverable} unrecoverable, "
            "{errors} error(s)",
            checked=summary["checked"], repaired=summary["repaired"], unrecoverable=summary["unrecoverable"],
            errors=len(summary["errors"]),
        )
        return summary

    async def _maintain(self, target: str, aliases: dict[str, str], summary: dict[str, Any]) -> None:
        label = target_label(target)
        if target.startswith("URI:"):
            cap = target
        else:
            name = target[:-1] if target.endswith(":") else target
            if name not in aliases:
                summary["errors"].append(f"{label}: no such alias (in {ALIASES_FILE} or {ROOT_DIR_CAP_FILE})")
                return
            cap = aliases[name]
        node = self._node_from_string(cap)
        if isinstance(node, DirectoryNode):
            results = DeepCheckResults(node.get_storage_index(), True)
            await deep_check(
                node, repair=True, add_lease=True, concurrency=self.settings.concurrency, results=results,
                pace=self._pace,
            )
            for result in results.results.values():
                _count(result, summary)
            for path, error in results.unreadable:
                where = "/".join(path) or "(root)"
                summary["errors"].append(f"{label} {where}: unreadable: {_no_caps(error)}")
        elif hasattr(node, "check_and_repair"):
            await self._pace()
            result = await node.check_and_repair(add_lease=True)
            pre = result.pre if isinstance(result, CheckAndRepairResults) else result
            if not pre.is_literal():
                _count(result, summary)
        else:
            summary["errors"].append(f"{label}: not a file or directory this node can check")

    # --- the summary -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the welcome page and ``/?t=json`` show (the ``maintenance`` key)."""
        return {
            "targets": [target_label(t) for t in self.settings.targets],
            "interval": self.settings.interval,
            "running": self._running is not None,
            "current-run": None if self.current is None else dict(self.current),
            "next-run": self.next_run,
            "skipped-turns": self.skipped,
            "last-run": self.last_run,
        }

    def _load_summary(self) -> dict[str, Any] | None:
        try:
            with open(self.summary_path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warn("maintenance: ignoring {path}: {error}", path=self.summary_path, error=str(e))
            return None
        return data if isinstance(data, dict) else None

    def _save_summary(self, summary: dict[str, Any]) -> None:
        temp = self.summary_path + ".tmp"
        try:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=1)
                f.write("\n")
            os.replace(temp, self.summary_path)
        except OSError as e:
            log.warn("maintenance: cannot save {path}: {error}", path=self.summary_path, error=str(e))


def _count(result: CheckResults | CheckAndRepairResults, summary: dict[str, Any]) -> None:
    pre = result.pre if isinstance(result, CheckAndRepairResults) else result
    post = result.post if isinstance(result, CheckAndRepairResults) else result
    summary["checked"] += 1
    if pre.healthy:
        summary["healthy"] += 1
    if isinstance(result, CheckAndRepairResults) and result.repair_attempted:
        if result.repair_successful:
            summary["repaired"] += 1
        else:
            summary["repairs-failed"] += 1
    if not post.recoverable:
        summary["unrecoverable"] += 1
    if post.recoverable:
        # add-lease renews on every server that holds a share of a recoverable object.
        summary["leases-renewed"] += 1


def _no_caps(text: str) -> str:
    """An error message with any cap in it cut short."""
    words = [target_label(word) if word.startswith("URI:") else word for word in text.split(" ")]
    return " ".join(words)
