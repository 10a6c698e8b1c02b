"""Immutable share layout and UEB, checked against bytes the real Tahoe 1.20 produced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import share_layout as sl

VECTORS = json.loads((Path(__file__).parent / "data" / "layout_vectors.json").read_text())
UEB_FIELDS = {
    "codec_name": b"crs",
    "codec_params": b"65538-3-10",
    "tail_codec_params": b"59388-3-10",
    "size": 256000,
    "segment_size": 65538,
    "num_segments": 4,
    "needed_shares": 3,
    "total_shares": 10,
    "crypttext_hash": b"\x01" * 32,
    "crypttext_root_hash": b"\x02" * 32,
    "share_root_hash": b"\x03" * 32,
}


@pytest.mark.parametrize("case", VECTORS["immutable_headers"], ids=lambda c: f"v{c['version']}-{c['data_size']}")
def test_headers_match_real_tahoe(case: dict[str, int | str]) -> None:
    version = int(case["version"])
    natural = sl.immutable_share_offsets(
        int(case["block_size"]), int(case["data_size"]), int(case["num_segments"]), int(case["num_share_hashes"])
    )
    offsets = natural if version == 1 else _as_v2(natural)
    assert offsets.pack().hex() == case["header"]
    assert sl.ImmutableShareOffsets.unpack(bytes.fromhex(str(case["header"]))) == offsets
    assert sl.allocated_size(offsets, int(case["ueb_size"])) == case["allocated_size"]


def _as_v2(v1: sl.ImmutableShareOffsets) -> sl.ImmutableShareOffsets:
    shift = sl.V2_HEADER.size - sl.V1_HEADER.size
    return sl.ImmutableShareOffsets(
        2,
        v1.block_size,
        v1.data_size,
        v1.data + shift,
        v1.plaintext_hash_tree + shift,
        v1.crypttext_hash_tree + shift,
        v1.block_hashes + shift,
        v1.share_hashes + shift,
        v1.uri_extension + shift,
    )


def test_version_2_when_offsets_need_64_bits() -> None:
    offsets = sl.immutable_share_offsets(2**31, 2**32 + 5, 3, 5)
    assert offsets.version == 2 and offsets.data == 0x44
    assert sl.ImmutableShareOffsets.unpack(offsets.pack()) == offsets


def test_ueb_matches_real_tahoe() -> None:
    packed = bytes.fromhex(VECTORS["ueb"])
    assert sl.pack_ueb(UEB_FIELDS) == packed
    assert len(packed) == 323
    assert sl.unpack_ueb(packed) == UEB_FIELDS
    ueb = sl.UriExtension.from_bytes(packed)
    assert ueb.segment_size == 65538 and ueb.to_bytes() == packed


def test_ueb_ignores_unknown_keys_and_rejects_garbage() -> None:
    extra = sl.pack_ueb({**UEB_FIELDS, "plaintext_hash": b"\x09" * 32})
    assert sl.UriExtension.from_bytes(extra).size == 256000
    with pytest.raises(sl.ShareLayoutError, match="lacks"):
        sl.UriExtension.from_bytes(sl.pack_ueb({"size": 1}))
    with pytest.raises(sl.ShareLayoutError, match="decimal"):
        sl.unpack_ueb(b"size:3:abc,")
    with pytest.raises(sl.ShareLayoutError, match="bad value"):
        sl.unpack_ueb(b"size:99:abc,")
    with pytest.raises(sl.ShareLayoutError, match="bad key"):
        sl.unpack_ueb(b"si ze:1:1,")
    with pytest.raises(sl.ShareLayoutError, match="letters"):
        sl.pack_ueb({"bad key": 1})


def test_share_hash_chain_and_hash_lists() -> None:
    pairs = [(2, b"a" * 32), (4, b"b" * 32), (8, b"c" * 32), (15, b"d" * 32), (16, b"e" * 32)]
    packed = sl.pack_share_hash_chain(pairs)
    assert len(packed) == 5 * 34
    assert sl.unpack_share_hash_chain(packed) == dict(pairs)
    assert sl.num_share_hashes(10) == 5
    assert sl.num_share_hashes(1) == 1
    assert sl.num_share_hashes(256) == 9
    with pytest.raises(sl.ShareLayoutError):
        sl.unpack_share_hash_chain(packed[:-1])
    with pytest.raises(sl.ShareLayoutError):
        sl.unpack_hashes(b"x" * 33)
    with pytest.raises(sl.ShareLayoutError):
        sl.pack_hashes([b"short"])


def test_ueb_length_field() -> None:
    offsets = sl.immutable_share_offsets(100, 1000, 10, 5)
    assert sl.unpack_ueb_length(offsets, sl.pack_ueb_with_length(offsets, b"x" * 323)) == 323
    with pytest.raises(sl.ShareLayoutError, match="ridiculously large"):
        sl.unpack_ueb_length(offsets, b"\x00\x00\x07\xd0")
    with pytest.raises(sl.ShareLayoutError, match="truncated"):
        sl.unpack_ueb_length(offsets, b"\x00")


def test_block_ranges() -> None:
    offsets = sl.immutable_share_offsets(21846, 85334, 4, 5)
    assert offsets.block_range(0, 4, 19796) == (0x24, 21846)
    assert offsets.block_range(3, 4, 19796) == (0x24 + 3 * 21846, 19796)
    assert offsets.hash_tree_length("crypttext_hash_tree") == 7 * 32
    with pytest.raises(sl.ShareLayoutError):
        offsets.block_range(4, 4, 19796)


@given(st.integers(1, 2**40), st.integers(0, 2**40), st.integers(1, 2**20), st.integers(1, 9))
def test_offsets_round_trip(block_size: int, data_size: int, num_segments: int, pairs: int) -> None:
    offsets = sl.immutable_share_offsets(block_size, data_size, num_segments, pairs)
    assert sl.ImmutableShareOffsets.unpack(offsets.pack()) == offsets


@given(st.binary(max_size=80))
def test_header_garbage_raises_layout_error(data: bytes) -> None:
    try:
        sl.ImmutableShareOffsets.unpack(data)
    except sl.ShareLayoutError:
        pass


@given(
    st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=20).filter(
            lambda k: k not in sl.UEB_INTEGER_FIELDS
        ),
        st.binary(max_size=60),
        max_size=12,
    ),
    st.integers(0, 2**64),
)
def test_ueb_round_trip(fields: dict[str, bytes], size: int) -> None:
    everything: dict[str, int | bytes] = {**fields, "size": size}
    assert sl.unpack_ueb(sl.pack_ueb(everything)) == everything


@given(st.binary(max_size=200))
def test_ueb_garbage_raises_layout_error(data: bytes) -> None:
    try:
        sl.unpack_ueb(data)
    except sl.ShareLayoutError:
        pass
