"""Directory commands: aliases, ``ls``, ``mkdir``, ``cp``, ``mv``, ``ln``, ``unlink``/``rm``, ``webopen``.

Plain HTTP clients of a running node's web API, as Tahoe's are; messages follow
what Tahoe 1.20 prints, but always on one line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import webbrowser
from typing import Any, TypeAlias

import attrs

from lafs.cli import aliases as alias_file
from lafs.cli.common import CommandIO, UsageError
from lafs.cli.file_commands import (
    add_common_options,
    check_cap,
    grid_path,
    node_url,
    nodedir,
    write_atomically,
)
from lafs.cli.listing import UNKNOWN_WARNING, ListOptions, format_listing
from lafs.cli.paths import GridPath, LocalPath, parse_location
from lafs.cli.webapi import WebAPIError, call, check, error_message, get_json, request
from lafs.core.errors import LafsError

UPLOADS_IN_FLIGHT = 4  # cp's concurrent file uploads to the node

NO_SUCH_FILE_EXIT = 2  # Tahoe's `ls` exits 2 for a missing path (its other commands exit 1).


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("create-alias", help="create a new directory and an alias for it")
    p.add_argument("alias", metavar="ALIAS[:]")
    add_common_options(p)
    p.set_defaults(handler=create_alias_command)

    p = subparsers.add_parser("add-alias", help="add an alias for an existing directory cap")
    p.add_argument("alias", metavar="ALIAS[:]")
    p.add_argument("cap", metavar="DIRCAP")
    add_common_options(p)
    p.set_defaults(handler=add_alias_command)

    p = subparsers.add_parser("list-aliases", help="list the aliases and their caps")
    p.add_argument("--readonly-uri", action="store_true", help="show the read-only caps")
    p.add_argument("--json", action="store_true", help="show the aliases as JSON")
    p.set_defaults(handler=list_aliases_command)

    p = subparsers.add_parser("ls", help="list a directory")
    p.add_argument("path", nargs="?", default="", metavar="PATH")
    p.add_argument("-l", "--long", action="store_true", help="show sizes and times")
    p.add_argument("--uri", action="store_true", help="show caps")
    p.add_argument("--readonly-uri", action="store_true", help="show read-only caps")
    p.add_argument("-F", "--classify", action="store_true", help="append '/' to directories and '*' to mutable files")
    p.add_argument("--json", action="store_true", help="show the raw JSON")
    add_common_options(p)
    p.set_defaults(handler=ls_command)

    p = subparsers.add_parser("mkdir", help="create a directory (linked at PATH, or unlinked)")
    p.add_argument("path", nargs="?", default=None, metavar="PATH")
    p.add_argument("--format", default=None, help="SDMF (default) or MDMF")
    add_common_options(p)
    p.set_defaults(handler=mkdir_command)

    p = subparsers.add_parser("cp", help="copy files and directories between the local disk and the grid")
    p.add_argument("sources", nargs="+", metavar="FROM")
    p.add_argument("target", metavar="TO")
    p.add_argument("-r", "--recursive", action="store_true", help="copy directories recursively")
    p.add_argument("-v", "--verbose", action="store_true", help="report progress")
    p.add_argument("--caps-only", action="store_true", help="write file caps instead of contents to local files")
    add_common_options(p)
    p.set_defaults(handler=cp_command)

    for name, handler, text in (("mv", mv_command, "move (rename) a link"), ("ln", ln_command, "link a file or directory")):
        p = subparsers.add_parser(name, help=text)
        p.add_argument("from_path", metavar="FROM")
        p.add_argument("to_path", metavar="TO")
        add_common_options(p)
        p.set_defaults(handler=handler)

    for name in ("unlink", "rm"):
        p = subparsers.add_parser(name, help="remove a link from a directory")
        p.add_argument("paths", nargs="+", metavar="PATH")
        add_common_options(p)
        p.set_defaults(handler=unlink_command, command_name=name)

    p = subparsers.add_parser("webopen", help="open the web page of a file or directory (prints its URL without a browser)")
    p.add_argument("path", nargs="?", default=None, metavar="PATH")
    p.add_argument("-i", "--info", action="store_true", help="open the t=info page")
    add_common_options(p)
    p.set_defaults(handler=webopen_command)


# --- aliases ---------------------------------------------------------------------------


def _aliases(options: argparse.Namespace) -> dict[str, str]:
    return alias_file.read_aliases(nodedir(options), getattr(options, "dir_cap", None))


def create_alias_command(options: argparse.Namespace, io: CommandIO) -> int:
    name = alias_file.check_alias_name(options.alias)
    if name in alias_file.read_aliases(nodedir(options)):
        raise alias_file.AliasError(f"Alias '{name}' already exists!")
    cap = call(node_url(options), "POST", "/uri?t=mkdir", io).decode("ascii").strip()
    alias_file.add_alias(nodedir(options), name, cap)
    io.stdout.write(f"Alias '{name}' created\n")
    return 0


def add_alias_command(options: argparse.Namespace, io: CommandIO) -> int:
    name = alias_file.check_alias_name(options.alias)
    cap = alias_file.check_directory_cap(options.cap)
    if name in alias_file.read_aliases(nodedir(options)):
        raise alias_file.AliasError(f"Alias '{name}' already exists!")
    alias_file.add_alias(nodedir(options), name, cap)
    io.stdout.write(f"Alias '{name}' added\n")
    return 0


def list_aliases_command(options: argparse.Namespace, io: CommandIO) -> int:
    aliases = alias_file.read_aliases(nodedir(options))
    if options.json:
        io.stdout.write(json.dumps(alias_file.alias_list_json(aliases), indent=4) + "\n")
    else:
        io.stdout.write(alias_file.format_alias_list(aliases, options.readonly_uri))
    return 0


# --- ls, mkdir -------------------------------------------------------------------------


def ls_command(options: argparse.Namespace, io: CommandIO) -> int:
    target = grid_path(options, options.path, strict=True)
    url = node_url(options)
    response = request(url, "GET", target.url_path() + "?t=json", None, None, io)
    if response.status == 404:
        response.read()
        io.stderr.write("No such file or directory\n")
        return NO_SUCH_FILE_EXIT
    check(response, "GET")
    body = response.read()
    if options.json:
        io.stdout.write(body.decode("utf-8") + "\n")
        return 0
    try:
        node = json.loads(body)
        kind, info = node
    except ValueError:
        raise WebAPIError("the node's answer to t=json is not JSON") from None
    if kind == "dirnode":
        children = info.get("children", {})
    else:
        children = {target.name or "": node}
    text, unknown = format_listing(children, ListOptions(options.long, options.uri, options.readonly_uri, options.classify))
    io.stdout.write(text)
    if unknown:
        io.stderr.write(UNKNOWN_WARNING)
    return 0


def _mkdir_format(fmt: str | None) -> str:
    if fmt is None:
        return ""
    if fmt.upper() not in ("SDMF", "MDMF"):
        raise UsageError(f"--format must be SDMF or MDMF, not {fmt!r}")
    return "&format=" + fmt.upper()


def mkdir_command(options: argparse.Namespace, io: CommandIO) -> int:
    fmt = _mkdir_format(options.format)
    url = node_url(options)
    if options.path is None:
        cap = call(url, "POST", "/uri?t=mkdir" + fmt, io)
    else:
        target = grid_path(options, options.path, strict=True)
        if not target.segments:
            raise LafsError(f"'{options.path}' is an existing directory: give the name of the directory to make below it")
        # The node makes missing parents and answers with the existing directory's cap if there is one.
        cap = call(url, "POST", target.url_path() + "?t=mkdir" + fmt, io)
    io.stdout.write(cap.decode("ascii").strip() + "\n")
    return 0


# --- ln, mv, unlink ----------------------------------------------------------------------


def _node_info(url: str, path: GridPath, io: CommandIO) -> tuple[str, dict[str, Any]]:
    data = get_json(url, path.url_path(), io)
    if data is None:
        raise LafsError(f"No such file or directory '{path.shown}'")
    return str(data[0]), dict(data[1])


def _link_target(options: argparse.Namespace, url: str, io: CommandIO, verb: str) -> tuple[GridPath, GridPath, str, str]:
    """Source path, resolved target path, the cap to link and the source's kind, for ln and mv."""
    source = grid_path(options, options.from_path, strict=True)
    target = grid_path(options, options.to_path, strict=True)
    if source.segments:
        kind, info = _node_info(url, source, io)
        cap = info.get("rw_uri") or info.get("ro_uri")
        if not cap:
            raise LafsError(f"'{options.from_path}' has no cap to link")
    elif verb == "ln":
        # A bare cap (or alias root) is linked as it is, even a kind this version does not know.
        kind, cap = ("dirnode" if source.cap.startswith(("URI:DIR2", "ro.URI:DIR2", "imm.URI:DIR2")) else "filenode"), source.cap
    else:
        raise LafsError(f"cannot {verb} '{options.from_path}': it is not a link in a directory (give a path below it)")
    if target.trailing_slash or not target.segments:
        if source.name is None:
            raise LafsError("the source has no name: give the target's full path")
        target = target.child(source.name)
    else:
        existing = get_json(url, target.url_path(), io)
        if existing is not None and existing[0] == "dirnode" and kind != "dirnode":
            raise LafsError("Error: You can't overwrite a directory with a file")
    return source, target, str(cap), kind


def _put_link(url: str, target: GridPath, cap: str, io: CommandIO) -> None:
    response = request(url, "PUT", target.url_path() + "?t=uri", cap.encode("ascii"), None, io)
    if response.status >= 400:
        raise WebAPIError(f"Error: {response.status} {response.reason}: {error_message(response.read(100_000))}")
    response.read()


def ln_command(options: argparse.Namespace, io: CommandIO) -> int:
    url = node_url(options)
    _, target, cap, _ = _link_target(options, url, io, "ln")
    _put_link(url, target, cap, io)
    io.stdout.write("OK\n")
    return 0


def mv_command(options: argparse.Namespace, io: CommandIO) -> int:
    url = node_url(options)
    source, target, cap, _ = _link_target(options, url, io, "mv")
    if (source.cap, source.segments) == (target.cap, target.segments):
        # Linking and then unlinking the same entry would lose it.
        io.stdout.write("OK\n")
        return 0
    _put_link(url, target, cap, io)
    response = request(url, "DELETE", source.url_path(), None, None, io)
    if response.status >= 400:
        raise WebAPIError(
            f"Error: linked the new name but could not unlink the old one: {response.status} {response.reason}: "
            + error_message(response.read(100_000))
        )
    response.read()
    io.stdout.write("OK\n")
    return 0


def unlink_command(options: argparse.Namespace, io: CommandIO) -> int:
    url = node_url(options)
    for arg in options.paths:
        target = grid_path(options, arg, strict=True)
        if not target.segments:
            raise LafsError(f"'tahoe {options.command_name}' can only unlink directory entries, so a path must be given.")
        response = request(url, "DELETE", target.url_path(), None, None, io)
        if response.status >= 400:
            raise WebAPIError(f"ERROR: {response.status} {response.reason}: {error_message(response.read(100_000))}")
        response.read()
        io.stdout.write(f"{response.status} {response.reason}\n")
    return 0


# --- webopen ---------------------------------------------------------------------------


def can_open_browser(environ: dict[str, str] | os._Environ[str] = os.environ, platform: str = sys.platform) -> bool:
    """Whether a graphical browser can be started: never guess on a headless Unix (CI), where a
    console browser would take over the terminal and hang the command."""
    if environ.get("BROWSER"):
        return True
    if platform.startswith(("win", "darwin")):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def webopen_command(options: argparse.Namespace, io: CommandIO) -> int:
    url = node_url(options)
    if options.path is None:
        page = url
    else:
        page = url.rstrip("/") + grid_path(options, options.path, strict=True).url_path()
        if options.info:
            page += "?t=info"
    opened = False
    if can_open_browser():
        try:
            opened = webbrowser.open(page)
        except webbrowser.Error:
            opened = False
    if not opened:
        io.stdout.write(page + "\n")
    return 0


# --- cp --------------------------------------------------------------------------------

UNKNOWN_NODE_MESSAGE = (
    "Cannot copy unknown nodes (ticket #839). You probably need to use a later version of Tahoe-LAFS to copy this directory."
)


_Source: TypeAlias = "_LocalFile | _LocalDir | _GridFile | _GridDir"


@attrs.define
class _LocalFile:
    path: str
    name: str | None


@attrs.define
class _LocalDir:
    path: str
    name: str | None
    # Filled by the counting walk, so the copy does not list the directory again.
    resolved: list[_Source] | None = None


@attrs.define
class _GridFile:
    path: GridPath
    name: str | None
    cap: str


@attrs.define
class _GridDir:
    path: GridPath
    name: str | None
    children: dict[str, Any]
    resolved: list[_Source] | None = None




@attrs.define
class _Counts:
    files: int = 0
    dirs: int = 0


class _Copier:
    """One ``tahoe cp`` run: resolve the sources, count the work, copy, report progress."""

    def __init__(self, options: argparse.Namespace, io: CommandIO) -> None:
        self.options = options
        self.io = io
        self.aliases = alias_file.read_aliases(nodedir(options), options.dir_cap)
        self._url: str | None = None
        self.total = _Counts()
        self.done = _Counts()
        self.terminal = bool(getattr(io.stderr, "isatty", lambda: False)())

    @property
    def url(self) -> str:
        # Only grid arguments need the node; local-to-local copies work without one.
        if self._url is None:
            self._url = node_url(self.options)
        return self._url

    # -- resolving ---------------------------------------------------------------------

    def source(self, arg: str) -> _Source:
        location = parse_location(arg, self.aliases)
        if isinstance(location, GridPath):
            check_cap(location.cap)
        if isinstance(location, LocalPath):
            path = location.path
            name = os.path.basename(os.path.normpath(os.path.abspath(path)))
            if os.path.isdir(path):
                return _LocalDir(path, name)
            if os.path.isfile(path):
                return _LocalFile(path, name)
            raise LafsError(f"No such file or directory '{arg}'")
        data = get_json(self.url, location.url_path(), self.io)
        if data is None:
            raise LafsError(f"No such file or directory '{arg}'")
        kind, info = data
        if kind == "dirnode":
            return _GridDir(location, location.name, dict(info.get("children", {})))
        if kind == "filenode":
            return _GridFile(location, location.name, str(info.get("rw_uri") or info.get("ro_uri")))
        raise LafsError(UNKNOWN_NODE_MESSAGE)

    def children(self, source: _LocalDir | _GridDir) -> list[_Source]:
        if isinstance(source, _LocalDir):
            out: list[_Source] = []
            for entry in sorted(os.scandir(source.path), key=lambda e: e.name):
                if entry.is_dir():
                    out.append(_LocalDir(entry.path, entry.name))
                elif entry.is_file():
                    out.append(_LocalFile(entry.path, entry.name))
                else:
                    self.io.stderr.write(f"skipping '{entry.path}': not a regular file or directory\n")
            return out
        result: list[_Source] = []
        for name in sorted(source.children):
            kind, info = source.children[name]
            child = source.path.child(name)
            if kind == "filenode":
                result.append(_GridFile(child, name, str(info.get("rw_uri") or info.get("ro_uri"))))
            elif kind == "dirnode":
                data = get_json(self.url, child.url_path(), self.io)
                if data is None:
                    raise LafsError(f"No such file or directory '{child.shown}'")
                result.append(_GridDir(child, name, dict(data[1].get("children", {}))))
            else:
                raise LafsError(UNKNOWN_NODE_MESSAGE)
        return result

    def count(self, source: _Source) -> None:
        """Walk the sources once before copying: counts for progress, and unknown nodes fail before any write."""
        if isinstance(source, (_LocalFile, _GridFile)):
            self.total.files += 1
            return
        self.total.dirs += 1
        source.resolved = self.children(source)
        for child in source.resolved:
            self.count(child)

    def resolved_children(self, source: _LocalDir | _GridDir) -> list[_Source]:
        return source.resolved if source.resolved is not None else self.children(source)

    # -- copying -----------------------------------------------------------------------

    def run(self) -> int:
        options = self.options
        sources = [self.source(arg) for arg in options.sources]
        dirs = [s for s in sources if isinstance(s, (_LocalDir, _GridDir))]
        if dirs and not options.recursive:
            raise LafsError("cannot copy directories without --recursive")
        target = parse_location(options.target, self.aliases)
        if isinstance(target, GridPath):
            check_cap(target.cap)
        target_kind = self.target_kind(target)
        single = len(sources) == 1 and not dirs and target_kind != "dir" and not self.trailing_slash(target)
        for source in sources:
            self.count(source)
        if options.verbose:
            self.io.stderr.write(f"starting copy, {self.total.files} files, {self.total.dirs} directories\n")
        if single:
            self.copy_file(sources[0], target)
            self.finish()
            self.io.stdout.write("Success: file copied\n")
            return 0
        if target_kind == "file":
            raise LafsError(f"cannot copy into '{options.target}': it is a file, not a directory")
        root = self.make_dir(target)
        for source in sources:
            if isinstance(source, (_LocalFile, _GridFile)):
                if source.name is None:
                    raise LafsError("cannot copy a file that has no name (a bare cap) into a directory: give a file name")
                self.copy_file(source, self.child(root, source.name))
            elif source.name is None:
                # A directory without a name (an alias root, a bare dircap) means its contents.
                self.done.dirs += 1
                self.copy_children(source, root)
            else:
                self.copy_dir(source, self.child(root, source.name))
        self.finish()
        self.io.stdout.write("Success: files copied\n")
        return 0

    def trailing_slash(self, target: GridPath | LocalPath) -> bool:
        if isinstance(target, GridPath):
            return target.trailing_slash or not target.segments
        return target.path.endswith(("/", os.sep))

    def target_kind(self, target: GridPath | LocalPath) -> str:
        """"dir", "file" or "missing"."""
        if isinstance(target, LocalPath):
            if os.path.isdir(target.path):
                return "dir"
            return "file" if os.path.exists(target.path) else "missing"
        data = get_json(self.url, target.url_path(), self.io)
        if data is None:
            return "missing"
        return "dir" if data[0] == "dirnode" else "file"

    def child(self, parent: GridPath | LocalPath, name: str) -> GridPath | LocalPath:
        if isinstance(parent, GridPath):
            return parent.child(name)
        return LocalPath(os.path.join(parent.path, name))

    def make_dir(self, target: GridPath | LocalPath) -> GridPath | LocalPath:
        """Make the target directory if it is missing; grid directories are then addressed by their own cap."""
        if isinstance(target, LocalPath):
            try:
                os.makedirs(target.path, exist_ok=True)
            except OSError as e:
                raise LafsError(f"cannot make directory {target.path}: {e.strerror}") from None
            return target
        if not target.segments:
            return target
        cap = call(self.url, "POST", target.url_path() + "?t=mkdir", self.io, what="mkdir").decode("ascii").strip()
        return GridPath(cap, (), target.shown)

    def copy_dir(self, source: _LocalDir | _GridDir, target: GridPath | LocalPath) -> None:
        directory = self.make_dir(target)
        self.done.dirs += 1
        self.report()
        self.copy_children(source, directory)

    def copy_children(self, source: _LocalDir | _GridDir, directory: GridPath | LocalPath) -> None:
        children = self.resolved_children(source)
        if isinstance(directory, GridPath):
            # As Tahoe's cp does: a directory's local files are uploaded unlinked, then linked
            # in one t=set_children, rather than changing the directory once per file.
            local = [child for child in children if isinstance(child, _LocalFile)]
            self.upload_into(directory, local)
            children = [child for child in children if not isinstance(child, _LocalFile)]
        for child in children:
            assert child.name is not None  # children always have names
            if isinstance(child, (_LocalDir, _GridDir)):
                self.copy_dir(child, self.child(directory, child.name))
            else:
                self.copy_file(child, self.child(directory, child.name))

    def upload_into(self, directory: GridPath, files: list[_LocalFile]) -> None:
        """Upload local files (a few at a time) with ``PUT /uri``, then link them all into ``directory``."""
        if not files:
            return
        url, io = self.url, self.io

        def upload(source: _LocalFile) -> str:
            with open(source.path, "rb") as f:
                response = request(url, "PUT", "/uri", f, os.fstat(f.fileno()).st_size, io)
                check(response, "PUT")
                return response.read().decode("ascii").strip()

        children: dict[str, Any] = {}
        with concurrent.futures.ThreadPoolExecutor(UPLOADS_IN_FLIGHT) as pool:
            for source, cap in zip(files, pool.map(upload, files), strict=True):
                assert source.name is not None
                children[source.name] = ["filenode", {"ro_uri": cap, "metadata": {}}]
                self.done.files += 1
                self.report()
        body = json.dumps(children).encode("utf-8")
        call(url, "POST", directory.url_path() + "?t=set_children", io, body, what="set_children")

    def copy_file(self, source: _Source, target: GridPath | LocalPath) -> None:
        io = self.io
        if isinstance(target, GridPath):
            if isinstance(source, _GridFile):
                # Grid to grid: link the same file (its write cap for a mutable one), as Tahoe does.
                _put_link(self.url, target, source.cap, io)
            else:
                assert isinstance(source, _LocalFile)
                with open(source.path, "rb") as f:
                    response = request(self.url, "PUT", target.url_path(), f, os.fstat(f.fileno()).st_size, io)
                    check(response, "PUT")
                    response.read()
        elif isinstance(source, _GridFile):
            if self.options.caps_only:
                with open(target.path, "w", encoding="ascii") as out:
                    out.write(source.cap)
            else:
                response = request(self.url, "GET", source.path.url_path(), None, None, io)
                check(response, "GET")
                write_atomically(response, target.path, int(response.getheader("Content-Length") or 0), io)
        else:
            assert isinstance(source, _LocalFile)
            try:
                shutil.copyfile(source.path, target.path)
            except OSError as e:
                raise LafsError(f"cannot copy {source.path} to {target.path}: {e.strerror}") from None
        self.done.files += 1
        self.report()

    def report(self) -> None:
        line = f"{self.done.files}/{self.total.files} files, {self.done.dirs}/{self.total.dirs} directories"
        if self.options.verbose:
            self.io.stderr.write(line + "\n")
        elif self.terminal and self.total.files + self.total.dirs >= 20:
            # Long runs on a terminal get a progress line that rewrites itself.
            self.io.stderr.write("\r" + line)
            self.io.stderr.flush()

    def finish(self) -> None:
        if self.terminal and not self.options.verbose and self.total.files + self.total.dirs >= 20:
            self.io.stderr.write("\n")


def cp_command(options: argparse.Namespace, io: CommandIO) -> int:
    return _Copier(options, io).run()

