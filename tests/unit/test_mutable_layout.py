"""SDMF and MDMF share layouts (facts brief §5.3, §5.4), checked against the real Tahoe 1.20."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import mutable_layout as ml

VECTORS = json.loads((Path(__file__).parent / "data" / "mutable_vectors.json").read_text())


def sample_share() -> ml.SDMFShare:
    info = ml.MutableVersionInfo(0, 7, b"\x11" * 32, b"\x22" * 16, 3, 10, 1701, 1700)
    chain = {2: b"\x02" * 32, 4: b"\x04" * 32, 8: b"\x08" * 32, 16: b"\x10" * 32}
    return ml.SDMFShare(info, b"V" * 294, b"S" * 256, chain, [b"\x33" * 32], b"D" * 567, b"K" * 1217)


def test_sdmf_share_matches_real_tahoe() -> None:
    share = sample_share()
    assert share.info.signed_prefix().hex() == VECTORS["sdmf_prefix"]
    packed = share.pack()
    assert packed.hex() == VECTORS["sdmf_share"]
    assert ml.SDMFShare.unpack(packed) == share
    assert ml.unpack_prefix(packed) == share.info
    assert share.info.checkstring() == packed[:57]


def test_sdmf_rejects_corruption() -> None:
    packed = bytearray(sample_share().pack())
    with pytest.raises(ml.MutableShareLayoutError, match=r"past the end|out of order"):
        ml.SDMFShare.unpack(bytes(packed[:500]))
    packed[0] = 9
    with pytest.raises(ml.MutableShareLayoutError, match="version byte 9"):
        ml.SDMFShare.unpack(bytes(packed))
    with pytest.raises(ml.MutableShareLayoutError, match="empty"):
        ml.unpack_prefix(b"")


def test_mdmf_offsets_of_real_share() -> None:
    # N=10, k=3, 307200 bytes: the offsets a real Tahoe 1.20 MDMF share carries.
    offsets = ml.mdmf_offsets(1217, 4, 256, 294, 104615 - 2167, 7 * 32)
    assert (
        offsets.enc_privkey,
        offsets.share_hash_chain,
        offsets.signature,
        offsets.verification_key,
        offsets.verification_key_end,
        offsets.share_data,
        offsets.block_hash_tree,
        offsets.eof,
    ) == (123, 1340, 1476, 1732, 2026, 2167, 104615, 104839)
    info = ml.MutableVersionInfo(1, 1, b"r" * 32, b"", 3, 10, 131073, 307200)
    header = info.signed_prefix() + offsets.pack()
    assert len(header) == ml.MDMF_HEADER_SIZE
    assert ml.MDMFOffsets.unpack(header) == offsets
    assert ml.unpack_prefix(header) == info
    assert info.checkstring() == header[:41]
    assert ml.mdmf_block_range(0, 3, 43691, 14564) == (2167, 16 + 43691)
    assert ml.mdmf_block_range(2, 3, 43691, 14564) == (2167 + 2 * (16 + 43691), 16 + 14564)


def test_mdmf_key_material_budget() -> None:
    with pytest.raises(ml.MutableShareLayoutError, match="does not fit"):
        ml.mdmf_offsets(3000, 4, 256, 294, 10, 32)


@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=16, max_size=16),
    st.integers(1, 255).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    st.binary(max_size=300),
    st.binary(max_size=100),
)
def test_sdmf_round_trip(
    seqnum: int, root: bytes, salt: bytes, kn: tuple[int, int], data: bytes, privkey: bytes
) -> None:
    info = ml.MutableVersionInfo(0, seqnum, root, salt, kn[0], kn[1], len(data), len(data))
    share = ml.SDMFShare(info, b"v" * 20, b"s" * 10, {1: b"h" * 32}, [b"t" * 32, b"u" * 32], data, privkey)
    assert ml.SDMFShare.unpack(share.pack()) == share


@given(st.binary(max_size=200))
def test_garbage_raises_layout_error(data: bytes) -> None:
    for parse in (ml.SDMFShare.unpack, ml.MDMFOffsets.unpack, ml.unpack_prefix):
        try:
            parse(data)
        except ml.MutableShareLayoutError:
            pass
