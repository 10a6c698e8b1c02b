"""Segment sizes and zfec erasure coding with Tahoe's padding rules."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs
import zfec

from lafs.core.errors import FormatError
from lafs.core.hashes import BytesLike


class CodecError(FormatError):
    """Encoding parameters or blocks that cannot be used."""


def next_multiple(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def check_encoding(needed: int, total: int) -> None:
    if not 1 <= needed <= total <= 256:
        raise CodecError(f"shares needed/total {needed}/{total} must satisfy 1 <= k <= N <= 256")


@attrs.frozen
class SegmentLayout:
    """How an immutable file of ``file_size`` bytes is cut into segments and blocks."""

    file_size: int
    segment_size: int
    num_segments: int
    tail_segment_size: int
    tail_padded_size: int
    block_size: int
    tail_block_size: int
    needed: int
    total: int

    @property
    def share_data_size(self) -> int:
        """Bytes of block data in each share: ``ceil(file_size / k)``."""
        return (self.num_segments - 1) * self.block_size + self.tail_block_size

    def segment_range(self, segnum: int) -> tuple[int, int]:
        """(offset, length) of segment ``segnum`` within the file (the tail unpadded)."""
        if not 0 <= segnum < self.num_segments:
            raise CodecError(f"segment {segnum} is outside a file of {self.num_segments} segments")
        length = self.tail_segment_size if segnum == self.num_segments - 1 else self.segment_size
        return segnum * self.segment_size, length

    def codec_params(self) -> bytes:
        return codec_params(self.segment_size, self.needed, self.total)

    def tail_codec_params(self) -> bytes:
        return codec_params(self.tail_padded_size, self.needed, self.total)


def immutable_segment_layout(file_size: int, max_segment_size: int, needed: int, total: int) -> SegmentLayout:
    """Tahoe's segmentation: segsize = min(max, size) rounded up to a multiple of k."""
    check_encoding(needed, total)
    if file_size < 0 or max_segment_size < 1:
        raise CodecError("file size must be >= 0 and the maximum segment size >= 1")
    segment_size = next_multiple(min(max_segment_size, file_size), needed)
    if segment_size == 0:
        # An empty file still has one (empty) segment.
        return SegmentLayout(file_size, 0, 1, 0, 0, 0, 0, needed, total)
    return _cut(file_size, segment_size, needed, total)


def _cut(size: int, segment_size: int, needed: int, total: int) -> SegmentLayout:
    """Segments of ``segment_size`` bytes, the last one shorter and zero-padded to a multiple of k."""
    num_segments = -(-size // segment_size)
    tail = size % segment_size or segment_size
    tail_padded = next_multiple(tail, needed)
    return SegmentLayout(
        file_size=size,
        segment_size=segment_size,
        num_segments=num_segments,
        tail_segment_size=tail,
        tail_padded_size=tail_padded,
        block_size=segment_size // needed,
        tail_block_size=tail_padded // needed,
        needed=needed,
        total=total,
    )


DEFAULT_MUTABLE_MAX_SEGMENT_SIZE = 131072


def mutable_segment_layout(
    data_length: int, needed: int, total: int, *, mdmf: bool, max_segment_size: int = DEFAULT_MUTABLE_MAX_SEGMENT_SIZE
) -> SegmentLayout:
    """Tahoe's mutable segmentation (facts 5.1).

    SDMF is one segment of ``next_multiple(data_length, k)``; MDMF segments are
    ``next_multiple(128 KiB, k)`` whatever the file size.  Unlike immutable
    files, an empty mutable file has no segment at all (then the tail and
    block fields are 0).
    """
    check_encoding(needed, total)
    if data_length < 0 or max_segment_size < 1:
        raise CodecError("data length must be >= 0 and the maximum segment size >= 1")
    segment_size = next_multiple(max_segment_size if mdmf else data_length, needed)
    if data_length == 0:
        return SegmentLayout(0, segment_size, 0, 0, 0, segment_size // needed, 0, needed, total)
    return _cut(data_length, segment_size, needed, total)


def pad_segment(segment: bytes, needed: int) -> bytes:
    """Zero-pad a (tail) segment up to a multiple of ``needed``."""
    return segment + b"\x00" * (next_multiple(len(segment), needed) - len(segment))


def codec_params(segment_size: int, needed: int, total: int) -> bytes:
    return b"%d-%d-%d" % (segment_size, needed, total)


def parse_codec_params(text: bytes) -> tuple[int, int, int]:
    """Parse ``b"<segsize>-<k>-<N>"``."""
    parts = text.split(b"-")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise CodecError(f"codec params must look like 'SEGSIZE-K-N', got {text!r}")
    segment_size, needed, total = (int(part) for part in parts)
    check_encoding(needed, total)
    return segment_size, needed, total


_PROBE_BLOCK_SIZE = 257
"""Long enough for ISA-L's SIMD loops, with a ragged tail."""


class ParityCoder(Protocol):
    """Multiplies k equal-length blocks by rows of a fixed k-column matrix over GF(2^8), zfec's field."""

    max_block_size: int
    """Longer blocks are left to zfec."""

    def multiply(self, blocks: Sequence[BytesLike], wanted: Sequence[int]) -> list[bytearray]:
        """Row ``r`` of the matrix times ``blocks``, for each ``r`` in ``wanted``."""
        ...


ParityCoderLoader = Callable[[int, Sequence[bytes]], ParityCoder | None]
"""Makes a ParityCoder for k (``needed``) and the matrix's rows, or None where it cannot (say no library loads)."""


@functools.cache
def checked_parity_coder(needed: int, total: int, load: ParityCoderLoader) -> ParityCoder | None:
    """What ``load`` makes for zfec's parity rows, if it agrees with zfec on a probe; else None.

    Cached, so the probe runs (and a coder builds its tables) once per process and encoding.
    """
    if needed == total:
        return None
    encoder = zfec.Encoder(needed, total)
    parity = list(range(needed, total))
    # zfec is linear: coding the k unit vectors gives each parity block's coefficients.
    units = [bytes(int(row == column) for column in range(needed)) for row in range(needed)]
    coder = load(needed, [bytes(row) for row in encoder.encode(units, parity)])
    if coder is None:
        return None
    probe = [bytes((index * 131 + offset * 29 + 7) % 256 for offset in range(_PROBE_BLOCK_SIZE)) for index in range(needed)]
    expected = [bytes(block) for block in encoder.encode(probe, parity)]
    if [bytes(block) for block in coder.multiply(probe, range(total - needed))] != expected:
        return None
    return coder


class ZfecCodec:
    """k-of-N Reed-Solomon coding of one segment into N blocks (systematic: blocks 0..k-1 are the data).

    zfec's code, byte for byte.  Its parity blocks are computed by zfec, or by
    the coder ``load_parity_coder`` makes if that agrees with zfec (`lafs.isal`
    has one: core does not load libraries itself).
    """

    def __init__(self, needed: int, total: int, load_parity_coder: ParityCoderLoader | None = None) -> None:
        check_encoding(needed, total)
        self.needed = needed
        self.total = total
        self._encoder = zfec.Encoder(needed, total)
        self._decoder = zfec.Decoder(needed, total)
        self._parity_coder = None if load_parity_coder is None else checked_parity_coder(needed, total, load_parity_coder)

    def encode(self, segment: BytesLike, numbers: Sequence[int] | None = None) -> list[BytesLike]:
        """Blocks ``numbers`` (default all N, in order) of a segment whose length is a multiple of k.

        Blocks below k are views of ``segment`` itself, not copies.
        """
        if len(segment) % self.needed:
            raise CodecError(f"segment length {len(segment)} is not a multiple of k={self.needed}")
        wanted = list(range(self.total)) if numbers is None else list(numbers)
        for number in wanted:
            if not 0 <= number < self.total:
                raise CodecError(f"block number {number} is outside 0..{self.total - 1}")
        block_size = len(segment) // self.needed
        view = memoryview(segment)
        primary = [view[i * block_size : (i + 1) * block_size] for i in range(self.needed)]
        if self._parity_coder is None or block_size > self._parity_coder.max_block_size:
            return list(self._encoder.encode(primary, wanted))
        parity_numbers = [number for number in wanted if number >= self.needed]
        parity = iter(self._parity_coder.multiply(primary, [number - self.needed for number in parity_numbers]))
        return [primary[number] if number < self.needed else next(parity) for number in wanted]

    def decode(self, blocks: Mapping[int, BytesLike]) -> bytes:
        """The (padded) segment from any k blocks, keyed by block number."""
        for number in blocks:
            if not 0 <= number < self.total:
                raise CodecError(f"block number {number} is outside 0..{self.total - 1}")
        if len(blocks) < self.needed:
            raise CodecError(f"decoding needs {self.needed} blocks, got {len(blocks)}")
        # Prefer the primary blocks: they are the data itself, no arithmetic needed.
        chosen = sorted(blocks)[: self.needed]
        sizes = {len(blocks[number]) for number in chosen}
        if len(sizes) != 1:
            raise CodecError("blocks of one segment must all have the same length")
        if chosen == list(range(self.needed)):
            return b"".join(blocks[number] for number in chosen)
        decoded = self._decoder.decode([blocks[number] for number in chosen], chosen)
        return b"".join(bytes(piece) for piece in decoded)
