"""The CLI's aliases: NODEDIR/private/aliases in Tahoe's format, one ``name: cap`` line each.

Pure text handling plus two small file helpers; the commands that use them live in dir_commands.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from lafs.core import caps
from lafs.core.errors import LafsError

DEFAULT_ALIAS = "tahoe"
ALIASES_FILE = os.path.join("private", "aliases")
ROOT_DIR_CAP_FILE = os.path.join("private", "root_dir.cap")


class AliasError(LafsError):
    """An alias that is unknown, malformed, or already taken."""


def parse_aliases(text: str) -> dict[str, str]:
    """Parse the aliases file's text into name -> cap, in file order.

    Blank lines and ``#`` comments are skipped (Tahoe skips them too); a later
    line for the same name wins, as it does when Tahoe builds its dict.
    """
    aliases: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, cap = line.split(":", 1)
        aliases[name.strip()] = cap.strip()
    return aliases


def format_alias_line(name: str, cap: str) -> str:
    return f"{name}: {cap}\n"


def check_alias_name(name: str) -> str:
    """The name as stored: one trailing colon is allowed on the command line (``ALIAS[:]``)."""
    if name.endswith(":"):
        name = name[:-1]
    if ":" in name:
        raise AliasError("Alias names cannot contain colons.")
    if not name or name != name.strip() or "\n" in name or "\r" in name:
        # Such a name would not read back from the file as the same name.
        raise AliasError("Alias names cannot be empty or contain leading/trailing spaces or newlines.")
    return name


def check_directory_cap(cap: str) -> str:
    """The cap, stripped, if it is a directory cap; an error that does not echo the cap otherwise."""
    cap = cap.strip()
    try:
        parsed = caps.from_string_strict(cap)
    except caps.CapError:
        raise AliasError("that is not a valid directory cap") from None
    if not isinstance(parsed, caps.DirectoryCap):
        raise AliasError("that cap is not a directory cap (aliases must name directories)")
    return cap


def read_aliases(nodedir: str, dir_cap: str | None = None) -> dict[str, str]:
    """The aliases a command can use: the file's, the ``tahoe`` alias from root_dir.cap or ``--dir-cap``."""
    aliases: dict[str, str] = {}
    try:
        with open(os.path.join(nodedir, ROOT_DIR_CAP_FILE), encoding="utf-8") as f:
            root = f.read().strip()
        if root:
            aliases[DEFAULT_ALIAS] = root
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(nodedir, ALIASES_FILE), encoding="utf-8") as f:
            aliases.update(parse_aliases(f.read()))
    except FileNotFoundError:
        pass
    if dir_cap:
        aliases[DEFAULT_ALIAS] = dir_cap.strip()
    return aliases


def add_alias(nodedir: str, name: str, cap: str) -> None:
    """Append ``name: cap`` to the aliases file, creating private/ if needed.

    Appending (rather than rewriting) keeps comments and order, as Tahoe does.
    """
    path = os.path.join(nodedir, ALIASES_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    prefix = ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    prefix = "\n"
    except FileNotFoundError:
        pass
    # The file holds write caps, so only its owner may read it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(prefix + format_alias_line(name, cap))


def readonly_cap(cap: str) -> str:
    """The cap's read-only form, or the cap itself when it does not parse (listed as it is)."""
    try:
        return caps.from_string_strict(cap).get_readonly().to_string()
    except caps.CapError:
        return cap


def format_alias_list(aliases: Mapping[str, str], readonly: bool) -> str:
    """``list-aliases`` text: names sorted and right-aligned two columns past the longest, as Tahoe prints."""
    if not aliases:
        return ""
    width = max(len(name) for name in aliases) + 2
    lines = []
    for name in sorted(aliases):
        cap = readonly_cap(aliases[name]) if readonly else aliases[name]
        lines.append(f"{name.rjust(width)}: {cap}\n")
    return "".join(lines)


def alias_list_json(aliases: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``list-aliases --json``: Tahoe reports the stored cap as readwrite even when it is read-only."""
    return {name: {"readwrite": aliases[name], "readonly": readonly_cap(aliases[name])} for name in sorted(aliases)}
