"""Checking a mutable file's health, and verifying every block of its shares.

A check looks at the server map: which versions exist, whether the newest
is recoverable, whether all N shares of it are there and nothing else.  A
verify also fetches every block of every share of the best version and
checks it against the hash trees (what ``tahoe check --verify`` does);
corrupt shares are reported to their servers.  A verify cap is enough for both.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
from twisted.internet import defer

from lafs.core import base32
from lafs.core.check_results import CheckResults
from lafs.core.happiness import happiness
from lafs.core.mutable_layout import MutableVersionInfo
from lafs.mutable.common import CapKeys
from lafs.mutable.retrieve import READ_SEGMENTS, VersionReader
from lafs.mutable.servermap import ServerMap, ShareRecord


@attrs.frozen
class MutableCheckResults:
    """The health of one mutable file (the fields Tahoe's check results carry)."""

    storage_index: bytes
    healthy: bool
    recoverable: bool
    best_version: MutableVersionInfo | None
    needed: int
    expected: int
    good_shares: int
    """Distinct share numbers of the best version that passed every check made."""
    good_share_hosts: int
    wrong_shares: int
    """Shares of any other version."""
    recoverable_versions: int
    unrecoverable_versions: int
    corrupt_shares: tuple[tuple[str, int, str], ...]
    """(server id, share number, reason)."""
    servers_responding: tuple[str, ...]
    sharemap: dict[int, tuple[str, ...]]
    """Share number of the best version -> the servers holding a good copy."""
    problems: tuple[str, ...]
    version_sharemap: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    """Tahoe's share names (``seqN-ROOT-shK``) of every good share of every version -> its servers."""

    @property
    def summary(self) -> str:
        # Tahoe joins the parts with spaces: "Unhealthy: 4 shares (enc 2-of-5) Corrupt Shares: rxru7t4l-sh4".
        return "Healthy" if self.healthy else "Unhealthy: " + " ".join(self.problems)

    def results(self) -> CheckResults:
        """These results as the check results every file kind gives."""
        placements: dict[str, set[int]] = {}
        for shnum, servers in self.sharemap.items():
            for server_id in servers:
                placements.setdefault(server_id, set()).add(shnum)
        return CheckResults(
            storage_index=self.storage_index,
            healthy=self.healthy,
            recoverable=self.recoverable,
            summary=self.summary,
            count_happiness=happiness(placements),
            count_shares_good=self.good_shares,
            count_shares_needed=self.needed,
            count_shares_expected=self.expected,
            count_good_share_hosts=self.good_share_hosts,
            count_wrong_shares=self.wrong_shares,
            count_recoverable_versions=self.recoverable_versions,
            count_unrecoverable_versions=self.unrecoverable_versions,
            corrupt_shares=tuple((server_id, self.storage_index, shnum) for server_id, shnum, _ in self.corrupt_shares),
            servers_responding=self.servers_responding,
            sharemap=dict(self.version_sharemap),
            report=self.problems,
        )


def short_name(server_id: str) -> str:
    """A server's short name, as Tahoe's summaries give it: 8 characters of its ID after ``v0-``."""
    return server_id.removeprefix("v0-")[:8]


def share_name(info: MutableVersionInfo, shnum: int) -> str:
    """How Tahoe names a mutable share in check results: ``seq<seqnum>-<root hash, 4 base32 chars>-sh<shnum>``."""
    return f"seq{info.seqnum}-{base32.b2a(info.root_hash)[:4]}-sh{shnum}"


def summarize(
    servermap: ServerMap, bad_records: Sequence[ShareRecord] = (), verify_corrupt: Sequence[tuple[str, int, str]] = ()
) -> MutableCheckResults:
    """Check results from a server map, leaving out shares a verify found bad."""
    bad = {id(record) for record in bad_records}
    good = [record for record in servermap.shares if id(record) not in bad]
    versions: dict[MutableVersionInfo, dict[int, list[ShareRecord]]] = {}
    for record in good:
        versions.setdefault(record.info, {}).setdefault(record.shnum, []).append(record)
    recoverable = [info for info, by_shnum in versions.items() if len(by_shnum) >= info.needed]
    unrecoverable = [info for info in versions if info not in recoverable]
    best = max(recoverable, key=lambda info: (info.seqnum, info.root_hash), default=None)
    corrupt = tuple(servermap.corrupt) + tuple(verify_corrupt)
    problems = []
    if best is None:
        problems.append("no recoverable version")
        by_shnum: dict[int, list[ShareRecord]] = {}
        needed = max((info.needed for info in versions), default=0)
        expected = max((info.total for info in versions), default=0)
    else:
        by_shnum = versions[best]
        needed, expected = best.needed, best.total
        if len(by_shnum) < best.total:
            # Tahoe's words: "Unhealthy: 3 shares (enc 2-of-5)".
            problems.append(f"{len(by_shnum)} shares (enc {best.needed}-of-{best.total})")
        if len(recoverable) > 1:
            problems.append(f"{len(recoverable)} recoverable versions")
        if any(info.seqnum > best.seqnum for info in unrecoverable):
            problems.append("a newer version exists that cannot be recovered")
    if unrecoverable and best is not None and not any(info.seqnum > best.seqnum for info in unrecoverable):
        problems.append(f"{len(unrecoverable)} unrecoverable older versions")
    if corrupt:
        problems.append("Corrupt Shares: " + " ".join(f"{short_name(server_id)}-sh{shnum}" for server_id, shnum, _ in corrupt))
    wrong = sum(len(copies) for info, shares in versions.items() if info != best for copies in shares.values())
    responding = tuple(s.server_id for s in servermap.servers if s.server_id not in servermap.failed_servers)
    return MutableCheckResults(
        storage_index=servermap.storage_index,
        healthy=not problems,
        recoverable=best is not None,
        best_version=best,
        needed=needed,
        expected=expected,
        good_shares=len(by_shnum),
        good_share_hosts=len({r.server.server_id for copies in by_shnum.values() for r in copies}),
        wrong_shares=wrong,
        recoverable_versions=len(recoverable),
        unrecoverable_versions=len(unrecoverable),
        corrupt_shares=corrupt,
        servers_responding=responding,
        sharemap={shnum: tuple(r.server.server_id for r in copies) for shnum, copies in sorted(by_shnum.items())},
        problems=tuple(problems),
        version_sharemap={
            share_name(info, shnum): tuple(sorted(r.server.server_id for r in copies))
            for info, shares in versions.items()
            for shnum, copies in sorted(shares.items())
        },
    )


async def _verify_share(
    keys: CapKeys, servermap: ServerMap, info: MutableVersionInfo, record: ShareRecord
) -> tuple[bool, str | None]:
    """Fetch and check every block of one share: (good, corruption found or None)."""
    reader = VersionReader(keys, servermap, info)
    await reader.activate(record)
    if record.shnum not in reader.active:
        return False, ("block hash tree or share hash chain is bad" if reader.corrupt else None)
    for first in range(0, reader.layout.num_segments, READ_SEGMENTS):
        last = min(reader.layout.num_segments - 1, first + READ_SEGMENTS - 1)
        if await reader.fetch_blocks(record.shnum, first, last) is None:
            return False, ("a block does not match its hash" if reader.corrupt else None)
    return True, None


async def check(keys: CapKeys, servermap: ServerMap, *, verify: bool = False) -> MutableCheckResults:
    """The file's health from ``servermap``; with ``verify``, every block of the best version's shares is checked.

    A share whose server fails during a verify does not count as good (it was not verified) nor as corrupt.
    """
    best = servermap.best_recoverable_version()
    if not verify or best is None:
        return summarize(servermap)
    records = [r for r in servermap.shares if r.info == best]
    found = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(_verify_share(keys, servermap, best, r)) for r in records]
    )
    bad = [record for record, (good, _) in zip(records, found, strict=True) if not good]
    corrupt = [
        (record.server.server_id, record.shnum, reason)
        for record, (_, reason) in zip(records, found, strict=True)
        if reason is not None
    ]
    return summarize(servermap, bad, corrupt)
