"""The real Tahoe 1.20's ``tahoe debug dump-share`` parses the mutable shares our engine writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest_twisted

from lafs.mutable.keys import generate_private_key
from tests.interop import harness
from tests.mutable_grid import Grid


@pytest_twisted.ensureDeferred
async def test_dump_share_reads_our_mutable_shares(tahoe_oracle: Path, tmp_path: Path) -> None:
    grid = Grid(tmp_path)
    context = grid.context()
    for mdmf, kind in [(False, "SDMF"), (True, "MDMF")]:
        data = os.urandom(300000)
        node = await context.create_mutable_file(data, mdmf=mdmf, private_key=generate_private_key())
        await node.overwrite(data[:200000])
        for _, _, path in grid.shares(node.get_storage_index())[:2]:
            dumped = harness.run_tahoe("debug", "dump-share", str(path)).stdout
            assert f" share_type: {kind}" in dumped
            assert " seqnum: 2" in dumped and " datalen: 200000" in dumped
            assert " required_shares: 3" in dumped and " total_shares: 10" in dumped
            assert f"verify-cap: {node.get_verify_uri()}" in dumped
            assert " ownerid: 1" in dumped
