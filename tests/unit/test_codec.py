"""Segmenting and zfec coding with Tahoe's padding rules (facts brief §4.1, §4.3)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lafs.core.codec import (
    CodecError,
    ZfecCodec,
    codec_params,
    immutable_segment_layout,
    pad_segment,
    parse_codec_params,
)


def test_layout_of_real_tahoe_share() -> None:
    # 256000 bytes, max segsize 65536, 3-of-10: the real Tahoe made segsize 65538,
    # 4 segments and tail params 59388-3-10.
    layout = immutable_segment_layout(256000, 65536, 3, 10)
    assert layout.segment_size == 65538
    assert layout.num_segments == 4
    assert layout.tail_codec_params() == b"59388-3-10"
    assert layout.codec_params() == b"65538-3-10"
    assert layout.share_data_size == -(-256000 // 3)


def test_one_mebibyte_default_rounds_up_to_k() -> None:
    layout = immutable_segment_layout(10 * 2**20, 2**20, 3, 10)
    assert layout.segment_size == 1048578
    assert layout.block_size == 349526


@pytest.mark.parametrize("size", [1, 55, 56, 4095, 4096, 4097, 3 * 4096 + 5])
def test_layout_invariants(size: int) -> None:
    layout = immutable_segment_layout(size, 4096, 3, 10)
    assert layout.segment_size % 3 == 0
    assert (layout.num_segments - 1) * layout.segment_size + layout.tail_segment_size == size
    assert layout.tail_padded_size % 3 == 0
    assert layout.tail_padded_size - layout.tail_segment_size < 3
    offset, length = layout.segment_range(layout.num_segments - 1)
    assert offset + length == size
    with pytest.raises(CodecError):
        layout.segment_range(layout.num_segments)


def test_bad_parameters() -> None:
    with pytest.raises(CodecError, match="1 <= k <= N <= 256"):
        immutable_segment_layout(100, 4096, 4, 3)
    with pytest.raises(CodecError):
        ZfecCodec(0, 10)
    with pytest.raises(CodecError, match="multiple of k"):
        ZfecCodec(3, 10).encode(b"abcd")
    with pytest.raises(CodecError, match="needs 3 blocks"):
        ZfecCodec(3, 10).decode({0: b"a", 1: b"b"})
    with pytest.raises(CodecError, match="SEGSIZE-K-N"):
        parse_codec_params(b"12-3")
    assert parse_codec_params(codec_params(131073, 3, 10)) == (131073, 3, 10)


def test_systematic_and_every_subset_decodes() -> None:
    codec = ZfecCodec(3, 5)
    segment = pad_segment(b"hello, world!", 3)
    assert len(segment) == 15
    blocks = codec.encode(segment)
    assert len(blocks) == 5
    assert b"".join(blocks[:3]) == segment
    for subset in itertools.combinations(range(5), 3):
        assert codec.decode({i: blocks[i] for i in subset}) == segment


@settings(max_examples=50)
@given(st.integers(1, 12).flatmap(lambda k: st.tuples(st.just(k), st.integers(k, 16))), st.binary(max_size=300), st.data())
def test_any_k_blocks_decode(params: tuple[int, int], payload: bytes, data: st.DataObject) -> None:
    needed, total = params
    codec = ZfecCodec(needed, total)
    segment = pad_segment(payload, needed)
    blocks = codec.encode(segment)
    chosen = data.draw(st.lists(st.integers(0, total - 1), min_size=needed, max_size=needed, unique=True))
    assert codec.decode({i: blocks[i] for i in chosen}) == segment
