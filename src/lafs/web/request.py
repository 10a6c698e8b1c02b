"""The gateway's HTTP request: uploaded bodies are spooled and hashed for their convergent key while they arrive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from lafs import internals
from lafs.client.nodes import FileSource
from lafs.core.caps import LIT_SIZE_THRESHOLD
from lafs.core.hashes import Sha256dHasher
from lafs.web import multipart
from lafs.web.common import access_log_line
from lafs.web.context import GatewayContext

log = Logger()

HAND_OFF_BYTES = 4 * 1024 * 1024
"""Received bytes are passed to the spooling and hashing threads in batches of about this size."""
RECEIVE_BYTES = 1024 * 1024
"""How much a large upload's connection reads from its socket at a time."""
MAX_UNSPOOLED_BYTES = 8 * 1024 * 1024
"""Past this many received-but-unspooled bytes, reading from the connection pauses."""


class HashingBody:
    """A request body spool that feeds each byte to a convergence hasher as it arrives.

    A CHK upload needs its convergent key before it can encrypt a byte, and the
    key is a hash of the whole file; hashing while the body is received spares
    the uploader a whole pass over the spooled file afterwards.  Writing the
    spool and hashing happen in worker threads (both release the GIL), so the
    reactor keeps receiving meanwhile; ``finished()`` says when all is done.
    """

    def __init__(self, spool: Any, hasher: Sha256dHasher, expected_length: int, producer: Any = None) -> None:
        self._spool = spool
        self._hasher = hasher
        self._expected_length = expected_length
        self._producer = producer
        self._received = 0
        self._batch: list[bytes] = []
        self._batch_size = 0
        self._unspooled = 0
        self._paused = False
        self._spooling: defer.Deferred[None] = defer.succeed(None)
        self._hashing: defer.Deferred[None] = defer.succeed(None)
        self.spool_error: str | None = None
        """Why the body could not be spooled (e.g. the disk is full), if it could not."""

    def write(self, data: bytes) -> None:
        self._received += len(data)
        self._batch.append(data)
        self._batch_size += len(data)
        if self._batch_size >= HAND_OFF_BYTES:
            self._hand_off()

    def _hand_off(self) -> None:
        batch, size = self._batch, self._batch_size
        self._batch, self._batch_size = [], 0
        self._unspooled += size
        # Spooling and hashing each take the batches one at a time, in order, but
        # the two run side by side in threads of their own: each is half the work.
        spooled = self._in_turn(self._spooling, self._write_to_spool, batch)
        hashed = self._in_turn(self._hashing, self._update_hash, batch)
        defer.gatherResults([spooled, hashed]).addCallback(self._batch_done, size)
        if self._unspooled > MAX_UNSPOOLED_BYTES and self._producer is not None and not self._paused:
            self._paused = True
            self._producer.pauseProducing()

    def _in_turn(self, chain: defer.Deferred[None], work: Any, batch: list[bytes]) -> defer.Deferred[None]:
        chain.addCallback(lambda _: threads.deferToThread(work, batch))
        chain.addErrback(self._failed)
        return self._when_reached(chain)

    @staticmethod
    def _when_reached(chain: defer.Deferred[None]) -> defer.Deferred[None]:
        reached: defer.Deferred[None] = defer.Deferred()
        chain.addCallback(lambda _: reached.callback(None))
        return reached

    def _write_to_spool(self, batch: list[bytes]) -> None:
        if self.spool_error is None:
            for chunk in batch:
                self._spool.write(chunk)

    def _update_hash(self, batch: list[bytes]) -> None:
        if self.spool_error is None:
            for chunk in batch:
                self._hasher.update(chunk)

    def _failed(self, failure: Failure) -> None:
        error = failure.value
        self.spool_error = (error.strerror or str(error)) if isinstance(error, OSError) else repr(error)

    def _batch_done(self, _: Any, size: int) -> None:
        self._unspooled -= size
        if self._paused and self._unspooled <= MAX_UNSPOOLED_BYTES // 2:
            self._paused = False
            self._producer.resumeProducing()

    def finished(self) -> defer.Deferred[None]:
        """Fires once every byte received so far is spooled and hashed."""
        if self._batch:
            self._hand_off()
        both = defer.gatherResults([self._when_reached(self._spooling), self._when_reached(self._hashing)])
        return both.addCallback(lambda _: None)

    def convergent_key(self) -> bytes | None:
        """The key for the whole body (once ``finished``), or None if it is not the length it declared or was not spooled."""
        if self._received != self._expected_length or self.spool_error is not None or self._batch or self._unspooled:
            return None
        return self._hasher.digest()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spool, name)


MAX_FORM_FIELD_BYTES = 64 * 1024
"""A form field that is not a file may be at most this long."""


class GatewayRequest(Request):
    """A request whose uploaded body is never held in memory whole.

    A PUT body (with a Content-Length) is hashed as it arrives; a
    ``multipart/form-data`` POST body is split by scanning its spool, its small
    fields joining ``args`` and its files left in the spool as ``form_files``.
    """

    form_files: dict[str, FileSource]
    form_filenames: dict[str, str]
    """The file parts of a multipart form, by field name."""
    form_error: str | None = None
    """Why the multipart form could not be read, if it could not."""
    _hidden_content_type: Sequence[bytes] | None = None
    _form_fields: dict[bytes, list[bytes]]

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        # The channel knows the method before the body arrives; the request learns it only after.
        channel: Any = self.channel
        method = internals.channel_method(channel)
        if length is None or length <= LIT_SIZE_THRESHOLD or method != b"PUT":
            return
        node_maker = channel.site.context.node_maker
        if node_maker is not None:
            if hasattr(channel.transport, "bufferSize"):
                # Twisted reads 64 KiB per turn; a large body is read in far fewer turns this way.
                channel.transport.bufferSize = RECEIVE_BYTES
            body: Any = HashingBody(self.content, node_maker.convergence_hasher(length), length, channel.transport)
            self.content = body

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self.form_files, self._form_fields = {}, {}
        self.form_filenames = {}
        body = self.content
        if isinstance(body, HashingBody):
            # The end of the body may still be on its way to the spool: handle the request once it is there.
            body.finished().addCallback(lambda _: Request.requestReceived(self, command, path, version))
            return
        content_type = self.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if command == b"POST" and content_type.split(b";")[0].strip().lower() == b"multipart/form-data":
            # Twisted would split the form in memory; ours is split from the spool, in a thread.
            self._hidden_content_type = self.requestHeaders.getRawHeaders(b"content-type")
            self.requestHeaders.removeHeader(b"content-type")
            scanned = threads.deferToThread(self._scan_form, content_type)
            scanned.addErrback(self._form_unreadable)
            scanned.addCallback(lambda _: Request.requestReceived(self, command, path, version))
            return
        super().requestReceived(command, path, version)

    def _scan_form(self, content_type: bytes) -> None:
        boundary = multipart.boundary_of(content_type)
        if boundary is None:
            raise multipart.MultipartError("the body is not multipart/form-data")
        spool = FileSource(self.content)
        for part in multipart.find_parts(spool.read, spool.size, boundary):
            if part.filename is not None:
                self.form_files[part.name] = FileSource(self.content, part.start, part.size)
                # An upload into a directory is linked under the name the browser gave the file.
                self.form_filenames[part.name] = part.filename
            elif part.size > MAX_FORM_FIELD_BYTES:
                raise multipart.MultipartError(f"form field {part.name!r} is longer than {MAX_FORM_FIELD_BYTES} bytes")
            else:
                self._form_fields.setdefault(part.name.encode("utf-8"), []).append(spool.read(part.start, part.size))

    def _form_unreadable(self, failure: Failure) -> None:
        if not failure.check(multipart.MultipartError, OSError):
            log.failure("reading a multipart form failed", failure)
        self.form_files, self._form_fields = {}, {}
        self.form_error = str(failure.value) or repr(failure.value)

    def process(self) -> None:
        if self._hidden_content_type is not None:
            self.requestHeaders.setRawHeaders(b"content-type", self._hidden_content_type)
            self._hidden_content_type = None
        # Like Twisted's own form parsing: body fields replace query arguments of the same name.
        args: Any = self.args
        args.update(self._form_fields)
        # As Tahoe's gateway does: no framing of its pages elsewhere, no leaking of caps in Referer.
        self.setHeader(b"x-frame-options", b"DENY")
        self.setHeader(b"referrer-policy", b"no-referrer")
        super().process()


class GatewaySite(Site):
    """The gateway's Site: its requests can reach the node maker (for the upload encoding),
    and its access log never shows a cap (``common.access_log_line``)."""

    def __init__(self, resource: Resource, context: GatewayContext) -> None:
        super().__init__(resource, requestFactory=GatewayRequest, logFormatter=access_log_line, reactor=context.reactor)
        self.context = context
