"""``tahoe debug``: tools for looking inside caps and share files."""

from __future__ import annotations

import argparse
import mmap
import os
import time
from typing import Any

from lafs.cli.common import CommandIO, UsageError
from lafs.cli.dump_share import DumpShareError, ShareBytes, dump_share_lines
from lafs.core import base32, caps

_TITLES = {
    "LIT": "Literal File URI",
    "CHK": "CHK File",
    "CHK-Verifier": "CHK Verifier URI",
    "SSK": "SDMF Writeable URI",
    "SSK-RO": "SDMF Read-only URI",
    "SSK-Verifier": "SDMF Verifier URI",
    "MDMF": "MDMF Writeable URI",
    "MDMF-RO": "MDMF Read-only URI",
    "MDMF-Verifier": "MDMF Verifier URI",
}
_DIR_TITLES = {
    "DIR2": "Directory Writeable URI",
    "DIR2-RO": "Directory Read-only URI",
    "DIR2-Verifier": "Directory Verifier URI",
    "DIR2-MDMF": "Directory MDMF Writeable URI",
    "DIR2-MDMF-RO": "Directory MDMF Read-only URI",
    "DIR2-MDMF-Verifier": "Directory MDMF Verifier URI",
    "DIR2-CHK": "CHK Directory URI",
    "DIR2-CHK-Verifier": "CHK Directory Verifier URI",
    "DIR2-LIT": "Literal Directory URI",
}


def register(subparsers: Any) -> None:
    debug = subparsers.add_parser("debug", help="debugging tools")
    debug.set_defaults(handler=_no_subcommand)
    commands = debug.add_subparsers(dest="debug_command", metavar="SUBCOMMAND")
    dump_cap = commands.add_parser("dump-cap", help="unpack a capability string and show its fields")
    dump_cap.add_argument("cap", metavar="CAP", help="the capability string")
    dump_cap.set_defaults(handler=dump_cap_command)
    dump_share = commands.add_parser(
        "dump-share",
        help="print what a share file holds: type, encoding parameters, hashes, leases and a verify cap",
        description=(
            "Print lots of information about the given share, by parsing the share's contents. This includes "
            "share type, lease information, encoding parameters, hash-tree roots, public keys, and segment sizes. "
            "This command also emits a verify-cap for the file that uses the share "
            "(taken from the name of the directory holding the share, as on a storage server)."
        ),
    )
    dump_share.add_argument("filename", metavar="SHARE_FILENAME", help="e.g. NODEDIR/storage/shares/4v/4vozh77tsrw7mdhnj7qvp5ky74/0")
    dump_share.add_argument("--offsets", action="store_true", help="display a table of section offsets")
    dump_share.add_argument("--leases-only", action="store_true", help="dump leases but not CHK contents")
    dump_share.set_defaults(handler=dump_share_command)


def _no_subcommand(options: argparse.Namespace, io: CommandIO) -> int:
    raise UsageError("choose a debug subcommand, e.g. 'tahoe debug dump-cap CAP'")


def dump_cap_command(options: argparse.Namespace, io: CommandIO) -> int:
    cap = caps.from_string_strict(options.cap.strip())
    io.stdout.write("\n".join(describe_cap(cap)) + "\n")
    return 0


def dump_share_command(options: argparse.Namespace, io: CommandIO) -> int:
    path = os.path.abspath(os.path.expanduser(options.filename))
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # Map rather than read: immutable shares can be gigabytes and only
            # their header, UEB and leases are looked at.  Empty files cannot be mapped.
            if size == 0:
                lines = _dump(b"", path, options)
            else:
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    lines = _dump(mapped, path, options)
    except IsADirectoryError:
        raise DumpShareError(f"{path} is a directory, not a share file") from None
    except OSError as e:
        raise DumpShareError(f"cannot read {path}: {e.strerror or e}") from None
    io.stdout.write("\n".join(lines) + "\n")
    return 0


def _dump(data: ShareBytes, path: str, options: argparse.Namespace) -> list[str]:
    return dump_share_lines(data, path, time.time(), offsets=options.offsets, leases_only=options.leases_only)


def describe_cap(cap: caps.FileCap | caps.DirectoryCap) -> list[str]:
    """The lines ``dump-cap`` prints: kind, fields, then the derived caps and storage index."""
    if isinstance(cap, caps.DirectoryCap):
        lines = [_DIR_TITLES[cap.kind] + ":", *_file_fields(cap.file_cap)]
    else:
        lines = [_TITLES[cap.kind] + ":", *_file_fields(cap)]
    storage_index = cap.get_storage_index()
    if storage_index is not None:
        lines.append(f"storage index: {base32.b2a(storage_index)}")
    if not cap.is_readonly():
        lines.append(f"read-only cap: {cap.get_readonly().to_string()}")
    verifier = cap.get_verify_cap()
    if verifier is not None:
        lines.append(f"verify cap: {verifier.to_string()}")
    return lines


def _file_fields(cap: caps.FileCap) -> list[str]:
    b32 = base32.b2a
    if isinstance(cap, caps.LiteralFileCap):
        return [f" data: {cap.data!r}", f" size: {len(cap.data)}"]
    if isinstance(cap, caps.CHKFileCap | caps.CHKFileVerifierCap):
        first = (
            f" key: {b32(cap.key)}" if isinstance(cap, caps.CHKFileCap) else f" verifier (storage index): {b32(cap.storage_index)}"
        )
        return [first, f" UEB hash: {b32(cap.ueb_hash)}", f" size: {cap.size}", f" k/N: {cap.needed}/{cap.total}"]
    lines = []
    if isinstance(cap, caps.MutableWriteCap):
        lines.append(f" writekey: {b32(cap.writekey)}")
        lines.append(f" readkey: {b32(cap.get_readonly().secret)}")
    elif isinstance(cap, caps.MutableReadCap):
        lines.append(f" readkey: {b32(cap.readkey)}")
    lines.append(f" fingerprint: {b32(cap.fingerprint)}")
    return lines
