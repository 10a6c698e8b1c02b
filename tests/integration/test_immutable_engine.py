"""Immutable upload/download on a grid of 10 servers (3-of-10, happy 7), with faults, over every transport."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted

from lafs.client.nodes import FileSource
from lafs.core import caps, hashes
from lafs.core.codec import ZfecCodec, immutable_segment_layout
from lafs.core.errors import LafsError
from lafs.core.params import EncodingParameters
from lafs.core.share_layout import ImmutableShareOffsets
from lafs.immutable.download import (
    READ_SEGMENTS,
    BadShare,
    ImmutableDownload,
    NotEnoughSharesError,
    download_immutable,
)
from lafs.immutable.upload import (
    SegmentEncoder,
    UploadPlan,
    UploadUnhappinessError,
    choose_key,
    finish_upload,
    place_shares,
    push_segments,
    upload_immutable,
)
from lafs.storage_client.fake import FaultyStorageClient
from lafs.workers import Workers, reactor_workers
from tests.storage_grid import Grid, grid, wait_for

__all__ = ["grid"]  # the fixture

SEGMENT = 4096
SECRET = b"s" * 32
LEASE = b"l" * 32


def _workers() -> Workers:
    from twisted.internet import reactor

    return reactor_workers(reactor)


WORKERS = _workers()


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.largest_read = 0

    def read(self, offset: int, length: int) -> bytes:
        self.largest_read = max(self.largest_read, length)
        return self.data[offset : offset + length]


async def upload(
    grid: Grid, data: bytes, happy: int = 7, convergence: bytes | None = SECRET
) -> caps.CHKFileCap | caps.LiteralFileCap:
    result = await upload_immutable(
        BytesSource(data),
        convergence_secret=convergence,
        params=EncodingParameters(3, happy, 10, SEGMENT),
        servers_for=grid.permuted,
        lease_secret=LEASE,
        workers=WORKERS,
    )
    return result.cap


async def download(grid: Grid, cap: caps.CHKFileCap, offset: int = 0, length: int | None = None) -> bytes:
    out: list[bytes] = []
    await download_immutable(
        cap,
        grid.permuted(cap.get_storage_index()),
        sink=out.append,
        workers=WORKERS,
        offset=offset,
        length=length,
    )
    return b"".join(out)


@pytest.mark.parametrize("size", [0, 1, 55, 56, SEGMENT - 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 7])
@pytest_twisted.ensureDeferred
async def test_round_trip_sizes(grid: Grid, size: int) -> None:
    data = os.urandom(size)
    cap = await upload(grid, data)
    if size <= 55:
        assert isinstance(cap, caps.LiteralFileCap) and cap.data == data
        return
    assert isinstance(cap, caps.CHKFileCap) and (cap.needed, cap.total, cap.size) == (3, 10, size)
    assert await download(grid, cap) == data
    # One share per server: ten distinct servers hold the ten shares.
    assert len(grid.share_files(cap.get_storage_index())) == 10


@pytest_twisted.ensureDeferred
async def test_convergence_gives_the_same_cap(grid: Grid) -> None:
    data = os.urandom(3 * SEGMENT)
    first = await upload(grid, data)
    assert await upload(grid, data) == first
    assert await upload(grid, data, convergence=b"other") != first
    assert await upload(grid, data, convergence=None) != first


@pytest_twisted.ensureDeferred
async def test_range_reads(grid: Grid) -> None:
    data = os.urandom(7 * SEGMENT + 100)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    for offset, length in [
        (0, 1),
        (SEGMENT - 1, 2),
        (3 * SEGMENT + 5, SEGMENT * 2),
        (len(data) - 10, 100),
    ]:
        assert await download(grid, cap, offset, length) == data[offset : offset + length]


@pytest_twisted.ensureDeferred
async def test_download_survives_any_seven_servers_stopped(grid: Grid) -> None:
    data = os.urandom(4 * SEGMENT + 3)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    for start in (0, 3, 7):
        for client in grid.clients:
            client.stopped = False
        for index in range(7):
            grid.clients[(start + index) % 10].stopped = True
        assert await download(grid, cap) == data


@pytest_twisted.ensureDeferred
async def test_download_fails_clearly_with_eight_stopped(grid: Grid) -> None:
    data = os.urandom(2 * SEGMENT)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    for client in grid.clients[:8]:
        client.stopped = True
    with pytest.raises(NotEnoughSharesError, match=r"found 2 distinct share\(s\).*3 are needed"):
        await download(grid, cap)


@pytest_twisted.ensureDeferred
async def test_servers_dying_mid_download_are_replaced_without_starting_over(grid: Grid) -> None:
    """Servers that die after the first segment are dropped; the rest comes from other shares."""
    # Enough segments that runs remain to be read after the first run and the one fetched ahead of it.
    segments = 4 * READ_SEGMENTS + 1
    data = os.urandom((segments - 1) * SEGMENT + 100)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    pieces: list[bytes] = []
    killed: list[FaultyStorageClient] = []
    reads_at_kill: dict[str, int] = {}

    def sink(piece: bytes) -> None:
        pieces.append(piece)
        if len(pieces) == 1:
            # Kill every server that has served a read so far: all the shares in use.
            for client in grid.clients:
                reads_at_kill[client.server_id] = client.reads
                if client.reads:
                    client.stopped = True
                    killed.append(client)

    await download_immutable(cap, grid.permuted(cap.get_storage_index()), sink=sink, workers=WORKERS)
    assert b"".join(pieces) == data
    # Each segment was delivered once, in order: the download did not start over.
    layout = immutable_segment_layout(len(data), SEGMENT, 3, 10)
    assert layout.num_segments == segments
    assert [len(piece) for piece in pieces] == [layout.segment_size] * (segments - 1) + [layout.tail_segment_size]
    assert len(killed) >= 3
    survivors = [c for c in grid.clients if not c.stopped]
    # At least the last two runs came from three surviving shares (plus their hash trees).
    assert sum(c.reads - reads_at_kill[c.server_id] for c in survivors) >= 3 * 2


@pytest_twisted.ensureDeferred
async def test_a_consumer_that_goes_away_stops_the_download(grid: Grid) -> None:
    data = os.urandom(4 * READ_SEGMENTS * SEGMENT)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    pieces: list[bytes] = []

    def sink(piece: bytes) -> None:
        pieces.append(piece)
        raise ConnectionError("the consumer went away")

    with pytest.raises(ConnectionError, match="went away"):
        await download_immutable(cap, grid.permuted(cap.get_storage_index()), sink=sink, workers=WORKERS)
    assert len(pieces) == 1
    assert await download(grid, cap) == data


@pytest_twisted.ensureDeferred
async def test_corrupt_shares_are_detected_and_reported(grid: Grid) -> None:
    data = os.urandom(3 * SEGMENT + 17)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    files = grid.share_files(cap.get_storage_index())
    # Flip a byte inside the block data of 7 of the 10 shares.
    for path in files[:7]:
        raw = bytearray(path.read_bytes())
        raw[12 + 0x24 + 100] ^= 0xFF
        path.write_bytes(bytes(raw))
    assert await download(grid, cap) == data
    reports = [p for c in grid.clients for p in Path(c.server.backend.corruption_dir).iterdir()]
    assert reports, "corrupt shares were not reported with advise_corrupt_share"
    assert all("report: Share Corruption" in p.read_text() for p in reports)


@pytest_twisted.ensureDeferred
async def test_corrupt_ueb_and_hash_trees_are_not_trusted(grid: Grid) -> None:
    data = os.urandom(2 * SEGMENT + 1)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    for path in grid.share_files(cap.get_storage_index())[:7]:
        raw = bytearray(path.read_bytes())
        raw[-72 - 50] ^= 0x01  # inside the UEB, just before the lease record
        raw[-72 - 400] ^= 0x01  # inside the hash regions
        path.write_bytes(bytes(raw))
    assert await download(grid, cap) == data


@pytest_twisted.ensureDeferred
async def test_upload_fails_when_happiness_cannot_be_met(grid: Grid) -> None:
    for client in grid.clients[:4]:
        client.stopped = True
    with pytest.raises(UploadUnhappinessError, match="only 6 server"):
        await upload(grid, os.urandom(2 * SEGMENT))
    # Nothing partial is left visible on the servers that were up.
    assert all([not await c.server.get_buckets(b"x" * 16) for c in grid.clients[4:]])


@pytest_twisted.ensureDeferred
async def test_upload_succeeds_when_happiness_still_holds(grid: Grid) -> None:
    for client in grid.clients[:3]:
        client.stopped = True
    data = os.urandom(2 * SEGMENT)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    assert await download(grid, cap) == data


@pytest_twisted.ensureDeferred
async def test_servers_dying_during_upload(grid: Grid) -> None:
    # Two servers die after their first writes: 8 left, still happy.
    for client in grid.clients[:2]:
        client.fail_writes_after = 1
    data = os.urandom(6 * SEGMENT)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    for client in grid.clients:
        client.stopped = False
    assert await download(grid, cap) == data


class ShrinkingSource(BytesSource):
    """A file that is cut short after the upload has measured it."""

    def read(self, offset: int, length: int) -> bytes:
        return super().read(offset, length)[: max(0, 5 * SEGMENT - offset)]


@pytest_twisted.ensureDeferred
async def test_a_file_that_shrinks_during_upload_fails_clearly_and_leaves_no_shares(
    grid: Grid,
) -> None:
    with pytest.raises(LafsError, match=r"the file shrank while it was being uploaded \(segment 4\)"):
        await upload_immutable(
            ShrinkingSource(os.urandom(9 * SEGMENT)),
            convergence_secret=None,
            params=EncodingParameters(3, 7, 10, SEGMENT),
            servers_for=grid.permuted,
            lease_secret=LEASE,
            workers=WORKERS,
        )
    # The aborts are sent without waiting for the answers (a dead server must not hold up the error).
    incoming = [Path(client.server.backend.incoming_dir) for client in grid.clients]
    await wait_for(lambda: not [path for d in incoming for path in d.rglob("*") if path.is_file()], "the aborts", timeout=5)


@pytest_twisted.ensureDeferred
async def test_unhappy_upload_never_reports_success(grid: Grid) -> None:
    for client in grid.clients[:4]:
        client.fail_writes_after = 1
    with pytest.raises(UploadUnhappinessError):
        await upload(grid, os.urandom(6 * SEGMENT))


@pytest.mark.parametrize(("needed", "happy", "total"), [(1, 1, 1), (3, 3, 3), (2, 2, 3), (1, 4, 4), (7, 9, 10)])
@pytest_twisted.ensureDeferred
async def test_any_encoding_round_trips(grid: Grid, needed: int, happy: int, total: int) -> None:
    # The encoding thread and its helper split each segment's parity blocks
    # between them: none, one, or many, whatever k and N leave.
    data = os.urandom(9 * SEGMENT + 5)
    result = await upload_immutable(
        BytesSource(data),
        convergence_secret=SECRET,
        params=EncodingParameters(needed, happy, total, SEGMENT),
        servers_for=grid.permuted,
        lease_secret=LEASE,
        workers=WORKERS,
    )
    cap = result.cap
    assert isinstance(cap, caps.CHKFileCap) and (cap.needed, cap.total) == (needed, total)
    assert await download(grid, cap) == data
    assert len(grid.share_files(cap.get_storage_index())) == total


@pytest_twisted.ensureDeferred
async def test_memory_is_bounded_by_segments(grid: Grid) -> None:
    source = BytesSource(os.urandom(40 * SEGMENT))
    await upload_immutable(
        source,
        convergence_secret=SECRET,
        params=EncodingParameters(3, 7, 10, SEGMENT),
        servers_for=grid.permuted,
        lease_secret=LEASE,
        workers=WORKERS,
    )
    # The uploader never asks for more than a segment (or a hashing chunk) at a time.
    assert source.largest_read <= max(SEGMENT + 2, 1024 * 1024)


def test_file_source_reads_a_stream(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with path.open("rb") as f:
        source = FileSource(f)
        assert source.size == 10 and source.read(3, 4) == b"3456"


@pytest_twisted.ensureDeferred
async def test_each_server_gets_its_own_lease_secrets(grid: Grid) -> None:
    from lafs.core.hashes import hashed_lease_secret

    cap = await upload(grid, os.urandom(2 * SEGMENT))
    assert isinstance(cap, caps.CHKFileCap)
    si = cap.get_storage_index()
    file_renew = hashes.file_renewal_secret_hash(hashes.my_renewal_secret_hash(LEASE), si)
    for client in grid.clients:
        for shnum in await client.server.get_buckets(si):
            lease = (await client.server.backend.get_leases(si, shnum)).leases[0]
            expected = hashes.bucket_renewal_secret_hash(file_renew, client.server.nodeid)
            assert lease.renew_secret == hashed_lease_secret(expected)


@pytest_twisted.ensureDeferred
async def test_reupload_after_the_grid_grew_spreads_the_shares(grid: Grid) -> None:
    data = os.urandom(3 * SEGMENT)
    for client in grid.clients[3:]:
        client.stopped = True
    first = await upload(grid, data, happy=3)
    for client in grid.clients:
        client.stopped = False
    result = await upload_immutable(
        BytesSource(data),
        convergence_secret=SECRET,
        params=EncodingParameters(3, 7, 10, SEGMENT),
        servers_for=grid.permuted,
        lease_secret=LEASE,
        workers=WORKERS,
    )
    assert result.cap == first
    assert result.happiness >= 7
    assert isinstance(first, caps.CHKFileCap)
    for client in grid.clients[:3]:
        client.stopped = True
    assert await download(grid, first) == data


@pytest_twisted.ensureDeferred
async def test_key_hashed_while_receiving_gives_the_same_cap(grid: Grid) -> None:
    """A body hashed as it arrives (HashingBody) yields exactly the key the uploader would derive."""
    import io

    from lafs.immutable.upload import convergence_hasher_for
    from lafs.web.request import HashingBody

    for size in (56, SEGMENT - 1, 3 * SEGMENT + 1):
        data = os.urandom(size)
        body = HashingBody(io.BytesIO(), convergence_hasher_for(size, 3, 10, SEGMENT, SECRET), size)
        for start in range(0, size, 1000):
            body.write(data[start : start + 1000])
        await body.finished()
        hint = body.convergent_key()
        assert hint is not None
        hinted = await upload_immutable(
            BytesSource(data),
            convergence_secret=SECRET,
            params=EncodingParameters(3, 7, 10, SEGMENT),
            servers_for=grid.permuted,
            lease_secret=LEASE,
            workers=WORKERS,
            convergent_key_hint=hint,
        )
        assert hinted.cap == await upload(grid, data)


@pytest_twisted.ensureDeferred
async def test_a_body_shorter_than_declared_gives_no_key() -> None:
    import io

    from lafs.immutable.upload import convergence_hasher_for
    from lafs.web.request import HashingBody

    body = HashingBody(io.BytesIO(), convergence_hasher_for(100, 3, 10, SEGMENT, SECRET), 100)
    body.write(b"x" * 99)
    await body.finished()
    assert body.convergent_key() is None
    body.seek(0)
    assert body.read() == b"x" * 99


@pytest_twisted.ensureDeferred
async def test_the_upload_phases_can_put_back_chosen_shares_only(grid: Grid) -> None:
    """What a repairer does: the same key, plan and encoding, but only the lost share numbers are written."""
    data = os.urandom(3 * SEGMENT + 11)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    storage_index = cap.get_storage_index()
    by_number = {int(path.name): path for path in grid.share_files(storage_index)}
    kept = {shnum: path.read_bytes() for shnum, path in by_number.items() if shnum not in (2, 5)}
    for shnum in (2, 5):
        by_number[shnum].unlink()
    params = EncodingParameters(3, 7, 10, SEGMENT)
    source = BytesSource(data)
    key = await choose_key(source, params, SECRET, WORKERS)
    plan = UploadPlan.make(len(data), key, params, LEASE)
    assert plan.storage_index == storage_index
    encoder = SegmentEncoder(plan, source, ZfecCodec(3, 10), WORKERS)
    placement = await place_shares(plan, grid.permuted(storage_index), share_numbers={2})
    assert [share.shnum for share in placement.shares] == [2]
    pushed = await push_segments(plan, placement, encoder, encoder.encode_run(0))
    result = await finish_upload(plan, placement, pushed)
    assert result.cap == cap
    numbers = sorted(int(path.name) for path in grid.share_files(storage_index))
    assert numbers == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    for shnum, path in ((int(p.name), p) for p in grid.share_files(storage_index)):
        if shnum in kept:
            assert path.read_bytes() == kept[shnum], "good shares are never touched"
    assert await download(grid, cap) == data


@pytest_twisted.ensureDeferred
async def test_verify_share_checks_every_block_without_decoding(grid: Grid) -> None:
    data = os.urandom(6 * SEGMENT + 5)
    cap = await upload(grid, data)
    assert isinstance(cap, caps.CHKFileCap)
    victim = next(p for p in grid.share_files(cap.get_storage_index()) if p.name == "4")
    raw = bytearray(victim.read_bytes())
    offsets = ImmutableShareOffsets.unpack(bytes(raw[12 : 12 + 0x44]))
    block_size = immutable_segment_layout(len(data), SEGMENT, 3, 10).block_size
    last_block = 12 + offsets.data + 5 * block_size
    raw[last_block] ^= 0xFF  # the sixth segment's block: a download of the first segments would not notice
    victim.write_bytes(bytes(raw))
    check = ImmutableDownload(cap, grid.permuted(cap.get_storage_index()), WORKERS)
    await check.locate()
    await check.load_ueb()
    verdicts = {}
    for shnum, sources in sorted(check.candidates.items()):
        try:
            await check.verify_share(sources[0])
            verdicts[shnum] = "good"
        except BadShare as problem:
            verdicts[shnum] = str(problem)
    assert verdicts.pop(4) == "share 4: block 5 does not match its hash"
    assert set(verdicts.values()) == {"good"} and len(verdicts) == 9
