"""Checking, verifying and repairing one CHK file.

A check asks every permuted server which shares it holds (``get_buckets``)
and counts them: distinct shares, hosts, happiness.  A verify also reads
every block of every share found and checks it against the hash trees (the
UEB against the cap, each share's trees against the UEB); a share that fails
is counted as corrupt, not good, and reported to its server.  With
``add_lease`` every server asked gets one ``add_lease`` call, which renews
(or adds) this client's lease on every share it holds of the file.

A repair regenerates only the share numbers with no good copy, from the
file itself (downloaded and checked as any read is), and places them as an
upload would, on servers without a share first; good shares are never
touched, and a file with all N good shares is left alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from typing import IO, Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from lafs.core import caps
from lafs.core.check_results import CheckResults
from lafs.core.codec import ZfecCodec
from lafs.core.errors import LafsError
from lafs.core.happiness import happiness
from lafs.core.params import EncodingParameters
from lafs.immutable.download import (
    BadShare,
    ImmutableDownload,
    NotEnoughSharesError,
    ShareSource,
    download_immutable,
)
from lafs.immutable.upload import (
    LeaseSecrets,
    SegmentEncoder,
    UploadPlan,
    finish_upload,
    place_shares,
    push_segments,
)
from lafs.storage_client.interface import BucketReaderClient, ServerError, StorageServerClient
from lafs.workers import Workers

log = Logger()
SHARE_TYPE = b"immutable"


class RepairError(LafsError):
    """A repair could not restore the file's shares."""


@attrs.frozen
class ImmutableCheck:
    """What one check found, with the shares by (server, number), as a repair needs them."""

    results: CheckResults
    good: dict[int, tuple[str, ...]]
    """Share number -> IDs of the servers with a good copy."""
    corrupt: frozenset[tuple[str, int]]
    """(server ID, share number) of every share a verify found bad."""
    sources: tuple[tuple[StorageServerClient, int, BucketReaderClient], ...] = ()
    """The good shares' readers, servers in the order they answered: what a repair reads from."""


async def _ask(
    server: StorageServerClient, storage_index: bytes, lease: tuple[bytes, bytes] | None
) -> dict[int, BucketReaderClient]:
    """One server's shares; the lease call goes out alongside, and its failure is only logged (as Tahoe does)."""
    lease_call = None
    if lease is not None:
        lease_call = defer.Deferred.fromCoroutine(server.add_lease(storage_index, *lease))
        lease_call.addErrback(lambda f: log.info("add_lease on {s} failed: {e}", s=server.server_id, e=f.getErrorMessage()))
    try:
        return dict(await server.get_buckets(storage_index))
    finally:
        if lease_call is not None:
            await lease_call


async def check_immutable(
    cap: caps.CHKFileCap,
    servers: Sequence[StorageServerClient],
    workers: Workers,
    *,
    verify: bool = False,
    add_lease: bool = False,
    lease_secret: bytes | None = None,
) -> ImmutableCheck:
    """Check (or with ``verify``, verify) the file on ``servers`` (in permuted order)."""
    storage_index = cap.get_storage_index()
    if add_lease and lease_secret is None:
        raise ValueError("add_lease needs the client's lease secret")
    secrets = LeaseSecrets.for_file(lease_secret, storage_index) if lease_secret is not None else None
    order: list[str] = []

    def answered(value: Any, server_id: str) -> Any:
        order.append(server_id)
        return value

    answers = await defer.DeferredList(
        [
            defer.Deferred.fromCoroutine(
                _ask(s, storage_index, secrets.for_server(s) if add_lease and secrets else None)
            ).addCallback(answered, s.server_id)
            for s in servers
        ],
        consumeErrors=True,
    )
    responding: list[str] = []
    found: dict[tuple[str, int], tuple[StorageServerClient, BucketReaderClient]] = {}
    for server, (ok, answer) in zip(servers, answers, strict=True):
        value: Any = answer
        if not ok:
            log.info("server {s} did not answer a check: {e}", s=server.server_id, e=value.getErrorMessage())
            continue
        readers: dict[int, BucketReaderClient] = value
        responding.append(server.server_id)
        for shnum, reader in readers.items():
            if 0 <= shnum < cap.total:
                found[(server.server_id, shnum)] = (server, reader)
    corrupt: set[tuple[str, int]] = set()
    unverified: set[tuple[str, int]] = set()
    if verify and found:
        corrupt, unverified = await _verify_all(cap, servers, workers, found)
    good: dict[int, list[str]] = {}
    for (server_id, shnum) in found:
        if (server_id, shnum) not in corrupt and (server_id, shnum) not in unverified:
            good.setdefault(shnum, []).append(server_id)
    rank = {server_id: i for i, server_id in enumerate(order)}
    sources = tuple(
        (server, shnum, reader)
        for (server_id, shnum), (server, reader) in sorted(found.items(), key=lambda item: (rank[item[0][0]], item[0][1]))
        if (server_id, shnum) not in corrupt and (server_id, shnum) not in unverified
    )
    return ImmutableCheck(
        _results(cap, good, corrupt, responding),
        {shnum: tuple(sorted(ids)) for shnum, ids in sorted(good.items())},
        frozenset(corrupt),
        sources,
    )


async def _verify_all(
    cap: caps.CHKFileCap,
    servers: Sequence[StorageServerClient],
    workers: Workers,
    found: dict[tuple[str, int], tuple[StorageServerClient, BucketReaderClient]],
) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
    """Every found share checked block by block: (corrupt ones, ones whose server failed meanwhile)."""
    download = ImmutableDownload(cap, servers, workers)
    for (_, shnum), (server, reader) in sorted(found.items(), key=lambda item: item[0][1]):
        download.candidates.setdefault(shnum, []).append(ShareSource(shnum, server, reader))
    sources = [source for shnum in sorted(download.candidates) for source in download.candidates[shnum]]
    corrupt: set[tuple[str, int]] = set()
    unverified: set[tuple[str, int]] = set()
    try:
        await download.load_ueb()
    except NotEnoughSharesError:
        # No share holds a UEB matching the cap: none of them can be good (load_ueb reported the bad ones).
        for source in sources:
            corrupt.add((source.server.server_id, source.shnum))
        return corrupt, unverified
    for source in sources:
        # One share at a time: the shares share the file's share hash tree, which activation fills in.
        try:
            await download.verify_share(source)
        except BadShare as problem:
            key = (source.server.server_id, source.shnum)
            if problem.corrupt:
                corrupt.add(key)
                await _advise(source.server, cap.get_storage_index(), source.shnum, str(problem))
            else:
                unverified.add(key)
    return corrupt, unverified


async def _advise(server: StorageServerClient, storage_index: bytes, shnum: int, reason: str) -> None:
    try:
        await server.advise_corrupt_share(SHARE_TYPE, storage_index, shnum, reason.encode("utf-8"))
    except ServerError:
        pass


def _results(
    cap: caps.CHKFileCap, good: dict[int, list[str]], corrupt: set[tuple[str, int]], responding: list[str]
) -> CheckResults:
    storage_index = cap.get_storage_index()
    placements: dict[str, set[int]] = {}
    for shnum, ids in good.items():
        for server_id in ids:
            placements.setdefault(server_id, set()).add(shnum)
    count_good = len(good)
    healthy = count_good >= cap.total
    recoverable = count_good >= cap.needed
    if healthy:
        summary = "Healthy"
    else:
        summary = f"Not Healthy: {count_good} shares (enc {cap.needed}-of-{cap.total})"
    report = [f"{count_good} good shares (needed {cap.needed}, expected {cap.total})"]
    if corrupt:
        report.append(f"{len(corrupt)} corrupt shares")
    return CheckResults(
        storage_index=storage_index,
        healthy=healthy,
        recoverable=recoverable,
        summary=summary,
        count_happiness=happiness(placements),
        count_shares_good=count_good,
        count_shares_needed=cap.needed,
        count_shares_expected=cap.total,
        count_good_share_hosts=len(placements),
        count_wrong_shares=0,
        count_recoverable_versions=1 if recoverable else 0,
        count_unrecoverable_versions=0 if recoverable else 1,
        corrupt_shares=tuple(sorted((server_id, storage_index, shnum) for server_id, shnum in corrupt)),
        servers_responding=tuple(responding),
        sharemap={str(shnum): tuple(sorted(ids)) for shnum, ids in sorted(good.items())},
        report=tuple(report),
    )


class _SpooledSource:
    """The downloaded plaintext, held in a temporary file (never all in memory), as an upload's source."""

    def __init__(self, spool: IO[bytes], size: int) -> None:
        self._spool = spool
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        self._spool.seek(offset)
        return self._spool.read(max(0, min(length, self.size - offset)))


async def repair_immutable(
    cap: caps.CHKFileCap,
    servers: Sequence[StorageServerClient],
    workers: Workers,
    checked: ImmutableCheck,
    *,
    happy: int,
    lease_secret: bytes,
) -> dict[str, frozenset[int]]:
    """Put back every share number without a good copy; returns, by server ID, the shares it wrote and
    the good ones it found the servers holding while placing them.

    The file is read (and so verified) from its good shares, then encoded
    again with the same key and segment size, which gives the very shares it
    had; only the missing numbers are written, and the URI extension block
    must hash to the cap's, or nothing is kept.
    """
    missing = set(range(cap.total)) - set(checked.good)
    if not missing:
        return {}
    if len(checked.good) < cap.needed:
        raise RepairError(
            f"the file cannot be repaired: only {len(checked.good)} good shares were found and {cap.needed} are needed"
        )
    with tempfile.TemporaryFile(prefix="lafs-repair-") as spool:
        # One round of share queries serves both the read and the segment size the UEB gives.
        download = ImmutableDownload(cap, servers, workers)
        if checked.sources:
            # The check just asked every server: read from the good shares it found, in the order servers answered.
            download.seed(checked.sources)
        else:
            await download.locate()
        ueb = await download.load_ueb()
        await download_immutable(cap, servers, sink=spool.write, workers=workers, download=download)
        spool.flush()
        source = _SpooledSource(spool, cap.size)
        params = EncodingParameters(cap.needed, max(1, min(happy, cap.total)), cap.total, ueb.segment_size)
        plan = UploadPlan.make(cap.size, cap.key, params, lease_secret)
        if plan.layout.segment_size != ueb.segment_size:
            raise RepairError("the file's segment size cannot be reproduced; its shares cannot be regenerated")
        encoder = SegmentEncoder(plan, source, ZfecCodec(cap.needed, cap.total), workers)
        placement = await place_shares(plan, servers, share_numbers=missing, disregard=checked.corrupt)
        pushed = await push_segments(plan, placement, encoder, encoder.encode_run(0))
        result = await finish_upload(plan, placement, pushed, expected_ueb_hash=cap.ueb_hash)
    log.info("repaired a file: {n} shares written, happiness {h}", n=sum(not s.failed for s in placement.shares), h=result.happiness)
    return result.placements


def results_after_repair(cap: caps.CHKFileCap, checked: ImmutableCheck, written: Mapping[str, frozenset[int]]) -> CheckResults:
    """What a check after a successful repair would find, from the check before it and the shares the
    repair placed (as Tahoe reports a repair, without asking the servers again): the good shares
    then and now, the corrupt ones that were found (left where they are), the same servers."""
    good = {shnum: list(ids) for shnum, ids in checked.good.items()}
    for server_id, shnums in written.items():
        for shnum in shnums:
            if server_id not in good.setdefault(shnum, []):
                good[shnum].append(server_id)
    responding = list(checked.results.servers_responding)
    responding += sorted(server_id for server_id in written if server_id not in responding)
    return _results(cap, dict(sorted(good.items())), set(checked.corrupt), responding)
