"""The values a client's uploads are made with, parsed once from ``tahoe.cfg``."""

from __future__ import annotations

import attrs

from lafs.core.codec import CodecError, check_encoding

DEFAULT_MAX_SEGMENT_SIZE = 1024 * 1024
"""Tahoe's immutable segment size: 1 MiB."""
MUTABLE_MAX_SEGMENT_SIZE = 128 * 1024
"""Tahoe's mutable (SDMF and MDMF) segment size: 128 KiB."""


@attrs.frozen
class EncodingParameters:
    """k-of-N erasure coding, the happiness an upload must reach, and the immutable segment size."""

    needed: int = 3
    happy: int = 7
    total: int = 10
    max_segment_size: int = DEFAULT_MAX_SEGMENT_SIZE

    def __attrs_post_init__(self) -> None:
        check_encoding(self.needed, self.total)
        if not 1 <= self.happy <= self.total:
            raise CodecError(f"shares.happy={self.happy} must be between 1 and shares.total ({self.total})")
        if self.max_segment_size < 1:
            raise CodecError(f"the maximum segment size must be at least 1, not {self.max_segment_size}")


@attrs.frozen
class ClientSecrets:
    """A client node's secrets (``private/secret`` and ``private/convergence``)."""

    lease_secret: bytes = attrs.field(repr=False)
    convergence_secret: bytes = attrs.field(repr=False)
