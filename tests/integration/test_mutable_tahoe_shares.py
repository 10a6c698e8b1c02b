"""Files the real Tahoe-LAFS 1.20 published, read and rewritten by our engine on our servers.

The shares come from ``tests/unit/data/mutable_tahoe_shares.json`` (see its
producer script); they are planted on an in-process grid exactly as a real
Tahoe client would have left them (one share per server in permuted order).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import pytest_twisted

from lafs.core import caps
from lafs.mutable.common import CapKeys, write_secrets
from lafs.mutable.filenode import MutableFileNode
from tests.mutable_grid import read
from tests.storage_grid import Grid, grid

__all__ = ["grid"]  # the fixture

VECTORS = json.loads((Path(__file__).parent.parent / "unit" / "data" / "mutable_tahoe_shares.json").read_text())


def plaintext(n: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


async def plant(grid: Grid, name: str) -> tuple[MutableFileNode, MutableFileNode, int]:
    v = VECTORS[name]
    write_cap = caps.from_string(v["write_cap"])
    assert isinstance(write_cap, caps.MutableWriteCap)
    keys = CapKeys.from_cap(write_cap)
    assert keys.writekey is not None
    servers = grid.permuted(keys.storage_index)
    for shnum_text, encoded in v["shares"].items():
        shnum = int(shnum_text)
        server = servers[shnum % len(servers)]
        secrets = write_secrets(keys.writekey, keys.storage_index, b"l" * 32, server)
        result = await server.slot_testv_and_readv_and_writev(
            keys.storage_index, secrets, {shnum: ([], [(0, base64.b64decode(encoded))], None)}, []
        )
        assert result.success
    context = grid.context()
    read_cap = caps.from_string(v["read_cap"])
    assert isinstance(read_cap, caps.MutableReadCap)
    return context.node_for_cap(write_cap), context.node_for_cap(read_cap), int(v["size"])


@pytest.mark.parametrize("name", ["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_read_real_tahoe_file(grid: Grid, name: str) -> None:
    """Read through the read cap (the MDMF file has only 3 of its 10 shares, the minimum)."""
    _, reader, size = await plant(grid, name)
    assert reader.format_name() == name.upper()
    assert await read(reader) == plaintext(size)
    assert await read(reader, 131000, 200) == plaintext(size)[131000:131200]
    assert await reader.get_current_size() == size
    assert grid.advisories() == []


@pytest.mark.parametrize("name", ["sdmf", "mdmf"])
@pytest_twisted.ensureDeferred
async def test_rewrite_real_tahoe_file(grid: Grid, name: str) -> None:
    """The write cap recovers Tahoe's encrypted signing key from its shares and publishes new versions."""
    writer, reader, size = await plant(grid, name)
    await writer.update(10, b"patched")
    expected = bytearray(plaintext(size))
    expected[10:17] = b"patched"
    assert await read(reader) == bytes(expected)
    await writer.overwrite(b"replaced by lafs")
    assert await read(reader) == b"replaced by lafs"
