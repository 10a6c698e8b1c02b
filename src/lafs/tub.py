"""The node's foolscap Tub, with a broker that receives long strings in one piece.

Share data crosses the wire as long foolscap STRING tokens (a run of blocks is
over a mebibyte), but TLS hands the broker at most 16 KiB at a time.  Foolscap
re-parses the pending token's header, and re-checks it against the schema, for
every such piece; on a storage server that was a fifth of its CPU during an
upload.  While a STRING body is known to be incomplete, nothing in those checks
can change, so our broker only buffers the pieces and lets foolscap parse once
the body is whole.  The wire format and every check are foolscap's own.
"""

from __future__ import annotations

from foolscap.api import Tub
from foolscap.broker import Broker
from foolscap.tokens import STRING

# A token header is at most 64 base-128 digits followed by its type byte.
_MAX_HEADER = 65


def missing_string_bytes(pending: bytes, buffered: int) -> int:
    """How many more bytes the STRING token starting ``pending`` needs, 0 if not a STRING.

    ``pending`` is the start of the unparsed input, ``buffered`` the length of all of it.
    """
    length = 0
    for position, byte in enumerate(pending[:_MAX_HEADER]):
        if byte >= 0x80:
            if pending[position : position + 1] != STRING:
                return 0
            return max(0, length - (buffered - position - 1))
        length += byte << (7 * position)
    return 0


class BulkReceivingBroker(Broker):
    """A Broker that hands foolscap a long string's pieces only once the string is whole."""

    _string_bytes_missing = 0

    def handleData(self, chunk: bytes) -> None:
        if len(chunk) < self._string_bytes_missing:
            self._string_bytes_missing -= len(chunk)
            self.buffer.append(chunk)
            return
        self._string_bytes_missing = 0
        super().handleData(chunk)
        if self.buffer and not self.skipBytes:
            pending = self.buffer.popleft(_MAX_HEADER)
            self.buffer.appendleft(pending)
            self._string_bytes_missing = missing_string_bytes(pending, len(self.buffer))


class NodeTub(Tub):
    brokerClass = BulkReceivingBroker
