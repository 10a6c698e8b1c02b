"""Directories across implementations, on a real Tahoe 1.20 grid (its storage servers and its client).

Our node maker talks to the real storage servers directly.  A tree the real
client makes through its web API is listed by ours, and our ``t=json`` of it
equals the real one; a tree we make is listed by the real client identically,
changed by it, and we see the change.  Mutable (SDMF, MDMF) and immutable
directories both ways, with unknown children.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest_twisted
from twisted.internet import threads

from lafs.client.nodemaker import NodeMaker
from lafs.core import hashes
from lafs.core.dirnode_format import make_child
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.dirnode import DirectoryNode
from lafs.web.directory import directory_json
from tests.integration.test_immutable_engine import WORKERS
from tests.interop import harness
from tests.interop.test_mutable_interop import connect_real_servers


def web(grid: harness.RealGrid, method: str, path: str, body: bytes | None = None) -> str:
    request = urllib.request.Request(grid.web_url + path, data=body, method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()  # type: ignore[no-any-return]


def real_json(grid: harness.RealGrid, cap: str, path: str = "") -> Any:
    return json.loads(web(grid, "GET", f"uri/{quote(cap, safe='')}{path}?t=json"))


def our_maker(servers: list[Any]) -> NodeMaker:
    # The real grid is 1-of-3 on three servers.
    return NodeMaker(
        servers_for=lambda si: sorted(servers, key=lambda s: hashes.permute_server_hash(si, s.lease_seed)),
        params=EncodingParameters(1, 1, 3),
        secrets=ClientSecrets(os.urandom(32), os.urandom(32)),
        workers=WORKERS,
    )


async def ours(nm: NodeMaker, cap: str) -> Any:
    node = nm.node_from_string(cap)
    assert isinstance(node, DirectoryNode)
    return await directory_json(node)


@pytest_twisted.ensureDeferred
async def test_we_list_a_tree_the_real_tahoe_made(real_grid: harness.RealGrid) -> None:
    call = threads.deferToThread
    root = await call(web, real_grid, "POST", "uri?t=mkdir")
    q = quote(root, safe="")
    await call(web, real_grid, "PUT", f"uri/{q}/sub/file.txt", b"small")
    await call(web, real_grid, "PUT", f"uri/{q}/big.bin", os.urandom(5000))
    await call(web, real_grid, "PUT", f"uri/{q}/mutable?format=MDMF", b"mutable")
    await call(web, real_grid, "POST", f"uri/{q}?t=mkdir&name=mdmf-dir&format=MDMF")
    kids = json.dumps({"u": ["unknown", {"rw_uri": "future:w", "ro_uri": "future:r"}], "k": ["filenode", {"ro_uri": "URI:LIT:nbswy3dpeb3w64tmmq", "metadata": {"x": 1}}]})
    await call(web, real_grid, "POST", f"uri/{q}?t=mkdir-with-children&name=kids", kids.encode())
    big = real_json(real_grid, root, "/big.bin")[1]["ro_uri"]
    immutable_kids = json.dumps({"big": ["filenode", {"ro_uri": big}], "u": ["unknown", {"ro_uri": "future:imm"}]})
    await call(web, real_grid, "POST", f"uri/{q}?t=mkdir-immutable&name=frozen", immutable_kids.encode())

    tub, servers = await connect_real_servers(real_grid)
    try:
        nm = our_maker(servers)
        theirs = await call(real_json, real_grid, root)
        assert await ours(nm, root) == theirs
        ro = theirs[1]["ro_uri"]
        assert await ours(nm, ro) == await call(real_json, real_grid, ro)
        for name in ("sub", "mdmf-dir", "kids", "frozen"):
            child = theirs[1]["children"][name][1]
            cap = child.get("rw_uri") or child["ro_uri"]
            assert await ours(nm, cap) == await call(real_json, real_grid, cap), name
        frozen = await ours(nm, theirs[1]["children"]["frozen"][1]["ro_uri"])
        assert frozen[1]["children"]["u"][1]["ro_uri"] == "imm.future:imm" and frozen[1]["mutable"] is False
    finally:
        await tub.stopService()


@pytest_twisted.ensureDeferred
async def test_the_real_tahoe_lists_and_changes_a_tree_we_made(real_grid: harness.RealGrid) -> None:
    call = threads.deferToThread
    tub, servers = await connect_real_servers(real_grid)
    try:
        nm = our_maker(servers)
        for file_format in ("SDMF", "MDMF"):
            root = await nm.create_directory(file_format=file_format)
            file, _ = await nm.upload_immutable(_source(os.urandom(3000)))
            await root.set_node("big.bin", file, {"mine": True})
            await root.set_uri("future", "future:write", "future:read")
            sub = await root.create_subdirectory("sub", mutable_format="MDMF")
            await sub.set_uri("hello", None, "URI:LIT:nbswy3dpeb3w64tmmq")
            frozen = await nm.create_immutable_directory(
                {"big": make_child("big", None, file.get_uri(), deep_immutable=True)}
            )
            await root.set_node("frozen", frozen)

            theirs = await call(real_json, real_grid, root.get_uri())
            assert theirs == await directory_json(root)
            assert await call(real_json, real_grid, root.get_readonly_uri()) == await directory_json(root.get_readonly())
            assert await call(real_json, real_grid, frozen.get_uri()) == await directory_json(frozen)
            assert await call(real_json, real_grid, sub.get_uri()) == await directory_json(sub)

            # The real client changes our directories; we see what it did, and our unknown child survived it.
            q = quote(root.get_uri(), safe="")
            await call(web, real_grid, "PUT", f"uri/{q}/sub/theirs.txt", b"written by tahoe")
            await call(web, real_grid, "POST", f"uri/{q}?t=rename&from_name=big.bin&to_name=renamed.bin")
            await call(web, real_grid, "POST", f"uri/{q}?t=mkdir&name=their-dir")
            listing = await root.list()
            assert sorted(listing) == ["frozen", "future", "renamed.bin", "sub", "their-dir"]
            assert listing["renamed.bin"][1]["mine"] is True
            assert (listing["future"][0].get_write_uri(), listing["future"][0].get_readonly_uri()) == ("future:write", "ro.future:read")
            theirs_file = await sub.get("theirs.txt")
            pieces: list[bytes] = []
            await theirs_file.read(pieces.append)
            assert b"".join(pieces) == b"written by tahoe"
            # And our change after theirs is seen by them.
            await root.delete("their-dir")
            assert "their-dir" not in (await call(real_json, real_grid, root.get_uri()))[1]["children"]
    finally:
        await tub.stopService()


def _source(data: bytes) -> Any:
    import io

    from lafs.client.nodes import FileSource

    return FileSource(io.BytesIO(data))
