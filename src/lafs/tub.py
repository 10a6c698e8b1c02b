"""The node's foolscap Tub, with a broker that handles long strings in one piece.

Share data crosses the wire as long foolscap STRING tokens (a run of blocks is
over a mebibyte).  Foolscap pays per piece and per byte for them where it
need not, and our broker removes both costs; the wire format and every check
stay foolscap's own:

- TLS hands the broker at most 16 KiB at a time, and foolscap re-parses the
  pending token's header, and re-checks it against the schema, for every
  piece (a fifth of a storage server's CPU during an upload).  While a STRING
  body is known to be incomplete nothing in those checks can change, so the
  pieces are only buffered until the body is whole.
- Before sending a string foolscap looks it up in its table of vocabulary
  words, which hashes all of it (4% of a client's CPU during an upload).
  Vocabulary words are short names; a longer string cannot be one.
- Twisted hands the socket at most 128 KiB per send(); runs of share data
  are megabytes, and every send is a system call that wakes the peer.  The
  broker's connection sends up to SEND_LIMIT at a time.
- The unslicer that gathers an inbound call's arguments is part of a
  reference cycle, so the arguments (a run of share data) outlived the call
  until the collector's rare full pass: a storage server grew by about the
  size of every share it was sent, touching fresh memory all the while.
  The broker lets go of them once the call has answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from foolscap.api import Tub
from foolscap.broker import Broker
from foolscap.tokens import STRING
from twisted.internet.abstract import FileDescriptor

# A token header is at most 64 base-128 digits followed by its type byte.
_MAX_HEADER = 65
SEND_LIMIT = 4 * 1024 * 1024
"""Most bytes a node's foolscap connection hands the socket in one send (Twisted's default: 128 KiB)."""


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


class VocabularyTable(dict[bytes, int]):
    """Foolscap's outgoing vocabulary table, which answers for long strings without hashing them.

    A word the table wrongly denied would only be sent spelled out, which is
    still valid banana; foolscap adds words only by item assignment.
    """

    longest = 0

    def __init__(self, words: Mapping[bytes, int] | None = None) -> None:
        super().__init__()
        for word, index in (words or {}).items():
            self[word] = index

    def __setitem__(self, word: bytes, index: int) -> None:
        self.longest = max(self.longest, len(word))
        super().__setitem__(word, index)

    def __contains__(self, word: object) -> bool:
        return len(word) <= self.longest and super().__contains__(word)  # type: ignore[arg-type]


class BulkDataBroker(Broker):
    """A Broker that receives a long string's pieces in one go and sends it without hashing it."""

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

    def connectionMade(self) -> None:
        super().connectionMade()
        if isinstance(self.transport, FileDescriptor):
            self.transport.SEND_LIMIT = SEND_LIMIT

    def _callFinished(self, result: Any, delivery: Any) -> None:
        try:
            super()._callFinished(result, delivery)
        finally:
            _release_arguments(delivery)

    def callFailed(self, failure: Any, reqID: int, delivery: Any = None) -> None:
        try:
            super().callFailed(failure, reqID, delivery)
        finally:
            if delivery is not None:
                _release_arguments(delivery)

    def initSend(self) -> None:
        super().initSend()
        self.outgoingVocabulary = VocabularyTable()

    def outgoingVocabTableWasReplaced(self, newTable: dict[bytes, int]) -> None:
        super().outgoingVocabTableWasReplaced(VocabularyTable(newTable))


def _release_arguments(delivery: Any) -> None:
    delivery.allargs.args = []
    delivery.allargs.kwargs = {}


class NodeTub(Tub):
    """The Tub every node uses: foolscap's own, with the BulkDataBroker."""

    brokerClass = BulkDataBroker
