"""What every command module shares: where a handler writes, and the usage error it may raise.

Apart from main.py, which imports the command modules, so they can use these without importing it back.
"""

from __future__ import annotations

import sys
from typing import TextIO

import attrs

from lafs.core.errors import LafsError


@attrs.define
class CommandIO:
    """Where a command handler writes; tests pass StringIO objects."""

    stdout: TextIO
    stderr: TextIO
    stdin: TextIO = attrs.field(factory=lambda: sys.stdin)


class UsageError(LafsError):
    """Arguments that parse but make no sense together; reported like argparse errors (exit 2)."""
