"""Interop fixtures: the real Tahoe 1.20 venv and one real grid per test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop import harness


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def tahoe_oracle() -> Path:
    return harness.tahoe_venv()


@pytest.fixture(scope="session")
def real_grid(tahoe_oracle: Path) -> Iterator[harness.RealGrid]:
    base = Path(tempfile.mkdtemp(prefix="lafs-real-grid-"))
    try:
        with harness.real_grid_running(base) as grid:
            yield grid
    finally:
        shutil.rmtree(base, ignore_errors=True)
