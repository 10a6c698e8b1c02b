"""Where the parts of a ``multipart/form-data`` body lie in its spool, found without holding the body in memory.

A form upload (``POST /uri?t=upload``) carries the file as one part of a
multipart body.  Twisted would read the whole body into memory to split it;
here the spooled body is scanned a window at a time for its boundaries, and a
file part is uploaded straight from its byte range of the spool.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import itertools
from collections.abc import Callable, Iterator

import attrs

SCAN_BYTES = 1024 * 1024
"""How much of the body is looked at per read while looking for boundaries."""
MAX_HEADER_BYTES = 16 * 1024
"""A part's headers longer than this make the body malformed."""


class MultipartError(ValueError):
    """The body is not the multipart/form-data its Content-Type says it is."""


@attrs.frozen
class FormPart:
    """One part of the body: its form field name, the file name if it is a file, and where its content lies."""

    name: str
    filename: str | None
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def boundary_of(content_type: bytes) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type, None for any other type."""
    message = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + content_type + b"\r\n\r\n")
    if message.get_content_type() != "multipart/form-data":
        return None
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        raise MultipartError("a multipart/form-data body needs a boundary of 1 to 200 characters in its Content-Type")
    return boundary.encode("latin-1")


def find_parts(read: Callable[[int, int], bytes], size: int, boundary: bytes, scan_bytes: int = SCAN_BYTES) -> list[FormPart]:
    """The parts of the ``size``-byte body ``read(offset, length)`` reads, in order."""
    delimiter = b"--" + boundary
    delimiters = list(_delimiters(read, size, delimiter, scan_bytes))
    if not delimiters:
        raise MultipartError("the body has no multipart boundary line")
    parts = []
    for here, following in itertools.pairwise(delimiters):
        after = read(here + len(delimiter), 2)
        if after == b"--":
            break
        header_start = here + len(delimiter)
        head = read(header_start, min(MAX_HEADER_BYTES, following - header_start))
        line_end = head.find(b"\r\n")
        blank = head.find(b"\r\n\r\n", line_end)
        if line_end < 0 or head[:line_end].strip(b" \t") or blank < 0:
            raise MultipartError("a part of the multipart body has malformed or overlong headers")
        start, end = header_start + blank + 4, following - 2
        if start > end:
            raise MultipartError("a part of the multipart body has no CRLF before the next boundary")
        parts.append(_part(head[line_end + 2 : blank + 4], start, end))
    else:
        if read(delimiters[-1] + len(delimiter), 2) != b"--":
            raise MultipartError("the multipart body ends without its closing boundary")
    return parts


def _part(headers: bytes, start: int, end: int) -> FormPart:
    message = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(headers)
    if message.get_content_disposition() != "form-data":
        raise MultipartError("every part of a form upload needs 'Content-Disposition: form-data'")
    name = _disposition_param(message, "name")
    if name is None:
        raise MultipartError("a part of the form upload has no field name")
    return FormPart(name, _disposition_param(message, "filename"), start, end)


def _disposition_param(message: email.message.Message, key: str) -> str | None:
    """A Content-Disposition parameter as sent.

    The email package's own unquoting also strips a pair of angle brackets
    (it reads them as an address), which would turn a file named ``<>`` into
    one named ``""``; only the double quotes are the header's.
    """
    value = message.get_param(key, header="content-disposition", unquote=False)
    if isinstance(value, tuple):  # RFC 2231 encoded: already decoded parts
        return email.utils.collapse_rfc2231_value(value)
    if not isinstance(value, str):
        return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\\\', '\\').replace('\\"', '"')
    return value


def _delimiters(read: Callable[[int, int], bytes], size: int, delimiter: bytes, scan_bytes: int) -> Iterator[int]:
    """Offsets of each boundary delimiter: at the very start, or after a CRLF."""
    if read(0, len(delimiter)) == delimiter:
        yield 0
    needle = b"\r\n" + delimiter
    offset = 0
    while offset < size:
        window = read(offset, scan_bytes + len(needle) - 1)
        found = window.find(needle)
        while found >= 0:
            yield offset + found + 2
            found = window.find(needle, found + len(needle))
        offset += scan_bytes
