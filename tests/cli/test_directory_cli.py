"""The directory CLI (aliases, ls, mkdir, put/get to paths, cp, mv, ln, unlink, webopen) end to end.

Every test runs our ``tahoe`` in subprocesses against a directory-capable gateway: the real
Tahoe 1.20's (interop), and our own ``tahoe local-grid`` once its gateway has directories
(skipped while it answers 501 to ``POST /uri?t=mkdir``; see tests/cli/gateways.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.gateways import GATEWAY_KINDS, gateway_of
from tests.cli.nodes import free_port, tahoe


@pytest.fixture(scope="module", params=GATEWAY_KINDS)
def gateway(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(kind, node URL) of a running gateway with directories."""
    with gateway_of(request.param) as url:
        yield request.param, url


@pytest.fixture
def node(tmp_path: Path, gateway: tuple[str, str]) -> Path:
    """A client node directory as the CLI sees one: node.url, and private/aliases once made."""
    nodedir = tmp_path / "node"
    nodedir.mkdir()
    (nodedir / "node.url").write_text(gateway[1] + "\n")
    return nodedir


def cli(node: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        return tahoe("-d", str(node), *args, check=check, timeout=300)
    result = subprocess.run(
        [sys.executable, "-m", "lafs", "-d", str(node), *args], capture_output=True, text=True, timeout=300, env=env
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def fails(node: Path, *args: str, code: int = 1) -> str:
    """Run a command that must fail with one line on stderr and no traceback; return that line."""
    result = cli(node, *args, check=False)
    assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, (args, result.stderr)
    return result.stderr


def make_tree(root: Path) -> dict[str, bytes]:
    """Three levels, 100 files: empty ones, LIT-sized and CHK-sized ones, non-ASCII names."""
    names = ["ünïcødé", "日本語", "plain"]
    contents: dict[str, bytes] = {}
    for i in range(100):
        level = i % 3
        parts = [names[i % 3] + "-dir", f"sub{i % 2}"][:level]
        name = f"f{i:03d}" + ("-ß€" if i % 7 == 0 else "") + ".bin"
        size = 0 if i % 10 == 0 else (1000 * i if i % 5 == 0 else i)
        data = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
        relative = "/".join([*parts, name])
        contents[relative] = data[:size]
    contents["ünïcødé-dir/sub1/big.bin"] = os.urandom(300_000)
    del contents["f099.bin"]  # keep the count at exactly 100
    (root / "empty-dir").mkdir(parents=True)
    for relative, data in contents.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert len(contents) == 100
    return contents


def read_tree(root: Path) -> tuple[dict[str, bytes], set[str]]:
    files, dirs = {}, set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_dir():
            dirs.add(relative)
        else:
            files[relative] = path.read_bytes()
    return files, dirs


def test_tree_round_trip_then_mv_ln_unlink_ls(node: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    contents = make_tree(source)
    assert cli(node, "create-alias", "tree").stdout == "Alias 'tree' created\n"
    assert cli(node, "mkdir", "tree:dest").stdout.startswith("URI:DIR2:")
    assert cli(node, "cp", "-r", str(source), "tree:dest").stdout == "Success: files copied\n"
    out = tmp_path / "out"
    assert cli(node, "cp", "-r", "tree:dest/src", str(out)).stdout == "Success: files copied\n"
    files, dirs = read_tree(out / "src")
    assert files == contents
    assert {"empty-dir", "日本語-dir", "plain-dir/sub1"} <= dirs

    listing = cli(node, "ls", "tree:dest/src").stdout.splitlines()
    assert listing == sorted(["empty-dir", "ünïcødé-dir", "日本語-dir", "plain-dir"] + [n for n in contents if "/" not in n])

    assert cli(node, "mv", "tree:dest/src/f000-ß€.bin", "tree:moved").stdout == "OK\n"
    assert cli(node, "ln", "tree:moved", "tree:dest/linked").stdout == "OK\n"
    assert cli(node, "mv", "tree:dest/linked", "tree:dest/src/empty-dir/").stdout == "OK\n"
    assert cli(node, "unlink", "tree:moved").stdout == "200 OK\n"
    assert "moved" not in cli(node, "ls", "tree:").stdout.split()
    assert cli(node, "ls", "tree:dest/src/empty-dir").stdout == "linked\n"
    assert cli(node, "get", "tree:dest/src/empty-dir/linked").stdout == ""  # f000 is empty
    fails(node, "ls", "tree:dest/src/f000-ß€.bin", code=2)

    long = cli(node, "ls", "-l", "tree:dest/src").stdout.splitlines()
    row = re.compile(r"^(-r--|drwx) +(\d+|-) [A-Z][a-z]{2} \d\d (\d\d:\d\d| \d{4}) +\S.*$")
    assert all(row.match(line) for line in long), long
    assert len({len(line) for line in long if line.isascii()}) == 1  # right-aligned columns
    data = json.loads(cli(node, "ls", "--json", "tree:dest/src").stdout)
    assert data[0] == "dirnode" and "empty-dir" in data[1]["children"]

    # Grid to grid: a directory copy makes new directories and links the same files.
    assert cli(node, "cp", "-r", "tree:dest/src/plain-dir", "tree:copy").stdout == "Success: files copied\n"
    assert cli(node, "ls", "tree:copy/plain-dir/sub0").stdout == cli(node, "ls", "tree:dest/src/plain-dir/sub0").stdout


def test_alias_file_format(node: Path) -> None:
    assert cli(node, "create-alias", "first:").stdout == "Alias 'first' created\n"
    cap = cli(node, "list-aliases").stdout.split(": ", 1)[1].strip()
    assert re.fullmatch(r"URI:DIR2:[a-z2-7]{26}:[a-z2-7]{52}", cap)
    readonly = json.loads(cli(node, "list-aliases", "--json").stdout)["first"]["readonly"]
    assert readonly.startswith("URI:DIR2-RO:")
    assert cli(node, "add-alias", "ünï", readonly).stdout == "Alias 'ünï' added\n"
    text = (node / "private" / "aliases").read_text("utf-8")
    assert text == f"first: {cap}\nünï: {readonly}\n"
    assert cli(node, "list-aliases").stdout == f"  first: {cap}\n    ünï: {readonly}\n"
    assert cli(node, "list-aliases", "--readonly-uri").stdout == f"  first: {readonly}\n    ünï: {readonly}\n"
    assert json.loads(cli(node, "list-aliases", "--json").stdout) == {
        "first": {"readwrite": cap, "readonly": readonly},
        "ünï": {"readwrite": readonly, "readonly": readonly},
    }
    assert "already exists" in fails(node, "create-alias", "first")
    assert "already exists" in fails(node, "add-alias", "first", cap)
    assert "cannot contain colons" in fails(node, "add-alias", "a:b", cap)
    assert "not a valid directory cap" in fails(node, "add-alias", "bad", "URI:DIR2:nonsense")
    assert "not a directory cap" in fails(node, "add-alias", "lit", "URI:LIT:nbswy3dpbi")
    assert (node / "private" / "aliases").read_text("utf-8") == text
    # The default alias: a path without one is under tahoe:.
    assert "default 'tahoe' alias doesn't exist" in fails(node, "ls")
    cli(node, "add-alias", "tahoe", cap)
    cli(node, "mkdir", "made-under-tahoe")
    assert cli(node, "ls", "first:").stdout == "made-under-tahoe\n"
    assert cli(node, "ls", f"{cap}/").stdout == cli(node, "ls", f"{cap}:").stdout == "made-under-tahoe\n"


def test_put_get_mkdir_webopen(node: Path, tmp_path: Path) -> None:
    cli(node, "create-alias", "tahoe")
    local = tmp_path / "f.txt"
    local.write_bytes(b"x" * 1000)
    put = cli(node, "put", str(local), "tahoe:a/b/f.txt")
    assert put.stdout.startswith("URI:CHK:") and put.stderr == "201 Created\n"
    assert cli(node, "put", str(local), "a/b/f.txt").stderr == "200 OK\n"
    got = tmp_path / "got"
    result = cli(node, "get", "tahoe:a/b/f.txt", str(got))
    assert got.read_bytes() == local.read_bytes() and "retrieved and written to" in result.stderr
    assert cli(node, "put", str(local)).stdout.strip() == put.stdout.strip()  # convergent, unlinked
    mutable = cli(node, "put", "--mutable", str(local), "tahoe:m").stdout.strip()
    assert mutable.startswith("URI:SSK:")
    assert cli(node, "mkdir", "--format=MDMF", "tahoe:mdmf").stdout.startswith("URI:DIR2-MDMF:")
    assert cli(node, "mkdir").stdout.startswith("URI:DIR2:")
    assert cli(node, "ls", "-F", "tahoe:").stdout == "a/\nm*\nmdmf/\n"
    assert "cannot put to a directory" in fails(node, "put", str(local), "tahoe:")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    page = cli(node, "webopen", "-i", "tahoe:a", env=env).stdout.strip()
    assert page.startswith(cli(node, "webopen", env=env).stdout.strip() + "uri/URI%3ADIR2%3A") and page.endswith("/a?t=info")


def test_cp_target_rules(node: Path, tmp_path: Path) -> None:
    cli(node, "create-alias", "c")
    one = tmp_path / "one"
    one.write_bytes(b"1" * 100)
    assert cli(node, "cp", str(one), "c:named").stdout == "Success: file copied\n"
    assert cli(node, "cp", str(one), "c:dir/").stdout == "Success: files copied\n"
    assert cli(node, "cp", str(one), str(one), "c:two").stdout == "Success: files copied\n"
    assert cli(node, "ls", "c:").stdout == "dir\nnamed\ntwo\n"
    assert cli(node, "ls", "c:dir").stdout == "one\n"
    assert cli(node, "cp", "c:named", "c:dir/").stdout == "Success: files copied\n"
    assert cli(node, "ls", "c:dir").stdout == "named\none\n"
    assert "without --recursive" in fails(node, "cp", str(tmp_path), "c:x")
    back = tmp_path / "back"
    assert cli(node, "cp", "c:named", str(back)).stdout == "Success: file copied\n"
    assert back.read_bytes() == one.read_bytes()
    caps = tmp_path / "caps"
    cli(node, "cp", "--caps-only", "c:named", str(caps))
    assert caps.read_text().startswith("URI:CHK:")
    # A directory without a name (the alias root) means its contents.
    whole = tmp_path / "whole"
    cli(node, "cp", "-r", "c:", str(whole))
    assert sorted(p.name for p in whole.iterdir()) == ["dir", "named", "two"]
    verbose = cli(node, "cp", "-r", "-v", "c:dir", "c:copied")
    assert "starting copy, 2 files, 1 directories" in verbose.stderr
    assert cli(node, "ls", "c:copied/dir").stdout == "named\none\n"


def test_errors(node: Path, tmp_path: Path) -> None:
    cli(node, "create-alias", "e")
    (tmp_path / "f").write_bytes(b"f")
    unknown = "Unknown alias 'nope'"
    for args in (["ls", "nope:"], ["get", "nope:x"], ["mkdir", "nope:x"], ["cp", str(tmp_path / "f"), "nope:x"], ["unlink", "nope:x"]):
        assert unknown in fails(node, *args)
    assert fails(node, "ls", "e:missing", code=2) == "No such file or directory\n"
    assert "404" in fails(node, "get", "e:missing")
    assert "No such file or directory 'e:missing'" in fails(node, "cp", "e:missing", str(tmp_path / "x"))
    assert "No such file or directory" in fails(node, "cp", str(tmp_path / "missing"), "e:x")
    assert "No such file or directory 'e:missing'" in fails(node, "mv", "e:missing", "e:x")
    assert "404" in fails(node, "unlink", "e:missing")
    assert "a path must be given" in fails(node, "unlink", "e:")
    for bad in ("URI:DIR2:garbage", "URI:DIR2:garbage/x", "URI:NOPE:x"):
        line = fails(node, "ls", bad)
        assert "Invalid cap" in line and "garbage" not in line
    dead = f"http://127.0.0.1:{free_port()}/"
    assert "not running" in fails(node, "ls", "-u", dead, "e:")
    assert "not running" in fails(node, "create-alias", "-u", dead, "other")
    assert "not running" in fails(node, "cp", "-r", "-u", dead, str(tmp_path), "e:")
    assert "You can't overwrite a directory with a file" in _after_put(node, tmp_path)


def _after_put(node: Path, tmp_path: Path) -> str:
    local = tmp_path / "f"
    local.write_bytes(b"f")
    cli(node, "put", str(local), "e:f")
    cli(node, "mkdir", "e:d")
    return fails(node, "mv", "e:f", "e:d")


@pytest.mark.interop
def test_output_matches_real_tahoe(node: Path, tmp_path: Path, gateway: tuple[str, str]) -> None:
    """The same node directory read by the real ``tahoe`` and ours prints the same text, whichever gateway serves it."""
    from tests.interop import harness

    cli(node, "create-alias", "cmp")
    local = tmp_path / "f"
    local.write_bytes(b"data" * 100)
    cli(node, "put", str(local), "cmp:chk file")
    cli(node, "put", "--mutable", str(local), "cmp:mutable")
    cli(node, "put", "--format=MDMF", str(local), "cmp:ünï")
    cli(node, "mkdir", "cmp:sub")
    cli(node, "put", str(local), "cmp:sub/x")
    ro = json.loads(cli(node, "list-aliases", "--json").stdout)["cmp"]["readonly"]
    cli(node, "add-alias", "cmp-ro", ro)
    for args in (
        ["ls", "cmp:"],
        ["ls", "-l", "cmp:"],
        ["ls", "-lF", "--uri", "cmp:"],
        ["ls", "--readonly-uri", "cmp:"],
        ["ls", "-l", "cmp-ro:"],
        ["ls", "-l", "cmp:sub/x"],
        ["ls", "--json", "cmp:sub"],
        ["list-aliases"],
        ["list-aliases", "--readonly-uri"],
        ["list-aliases", "--json"],
    ):
        theirs = harness.run_tahoe("-d", str(node), *args)
        ours = cli(node, *args)
        assert ours.stdout == theirs.stdout, args
