"""Intel ISA-L's GF(2^8) matrix multiply, used to compute zfec's parity blocks faster.

zfec multiplies blocks by its encoding matrix one byte at a time through a
lookup table; ISA-L does the same arithmetic in the same field (polynomial
0x11d) with SIMD instructions (GFNI/AVX-512 where the CPU has them), about
25 times faster here.  Given zfec's own parity coefficients it produces
byte-identical parity (the codec checks a probe before trusting it).
Decoding stays with zfec.

Here, not in ``lafs.core``, because loading a shared library is I/O; the
layers that encode (the client's uploader) pass `codec` or
`load_matrix_coder` into ``lafs.core.codec``.

The library is looked for as a system ``libisal.so.2`` and then in the copy
the ``pyeclib`` wheel ships (Linux).  Where neither loads,
`load_matrix_coder` returns None and zfec computes the parity itself: slower,
equally correct.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from typing import Any

import cffi

from lafs.core.codec import ZfecCodec, checked_parity_coder
from lafs.core.hashes import BytesLike

_DECLARATIONS = """
void ec_init_tables(int k, int rows, unsigned char *a, unsigned char *gftbls);
void ec_encode_data(int len, int k, int rows, unsigned char *gftbls,
                    unsigned char **data, unsigned char **coding);
"""
_SYSTEM_LIBRARY = "libisal.so.2"
"""Found by the dynamic linker's own search, if installed."""
_TABLE_BYTES_PER_COEFFICIENT = 32
MAX_BLOCK_SIZE = 2**31 - 1
"""ISA-L takes the block length as a C int."""


def _candidate_paths() -> list[str]:
    paths = [_SYSTEM_LIBRARY]
    try:
        files = importlib.metadata.files("pyeclib") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name.startswith("libisal") and ".so" in file.name:
            paths.append(str(file.locate()))
    return paths


@functools.cache
def _library() -> tuple[Any, Any] | None:
    """(ffi, lib) for the first ISA-L that loads with the functions we need, else None."""
    ffi = cffi.FFI()
    ffi.cdef(_DECLARATIONS)
    for path in _candidate_paths():
        try:
            lib = ffi.dlopen(path)
            lib.ec_init_tables, lib.ec_encode_data  # noqa: B018 - both symbols must resolve
        except (OSError, AttributeError):
            continue
        return ffi, lib
    return None


class MatrixCoder:
    """Multiplies k equal-length blocks by rows of a fixed k-column coefficient matrix over GF(2^8)."""

    max_block_size = MAX_BLOCK_SIZE

    def __init__(self, ffi: Any, lib: Any, needed: int, rows: Sequence[bytes]) -> None:
        self._ffi = ffi
        self._lib = lib
        self.needed = needed
        self._rows = list(rows)
        self._tables_by_rows: dict[tuple[int, ...], Any] = {}

    def _tables(self, wanted: tuple[int, ...]) -> Any:
        """ISA-L's expanded tables for these rows, made once (an upload asks for the same rows every segment)."""
        tables = self._tables_by_rows.get(wanted)
        if tables is None:
            coefficients = b"".join(self._rows[row] for row in wanted)
            tables = self._ffi.new("unsigned char[]", _TABLE_BYTES_PER_COEFFICIENT * self.needed * len(wanted))
            self._lib.ec_init_tables(self.needed, len(wanted), coefficients, tables)
            self._tables_by_rows[wanted] = tables
        return tables

    def multiply(self, blocks: Sequence[BytesLike], wanted: Sequence[int]) -> list[bytearray]:
        """Row ``r`` of the matrix times ``blocks``, for each ``r`` in ``wanted``.

        The library runs without the GIL, so other threads go on meanwhile.
        """
        if len(blocks) != self.needed:
            raise ValueError(f"expected {self.needed} blocks, got {len(blocks)}")
        block_size = len(blocks[0])
        if any(len(block) != block_size for block in blocks) or block_size > MAX_BLOCK_SIZE:
            raise ValueError("blocks must share one length below 2 GiB")
        outputs = [bytearray(block_size) for _ in wanted]
        if not wanted or block_size == 0:
            return outputs
        ffi = self._ffi
        inputs = [ffi.from_buffer("unsigned char[]", block) for block in blocks]
        results = [ffi.from_buffer("unsigned char[]", output, require_writable=True) for output in outputs]
        self._lib.ec_encode_data(
            block_size,
            self.needed,
            len(wanted),
            self._tables(tuple(wanted)),
            ffi.new("unsigned char *[]", inputs),
            ffi.new("unsigned char *[]", results),
        )
        return outputs


def load_matrix_coder(needed: int, rows: Sequence[bytes]) -> MatrixCoder | None:
    """A coder for the k-column matrix ``rows``, or None where ISA-L cannot be loaded."""
    loaded = _library()
    return None if loaded is None else MatrixCoder(*loaded, needed, rows)


def codec(needed: int, total: int) -> ZfecCodec:
    """A k-of-N codec whose parity blocks ISA-L computes where it loads (zfec where not): same blocks."""
    return ZfecCodec(needed, total, load_matrix_coder)


def parity_coding() -> str:
    """Which library computes parity blocks for `codec` in this process: ``"ISA-L"`` or ``"zfec"``."""
    return "zfec" if checked_parity_coder(3, 10, load_matrix_coder) is None else "ISA-L"
