"""Where a file-store argument points: ``ALIAS:path``, ``DIRCAP/path``, ``DIRCAP:path``, a path under ``tahoe:``, or local.

Pure: no I/O, so it is tested on its own.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from urllib.parse import quote

import attrs

from lafs.cli.aliases import DEFAULT_ALIAS, AliasError
from lafs.core import caps


@attrs.frozen
class GridPath:
    """A path in the grid: a starting cap and the child names below it."""

    cap: str
    segments: tuple[str, ...]
    # What the user typed, for messages (never includes a cap the user did not type).
    shown: str
    # "dir/" asks for a directory: cp and mv put sources inside it.
    trailing_slash: bool = False

    @property
    def name(self) -> str | None:
        """The last child name, or None for the starting directory itself (it has no name)."""
        return self.segments[-1] if self.segments else None

    def child(self, name: str) -> GridPath:
        return GridPath(self.cap, (*self.segments, name), f"{self.shown.rstrip('/')}/{name}")

    def parent(self) -> GridPath:
        return GridPath(self.cap, self.segments[:-1], self.shown)

    def url_path(self) -> str:
        """``/uri/CAP/a/b``: the cap and each UTF-8 name %-escaped, the slashes between them kept."""
        parts = [quote(self.cap, safe="")] + [quote(s.encode("utf-8"), safe="") for s in self.segments]
        return "/uri/" + "/".join(parts)


@attrs.frozen
class LocalPath:
    path: str


_CAP_PREFIXES = ("URI:", "ro.URI:", "imm.URI:")


def _split_segments(path: str) -> tuple[tuple[str, ...], bool]:
    # Empty segments ("a//b", a leading "/") mean nothing, as in Tahoe.
    segments = tuple(s for s in path.split("/") if s)
    return segments, path.endswith("/") and bool(segments)


def _split_cap(arg: str) -> tuple[str, str]:
    """Split ``CAP/path`` or ``CAP:path`` into the cap and the rest.

    Tahoe's own form is ``CAP/path``.  ``CAP:path`` needs the cap's end found
    from its grammar: the shortest ``:``-prefix that parses as a known cap.
    """
    head, slash, tail = arg.partition("/")
    try:
        caps.from_string_strict(head)
        return head, tail
    except caps.CapError:
        pass
    for pos in (i for i, ch in enumerate(head) if ch == ":"):
        candidate = head[:pos]
        if candidate.count(":") < 2:
            continue
        try:
            caps.from_string_strict(candidate)
        except caps.CapError:
            continue
        return candidate, head[pos + 1 :] + slash + tail
    # Not a cap we know: hand it on as it is; the commands refuse it with one line.
    return head, tail


def is_windows_drive(arg: str, aliases: Mapping[str, str], windows: bool = False) -> bool:
    """Whether ``X:...`` is a local path on a drive rather than the alias ``X``.

    ``C:\\x`` always is; on Windows any single letter is (as in Tahoe); elsewhere
    ``C:/x`` is too unless ``C`` is a defined alias, so single-letter aliases keep working.
    """
    if not (len(arg) >= 2 and arg[1] == ":" and arg[0].isascii() and arg[0].isalpha()):
        return False
    if windows or arg[2:3] == "\\":
        return True
    return arg[2:3] == "/" and arg[0] not in aliases


def has_alias(arg: str, aliases: Mapping[str, str], windows: bool = False) -> bool:
    """Whether ``arg`` names a grid location explicitly (an alias or a cap), rather than a local path."""
    if arg.startswith(_CAP_PREFIXES):
        return True
    if is_windows_drive(arg, aliases, windows):
        return False
    head, colon, _ = arg.partition(":")
    # "./a:b" or "dir/x:y" are local names with a colon in them, not aliases.
    return bool(colon) and "/" not in head and "\\" not in head


def parse_grid_path(arg: str, aliases: Mapping[str, str]) -> GridPath:
    """A grid path; without an alias it is under the default ``tahoe:`` alias."""
    if arg.startswith(_CAP_PREFIXES):
        cap, rest = _split_cap(arg)
        segments, slash = _split_segments(rest)
        return GridPath(cap, segments, arg, slash)
    head, colon, rest = arg.partition(":")
    if colon and "/" not in head and "\\" not in head:
        alias = head
        if alias not in aliases:
            raise AliasError(f"Unknown alias '{alias}', please create it with 'tahoe add-alias' or 'tahoe create-alias'.")
    else:
        alias, rest = DEFAULT_ALIAS, arg
        if alias not in aliases:
            raise AliasError(
                "No alias specified, and the default 'tahoe' alias doesn't exist. "
                "To create it, use 'tahoe create-alias tahoe'."
            )
    segments, slash = _split_segments(rest)
    return GridPath(aliases[alias], segments, arg, slash)


def parse_location(arg: str, aliases: Mapping[str, str], windows: bool = sys.platform == "win32") -> GridPath | LocalPath:
    """For ``cp``: arguments with an alias or cap are in the grid, everything else is local."""
    if has_alias(arg, aliases, windows):
        return parse_grid_path(arg, aliases)
    return LocalPath(arg)
