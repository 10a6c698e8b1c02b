"""The ``tahoe`` command: parse arguments, dispatch to a handler, map errors to exit codes.

Each command module exposes ``register(subparsers)``, which adds its
subcommands and sets ``handler`` on them: ``handler(options, io) -> int``.
Only node commands start a reactor; file commands are plain HTTP clients.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

import lafs
from lafs.cli.common import CommandIO, UsageError
from lafs.core.errors import LafsError

USAGE_ERROR = 1
"""The exit code of a command line that does not parse, or names bad options (as Tahoe's: not argparse's 2)."""

# Modules that contribute subcommands, in the order their help lists them.
COMMAND_MODULES: tuple[str, ...] = ("lafs.cli.node_commands", "lafs.cli.file_commands", "lafs.cli.dir_commands", "lafs.cli.deep_commands", "lafs.cli.debug")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


class _VersionAction(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tahoe",
        description="lafs: a Tahoe-LAFS compatible secure, decentralized file store.",
    )
    parser.add_argument("-V", "--version", action=_VersionAction, nargs=0, help="print versions and exit")
    parser.add_argument(
        "-d",
        "--node-directory",
        metavar="DIR",
        default=None,
        help="the node directory (default: ~/.tahoe)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def version_text() -> str:
    import foolscap
    import twisted
    import zfec

    from lafs.isal import parity_coding

    return "\n".join(
        [
            f"tahoe-lafs: {lafs.TAHOE_COMPAT_VERSION} ({lafs.FULL_VERSION})",
            f"foolscap: {foolscap.__version__}",
            f"twisted: {twisted.__version__}",
            f"zfec: {getattr(zfec, '__version__', 'unknown')} (parity blocks computed by {parity_coding()})",
            f"python: {sys.version.split()[0]}",
        ]
    )


def run(argv: Sequence[str], io: CommandIO) -> int:
    """Parse ``argv`` (without the program name), run the command, return its exit code."""
    parser = build_parser()
    try:
        options = parser.parse_args(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return int(options.handler(options, io))
    except UsageError as e:
        io.stderr.write(f"tahoe {options.command}: error: {e}\n")
        return USAGE_ERROR
    except LafsError as e:
        io.stderr.write(f"tahoe {options.command}: {e}\n")
        return 1
    except KeyboardInterrupt:
        io.stderr.write("interrupted\n")
        return 130


def main() -> None:
    sys.exit(run(sys.argv[1:], CommandIO(sys.stdout, sys.stderr, sys.stdin)))


if __name__ == "__main__":
    main()
