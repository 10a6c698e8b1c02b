"""Directory nodes on an in-process grid: every operation, races, read-only transitivity, unknown children, immutable dirs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from lafs.client.nodemaker import ImmutableFileNode, LiteralFileNode, NodeMaker, UnknownNode
from lafs.core import caps
from lafs.core.dirnode_format import (
    ChildNameError,
    ExistingChildError,
    MustBeDeepImmutableError,
    NoSuchChildError,
    make_child,
)
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.dirnode import (
    DirectoryNode,
    DirectoryNotReadableError,
    DirectoryNotWritableError,
    PathNotDirectoryError,
)
from lafs.mutable.common import UncoordinatedWriteError
from tests.integration.test_immutable_engine import WORKERS
from tests.storage_grid import KEYS, Grid, grid

__all__ = ["grid"]  # the fixture: every test runs in-process, over Foolscap and over HTTPS

LIT = "URI:LIT:nbswy3dpeb3w64tmmq"  # "hello world"


class Gate:
    """Holds back a client's next mutable writes (to every server) until a rival's whole change is done."""

    def __init__(self) -> None:
        self.rival: Callable[[], Awaitable[None]] | None = None
        self.done: defer.Deferred[None] | None = None

    async def before_write(self) -> None:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            self.done = defer.Deferred.fromCoroutine(rival())  # type: ignore[arg-type]
        if self.done is not None:
            done = self.done
            await done
            self.done = None if done is self.done else self.done


class HookedServer:
    """A storage client whose mutable writes pass the `Gate` first."""

    def __init__(self, inner: Any, gate: Gate) -> None:
        self._inner = inner
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def slot_testv_and_readv_and_writev(self, *args: Any) -> Any:
        await self._gate.before_write()
        return await self._inner.slot_testv_and_readv_and_writev(*args)


def maker(grid: Grid, servers_for: Any = None, mutable_format: str = "SDMF") -> NodeMaker:
    return NodeMaker(
        servers_for=servers_for or grid.permuted,
        params=EncodingParameters(3, 7, 10),
        secrets=ClientSecrets(b"l" * 32, b"c" * 32),
        workers=WORKERS,
        key_pool=KEYS,
        mutable_format=mutable_format,
    )


async def names(directory: DirectoryNode) -> list[str]:
    return sorted(await directory.list())


@pytest.mark.parametrize("file_format", ["SDMF", "MDMF"])
@pytest_twisted.ensureDeferred
async def test_every_operation_of_a_mutable_directory(grid: Grid, file_format: str) -> None:
    nm = maker(grid)
    root = await nm.create_directory(file_format=file_format)
    assert root.get_uri().startswith("URI:DIR2:" if file_format == "SDMF" else "URI:DIR2-MDMF:")
    assert await root.list() == {}
    assert root.format_name() == file_format and root.is_mutable() and not root.is_readonly()

    child = await root.set_uri("hello", None, LIT, {"user": 1})
    assert isinstance(child, LiteralFileNode)
    node, metadata = await root.get_child_and_metadata("hello")
    assert node.get_uri() == LIT and metadata["user"] == 1
    assert set(metadata["tahoe"]) == {"linkcrtime", "linkmotime"}

    with pytest.raises(ExistingChildError):
        await root.set_uri("hello", None, LIT, overwrite=False)
    sub = await root.create_subdirectory("sub")
    assert isinstance(sub, DirectoryNode) and (await root.get("sub")).get_uri() == sub.get_uri()
    with pytest.raises(ExistingChildError):
        await root.set_uri("sub", None, LIT, overwrite="only-files")
    await root.set_uri("hello", None, LIT, {"user": 2}, overwrite="only-files")
    _, again = await root.get_child_and_metadata("hello")
    assert again["user"] == 2 and again["tahoe"]["linkcrtime"] == metadata["tahoe"]["linkcrtime"]

    await root.set_children({"a": (None, LIT, None), "b": (None, LIT, {"k": "v"})})
    assert await names(root) == ["a", "b", "hello", "sub"]
    with pytest.raises(ExistingChildError):
        await root.set_children({"c": (None, LIT, None), "a": (None, LIT, None)}, overwrite=False)
    assert "c" not in await root.list()  # all or nothing

    await root.rename("a", "a2")
    assert await names(root) == ["a2", "b", "hello", "sub"]
    await root.move_child_to("b", sub, "b-moved")
    assert await names(root) == ["a2", "hello", "sub"] and await names(sub) == ["b-moved"]
    _, moved = await sub.get_child_and_metadata("b-moved")
    assert moved["k"] == "v"

    removed = await root.delete("a2")
    assert removed.get_uri() == LIT
    with pytest.raises(NoSuchChildError, match="a2"):
        await root.delete("a2")
    with pytest.raises(NoSuchChildError):
        await root.get("nope")
    for bad in ("", "a/b"):
        with pytest.raises(ChildNameError):
            await root.set_uri(bad, None, LIT)
    assert (await root.get_child_at_path(["sub", "b-moved"])).get_uri() == LIT
    with pytest.raises(PathNotDirectoryError):
        await root.get_child_at_path(["hello", "x"])

    # Another client (its own node maker) sees it all.
    other = maker(grid).node_from_string(root.get_uri())
    assert isinstance(other, DirectoryNode) and await names(other) == ["hello", "sub"]


@pytest_twisted.ensureDeferred
async def test_read_only_reaches_the_whole_subtree(grid: Grid) -> None:
    nm = maker(grid)
    root = await nm.create_directory()
    sub = await root.create_subdirectory("sub")
    mutable = await nm.create_mutable_file(_source(b"data"))
    await sub.set_node("file", mutable)
    # A write cap stored in the read slot (an old or odd writer) must not leak through a read-only parent either.
    await root.set_uri("odd", None, sub.get_uri())
    ro = nm.node_from_string(root.get_readonly_uri())
    assert isinstance(ro, DirectoryNode) and ro.is_readonly()
    listing = await ro.list()
    assert all(node.is_readonly() for node, _ in listing.values())
    ro_sub = listing["sub"][0]
    assert ro_sub.get_uri().startswith("URI:DIR2-RO:") and listing["odd"][0].get_uri().startswith("URI:DIR2-RO:")
    file = (await ro_sub.list())["file"][0]
    assert file.is_readonly() and file.get_uri() == mutable.get_readonly_uri()
    for change in (ro.set_uri("x", None, LIT), ro.delete("sub"), ro.create_subdirectory("y"), ro_sub.rename("file", "f")):
        with pytest.raises(DirectoryNotWritableError, match="read-only"):
            await change
    verifier = nm.node_from_string(root.get_verify_uri() or "")
    assert isinstance(verifier, DirectoryNode)
    with pytest.raises(DirectoryNotReadableError):
        await verifier.list()


@pytest_twisted.ensureDeferred
async def test_unknown_children_are_listed_and_written_back_unchanged(grid: Grid) -> None:
    nm = maker(grid)
    kids = {
        "u": make_child("u", "future:write", "future:read", {"m": 1}),
        "r": make_child("r", None, "ro.future:readonly"),
    }
    root = await nm.create_directory(kids)
    before = await root.read_children()
    listing = await root.list()
    unknown = listing["u"][0]
    assert isinstance(unknown, UnknownNode)
    assert (unknown.get_write_uri(), unknown.get_readonly_uri()) == ("future:write", "ro.future:read")
    assert listing["r"][0].get_readonly_uri() == "ro.future:readonly" and listing["u"][1] == {"m": 1}
    await root.set_uri("known", None, LIT)
    after = await root.read_children()
    assert after["u"] == before["u"] and after["r"] == before["r"]
    # Moving an unknown child keeps its caps verbatim.
    sub = await root.create_subdirectory("sub")
    await root.move_child_to("u", sub)
    moved = (await sub.read_children())["u"]
    assert (moved.rw_uri, moved.ro_uri) == ("future:write", "future:read")


@pytest_twisted.ensureDeferred
async def test_immutable_directories_hold_only_deep_immutable_children(grid: Grid) -> None:
    nm = maker(grid)
    big, _ = await nm.upload_immutable(_source(b"x" * 10000))
    tiny = await nm.create_immutable_directory({})
    assert tiny.get_uri() == "URI:DIR2-LIT:" and await tiny.list() == {}
    kids = {
        "big": make_child("big", None, big.get_uri(), {"a": 1}, deep_immutable=True),
        "tiny": make_child("tiny", None, tiny.get_uri(), deep_immutable=True),
        "future": make_child("future", None, "imm.future:thing", deep_immutable=True),
    }
    directory = await nm.create_immutable_directory(kids)
    assert directory.get_uri().startswith("URI:DIR2-CHK:") and not directory.is_mutable()
    assert directory.get_verify_uri() is not None and directory.get_verify_uri().startswith("URI:DIR2-CHK-Verifier:")  # type: ignore[union-attr]
    listing = await nm.node_from_string(directory.get_uri()).list()  # type: ignore[union-attr]
    assert isinstance(listing["big"][0], ImmutableFileNode) and listing["big"][1] == {"a": 1}
    assert isinstance(listing["tiny"][0], DirectoryNode)
    assert listing["future"][0].get_readonly_uri() == "imm.future:thing"
    with pytest.raises(DirectoryNotWritableError, match="immutable"):
        await directory.set_uri("x", None, LIT)
    mutable = await nm.create_directory()
    for write, read in ((mutable.get_uri(), None), (None, mutable.get_readonly_uri())):
        with pytest.raises(MustBeDeepImmutableError):
            make_child("m", write, read, deep_immutable=True)
    with pytest.raises(MustBeDeepImmutableError):
        await nm.create_immutable_directory({"m": make_child("m", None, mutable.get_readonly_uri())})


@pytest_twisted.ensureDeferred
async def test_concurrent_changes_from_two_clients_both_land(grid: Grid) -> None:
    root = await maker(grid).create_directory()
    a = maker(grid).node_from_string(root.get_uri())
    b = maker(grid).node_from_string(root.get_uri())
    assert isinstance(a, DirectoryNode) and isinstance(b, DirectoryNode)
    for round_ in range(3):
        await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(a.set_uri(f"a{round_}", None, LIT)),
                defer.Deferred.fromCoroutine(b.set_uri(f"b{round_}", None, LIT)),
            ]
        )
    assert await names(root) == ["a0", "a1", "a2", "b0", "b1", "b2"]


@pytest_twisted.ensureDeferred
async def test_a_lost_race_is_retried_and_reported_only_when_the_change_no_longer_applies(grid: Grid) -> None:
    root = await maker(grid).create_directory()
    await root.set_uri("victim", None, LIT)
    gate = Gate()
    hooked = maker(grid, lambda si: [HookedServer(s, gate) for s in grid.permuted(si)])
    mine = hooked.node_from_string(root.get_uri())
    assert isinstance(mine, DirectoryNode)

    async def rival_adds() -> None:
        await root.set_uri("rival", None, LIT)

    gate.rival = rival_adds  # the rival writes between our read and our write: our write loses, is retried
    await mine.set_uri("mine", None, LIT)
    assert await names(root) == ["mine", "rival", "victim"]

    async def rival_deletes() -> None:
        await root.delete("victim")

    gate.rival = rival_deletes  # on the winner's version "victim" is gone: our delete no longer applies
    with pytest.raises(UncoordinatedWriteError, match="no longer applies"):
        await mine.delete("victim")
    assert await names(root) == ["mine", "rival"]


@pytest_twisted.ensureDeferred
async def test_dircaps_of_every_kind_become_directory_nodes(grid: Grid) -> None:
    nm = maker(grid)
    for text in ("URI:DIR2-LIT:", "URI:DIR2-LIT:mrqxiyi"):
        node = nm.node_from_string(text)
        assert isinstance(node, DirectoryNode) and not node.is_mutable() and node.get_verify_uri() is None
    ro = nm.node_from_string((await nm.create_directory(file_format="MDMF")).get_readonly_uri())
    assert isinstance(ro, DirectoryNode) and ro.is_readonly() and ro.format_name() == "MDMF"
    assert isinstance(ro.cap.file_cap, caps.MutableReadCap)


def _source(data: bytes) -> Any:
    import io

    from lafs.client.nodes import FileSource

    return FileSource(io.BytesIO(data))


@pytest_twisted.ensureDeferred
async def test_a_directory_made_with_a_given_private_key_has_that_keys_caps(grid: Grid) -> None:
    """``private-key=``: the directory's write cap is the one the key determines."""
    from lafs.mutable.common import WriteKeys
    from lafs.mutable.keys import generate_private_key

    key = generate_private_key()
    directory = await maker(grid).create_directory(private_key=key)
    assert directory.get_storage_index() == WriteKeys.from_private_key(key).storage_index
    assert await directory.list() == {}
