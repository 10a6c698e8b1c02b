"""``tahoe ls`` output, from the web API's JSON: pure, so its format is tested without a node."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

SIX_MONTHS = 6 * 30 * 24 * 60 * 60

UNKNOWN_WARNING = (
    "\nThis listing included unknown objects. Using a webapi server that supports\n"
    "a later version of Tahoe may help.\n"
)


@attrs.frozen
class ListOptions:
    long: bool = False
    uri: bool = False
    readonly_uri: bool = False
    classify: bool = False


def link_time(metadata: Mapping[str, Any]) -> float | None:
    """When the link was last changed: Tahoe's own linkmotime, else an ``mtime`` a client set."""
    tahoe = metadata.get("tahoe")
    if isinstance(tahoe, Mapping) and isinstance(tahoe.get("linkmotime"), (int, float)):
        return float(tahoe["linkmotime"])
    mtime = metadata.get("mtime")
    return float(mtime) if isinstance(mtime, (int, float)) else None


def format_time(when: float | None, now: float) -> str:
    """GNU ``ls`` style, as Tahoe prints: the time of day for the last six months, the year before that."""
    if when is None:
        return "-"
    fmt = "%b %d  %Y" if now - when > SIX_MONTHS else "%b %d %H:%M"
    return time.strftime(fmt, time.localtime(when))


def _row(name: str, node: Any, options: ListOptions, now: float) -> tuple[list[str], bool]:
    """One entry's columns, and whether it is an object of a kind the node does not know."""
    kind, info = (node[0], node[1]) if isinstance(node, list) and len(node) == 2 else ("unknown", {})
    if not isinstance(info, Mapping):
        info = {}
    rw_uri, ro_uri = info.get("rw_uri"), info.get("ro_uri")
    unknown = False
    if kind == "dirnode":
        mode, size, suffix = ("drwx" if rw_uri else "dr-x"), "-", "/"
    elif kind == "filenode":
        mutable = bool(info.get("mutable"))
        mode = "-rw-" if mutable and rw_uri else "-r--"
        size = str(info["size"]) if isinstance(info.get("size"), int) else "?"
        suffix = "*" if mutable else ""
    else:
        mode, size, suffix, unknown = "?r--", "?", "?", True
    metadata = info.get("metadata")
    columns = [name + suffix if options.classify else name]
    if options.long:
        when = link_time(metadata) if isinstance(metadata, Mapping) else None
        columns = [mode, size, format_time(when, now), *columns]
    if options.uri or options.readonly_uri:
        cap = (ro_uri or rw_uri) if options.readonly_uri else (rw_uri or ro_uri)
        columns.append(str(cap or "?"))
    return columns, unknown


def format_listing(children: Mapping[str, Any], options: ListOptions, now: float | None = None) -> tuple[str, bool]:
    """The listing's text and whether it included unknown objects (Tahoe then warns on stderr).

    Names are sorted.  A plain listing is one name a line; otherwise every
    column but the cap is right-aligned to its widest entry, like Tahoe's.
    """
    now = time.time() if now is None else now
    rows: list[list[str]] = []
    any_unknown = False
    for name in sorted(children):
        columns, unknown = _row(name, children[name], options, now)
        rows.append(columns)
        any_unknown = any_unknown or unknown
    if not (options.long or options.uri or options.readonly_uri):
        return "".join(row[0] + "\n" for row in rows), any_unknown
    has_cap = options.uri or options.readonly_uri
    aligned = len(rows[0]) - (1 if has_cap else 0) if rows else 0
    widths = [max(len(row[i]) for row in rows) for i in range(aligned)]
    lines = []
    for row in rows:
        cells = [row[i].rjust(widths[i]) for i in range(aligned)] + row[aligned:]
        lines.append(" ".join(cells) + "\n")
    return "".join(lines), any_unknown
