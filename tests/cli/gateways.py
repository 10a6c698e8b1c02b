"""Directory-capable gateways for CLI tests: the real Tahoe 1.20's, and (when its web API has
directories) our own ``tahoe local-grid``.

A test takes the ``gateway`` fixture (tests/cli/test_directory_cli.py) and gets a node URL;
both kinds stop exactly the processes they started, by PID, and bind only 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.nodes import local_grid

GATEWAY_KINDS = (pytest.param("real-tahoe", marks=pytest.mark.interop), "lafs")


def mkdir_status(url: str) -> tuple[int, str]:
    """``POST /uri?t=mkdir``: 200 from a gateway with directories, 501 from one without."""
    request = urllib.request.Request(url + "uri?t=mkdir", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode("utf-8", "replace")


@contextlib.contextmanager
def real_tahoe_gateway() -> Iterator[str]:
    from tests.interop import harness

    try:
        harness.tahoe_venv()
    except harness.HarnessError as e:
        pytest.skip(f"the real Tahoe is not available: {e}")
    base = Path(tempfile.mkdtemp(prefix="lafs-dircli-real-"))
    try:
        with harness.real_grid_running(base) as grid:
            yield grid.web_url
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def lafs_gateway() -> Iterator[str]:
    base = Path(tempfile.mkdtemp(prefix="lafs-dircli-local-"))
    try:
        with local_grid(base, 3) as url:
            status, body = mkdir_status(url)
            assert status == 200, f"our gateway cannot make directories: {status} {body}"
            yield url
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def gateway_of(kind: str) -> Iterator[str]:
    manager = real_tahoe_gateway() if kind == "real-tahoe" else lafs_gateway()
    with manager as url:
        yield url
