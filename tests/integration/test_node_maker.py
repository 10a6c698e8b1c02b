"""The node maker: every kind of cap becomes a node that answers for itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytest_twisted

from lafs.client.nodemaker import (
    CapOnlyNode,
    ImmutableFileNode,
    LiteralFileNode,
    NodeMaker,
    NotReadableError,
)
from lafs.client.nodes import FileSource
from lafs.core import caps
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.dirnode import DirectoryNode
from tests.integration.test_immutable_engine import SEGMENT, WORKERS, Grid
from tests.unit.test_caps import MDMF_VECTOR


def node_maker(tmp_path: Path) -> NodeMaker:
    grid = Grid(tmp_path)
    return NodeMaker(
        servers_for=grid.permuted,
        params=EncodingParameters(3, 7, 10, SEGMENT),
        secrets=ClientSecrets(b"l" * 32, b"c" * 32),
        workers=WORKERS,
    )


@pytest_twisted.ensureDeferred
async def test_uploads_come_back_as_readable_nodes(tmp_path: Path) -> None:
    maker = node_maker(tmp_path)
    for size, kind in ((20, LiteralFileNode), (3 * SEGMENT, ImmutableFileNode)):
        data = os.urandom(size)
        source = FileSource(_bytes_file(tmp_path / f"f{size}", data))
        node, result = await maker.upload_immutable(source)
        assert isinstance(node, kind) and node.get_uri() == result.cap.to_string()
        again = maker.node_from_string(node.get_uri())
        assert type(again) is kind and again.get_size() == size == await again.get_current_size()
        assert not again.is_mutable() and again.is_readonly() and not again.is_directory()
        assert again.format_name() == "CHK"
        pieces: list[bytes] = []
        await again.read(pieces.append, offset=5, length=10)
        assert b"".join(pieces) == data[5:15]


def _bytes_file(path: Path, data: bytes) -> object:
    path.write_bytes(data)
    return path.open("rb")


def test_verify_caps_are_described_and_refused_clearly(tmp_path: Path) -> None:
    maker = node_maker(tmp_path)
    # MDMF write caps open as mutable nodes now; their verify caps still cannot be read.
    mdmf = maker.node_from_string(MDMF_VECTOR)
    assert (mdmf.format_name(), mdmf.is_mutable(), mdmf.is_readonly(), mdmf.get_size()) == ("MDMF", True, False, None)
    assert mdmf.get_readonly_uri().startswith("URI:MDMF-RO:") and (mdmf.get_verify_uri() or "").startswith("URI:MDMF-Verifier:")
    verifier = maker.node_from_string(mdmf.get_verify_uri() or "")
    assert isinstance(verifier, CapOnlyNode) and isinstance(verifier.unsupported(), NotReadableError)
    directory = maker.node_from_string("URI:DIR2-LIT:mrqxiyi")
    assert isinstance(directory, DirectoryNode) and directory.is_directory()


@pytest.mark.parametrize("text", ["", "URI:CHK:", "URI:SSK:abc", "not a cap", "URI:LIT:!!"])
def test_malformed_caps_raise_the_cap_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(caps.CapError):
        node_maker(tmp_path).node_from_string(text)
