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
  broker's connection sends up to SEND_LIMIT at a time.  (Reading more than
  Twisted's 64 KiB per recv() saved the servers little and cost the client
  ~10 MiB of peak memory in fragments of the larger buffers.)
- Twisted's TLS layer joins a long write to the small ones before it, then
  feeds OpenSSL 16 KiB slices and reads the encrypted result back 32 KiB at
  a time, with Python around every step: over half of an uploading client's
  reactor time.  A BulkTLSWriter hands OpenSSL a long write in a few calls
  and the socket the result in one; OpenSSL cuts the same 16 KiB records.
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
from foolscap.tokens import STRING
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import BufferingTLSTransport

from lafs import internals

# A token header is at most 64 base-128 digits followed by its type byte.
_MAX_HEADER = 65
SEND_LIMIT = 4 * 1024 * 1024
"""Most bytes a node's foolscap connection hands the socket in one send (Twisted's default: 128 KiB)."""
BULK_WRITE_MIN = 64 * 1024
"""Writes at least this long go through a BulkTLSWriter; shorter ones are aggregated as Twisted does."""
_BULK_STEP = 256 * 1024
"""Plaintext handed to OpenSSL per call: keeps its send buffer small (it grows by copying)."""
_MAX_RECORD_PLAINTEXT = 16 * 1024
_MAX_RECORD_OVERHEAD = 512
"""More than any TLS record adds to its plaintext (header, IV, tag or MAC, padding)."""


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


class BulkTLSWriter:
    """Encrypts a connection's long writes in a few calls into OpenSSL and sends each in one piece.

    Installed as the write method of Twisted's TLS transport, in its place;
    short writes, and any write while Twisted has something of its own to
    sort out (a handshake in progress, buffered application data, a closing
    connection), still take Twisted's path.
    """

    _scratch = bytearray()
    """Where writes are encrypted to: one buffer for all, since each write is sent or copied before the next."""

    def __init__(self, tls: BufferingTLSTransport, socket: FileDescriptor, handles: internals.TLSHandles) -> None:
        self._tls = tls
        self._socket = socket
        self._write_short = tls.write
        self._handles = handles
        bypass: Any = tls.transport
        self._write_encrypted = bypass.write  # straight to the socket's buffer, past TLS

    @classmethod
    def install(cls, socket: object, tls: object | None = None) -> bool:
        """Make the TLS layer ``tls`` over ``socket`` (by default the socket's protocol, as for a broker's
        transport) write through a BulkTLSWriter; False if it cannot."""
        if tls is None:
            tls = getattr(socket, "protocol", None)
        handles = internals.bulk_tls_handles(tls, socket)
        if handles is None or not isinstance(tls, BufferingTLSTransport) or not isinstance(socket, FileDescriptor):
            return False
        bulk = cls(tls, socket, handles)
        tls.write = bulk.write  # type: ignore[method-assign]
        return True

    def write(self, data: bytes) -> None:
        tls = self._tls
        if len(data) < BULK_WRITE_MIN or not internals.tls_is_idle(tls):
            self._write_short(data)
            return
        internals.flush_small_writes(tls)  # what was written before goes first
        encrypted, sent = self._encrypt(data)
        self._send(encrypted)
        if sent < len(data):
            # OpenSSL would not take the rest (say the connection failed): Twisted's path handles that.
            internals.write_through_tls(tls, bytes(memoryview(data)[sent:]))

    def _send(self, encrypted: memoryview) -> None:
        """Hand the socket as much as it takes now, and Twisted's buffer the rest (as bytes, which it insists on)."""
        socket = self._socket
        sent = 0
        if socket.connected and not socket.disconnecting and internals.socket_has_nothing_unsent(socket):
            while sent < len(encrypted):
                written = socket.writeSomeData(encrypted[sent:])  # type: ignore[arg-type]  # any buffer will do
                if not isinstance(written, int) or written <= 0:
                    break
                sent += written
        if sent < len(encrypted):
            self._write_encrypted(bytes(encrypted[sent:]))

    def _encrypt(self, data: bytes) -> tuple[memoryview, int]:
        """Encrypt as much of ``data`` as OpenSSL takes; return the TLS records and how much was taken.

        The records are in a buffer shared by every writer, good until the next write.
        """
        length = len(data)
        records = -(-length // _MAX_RECORD_PLAINTEXT)
        room = length + (records + 1) * _MAX_RECORD_OVERHEAD
        if len(BulkTLSWriter._scratch) < room:
            BulkTLSWriter._scratch = bytearray(room)
        used, sent, overflow = internals.encrypt_records(self._handles, data, BulkTLSWriter._scratch, room, _BULK_STEP)
        encrypted = memoryview(BulkTLSWriter._scratch)[:used]
        if overflow:
            return memoryview(bytes(encrypted) + overflow), sent
        return encrypted, sent


class BulkDataBroker(internals.ArgumentReleasingBroker):
    """A Broker that receives a long string's pieces in one go and sends it without hashing it.

    It lets go of a call's arguments once the call has answered (see its base class).
    """

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
        BulkTLSWriter.install(self.transport)

    def initSend(self) -> None:
        super().initSend()
        self.outgoingVocabulary = VocabularyTable()

    def outgoingVocabTableWasReplaced(self, newTable: dict[bytes, int]) -> None:
        super().outgoingVocabTableWasReplaced(VocabularyTable(newTable))


class NodeTub(Tub):
    """The Tub every node uses: foolscap's own, with the BulkDataBroker."""

    brokerClass = BulkDataBroker


def winning_hint(reconnector: Any, fallback: str) -> str:
    """The connection hint a foolscap Reconnector got through on, for status lines."""
    return internals.winning_hint(reconnector) or fallback
