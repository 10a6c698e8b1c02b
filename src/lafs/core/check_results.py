"""What a check (and a check-and-repair) of one file found: the values Tahoe's check results carry.

Pure values, shared by the immutable and the mutable checker, rendered as
Tahoe's JSON by the web gateway and read back by ``tahoe check``.  Servers are
named by their server ID (``v0-...`` on a real grid), as Tahoe names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from lafs.core import base32


@attrs.frozen
class CheckResults:
    """The health of one file on the grid (facts 11.3).

    ``sharemap`` maps a share's name (its number for an immutable file, Tahoe's
    ``seqN-ROOT-shK`` for a mutable one) to the sorted IDs of the servers holding
    a good copy.  ``corrupt_shares`` lists (server ID, storage index, share number).
    """

    storage_index: bytes | None
    healthy: bool
    recoverable: bool
    summary: str
    count_happiness: int = 0
    count_shares_good: int = 0
    count_shares_needed: int = 0
    count_shares_expected: int = 0
    count_good_share_hosts: int = 0
    count_wrong_shares: int = 0
    count_recoverable_versions: int = 0
    count_unrecoverable_versions: int = 0
    corrupt_shares: tuple[tuple[str, bytes, int], ...] = ()
    servers_responding: tuple[str, ...] = ()
    sharemap: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    needs_rebalancing: bool = False
    report: tuple[str, ...] = ()
    """Lines for a person: what was found and what is wrong."""

    @classmethod
    def literal(cls) -> CheckResults:
        """A literal file: its data is in its cap, so it is always healthy and has no storage index."""
        return cls(storage_index=None, healthy=True, recoverable=True, summary="", report=("Literal files are always healthy",))

    def is_literal(self) -> bool:
        return self.storage_index is None

    def to_json(self) -> dict[str, Any]:
        """Tahoe's ``t=check&output=JSON`` body (a literal file's is just ``healthy``)."""
        if self.storage_index is None:
            return {"storage-index": "", "results": {"healthy": True}}
        results = {
            "count-happiness": self.count_happiness,
            "count-shares-good": self.count_shares_good,
            "count-shares-needed": self.count_shares_needed,
            "count-shares-expected": self.count_shares_expected,
            "count-good-share-hosts": self.count_good_share_hosts,
            "count-corrupt-shares": len(self.corrupt_shares),
            "list-corrupt-shares": [[server, base32.b2a(si), shnum] for server, si, shnum in self.corrupt_shares],
            "servers-responding": sorted(self.servers_responding),
            "sharemap": {name: sorted(servers) for name, servers in sorted(self.sharemap.items())},
            "count-wrong-shares": self.count_wrong_shares,
            "count-recoverable-versions": self.count_recoverable_versions,
            "count-unrecoverable-versions": self.count_unrecoverable_versions,
            "healthy": self.healthy,
            "recoverable": self.recoverable,
        }
        return {"storage-index": base32.b2a(self.storage_index), "summary": self.summary, "results": results}


@attrs.frozen
class CheckAndRepairResults:
    """A check, the repair it led to (if any), and the check after it."""

    pre: CheckResults
    post: CheckResults
    repair_attempted: bool
    repair_successful: bool
    repair_problem: str = ""
    """Why a repair failed, for a person."""

    @property
    def storage_index(self) -> bytes | None:
        return self.pre.storage_index

    def to_json(self) -> dict[str, Any]:
        """Tahoe's ``t=check&repair=true&output=JSON`` body."""
        return {
            "storage-index": base32.b2a(self.pre.storage_index) if self.pre.storage_index else "",
            "repair-attempted": self.repair_attempted,
            "repair-successful": self.repair_successful,
            "pre-repair-results": self.pre.to_json(),
            "post-repair-results": self.post.to_json(),
        }
