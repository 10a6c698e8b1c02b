"""Finding the parts of a spooled multipart/form-data body a window at a time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.web.multipart import MultipartError, boundary_of, find_parts

BOUNDARY = b"lafs-b0undary"
names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), min_size=1, max_size=12).filter(
    lambda name: name.strip() == name
)
contents = st.binary(max_size=300).filter(lambda data: BOUNDARY not in data)


def build(parts: list[tuple[str, str | None, bytes]], preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    body = [preamble + b"\r\n" if preamble else b""]
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body.append(b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n")
        if filename is not None:
            body.append(b"Content-Type: application/octet-stream\r\n")
        body.append(b"\r\n" + content + b"\r\n")
    body.append(b"--" + BOUNDARY + b"--\r\n" + epilogue)
    return b"".join(body)


def parts_of(body: bytes, scan_bytes: int = 1 << 20) -> list[tuple[str, str | None, bytes]]:
    found = find_parts(lambda offset, length: body[offset : offset + length], len(body), BOUNDARY, scan_bytes)
    return [(part.name, part.filename, body[part.start : part.end]) for part in found]


@given(
    st.lists(st.tuples(names, st.one_of(st.none(), names), contents), min_size=1, max_size=5),
    st.sampled_from([b"", b"a preamble"]),
    st.sampled_from([b"", b"an epilogue\r\n"]),
    st.integers(1, 64),
)
def test_every_part_is_found_whatever_the_window(
    parts: list[tuple[str, str | None, bytes]], preamble: bytes, epilogue: bytes, scan_bytes: int
) -> None:
    assert parts_of(build(parts, preamble, epilogue), scan_bytes) == parts


def test_a_browser_style_form() -> None:
    body = build([("t", None, b"upload"), ("file", "photo.jpg", b"\xff\xd8" + b"x" * 5000), ("when_done", None, b"/")])
    assert parts_of(body, 1000) == [("t", None, b"upload"), ("file", "photo.jpg", b"\xff\xd8" + b"x" * 5000), ("when_done", None, b"/")]


def test_the_boundary_comes_from_the_content_type() -> None:
    assert boundary_of(b'multipart/form-data; boundary="' + BOUNDARY + b'"') == BOUNDARY
    assert boundary_of(b"multipart/form-data; boundary=" + BOUNDARY) == BOUNDARY
    assert boundary_of(b"application/x-www-form-urlencoded") is None
    with pytest.raises(MultipartError, match="needs a boundary"):
        boundary_of(b"multipart/form-data")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary at all", "no multipart boundary"),
        (build([("file", "x", b"data")])[: -len(b"--\r\n")], "without its closing boundary"),
        (b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n", "Content-Disposition: form-data"),
        (b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n", "no field name"),
        (b"--" + BOUNDARY + b"\r\nX-Long: " + b"x" * 20000 + b"\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n", "malformed or overlong"),
        (b"--" + BOUNDARY + b"junk\r\n\r\nx\r\n--" + BOUNDARY + b"--\r\n", "malformed or overlong"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parts_of(body)


def test_file_names_keep_angle_brackets_and_escaped_quotes() -> None:
    body = build([("file", "<>", b"x")])
    assert parts_of(body) == [("file", "<>", b"x")]
    escaped = body.replace(b'filename="<>"', b'filename="a\\"b"')
    assert parts_of(escaped) == [("file", 'a"b', b"x")]
