"""Segmenting and zfec coding with Tahoe's padding rules (facts brief §4.1, §4.3)."""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import zfec
from hypothesis import given, settings
from hypothesis import strategies as st

from lafs import isal
from lafs.core import codec as codec_module
from lafs.core.codec import (
    CodecError,
    ZfecCodec,
    codec_params,
    immutable_segment_layout,
    mutable_segment_layout,
    pad_segment,
    parse_codec_params,
)
from lafs.core.hashes import BytesLike


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


ENCODINGS = st.integers(1, 12).flatmap(lambda k: st.tuples(st.just(k), st.integers(k, 16)))
"""(k, N) pairs zfec accepts."""


def coded_segment(params: tuple[int, int], payload: bytes) -> tuple[ZfecCodec, bytes, list[BytesLike]]:
    codec = isal.codec(*params)
    segment = pad_segment(payload, codec.needed)
    return codec, segment, codec.encode(segment)


@settings(max_examples=50)
@given(ENCODINGS, st.binary(max_size=300), st.data())
def test_any_k_blocks_decode(params: tuple[int, int], payload: bytes, data: st.DataObject) -> None:
    needed, total = params
    codec, segment, blocks = coded_segment(params, payload)
    chosen = data.draw(st.lists(st.integers(0, total - 1), min_size=needed, max_size=needed, unique=True))
    assert codec.decode({i: blocks[i] for i in chosen}) == segment


@settings(max_examples=30)
@given(ENCODINGS, st.binary(max_size=200), st.data())
def test_chosen_blocks_are_those_of_a_full_encoding(params: tuple[int, int], payload: bytes, data: st.DataObject) -> None:
    codec, segment, every = coded_segment(params, payload)
    numbers = data.draw(st.lists(st.integers(0, codec.total - 1), unique=True))
    assert [bytes(block) for block in codec.encode(segment, numbers)] == [bytes(every[n]) for n in numbers]


def test_primary_blocks_are_views_of_the_segment_and_bad_numbers_are_refused() -> None:
    segment = bytes(range(30))
    blocks = ZfecCodec(3, 10).encode(segment)
    assert all(isinstance(block, memoryview) and block.obj is segment for block in blocks[:3])
    with pytest.raises(CodecError, match=r"block number 10 is outside 0\.\.9"):
        ZfecCodec(3, 10).encode(segment, [3, 10])


def zfec_blocks(needed: int, total: int, segment: bytes) -> list[bytes]:
    size = len(segment) // needed
    primary = [segment[i * size : (i + 1) * size] for i in range(needed)]
    return [bytes(block) for block in zfec.Encoder(needed, total).encode(primary)]


@settings(max_examples=40)
@given(st.integers(1, 40).flatmap(lambda k: st.tuples(st.just(k), st.integers(k, 256))), st.binary(max_size=3000))
def test_blocks_are_zfecs_own(params: tuple[int, int], payload: bytes) -> None:
    """Whoever computes the parity (ISA-L or zfec), every block is the one zfec itself makes."""
    _codec, segment, blocks = coded_segment(params, payload)
    assert [bytes(block) for block in blocks] == zfec_blocks(*params, segment)


@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64"),
    reason="pyeclib ships ISA-L only for Linux on x86_64 and aarch64",
)
def test_isal_computes_the_parity_where_pyeclib_ships_it() -> None:
    assert codec_module.checked_parity_coder(3, 10, isal.load_matrix_coder) is not None
    assert isal.parity_coding() == "ISA-L"
    assert isal.codec(3, 10)._parity_coder is not None


def test_the_core_codec_alone_uses_zfec() -> None:
    """lafs.core loads no library: without a loader passed in, zfec computes the parity."""
    codec = ZfecCodec(3, 10)
    assert codec._parity_coder is None
    segment = bytes(range(255)) * 3
    assert [bytes(block) for block in codec.encode(segment)] == zfec_blocks(3, 10, segment)


@pytest.fixture
def fresh_parity_coders() -> Iterator[None]:
    codec_module.checked_parity_coder.cache_clear()
    yield
    codec_module.checked_parity_coder.cache_clear()


def test_zfec_computes_the_parity_without_isal(monkeypatch: pytest.MonkeyPatch, fresh_parity_coders: None) -> None:
    monkeypatch.setattr(isal, "load_matrix_coder", lambda needed, rows: None)
    assert isal.parity_coding() == "zfec"
    codec = isal.codec(3, 10)
    assert codec._parity_coder is None
    segment = bytes(range(255)) * 3
    assert [bytes(block) for block in codec.encode(segment)] == zfec_blocks(3, 10, segment)


def test_no_isal_when_no_candidate_library_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    isal._library.cache_clear()
    monkeypatch.setattr(isal, "_candidate_paths", lambda: ["/nonexistent/libisal.so.2", __file__])
    try:
        assert isal.load_matrix_coder(3, [b"\x01\x02\x03"]) is None
    finally:
        isal._library.cache_clear()


class WrongCoder:
    """A library whose arithmetic is off by one bit."""

    max_block_size = isal.MAX_BLOCK_SIZE

    def multiply(self, blocks: Sequence[BytesLike], wanted: Sequence[int]) -> list[bytearray]:
        return [bytearray(b ^ 1 for b in blocks[0]) for _ in wanted]


def test_blocks_too_long_for_isal_are_coded_by_zfec(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = isal.codec(3, 10)
    coder = WrongCoder()
    coder.max_block_size = 50
    monkeypatch.setattr(codec, "_parity_coder", coder)
    segment = bytes(range(200)) * 3
    assert [bytes(block) for block in codec.encode(segment)] == zfec_blocks(3, 10, segment)


def test_a_library_that_disagrees_with_zfec_is_not_used(monkeypatch: pytest.MonkeyPatch, fresh_parity_coders: None) -> None:
    monkeypatch.setattr(isal, "load_matrix_coder", lambda needed, rows: WrongCoder())
    assert codec_module.checked_parity_coder(2, 5, isal.load_matrix_coder) is None
    segment = bytes(range(200))
    assert [bytes(block) for block in isal.codec(2, 5).encode(segment)] == zfec_blocks(2, 5, segment)


ORACLE = json.loads((Path(__file__).parent / "data" / "crypto_codec_vectors.json").read_text())


@pytest.mark.parametrize("make_codec", [ZfecCodec, isal.codec], ids=["zfec", "isal"])
@pytest.mark.parametrize("case", ORACLE["cases"], ids=lambda c: f"{c['size']}-{c['needed']}-{c['total']}")
def test_blocks_match_real_tahoe(case: dict[str, object], make_codec: Callable[[int, int], ZfecCodec]) -> None:
    size, needed, total = case["size"], case["needed"], case["total"]
    assert isinstance(size, int) and isinstance(needed, int) and isinstance(total, int)
    segment = pad_segment(bytes((7 * i + 3) % 256 for i in range(size)), needed)
    assert codec_params(len(segment), needed, total).decode() == case["params"]
    blocks = make_codec(needed, total).encode(segment)
    assert {len(block) for block in blocks} == {case["block_size"]}
    assert [hashlib.sha256(block).hexdigest() for block in blocks] == case["block_sha256"]
    # Decoding from the last k blocks (all parity when N >= 2k) gives the segment back.
    assert ZfecCodec(needed, total).decode({i: blocks[i] for i in range(total - needed, total)}) == segment


def test_mutable_layouts_match_real_tahoe() -> None:
    # Observed with real Tahoe 1.20 (facts 13.8): SDMF 1700 bytes -> segsize 1701;
    # MDMF 307200 bytes -> segsize 131073, 3 segments.
    sdmf = mutable_segment_layout(1700, 3, 10, mdmf=False)
    assert (sdmf.segment_size, sdmf.num_segments, sdmf.tail_padded_size) == (1701, 1, 1701)
    mdmf = mutable_segment_layout(307200, 3, 10, mdmf=True)
    assert (mdmf.segment_size, mdmf.num_segments, mdmf.block_size) == (131073, 3, 43691)
    assert mdmf.tail_segment_size == 307200 - 2 * 131073
    assert mdmf.tail_padded_size == 45054 and mdmf.tail_block_size == 15018
    # Small MDMF files keep the full segment size (unlike immutable files).
    assert mutable_segment_layout(10, 3, 10, mdmf=True).segment_size == 131073
    for mdmf_flag in (False, True):
        empty = mutable_segment_layout(0, 3, 10, mdmf=mdmf_flag)
        assert empty.num_segments == 0
        assert empty.tail_segment_size == 0
    assert mutable_segment_layout(0, 3, 10, mdmf=False).segment_size == 0
    with pytest.raises(CodecError):
        mutable_segment_layout(-1, 3, 10, mdmf=True)


def test_decode_rejects_bad_blocks() -> None:
    codec = ZfecCodec(2, 4)
    blocks = codec.encode(b"abcdef")
    with pytest.raises(CodecError, match=r"outside 0\.\.3"):
        codec.decode({0: blocks[0], 4: blocks[1]})
    with pytest.raises(CodecError, match="outside"):
        codec.decode({-1: blocks[0], 1: blocks[1]})
    with pytest.raises(CodecError, match="same length"):
        codec.decode({2: blocks[2], 3: blocks[3][:-1]})
    # More than k blocks is fine: any k of them are used.
    assert codec.decode(dict(enumerate(blocks))) == b"abcdef"
    assert codec.decode({1: blocks[1], 3: blocks[3], 2: blocks[2]}) == b"abcdef"


@pytest.mark.parametrize("text", [b"", b"1-2-3-4", b"a-3-10", b"10-0-10", b"10-3-257", b"-1-3-10", b"10- 3-10"])
def test_parse_codec_params_rejects(text: bytes) -> None:
    with pytest.raises(CodecError):
        parse_codec_params(text)


@given(st.binary(max_size=30))
def test_parse_codec_params_garbage_raises_only_codec_error(text: bytes) -> None:
    try:
        segment_size, needed, total = parse_codec_params(text)
    except CodecError:
        return
    assert 1 <= needed <= total <= 256
    assert parse_codec_params(codec_params(segment_size, needed, total)) == (segment_size, needed, total)
