"""The directory CLI's pure parts: alias files, path parsing, ls formatting, error reduction."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.cli import aliases as alias_file
from lafs.cli.listing import ListOptions, format_listing, format_time
from lafs.cli.paths import GridPath, LocalPath, has_alias, parse_grid_path, parse_location
from lafs.cli.webapi import error_message

DIR = "URI:DIR2:gs5sggze5jiyvv4s4utq7xmfu4:ezscx4er2mtwlico3wmnkbvqqbonf3batyf5w4e5e5axv6wvqjla"
RO = "URI:DIR2-RO:wqvm3z5pwvxrkpgqychw2fc5c4:ezscx4er2mtwlico3wmnkbvqqbonf3batyf5w4e5e5axv6wvqjla"
ALIASES = {"tahoe": DIR, "work": RO, "c": DIR}

names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=":#"), min_size=1).filter(
    lambda s: s == s.strip() and s.strip() != ""
)


@given(st.dictionaries(names, st.sampled_from([DIR, RO]), max_size=8))
def test_alias_file_round_trip(aliases: dict[str, str]) -> None:
    text = "".join(alias_file.format_alias_line(n, c) for n, c in aliases.items())
    assert alias_file.parse_aliases(text) == aliases


def test_alias_file_parsing_is_tahoes() -> None:
    text = f"# comment\n\n  tahoe : {DIR}  \nwork:{RO}\nno colon here\nwork: {DIR}"
    assert alias_file.parse_aliases(text) == {"tahoe": DIR, "work": DIR}


def test_add_alias_appends_and_keeps_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "aliases").write_text(f"# mine\nold: {DIR}")  # no final newline
    alias_file.add_alias(str(tmp_path), "ünï", RO)
    assert (tmp_path / "private" / "aliases").read_text("utf-8") == f"# mine\nold: {DIR}\nünï: {RO}\n"
    (tmp_path / "private" / "root_dir.cap").write_text(RO + "\n")
    assert alias_file.read_aliases(str(tmp_path)) == {"tahoe": RO, "old": DIR, "ünï": RO}
    assert alias_file.read_aliases(str(tmp_path), dir_cap=DIR)["tahoe"] == DIR


def test_alias_names_and_caps() -> None:
    assert alias_file.check_alias_name("work:") == "work"
    for bad in ("a:b", "", " x"):
        with pytest.raises(alias_file.AliasError):
            alias_file.check_alias_name(bad)
    assert alias_file.check_directory_cap(f" {DIR}\n") == DIR
    for bad in ("URI:DIR2:nonsense", "URI:LIT:nbswy3dpbi"):
        with pytest.raises(alias_file.AliasError) as info:
            alias_file.check_directory_cap(bad)
        assert "nonsense" not in str(info.value)


def test_alias_list_formats() -> None:
    text = alias_file.format_alias_list({"work": DIR, "tahoe": RO}, readonly=False)
    assert text == f"  tahoe: {RO}\n   work: {DIR}\n"
    assert alias_file.format_alias_list({"work": DIR}, readonly=True) == f"  work: {RO}\n"
    assert alias_file.alias_list_json({"x": RO}) == {"x": {"readwrite": RO, "readonly": RO}}


@pytest.mark.parametrize(
    ("arg", "cap", "segments", "slash"),
    [
        ("work:", RO, (), False),
        ("work:a/b/", RO, ("a", "b"), True),
        ("work:/a//b", RO, ("a", "b"), False),
        ("plain/path", DIR, ("plain", "path"), False),
        ("", DIR, (), False),
        ("ünï:x", None, None, None),
        (f"{DIR}/d1/ü", DIR, ("d1", "ü"), False),
        (f"{DIR}:d1/x", DIR, ("d1", "x"), False),
        (DIR, DIR, (), False),
        ("URI:DIR2:junk:d1", "URI:DIR2:junk:d1", (), False),
    ],
)
def test_parse_grid_path(arg: str, cap: str | None, segments: tuple[str, ...] | None, slash: bool | None) -> None:
    if cap is None:
        with pytest.raises(alias_file.AliasError, match="Unknown alias"):
            parse_grid_path(arg, ALIASES)
        return
    path = parse_grid_path(arg, ALIASES)
    assert (path.cap, path.segments, path.trailing_slash) == (cap, segments, slash)


def test_default_alias_missing() -> None:
    with pytest.raises(alias_file.AliasError, match="default 'tahoe' alias"):
        parse_grid_path("x", {})


@given(st.lists(names.filter(lambda s: "/" not in s), min_size=1, max_size=4))
def test_url_path_escapes_each_name(parts: list[str]) -> None:
    path = parse_grid_path("work:" + "/".join(parts), ALIASES)
    assert path.segments == tuple(parts)
    url = path.url_path()
    assert url.startswith("/uri/URI%3ADIR2-RO%3A") and url.count("/") == 2 + len(parts) and url.isascii()


def test_local_or_grid() -> None:
    assert parse_location("C:\\Users\\x", ALIASES) == LocalPath("C:\\Users\\x")
    assert parse_location("D:/x", ALIASES) == LocalPath("D:/x")  # no alias D
    assert isinstance(parse_location("c:/x", ALIASES), GridPath)  # alias c is defined
    assert parse_location("c:/x", ALIASES, windows=True) == LocalPath("c:/x")
    assert parse_location("./a:b", ALIASES) == LocalPath("./a:b")
    assert parse_location("relative", ALIASES) == LocalPath("relative")
    assert has_alias("work:x", ALIASES) and has_alias(DIR, ALIASES) and not has_alias("dir/w:x", ALIASES)


NOW = time.mktime((2026, 12, 1, 23, 30, 0, 0, 0, -1))
CHILDREN = {
    "a.txt": ["filenode", {"mutable": False, "size": 6, "ro_uri": "URI:LIT:nbswy3dpbi", "metadata": {"tahoe": {"linkmotime": NOW - 600}}}],
    "d1": ["dirnode", {"mutable": True, "rw_uri": DIR, "ro_uri": RO, "metadata": {"tahoe": {"linkmotime": NOW - 600}}}],
    "rosub": ["dirnode", {"mutable": True, "ro_uri": RO, "metadata": {}}],
    "mut": ["filenode", {"mutable": True, "rw_uri": "URI:SSK:a:b", "ro_uri": "URI:SSK-RO:c:b", "metadata": {"mtime": NOW - 400 * 86400}}],
    "unk": ["unknown", {"ro_uri": "imm.foo:bar", "metadata": {}}],
}


def test_ls_formats_match_tahoe() -> None:
    text, unknown = format_listing(CHILDREN, ListOptions())
    assert text == "a.txt\nd1\nmut\nrosub\nunk\n" and unknown
    stamp = time.strftime("%b %d %H:%M", time.localtime(NOW - 600))
    old = time.strftime("%b %d  %Y", time.localtime(NOW - 400 * 86400))
    text, _ = format_listing(CHILDREN, ListOptions(long=True, classify=True), now=NOW)
    assert text.splitlines() == [
        f"-r-- 6 {stamp}  a.txt",
        f"drwx - {stamp}    d1/",
        f"-rw- ? {old}   mut*",
        f"dr-x - {' ' * 11}- rosub/",
        f"?r-- ? {' ' * 11}-   unk?",
    ]
    text, _ = format_listing(CHILDREN, ListOptions(readonly_uri=True))
    assert text.splitlines()[:3] == ["a.txt URI:LIT:nbswy3dpbi", f"   d1 {RO}", "  mut URI:SSK-RO:c:b"]
    text, _ = format_listing(CHILDREN, ListOptions(uri=True))
    assert text.splitlines()[2] == "  mut URI:SSK:a:b"
    assert format_listing({}, ListOptions(long=True)) == ("", False)


def test_format_time() -> None:
    assert format_time(None, NOW) == "-"
    assert format_time(NOW, NOW) == time.strftime("%b %d %H:%M", time.localtime(NOW))


def test_error_message_reduces_pages_to_one_line() -> None:
    page = b"\n<html>\n <head><title>404 - Error</title></head>\n <body>\n <h1>Error</h1>\n <p>No such child: nope</p>\n</body></html>"
    assert error_message(page) == "No such child: nope"
    page = b"<html><body><h1>Files have no children named 'x'</h1>\n<p>no details</p></body></html>"
    assert error_message(page) == "Files have no children named 'x'"
    assert error_message(b"PUT to a directory\n\n") == "PUT to a directory"
