"""The mutable-file engine (SDMF, MDMF) on an in-process grid of 10 servers, 3-of-10, with faults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from lafs.core import caps
from lafs.core.mutable_layout import MDMF_DATA_OFFSET, MDMFShare, SDMFShare
from lafs.mutable.common import (
    FileChangedWhileReadingError,
    NotEnoughServersError,
    NotEnoughSharesError,
    NotWriteableError,
    UncoordinatedWriteError,
)
from lafs.mutable.filenode import BytesSource
from lafs.storage_client.fake import FaultyStorageClient
from tests.mutable_grid import KIB128, SEG, corrupt_field_offset, flip, read, share_bytes
from tests.storage_grid import KEYS, Grid, grid, start_grid

__all__ = ["grid"]  # the fixture


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest.mark.parametrize("size", [0, 1, 55, 56, KIB128 - 1, KIB128, KIB128 + 1, 3 * 1024 * 1024])
@pytest_twisted.ensureDeferred
async def test_round_trip_sizes(grid: Grid, mdmf: bool, size: int) -> None:
    """Create then read back files of the interesting sizes, in both formats; ten shares on ten servers."""
    data = os.urandom(size)
    node = await grid.context().create_mutable_file(data, mdmf=mdmf)
    assert node.format_name() == ("MDMF" if mdmf else "SDMF")
    assert isinstance(node.cap, caps.MDMFWriteCap if mdmf else caps.SSKWriteCap)
    again = grid.context().node_for_cap(caps.from_string(node.get_uri()))  # type: ignore[arg-type]
    assert await read(again) == data
    assert await again.get_current_size() == size
    placed = grid.shares(node.get_storage_index())
    assert sorted(shnum for _, shnum, _ in placed) == list(range(10))
    assert len({client.server_id for client, _, _ in placed}) == 10
    for _, _, path in placed:
        share = share_bytes(path)
        parsed = (MDMFShare if mdmf else SDMFShare).unpack(share)
        assert (
            parsed.info.seqnum,
            parsed.info.needed,
            parsed.info.total,
            parsed.info.data_length,
        ) == (1, 3, 10, size)


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_overwrite_and_ranges(grid: Grid, mdmf: bool) -> None:
    node = await grid.context().create_mutable_file(b"first version", mdmf=mdmf)
    data = os.urandom(3 * SEG + 1000)
    await node.overwrite(BytesSource(data))
    assert await read(node) == data
    for offset, length in [
        (0, 1),
        (SEG - 1, 2),
        (SEG * 2 + 5, SEG + 10),
        (len(data) - 10, 100),
        (len(data), 5),
    ]:
        assert await read(node, offset, length) == data[offset : offset + length]
    await node.overwrite(b"short")
    assert await read(node) == b"short"
    seqnums = {
        (MDMFShare if mdmf else SDMFShare).unpack(share_bytes(p)).info.seqnum for _, _, p in grid.shares(node.get_storage_index())
    }
    assert seqnums == {3}


UPDATES = {
    "offset0": (0, b"X" * 10),
    "mid-segment": (1000, b"Y" * 500),
    "across-boundary": (SEG - 100, b"Z" * 300),
    "at-end": (None, b"E" * 50),
    "past-end": ("gap", b"P" * 70000),
}


@pytest.mark.parametrize("where", list(UPDATES))
@pytest_twisted.ensureDeferred
async def test_mdmf_update_in_place(grid: Grid, where: str) -> None:
    """An MDMF update rewrites only the blocks it touches; the result reads back as the spliced file."""
    original = os.urandom(2 * SEG + 5000)
    node = await grid.context().create_mutable_file(original, mdmf=True)
    offset_spec, patch = UPDATES[where]
    offset = len(original) if offset_spec is None else len(original) + 1234 if offset_spec == "gap" else offset_spec
    assert isinstance(offset, int)
    before = {(c.server_id, n): share_bytes(p) for c, n, p in grid.shares(node.get_storage_index())}
    written = [0]
    for client in grid.clients:
        write_method = client.slot_testv_and_readv_and_writev

        async def counting(si: bytes, secrets: object, tw: dict, readv: object, method: object = write_method) -> object:  # type: ignore[type-arg]
            written[0] += sum(len(data) for _, datav, _ in tw.values() for _, data in datav)
            return await method(si, secrets, tw, readv)  # type: ignore[operator]

        client.slot_testv_and_readv_and_writev = counting  # type: ignore[method-assign]
    await node.update(offset, BytesSource(patch))
    touched = len({x // SEG for x in range(min(offset, len(original)), offset + len(patch))})
    # Only the touched segments' blocks plus the key material, trees and header go out to each share.
    assert written[0] <= 10 * (touched * (16 + SEG // 3) + 3000)
    expected = bytearray(original)
    if offset > len(expected):
        expected += b"\x00" * (offset - len(expected))
    expected[offset : offset + len(patch)] = patch
    assert await read(node) == bytes(expected)
    assert await node.get_current_size() == len(expected)
    after = {(c.server_id, n): share_bytes(p) for c, n, p in grid.shares(node.get_storage_index())}
    touched_first = min(offset, len(original)) // SEG
    for key, old in before.items():
        new = after[key]
        assert MDMFShare.unpack(new).info.seqnum == 2
        # Blocks of segments before the update are the very same bytes (not re-encoded).
        untouched = MDMF_DATA_OFFSET + touched_first * (16 + SEG // 3)
        assert new[MDMF_DATA_OFFSET:untouched] == old[MDMF_DATA_OFFSET:untouched]
    if where == "mid-segment":
        # Segment 0 only: segments 1 and 2 keep their blocks.
        for key, old in before.items():
            start = MDMF_DATA_OFFSET + (16 + SEG // 3)
            end = MDMFShare.unpack(old).offsets().block_hash_tree
            assert after[key][start:end] == old[start:end]


@pytest_twisted.ensureDeferred
async def test_sdmf_update_rewrites_whole_file(grid: Grid) -> None:
    node = await grid.context().create_mutable_file(b"hello world", mdmf=False)
    await node.update(6, b"there, friend")
    assert await read(node) == b"hello there, friend"


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_read_survives_any_seven_stopped_and_fails_clearly_with_eight(grid: Grid, mdmf: bool) -> None:
    data = os.urandom(SEG + 77)
    node = await grid.context().create_mutable_file(data, mdmf=mdmf)
    for start in (0, 3, 7):
        for client in grid.clients:
            client.stopped = False
        for index in range(7):
            grid.clients[(start + index) % 10].stopped = True
        assert await read(node) == data
    for client in grid.clients:
        client.stopped = False
    for client in grid.clients[:8]:
        client.stopped = True
    with pytest.raises(NotEnoughSharesError, match=r"found 2 distinct shares.*need 3"):
        await read(node)


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest.mark.parametrize(
    "field",
    [
        "data",
        "salt",
        "signature",
        "verification_key",
        "share_hash_chain",
        "block_hash_tree",
        "seqnum",
    ],
)
@pytest_twisted.ensureDeferred
async def test_corrupt_shares_on_seven_servers(grid: Grid, mdmf: bool, field: str) -> None:
    """Seven corrupt shares: reads stay correct (from the other three) and the corruption is reported."""
    data = os.urandom(SEG + 1234 if mdmf else 4000)
    node = await grid.context().create_mutable_file(data, mdmf=mdmf)
    # The first seven servers in ring order: the ones a reader tries first.
    rank = {c.server_id: i for i, c in enumerate(grid.permuted(node.get_storage_index()))}
    placed = sorted(grid.shares(node.get_storage_index()), key=lambda entry: rank[entry[0].server_id])
    for _, _, path in placed[:7]:
        flip(path, corrupt_field_offset(share_bytes(path), mdmf, field))
    assert await read(node) == data
    assert len(grid.advisories()) >= 1
    reported = {name.rsplit("-", 1)[1] for name in grid.advisories()}
    corrupted = {str(shnum) for _, shnum, _ in placed[:7]}
    assert reported <= corrupted
    if field in ("signature", "verification_key", "seqnum") or (field == "salt" and not mdmf):
        # Signed or fingerprinted fields are checked on every share the server map sees.
        assert reported == corrupted


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_eight_corrupt_shares_fail_clearly(grid: Grid, mdmf: bool) -> None:
    node = await grid.context().create_mutable_file(os.urandom(5000), mdmf=mdmf)
    for _, _, path in grid.shares(node.get_storage_index())[:8]:
        flip(path, corrupt_field_offset(share_bytes(path), mdmf, "data"))
    with pytest.raises(NotEnoughSharesError, match=r"2 usable, need 3 \(8 corrupt"):
        await read(node)


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_rolled_back_servers_do_not_roll_back_readers(grid: Grid, mdmf: bool) -> None:
    """Seven servers restore their shares from before an overwrite; readers still get the new version."""
    node = await grid.context().create_mutable_file(b"old contents", mdmf=mdmf)
    saved = [(path, path.read_bytes()) for _, _, path in grid.shares(node.get_storage_index())[:7]]
    await node.overwrite(b"new contents")
    for path, raw in saved:
        path.write_bytes(raw)
    assert await read(node) == b"new contents"
    # A later write goes past both versions, and replaces the rolled-back shares too.
    await node.overwrite(b"newest contents")
    assert await read(node) == b"newest contents"
    parse = MDMFShare if mdmf else SDMFShare
    assert {parse.unpack(share_bytes(p)).info.seqnum for _, _, p in grid.shares(node.get_storage_index())} == {3}


@pytest_twisted.ensureDeferred
async def test_overwrites_through_one_context_are_serialized(grid: Grid) -> None:
    context = grid.context()
    node = await context.create_mutable_file(b"v1", mdmf=True)
    other = context.node_for_cap(node.cap)  # a second node object for the same file
    first = defer.Deferred.fromCoroutine(node.overwrite(b"v2"))
    second = defer.Deferred.fromCoroutine(other.overwrite(b"v3"))
    await defer.gatherResults([first, second])
    assert await read(node) == b"v3"
    shares = grid.shares(node.get_storage_index())
    assert {MDMFShare.unpack(share_bytes(p)).info.seqnum for _, _, p in shares} == {3}


@pytest_twisted.ensureDeferred
async def test_independent_writers_detect_the_race(grid: Grid) -> None:
    """Two clients (separate locks) overwrite at once: someone gets UncoordinatedWriteError, the file is one of the two."""
    node = await grid.context().create_mutable_file(b"v1", mdmf=False)
    a = grid.context().node_for_cap(node.cap)
    b = grid.context().node_for_cap(node.cap)
    results = await defer.DeferredList(
        [
            defer.Deferred.fromCoroutine(a.overwrite(b"from A")),
            defer.Deferred.fromCoroutine(b.overwrite(b"from B")),
        ],
        consumeErrors=True,
    )
    failures = [value for ok, value in results if not ok]
    for failure in failures:
        assert failure.check(UncoordinatedWriteError)
        assert "another writer" in str(failure.value)
    seqnums = {SDMFShare.unpack(share_bytes(p)).info.seqnum for _, _, p in grid.shares(node.get_storage_index())}
    if not failures:
        # Over a real network one writer can finish before the other maps the file: then the two
        # writes did not race, and the second one wrote the next seqnum, never the same one.
        assert seqnums == {3}, "both writes claimed success for the same seqnum"
    assert await read(node) in (b"from A", b"from B")


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_read_only_cap_refuses_writes(grid: Grid, mdmf: bool) -> None:
    node = await grid.context().create_mutable_file(b"contents", mdmf=mdmf)
    reader = grid.context().node_for_cap(node.cap.get_readonly())  # type: ignore[arg-type]
    assert reader.is_readonly() and reader.get_uri() == node.get_readonly_uri()
    assert await read(reader) == b"contents"
    with pytest.raises(NotWriteableError, match="read-only cap"):
        await reader.overwrite(b"nope")
    with pytest.raises(NotWriteableError, match="read-only cap"):
        await reader.update(0, b"nope")
    assert await read(node) == b"contents"


@pytest_twisted.ensureDeferred
async def test_fewer_servers_than_shares_wraps(grid: Grid, tmp_path: Path) -> None:
    small = await start_grid(tmp_path / "small", 4, grid.transport)
    try:
        node = await small.context().create_mutable_file(b"x" * 1000, mdmf=True)
        shares = small.shares(node.get_storage_index())
        assert sorted(n for _, n, _ in shares) == list(range(10))
        assert sorted(len([1 for c, _, _ in shares if c is client]) for client in small.clients) == [2, 2, 3, 3]
        small.clients[0].stopped = True
        await node.overwrite(b"y" * 1000)
        small.clients[0].stopped = False
        assert await read(node) == b"y" * 1000
    finally:
        await small.stop()


@pytest_twisted.ensureDeferred
async def test_unknown_file_is_unrecoverable(grid: Grid) -> None:
    from lafs.mutable.common import WriteKeys

    keys = WriteKeys.from_private_key(await KEYS.get())
    node = grid.context().node_for_cap(keys.write_cap(mdmf=False))
    with pytest.raises(NotEnoughSharesError, match="no share of the file was found on the 10 servers"):
        await read(node)
    with pytest.raises(Exception, match="signing key could not be recovered"):
        await node.overwrite(b"x")


@pytest_twisted.ensureDeferred
async def test_read_waits_for_a_slow_sink_and_calls_on_start(grid: Grid) -> None:
    data = os.urandom(3 * SEG)
    node = await grid.context().create_mutable_file(data, mdmf=True)
    events: list[str] = []
    pending: list[defer.Deferred[None]] = []
    received: list[bytes] = []

    def sink(piece: bytes) -> defer.Deferred[None]:
        received.append(piece)
        events.append("piece")
        d: defer.Deferred[None] = defer.Deferred()
        pending.append(d)
        return d

    reading = defer.Deferred.fromCoroutine(node.read(sink, on_start=lambda: events.append("start")))
    for _ in range(3):
        while not pending:
            await deferLater(0.01)
        # Nothing more arrives until the sink's Deferred fires.
        await deferLater(0.05)
        assert len(pending) == 1
        pending.pop().callback(None)
    await reading
    assert events == ["start", "piece", "piece", "piece"]
    assert b"".join(received) == data


def deferLater(seconds: float) -> defer.Deferred[None]:
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_mdmf_range_read_fetches_only_needed_segments(grid: Grid) -> None:
    data = os.urandom(3 * 1024 * 1024)
    node = await grid.context().create_mutable_file(data, mdmf=True)
    fetched = [0]
    for client in grid.clients:
        original = client.slot_readv

        async def counting(storage_index: bytes, shares: object, readv: object, original: object = original) -> object:
            answer = await original(storage_index, shares, readv)  # type: ignore[operator]
            fetched[0] += sum(len(piece) for pieces in answer.values() for piece in pieces)
            return answer

        client.slot_readv = counting  # type: ignore[method-assign]
    assert await read(node, 10 * SEG + 5, 100) == data[10 * SEG + 5 : 10 * SEG + 105]
    # Ten share heads, three block trees, three blocks of one segment, each of those six reads with the
    # share's 41-byte checkstring: far less than a share (~1 MiB).
    assert fetched[0] < 10 * 4000 + 3 * 2048 + 3 * (SEG // 3 + 16) + 6 * 41


@pytest_twisted.ensureDeferred
async def test_overwrite_with_a_server_down_replaces_its_shares_elsewhere(grid: Grid) -> None:
    node = await grid.context().create_mutable_file(b"one", mdmf=True)
    down = grid.permuted(node.get_storage_index())[0]
    down.stopped = True
    await node.overwrite(b"two")
    await node.update(1, b"-and-a-bit")  # cannot patch every share in place: republished whole
    down.stopped = False
    assert await read(node) == b"t-and-a-bit"
    live = [(c, n) for c, n, p in grid.shares(node.get_storage_index()) if c is not down]
    assert sorted(n for _, n in live) == list(range(10))


@pytest_twisted.ensureDeferred
async def test_update_of_empty_mdmf_file(grid: Grid) -> None:
    node = await grid.context().create_mutable_file(b"", mdmf=True)
    assert await read(node) == b""
    await node.update(3, b"abc")
    assert await read(node) == b"\x00\x00\x00abc"


@pytest_twisted.ensureDeferred
async def test_stale_servermap_write_is_uncoordinated(grid: Grid) -> None:
    """A writer whose view of the file is out of date gets UncoordinatedWriteError and changes nothing it tested."""
    from lafs.mutable.common import WriteKeys
    from lafs.mutable.encode import encode_sdmf
    from lafs.mutable.publish import publish_version

    node = await grid.context().create_mutable_file(b"v1", mdmf=False)
    stale = await node.get_servermap(for_writing=True)
    await grid.context().node_for_cap(node.cap).overwrite(b"v2 by someone else")
    assert stale.private_key is not None
    keys = WriteKeys.from_private_key(stale.private_key)
    encoded = encode_sdmf(b"v2 stale", keys, 2, 3, 10, os.urandom(16))
    with pytest.raises(UncoordinatedWriteError, match="another writer changed the file"):
        await publish_version(encoded, keys, stale, b"l" * 32)
    assert await read(node) == b"v2 by someone else"


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_a_version_replaced_while_being_read_is_not_called_corrupt(grid: Grid, mdmf: bool) -> None:
    """Shares another writer replaced after the servermap was made are 'changed', never reported as corrupt;
    a read that had delivered nothing starts again on the newest version."""
    from lafs.mutable.common import CapKeys
    from lafs.mutable.retrieve import retrieve

    node = await grid.context().create_mutable_file(os.urandom(2 * SEG + 10), mdmf=mdmf)
    stale = await node.get_servermap()
    newer = os.urandom(SEG + 5)
    await grid.context().node_for_cap(node.cap).overwrite(newer)
    with pytest.raises(FileChangedWhileReadingError, match=r"changed while it was being read: 10 share\(s\) of version seqnum 1"):
        await retrieve(CapKeys.from_cap(node.cap), stale, lambda data: None)
    assert grid.advisories() == []

    real_servermap = node.get_servermap
    maps = 0

    async def stale_first(*, for_writing: bool = False) -> object:
        nonlocal maps
        maps += 1
        return stale if maps == 1 else await real_servermap(for_writing=for_writing)

    node.get_servermap = stale_first  # type: ignore[method-assign]
    assert await read(node) == newer
    assert maps == 2 and grid.advisories() == []


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_every_signature_bad_is_unrecoverable(grid: Grid, mdmf: bool) -> None:
    node = await grid.context().create_mutable_file(b"x" * 100, mdmf=mdmf)
    for _, _, path in grid.shares(node.get_storage_index()):
        flip(path, corrupt_field_offset(share_bytes(path), mdmf, "signature"))
    with pytest.raises(
        NotEnoughSharesError,
        match=r"no good share of the file was found \(10 corrupt shares ignored\)",
    ):
        await read(node)
    assert len(grid.advisories()) == 10


@pytest_twisted.ensureDeferred
async def test_key_pool_hands_out_distinct_tahoe_sized_keys() -> None:
    from lafs.core import crypto
    from lafs.mutable.keys import KeyPool

    pool = KeyPool(reactor, size=1)
    pool.start()
    keys = [await pool.get() for _ in range(3)]
    assert len(set(keys)) == 3
    for key in keys:
        assert crypto.rsa_private_der_canonical(key) == key  # PKCS#8 DER exactly as Tahoe hashes it
        assert len(crypto.rsa_public_der(key)) == 294


@pytest_twisted.ensureDeferred
async def test_modify_from_two_clients_at_once_keeps_both_changes(grid: Grid) -> None:
    """modify() re-reads and re-applies after losing a race, so concurrent appends both land."""
    node = await grid.context().create_mutable_file(b"start", mdmf=False)
    a = grid.context().node_for_cap(node.cap)
    b = grid.context().node_for_cap(node.cap)
    await defer.gatherResults(
        [
            defer.Deferred.fromCoroutine(a.modify(lambda old: old + b"|A")),
            defer.Deferred.fromCoroutine(b.modify(lambda old: old + b"|B")),
        ]
    )
    assert await read(node) in (b"start|A|B", b"start|B|A")
    await node.modify(lambda old: None)  # nothing to change: nothing written
    await node.modify(lambda old: old.replace(b"start", b"begin"))
    assert (await read(node)).startswith(b"begin|")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest_twisted.ensureDeferred
async def test_random_mdmf_updates_match_a_model(grid: Grid, seed: int) -> None:
    """A run of random in-place updates (inside, across segments, at and past the end) against a bytearray model."""
    import random

    rng = random.Random(seed)
    model = bytearray(rng.randbytes(rng.choice([1, SEG - 1, SEG, 2 * SEG + 17])))
    node = await grid.context().create_mutable_file(bytes(model), mdmf=True)
    for _ in range(8):
        offset = rng.choice([0, rng.randrange(len(model) + 1), len(model), len(model) + rng.randrange(1, SEG + 5)])
        offset = rng.choice([offset, (offset // SEG) * SEG, max(0, (offset // SEG) * SEG - 1)])
        patch = rng.randbytes(rng.choice([1, 15, rng.randrange(1, 2 * SEG)]))
        await node.update(offset, patch)
        if offset > len(model):
            model += b"\x00" * (offset - len(model))
        model[offset : offset + len(patch)] = patch
        assert await node.get_current_size() == len(model)
    assert await read(node) == bytes(model)
    start = rng.randrange(len(model))
    assert await read(node, start, 1000) == bytes(model[start : start + 1000])


@pytest.mark.parametrize("mdmf", [False, True], ids=["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_check_verify_and_repair(grid: Grid, mdmf: bool) -> None:
    from lafs.mutable.checker import check
    from lafs.mutable.common import CapKeys
    from lafs.mutable.servermap import update_servermap

    data = os.urandom(SEG + 500)
    node = await grid.context().create_mutable_file(data, mdmf=mdmf)
    results = await node.check()
    assert results.healthy and results.summary == "Healthy"
    assert (
        results.count_shares_good,
        results.count_good_share_hosts,
        results.count_shares_needed,
        results.count_shares_expected,
    ) == (10, 10, 3, 10)

    # Data corruption is invisible to a plain check, and found by a verify (and reported).
    rank = {c.server_id: i for i, c in enumerate(grid.permuted(node.get_storage_index()))}
    placed = sorted(grid.shares(node.get_storage_index()), key=lambda e: rank[e[0].server_id])
    for _, _, path in placed[-2:]:
        flip(path, corrupt_field_offset(share_bytes(path), mdmf, "data"))
    assert (await node.check()).healthy
    verified = await node.check(verify=True)
    assert not verified.healthy and verified.count_shares_good == 8
    assert sorted(n for _, _, n in verified.corrupt_shares) == sorted(n for _, n, _ in placed[-2:])
    assert verified.summary.startswith("Unhealthy: 8 shares (enc 3-of-10) Corrupt Shares: ")
    assert len(grid.advisories()) == 2

    # A verify cap is enough to check and verify.
    verify_cap = caps.from_string(node.get_verify_uri())
    keys = CapKeys.from_cap(verify_cap)  # type: ignore[arg-type]
    by_verifier = await check(keys, await update_servermap(keys, grid.permuted(keys.storage_index)), verify=True)
    assert by_verifier.good_shares == 8

    # Repair rebuilds the corrupt and the unreachable shares of the same version (no new seqnum),
    # while three servers are down.
    for client in placed[:3]:
        client[0].stopped = True
    repaired = await node.check_and_repair(verify=True)
    assert repaired.repair_attempted and not repaired.pre.healthy
    after = await node.check(verify=True)
    assert after.healthy, after.summary
    assert after.count_good_share_hosts == 7 and {name.split("-")[0] for name in after.sharemap} == {"seq1"}
    for client in placed[:3]:
        client[0].stopped = False
    assert await read(node) == data
    # The three servers are back with shares of the very same version: still one version, healthy.
    back = await node.check()
    assert back.healthy and back.count_wrong_shares == 0
    assert not (await node.check_and_repair()).repair_attempted


@pytest_twisted.ensureDeferred
async def test_read_only_cap_cannot_repair(grid: Grid) -> None:
    node = await grid.context().create_mutable_file(b"x", mdmf=True)
    reader = grid.context().node_for_cap(node.cap.get_readonly())  # type: ignore[arg-type]
    for client in grid.clients[:2]:
        client.stopped = True
    result = await reader.check_and_repair()
    assert result.repair_attempted and not result.repair_successful and "write cap" in result.repair_problem


class StoppingSource:
    """File contents that stop some servers when the second run of segments is read (mid-publish)."""

    def __init__(self, data: bytes, stop: list[FaultyStorageClient]) -> None:
        self.data = data
        self.size = len(data)
        self._stop = stop
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        if self.reads == 2:
            for client in self._stop:
                client.stopped = True
        return self.data[offset : offset + length]


@pytest_twisted.ensureDeferred
async def test_new_mdmf_is_streamed_and_survives_servers_failing_midway(grid: Grid) -> None:
    # 20 segments: three runs of writes (8, 8, 4) before the headers.
    data = os.urandom(20 * SEG - 5)
    source = StoppingSource(data, grid.clients[:3])
    node = await grid.context().create_mutable_file(source, mdmf=True)
    assert source.reads == 3
    for client in grid.clients:
        client.stopped = False
    # The stopped servers' shares were dropped from this version (as Tahoe does): whatever blocks of
    # the first run reached them before they stopped never got a header.  The other seven are whole.
    stopped = grid.clients[:3]
    assert len([client for client, _, _ in grid.shares(node.get_storage_index()) if client not in stopped]) == 7
    assert (await node.check()).to_json()["results"]["count-shares-good"] == 7
    assert await read(node) == data
    assert await read(node, 9 * SEG - 3, SEG + 10) == data[9 * SEG - 3 : 10 * SEG + 7]
    await node.update(SEG * 10, b"still writable")
    assert await read(node, SEG * 10, 14) == b"still writable"


@pytest_twisted.ensureDeferred
async def test_new_mdmf_fails_clearly_when_too_few_servers_are_left(grid: Grid) -> None:
    source = StoppingSource(os.urandom(20 * SEG), grid.clients[:8])
    with pytest.raises(NotEnoughServersError, match="fewer than the 3 shares"):
        await grid.context().create_mutable_file(source, mdmf=True)
