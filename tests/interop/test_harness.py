"""The harness itself: a real grid comes up, stores and returns a file, and stops cleanly."""

from __future__ import annotations

import os
from pathlib import Path

from tests.interop import harness


def test_real_grid_round_trip(real_grid: harness.RealGrid, tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(5000))
    cap = real_grid.cli("put", str(source)).stdout.strip()
    assert cap.startswith("URI:CHK:")
    out = tmp_path / "out.bin"
    real_grid.cli("get", cap, str(out))
    assert out.read_bytes() == source.read_bytes()
    assert harness.connected_server_count(real_grid.web_url) == 3


def test_stop_ends_exactly_the_started_processes(tahoe_oracle: Path, tmp_path: Path) -> None:
    introducer = harness.create_real_introducer(tmp_path / "intro")
    assert introducer.is_running()
    assert introducer.read_private("introducer.furl").startswith("pb://")
    introducer.stop()
    assert not introducer.is_running()
    assert introducer.process.returncode is not None


def test_free_port_is_bindable() -> None:
    port = harness.free_port()
    assert 1024 <= port < 65536
